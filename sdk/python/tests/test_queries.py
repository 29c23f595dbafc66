"""Metered queries against a real server: output, cost, request id, rate-limit state."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Callable

import pytest

from _support import Receiver, ServerProcess, unique
from conftest import ECHO_PRICE
from nodai import CreatedApiKey, Nodai, QueryResult, Workflow


def test_echo_query_returns_output_cost_and_request_id(
    server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        payload = {"text": "hello", "n": [1, 2.5, None], "nested": {"ok": True}}
        result = client.query_workflow(echo_workflow.id, payload)

    assert isinstance(result, QueryResult)
    assert result.output == payload
    # No usage.cost from builtin:echo: the workflow's price_per_request applies, exactly.
    assert result.cost == ECHO_PRICE
    assert isinstance(result.cost, Decimal)
    assert result.duration_ms >= 0
    assert result.request_id.startswith("req_")
    # A key without a rate limit gets no X-RateLimit-* headers.
    assert result.rate_limit is None


def test_rate_limit_state_comes_from_the_headers(
    server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key(rate_limit_per_hour=10)
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        first = client.query_workflow(echo_workflow.id, "a")
        second = client.query_workflow(echo_workflow.id, "b")

    assert first.rate_limit is not None and second.rate_limit is not None
    assert first.rate_limit.limit == 10
    assert first.rate_limit.remaining == 9
    assert second.rate_limit.remaining == 8
    assert second.rate_limit.reset_at > datetime.now(timezone.utc)
    assert second.rate_limit.reset_at.timestamp() == second.rate_limit.reset


def test_upstream_reported_cost_wins_over_the_price(
    admin: Nodai, server: ServerProcess, receiver: Receiver, make_key: Callable[..., CreatedApiKey]
) -> None:
    receiver.set(200, {"output": {"answer": 42}, "usage": {"cost": 0.25}})
    workflow = admin.workflows.create(
        unique("upstream"), name="Upstream", upstream_url=receiver.url + "/run", price_per_request="0.01"
    )
    key = make_key(workflow_ids=[workflow.id])
    try:
        with Nodai(api_key=key.key, base_url=server.base_url) as client:
            result = client.query_workflow(workflow.id, ["x"])
    finally:
        admin.workflows.delete(workflow.id)

    assert result.output == {"answer": 42}
    assert result.cost == Decimal("0.25")
    sent = receiver.captured()
    assert len(sent) == 1
    assert sent[0].path == "/run"
    assert sent[0].json() == {"workflow_id": workflow.id, "input": ["x"], "request_id": result.request_id}


def test_per_call_api_key_overrides_the_clients(
    server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    with Nodai(api_key="nk_" + "0" * 64, base_url=server.base_url) as client:
        assert client.query_workflow(echo_workflow.id, 1, api_key=key.key).output == 1
        assert client.query_workflow(echo_workflow.id, 2, key.key).output == 2


def test_configuration_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    server: ServerProcess,
    echo_workflow: Workflow,
    make_key: Callable[..., CreatedApiKey],
) -> None:
    key = make_key()
    monkeypatch.setenv("NODAI_BASE_URL", server.base_url)
    monkeypatch.setenv("NODAI_API_KEY", key.key)
    monkeypatch.setenv("NODAI_ADMIN_TOKEN", server.admin_token)
    with Nodai() as client:
        assert client.base_url == server.base_url
        assert client.query_workflow(echo_workflow.id, "env").output == "env"
        assert client.keys.get(key.id).id == key.id
        # Neither secret shows in the client's repr.
        assert key.key not in repr(client) and server.admin_token not in repr(client)


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODAI_BASE_URL", raising=False)
    monkeypatch.delenv("NODAI_API_KEY", raising=False)
    monkeypatch.delenv("NODAI_ADMIN_TOKEN", raising=False)
    with Nodai() as client:
        assert client.base_url == "http://127.0.0.1:8080"
        assert client.api_key is None and client.admin_token is None


def test_usage_reflects_queries_at_once(
    admin: Nodai, server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    started = datetime.now(timezone.utc)
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        for i in range(3):
            client.query_workflow(echo_workflow.id, i)

    usage = admin.keys.usage(key.id)
    assert usage.key_id == key.id
    assert usage.total_requests == 3
    assert usage.total_cost == 3 * ECHO_PRICE
    assert usage.requests_this_hour == 3
    assert usage.cost_this_month == 3 * ECHO_PRICE
    assert usage.requests_today == 3 or started.date() != datetime.now(timezone.utc).date()
    assert usage.last_used_at is not None and usage.last_used_at >= started.replace(microsecond=0)
    assert len(usage.hourly) == 48
    assert sum(h.requests for h in usage.hourly) == 3
    assert sum(h.cost for h in usage.hourly) == 3 * ECHO_PRICE
    assert all(h.errors == 0 for h in usage.hourly)
    assert len(usage.daily) == 31
    assert sum(d.requests for d in usage.daily) == 3

    # from_ chooses where the hourly series starts (the hour that holds it).
    since = started - timedelta(hours=1)
    ranged = admin.keys.usage(key.id, from_=since)
    assert ranged.hourly[0].hour == since.replace(minute=0, second=0, microsecond=0)
    assert 2 <= len(ranged.hourly) <= 3
    assert sum(h.requests for h in ranged.hourly) == 3
