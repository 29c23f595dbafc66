"""``client.webhooks``: webhook endpoints under ``/api/v1/webhooks`` (admin token).

Receiving and verifying messages is ``nodai.webhooks.verify`` (also reachable
as ``client.webhooks.verify``), which needs no client.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

from .._base import AsyncAPIClient, Request, SyncAPIClient, path_segment
from .._models import NOT_GIVEN, Delivery, NotGiven, Webhook
from .._pagination import AsyncPage, AsyncPager, Page, list_params, parse_page
from .. import webhooks as _verification

__all__ = ["Webhooks", "AsyncWebhooks"]

_BASE = "/api/v1/webhooks"


def _one(webhook_id: str) -> str:
    return f"{_BASE}/{path_segment(webhook_id)}"


def _create_body(
    url: str, events: Optional[Sequence[str]], description: Optional[str]
) -> Dict[str, Any]:
    body: Dict[str, Any] = {"url": url}
    if events is not None:
        if isinstance(events, str):
            raise TypeError("events must be a list of event types, not a string")
        body["events"] = list(events)
    if description is not None:
        body["description"] = description
    return body


def _update_body(
    url: Union[str, NotGiven],
    events: Union[Sequence[str], NotGiven],
    description: Union[str, None, NotGiven],
    active: Union[bool, NotGiven],
    rotate_secret: Union[bool, NotGiven],
    grace_period_seconds: Union[int, NotGiven],
) -> Dict[str, Any]:
    body: Dict[str, Any] = {}
    if not isinstance(url, NotGiven):
        body["url"] = url
    if not isinstance(events, NotGiven):
        if isinstance(events, str):
            raise TypeError("events must be a list of event types, not a string")
        body["events"] = list(events)
    if not isinstance(description, NotGiven):
        body["description"] = description
    if not isinstance(active, NotGiven):
        body["active"] = active
    if not isinstance(rotate_secret, NotGiven):
        body["rotate_secret"] = rotate_secret
    if not isinstance(grace_period_seconds, NotGiven):
        body["grace_period_seconds"] = grace_period_seconds
    return body


def _deliveries(body: Any) -> List[Delivery]:
    return [Delivery.from_json(d) for d in body.get("data") or []]


class Webhooks:
    #: ``client.webhooks.verify(payload, headers, secret)``: the same as ``nodai.webhooks.verify``.
    verify = staticmethod(_verification.verify)

    def __init__(self, client: SyncAPIClient) -> None:
        self._client = client

    def create(
        self,
        url: str,
        *,
        events: Optional[Sequence[str]] = None,
        description: Optional[str] = None,
    ) -> Webhook:
        """Subscribe ``url`` to ``events`` (absent or empty: all). The result's
        ``secret`` (``whsec_...``) is shown this once: keep it for ``verify``."""
        body = _create_body(url, events, description)
        return Webhook.from_json(self._client.request(Request("POST", _BASE, body=body)))

    def list(self, *, limit: Optional[int] = None, cursor: Optional[str] = None) -> Page[Webhook]:
        """The first page; iterate it to walk every endpoint."""

        def fetch(cursor: Optional[str]) -> Page[Webhook]:
            body = self._client.request(Request("GET", _BASE, params=list_params(limit, cursor)))
            data, next_cursor = parse_page(body, Webhook.from_json)
            return Page(data, next_cursor, fetch)

        return fetch(cursor)

    def get(self, webhook_id: str) -> Webhook:
        return Webhook.from_json(self._client.request(Request("GET", _one(webhook_id))))

    def update(
        self,
        webhook_id: str,
        *,
        url: Union[str, NotGiven] = NOT_GIVEN,
        events: Union[Sequence[str], NotGiven] = NOT_GIVEN,
        description: Union[str, None, NotGiven] = NOT_GIVEN,
        active: Union[bool, NotGiven] = NOT_GIVEN,
        rotate_secret: Union[bool, NotGiven] = NOT_GIVEN,
        grace_period_seconds: Union[int, NotGiven] = NOT_GIVEN,
    ) -> Webhook:
        """Change the fields given (``description=None`` clears it). With
        ``rotate_secret=True`` the result carries the new ``secret``, and the old
        one keeps signing too for ``grace_period_seconds``."""
        body = _update_body(url, events, description, active, rotate_secret, grace_period_seconds)
        return Webhook.from_json(self._client.request(Request("PUT", _one(webhook_id), body=body)))

    def delete(self, webhook_id: str) -> None:
        self._client.request(Request("DELETE", _one(webhook_id)))

    def deliveries(self, webhook_id: str) -> List[Delivery]:
        """Newest first: every pending delivery and the last 1000 finished ones."""
        return _deliveries(self._client.request(Request("GET", f"{_one(webhook_id)}/deliveries")))

    def retry(self, webhook_id: str, delivery_id: str) -> Delivery:
        """Send a delivery again now (it becomes ``pending``)."""
        path = f"{_one(webhook_id)}/deliveries/{path_segment(delivery_id)}/retry"
        return Delivery.from_json(self._client.request(Request("POST", path)))

    def test(self, webhook_id: str) -> str:
        """Queue a ``webhook.test`` message to the endpoint; returns its delivery id."""
        body = self._client.request(Request("POST", f"{_one(webhook_id)}/test"))
        return str(body["delivery_id"])


class AsyncWebhooks:
    verify = staticmethod(_verification.verify)

    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def create(
        self,
        url: str,
        *,
        events: Optional[Sequence[str]] = None,
        description: Optional[str] = None,
    ) -> Webhook:
        body = _create_body(url, events, description)
        return Webhook.from_json(await self._client.request(Request("POST", _BASE, body=body)))

    def list(
        self, *, limit: Optional[int] = None, cursor: Optional[str] = None
    ) -> AsyncPager[Webhook]:
        """``await`` it for the first page, or ``async for`` over it for every endpoint."""

        async def fetch(cursor: Optional[str]) -> AsyncPage[Webhook]:
            body = await self._client.request(
                Request("GET", _BASE, params=list_params(limit, cursor))
            )
            data, next_cursor = parse_page(body, Webhook.from_json)
            return AsyncPage(data, next_cursor, fetch)

        return AsyncPager(lambda: fetch(cursor))

    async def get(self, webhook_id: str) -> Webhook:
        return Webhook.from_json(await self._client.request(Request("GET", _one(webhook_id))))

    async def update(
        self,
        webhook_id: str,
        *,
        url: Union[str, NotGiven] = NOT_GIVEN,
        events: Union[Sequence[str], NotGiven] = NOT_GIVEN,
        description: Union[str, None, NotGiven] = NOT_GIVEN,
        active: Union[bool, NotGiven] = NOT_GIVEN,
        rotate_secret: Union[bool, NotGiven] = NOT_GIVEN,
        grace_period_seconds: Union[int, NotGiven] = NOT_GIVEN,
    ) -> Webhook:
        body = _update_body(url, events, description, active, rotate_secret, grace_period_seconds)
        return Webhook.from_json(
            await self._client.request(Request("PUT", _one(webhook_id), body=body))
        )

    async def delete(self, webhook_id: str) -> None:
        await self._client.request(Request("DELETE", _one(webhook_id)))

    async def deliveries(self, webhook_id: str) -> List[Delivery]:
        return _deliveries(
            await self._client.request(Request("GET", f"{_one(webhook_id)}/deliveries"))
        )

    async def retry(self, webhook_id: str, delivery_id: str) -> Delivery:
        path = f"{_one(webhook_id)}/deliveries/{path_segment(delivery_id)}/retry"
        return Delivery.from_json(await self._client.request(Request("POST", path)))

    async def test(self, webhook_id: str) -> str:
        body = await self._client.request(Request("POST", f"{_one(webhook_id)}/test"))
        return str(body["delivery_id"])
