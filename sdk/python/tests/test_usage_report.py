"""``client.usage`` against a real server: the usage report over every key, as
typed rows and as CSV, for usage that came in as events and as queries."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from _support import ServerProcess, unique, wait_until
from conftest import ECHO_PRICE
from nodai import (
    AsyncNodai,
    CreatedApiKey,
    Customer,
    Nodai,
    NotFoundError,
    UsageRow,
    ValidationError,
    Workflow,
    usage_event,
)


@pytest.fixture
def two_workflows(admin: Nodai) -> Iterator[Tuple[Workflow, Workflow]]:
    made = tuple(
        admin.workflows.create(unique(name), name=name, upstream_url="builtin:echo", price_per_request="0.01")
        for name in ("alpha", "beta")
    )
    yield made  # type: ignore[misc]
    for workflow in made:
        try:
            admin.workflows.delete(workflow.id)
        except NotFoundError:
            pass


def rows_once(admin: Nodai, expected_requests: int, **query: object) -> List[UsageRow]:
    """The report once it counts ``expected_requests`` in all (it reads what the
    server has applied, which may trail the answer to the events by a moment)."""

    def probe() -> Optional[List[UsageRow]]:
        rows = admin.usage.query(**query)  # type: ignore[arg-type]
        return rows if sum(r.requests for r in rows) == expected_requests else None

    return wait_until(probe, timeout=90, what=f"a usage report of {expected_requests} requests")


def test_usage_grouped_by_workflow_matches_the_events_sent(
    admin: Nodai,
    two_workflows: Tuple[Workflow, Workflow],
    make_key: Callable[..., CreatedApiKey],
    make_customer: Callable[..., Customer],
) -> None:
    alpha, beta = two_workflows
    customer = make_customer()
    key = make_key(customer_id=customer.id)
    source = unique("report")
    events = [
        usage_event(key.id, alpha.id, id=f"a{i}", source=source, cost="0.003", input_tokens=10, output_tokens=1)
        for i in range(7)
    ] + [
        usage_event(key.id, beta.id, id=f"b{i}", source=source, input_tokens=2, status_code=200 if i < 3 else 503)
        for i in range(5)
    ]
    assert admin.events.send(events).accepted == 12

    rows = rows_once(admin, 12, group_by=["workflow_id"], key_id=key.id)
    by_workflow: Dict[Optional[str], UsageRow] = {r.workflow_id: r for r in rows}
    assert set(by_workflow) == {alpha.id, beta.id} and len(rows) == 2
    a, b = by_workflow[alpha.id], by_workflow[beta.id]
    assert (a.requests, a.errors, a.cost, a.input_tokens, a.output_tokens) == (7, 0, Decimal("0.021"), 70, 7)
    # Without a cost, the workflow's price; a status of 500 or more is an error and costs nothing.
    assert (b.requests, b.errors, b.cost, b.input_tokens, b.output_tokens) == (5, 2, Decimal("0.03"), 10, 0)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    for r in rows:
        assert r.end - r.start == timedelta(days=1)
        assert today - timedelta(days=1) <= r.start <= today  # an event sent just before midnight
        assert (r.key_id, r.customer_id, r.status_code) == (None, None, None)  # not grouped by them

    # Filtered by workflow, grouped by status code, key and customer.
    beta_rows = rows_once(
        admin, 5, group_by=["status_code", "key_id", "customer_id"], workflow_id=beta.id, customer_id=customer.id
    )
    assert sorted((r.status_code, r.requests, r.errors) for r in beta_rows) == [(200, 3, 0), (503, 2, 2)]
    assert {(r.key_id, r.customer_id, r.workflow_id) for r in beta_rows} == {(key.id, customer.id, None)}

    # Hourly rows: one hour each.
    hourly = rows_once(admin, 12, granularity="hour", key_id=key.id)
    assert all(r.end - r.start == timedelta(hours=1) for r in hourly)

    # A range that ended before the events: nothing.
    week_ago = datetime.now(timezone.utc) - timedelta(days=7)
    assert admin.usage.query(key_id=key.id, from_=week_ago - timedelta(days=1), to=week_ago) == []

    # The key's own statistics (keys.usage) count the same usage.
    usage = admin.keys.usage(key.id)
    assert (usage.total_requests, usage.total_cost) == (12, Decimal("0.051"))


def test_usage_as_csv(
    admin: Nodai,
    server: ServerProcess,
    echo_workflow: Workflow,
    make_key: Callable[..., CreatedApiKey],
) -> None:
    key = make_key()
    # One proxied query and one event: the report counts both.
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        client.query_workflow(echo_workflow.id, "hi")
    admin.events.send([usage_event(key.id, echo_workflow.id, cost="0.012", output_tokens=4)])
    rows_once(admin, 2, key_id=key.id)

    text = admin.usage.query_csv(group_by=["workflow_id", "key_id"], key_id=key.id)
    lines = text.splitlines()
    assert lines[0] == "start,end,workflow_id,key_id,requests,errors,cost,input_tokens,output_tokens"
    records = list(csv.DictReader(io.StringIO(text)))
    assert len(records) == 1
    record = records[0]
    assert (record["workflow_id"], record["key_id"]) == (echo_workflow.id, key.id)
    assert (record["requests"], record["errors"], record["output_tokens"]) == ("2", "0", "4")
    assert record["cost"] == "0.014000"  # exact: 0.002 + 0.012
    assert Decimal(record["cost"]) == ECHO_PRICE + Decimal("0.012")

    # The group fields follow the order asked for.
    header = admin.usage.query_csv(group_by="key_id,workflow_id", key_id=key.id).splitlines()[0]
    assert header == "start,end,key_id,workflow_id,requests,errors,cost,input_tokens,output_tokens"
    # Nothing matched: the header alone.
    nothing = admin.usage.query_csv(key_id="key_" + "0" * 32)
    assert nothing.splitlines() == ["start,end,requests,errors,cost,input_tokens,output_tokens"]


def test_bad_report_parameters_raise(admin: Nodai) -> None:
    now = datetime.now(timezone.utc)
    for query in (
        {"group_by": ["colour"]},
        {"granularity": "hour", "from_": now - timedelta(days=91), "to": now},
        {"from_": now - timedelta(days=1101), "to": now},
        {"from_": now, "to": now - timedelta(days=1)},
        {"from_": "yesterday"},
        {"granularity": "week"},
    ):
        with pytest.raises(ValidationError) as caught:
            admin.usage.query(**query)
        assert (caught.value.status, caught.value.code) == (422, "validation_error"), query
        assert caught.value.detail
        with pytest.raises(ValidationError):
            admin.usage.query_csv(**query)


async def test_async_usage(
    server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    async with AsyncNodai(admin_token=server.admin_token, base_url=server.base_url) as admin:
        await admin.events.send([usage_event(key.id, echo_workflow.id) for _ in range(3)])
        deadline = time.monotonic() + 90
        while True:  # until the report counts them (it may trail the answer by a moment)
            rows = await admin.usage.query(key_id=key.id, group_by=["key_id"], granularity="month")
            if sum(r.requests for r in rows) == 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert [(r.key_id, r.requests, r.cost) for r in rows] == [(key.id, 3, ECHO_PRICE * 3)]
        assert rows[0].start.day == 1 and rows[0].start.hour == 0
        text = await admin.usage.query_csv(key_id=key.id, granularity="month")
        assert text.splitlines()[0] == "start,end,requests,errors,cost,input_tokens,output_tokens"
        assert text.splitlines()[1].endswith(",3,0,0.006000,0,0")
