"""Streamed queries (``stream_workflow``) against the real server, sync and async."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Callable, List, Optional

import pytest

from _support import Receiver, ServerProcess, unique, wait_until
from conftest import ECHO_PRICE
from nodai import (
    AsyncNodai,
    AsyncQueryStream,
    AuthenticationError,
    Chunk,
    CostLimitExceededError,
    CreatedApiKey,
    Done,
    Nodai,
    NodaiError,
    NotFoundError,
    PermissionDeniedError,
    QueryStream,
    RateLimitError,
    StreamEvent,
    UpstreamError,
    Usage,
    Workflow,
)


def echo_words(text: str) -> List[str]:
    """How ``builtin:echo`` splits a string: each word with its trailing whitespace."""
    return re.findall(r"\S*\s|\S+", text)


def chunks_of(events: List[StreamEvent]) -> List[str]:
    return [e.text for e in events if isinstance(e, Chunk)]


def wait_for_requests(admin: Nodai, key_id: str, count: int) -> Usage:
    """The key's usage once it counts ``count`` requests; fails at a deadline, or if it counts more."""

    def probe() -> Optional[Usage]:
        usage = admin.keys.usage(key_id)
        assert usage.total_requests <= count, f"{usage.total_requests} requests counted, expected {count}"
        return usage if usage.total_requests == count else None

    return wait_until(probe, timeout=15, what=f"{count} request(s) in the usage of {key_id}")


# --- sync -------------------------------------------------------------------


def test_echo_streams_word_by_word_then_done(
    server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    text = "hello streaming  world,\nsecond line\n\nlast"
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        stream = client.stream_workflow(echo_workflow.id, text)
        assert isinstance(stream, QueryStream)
        with stream:
            events = list(stream)

    # Chunks arrive word by word (multi-line data included) and join to the input.
    assert chunks_of(events) == echo_words(text)
    assert len(chunks_of(events)) == 8
    assert "".join(chunks_of(events)) == text
    *_, last = events
    assert isinstance(last, Done)
    assert sum(isinstance(e, Done) for e in events) == 1
    # The workflow's price, exactly, as for query_workflow.
    assert last.cost == ECHO_PRICE and isinstance(last.cost, Decimal)
    assert last.request_id.startswith("req_")
    assert last.duration_ms >= 0
    assert stream.done == last
    assert stream.text == text
    assert stream.rate_limit is None  # a key without a rate limit
    # Exhausted: iterating again yields nothing.
    assert list(stream) == []


def test_carriage_returns_arrive_as_line_feeds(
    server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    # SSE cannot carry a CR: the server sends it as a line break (a lone CR
    # ends a line on the wire), so it reads back as "\n".
    key = make_key()
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        with client.stream_workflow(echo_workflow.id, "a\r\nb\rc") as stream:
            assert list(stream.text_stream) == ["a\n", "\n", "b\n", "c"]


def test_non_string_input_is_one_chunk_of_json(
    server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        with client.stream_workflow(echo_workflow.id, {"a": [1, 2.5, None]}) as stream:
            events = list(stream)
    assert chunks_of(events) == ['{"a":[1,2.5,null]}']
    assert isinstance(events[-1], Done)


def test_text_stream_until_done_and_rate_limit(
    server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key(rate_limit_per_hour=10)
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        with client.stream_workflow(echo_workflow.id, "one two three") as stream:
            assert stream.rate_limit is not None
            assert (stream.rate_limit.limit, stream.rate_limit.remaining) == (10, 9)
            assert list(stream.text_stream) == ["one ", "two ", "three"]
            assert stream.done is not None and stream.done.cost == ECHO_PRICE

        # No ``with``: iterating sends the request; until_done reads to the end.
        stream = client.stream_workflow(echo_workflow.id, "a b")
        done = stream.until_done()
        assert done.request_id.startswith("req_")
        assert stream.text == "a b"
        assert stream.rate_limit is not None and stream.rate_limit.remaining == 8


def test_usage_is_counted_once_per_stream(
    admin: Nodai, server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        with client.stream_workflow(echo_workflow.id, "count me once") as stream:
            done = stream.until_done()
        # Recorded before ``done`` was sent: no waiting needed.
        usage = admin.keys.usage(key.id)
        assert (usage.total_requests, usage.total_cost) == (1, ECHO_PRICE)
        assert done.cost == usage.total_cost

        for _ in range(2):
            with client.stream_workflow(echo_workflow.id, "again") as stream:
                stream.until_done()
    usage = admin.keys.usage(key.id)
    assert (usage.total_requests, usage.total_cost) == (3, 3 * ECHO_PRICE)
    assert sum(h.errors for h in usage.hourly) == 0


@pytest.mark.parametrize("how", ["break", "close"])
def test_leaving_a_stream_early_is_still_recorded_once(
    how: str,
    admin: Nodai,
    server: ServerProcess,
    echo_workflow: Workflow,
    make_key: Callable[..., CreatedApiKey],
) -> None:
    key = make_key()
    # Far more output than the socket buffers hold: the server is still
    # sending when the client goes away.
    text = "w " * 300_000
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        if how == "break":
            with client.stream_workflow(echo_workflow.id, text) as stream:
                for event in stream:
                    assert event == Chunk("w ")
                    break
        else:
            stream = client.stream_workflow(echo_workflow.id, text)
            assert next(stream) == Chunk("w ")
            stream.close()
        assert stream.done is None
        assert list(stream) == []  # closed: nothing more
        with pytest.raises(NodaiError):
            stream.until_done()

        usage = wait_for_requests(admin, key.id, 1)
        assert usage.total_cost == ECHO_PRICE
        # A later query counts as the second: the stream was not counted twice.
        client.query_workflow(echo_workflow.id, "after")
    usage = admin.keys.usage(key.id)
    assert (usage.total_requests, usage.total_cost) == (2, 2 * ECHO_PRICE)


def test_errors_before_the_first_chunk_are_typed(
    admin: Nodai, server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key(rate_limit_per_hour=1)
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        # From entering the ``with`` block...
        with pytest.raises(PermissionDeniedError) as invalid:
            with client.stream_workflow(echo_workflow.id, "x", api_key="nk_" + "d" * 64):
                pytest.fail("entered the block of a refused stream")
        assert (invalid.value.status, invalid.value.code) == (403, "invalid_api_key")

        # ...or from the first step of iteration.
        with pytest.raises(NotFoundError) as missing:
            for _ in client.stream_workflow(unique("nope"), "x"):
                pytest.fail("an event from an unknown workflow")
        assert missing.value.code == "workflow_not_found"

        with pytest.raises(AuthenticationError) as no_key:
            with client.stream_workflow(echo_workflow.id, "x", api_key=""):
                pass
        assert no_key.value.code == "missing_api_key"

        with client.stream_workflow(echo_workflow.id, "the one allowed") as stream:
            stream.until_done()
        with pytest.raises(RateLimitError) as limited:
            with client.stream_workflow(echo_workflow.id, "one too many"):
                pass
        assert limited.value.retry_after is not None and limited.value.retry_after > 0

    # Refused queries are not counted.
    assert admin.keys.usage(key.id).total_requests == 1


def test_cost_limit_before_the_stream(
    server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key(cost_limit_per_month="0.002")
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        client.stream_workflow(echo_workflow.id, "spends it all").until_done()
        with pytest.raises(CostLimitExceededError) as over:
            client.stream_workflow(echo_workflow.id, "over").until_done()
    assert over.value.code == "cost_limit_exceeded"


def test_streaming_upstream_multi_line_data_is_passed_through(
    admin: Nodai, server: ServerProcess, receiver: Receiver, make_key: Callable[..., CreatedApiKey]
) -> None:
    receiver.set(
        200,
        b": keep-alive\n\ndata: line one\ndata: line two\n\ndata:  indented\r\n\r\ndata: last\r\n\r\n",
        content_type="text/event-stream",
    )
    workflow = admin.workflows.create(
        unique("sse"), name="SSE upstream", upstream_url=receiver.url + "/run", price_per_request="0.01"
    )
    key = make_key()
    try:
        with Nodai(api_key=key.key, base_url=server.base_url) as client:
            with client.stream_workflow(workflow.id, "go") as stream:
                events = list(stream)
    finally:
        admin.workflows.delete(workflow.id)
    assert chunks_of(events) == ["line one\nline two", " indented", "last"]
    assert events[-1] == Done(Decimal("0.01"), events[-1].duration_ms, events[-1].request_id)  # type: ignore[union-attr]


def test_error_after_the_first_chunk_raises_by_code(
    admin: Nodai, server: ServerProcess, receiver: Receiver, make_key: Callable[..., CreatedApiKey]
) -> None:
    # The upstream sends one event, then hangs up mid-body: the server has
    # already streamed a chunk, so the failure comes as ``event: error``.
    receiver.set(200, b"data: partial\n\n", content_type="text/event-stream", cut_short=True)
    workflow = admin.workflows.create(
        unique("broken"), name="Breaks off", upstream_url=receiver.url, price_per_request="0.01"
    )
    key = make_key()
    received: List[StreamEvent] = []
    try:
        with Nodai(api_key=key.key, base_url=server.base_url) as client:
            with pytest.raises(UpstreamError) as broke:
                with client.stream_workflow(workflow.id, "go") as stream:
                    for event in stream:
                        received.append(event)
            assert stream.done is None
    finally:
        admin.workflows.delete(workflow.id)

    assert received == [Chunk("partial")]
    assert (broke.value.status, broke.value.code) == (502, "upstream_error")
    assert broke.value.request_id is not None and broke.value.request_id.startswith("req_")
    assert broke.value.detail
    # Metered once, as an upstream error: no charge.
    usage = admin.keys.usage(key.id)
    assert (usage.total_requests, usage.total_cost) == (1, Decimal(0))
    assert sum(h.errors for h in usage.hourly) == 1
    # Only one request reached the upstream: a stream is never retried.
    assert len(receiver.captured()) == 1


# --- async ------------------------------------------------------------------


async def test_async_echo_stream(
    admin: Nodai, server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key(rate_limit_per_hour=10)
    text = "async streaming\nworks  too"
    async with AsyncNodai(api_key=key.key, base_url=server.base_url) as client:
        stream = client.stream_workflow(echo_workflow.id, text)
        assert isinstance(stream, AsyncQueryStream)
        async with stream:
            assert stream.rate_limit is not None and stream.rate_limit.remaining == 9
            events = [event async for event in stream]

        assert chunks_of(events) == echo_words(text)
        assert "".join(chunks_of(events)) == text
        assert isinstance(events[-1], Done) and events[-1].cost == ECHO_PRICE
        assert events[-1].request_id.startswith("req_")
        assert stream.done == events[-1] and stream.text == text

        # ``async for`` straight over it; text_stream; until_done.
        assert chunks_of([e async for e in client.stream_workflow(echo_workflow.id, "x y")]) == ["x ", "y"]
        texts = client.stream_workflow(echo_workflow.id, "p q r")
        assert [t async for t in texts.text_stream] == ["p ", "q ", "r"]
        assert (await client.stream_workflow(echo_workflow.id, "z").until_done()).cost == ECHO_PRICE

    usage = admin.keys.usage(key.id)
    assert (usage.total_requests, usage.total_cost) == (4, 4 * ECHO_PRICE)


async def test_async_errors_before_the_first_chunk(
    server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    async with AsyncNodai(api_key=key.key, base_url=server.base_url) as client:
        with pytest.raises(PermissionDeniedError) as invalid:
            async with client.stream_workflow(echo_workflow.id, "x", api_key="nk_" + "e" * 64):
                pytest.fail("entered the block of a refused stream")
        assert invalid.value.code == "invalid_api_key"

        with pytest.raises(NotFoundError) as missing:
            async for _ in client.stream_workflow(unique("nope"), "x"):
                pytest.fail("an event from an unknown workflow")
        assert missing.value.code == "workflow_not_found"


async def test_async_leaving_early_is_recorded_once(
    admin: Nodai, server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    async with AsyncNodai(api_key=key.key, base_url=server.base_url) as client:
        async with client.stream_workflow(echo_workflow.id, "w " * 300_000) as stream:
            async for event in stream:
                assert event == Chunk("w ")
                break
        assert stream.done is None
        assert [e async for e in stream] == []

        usage = wait_for_requests(admin, key.id, 1)
        assert usage.total_cost == ECHO_PRICE
        await client.query_workflow(echo_workflow.id, "after")
    assert admin.keys.usage(key.id).total_requests == 2
