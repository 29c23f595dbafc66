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
from typing import Any, Dict, List, Literal, Mapping, Optional, TypedDict, Union

__all__ = [
    "NotGiven",
    "NOT_GIVEN",
    "Money",
    "LimitMetric",
    "LimitWindow",
    "Limit",
    "LimitParam",
    "ReachedLimit",
    "Billing",
    "RateLimit",
    "QueryResult",
    "Chunk",
    "Done",
    "StreamEvent",
    "ApiKey",
    "CreatedApiKey",
    "Customer",
    "Grant",
    "Credits",
    "Usage",
    "HourlyUsage",
    "DailyUsage",
    "Workflow",
    "Webhook",
    "Delivery",
    "LimitStanding",
    "Verification",
    "UsageEvent",
    "UsageEventData",
    "RejectedEvent",
    "IngestResult",
    "Granularity",
    "UsageGroup",
    "UsageRow",
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


# --- limits -----------------------------------------------------------------

#: What a limit counts: admitted queries, input + output tokens, or USD.
LimitMetric = Literal["requests", "tokens", "cost"]
#: Its window: ``minute``, ``hour`` and ``day`` roll (``day`` is the UTC day for
#: ``cost``); ``month`` is the calendar month (or a customer's billing month).
#: ``requests`` and ``tokens`` take all four, ``cost`` only ``day`` and ``month``.
LimitWindow = Literal["minute", "hour", "day", "month"]
#: A customer's billing: ``postpaid`` (the default) or ``prepaid`` (from credits).
Billing = Literal["postpaid", "prepaid"]


def _parse_limit_max(metric: Any, value: Any) -> Union[int, Decimal]:
    if metric == "cost":
        return parse_money(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number as a limit's max, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Limit:
    """A named limit of a key or a customer: at most ``max`` per ``window``.

    ``Limit("requests", "minute", 60)``, ``Limit("tokens", "day", 1_000_000)``,
    ``Limit("cost", "month", Decimal("50"))``. ``max`` is a count for
    ``requests`` and ``tokens``, USD (a ``Decimal`` when read) for ``cost``.
    A query is admitted while the count is below ``max``.
    """

    metric: LimitMetric
    window: LimitWindow
    max: Union[int, Decimal]

    def to_json(self) -> Dict[str, Any]:
        return limit_to_json(self)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Limit:
        metric = body["metric"]
        return cls(metric=metric, window=body["window"], max=_parse_limit_max(metric, body["max"]))


#: What ``limits=`` accepts: ``Limit`` objects, or mappings with the same keys
#: (``{"metric": "requests", "window": "minute", "max": 60}``).
LimitParam = Union[Limit, Mapping[str, Any]]


def limit_to_json(value: LimitParam) -> Dict[str, Any]:
    """One limit as the server takes it; money for ``cost``, a whole number otherwise."""
    metric: Any
    window: Any
    max_: Any
    if isinstance(value, Limit):
        metric, window, max_ = value.metric, value.window, value.max
    elif isinstance(value, Mapping):
        unknown = set(value) - {"metric", "window", "max"}
        if unknown:
            raise ValueError(f"a limit has metric, window and max only, not {sorted(unknown)}")
        metric, window, max_ = value.get("metric"), value.get("window"), value.get("max")
    else:
        raise TypeError(f"a limit must be a nodai.Limit or a mapping, not {type(value).__name__}")
    if metric == "cost":
        return {"metric": metric, "window": window, "max": money_to_json(max_)}
    if isinstance(max_, Decimal) and max_ == max_.to_integral_value():
        max_ = int(max_)
    return {"metric": metric, "window": window, "max": max_}


def limits_to_json(values: Any) -> List[Dict[str, Any]]:
    if isinstance(values, (str, bytes, Limit)) or isinstance(values, Mapping):
        raise TypeError("limits must be a list of limits")
    return [limit_to_json(v) for v in values]


def parse_limits(value: Any) -> List[Limit]:
    return [Limit.from_json(v) for v in value or []]


@dataclass(frozen=True)
class ReachedLimit:
    """The limit that refused a query: the ``limit`` of a rate-limit, concurrency
    or cost-limit problem (``error.limit``)."""

    #: ``key`` (the key's own limit) or ``customer`` (shared by its customer's keys).
    scope: str
    #: ``requests``, ``tokens``, ``cost``, or ``concurrent`` for ``max_concurrent``.
    metric: str
    #: ``minute``, ``hour``, ``day`` or ``month``; ``None`` for ``concurrent``.
    window: Optional[str]
    #: A count, or USD (a ``Decimal``) for ``cost``.
    max: Union[int, Decimal]

    @classmethod
    def from_json(cls, body: Any) -> Optional[ReachedLimit]:
        """The ``limit`` member of a problem, or ``None`` when absent or malformed."""
        if not isinstance(body, Mapping):
            return None
        try:
            scope, metric, window = body["scope"], body["metric"], body.get("window")
            if not isinstance(scope, str) or not isinstance(metric, str):
                return None
            return cls(
                scope=scope,
                metric=metric,
                window=window if isinstance(window, str) else None,
                max=_parse_limit_max(metric, body["max"]),
            )
        except (KeyError, ValueError):
            return None


# --- objects ----------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """The rate-limit state from the ``X-RateLimit-*`` response headers: of the
    requests limits (the key's and its customer's), the one with the fewest remaining."""

    #: Queries that limit allows in its window.
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
    #: Input (prompt) tokens the upstream reported; 0 when it reported none.
    input_tokens: int = 0
    #: Output (completion) tokens the upstream reported; 0 when it reported none.
    output_tokens: int = 0

    @classmethod
    def from_json(cls, body: Mapping[str, Any], headers: Mapping[str, str]) -> QueryResult:
        usage = body["usage"]
        return cls(
            output=body.get("output"),
            cost=parse_money(usage["cost"]),
            duration_ms=int(usage["duration_ms"]),
            request_id=str(body["request_id"]),
            rate_limit=RateLimit.from_headers(headers),
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
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
    #: Input (prompt) tokens the upstream reported; 0 when it reported none.
    input_tokens: int = 0
    #: Output (completion) tokens the upstream reported; 0 when it reported none.
    output_tokens: int = 0

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Done:
        usage = body["usage"]
        return cls(
            cost=parse_money(usage["cost"]),
            duration_ms=int(usage["duration_ms"]),
            request_id=str(body["request_id"]),
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
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
    #: Requests per rolling hour: the same limit as ``Limit("requests", "hour", n)``
    #: in ``limits``.
    rate_limit_per_hour: Optional[int]
    #: USD per calendar month: the same limit as ``Limit("cost", "month", x)`` in ``limits``.
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
    #: The customer whose shared limits the key's queries also count against, or ``None``.
    customer_id: Optional[str]
    #: Every limit of the key, ``rate_limit_per_hour`` and ``cost_limit_per_month`` included.
    limits: List[Limit]
    #: The most queries of this key in flight at once, or ``None``.
    max_concurrent: Optional[int]

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
            customer_id=body.get("customer_id"),
            limits=parse_limits(body.get("limits")),
            max_concurrent=body.get("max_concurrent"),
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
class Customer:
    """One of the seller's customers. Its keys (``ApiKey.customer_id``) share its
    ``limits`` and ``max_concurrent``; its usage is the sum of theirs."""

    #: The seller's own id for the customer, ``[A-Za-z0-9_.:@-]{1,128}``.
    id: str
    name: str
    email: Optional[str]
    metadata: Any
    #: Shared by all the customer's keys, on top of each key's own.
    limits: List[Limit]
    #: The most queries of all its keys in flight at once, or ``None``.
    max_concurrent: Optional[int]
    #: ``postpaid`` or ``prepaid``.
    billing: str
    #: USD: ``credits.low`` fires when a prepaid balance falls below it.
    low_balance_threshold: Optional[Decimal]
    #: 1 to 28: the day (UTC midnight) the customer's monthly periods start.
    billing_anchor_day: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Customer:
        return cls(
            id=str(body["id"]),
            name=str(body["name"]),
            email=body.get("email"),
            metadata=body.get("metadata"),
            limits=parse_limits(body.get("limits")),
            max_concurrent=body.get("max_concurrent"),
            billing=str(body.get("billing") or "postpaid"),
            low_balance_threshold=parse_optional_money(body.get("low_balance_threshold")),
            billing_anchor_day=int(body.get("billing_anchor_day") or 1),
            created_at=parse_datetime(body["created_at"]),
            updated_at=parse_datetime(body["updated_at"]),
        )


@dataclass(frozen=True)
class Grant:
    """A grant of prepaid credits to a customer (``customers.grant_credits``).

    A prepaid customer's queries draw from its live grants, the one that
    expires soonest first. A voided or expired grant is kept, with
    ``voided_at`` set or ``expires_at`` past, and no longer counts.
    """

    #: ``gr_...``
    id: str
    #: USD granted.
    amount: Decimal
    #: USD not drawn yet.
    remaining: Decimal
    #: When what is left of it lapses, or ``None`` for never.
    expires_at: Optional[datetime]
    created_at: datetime
    #: When it was voided, or ``None``.
    voided_at: Optional[datetime]
    description: Optional[str]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Grant:
        return cls(
            id=str(body["id"]),
            amount=parse_money(body["amount"]),
            remaining=parse_money(body["remaining"]),
            expires_at=parse_optional_datetime(body.get("expires_at")),
            created_at=parse_datetime(body["created_at"]),
            voided_at=parse_optional_datetime(body.get("voided_at")),
            description=body.get("description"),
        )


@dataclass(frozen=True)
class Credits:
    """A customer's prepaid credits (``customers.credits``): its balance and every grant."""

    #: USD: what is left of the live grants, less what queries drew beyond them.
    #: It may be slightly negative: the query that crosses zero is allowed, so
    #: the balance goes below zero by at most one query's cost.
    balance: Decimal
    #: Every grant, voided and expired ones included, in the order granted.
    grants: List[Grant]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Credits:
        return cls(
            balance=parse_money(body["balance"]),
            grants=[Grant.from_json(g) for g in body.get("grants") or []],
        )


@dataclass(frozen=True)
class HourlyUsage:
    #: Start of the UTC hour.
    hour: datetime
    requests: int
    cost: Decimal
    errors: int
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class DailyUsage:
    #: The UTC date.
    date: date
    requests: int
    cost: Decimal
    errors: int
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Usage:
    """A key's or a customer's usage, from the projection its limits are enforced from.

    Counts cover admitted queries (ok or upstream error), not rejected ones. A
    customer's is the sum over its keys, revoked ones included.
    """

    #: Set on a key's usage (``keys.usage``), ``None`` on a customer's.
    key_id: Optional[str]
    total_requests: int
    total_cost: Decimal
    requests_today: int
    cost_today: Decimal
    #: Rolling 60 minutes: what the rate limit sees.
    requests_this_hour: int
    #: Month to date (the UTC calendar month, or the customer's billing month
    #: from its ``billing_anchor_day``): what a monthly cost limit sees.
    cost_this_month: Decimal
    last_used_at: Optional[datetime]
    #: Every UTC hour of the range, oldest first, zeros included.
    hourly: List[HourlyUsage]
    #: Every UTC day of the range, oldest first.
    daily: List[DailyUsage]
    #: Set on a customer's usage (``customers.usage``), ``None`` on a key's.
    customer_id: Optional[str] = None
    #: Input (prompt) tokens the upstreams reported, in all.
    total_input_tokens: int = 0
    #: Output (completion) tokens the upstreams reported, in all.
    total_output_tokens: int = 0

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Usage:
        key_id, customer_id = body.get("key_id"), body.get("customer_id")
        return cls(
            key_id=None if key_id is None else str(key_id),
            customer_id=None if customer_id is None else str(customer_id),
            total_input_tokens=int(body.get("total_input_tokens") or 0),
            total_output_tokens=int(body.get("total_output_tokens") or 0),
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
                    input_tokens=int(h.get("input_tokens") or 0),
                    output_tokens=int(h.get("output_tokens") or 0),
                )
                for h in body.get("hourly") or []
            ],
            daily=[
                DailyUsage(
                    date=date.fromisoformat(d["date"]),
                    requests=int(d["requests"]),
                    cost=parse_money(d["cost"]),
                    errors=int(d["errors"]),
                    input_tokens=int(d.get("input_tokens") or 0),
                    output_tokens=int(d.get("output_tokens") or 0),
                )
                for d in body.get("daily") or []
            ],
        )


@dataclass(frozen=True)
class Workflow:
    """A workflow. A query's cost is the upstream's reported ``usage.cost``, else
    ``price_per_request`` plus its reported tokens at the per-million prices
    (rounded half up to the micro-dollar)."""

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
    #: USD per million input (prompt) tokens the upstream reports.
    price_per_million_input_tokens: Decimal
    #: USD per million output (completion) tokens the upstream reports.
    price_per_million_output_tokens: Decimal
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
            price_per_million_input_tokens=parse_money(body.get("price_per_million_input_tokens", 0)),
            price_per_million_output_tokens=parse_money(body.get("price_per_million_output_tokens", 0)),
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


# --- verify, usage events, usage reports -----------------------------------


@dataclass(frozen=True)
class LimitStanding:
    """One limit of a verified key or its customer, after the verification counted."""

    #: ``key`` or ``customer``.
    scope: str
    #: ``requests``, ``tokens`` or ``cost``.
    metric: str
    #: ``minute``, ``hour``, ``day`` or ``month``.
    window: str
    #: A count, or USD (a ``Decimal``) for ``cost``.
    max: Union[int, Decimal]
    #: What is left of it, in the same unit (0 once reached).
    remaining: Union[int, Decimal]
    #: When what is used of it next falls, or ``None``.
    reset: Optional[datetime]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> LimitStanding:
        metric = body["metric"]
        return cls(
            scope=str(body["scope"]),
            metric=str(metric),
            window=str(body["window"]),
            max=_parse_limit_max(metric, body["max"]),
            remaining=_parse_limit_max(metric, body["remaining"]),
            reset=parse_optional_datetime(body.get("reset")),
        )


@dataclass(frozen=True)
class Verification:
    """The server's verdict on a key (``client.verify``), valid or not.

    A valid one (``valid`` true, ``code == "valid"``) counted as a request
    against the key's and its customer's requests limits, and holds ``hold``
    USD against their cost limits and prepaid credits until a usage event
    names its ``authorization_id`` or ``expires_at`` passes. An invalid one
    says why in ``code`` (``invalid_api_key``, ``key_inactive``,
    ``key_expired``, ``workflow_not_found``, ``workflow_not_allowed``,
    ``rate_limited``, ``concurrency_limited``, ``cost_limit_exceeded``,
    ``insufficient_credits``) and ``detail``.
    """

    valid: bool
    #: ``valid``, or why not.
    code: str
    #: The key's id, when the key is known.
    key_id: Optional[str] = None
    #: The key's customer, if it has one.
    customer_id: Optional[str] = None
    #: ``auth_...`` (valid only): name it in the usage event that settles this.
    authorization_id: Optional[str] = None
    #: USD held (valid only).
    hold: Optional[Decimal] = None
    #: When the hold stops counting if no usage event settles it (valid only).
    expires_at: Optional[datetime] = None
    #: Every limit of the key and its customer, after this verification (valid only).
    limits: List[LimitStanding] = field(default_factory=list)
    #: Why not (invalid only).
    detail: Optional[str] = None
    #: The limit that refused it, on ``rate_limited``, ``concurrency_limited``
    #: and ``cost_limit_exceeded``.
    limit: Optional[ReachedLimit] = None
    #: Seconds until a place frees, on ``rate_limited`` and ``concurrency_limited``.
    retry_after: Optional[int] = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Verification:
        retry_after = body.get("retry_after")
        return cls(
            valid=bool(body["valid"]),
            code=str(body["code"]),
            key_id=body.get("key_id"),
            customer_id=body.get("customer_id"),
            authorization_id=body.get("authorization_id"),
            hold=parse_optional_money(body.get("hold")),
            expires_at=parse_optional_datetime(body.get("expires_at")),
            limits=[LimitStanding.from_json(x) for x in body.get("limits") or []],
            detail=body.get("detail"),
            limit=ReachedLimit.from_json(body.get("limit")),
            retry_after=None if retry_after is None else int(retry_after),
        )


class _UsageEventDataRequired(TypedDict):
    workflow_id: str


class UsageEventData(_UsageEventDataRequired, total=False):
    """A usage event's ``data``: ``workflow_id`` and, optionally, the rest."""

    #: From ``client.verify``: settles that verification's hold; the two are one request.
    authorization_id: str
    #: USD; default: priced like a proxied query of the workflow.
    cost: Union[Decimal, int, float]
    input_tokens: int
    output_tokens: int
    #: 100 to 599, default 200; 500 and above count as errors.
    status_code: int
    duration_ms: int


class _UsageEventRequired(TypedDict):
    specversion: str
    id: str
    source: str
    type: str
    subject: str
    data: UsageEventData


class UsageEvent(_UsageEventRequired, total=False):
    """A usage CloudEvent (1.0, structured JSON, type ``nodai.usage``), as
    ``events.send`` takes it; ``usage_event(...)`` builds one. ``subject`` is
    the key id; ``(source, id)`` is applied once within 24 hours."""

    #: RFC 3339 (or an aware datetime): when the work was done; default now.
    time: Union[str, datetime]


@dataclass(frozen=True)
class RejectedEvent:
    """An event the server did not accept, with its place in the list you sent."""

    #: The index of the event in the list given to ``events.send``, from 0.
    index: int
    #: Its ``id``, when it had one.
    id: Optional[str]
    #: 422.
    status: int
    #: ``invalid_event``, ``unsupported_event_type``, ``key_not_found``,
    #: ``workflow_not_found``, ``time_out_of_range``, ``authorization_mismatch``
    #: or ``validation_error``.
    code: str
    detail: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any], offset: int = 0) -> RejectedEvent:
        id_ = body.get("id")
        return cls(
            index=int(body["index"]) + offset,
            id=None if id_ is None else str(id_),
            status=int(body["status"]),
            code=str(body["code"]),
            detail=str(body.get("detail") or ""),
        )


@dataclass(frozen=True)
class IngestResult:
    """What the server made of usage events (``events.send``, ``events.send_one``)."""

    #: Events stored (durable) by this call.
    accepted: int
    #: Events applied before (the same ``source`` and ``id`` within 24 hours),
    #: or repeated in the call: not applied again.
    duplicates: int
    #: Events refused, each with its index in the list you sent.
    rejected: List[RejectedEvent] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: Mapping[str, Any], offset: int = 0) -> IngestResult:
        return cls(
            accepted=int(body["accepted"]),
            duplicates=int(body["duplicates"]),
            rejected=[RejectedEvent.from_json(r, offset) for r in body.get("rejected") or []],
        )


#: The periods of a usage report: UTC hours, days or calendar months.
Granularity = Literal["hour", "day", "month"]
#: What a usage report may be grouped by.
UsageGroup = Literal["key_id", "customer_id", "workflow_id", "status_code"]


@dataclass(frozen=True)
class UsageRow:
    """One period of one group of a usage report (``usage.query``).

    The group fields are set only when grouped by them (``None`` otherwise);
    grouped by ``customer_id``, it is ``None`` for the usage of keys without one.
    """

    #: Start of the UTC period.
    start: datetime
    #: Its end (exclusive).
    end: datetime
    requests: int
    #: Requests whose status was 500 or more.
    errors: int
    #: USD.
    cost: Decimal
    input_tokens: int
    output_tokens: int
    key_id: Optional[str] = None
    customer_id: Optional[str] = None
    workflow_id: Optional[str] = None
    status_code: Optional[int] = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> UsageRow:
        status_code = body.get("status_code")
        return cls(
            start=parse_datetime(body["start"]),
            end=parse_datetime(body["end"]),
            requests=int(body["requests"]),
            errors=int(body["errors"]),
            cost=parse_money(body["cost"]),
            input_tokens=int(body.get("input_tokens") or 0),
            output_tokens=int(body.get("output_tokens") or 0),
            key_id=body.get("key_id"),
            customer_id=body.get("customer_id"),
            workflow_id=body.get("workflow_id"),
            status_code=None if status_code is None else int(status_code),
        )
