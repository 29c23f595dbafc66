"""Every error class, provoked on a real server (and a real dead or silent socket).

Each case checks the class, the HTTP status and the problem's ``code``.
"""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator, Optional

import httpx
import pytest

from _support import CountingTransport, ServerProcess, closed_port, unique, wait_until
from nodai import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    CostLimitExceededError,
    CreatedApiKey,
    Nodai,
    NodaiError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamError,
    ValidationError,
    Workflow,
)


@pytest.fixture
def querier(server: ServerProcess) -> Iterator[Nodai]:
    """A client with no key of its own: each test passes ``api_key=``."""
    with Nodai(base_url=server.base_url, api_key="", admin_token="") as client:
        yield client


# --- 401 ----------------------------------------------------------------------


def test_admin_call_without_token_is_401(server: ServerProcess) -> None:
    with Nodai(base_url=server.base_url, admin_token="") as client:
        with pytest.raises(AuthenticationError) as caught:
            client.keys.list()
    error = caught.value
    assert isinstance(error, NodaiError)
    assert (error.status, error.code) == (401, "unauthorized")
    assert error.detail
    assert error.request_id is None


def test_admin_call_with_wrong_token_is_401(server: ServerProcess) -> None:
    with Nodai(base_url=server.base_url, admin_token="not-the-admin-token") as client:
        with pytest.raises(AuthenticationError) as caught:
            client.workflows.get("anything")
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")


def test_query_without_key_is_401_missing_api_key(querier: Nodai, echo_workflow: Workflow) -> None:
    with pytest.raises(AuthenticationError) as caught:
        querier.query_workflow(echo_workflow.id, "x")
    assert (caught.value.status, caught.value.code) == (401, "missing_api_key")


# --- 403 ----------------------------------------------------------------------


def test_unknown_key_is_403_invalid_api_key(querier: Nodai, echo_workflow: Workflow) -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        querier.query_workflow(echo_workflow.id, "x", api_key="nk_" + "ab" * 32)
    assert (caught.value.status, caught.value.code) == (403, "invalid_api_key")


def test_revoked_key_is_403_invalid_api_key(
    admin: Nodai, querier: Nodai, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    querier.query_workflow(echo_workflow.id, "before", api_key=key.key)
    admin.keys.revoke(key.id)
    with pytest.raises(PermissionDeniedError) as caught:
        querier.query_workflow(echo_workflow.id, "after", api_key=key.key)
    assert caught.value.code == "invalid_api_key"


def test_inactive_key_is_403_key_inactive(
    admin: Nodai, querier: Nodai, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key(active=False)
    with pytest.raises(PermissionDeniedError) as caught:
        querier.query_workflow(echo_workflow.id, "x", api_key=key.key)
    assert caught.value.code == "key_inactive"

    admin.keys.update(key.id, active=True)
    assert querier.query_workflow(echo_workflow.id, "x", api_key=key.key).output == "x"


def test_expired_key_is_403_key_expired(
    querier: Nodai, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    # expires_at must be in the future when set: two seconds ahead, then wait
    # until the server's answer changes (no fixed sleep).
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=2)
    key = make_key(expires_at=expires_at)
    assert key.expires_at is not None
    assert abs((key.expires_at - expires_at).total_seconds()) < 1

    def expired() -> Optional[PermissionDeniedError]:
        try:
            querier.query_workflow(echo_workflow.id, "x", api_key=key.key)
        except PermissionDeniedError as error:
            return error
        return None

    error = wait_until(expired, timeout=15, interval=0.2, what="the key to expire")
    assert error.code == "key_expired"
    assert datetime.now(timezone.utc) >= expires_at - timedelta(seconds=1)


def test_workflow_outside_the_keys_list_is_403(
    admin: Nodai, querier: Nodai, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    other = admin.workflows.create(unique("other"), name="Other", upstream_url="builtin:echo")
    try:
        key = make_key(workflow_ids=[other.id])
        with pytest.raises(PermissionDeniedError) as caught:
            querier.query_workflow(echo_workflow.id, "x", api_key=key.key)
        assert caught.value.code == "workflow_not_allowed"
        assert querier.query_workflow(other.id, "x", api_key=key.key).output == "x"
    finally:
        admin.workflows.delete(other.id)


# --- 404, 409 -------------------------------------------------------------------


def test_unknown_workflow_is_404(querier: Nodai, make_key: Callable[..., CreatedApiKey]) -> None:
    key = make_key()
    with pytest.raises(NotFoundError) as caught:
        querier.query_workflow(unique("missing"), "x", api_key=key.key)
    assert (caught.value.status, caught.value.code) == (404, "workflow_not_found")


def test_unknown_key_id_is_404(admin: Nodai) -> None:
    with pytest.raises(NotFoundError) as caught:
        admin.keys.get("key_" + "0" * 32)
    assert (caught.value.status, caught.value.code) == (404, "key_not_found")


def test_taken_workflow_id_is_409(admin: Nodai, echo_workflow: Workflow) -> None:
    with pytest.raises(ConflictError) as caught:
        admin.workflows.create(echo_workflow.id, name="Again", upstream_url="builtin:echo")
    assert (caught.value.status, caught.value.code) == (409, "workflow_exists")


# --- 429, 402 -------------------------------------------------------------------


def test_rate_limit_is_429_with_retry_after(
    querier: Nodai, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key(rate_limit_per_hour=1)
    querier.query_workflow(echo_workflow.id, "first", api_key=key.key)
    with pytest.raises(RateLimitError) as caught:
        querier.query_workflow(echo_workflow.id, "second", api_key=key.key)
    error = caught.value
    assert (error.status, error.code) == (429, "rate_limited")
    # The slot frees up when the first query leaves the rolling hour: after 60
    # full minutes, at most 61 (the server counts by minute).
    assert error.retry_after is not None and 3000 < error.retry_after <= 3660
    assert error.rate_limit is not None
    assert (error.rate_limit.limit, error.rate_limit.remaining) == (1, 0)


def test_rate_limit_retry_opt_in_does_not_wait_past_max_retry_wait(
    server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key(rate_limit_per_hour=1)
    transport = CountingTransport()
    with Nodai(
        api_key=key.key,
        base_url=server.base_url,
        retry_on_rate_limit=True,
        max_retry_wait=5,
        http_client=httpx.Client(transport=transport),
    ) as client:
        client.query_workflow(echo_workflow.id, "first")
        started = time.monotonic()
        with pytest.raises(RateLimitError) as caught:
            client.query_workflow(echo_workflow.id, "second")
        elapsed = time.monotonic() - started

    # Retry-After is ~an hour, beyond max_retry_wait: the SDK honours it by not
    # retrying early, and raises at once instead of sleeping for an hour.
    assert caught.value.retry_after is not None and caught.value.retry_after > 5
    assert len(transport.sent) == 2
    assert elapsed < 2


def test_cost_limit_is_402(
    querier: Nodai, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    # 0.002 per query, limit 0.001: the query that crosses the limit is allowed, the next is not.
    key = make_key(cost_limit_per_month="0.001")
    querier.query_workflow(echo_workflow.id, "crosses", api_key=key.key)
    with pytest.raises(CostLimitExceededError) as caught:
        querier.query_workflow(echo_workflow.id, "over", api_key=key.key)
    assert (caught.value.status, caught.value.code) == (402, "cost_limit_exceeded")


# --- 400/413/422 ----------------------------------------------------------------


def test_invalid_fields_are_422(admin: Nodai) -> None:
    with pytest.raises(ValidationError) as caught:
        admin.keys.create(unique("neg"), rate_limit_per_hour=-1)
    assert (caught.value.status, caught.value.code) == (422, "validation_error")

    with pytest.raises(ValidationError) as caught:
        admin.keys.create(unique("past"), expires_at=datetime(2020, 1, 1, tzinfo=timezone.utc))
    assert caught.value.status == 422

    with pytest.raises(ValidationError) as caught:
        admin.keys.list(limit=0)
    assert caught.value.status == 422

    with pytest.raises(ValidationError) as caught:
        admin.workflows.create("Not A Valid Id!", name="x", upstream_url="builtin:echo")
    assert caught.value.status == 422


def test_body_over_one_mib_is_413(admin: Nodai) -> None:
    with pytest.raises(ValidationError) as caught:
        admin.keys.create(unique("big"), metadata={"blob": "x" * (1024 * 1024 + 1)})
    assert (caught.value.status, caught.value.code) == (413, "payload_too_large")


# --- 502, no response -----------------------------------------------------------


def test_dead_upstream_is_502_and_not_retried(
    admin: Nodai, server: ServerProcess, make_key: Callable[..., CreatedApiKey]
) -> None:
    workflow = admin.workflows.create(
        unique("dead"), name="Dead", upstream_url=f"http://127.0.0.1:{closed_port()}/run"
    )
    key = make_key()
    transport = CountingTransport()
    try:
        with Nodai(
            api_key=key.key, base_url=server.base_url, http_client=httpx.Client(transport=transport)
        ) as client:
            with pytest.raises(UpstreamError) as caught:
                client.query_workflow(workflow.id, "x")
    finally:
        admin.workflows.delete(workflow.id)
    assert (caught.value.status, caught.value.code) == (502, "upstream_error")
    # Admitted, so it has a request id (the server's X-Request-Id).
    assert (caught.value.request_id or "").startswith("req_"), caught.value.request_id
    # The failed query was admitted and metered: a retry would count it twice.
    assert len(transport.sent) == 1
    usage = admin.keys.usage(key.id)
    assert usage.total_requests == 1
    assert sum(h.errors for h in usage.hourly) == 1


def test_closed_port_is_api_connection_error_after_retries() -> None:
    transport = CountingTransport()
    client = Nodai(
        base_url=f"http://127.0.0.1:{closed_port()}",
        admin_token="x" * 16,
        max_retries=2,
        http_client=httpx.Client(transport=transport),
    )
    with pytest.raises(APIConnectionError) as caught:
        client.keys.list()
    assert caught.value.status is None and caught.value.code is None
    # Refused connections never reached a server: retried, for any method.
    assert len(transport.sent) == 3

    transport.sent.clear()
    with pytest.raises(APIConnectionError):
        client.query_workflow("echo", "x", api_key="nk_x")
    assert len(transport.sent) == 3


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A socket that accepts connections (the kernel does) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_no_answer_is_api_timeout_error(silent_server: str) -> None:
    transport = CountingTransport()
    with Nodai(
        base_url=silent_server,
        admin_token="x" * 16,
        timeout=0.3,
        max_retries=1,
        http_client=httpx.Client(transport=transport),
    ) as client:
        # A POST that may have been received is not replayed: the query could
        # be metered twice.
        with pytest.raises(APITimeoutError):
            client.query_workflow("echo", "x", api_key="nk_x")
        assert len(transport.sent) == 1

        # A GET is safe to replay.
        transport.sent.clear()
        with pytest.raises(APITimeoutError) as caught:
            client.keys.get("key_x")
        assert isinstance(caught.value, APIConnectionError)
        assert len(transport.sent) == 2
