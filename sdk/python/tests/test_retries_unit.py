"""Unit tests of the request loop with ``httpx.MockTransport`` — no server.

Kept apart from the real-server tests on purpose: a real nodai answers 503
only when its stream cannot take a usage event, which a test cannot provoke
cleanly, and some transport failures (a reset after sending) are hard to
stage on a socket. Everything else about errors is tested against the real
server in test_errors.py.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email.utils import format_datetime
from typing import List, Optional, Sequence, Type, Union

import httpx
import pytest

from nodai import (
    NOT_GIVEN,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncNodai,
    AuthenticationError,
    ConcurrencyLimitError,
    ConflictError,
    CostLimitExceededError,
    IdempotencyConflictError,
    InsufficientCreditsError,
    InternalServerError,
    Limit,
    Nodai,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ReachedLimit,
    ServiceUnavailableError,
    UpstreamError,
    ValidationError,
)
from nodai._retry import RetryPolicy, backoff_delay, parse_retry_after

Step = Union[httpx.Response, Exception]

OK_QUERY = {"output": "hi", "usage": {"cost": 0.002, "duration_ms": 3}, "request_id": "req_1"}


def problem(status: int, code: str, headers: Optional[dict[str, str]] = None, **extra: object) -> httpx.Response:
    body = {"type": "about:blank", "title": "t", "status": status, "detail": f"{code} detail", "code": code}
    body.update(extra)
    return httpx.Response(
        status, json=body, headers={"content-type": "application/problem+json", **(headers or {})}
    )


class Script:
    """A MockTransport handler that plays ``steps`` in order and records each request."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)
        self.requests: List[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step


def client_for(script: Script, sleeps: Optional[List[float]] = None, **options: object) -> Nodai:
    client = Nodai(
        base_url="http://nodai.test",
        api_key="nk_test",
        admin_token="admin-token-for-tests",
        http_client=httpx.Client(transport=httpx.MockTransport(script)),
        **options,  # type: ignore[arg-type]
    )
    if sleeps is not None:
        client._sleep = sleeps.append  # record the waits instead of sleeping
    return client


# --- 503 ----------------------------------------------------------------------


def test_503_is_retried_with_backoff_even_for_a_query() -> None:
    script = Script([problem(503, "metering_unavailable"), problem(503, "metering_unavailable"), httpx.Response(200, json=OK_QUERY)])
    sleeps: List[float] = []
    result = client_for(script, sleeps).query_workflow("echo", "hi")
    assert result.output == "hi"
    assert len(script.requests) == 3
    # 0.5 s then 1 s, each minus up to 25 % jitter.
    assert 0.375 <= sleeps[0] <= 0.5 and 0.75 <= sleeps[1] <= 1.0


def test_503_gives_up_after_max_retries() -> None:
    script = Script([problem(503, "metering_unavailable")])
    sleeps: List[float] = []
    with pytest.raises(ServiceUnavailableError) as caught:
        client_for(script, sleeps, max_retries=3).query_workflow("echo", "hi")
    assert caught.value.code == "metering_unavailable"
    assert len(script.requests) == 4 and len(sleeps) == 3


def test_max_retries_zero_disables_retries() -> None:
    script = Script([problem(503, "metering_unavailable")])
    with pytest.raises(ServiceUnavailableError):
        client_for(script, [], max_retries=0).keys.list()
    assert len(script.requests) == 1


def test_503_retry_after_is_honoured_for_real() -> None:
    script = Script([problem(503, "metering_unavailable", {"retry-after": "1"}), httpx.Response(200, json=OK_QUERY)])
    started = time.monotonic()
    client_for(script).query_workflow("echo", "hi")  # the real sleep
    assert time.monotonic() - started >= 1.0
    assert len(script.requests) == 2


# --- 429 ----------------------------------------------------------------------


def test_429_is_not_retried_by_default() -> None:
    script = Script([problem(429, "rate_limited", {"retry-after": "30", "x-ratelimit-limit": "5", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1800000000"})])
    with pytest.raises(RateLimitError) as caught:
        client_for(script, []).query_workflow("echo", "hi")
    assert len(script.requests) == 1
    assert caught.value.retry_after == 30
    assert caught.value.rate_limit is not None and caught.value.rate_limit.remaining == 0


def test_429_opt_in_waits_retry_after_for_real() -> None:
    script = Script([problem(429, "rate_limited", {"retry-after": "1"}), httpx.Response(200, json=OK_QUERY)])
    started = time.monotonic()
    result = client_for(script, retry_on_rate_limit=True).query_workflow("echo", "hi")
    elapsed = time.monotonic() - started
    assert result.request_id == "req_1"
    assert len(script.requests) == 2
    assert elapsed >= 1.0


def test_429_opt_in_with_http_date_retry_after() -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=20)
    script = Script([problem(429, "rate_limited", {"retry-after": format_datetime(when, usegmt=True)}), httpx.Response(200, json=OK_QUERY)])
    sleeps: List[float] = []
    client_for(script, sleeps, retry_on_rate_limit=True).query_workflow("echo", "hi")
    assert len(sleeps) == 1 and 17 <= sleeps[0] <= 20


def test_429_opt_in_raises_at_once_when_retry_after_exceeds_max_retry_wait() -> None:
    script = Script([problem(429, "rate_limited", {"retry-after": "120"})])
    sleeps: List[float] = []
    with pytest.raises(RateLimitError) as caught:
        client_for(script, sleeps, retry_on_rate_limit=True, max_retry_wait=60).query_workflow("echo", "hi")
    assert caught.value.retry_after == 120
    assert sleeps == [] and len(script.requests) == 1


def test_429_opt_in_without_retry_after_backs_off() -> None:
    script = Script([problem(429, "rate_limited"), httpx.Response(200, json=OK_QUERY)])
    sleeps: List[float] = []
    client_for(script, sleeps, retry_on_rate_limit=True).query_workflow("echo", "hi")
    assert len(sleeps) == 1 and 0.375 <= sleeps[0] <= 0.5


# --- transport failures -------------------------------------------------------


def test_connect_error_is_retried_for_a_post() -> None:
    script = Script([httpx.ConnectError("refused"), httpx.Response(200, json=OK_QUERY)])
    assert client_for(script, []).query_workflow("echo", "hi").output == "hi"
    assert len(script.requests) == 2


def test_failure_after_sending_a_post_is_not_replayed() -> None:
    # The server may have run and metered the query: raising beats charging twice.
    script = Script([httpx.RemoteProtocolError("server disconnected"), httpx.Response(200, json=OK_QUERY)])
    with pytest.raises(APIConnectionError) as caught:
        client_for(script, []).query_workflow("echo", "hi")
    assert not isinstance(caught.value, APITimeoutError)
    assert len(script.requests) == 1


def test_read_timeout_on_a_post_is_a_timeout_error_without_retry() -> None:
    script = Script([httpx.ReadTimeout("slow")])
    with pytest.raises(APITimeoutError):
        client_for(script, []).keys.create("x")
    assert len(script.requests) == 1


def test_failure_after_sending_a_get_or_put_is_replayed() -> None:
    key = {"id": "key_1", "prefix": "nk_00000000", "name": "n", "active": True, "workflow_ids": [],
           "alert_thresholds": [80, 100], "allowed_origins": [], "created_at": "2026-01-01T00:00:00Z",
           "updated_at": "2026-01-01T00:00:00.123456789Z"}
    script = Script([httpx.ReadError("reset"), httpx.Response(200, json=key)])
    assert client_for(script, []).keys.get("key_1").id == "key_1"
    assert len(script.requests) == 2

    script = Script([httpx.ReadTimeout("slow"), httpx.Response(200, json=key)])
    assert client_for(script, []).keys.update("key_1", name="n").name == "n"
    assert len(script.requests) == 2


GRANT = {"id": "gr_1", "amount": 2.5, "remaining": 2.5, "expires_at": None,
         "created_at": "2026-01-01T00:00:00Z", "voided_at": None, "description": None}


def test_a_grant_carries_an_idempotency_key_and_is_replayed_even_after_sending() -> None:
    # Every grant_credits call has a key (made here when none is given), the
    # same on each retry: the server answers a repeat with the first grant, so
    # even a failure after sending is retried, unlike any other POST.
    script = Script([httpx.ReadTimeout("slow"), problem(503, "not_ready"), httpx.Response(201, json=GRANT)])
    sleeps: List[float] = []
    grant = client_for(script, sleeps).customers.grant_credits("acme", Decimal("2.50"))
    assert (grant.id, grant.amount, grant.remaining, grant.expires_at) == ("gr_1", Decimal("2.5"), Decimal("2.5"), None)
    assert len(script.requests) == 3 and len(sleeps) == 2
    keys = {r.headers.get("idempotency-key") for r in script.requests}
    assert len(keys) == 1 and None not in keys
    assert [(r.method, r.url.path) for r in script.requests] == [("POST", "/api/v1/customers/acme/credits")] * 3
    assert sent_json(script.requests[0]) == {"amount": 2.5}

    # The next call makes another key; one given is sent as is, with the whole body.
    script = Script([httpx.RemoteProtocolError("server disconnected"), httpx.Response(201, json=GRANT)])
    client = client_for(script, [])
    client.customers.grant_credits("acme", 1)
    client.customers.grant_credits(
        "a/b", "0.30", expires_at=datetime(2030, 1, 2, tzinfo=timezone.utc), description="top-up",
        idempotency_key="order-1042",
    )
    sent = [r.headers["idempotency-key"] for r in script.requests]
    assert len(sent) == 3 and sent[1] == sent[0] and sent[0] not in keys and sent[2] == "order-1042"
    assert script.requests[2].url.raw_path == b"/api/v1/customers/a%2Fb/credits"
    assert sent_json(script.requests[2]) == {"amount": 0.3, "expires_at": "2030-01-02T00:00:00Z", "description": "top-up"}

    # max_retries still bounds it.
    script = Script([httpx.ReadError("reset")])
    with pytest.raises(APIConnectionError):
        client_for(script, [], max_retries=0).customers.grant_credits("acme", 1)
    assert len(script.requests) == 1


def test_credits_and_void_on_the_wire() -> None:
    voided = dict(GRANT, remaining=0, voided_at="2026-01-02T00:00:00Z", expires_at="2026-02-01T00:00:00Z",
                  description="d")
    credits = {"balance": -0.05, "grants": [voided]}
    script = Script([httpx.Response(200, json=credits), httpx.Response(200, json=voided)])
    client = client_for(script, [])
    read = client.customers.credits("acme")
    assert read.balance == Decimal("-0.05") and isinstance(read.balance, Decimal)
    (grant,) = read.grants
    assert grant.remaining == 0 and grant.description == "d"
    assert grant.voided_at == datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert grant.expires_at == datetime(2026, 2, 1, tzinfo=timezone.utc)
    assert client.customers.void_credits("acme", "gr/1") == grant
    assert [(r.method, r.url.raw_path, r.content) for r in script.requests] == [
        ("GET", b"/api/v1/customers/acme/credits", b""),
        ("POST", b"/api/v1/customers/acme/credits/gr%2F1/void", b""),
    ]
    # Neither carries a key; a void after sending is not replayed (it is harmless, but a POST).
    assert all("idempotency-key" not in r.headers for r in script.requests)


def test_delete_is_not_replayed_after_sending() -> None:
    script = Script([httpx.ReadError("reset"), httpx.Response(204)])
    with pytest.raises(APIConnectionError):
        client_for(script, []).keys.revoke("key_1")
    assert len(script.requests) == 1


# --- status → class -----------------------------------------------------------


@pytest.mark.parametrize(
    "status, code, cls",
    [
        (400, "invalid_json", ValidationError),
        (400, "invalid_query", ValidationError),
        (401, "unauthorized", AuthenticationError),
        (402, "cost_limit_exceeded", CostLimitExceededError),
        (402, "insufficient_credits", InsufficientCreditsError),
        (402, "something_new", CostLimitExceededError),
        (403, "key_inactive", PermissionDeniedError),
        (404, "workflow_not_found", NotFoundError),
        (404, "customer_not_found", NotFoundError),
        (404, "grant_not_found", NotFoundError),
        (409, "workflow_exists", ConflictError),
        (409, "key_revoked", ConflictError),
        (409, "customer_exists", ConflictError),
        (409, "customer_has_keys", ConflictError),
        (409, "idempotency_conflict", IdempotencyConflictError),
        (429, "rate_limited", RateLimitError),
        (429, "concurrency_limited", ConcurrencyLimitError),
        # A code's own class only under its own status.
        (400, "idempotency_conflict", ValidationError),
        (413, "payload_too_large", ValidationError),
        (422, "validation_error", ValidationError),
        (500, "internal", InternalServerError),
        (502, "upstream_error", UpstreamError),
        (504, "upstream_timeout", UpstreamError),
        (418, "teapot", APIStatusError),
    ],
)
def test_status_maps_to_its_class_and_is_not_retried(
    status: int, code: str, cls: Type[APIStatusError]
) -> None:
    script = Script([problem(status, code)])
    with pytest.raises(cls) as caught:
        client_for(script, []).query_workflow("echo", "hi")
    assert type(caught.value) is cls
    assert (caught.value.status, caught.value.code, caught.value.detail) == (status, code, f"{code} detail")
    assert caught.value.request_id is None
    assert str(caught.value) == f"{status} {code}: {code} detail"
    assert len(script.requests) == 1


def test_subclasses_of_a_code_are_caught_as_their_status() -> None:
    assert issubclass(InsufficientCreditsError, CostLimitExceededError)
    assert issubclass(IdempotencyConflictError, ConflictError)
    assert issubclass(ConcurrencyLimitError, RateLimitError)


def test_the_refusing_limit_is_read_from_the_problem() -> None:
    limited = problem(
        429,
        "concurrency_limited",
        {"retry-after": "1"},
        limit={"scope": "customer", "metric": "concurrent", "max": 5},
    )
    script = Script([limited])
    with pytest.raises(ConcurrencyLimitError) as concurrent:
        client_for(script, []).query_workflow("echo", "hi")
    assert concurrent.value.limit == ReachedLimit(scope="customer", metric="concurrent", window=None, max=5)
    assert concurrent.value.retry_after == 1

    # A RateLimitError too: retry_on_rate_limit waits out its Retry-After.
    script = Script([limited, httpx.Response(200, json=OK_QUERY)])
    sleeps: List[float] = []
    client_for(script, sleeps, retry_on_rate_limit=True).query_workflow("echo", "hi")
    assert sleeps == [1.0]

    script = Script([problem(402, "cost_limit_exceeded", limit={"scope": "key", "metric": "cost", "window": "month", "max": 12.5})])
    with pytest.raises(CostLimitExceededError) as cost:
        client_for(script, []).query_workflow("echo", "hi")
    assert cost.value.limit == ReachedLimit(scope="key", metric="cost", window="month", max=Decimal("12.5"))
    assert isinstance(cost.value.limit.max, Decimal)

    script = Script([problem(429, "rate_limited", limit={"scope": "key", "metric": "tokens", "window": "day", "max": 1000})])
    with pytest.raises(RateLimitError) as tokens:
        client_for(script, []).query_workflow("echo", "hi")
    assert tokens.value.limit is not None and tokens.value.limit.scope == "key"
    assert (tokens.value.limit.metric, tokens.value.limit.window, tokens.value.limit.max) == ("tokens", "day", 1000)

    # Absent or malformed: None, never an error of the SDK's own.
    for extra in ({}, {"limit": None}, {"limit": "x"}, {"limit": {"scope": "key"}}):
        script = Script([problem(429, "rate_limited", **extra)])
        with pytest.raises(RateLimitError) as bare:
            client_for(script, []).query_workflow("echo", "hi")
        assert bare.value.limit is None, extra
    script = Script([problem(402, "insufficient_credits")])
    with pytest.raises(InsufficientCreditsError) as credits:
        client_for(script, []).query_workflow("echo", "hi")
    assert credits.value.limit is None and credits.value.status == 402


def test_request_id_is_taken_from_the_problem_or_the_header() -> None:
    script = Script([problem(502, "upstream_error", request_id="req_abc")])
    with pytest.raises(UpstreamError) as caught:
        client_for(script, []).query_workflow("echo", "hi")
    assert caught.value.request_id == "req_abc"

    script = Script([problem(403, "invalid_api_key", {"x-request-id": "req_hdr"})])
    with pytest.raises(PermissionDeniedError) as denied:
        client_for(script, []).query_workflow("echo", "hi")
    assert denied.value.request_id == "req_hdr"


def test_non_json_error_body_keeps_its_text() -> None:
    script = Script([httpx.Response(502, text="<html>bad gateway</html>")])
    with pytest.raises(UpstreamError) as caught:
        client_for(script, []).query_workflow("echo", "hi")
    assert caught.value.code is None
    assert caught.value.detail == "<html>bad gateway</html>"


# --- what goes on the wire ----------------------------------------------------


def sent_json(request: httpx.Request) -> object:
    return json.loads(request.content)


def test_update_distinguishes_not_given_from_none() -> None:
    key = {"id": "key_1", "prefix": "nk_00000000", "name": "n", "active": True, "workflow_ids": [],
           "alert_thresholds": [80, 100], "allowed_origins": [], "created_at": "2026-01-01T00:00:00Z",
           "updated_at": "2026-01-01T00:00:00Z"}
    script = Script([httpx.Response(200, json=key)])
    client = client_for(script, [])
    client.keys.update("key_1", rate_limit_per_hour=None)
    client.keys.update("key_1", name="x", cost_limit_per_month="0.10", owner=NOT_GIVEN)
    client.keys.update("key_1")
    client.keys.update("key_1", expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc), metadata=None)
    bodies = [sent_json(r) for r in script.requests]
    assert bodies == [
        {"rate_limit_per_hour": None},
        {"name": "x", "cost_limit_per_month": 0.1},
        {},
        {"expires_at": "2030-01-02T03:04:05Z", "metadata": None},
    ]
    assert all(r.method == "PUT" and r.url.path == "/api/v1/api-keys/key_1" for r in script.requests)


CUSTOMER = {"id": "acme", "name": "Acme", "limits": [], "billing": "postpaid", "billing_anchor_day": 1,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}


def test_limits_and_customer_fields_on_the_wire() -> None:
    key = {"id": "key_1", "prefix": "nk_00000000", "name": "n", "active": True, "workflow_ids": [],
           "alert_thresholds": [80, 100], "allowed_origins": [], "created_at": "2026-01-01T00:00:00Z",
           "updated_at": "2026-01-01T00:00:00Z", "key": "nk_" + "0" * 64}
    script = Script([httpx.Response(200, json=key)])
    client = client_for(script, [])
    created = client.keys.create(
        "n",
        customer_id="acme",
        limits=[Limit("requests", "minute", 10), {"metric": "cost", "window": "day", "max": Decimal("1.50")},
                Limit("tokens", "day", Decimal("1000"))],
        max_concurrent=2,
    )
    # An older server's key without the new fields still reads.
    assert (created.customer_id, created.limits, created.max_concurrent) == (None, [], None)
    client.keys.update("key_1", customer_id=None, limits=None, max_concurrent=None)
    client.keys.update("key_1", limits=[])
    assert [sent_json(r) for r in script.requests] == [
        {
            "name": "n",
            "customer_id": "acme",
            "limits": [
                {"metric": "requests", "window": "minute", "max": 10},
                {"metric": "cost", "window": "day", "max": 1.5},
                {"metric": "tokens", "window": "day", "max": 1000},
            ],
            "max_concurrent": 2,
        },
        {"customer_id": None, "limits": None, "max_concurrent": None},
        {"limits": []},
    ]
    with pytest.raises(TypeError):
        client.keys.create("n", limits=Limit("requests", "minute", 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.keys.create("n", limits=[{"metric": "requests", "window": "minute", "max": 1, "scope": "key"}])

    usage = {"customer_id": "a/b", "total_requests": 0, "total_cost": 0, "requests_today": 0, "cost_today": 0,
             "requests_this_hour": 0, "cost_this_month": 0, "hourly": [], "daily": []}
    page = {"data": [CUSTOMER], "next_cursor": None}
    steps = [httpx.Response(200, json=CUSTOMER)] * 3 + [httpx.Response(200, json=usage), httpx.Response(200, json=page)]
    script = Script(steps)
    client = client_for(script, [])
    client.customers.create("acme", name="Acme", billing="prepaid", low_balance_threshold="2.50", email=None)
    client.customers.update("acme", email=None, low_balance_threshold=None, billing_anchor_day=NOT_GIVEN)
    client.customers.update("acme")
    # A customer's usage has customer_id and no key_id; without token fields (an older server), 0.
    read = client.customers.usage("a/b", from_="2026-01-01T00:00:00Z")
    assert (read.customer_id, read.key_id, read.total_input_tokens) == ("a/b", None, 0)
    assert client.customers.list(q="ac", limit=5).data[0].id == "acme"
    assert [(r.method, r.url.raw_path) for r in script.requests] == [
        ("POST", b"/api/v1/customers"),
        ("PUT", b"/api/v1/customers/acme"),
        ("PUT", b"/api/v1/customers/acme"),
        ("GET", b"/api/v1/customers/a%2Fb/usage?from=2026-01-01T00%3A00%3A00Z"),
        ("GET", b"/api/v1/customers?limit=5&q=ac"),
    ]
    assert [sent_json(r) for r in script.requests[:3]] == [
        {"id": "acme", "name": "Acme", "billing": "prepaid", "low_balance_threshold": 2.5},
        {"email": None, "low_balance_threshold": None},
        {},
    ]


def test_naive_datetimes_are_refused() -> None:
    client = client_for(Script([httpx.Response(200, json={})]), [])
    with pytest.raises(ValueError):
        client.keys.update("key_1", expires_at=datetime(2030, 1, 1))


def test_credentials_go_only_where_they_belong() -> None:
    script = Script([httpx.Response(200, json=OK_QUERY)])
    client = client_for(script, [])
    client.query_workflow("echo", {"a": 1})
    query = script.requests[0]
    assert query.headers["x-api-key"] == "nk_test"
    assert "authorization" not in query.headers
    assert query.url.path == "/api/v1/workflows/echo/query"
    assert sent_json(query) == {"input": {"a": 1}}
    assert query.headers["content-type"] == "application/json"
    assert query.headers["user-agent"].startswith("nodai-python/")

    script.steps = [httpx.Response(200, json={"data": [], "next_cursor": None})]
    client.keys.list(limit=5)
    listing = script.requests[1]
    assert listing.headers["authorization"] == "Bearer admin-token-for-tests"
    assert "x-api-key" not in listing.headers
    assert dict(listing.url.params) == {"limit": "5"}


def test_ids_cannot_escape_their_path_segment() -> None:
    script = Script([httpx.Response(200, json=OK_QUERY)])
    client_for(script, []).query_workflow("../api-keys?x=1", "hi")
    assert script.requests[0].url.raw_path == b"/api/v1/workflows/..%2Fapi-keys%3Fx%3D1/query"


# --- the policy itself --------------------------------------------------------


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("7") == 7
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now) == 30
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now) == 0


def test_backoff_doubles_and_caps() -> None:
    assert [backoff_delay(n, rand=lambda: 0.0) for n in range(6)] == [0.5, 1, 2, 4, 8, 8]
    assert backoff_delay(0, rand=lambda: 1.0) == 0.375


def test_policy_table() -> None:
    policy = RetryPolicy(max_retries=2, retry_on_rate_limit=False, max_retry_wait=10)
    assert policy.after_status(0, 503, 3) == 3
    assert policy.after_status(0, 503, 11) is None
    assert policy.after_status(2, 503, None) is None
    assert policy.after_status(0, 429, 1) is None
    assert policy.after_status(0, 502, None) is None
    assert policy.after_status(0, 500, None) is None
    opted = RetryPolicy(max_retries=2, retry_on_rate_limit=True, max_retry_wait=10)
    assert opted.after_status(0, 429, 1) == 1
    sent = httpx.ReadError("reset")
    assert policy.after_transport_error(0, "POST", sent) is None
    assert policy.after_transport_error(0, "POST", sent, idempotent=True) is not None
    assert policy.after_transport_error(2, "POST", sent, idempotent=True) is None
    assert policy.after_transport_error(0, "POST", httpx.ConnectError("refused")) is not None


# --- async: the same loop -----------------------------------------------------


def async_client_for(script: Script, sleeps: List[float], **options: object) -> AsyncNodai:
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = AsyncNodai(
        base_url="http://nodai.test",
        api_key="nk_test",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(script)),
        **options,  # type: ignore[arg-type]
    )
    client._sleep = fake_sleep
    return client


async def test_async_503_is_retried() -> None:
    script = Script([problem(503, "metering_unavailable"), httpx.Response(200, json=OK_QUERY)])
    sleeps: List[float] = []
    result = await async_client_for(script, sleeps).query_workflow("echo", "hi")
    assert result.cost * 1000 == 2
    assert len(script.requests) == 2 and len(sleeps) == 1


async def test_async_429_opt_in_and_post_failure() -> None:
    script = Script([problem(429, "rate_limited", {"retry-after": "2"}), httpx.Response(200, json=OK_QUERY)])
    sleeps: List[float] = []
    await async_client_for(script, sleeps, retry_on_rate_limit=True).query_workflow("echo", "hi")
    assert sleeps == [2.0]

    script = Script([httpx.ReadError("reset")])
    with pytest.raises(APIConnectionError):
        await async_client_for(script, []).query_workflow("echo", "hi")
    assert len(script.requests) == 1


async def test_async_grant_is_replayed_with_its_key() -> None:
    script = Script([httpx.ReadError("reset"), httpx.Response(201, json=GRANT)])
    sleeps: List[float] = []
    grant = await async_client_for(script, sleeps).customers.grant_credits("acme", "2.5")
    assert grant.id == "gr_1" and len(script.requests) == 2 and len(sleeps) == 1
    assert script.requests[0].headers["idempotency-key"] == script.requests[1].headers["idempotency-key"]

