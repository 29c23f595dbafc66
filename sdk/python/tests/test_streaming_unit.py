"""The SSE decoder, and streams over ``httpx.MockTransport``: what a real server
does not produce on demand (an ``event: error`` of each code, a connection
that breaks mid-stream, a 503 before the stream, keep-alive comments)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import AsyncIterator, Dict, Iterator, List, Optional, Sequence, Type, Union

import httpx
import pytest

from nodai import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncNodai,
    Chunk,
    ConcurrencyLimitError,
    CostLimitExceededError,
    Done,
    InternalServerError,
    Nodai,
    NodaiError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
)
from nodai._sse import ServerSentEvent, SSEDecoder

# --- the decoder --------------------------------------------------------------


def decode(*pieces: bytes) -> List[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [e for piece in pieces for e in decoder.feed(piece)]
    return events + decoder.end()


def byte_by_byte(data: bytes) -> List[ServerSentEvent]:
    return decode(*(data[i : i + 1] for i in range(len(data))))


def pairs(events: List[ServerSentEvent]) -> List[tuple[str, str]]:
    return [(e.event, e.data) for e in events]


STREAM = "event: chunk\ndata: héllo ✓\n\n: keep-alive\n\nevent: chunk\ndata: two\ndata:  lines\n\nevent: done\ndata: {}\n\n"
EXPECTED = [("chunk", "héllo ✓"), ("chunk", "two\n lines"), ("done", "{}")]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_every_line_ending(eol: str) -> None:
    data = STREAM.replace("\n", eol).encode()
    assert pairs(decode(data)) == EXPECTED
    # Split anywhere: inside a UTF-8 character, between CR and LF.
    assert pairs(byte_by_byte(data)) == EXPECTED


def test_mixed_line_endings_and_a_byte_order_mark() -> None:
    data = "\ufeffdata: a\r\ndata: b\rdata: c\n\r\n".encode()
    assert pairs(decode(data)) == [("message", "a\nb\nc")]
    assert pairs(byte_by_byte(data)) == [("message", "a\nb\nc")]


def test_field_parsing_rules() -> None:
    events = decode(
        b"data:no space\n\n"  # the space after the colon is optional
        b"data:  two spaces\n\n"  # only one is removed
        b"data\n\n"  # no colon: a data line with an empty value
        b"data:\ndata:\n\n"  # empty lines count: one "\n"
        b"event: ping\n\n"  # no data: not dispatched
        b"event: chunk\nid: 7\nretry: 1500\nfoo: bar\ndata: x\n\n"
        b"data: y\n\n"  # the event type does not carry over; the id does
    )
    assert pairs(events) == [
        ("message", "no space"),
        ("message", " two spaces"),
        ("message", ""),
        ("message", "\n"),
        ("chunk", "x"),
        ("message", "y"),
    ]
    assert (events[4].id, events[4].retry) == ("7", 1500)
    assert (events[5].id, events[5].retry) == ("7", None)


def test_an_event_without_its_blank_line_is_dropped() -> None:
    assert pairs(decode(b"data: whole\n\ndata: cut off\n")) == [("message", "whole")]
    assert pairs(decode(b"data: cut off")) == []
    # A lone CR at the very end still ends its line.
    assert pairs(decode(b"data: a\r\r")) == [("message", "a")]


# --- streams over a mock transport ---------------------------------------------


def sse(*events: tuple[str, str]) -> bytes:
    out = ""
    for name, data in events:
        out += f"event: {name}\n" + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"
    return out.encode()


DONE = ("done", json.dumps({"usage": {"cost": 0.0025, "duration_ms": 12}, "request_id": "req_1"}))


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body sent in ``pieces``, then ``fail`` raised if given."""

    def __init__(self, pieces: Sequence[bytes], fail: Optional[Exception] = None) -> None:
        self.pieces = pieces
        self.fail = fail

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces
        if self.fail is not None:
            raise self.fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.fail is not None:
            raise self.fail


def events_response(
    pieces: Sequence[bytes], fail: Optional[Exception] = None, headers: Optional[Dict[str, str]] = None
) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream", **(headers or {})}, stream=Body(pieces, fail)
    )


Step = Union[httpx.Response, Exception]


class Script:
    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: List[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def client_for(script: Script, **options: object) -> Nodai:
    client = Nodai(
        base_url="http://nodai.test",
        api_key="nk_test",
        http_client=httpx.Client(transport=httpx.MockTransport(script)),
        **options,  # type: ignore[arg-type]
    )
    client._sleep = lambda _: None
    return client


def async_client_for(script: Script, **options: object) -> AsyncNodai:
    client = AsyncNodai(
        base_url="http://nodai.test",
        api_key="nk_test",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(script)),
        **options,  # type: ignore[arg-type]
    )

    async def no_sleep(_: float) -> None:
        pass

    client._sleep = no_sleep
    return client


def problem(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"type": "about:blank", "title": "t", "status": status, "detail": f"{code} detail", "code": code}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json", **headers})


def test_the_request_asks_for_events_and_the_events_are_typed() -> None:
    # A keep-alive comment and an unknown event type among them; delivered in awkward pieces.
    body = sse(("chunk", "a ")) + b": ping\r\n\r\nevent: future\ndata: x\n\n" + sse(("chunk", "two\nlines"), DONE)
    pieces = [body[:3], body[3:20], body[20:41], body[41:-1], body[-1:]]
    rate_limit = {"x-ratelimit-limit": "5", "x-ratelimit-remaining": "4", "x-ratelimit-reset": "1800000000"}
    script = Script(events_response(pieces, headers=rate_limit))
    with client_for(script).stream_workflow("wf/1", {"text": "hi"}, api_key="nk_other") as stream:
        events = list(stream)

    [request] = script.requests
    assert request.method == "POST" and request.url.raw_path == b"/api/v1/workflows/wf%2F1/query"
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["x-api-key"] == "nk_other"
    assert json.loads(request.content) == {"input": {"text": "hi"}}
    assert events == [Chunk("a "), Chunk("two\nlines"), Done(Decimal("0.0025"), 12, "req_1")]
    assert stream.done == events[-1]
    assert stream.text == "a two\nlines"
    assert stream.rate_limit is not None and stream.rate_limit.remaining == 4


@pytest.mark.parametrize(
    "code, cls, status",
    [
        ("metering_unavailable", ServiceUnavailableError, 503),
        ("upstream_error", UpstreamError, 502),
        ("upstream_timeout", UpstreamError, 504),
        ("upstream_something_new", UpstreamError, 502),
        ("concurrency_limited", ConcurrencyLimitError, 429),
        ("internal_error", InternalServerError, 500),
        ("never_heard_of_it", InternalServerError, 500),
    ],
)
def test_an_error_event_raises_by_code(code: str, cls: Type[APIStatusError], status: int) -> None:
    error = ("error", json.dumps({"code": code, "detail": "it broke", "request_id": "req_9"}))
    script = Script(events_response([sse(("chunk", "partial "), error, DONE)]), events_response([]))
    received: List[object] = []
    with pytest.raises(cls) as caught:
        with client_for(script).stream_workflow("echo", "x") as stream:
            for event in stream:
                received.append(event)
    assert received == [Chunk("partial ")]
    assert type(caught.value) is cls
    assert (caught.value.status, caught.value.code) == (status, code)
    assert (caught.value.detail, caught.value.request_id) == ("it broke", "req_9")
    assert len(script.requests) == 1  # never retried, even a 503 code
    assert stream.done is None and list(stream) == []


@pytest.mark.parametrize(
    "fail, cls",
    [
        (httpx.RemoteProtocolError("peer closed connection"), APIConnectionError),
        (httpx.ReadTimeout("timed out"), APITimeoutError),
        (None, APIConnectionError),  # a clean end, but no done event
    ],
)
def test_a_stream_that_breaks_off_is_a_connection_error_and_not_retried(
    fail: Optional[Exception], cls: Type[NodaiError]
) -> None:
    script = Script(events_response([sse(("chunk", "part"))], fail), events_response([sse(DONE)]))
    client = client_for(script, max_retries=5)
    received: List[object] = []
    with pytest.raises(cls):
        for event in client.stream_workflow("echo", "x"):
            received.append(event)
    assert received == [Chunk("part")]
    assert len(script.requests) == 1


def test_failures_before_the_stream_are_retried_like_query_workflow() -> None:
    script = Script(
        problem(503, "metering_unavailable"),
        httpx.ConnectError("refused"),
        events_response([sse(("chunk", "ok"), DONE)]),
    )
    with client_for(script).stream_workflow("echo", "x") as stream:
        assert list(stream.text_stream) == ["ok"]
    assert len(script.requests) == 3


@pytest.mark.parametrize(
    "response, cls",
    [
        (problem(402, "cost_limit_exceeded"), CostLimitExceededError),
        (problem(429, "rate_limited", **{"retry-after": "30"}), RateLimitError),
        (problem(502, "upstream_error"), UpstreamError),
    ],
)
def test_problem_responses_before_the_stream(response: httpx.Response, cls: Type[APIStatusError]) -> None:
    script = Script(response)
    with pytest.raises(cls) as caught:
        with client_for(script).stream_workflow("echo", "x"):
            pass
    assert caught.value.status == response.status_code and caught.value.detail is not None
    assert len(script.requests) == 1


def test_a_server_that_answers_json_is_read_as_one_chunk() -> None:
    answer = {"output": {"a": 1}, "usage": {"cost": 0.002, "duration_ms": 3}, "request_id": "req_j"}
    script = Script(httpx.Response(200, json=answer))
    events = list(client_for(script).stream_workflow("echo", "x"))
    assert [e for e in events if isinstance(e, Chunk)] == [Chunk('{"a":1}')]
    assert isinstance(events[-1], Done) and events[-1].request_id == "req_j"


def test_done_carries_the_reported_tokens() -> None:
    usage = {"cost": 0.007, "duration_ms": 4, "input_tokens": 1200, "output_tokens": 300}
    done = ("done", json.dumps({"usage": usage, "request_id": "req_t"}))
    script = Script(events_response([sse(("chunk", "ok"), done)]))
    assert client_for(script).stream_workflow("echo", "x").until_done() == Done(
        Decimal("0.007"), 4, "req_t", input_tokens=1200, output_tokens=300
    )

    answer = {"output": "ok", "usage": {**usage, "input_tokens": 7}, "request_id": "req_j"}
    script = Script(httpx.Response(200, json=answer))
    last = list(client_for(script).stream_workflow("echo", "x"))[-1]
    assert isinstance(last, Done) and (last.input_tokens, last.output_tokens) == (7, 300)


def test_malformed_done_and_unexpected_content_type() -> None:
    script = Script(events_response([sse(("done", "{not json"))]))
    with pytest.raises(NodaiError, match="malformed"):
        client_for(script).stream_workflow("echo", "x").until_done()

    script = Script(httpx.Response(200, text="<html>", headers={"content-type": "text/html"}))
    with pytest.raises(NodaiError, match="text/html"):
        client_for(script).stream_workflow("echo", "x").until_done()


def test_nothing_is_sent_until_the_stream_is_used() -> None:
    script = Script(events_response([sse(DONE)]))
    client = client_for(script)
    stream = client.stream_workflow("echo", "x")
    assert script.requests == []
    stream.close()
    assert list(stream) == [] and script.requests == []


async def test_async_error_event_and_broken_stream() -> None:
    error = ("error", json.dumps({"code": "metering_unavailable", "detail": "d", "request_id": "req_2"}))
    script = Script(events_response([sse(("chunk", "a"), error)]))
    received: List[object] = []
    with pytest.raises(ServiceUnavailableError) as caught:
        async with async_client_for(script).stream_workflow("echo", "x") as stream:
            async for event in stream:
                received.append(event)
    assert received == [Chunk("a")] and caught.value.request_id == "req_2"

    script = Script(
        problem(503, "metering_unavailable"),
        events_response([b"event: chunk\r\ndata: b\r\n\r\n"], httpx.ReadError("reset")),
        events_response([sse(DONE)]),
    )
    client = async_client_for(script, max_retries=5)
    with pytest.raises(APIConnectionError):
        async for _ in client.stream_workflow("echo", "x"):
            pass
    assert len(script.requests) == 2  # the 503 retried; the broken stream not

    script = Script(httpx.Response(200, json={"output": "hi", "usage": {"cost": 0, "duration_ms": 1}, "request_id": "req_3"}))
    stream = async_client_for(script).stream_workflow("echo", "x")
    assert (await stream.until_done()).request_id == "req_3"
    assert stream.text == "hi"
