"""``QueryStream`` and ``AsyncQueryStream``: a query answered as server-sent events.

The server sends ``event: chunk`` (partial output) any number of times, then
``event: done`` (usage and request id) or, when the query failed after output
was sent, ``event: error``. A stream object sends its request when it is
entered (``with`` / ``async with``) or first iterated; failures before the
first event are the same exceptions as ``query_workflow``'s (and are retried
the same way). Once the event stream has started nothing is retried: the
server has run, and metered, the query.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import AsyncGenerator, AsyncIterator, Generator, Iterator, List, Optional, Type

import httpx

from ._base import AsyncAPIClient, Request, SyncAPIClient
from ._errors import APIConnectionError, NodaiError, error_from_event
from ._models import Chunk, Done, QueryResult, RateLimit, StreamEvent
from ._sse import ServerSentEvent, SSEDecoder

__all__ = ["QueryStream", "AsyncQueryStream"]


class _Events:
    """What both streams share: turning the wire into typed events. No I/O."""

    def __init__(self) -> None:
        #: The ``Done`` event, once it arrived.
        self.done: Optional[Done] = None
        self.parts: List[str] = []
        self.headers = httpx.Headers()

    def on_sse(self, sse: ServerSentEvent) -> Optional[StreamEvent]:
        """The event for ``sse``; raises for ``event: error``; None for others."""
        if sse.event == "chunk":
            self.parts.append(sse.data)
            return Chunk(sse.data)
        if sse.event == "done":
            try:
                done = Done.from_json(json.loads(sse.data))
            except (ValueError, KeyError, TypeError) as error:
                raise NodaiError(f"the stream's done event is malformed: {sse.data[:200]!r}") from error
            self.done = done
            return done
        if sse.event == "error":
            raise error_from_event(sse.data, self.headers)
        return None  # not ours (a newer server's event type): skipped

    def from_json(self, body: object) -> List[StreamEvent]:
        """A plain JSON answer (a server that does not stream) as the same events."""
        if not isinstance(body, dict):
            raise NodaiError("the server answered a stream request with JSON that is not a query result")
        result = QueryResult.from_json(body, self.headers)
        output = result.output
        text = output if isinstance(output, str) else json.dumps(output, separators=(",", ":"))
        done = Done(
            cost=result.cost,
            duration_ms=result.duration_ms,
            request_id=result.request_id,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
        )
        self.done = done
        events: List[StreamEvent] = []
        if text:
            self.parts.append(text)
            events.append(Chunk(text))
        events.append(done)
        return events

    @staticmethod
    def kind(response: httpx.Response) -> str:
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "text/event-stream":
            return "events"
        if content_type == "application/json" or content_type.endswith("+json"):
            return "json"
        raise NodaiError(
            f"the server answered a stream request with {content_type or 'no content type'}",
            status=response.status_code,
        )


def _ended_early() -> APIConnectionError:
    return APIConnectionError("the event stream ended before its done event")


class _StreamBase:
    _events: _Events
    rate_limit: Optional[RateLimit]

    @property
    def done(self) -> Optional[Done]:
        """The final ``Done`` (cost, duration, request id), once it arrived; else None."""
        return self._events.done

    @property
    def text(self) -> str:
        """All the output text received so far."""
        return "".join(self._events.parts)

    @property
    def headers(self) -> httpx.Headers:
        """The response's headers (empty until the stream is open)."""
        return self._events.headers


class QueryStream(_StreamBase):
    """A streamed query, from ``Nodai.stream_workflow``.

    Iterate it for ``Chunk(text)`` events and, last, one ``Done(cost,
    duration_ms, request_id, input_tokens, output_tokens)``; or iterate
    ``text_stream`` for the text alone;
    or call ``until_done()``. Use it as a context manager so the connection
    is closed however the block ends; leaving early is fine (the server
    records the query's usage once, also then).

    The request is sent on ``with`` (or the first iteration). An
    ``event: error`` is raised as a ``NodaiError`` subclass chosen by its code;
    a stream that breaks off is an ``APIConnectionError``.
    """

    def __init__(self, client: SyncAPIClient, request: Request) -> None:
        self._client = client
        self._request = request
        self._events = _Events()
        self._response: Optional[httpx.Response] = None
        self._iterator: Optional[Generator[StreamEvent, None, None]] = None
        self._closed = False
        #: The key's rate-limit state (``X-RateLimit-*``) once the stream is open.
        self.rate_limit = None

    def _open(self) -> httpx.Response:
        if self._response is None:
            if self._closed:
                raise NodaiError("the stream is closed")
            self._response = self._client.send(self._request)
            self._events.headers = self._response.headers
            self.rate_limit = RateLimit.from_headers(self._response.headers)
        return self._response

    def _iterate(self) -> Generator[StreamEvent, None, None]:
        if self._closed:
            return
        response = self._open()
        try:
            if _Events.kind(response) == "json":
                try:
                    response.read()
                except httpx.TransportError as error:
                    raise self._client.connection_error(error) from error
                yield from self._events.from_json(self._client.decode(response))
                return
            decoder = SSEDecoder()
            try:
                for data in response.iter_bytes():
                    for sse in decoder.feed(data):
                        event = self._events.on_sse(sse)
                        if isinstance(event, Done):
                            response.close()
                            yield event
                            return
                        if event is not None:
                            yield event
            except httpx.TransportError as error:
                raise self._client.connection_error(error) from error
            for sse in decoder.end():
                event = self._events.on_sse(sse)
                if event is not None:
                    yield event
                if isinstance(event, Done):
                    return
            raise _ended_early()
        finally:
            response.close()

    def __iter__(self) -> QueryStream:
        return self

    def __next__(self) -> StreamEvent:
        if self._iterator is None:
            self._iterator = self._iterate()
        return next(self._iterator)

    @property
    def text_stream(self) -> Iterator[str]:
        """The text of each chunk, as it arrives; ``done`` is set once it ends."""
        for event in self:
            if isinstance(event, Chunk):
                yield event.text

    def until_done(self) -> Done:
        """Read the rest of the stream (its text is in ``text``); the final ``Done``."""
        for _ in self:
            pass
        if self._events.done is None:
            raise NodaiError("the stream was closed before its done event")
        return self._events.done

    def close(self) -> None:
        """Stop reading and close the connection (the server still records the usage)."""
        self._closed = True
        if self._iterator is not None:
            self._iterator.close()
        if self._response is not None:
            self._response.close()

    def __enter__(self) -> QueryStream:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


class AsyncQueryStream(_StreamBase):
    """The asyncio twin of ``QueryStream``: ``async with`` and ``async for``.

    The request is sent on ``async with`` (or the first ``async for`` step).
    """

    def __init__(self, client: AsyncAPIClient, request: Request) -> None:
        self._client = client
        self._request = request
        self._events = _Events()
        self._response: Optional[httpx.Response] = None
        self._iterator: Optional[AsyncGenerator[StreamEvent, None]] = None
        self._closed = False
        #: The key's rate-limit state (``X-RateLimit-*``) once the stream is open.
        self.rate_limit = None

    async def _open(self) -> httpx.Response:
        if self._response is None:
            if self._closed:
                raise NodaiError("the stream is closed")
            self._response = await self._client.send(self._request)
            self._events.headers = self._response.headers
            self.rate_limit = RateLimit.from_headers(self._response.headers)
        return self._response

    async def _iterate(self) -> AsyncGenerator[StreamEvent, None]:
        if self._closed:
            return
        response = await self._open()
        try:
            if _Events.kind(response) == "json":
                try:
                    await response.aread()
                except httpx.TransportError as error:
                    raise self._client.connection_error(error) from error
                for answer in self._events.from_json(self._client.decode(response)):
                    yield answer
                return
            decoder = SSEDecoder()
            try:
                async for data in response.aiter_bytes():
                    for sse in decoder.feed(data):
                        event = self._events.on_sse(sse)
                        if isinstance(event, Done):
                            await response.aclose()
                            yield event
                            return
                        if event is not None:
                            yield event
            except httpx.TransportError as error:
                raise self._client.connection_error(error) from error
            for sse in decoder.end():
                event = self._events.on_sse(sse)
                if event is not None:
                    yield event
                if isinstance(event, Done):
                    return
            raise _ended_early()
        finally:
            await response.aclose()

    def __aiter__(self) -> AsyncQueryStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._iterator is None:
            self._iterator = self._iterate()
        return await self._iterator.__anext__()

    @property
    def text_stream(self) -> AsyncIterator[str]:
        """The text of each chunk, as it arrives; ``done`` is set once it ends."""
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        async for event in self:
            if isinstance(event, Chunk):
                yield event.text

    async def until_done(self) -> Done:
        """Read the rest of the stream (its text is in ``text``); the final ``Done``."""
        async for _ in self:
            pass
        if self._events.done is None:
            raise NodaiError("the stream was closed before its done event")
        return self._events.done

    async def close(self) -> None:
        """Stop reading and close the connection (the server still records the usage)."""
        self._closed = True
        if self._iterator is not None:
            await self._iterator.aclose()
        if self._response is not None:
            await self._response.aclose()

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self) -> AsyncQueryStream:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

