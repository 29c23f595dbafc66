"""``client.customers``: the seller's customers under ``/api/v1/customers`` (admin token).

A key that names a customer (``keys.create(..., customer_id=...)``) counts its
queries against its own limits and its customer's, which all the customer's
keys share; the customer's usage is the sum of its keys'.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from .._base import AsyncAPIClient, Request, SyncAPIClient, path_segment
from .._models import (
    NOT_GIVEN,
    Billing,
    Customer,
    LimitParam,
    Money,
    NotGiven,
    Usage,
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
