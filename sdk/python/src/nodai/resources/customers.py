"""``client.customers``: the seller's customers under ``/api/v1/customers`` (admin token).

A key that names a customer (``keys.create(..., customer_id=...)``) counts its
queries against its own limits and its customer's, which all the customer's
keys share; the customer's usage is the sum of its keys'. A ``prepaid``
customer's queries are paid from credit grants (``grant_credits``,
``credits``, ``void_credits``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from .._base import AsyncAPIClient, Request, SyncAPIClient, path_segment
from .._models import (
    NOT_GIVEN,
    Billing,
    Credits,
    Customer,
    Grant,
    LimitParam,
    Money,
    NotGiven,
    Usage,
    format_datetime,
    limits_to_json,
    money_to_json,
)
from .._pagination import AsyncPage, AsyncPager, Page, list_params, parse_page
from .keys import usage_params

__all__ = ["Customers", "AsyncCustomers"]

_BASE = "/api/v1/customers"


def _one(customer_id: str) -> str:
    return f"{_BASE}/{path_segment(customer_id)}"


def _list_params(limit: Optional[int], cursor: Optional[str], q: Optional[str]) -> Dict[str, str]:
    params = list_params(limit, cursor)
    if q is not None:
        params["q"] = q
    return params


def _convert(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field == "low_balance_threshold":
        return money_to_json(value)
    if field == "limits":
        return limits_to_json(value)
    if field == "metadata":
        return dict(value)
    return value


def _create_body(id: str, name: str, fields: Mapping[str, Any]) -> Dict[str, Any]:
    # Absent and null mean the same on create (the server's default): send neither.
    body: Dict[str, Any] = {"id": id, "name": name}
    body.update({k: _convert(k, v) for k, v in fields.items() if v is not None})
    return body


def _update_body(fields: Mapping[str, Any]) -> Dict[str, Any]:
    # Partial update: a field left NOT_GIVEN is absent; None is sent as null (clears it).
    return {k: _convert(k, v) for k, v in fields.items() if not isinstance(v, NotGiven)}


def _credits_path(customer_id: str) -> str:
    return f"{_one(customer_id)}/credits"


def _grant_request(
    customer_id: str,
    amount: Money,
    expires_at: Union[datetime, str, None],
    description: Optional[str],
    idempotency_key: Optional[str],
) -> Request:
    body: Dict[str, Any] = {"amount": money_to_json(amount)}
    if expires_at is not None:
        body["expires_at"] = format_datetime(expires_at)
    if description is not None:
        body["description"] = description
    # One key per call, made here when the caller gave none: every retry of
    # this call then names the same grant, so it is never granted twice.
    key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
    return Request("POST", _credits_path(customer_id), body=body, idempotency_key=key)


def _void_request(customer_id: str, grant_id: str) -> Request:
    return Request("POST", f"{_credits_path(customer_id)}/{path_segment(grant_id)}/void")


class Customers:
    def __init__(self, client: SyncAPIClient) -> None:
        self._client = client

    def create(
        self,
        id: str,
        *,
        name: str,
        email: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        limits: Optional[Sequence[LimitParam]] = None,
        max_concurrent: Optional[int] = None,
        billing: Optional[Billing] = None,
        low_balance_threshold: Optional[Money] = None,
        billing_anchor_day: Optional[int] = None,
    ) -> Customer:
        """Create a customer under your own ``id`` (``[A-Za-z0-9_.:@-]{1,128}``);
        ``ConflictError`` with code ``customer_exists`` if it is taken.

        ``limits`` (``Limit``s, at most one per metric and window) and
        ``max_concurrent`` are shared by all the customer's keys. ``billing``:
        ``"postpaid"`` (the default) or ``"prepaid"``; ``low_balance_threshold`` in
        USD; ``billing_anchor_day`` (1 to 28, default 1) starts its monthly periods.
        """
        body = _create_body(
            id,
            name,
            dict(
                email=email,
                metadata=metadata,
                limits=limits,
                max_concurrent=max_concurrent,
                billing=billing,
                low_balance_threshold=low_balance_threshold,
                billing_anchor_day=billing_anchor_day,
            ),
        )
        return Customer.from_json(self._client.request(Request("POST", _BASE, body=body)))

    def list(
        self,
        *,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        q: Optional[str] = None,
    ) -> Page[Customer]:
        """The first page (``limit`` per page, server default 100, at most 1000); iterate
        it to walk every customer. ``q`` keeps those whose id, name or email contains
        it, ignoring case."""

        def fetch(cursor: Optional[str]) -> Page[Customer]:
            body = self._client.request(Request("GET", _BASE, params=_list_params(limit, cursor, q)))
            data, next_cursor = parse_page(body, Customer.from_json)
            return Page(data, next_cursor, fetch)

        return fetch(cursor)

    def get(self, customer_id: str) -> Customer:
        """One customer; ``NotFoundError`` with code ``customer_not_found`` if there is none."""
        return Customer.from_json(self._client.request(Request("GET", _one(customer_id))))

    def update(
        self,
        customer_id: str,
        *,
        name: Union[str, NotGiven] = NOT_GIVEN,
        email: Union[str, None, NotGiven] = NOT_GIVEN,
        metadata: Union[Mapping[str, Any], None, NotGiven] = NOT_GIVEN,
        limits: Union[Sequence[LimitParam], None, NotGiven] = NOT_GIVEN,
        max_concurrent: Union[int, None, NotGiven] = NOT_GIVEN,
        billing: Union[Billing, NotGiven] = NOT_GIVEN,
        low_balance_threshold: Union[Money, None, NotGiven] = NOT_GIVEN,
        billing_anchor_day: Union[int, NotGiven] = NOT_GIVEN,
    ) -> Customer:
        """Change the fields given; ``None`` clears an optional one (the email, the
        metadata, ``max_concurrent``, ``low_balance_threshold``); fields left out stay
        as they are. ``limits`` is the complete new list: ``None`` or ``[]`` removes
        every limit."""
        body = _update_body(
            dict(
                name=name,
                email=email,
                metadata=metadata,
                limits=limits,
                max_concurrent=max_concurrent,
                billing=billing,
                low_balance_threshold=low_balance_threshold,
                billing_anchor_day=billing_anchor_day,
            )
        )
        return Customer.from_json(self._client.request(Request("PUT", _one(customer_id), body=body)))

    def delete(self, customer_id: str) -> None:
        """Delete the customer. While it has live keys: ``ConflictError`` with code
        ``customer_has_keys`` (revoke them, or move them to another customer, first).
        Its usage stays readable."""
        self._client.request(Request("DELETE", _one(customer_id)))

    def usage(
        self,
        customer_id: str,
        *,
        from_: Union[datetime, str, None] = None,
        to: Union[datetime, str, None] = None,
    ) -> Usage:
        """The customer's usage: the shape of a key's (``customer_id`` set, ``key_id``
        ``None``), summed over its keys, revoked ones included. ``from_``/``to`` choose
        the range of the series (default: the last 48 hours and 31 days)."""
        return Usage.from_json(
            self._client.request(
                Request("GET", f"{_one(customer_id)}/usage", params=usage_params(from_, to))
            )
        )

    def grant_credits(
        self,
        customer_id: str,
        amount: Money,
        *,
        expires_at: Union[datetime, str, None] = None,
        description: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> Grant:
        """Grant the customer ``amount`` USD (more than 0) of prepaid credits.

        ``expires_at`` (in the future; default never) is when what is left of the
        grant lapses; ``description`` is at most 1000 characters.

        ``idempotency_key`` (1 to 255 visible ASCII characters, e.g. your order or
        payment id) makes the grant safe to repeat: a request with a key already
        used answers the first grant again, and with another body raises
        ``IdempotencyConflictError``. Without one, the SDK makes a fresh key for
        this call, so its own retries (503s and connection failures, even after
        the request was sent) never grant twice; pass your own to make a retry
        of your own (another call, another process) safe too.
        """
        request = _grant_request(customer_id, amount, expires_at, description, idempotency_key)
        return Grant.from_json(self._client.request(request))

    def credits(self, customer_id: str) -> Credits:
        """The customer's credit ``balance`` (USD; slightly negative after the
        query that crossed zero) and every grant, voided and expired ones included."""
        return Credits.from_json(self._client.request(Request("GET", _credits_path(customer_id))))

    def void_credits(self, customer_id: str, grant_id: str) -> Grant:
        """Void a grant: what is left of it no longer counts. Voiding it again
        does nothing; ``NotFoundError`` with code ``grant_not_found`` if the
        customer has no such grant."""
        return Grant.from_json(self._client.request(_void_request(customer_id, grant_id)))


class AsyncCustomers:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def create(
        self,
        id: str,
        *,
        name: str,
        email: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        limits: Optional[Sequence[LimitParam]] = None,
        max_concurrent: Optional[int] = None,
        billing: Optional[Billing] = None,
        low_balance_threshold: Optional[Money] = None,
        billing_anchor_day: Optional[int] = None,
    ) -> Customer:
        """Create a customer; see ``Customers.create``."""
        body = _create_body(
            id,
            name,
            dict(
                email=email,
                metadata=metadata,
                limits=limits,
                max_concurrent=max_concurrent,
                billing=billing,
                low_balance_threshold=low_balance_threshold,
                billing_anchor_day=billing_anchor_day,
            ),
        )
        return Customer.from_json(await self._client.request(Request("POST", _BASE, body=body)))

    def list(
        self,
        *,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        q: Optional[str] = None,
    ) -> AsyncPager[Customer]:
        """``await`` it for the first page, or ``async for`` over it for every customer
        (or those whose id, name or email contains ``q``)."""

        async def fetch(cursor: Optional[str]) -> AsyncPage[Customer]:
            body = await self._client.request(
                Request("GET", _BASE, params=_list_params(limit, cursor, q))
            )
            data, next_cursor = parse_page(body, Customer.from_json)
            return AsyncPage(data, next_cursor, fetch)

        return AsyncPager(lambda: fetch(cursor))

    async def get(self, customer_id: str) -> Customer:
        return Customer.from_json(await self._client.request(Request("GET", _one(customer_id))))

    async def update(
        self,
        customer_id: str,
        *,
        name: Union[str, NotGiven] = NOT_GIVEN,
        email: Union[str, None, NotGiven] = NOT_GIVEN,
        metadata: Union[Mapping[str, Any], None, NotGiven] = NOT_GIVEN,
        limits: Union[Sequence[LimitParam], None, NotGiven] = NOT_GIVEN,
        max_concurrent: Union[int, None, NotGiven] = NOT_GIVEN,
        billing: Union[Billing, NotGiven] = NOT_GIVEN,
        low_balance_threshold: Union[Money, None, NotGiven] = NOT_GIVEN,
        billing_anchor_day: Union[int, NotGiven] = NOT_GIVEN,
    ) -> Customer:
        """Change the fields given; ``None`` clears an optional one."""
        body = _update_body(
            dict(
                name=name,
                email=email,
                metadata=metadata,
                limits=limits,
                max_concurrent=max_concurrent,
                billing=billing,
                low_balance_threshold=low_balance_threshold,
                billing_anchor_day=billing_anchor_day,
            )
        )
        return Customer.from_json(
            await self._client.request(Request("PUT", _one(customer_id), body=body))
        )

    async def delete(self, customer_id: str) -> None:
        await self._client.request(Request("DELETE", _one(customer_id)))

    async def usage(
        self,
        customer_id: str,
        *,
        from_: Union[datetime, str, None] = None,
        to: Union[datetime, str, None] = None,
    ) -> Usage:
        return Usage.from_json(
            await self._client.request(
                Request("GET", f"{_one(customer_id)}/usage", params=usage_params(from_, to))
            )
        )

    async def grant_credits(
        self,
        customer_id: str,
        amount: Money,
        *,
        expires_at: Union[datetime, str, None] = None,
        description: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> Grant:
        """Grant prepaid credits; see ``Customers.grant_credits`` (a key is made
        for the call when none is given, so retries never grant twice)."""
        request = _grant_request(customer_id, amount, expires_at, description, idempotency_key)
        return Grant.from_json(await self._client.request(request))

    async def credits(self, customer_id: str) -> Credits:
        return Credits.from_json(await self._client.request(Request("GET", _credits_path(customer_id))))

    async def void_credits(self, customer_id: str, grant_id: str) -> Grant:
        return Grant.from_json(await self._client.request(_void_request(customer_id, grant_id)))
