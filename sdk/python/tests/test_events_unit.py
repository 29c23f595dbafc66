"""Unit tests of ``events.send``'s batching and retries, and of the usage report's
request, over ``httpx.MockTransport`` (no server): a real server cannot be made
to answer 503 or drop a connection after reading a batch on demand. What the
real server does with batches is in test_events.py."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional

import httpx
import pytest

from nodai import (
    APIConnectionError,
    AsyncNodai,
    AuthenticationError,
    IngestResult,
    Nodai,
    RejectedEvent,
    ServiceUnavailableError,
    UsageRow,
    usage_event,
)
from nodai.resources.events import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, plan_batches

Handler = Callable[[httpx.Request], httpx.Response]


def problem(status: int, code: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"type": "about:blank", "title": "t", "status": status, "detail": code, "code": code},
        headers={"content-type": "application/problem+json"},
    )


def accept_all(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    n = len(body) if isinstance(body, list) else 1
    return httpx.Response(202, json={"accepted": n, "duplicates": 0, "rejected": []})


class Server:
    """Answers events with ``respond``; ``failures`` are played first, one per request."""

    def __init__(self, respond: Handler = accept_all, failures: Optional[List[Any]] = None) -> None:
        self.respond = respond
        self.failures = list(failures or [])
        self.requests: List[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            assert isinstance(failure, httpx.Response)
            return failure
        return self.respond(request)

    def batches(self) -> List[List[Dict[str, Any]]]:
        return [json.loads(r.content) for r in self.requests]


def client_for(server: Server, sleeps: Optional[List[float]] = None, **options: Any) -> Nodai:
    client = Nodai(
        base_url="http://nodai.test",
        admin_token="admin-token-for-tests",
        http_client=httpx.Client(transport=httpx.MockTransport(server)),
        **options,
    )
    client._sleep = (sleeps if sleeps is not None else []).append
    return client


def events(n: int, **fields: Any) -> List[Dict[str, Any]]:
    return [dict(usage_event("key_1", "wf", id=f"e{i}", source="unit", **fields)) for i in range(n)]


# --- splitting ------------------------------------------------------------------


def test_batches_hold_at_most_1000_events() -> None:
    assert [b.count for b in plan_batches(events(1000))] == [1000]
    assert [(b.offset, b.count) for b in plan_batches(events(2001))] == [(0, 1000), (1000, 1000), (2000, 1)]
    assert plan_batches([]) == []
    assert MAX_BATCH_EVENTS == 1000 and MAX_BATCH_BYTES == 1024 * 1024


def sized(n: int, total: int) -> List[Dict[str, Any]]:
    """``n`` events whose batch is exactly ``total`` bytes as JSON."""
    evs = events(n)
    base = len(b"[" + b",".join(json.dumps(e, separators=(",", ":")).encode() for e in evs) + b"]")
    pad, rest = divmod(total - base, n)
    for i, e in enumerate(evs):
        e["source"] += "x" * (pad + (1 if i < rest else 0))
    return evs


def test_a_batch_of_exactly_1_mib_is_one_request_and_a_byte_more_is_two() -> None:
    exact = plan_batches(sized(900, MAX_BATCH_BYTES))
    assert [(b.count, len(b.body)) for b in exact] == [(900, MAX_BATCH_BYTES)]
    over = plan_batches(sized(900, MAX_BATCH_BYTES + 1))
    assert [b.count for b in over] == [899, 1]
    assert all(len(b.body) <= MAX_BATCH_BYTES for b in over)
    # The body is the events' JSON, in order, as sent.
    assert [e["id"] for e in json.loads(over[0].body)] == [f"e{i}" for i in range(899)]


def test_send_splits_and_sums_and_maps_rejected_indexes_back() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)
        bad = [i for i, e in enumerate(batch) if e["data"].get("status_code") == 599]
        return httpx.Response(202, json={
            "accepted": len(batch) - len(bad) - 1,
            "duplicates": 1,
            "rejected": [{"id": batch[i]["id"], "index": i, "status": 422, "code": "invalid_event", "detail": "d"} for i in bad],
        })

    evs = events(2300)
    for i in (7, 1005, 2299):
        evs[i]["data"]["status_code"] = 599
    server = Server(respond)
    result = client_for(server).events.send(evs)
    assert [len(b) for b in server.batches()] == [1000, 1000, 300]
    assert {r.headers["content-type"] for r in server.requests} == {"application/cloudevents-batch+json"}
    assert {r.headers["authorization"] for r in server.requests} == {"Bearer admin-token-for-tests"}
    assert result == IngestResult(
        accepted=2300 - 3 - 3,
        duplicates=3,
        rejected=[RejectedEvent(index=i, id=f"e{i}", status=422, code="invalid_event", detail="d") for i in (7, 1005, 2299)],
    )


def test_events_are_checked_before_anything_is_sent() -> None:
    server = Server()
    client = client_for(server)
    with pytest.raises(ValueError, match="event 2 is"):
        client.events.send(events(2) + [dict(events(1)[0], source="s" * MAX_BATCH_BYTES)])
    with pytest.raises(TypeError):
        client.events.send([*events(2), 42])  # type: ignore[list-item]
    assert client.events.send([]) == IngestResult(0, 0, [])
    assert server.requests == []


# --- retries ----------------------------------------------------------------------


def test_a_batch_is_retried_after_a_503_and_after_a_dropped_connection() -> None:
    sleeps: List[float] = []
    # The second batch: a 503, then a connection reset after it was sent (the
    # server may have stored it: events are applied once, so it is sent again).
    calls = {"n": 0}

    def respond(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 2:
            return problem(503, "metering_unavailable")
        if calls["n"] == 3:
            raise httpx.ReadError("connection reset by peer")
        return accept_all(request)

    server = Server(respond)
    result = client_for(server, sleeps).events.send(events(1500))
    assert result == IngestResult(accepted=1500, duplicates=0, rejected=[])
    sizes = [len(b) for b in server.batches()]
    assert sizes == [1000, 500, 500, 500]
    assert server.requests[1].content == server.requests[2].content == server.requests[3].content
    assert len(sleeps) == 2


def test_send_one_is_retried_after_a_read_timeout() -> None:
    server = Server(failures=[httpx.ReadTimeout("slow")])
    client = client_for(server, [])
    assert client.events.send_one(events(1)[0]).accepted == 1
    assert len(server.requests) == 2
    assert server.requests[0].headers["content-type"] == "application/cloudevents+json"
    assert json.loads(server.requests[1].content)["id"] == "e0"


def test_retries_end_and_the_error_is_raised_after_earlier_batches_landed() -> None:
    first = httpx.Response(202, json={"accepted": 1000, "duplicates": 0, "rejected": []})
    server = Server(lambda request: problem(503, "metering_unavailable"), failures=[first])
    sleeps: List[float] = []
    with pytest.raises(ServiceUnavailableError):
        client_for(server, sleeps, max_retries=2).events.send(events(1200))
    assert [len(b) for b in server.batches()] == [1000, 200, 200, 200]
    assert len(sleeps) == 2

    # A 401 is not retried: the first batch fails, nothing else is sent.
    server = Server(failures=[problem(401, "unauthorized")])
    with pytest.raises(AuthenticationError):
        client_for(server, []).events.send(events(1200))
    assert len(server.requests) == 1

    # Without retries, a dropped connection is an APIConnectionError.
    server = Server(failures=[httpx.ReadError("reset")])
    with pytest.raises(APIConnectionError):
        client_for(server, [], max_retries=0).events.send(events(1))


async def test_async_send_retries_and_maps_indexes() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)
        return httpx.Response(202, json={
            "accepted": len(batch) - 1, "duplicates": 0,
            "rejected": [{"id": None, "index": len(batch) - 1, "status": 422, "code": "invalid_event", "detail": "d"}],
        })

    server = Server(respond, failures=[httpx.ReadError("reset")])
    sleeps: List[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with AsyncNodai(
        base_url="http://nodai.test",
        admin_token="t" * 20,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(server)),
    ) as client:
        client._sleep = fake_sleep
        result = await client.events.send(events(1001))
    assert [r.index for r in result.rejected] == [999, 1000]
    assert result.accepted == 999 and len(sleeps) == 1
    assert [len(b) for b in server.batches()] == [1000, 1000, 1]


# --- the usage report's request -----------------------------------------------------


def test_usage_query_sends_its_parameters_and_parses_rows() -> None:
    row = {
        "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "workflow_id": "wf",
        "customer_id": None, "requests": 3, "errors": 1, "cost": 0.012, "input_tokens": 5, "output_tokens": 6,
    }
    server = Server(lambda request: httpx.Response(200, json={"data": [row]}))
    client = client_for(server)
    rows = client.usage.query(
        from_=datetime(2026, 1, 1, tzinfo=timezone.utc), to="2026-01-31T00:00:00Z", granularity="day",
        group_by=["workflow_id", "customer_id"], key_id="key_1", customer_id="c", workflow_id="wf",
    )
    assert dict(server.requests[0].url.params) == {
        "from": "2026-01-01T00:00:00Z", "to": "2026-01-31T00:00:00Z", "granularity": "day",
        "group_by": "workflow_id,customer_id", "key_id": "key_1", "customer_id": "c", "workflow_id": "wf",
    }
    assert server.requests[0].headers["accept"] == "application/json"
    assert rows == [UsageRow(
        start=datetime(2026, 1, 1, tzinfo=timezone.utc), end=datetime(2026, 1, 2, tzinfo=timezone.utc),
        requests=3, errors=1, cost=Decimal("0.012"), input_tokens=5, output_tokens=6,
        workflow_id="wf",
    )]

    csv = "start,end,requests,errors,cost,input_tokens,output_tokens\n"
    server = Server(lambda request: httpx.Response(200, text=csv, headers={"content-type": "text/csv; charset=utf-8"}))
    assert client_for(server).usage.query_csv(group_by="key_id") == csv
    assert server.requests[0].headers["accept"] == "text/csv"
    assert dict(server.requests[0].url.params) == {"group_by": "key_id"}
