"""Cursor pages: ``{"data": [...], "next_cursor": ...}``, with iteration across them.

A ``Page`` holds one page and fetches the next ones lazily when iterated, so
``for key in client.keys.list()`` walks every key while ``page.data`` is just
the first page. ``AsyncPager`` is the async twin: await it for the first page,
or ``async for`` over it for every item.
"""

from __future__ import annotations

from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Generator,
    Generic,
    Iterator,
    List,
    Mapping,
    Optional,
    TypeVar,
)

__all__ = ["Page", "AsyncPage", "AsyncPager"]

T = TypeVar("T")


def list_params(limit: Optional[int], cursor: Optional[str]) -> Dict[str, str]:
    """The query string of a list request: ``limit`` (1 to 1000) and ``cursor``."""
    params: Dict[str, str] = {}
    if limit is not None:
        params["limit"] = str(limit)
    if cursor is not None:
        params["cursor"] = cursor
    return params


def parse_page(body: Any, item: Callable[[Mapping[str, Any]], T]) -> tuple[List[T], Optional[str]]:
    data = [item(x) for x in body.get("data") or []]
    cursor = body.get("next_cursor")
    return data, cursor if isinstance(cursor, str) and cursor else None


class Page(Generic[T]):
    """One page of a list. Iterating it yields every item from here to the last page."""

    def __init__(
        self, data: List[T], next_cursor: Optional[str], fetch: Callable[[str], Page[T]]
    ) -> None:
        #: The items of this page only.
        self.data = data
        #: Where the next page starts; ``None`` on the last page.
        self.next_cursor = next_cursor
        self._fetch = fetch

    def has_next_page(self) -> bool:
        return self.next_cursor is not None

    def next_page(self) -> Optional[Page[T]]:
        """The following page (one request), or ``None`` after the last."""
        if self.next_cursor is None:
            return None
        return self._fetch(self.next_cursor)

    def iter_pages(self) -> Iterator[Page[T]]:
        """This page and every following one, fetched as needed."""
        page: Optional[Page[T]] = self
        while page is not None:
            yield page
            page = page.next_page()

    def __iter__(self) -> Iterator[T]:
        for page in self.iter_pages():
            yield from page.data

    def __repr__(self) -> str:
        return f"Page(data=<{len(self.data)} items>, next_cursor={self.next_cursor!r})"


class AsyncPage(Generic[T]):
    """One page of a list; ``async for`` over it yields every item to the last page."""

    def __init__(
        self,
        data: List[T],
        next_cursor: Optional[str],
        fetch: Callable[[str], Awaitable[AsyncPage[T]]],
    ) -> None:
        self.data = data
        self.next_cursor = next_cursor
        self._fetch = fetch

    def has_next_page(self) -> bool:
        return self.next_cursor is not None

    async def next_page(self) -> Optional[AsyncPage[T]]:
        if self.next_cursor is None:
            return None
        return await self._fetch(self.next_cursor)

    async def iter_pages(self) -> AsyncIterator[AsyncPage[T]]:
        page: Optional[AsyncPage[T]] = self
        while page is not None:
            yield page
            page = await page.next_page()

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.iter_pages():
            for item in page.data:
                yield item

    def __repr__(self) -> str:
        return f"AsyncPage(data=<{len(self.data)} items>, next_cursor={self.next_cursor!r})"


class AsyncPager(Generic[T]):
    """What an async ``list`` returns: ``await`` it for the first page, or
    ``async for`` over it for every item across pages."""

    def __init__(self, first: Callable[[], Awaitable[AsyncPage[T]]]) -> None:
        self._first = first

    def __await__(self) -> Generator[Any, None, AsyncPage[T]]:
        return self._first().__await__()

    async def __aiter__(self) -> AsyncIterator[T]:
        page = await self._first()
        async for item in page:
            yield item
