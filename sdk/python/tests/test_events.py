"""``client.events`` against a real server: usage CloudEvents, sent in batches of
at most 1000 events and 1 MiB, applied once per ``(source, id)``, with rejected
events mapped back to their place in the caller's list."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Dict, Iterator, List

import httpx
import pytest

from _support import ServerProcess, unique, wait_until
from nodai import (
    AsyncNodai,
    CreatedApiKey,
    Customer,
    IngestResult,
    Nodai,
    RejectedEvent,
    UsageEvent,
    ValidationError,
    Workflow,
    usage_event,
)
from nodai.resources.events import MAX_BATCH_BYTES


class RecordingTransport(httpx.BaseTransport):
    """A real HTTP transport that also keeps each request's content type and body."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: List[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.sent.append(request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def posts(self) -> List[httpx.Request]:
        return [r for r in self.sent if r.method == "POST" and r.url.path == "/api/v1/events"]


@pytest.fixture
def recording(server: ServerProcess) -> Iterator[tuple[Nodai, RecordingTransport]]:
    transport = RecordingTransport()
    with httpx.Client(transport=transport) as http:
        with Nodai(admin_token=server.admin_token, base_url=server.base_url, http_client=http) as client:
            yield client, transport


def events_for(key: CreatedApiKey, workflow: Workflow, n: int, source: str, **fields: Any) -> List[UsageEvent]:
    return [usage_event(key.id, workflow.id, id=f"ev-{i}", source=source, **fields) for i in range(n)]


def test_usage_event_fills_the_cloudevent_attributes() -> None:
    event = usage_event("key_1", "wf")
    assert event["specversion"] == "1.0" and event["type"] == "nodai.usage"
    assert (event["subject"], event["data"], event["source"]) == ("key_1", {"workflow_id": "wf"}, "nodai-python")
    assert len(event["id"]) == 36 and usage_event("key_1", "wf")["id"] != event["id"]
    assert "time" not in event
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    full = usage_event(
        "key_1", "wf", id="e1", source="svc", time=when, cost=Decimal("0.012"), input_tokens=3,
        output_tokens=4, status_code=502, duration_ms=17, authorization_id="auth_x",
    )
    assert full == {
        "specversion": "1.0", "id": "e1", "source": "svc", "type": "nodai.usage", "subject": "key_1",
        "time": "2026-01-02T03:04:05Z",
        "data": {"workflow_id": "wf", "authorization_id": "auth_x", "cost": 0.012, "input_tokens": 3,
                 "output_tokens": 4, "status_code": 502, "duration_ms": 17},
    }


def test_2500_events_go_in_three_batches_and_a_resend_is_all_duplicates(
    recording: tuple[Nodai, RecordingTransport],
    admin: Nodai,
    echo_workflow: Workflow,
    make_key: Callable[..., CreatedApiKey],
) -> None:
    client, transport = recording
    key = make_key()
    events = events_for(key, echo_workflow, 2500, unique("batch"), cost="0.001", input_tokens=2)

    result = client.events.send(events)
    assert result == IngestResult(accepted=2500, duplicates=0, rejected=[])
    posts = transport.posts()
    assert [len(json.loads(p.content)) for p in posts] == [1000, 1000, 500]
    assert {p.headers["content-type"] for p in posts} == {"application/cloudevents-batch+json"}
    assert [json.loads(p.content)[0]["id"] for p in posts] == ["ev-0", "ev-1000", "ev-2000"]

    again = client.events.send(events)
    assert again == IngestResult(accepted=0, duplicates=2500, rejected=[])

    # Applied once: the key's usage counts 2500 requests, not 5000.
    def counted() -> Any:
        usage = admin.keys.usage(key.id)
        return usage if usage.total_requests == 2500 else None

    usage = wait_until(counted, timeout=30, what="2500 requests in the key's usage")
    assert usage.total_cost == Decimal("2.5")
    assert usage.total_input_tokens == 5000


def test_a_rejected_event_keeps_its_index_in_the_callers_list(
    admin: Nodai, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    source = unique("mixed")
    events: List[Dict[str, Any]] = [dict(e) for e in events_for(key, echo_workflow, 1500, source)]
    events[3]["subject"] = "key_" + "0" * 32  # no such key
    events[1200]["data"] = {"workflow_id": echo_workflow.id, "colour": "blue"}  # unknown data field
    events[1499] = {"type": "nodai.usage"}  # not a CloudEvent at all, no id
    events[1300]["id"] = "ev-1"  # repeats an event of the first batch

    result = admin.events.send(events)
    assert (result.accepted, result.duplicates) == (1496, 1)
    assert [(r.index, r.id, r.status, r.code) for r in result.rejected] == [
        (3, "ev-3", 422, "key_not_found"),
        (1200, "ev-1200", 422, "invalid_event"),
        (1499, None, 422, "invalid_event"),
    ]
    assert all(isinstance(r, RejectedEvent) and r.detail for r in result.rejected)
    assert "colour" in result.rejected[1].detail

    # Fixed and sent again: only the three are new.
    events[3]["subject"] = key.id
    events[1200]["data"] = {"workflow_id": echo_workflow.id}
    events[1499] = dict(usage_event(key.id, echo_workflow.id, id="ev-1499", source=source))
    assert admin.events.send(events) == IngestResult(accepted=3, duplicates=1497, rejected=[])


def test_batches_are_split_by_size_too(
    recording: tuple[Nodai, RecordingTransport],
    echo_workflow: Workflow,
    make_key: Callable[..., CreatedApiKey],
) -> None:
    client, transport = recording
    key = make_key()
    # A 1000-character source makes each event about 1.2 kB: 1000 of them are
    # more than 1 MiB, so the count alone would make one request too big.
    source = unique("wide") + "/" + "s" * 980
    events = events_for(key, echo_workflow, 1000, source)
    assert sum(len(json.dumps(e)) for e in events) > MAX_BATCH_BYTES

    assert client.events.send(events) == IngestResult(accepted=1000, duplicates=0, rejected=[])
    posts = transport.posts()
    assert len(posts) == 2
    assert all(len(p.content) <= MAX_BATCH_BYTES for p in posts)
    assert sum(len(json.loads(p.content)) for p in posts) == 1000
    # The first request was filled close to the limit, not split early.
    assert len(posts[0].content) > MAX_BATCH_BYTES - 1300


def test_send_one_is_a_single_cloudevent_and_raises_on_an_invalid_one(
    recording: tuple[Nodai, RecordingTransport],
    echo_workflow: Workflow,
    make_key: Callable[..., CreatedApiKey],
) -> None:
    client, transport = recording
    key = make_key()
    event = usage_event(key.id, echo_workflow.id, source=unique("one"), cost="0.5", status_code=200)
    assert client.events.send_one(event) == IngestResult(accepted=1, duplicates=0, rejected=[])
    post = transport.posts()[-1]
    assert post.headers["content-type"] == "application/cloudevents+json"
    assert json.loads(post.content) == event
    assert client.events.send_one(event) == IngestResult(accepted=0, duplicates=1, rejected=[])

    now = datetime.now(timezone.utc)
    cases = [
        (usage_event("key_" + "f" * 32, echo_workflow.id), "key_not_found"),
        (usage_event(key.id, unique("nowhere")), "workflow_not_found"),
        (usage_event(key.id, echo_workflow.id, time=now - timedelta(days=40)), "time_out_of_range"),
        (usage_event(key.id, echo_workflow.id, time=now + timedelta(minutes=10)), "time_out_of_range"),
        ({**usage_event(key.id, echo_workflow.id), "type": "com.example.other"}, "unsupported_event_type"),
        ({**usage_event(key.id, echo_workflow.id), "data": {"workflow_id": echo_workflow.id, "x": 1}}, "invalid_event"),
        (usage_event(key.id, echo_workflow.id, status_code=600), "validation_error"),
    ]
    for bad, code in cases:
        with pytest.raises(ValidationError) as caught:
            client.events.send_one(bad)
        assert (caught.value.status, caught.value.code) == (422, code), bad
        assert caught.value.detail


def test_a_usage_event_settles_the_hold_of_its_verification(
    admin: Nodai,
    echo_workflow: Workflow,
    make_key: Callable[..., CreatedApiKey],
    make_customer: Callable[..., Customer],
) -> None:
    key = make_key(cost_limit_per_month=1)

    def cost_remaining() -> Decimal:
        v = admin.verify(key.key, hold=0)  # holds nothing; reads the limit
        remaining = [x.remaining for x in v.limits if x.metric == "cost"][0]
        assert isinstance(remaining, Decimal)
        return remaining

    v = admin.verify(key.key, workflow_id=echo_workflow.id, hold="0.5")
    assert v.valid and v.authorization_id is not None
    assert cost_remaining() == Decimal("0.5")
    # The work cost less than was held: the event names the authorization, and
    # the hold gives way to the real cost.
    event = usage_event(key.id, echo_workflow.id, authorization_id=v.authorization_id, cost="0.1")
    assert admin.events.send([event]).accepted == 1
    assert cost_remaining() == Decimal("0.9")

    # An authorization names one key: another key of the same customer cannot settle it.
    customer = make_customer()
    first, second = make_key(customer_id=customer.id), make_key(customer_id=customer.id)
    auth = admin.verify(first.key).authorization_id
    assert auth is not None
    with pytest.raises(ValidationError) as caught:
        admin.events.send_one(usage_event(second.id, echo_workflow.id, authorization_id=auth))
    assert (caught.value.status, caught.value.code) == (422, "authorization_mismatch")
    in_batch = admin.events.send([usage_event(second.id, echo_workflow.id, authorization_id=auth)])
    assert [(r.index, r.code) for r in in_batch.rejected] == [(0, "authorization_mismatch")]


def test_another_key_cannot_settle_an_authorization(
    admin: Nodai, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    owner, other = make_key(), make_key()
    auth = admin.verify(owner.key).authorization_id
    assert auth is not None
    with pytest.raises(ValidationError) as caught:
        admin.events.send_one(usage_event(other.id, echo_workflow.id, authorization_id=auth))
    assert caught.value.code == "authorization_mismatch"


def test_limits_and_bad_input_are_caught_before_sending(admin: Nodai) -> None:
    assert admin.events.send([]) == IngestResult(accepted=0, duplicates=0, rejected=[])
    huge = dict(usage_event("key_1", "wf"), source="s" * MAX_BATCH_BYTES)
    with pytest.raises(ValueError, match="event 1 is"):
        admin.events.send([usage_event("key_1", "wf"), huge])
    with pytest.raises(TypeError, match="event 0 is a str"):
        admin.events.send(["not an event"])  # type: ignore[list-item]


async def test_async_events(
    server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    events = events_for(key, echo_workflow, 1001, unique("async"))
    async with AsyncNodai(admin_token=server.admin_token, base_url=server.base_url) as admin:
        assert await admin.events.send(events) == IngestResult(accepted=1001, duplicates=0, rejected=[])
        assert (await admin.events.send(events[:10])).duplicates == 10
        assert (await admin.events.send_one(events[1000])).duplicates == 1
        with pytest.raises(ValidationError) as caught:
            await admin.events.send_one(usage_event(key.id, unique("nowhere")))
        assert caught.value.code == "workflow_not_found"
