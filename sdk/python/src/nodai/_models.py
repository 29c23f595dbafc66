"""Typed views of the server's JSON objects, and the conversions to and from the wire.

Money is ``decimal.Decimal`` on this side: the server keeps exact integer
micro-dollars and sends at most 6 decimals, and a float sum would lose that.
Times are timezone-aware UTC ``datetime`` objects. Objects the server adds
fields to keep working: unknown fields are ignored, never an error.

This module does no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, List, Mapping, Optional, Union

__all__ = [
    "NotGiven",
    "NOT_GIVEN",
    "Money",
    "RateLimit",
    "QueryResult",
    "Chunk",
    "Done",
    "StreamEvent",
    "ApiKey",
    "CreatedApiKey",
    "Usage",
    "HourlyUsage",
    "DailyUsage",
    "Workflow",
    "Webhook",
    "Delivery",
]


class NotGiven:
    """The type of ``NOT_GIVEN``: marks an argument the caller left out.

    ``update`` methods are partial: a field left out stays as it is, while
    ``None`` sends JSON ``null`` and clears it. ``NOT_GIVEN`` tells the two apart.
    """

    _instance: Optional[NotGiven] = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven()

#: What the SDK accepts for a USD amount. Decimal or str keep it exact.
Money = Union[Decimal, int, float, str]


# --- wire conversions -------------------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_datetime(value: Any) -> datetime:
    """An RFC 3339 timestamp as an aware UTC datetime (any fraction length; Python 3.9 too)."""
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 string, got {value!r}")
    m = _RFC3339.match(value)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    if offset in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = 1 if offset[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    parsed = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=tz
    )
    return parsed.astimezone(timezone.utc)


def parse_optional_datetime(value: Any) -> Optional[datetime]:
    return None if value is None else parse_datetime(value)


def format_datetime(value: Union[datetime, str]) -> str:
    """A datetime as RFC 3339 UTC; strings pass through for the server to judge."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError("datetimes sent to nodai must be timezone-aware (e.g. tzinfo=timezone.utc)")
    utc = value.astimezone(timezone.utc)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


def parse_money(value: Any) -> Decimal:
    """A JSON number of USD as the exact Decimal the server meant.

    The server sends at most 6 decimals; ``str`` of the float the JSON parser
    made is the shortest text that round-trips, which is that decimal text.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number of USD, got {value!r}")
    return Decimal(str(value))


def parse_optional_money(value: Any) -> Optional[Decimal]:
    return None if value is None else parse_money(value)


def money_to_json(value: Money) -> Union[int, float]:
    """A USD amount as a JSON number, refusing what is not a finite number."""
    if isinstance(value, bool):
        raise TypeError("a USD amount must be a number, not a bool")
    try:
        exact = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError(f"not a USD amount: {value!r}") from None
    if not exact.is_finite():
        raise ValueError(f"not a finite USD amount: {value!r}")
    if exact == exact.to_integral_value():
        return int(exact)
    return float(exact)


# --- objects ----------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """The key's rate-limit state from the ``X-RateLimit-*`` response headers."""

    #: Queries allowed per rolling hour.
    limit: int
    #: Queries left in the current window.
    remaining: int
    #: When the window frees up, in epoch seconds (``reset_at`` as a datetime).
    reset: int

    @property
    def reset_at(self) -> datetime:
        return datetime.fromtimestamp(self.reset, tz=timezone.utc)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Optional[RateLimit]:
        """The state, or ``None`` when the key has no rate limit (no headers)."""
        try:
            return cls(
                limit=int(headers["x-ratelimit-limit"]),
                remaining=int(headers["x-ratelimit-remaining"]),
                reset=int(headers["x-ratelimit-reset"]),
            )
        except (KeyError, ValueError):
            return None


@dataclass(frozen=True)
class QueryResult:
    """A metered query's answer."""

    #: What the workflow's upstream answered (``builtin:echo``: the input).
    output: Any
    #: USD charged for this query.
    cost: Decimal
    duration_ms: int
    #: The server's id of this query (``req_...``), also in its usage event.
    request_id: str
    #: The key's rate-limit state after this query; ``None`` for a key without a limit.
    rate_limit: Optional[RateLimit]

    @classmethod
    def from_json(cls, body: Mapping[str, Any], headers: Mapping[str, str]) -> QueryResult:
        usage = body["usage"]
        return cls(
            output=body.get("output"),
            cost=parse_money(usage["cost"]),
            duration_ms=int(usage["duration_ms"]),
            request_id=str(body["request_id"]),
            rate_limit=RateLimit.from_headers(headers),
        )


@dataclass(frozen=True)
class Chunk:
    """A piece of a streamed query's output, as the upstream produced it."""

    text: str


@dataclass(frozen=True)
class Done:
    """The end of a streamed query: what it cost. Always the last event."""

    #: USD charged for this query.
    cost: Decimal
    duration_ms: int
    #: The server's id of this query (``req_...``), also in its usage event.
    request_id: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Done:
        usage = body["usage"]
        return cls(
            cost=parse_money(usage["cost"]),
            duration_ms=int(usage["duration_ms"]),
            request_id=str(body["request_id"]),
        )


#: What iterating a ``QueryStream`` yields: ``Chunk``s, then one ``Done``.
StreamEvent = Union[Chunk, Done]


@dataclass(frozen=True)
class ApiKey:
    """An API key as the admin API shows it (never its secret).

    A revoked key is kept for billing: ``active`` is ``False`` and
    ``revoked_at`` says when (``None`` for a live key).
    """

    id: str
    #: The first 11 characters of the key: ``nk_`` and 8 hex.
    prefix: str
    name: str
    owner: Optional[str]
    active: bool
    #: Workflows this key may query; empty means any.
    workflow_ids: List[str]
    rate_limit_per_hour: Optional[int]
    #: USD per UTC calendar month.
    cost_limit_per_month: Optional[Decimal]
    #: Percents of the cost limit that fire ``usage.threshold``.
    alert_thresholds: List[int]
    expires_at: Optional[datetime]
    allowed_origins: List[str]
    created_at: datetime
    updated_at: datetime
    last_used_at: Optional[datetime]
    metadata: Any
    #: When it was revoked, or ``None`` for a live key.
    revoked_at: Optional[datetime]

    @staticmethod
    def _fields(body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(
            id=str(body["id"]),
            prefix=str(body["prefix"]),
            name=str(body["name"]),
            owner=body.get("owner"),
            active=bool(body["active"]),
            workflow_ids=list(body.get("workflow_ids") or []),
            rate_limit_per_hour=body.get("rate_limit_per_hour"),
            cost_limit_per_month=parse_optional_money(body.get("cost_limit_per_month")),
            alert_thresholds=list(body.get("alert_thresholds") or []),
            expires_at=parse_optional_datetime(body.get("expires_at")),
            allowed_origins=list(body.get("allowed_origins") or []),
            created_at=parse_datetime(body["created_at"]),
            updated_at=parse_datetime(body["updated_at"]),
            last_used_at=parse_optional_datetime(body.get("last_used_at")),
            metadata=body.get("metadata"),
            revoked_at=parse_optional_datetime(body.get("revoked_at")),
        )

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ApiKey:
        return cls(**cls._fields(body))


@dataclass(frozen=True)
class CreatedApiKey(ApiKey):
    """A key with its plaintext, from ``create`` and ``rotate`` only: store ``key`` now.

    ``key`` is left out of ``repr`` so a log line of the object leaks nothing.
    """

    key: str = field(repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> CreatedApiKey:
        return cls(**cls._fields(body), key=str(body["key"]))


@dataclass(frozen=True)
class HourlyUsage:
    #: Start of the UTC hour.
    hour: datetime
    requests: int
    cost: Decimal
    errors: int


@dataclass(frozen=True)
class DailyUsage:
    #: The UTC date.
    date: date
    requests: int
    cost: Decimal
    errors: int


@dataclass(frozen=True)
class Usage:
    """A key's usage, from the projection its limits are enforced from.

    Counts cover admitted queries (ok or upstream error), not rejected ones.
    """

    key_id: str
    total_requests: int
    total_cost: Decimal
    requests_today: int
    cost_today: Decimal
    #: Rolling 60 minutes: what the rate limit sees.
    requests_this_hour: int
    #: UTC calendar month to date: what the cost limit sees.
    cost_this_month: Decimal
    last_used_at: Optional[datetime]
    #: Every UTC hour of the range, oldest first, zeros included.
    hourly: List[HourlyUsage]
    #: Every UTC day of the range, oldest first.
    daily: List[DailyUsage]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Usage:
        return cls(
            key_id=str(body["key_id"]),
            total_requests=int(body["total_requests"]),
            total_cost=parse_money(body["total_cost"]),
            requests_today=int(body["requests_today"]),
            cost_today=parse_money(body["cost_today"]),
            requests_this_hour=int(body["requests_this_hour"]),
            cost_this_month=parse_money(body["cost_this_month"]),
            last_used_at=parse_optional_datetime(body.get("last_used_at")),
            hourly=[
                HourlyUsage(
                    hour=parse_datetime(h["hour"]),
                    requests=int(h["requests"]),
                    cost=parse_money(h["cost"]),
                    errors=int(h["errors"]),
                )
                for h in body.get("hourly") or []
            ],
            daily=[
                DailyUsage(
                    date=date.fromisoformat(d["date"]),
                    requests=int(d["requests"]),
                    cost=parse_money(d["cost"]),
                    errors=int(d["errors"]),
                )
                for d in body.get("daily") or []
            ],
        )


@dataclass(frozen=True)
class Workflow:
    #: ``[a-z0-9_-]{1,64}``, chosen by the caller.
    id: str
    name: str
    #: ``http(s)://...`` or ``builtin:echo``.
    upstream_url: str
    #: USD charged per query when the upstream reports no cost.
    price_per_request: Decimal
    #: USD: the most one query may cost, or None. In-flight queries count against
    #: a key's cost limit at it (else at ``price_per_request``); a cost the upstream
    #: reports above it is recorded as it.
    max_cost_per_request: Optional[Decimal]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Workflow:
        return cls(
            id=str(body["id"]),
            name=str(body["name"]),
            upstream_url=str(body["upstream_url"]),
            price_per_request=parse_money(body.get("price_per_request", 0)),
            max_cost_per_request=parse_optional_money(body.get("max_cost_per_request")),
            created_at=parse_datetime(body["created_at"]),
            updated_at=parse_datetime(body["updated_at"]),
        )


@dataclass(frozen=True)
class Webhook:
    """A webhook endpoint. ``secret`` is set only by ``create`` and by an
    ``update`` that rotated it; it is left out of ``repr``."""

    id: str
    url: str
    #: Event types delivered; empty means all.
    events: List[str]
    description: Optional[str]
    #: False when turned off, or disabled by the server after 5 days of failures.
    active: bool
    disabled_reason: Optional[str]
    disabled_at: Optional[datetime]
    created_at: datetime
    updated_at: datetime
    secret: Optional[str] = field(default=None, repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Webhook:
        return cls(
            id=str(body["id"]),
            url=str(body["url"]),
            events=list(body.get("events") or []),
            description=body.get("description"),
            active=bool(body["active"]),
            disabled_reason=body.get("disabled_reason"),
            disabled_at=parse_optional_datetime(body.get("disabled_at")),
            created_at=parse_datetime(body["created_at"]),
            updated_at=parse_datetime(body["updated_at"]),
            secret=body.get("secret"),
        )


@dataclass(frozen=True)
class Delivery:
    """One message to one webhook endpoint, with its attempts so far."""

    #: The message id, also the ``webhook-id`` header of every attempt.
    id: str
    event_type: str
    #: ``pending``, ``succeeded`` or ``failed``.
    status: str
    attempts: int
    last_status_code: Optional[int]
    last_error: Optional[str]
    next_attempt_at: Optional[datetime]
    created_at: datetime

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Delivery:
        return cls(
            id=str(body["id"]),
            event_type=str(body["event_type"]),
            status=str(body["status"]),
            attempts=int(body["attempts"]),
            last_status_code=body.get("last_status_code"),
            last_error=body.get("last_error"),
            next_attempt_at=parse_optional_datetime(body.get("next_attempt_at")),
            created_at=parse_datetime(body["created_at"]),
        )
