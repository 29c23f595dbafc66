"""``client.workflows``: workflows under ``/api/v1/workflows`` (admin token)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Union

from .._base import AsyncAPIClient, Request, SyncAPIClient, path_segment
from .._models import NOT_GIVEN, Money, NotGiven, Workflow, money_to_json
from .._pagination import AsyncPage, AsyncPager, Page, list_params, parse_page

__all__ = ["Workflows", "AsyncWorkflows"]

_BASE = "/api/v1/workflows"


_PRICES = ("price_per_request", "price_per_million_input_tokens", "price_per_million_output_tokens")


def _create_body(id: str, name: str, upstream_url: str, money: Mapping[str, Optional[Money]]) -> Dict[str, Any]:
    body: Dict[str, Any] = {"id": id, "name": name, "upstream_url": upstream_url}
    body.update({k: money_to_json(v) for k, v in money.items() if v is not None})
    return body


def _update_body(
    name: Union[str, NotGiven],
    upstream_url: Union[str, NotGiven],
    money: Mapping[str, Union[Money, None, NotGiven]],
) -> Dict[str, Any]:
    body: Dict[str, Any] = {}
    if not isinstance(name, NotGiven):
        body["name"] = name
    if not isinstance(upstream_url, NotGiven):
        body["upstream_url"] = upstream_url
    for field, value in money.items():
        if isinstance(value, NotGiven):
            continue
        if value is None and field in _PRICES:
            raise TypeError(f"{field} cannot be cleared: set it to 0 instead")
        body[field] = None if value is None else money_to_json(value)
    return body


class Workflows:
    def __init__(self, client: SyncAPIClient) -> None:
        self._client = client

    def create(
        self,
        id: str,
        *,
        name: str,
        upstream_url: str,
        price_per_request: Optional[Money] = None,
        max_cost_per_request: Optional[Money] = None,
        price_per_million_input_tokens: Optional[Money] = None,
        price_per_million_output_tokens: Optional[Money] = None,
    ) -> Workflow:
        """Create a workflow. ``id`` matches ``[a-z0-9_-]{1,64}``; ``upstream_url`` is
        ``http(s)://...`` or ``builtin:echo``; ``price_per_request`` in USD (default 0).
        ``max_cost_per_request`` (USD, default none) is the most one query may cost:
        in-flight queries count against a key's cost limit at it, and a reported cost
        above it is recorded as it. Below ``price_per_request``: ``ValidationError``.
        ``price_per_million_input_tokens`` / ``..._output_tokens`` (USD, default 0)
        price the tokens the upstream reports: without a reported ``usage.cost``, a
        query costs ``price_per_request`` plus its tokens at these prices."""
        body = _create_body(
            id,
            name,
            upstream_url,
            dict(
                price_per_request=price_per_request,
                max_cost_per_request=max_cost_per_request,
                price_per_million_input_tokens=price_per_million_input_tokens,
                price_per_million_output_tokens=price_per_million_output_tokens,
            ),
        )
        return Workflow.from_json(self._client.request(Request("POST", _BASE, body=body)))

    def list(self, *, limit: Optional[int] = None, cursor: Optional[str] = None) -> Page[Workflow]:
        """The first page; iterate it to walk every workflow."""

        def fetch(cursor: Optional[str]) -> Page[Workflow]:
            body = self._client.request(Request("GET", _BASE, params=list_params(limit, cursor)))
            data, next_cursor = parse_page(body, Workflow.from_json)
            return Page(data, next_cursor, fetch)

        return fetch(cursor)

    def get(self, workflow_id: str) -> Workflow:
        return Workflow.from_json(
            self._client.request(Request("GET", f"{_BASE}/{path_segment(workflow_id)}"))
        )

    def update(
        self,
        workflow_id: str,
        *,
        name: Union[str, NotGiven] = NOT_GIVEN,
        upstream_url: Union[str, NotGiven] = NOT_GIVEN,
        price_per_request: Union[Money, NotGiven] = NOT_GIVEN,
        max_cost_per_request: Union[Money, None, NotGiven] = NOT_GIVEN,
        price_per_million_input_tokens: Union[Money, NotGiven] = NOT_GIVEN,
        price_per_million_output_tokens: Union[Money, NotGiven] = NOT_GIVEN,
    ) -> Workflow:
        """Change the fields given; the others stay as they are.
        ``max_cost_per_request=None`` removes the maximum."""
        body = _update_body(
            name,
            upstream_url,
            dict(
                price_per_request=price_per_request,
                max_cost_per_request=max_cost_per_request,
                price_per_million_input_tokens=price_per_million_input_tokens,
                price_per_million_output_tokens=price_per_million_output_tokens,
            ),
        )
        return Workflow.from_json(
            self._client.request(
                Request("PUT", f"{_BASE}/{path_segment(workflow_id)}", body=body)
            )
        )

    def delete(self, workflow_id: str) -> None:
        self._client.request(Request("DELETE", f"{_BASE}/{path_segment(workflow_id)}"))


class AsyncWorkflows:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def create(
        self,
        id: str,
        *,
        name: str,
        upstream_url: str,
        price_per_request: Optional[Money] = None,
        max_cost_per_request: Optional[Money] = None,
        price_per_million_input_tokens: Optional[Money] = None,
        price_per_million_output_tokens: Optional[Money] = None,
    ) -> Workflow:
        body = _create_body(
            id,
            name,
            upstream_url,
            dict(
                price_per_request=price_per_request,
                max_cost_per_request=max_cost_per_request,
                price_per_million_input_tokens=price_per_million_input_tokens,
                price_per_million_output_tokens=price_per_million_output_tokens,
            ),
        )
        return Workflow.from_json(await self._client.request(Request("POST", _BASE, body=body)))

    def list(
        self, *, limit: Optional[int] = None, cursor: Optional[str] = None
    ) -> AsyncPager[Workflow]:
        """``await`` it for the first page, or ``async for`` over it for every workflow."""

        async def fetch(cursor: Optional[str]) -> AsyncPage[Workflow]:
            body = await self._client.request(
                Request("GET", _BASE, params=list_params(limit, cursor))
            )
            data, next_cursor = parse_page(body, Workflow.from_json)
            return AsyncPage(data, next_cursor, fetch)

        return AsyncPager(lambda: fetch(cursor))

    async def get(self, workflow_id: str) -> Workflow:
        return Workflow.from_json(
            await self._client.request(Request("GET", f"{_BASE}/{path_segment(workflow_id)}"))
        )

    async def update(
        self,
        workflow_id: str,
        *,
        name: Union[str, NotGiven] = NOT_GIVEN,
        upstream_url: Union[str, NotGiven] = NOT_GIVEN,
        price_per_request: Union[Money, NotGiven] = NOT_GIVEN,
        max_cost_per_request: Union[Money, None, NotGiven] = NOT_GIVEN,
        price_per_million_input_tokens: Union[Money, NotGiven] = NOT_GIVEN,
        price_per_million_output_tokens: Union[Money, NotGiven] = NOT_GIVEN,
    ) -> Workflow:
        body = _update_body(
            name,
            upstream_url,
            dict(
                price_per_request=price_per_request,
                max_cost_per_request=max_cost_per_request,
                price_per_million_input_tokens=price_per_million_input_tokens,
                price_per_million_output_tokens=price_per_million_output_tokens,
            ),
        )
        return Workflow.from_json(
            await self._client.request(
                Request("PUT", f"{_BASE}/{path_segment(workflow_id)}", body=body)
            )
        )

    async def delete(self, workflow_id: str) -> None:
        await self._client.request(Request("DELETE", f"{_BASE}/{path_segment(workflow_id)}"))
