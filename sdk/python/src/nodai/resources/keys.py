"""``client.keys``: API keys under ``/api/v1/api-keys`` (admin token)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, Literal, Mapping, Optional, Sequence, Union

from .._base import AsyncAPIClient, Request, SyncAPIClient, path_segment
from .._models import (
    NOT_GIVEN,
    ApiKey,
    CreatedApiKey,
    LimitParam,
    Money,
    NotGiven,
    Usage,
    format_datetime,
    limits_to_json,
    money_to_json,
)
from .._pagination import AsyncPage, AsyncPager, Page, list_params, parse_page

__all__ = ["Keys", "AsyncKeys", "KeyStatus"]

_BASE = "/api/v1/api-keys"

#: Which keys ``list`` shows: ``live`` (the server's default: not revoked,
#: active or not), ``revoked`` or ``all``.
KeyStatus = Literal["live", "revoked", "all"]


def _key_params(
    limit: Optional[int], cursor: Optional[str], q: Optional[str], status: Optional[KeyStatus]
) -> Dict[str, str]:
    params = list_params(limit, cursor)
    if q is not None:
        params["q"] = q
    if status is not None:
        params["status"] = status
    return params


def _convert(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field == "cost_limit_per_month":
        return money_to_json(value)
    if field == "expires_at":
        return format_datetime(value)
    if field in ("workflow_ids", "alert_thresholds", "allowed_origins"):
        if isinstance(value, str):
            raise TypeError(f"{field} must be a list, not a string")
        return list(value)
    if field == "metadata":
        return dict(value)
    if field == "limits":
        return limits_to_json(value)
    return value


def _create_body(name: str, fields: Mapping[str, Any]) -> Dict[str, Any]:
    # Absent and null mean the same on create (the server's default): send neither.
    body: Dict[str, Any] = {"name": name}
    body.update({k: _convert(k, v) for k, v in fields.items() if v is not None})
    return body


def _update_body(fields: Mapping[str, Any]) -> Dict[str, Any]:
    # Partial update: a field left NOT_GIVEN is absent; None is sent as null (clears it).
    return {k: _convert(k, v) for k, v in fields.items() if not isinstance(v, NotGiven)}


def usage_params(
    from_: Union[datetime, str, None], to: Union[datetime, str, None]
) -> Dict[str, str]:
    params: Dict[str, str] = {}
    if from_ is not None:
        params["from"] = format_datetime(from_)
    if to is not None:
        params["to"] = format_datetime(to)
    return params


def _rotate_body(grace_period_seconds: Optional[int]) -> Dict[str, Any]:
    return {} if grace_period_seconds is None else {"grace_period_seconds": grace_period_seconds}


class Keys:
    def __init__(self, client: SyncAPIClient) -> None:
        self._client = client

    def create(
        self,
        name: str,
        *,
        owner: Optional[str] = None,
        workflow_ids: Optional[Sequence[str]] = None,
        rate_limit_per_hour: Optional[int] = None,
        cost_limit_per_month: Optional[Money] = None,
        alert_thresholds: Optional[Sequence[int]] = None,
        expires_at: Union[datetime, str, None] = None,
        allowed_origins: Optional[Sequence[str]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        active: Optional[bool] = None,
        customer_id: Optional[str] = None,
        limits: Optional[Sequence[LimitParam]] = None,
        max_concurrent: Optional[int] = None,
    ) -> CreatedApiKey:
        """Create a key. The result's ``key`` is the only time the plaintext is shown.

        ``workflow_ids`` empty or absent: any workflow. ``cost_limit_per_month``
        in USD. ``expires_at`` must be in the future (aware datetime or RFC 3339).
        ``customer_id`` names an existing customer: the key's queries count against
        its shared limits too. ``limits`` are ``Limit``s (at most one per metric and
        window; ``rate_limit_per_hour`` is ``Limit("requests", "hour", n)`` and
        ``cost_limit_per_month`` ``Limit("cost", "month", x)``: give either
        spelling). ``max_concurrent`` caps the key's queries in flight.
        """
        body = _create_body(
            name,
            dict(
                owner=owner,
                workflow_ids=workflow_ids,
                rate_limit_per_hour=rate_limit_per_hour,
                cost_limit_per_month=cost_limit_per_month,
                alert_thresholds=alert_thresholds,
                expires_at=expires_at,
                allowed_origins=allowed_origins,
                metadata=metadata,
                active=active,
                customer_id=customer_id,
                limits=limits,
                max_concurrent=max_concurrent,
            ),
        )
        return CreatedApiKey.from_json(self._client.request(Request("POST", _BASE, body=body)))

    def list(
        self,
        *,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        q: Optional[str] = None,
        status: Optional[KeyStatus] = None,
    ) -> Page[ApiKey]:
        """The first page (``limit`` per page, server default 100, at most 1000).

        Iterate the returned page to walk every key, page after page;
        ``.data`` and ``.next_cursor`` are that one page. ``q`` keeps the keys
        whose id, prefix, name or owner contains it, ignoring case. ``status``:
        ``"live"`` (the default: keys not revoked), ``"revoked"`` or ``"all"``.
        """

        def fetch(cursor: Optional[str]) -> Page[ApiKey]:
            body = self._client.request(
                Request("GET", _BASE, params=_key_params(limit, cursor, q, status))
            )
            data, next_cursor = parse_page(body, ApiKey.from_json)
            return Page(data, next_cursor, fetch)

        return fetch(cursor)

    def get(self, key_id: str) -> ApiKey:
        """One key, a revoked one too (``active`` false, ``revoked_at`` set);
        ``NotFoundError`` if there is none."""
        return ApiKey.from_json(self._client.request(Request("GET", f"{_BASE}/{path_segment(key_id)}")))

    def update(
        self,
        key_id: str,
        *,
        name: Union[str, NotGiven] = NOT_GIVEN,
        owner: Union[str, None, NotGiven] = NOT_GIVEN,
        active: Union[bool, NotGiven] = NOT_GIVEN,
        workflow_ids: Union[Sequence[str], NotGiven] = NOT_GIVEN,
        rate_limit_per_hour: Union[int, None, NotGiven] = NOT_GIVEN,
        cost_limit_per_month: Union[Money, None, NotGiven] = NOT_GIVEN,
        alert_thresholds: Union[Sequence[int], NotGiven] = NOT_GIVEN,
        expires_at: Union[datetime, str, None, NotGiven] = NOT_GIVEN,
        allowed_origins: Union[Sequence[str], NotGiven] = NOT_GIVEN,
        metadata: Union[Mapping[str, Any], None, NotGiven] = NOT_GIVEN,
        customer_id: Union[str, None, NotGiven] = NOT_GIVEN,
        limits: Union[Sequence[LimitParam], None, NotGiven] = NOT_GIVEN,
        max_concurrent: Union[int, None, NotGiven] = NOT_GIVEN,
    ) -> ApiKey:
        """Change the fields given; ``None`` clears an optional one (a limit, the owner,
        the expiry, the metadata, the customer); fields left out stay as they are.
        ``limits`` is the complete new list (the two legacy limit fields included):
        ``None`` or ``[]`` removes every limit.

        A revoked key no longer changes: ``ConflictError`` with code ``key_revoked``.
        """
        body = _update_body(
            dict(
                name=name,
                owner=owner,
                active=active,
                workflow_ids=workflow_ids,
                rate_limit_per_hour=rate_limit_per_hour,
                cost_limit_per_month=cost_limit_per_month,
                alert_thresholds=alert_thresholds,
                expires_at=expires_at,
                allowed_origins=allowed_origins,
                metadata=metadata,
                customer_id=customer_id,
                limits=limits,
                max_concurrent=max_concurrent,
            )
        )
        return ApiKey.from_json(
            self._client.request(Request("PUT", f"{_BASE}/{path_segment(key_id)}", body=body))
        )

    def revoke(self, key_id: str) -> None:
        """Revoke the key: it stops validating at once. It is kept for billing
        (``get`` and ``usage`` still answer); revoking it again does nothing."""
        self._client.request(Request("DELETE", f"{_BASE}/{path_segment(key_id)}"))

    def rotate(self, key_id: str, *, grace_period_seconds: Optional[int] = None) -> CreatedApiKey:
        """A new secret for the same key id and usage; the old secret keeps validating
        for ``grace_period_seconds`` (default 0: it stops at once).

        A revoked key cannot be rotated: ``ConflictError`` with code ``key_revoked``.
        """
        return CreatedApiKey.from_json(
            self._client.request(
                Request(
                    "POST",
                    f"{_BASE}/{path_segment(key_id)}/rotate",
                    body=_rotate_body(grace_period_seconds),
                )
            )
        )

    def usage(
        self,
        key_id: str,
        *,
        from_: Union[datetime, str, None] = None,
        to: Union[datetime, str, None] = None,
    ) -> Usage:
        """Usage statistics; ``from_``/``to`` choose the hourly range (default: the last 48 hours)."""
        return Usage.from_json(
            self._client.request(
                Request(
                    "GET",
                    f"{_BASE}/{path_segment(key_id)}/usage",
                    params=usage_params(from_, to),
                )
            )
        )


class AsyncKeys:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        *,
        owner: Optional[str] = None,
        workflow_ids: Optional[Sequence[str]] = None,
        rate_limit_per_hour: Optional[int] = None,
        cost_limit_per_month: Optional[Money] = None,
        alert_thresholds: Optional[Sequence[int]] = None,
        expires_at: Union[datetime, str, None] = None,
        allowed_origins: Optional[Sequence[str]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        active: Optional[bool] = None,
        customer_id: Optional[str] = None,
        limits: Optional[Sequence[LimitParam]] = None,
        max_concurrent: Optional[int] = None,
    ) -> CreatedApiKey:
        """Create a key. The result's ``key`` is the only time the plaintext is shown."""
        body = _create_body(
            name,
            dict(
                owner=owner,
                workflow_ids=workflow_ids,
                rate_limit_per_hour=rate_limit_per_hour,
                cost_limit_per_month=cost_limit_per_month,
                alert_thresholds=alert_thresholds,
                expires_at=expires_at,
                allowed_origins=allowed_origins,
                metadata=metadata,
                active=active,
                customer_id=customer_id,
                limits=limits,
                max_concurrent=max_concurrent,
            ),
        )
        return CreatedApiKey.from_json(await self._client.request(Request("POST", _BASE, body=body)))

    def list(
        self,
        *,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        q: Optional[str] = None,
        status: Optional[KeyStatus] = None,
    ) -> AsyncPager[ApiKey]:
        """``await`` it for the first page, or ``async for`` over it for every key (or those
        matching ``q``; ``status``: ``"live"``, the default, ``"revoked"`` or ``"all"``)."""

        async def fetch(cursor: Optional[str]) -> AsyncPage[ApiKey]:
            body = await self._client.request(
                Request("GET", _BASE, params=_key_params(limit, cursor, q, status))
            )
            data, next_cursor = parse_page(body, ApiKey.from_json)
            return AsyncPage(data, next_cursor, fetch)

        return AsyncPager(lambda: fetch(cursor))

    async def get(self, key_id: str) -> ApiKey:
        return ApiKey.from_json(
            await self._client.request(Request("GET", f"{_BASE}/{path_segment(key_id)}"))
        )

    async def update(
        self,
        key_id: str,
        *,
        name: Union[str, NotGiven] = NOT_GIVEN,
        owner: Union[str, None, NotGiven] = NOT_GIVEN,
        active: Union[bool, NotGiven] = NOT_GIVEN,
        workflow_ids: Union[Sequence[str], NotGiven] = NOT_GIVEN,
        rate_limit_per_hour: Union[int, None, NotGiven] = NOT_GIVEN,
        cost_limit_per_month: Union[Money, None, NotGiven] = NOT_GIVEN,
        alert_thresholds: Union[Sequence[int], NotGiven] = NOT_GIVEN,
        expires_at: Union[datetime, str, None, NotGiven] = NOT_GIVEN,
        allowed_origins: Union[Sequence[str], NotGiven] = NOT_GIVEN,
        metadata: Union[Mapping[str, Any], None, NotGiven] = NOT_GIVEN,
        customer_id: Union[str, None, NotGiven] = NOT_GIVEN,
        limits: Union[Sequence[LimitParam], None, NotGiven] = NOT_GIVEN,
        max_concurrent: Union[int, None, NotGiven] = NOT_GIVEN,
    ) -> ApiKey:
        """Change the fields given; ``None`` clears an optional one."""
        body = _update_body(
            dict(
                name=name,
                owner=owner,
                active=active,
                workflow_ids=workflow_ids,
                rate_limit_per_hour=rate_limit_per_hour,
                cost_limit_per_month=cost_limit_per_month,
                alert_thresholds=alert_thresholds,
                expires_at=expires_at,
                allowed_origins=allowed_origins,
                metadata=metadata,
                customer_id=customer_id,
                limits=limits,
                max_concurrent=max_concurrent,
            )
        )
        return ApiKey.from_json(
            await self._client.request(Request("PUT", f"{_BASE}/{path_segment(key_id)}", body=body))
        )

    async def revoke(self, key_id: str) -> None:
        await self._client.request(Request("DELETE", f"{_BASE}/{path_segment(key_id)}"))

    async def rotate(
        self, key_id: str, *, grace_period_seconds: Optional[int] = None
    ) -> CreatedApiKey:
        return CreatedApiKey.from_json(
            await self._client.request(
                Request(
                    "POST",
                    f"{_BASE}/{path_segment(key_id)}/rotate",
                    body=_rotate_body(grace_period_seconds),
                )
            )
        )

    async def usage(
        self,
        key_id: str,
        *,
        from_: Union[datetime, str, None] = None,
        to: Union[datetime, str, None] = None,
    ) -> Usage:
        return Usage.from_json(
            await self._client.request(
                Request(
                    "GET",
                    f"{_BASE}/{path_segment(key_id)}/usage",
                    params=usage_params(from_, to),
                )
            )
        )
