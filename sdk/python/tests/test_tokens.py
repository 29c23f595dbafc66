"""Tokens against a real server: workflows' token prices, the tokens a query reports
(whole and streamed), token totals in usage, and a tokens limit."""

from __future__ import annotations

from decimal import Decimal
from typing import Callable

import pytest

from _support import Receiver, ServerProcess, unique
from nodai import CreatedApiKey, Done, Limit, Nodai, RateLimitError, ReachedLimit, Workflow


def test_token_prices_round_trip(admin: Nodai) -> None:
    workflow = admin.workflows.create(
        unique("tok"),
        name="Tokens",
        upstream_url="builtin:echo",
        price_per_million_input_tokens="2.5",
        price_per_million_output_tokens=Decimal("10"),
    )
    try:
        assert workflow.price_per_million_input_tokens == Decimal("2.5")
        assert workflow.price_per_million_output_tokens == Decimal("10")
        assert admin.workflows.get(workflow.id) == workflow

        updated = admin.workflows.update(workflow.id, price_per_million_output_tokens="12.000001")
        assert updated.price_per_million_output_tokens == Decimal("12.000001")
        assert updated.price_per_million_input_tokens == Decimal("2.5")  # left out: unchanged
        assert admin.workflows.update(workflow.id, name="Renamed").price_per_million_output_tokens == Decimal(
            "12.000001"
        )
        with pytest.raises(TypeError):
            admin.workflows.update(workflow.id, price_per_million_input_tokens=None)  # type: ignore[arg-type]
    finally:
        admin.workflows.delete(workflow.id)


def test_token_prices_default_to_zero(admin: Nodai, echo_workflow: Workflow) -> None:
    assert echo_workflow.price_per_million_input_tokens == Decimal(0)
    assert echo_workflow.price_per_million_output_tokens == Decimal(0)


def test_echo_reports_no_tokens(
    admin: Nodai, server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        result = client.query_workflow(echo_workflow.id, "no tokens here")
        done = client.stream_workflow(echo_workflow.id, "nor here").until_done()
    assert (result.input_tokens, result.output_tokens) == (0, 0)
    assert (done.input_tokens, done.output_tokens) == (0, 0)
    usage = admin.keys.usage(key.id)
    assert usage.total_requests == 2
    assert (usage.total_input_tokens, usage.total_output_tokens) == (0, 0)
    assert all((h.input_tokens, h.output_tokens) == (0, 0) for h in usage.hourly)
    assert all((d.input_tokens, d.output_tokens) == (0, 0) for d in usage.daily)


def test_reported_tokens_are_priced_counted_and_limited(
    admin: Nodai, server: ServerProcess, receiver: Receiver, make_key: Callable[..., CreatedApiKey]
) -> None:
    receiver.set(200, {"output": "ok", "usage": {"input_tokens": 1200, "output_tokens": 300}})
    workflow = admin.workflows.create(
        unique("llm"),
        name="LLM",
        upstream_url=receiver.url,
        price_per_request="0.001",
        price_per_million_input_tokens="2.5",
        price_per_million_output_tokens="10",
    )
    key = make_key(limits=[Limit("tokens", "minute", 3000)])
    try:
        with Nodai(api_key=key.key, base_url=server.base_url) as client:
            result = client.query_workflow(workflow.id, "prompt")
            # 0.001 + 1200 × 2.5 / 1e6 + 300 × 10 / 1e6
            assert (result.input_tokens, result.output_tokens) == (1200, 300)
            assert result.cost == Decimal("0.007")

            # Streamed: a JSON upstream comes through as one chunk, its tokens on Done.
            events = list(client.stream_workflow(workflow.id, "prompt"))
            done = events[-1]
            assert isinstance(done, Done)
            assert (done.input_tokens, done.output_tokens, done.cost) == (1200, 300, Decimal("0.007"))

            # 3000 tokens counted: the minute's tokens limit refuses the next query.
            with pytest.raises(RateLimitError) as caught:
                client.query_workflow(workflow.id, "prompt")
        assert caught.value.code == "rate_limited"
        assert caught.value.limit == ReachedLimit(scope="key", metric="tokens", window="minute", max=3000)

        usage = admin.keys.usage(key.id)
        assert (usage.total_requests, usage.total_cost) == (2, Decimal("0.014"))
        assert (usage.total_input_tokens, usage.total_output_tokens) == (2400, 600)
        assert sum(h.input_tokens for h in usage.hourly) == 2400
        assert sum(d.output_tokens for d in usage.daily) == 600
    finally:
        admin.workflows.delete(workflow.id)
