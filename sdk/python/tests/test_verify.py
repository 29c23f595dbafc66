"""``client.verify`` against a real server: every verdict about a key is a
``Verification`` (valid or not, never raised); only a bad request raises."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Callable

import pytest

from _support import ServerProcess, unique, wait_until
from conftest import ECHO_PRICE
from nodai import (
    AsyncNodai,
    AuthenticationError,
    CreatedApiKey,
    Customer,
    Limit,
    LimitStanding,
    Nodai,
    ReachedLimit,
    ValidationError,
    Verification,
    Workflow,
    usage_event,
)


def test_a_valid_key_is_verified_with_a_hold_and_its_limits(
    admin: Nodai, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key(workflow_ids=[echo_workflow.id], rate_limit_per_hour=10, cost_limit_per_month="1")
    before = datetime.now(timezone.utc)
    v = admin.verify(key.key, workflow_id=echo_workflow.id)
    assert isinstance(v, Verification)
    assert (v.valid, v.code, v.key_id, v.customer_id) == (True, "valid", key.id, None)
    assert v.authorization_id is not None and v.authorization_id.startswith("auth_")
    assert v.hold == ECHO_PRICE  # the workflow's price: it has no max_cost_per_request
    # The hold lasts hold_seconds (default 300).
    assert v.expires_at is not None
    assert before + timedelta(seconds=290) < v.expires_at < before + timedelta(seconds=310)
    assert (v.detail, v.limit, v.retry_after) == (None, None, None)
    by_metric = {x.metric: x for x in v.limits}
    assert set(by_metric) == {"requests", "cost"}
    requests = by_metric["requests"]
    assert isinstance(requests, LimitStanding)
    assert (requests.scope, requests.window, requests.max, requests.remaining) == ("key", "hour", 10, 9)
    assert requests.reset is not None and requests.reset > before
    cost = by_metric["cost"]
    assert (cost.scope, cost.window, cost.max) == ("key", "month", Decimal(1))
    assert cost.remaining == Decimal(1) - ECHO_PRICE  # the hold counts
    assert isinstance(cost.remaining, Decimal)

    # An explicit hold and hold_seconds; each verification has its own authorization.
    again = admin.verify(key.key, workflow_id=echo_workflow.id, hold="0.25", hold_seconds=60)
    assert again.valid and again.authorization_id != v.authorization_id
    assert again.hold == Decimal("0.25")
    assert again.expires_at is not None and again.expires_at < before + timedelta(seconds=70)
    costs = [x for x in again.limits if x.metric == "cost"]
    assert costs[0].remaining == Decimal(1) - ECHO_PRICE - Decimal("0.25")
    assert [x.remaining for x in again.limits if x.metric == "requests"] == [8]


def test_an_unknown_key_is_a_verdict_not_an_exception(admin: Nodai) -> None:
    v = admin.verify("nk_" + "0" * 64)
    assert (v.valid, v.code) == (False, "invalid_api_key")
    assert v.detail
    assert (v.key_id, v.authorization_id, v.hold, v.expires_at, v.limits) == (None, None, None, None, [])


def test_rate_limited_on_the_third_verification(
    admin: Nodai, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key(rate_limit_per_hour=2)
    first, second, third = (admin.verify(key.key, workflow_id=echo_workflow.id) for _ in range(3))
    assert [first.valid, second.valid] == [True, True]
    assert [x.remaining for x in first.limits] == [1]
    assert [x.remaining for x in second.limits] == [0]
    assert (third.valid, third.code, third.key_id) == (False, "rate_limited", key.id)
    assert third.limit == ReachedLimit(scope="key", metric="requests", window="hour", max=2)
    # A rolling hour: the first verification frees a place in about an hour.
    assert third.retry_after is not None and 3500 <= third.retry_after <= 3700
    assert third.authorization_id is None and third.detail


def test_verdicts_on_inactive_keys_workflows_and_customers(
    admin: Nodai,
    echo_workflow: Workflow,
    make_key: Callable[..., CreatedApiKey],
    make_customer: Callable[..., Customer],
) -> None:
    inactive = make_key(active=False)
    assert admin.verify(inactive.key).code == "key_inactive"

    limited = make_key(workflow_ids=[echo_workflow.id])
    other = admin.workflows.create(unique("other"), name="Other", upstream_url="builtin:echo")
    try:
        v = admin.verify(limited.key, workflow_id=other.id)
        assert (v.valid, v.code, v.key_id) == (False, "workflow_not_allowed", limited.id)
    finally:
        admin.workflows.delete(other.id)
    missing = admin.verify(limited.key, workflow_id=unique("nowhere"))
    assert (missing.valid, missing.code) == (False, "workflow_not_found")

    # Without a workflow, nothing is held by default.
    customer = make_customer(limits=[Limit("cost", "month", Decimal("0.5"))])
    key = make_key(customer_id=customer.id)
    v = admin.verify(key.key)
    assert (v.valid, v.customer_id, v.hold) == (True, customer.id, Decimal(0))
    assert [(x.scope, x.metric, x.remaining) for x in v.limits] == [("customer", "cost", Decimal("0.5"))]
    # A hold counts against the customer's cost limit: the verification that
    # crosses it is admitted, the next one refused.
    assert admin.verify(key.key, hold="0.6").valid
    refused = admin.verify(key.key, hold="0.01")
    assert (refused.valid, refused.code, refused.customer_id) == (False, "cost_limit_exceeded", customer.id)
    assert refused.limit == ReachedLimit(scope="customer", metric="cost", window="month", max=Decimal("0.5"))


def test_insufficient_credits_is_a_verdict(
    admin: Nodai, make_customer: Callable[..., Customer], make_key: Callable[..., CreatedApiKey]
) -> None:
    customer = make_customer(billing="prepaid")
    key = make_key(customer_id=customer.id)
    v = admin.verify(key.key)
    assert (v.valid, v.code) == (False, "insufficient_credits")


def test_bad_requests_raise(server: ServerProcess, admin: Nodai, make_key: Callable[..., CreatedApiKey]) -> None:
    key = make_key(rate_limit_per_hour=1)
    for fields in ({"hold_seconds": 0}, {"hold_seconds": 86401}, {"hold": "-1"}, {"hold": "0.0000001"}):
        with pytest.raises(ValidationError) as caught:
            admin.verify(key.key, **fields)
        assert (caught.value.status, caught.value.code) == (422, "validation_error"), fields
    with Nodai(admin_token="not-the-admin-token-at-all", base_url=server.base_url) as wrong:
        with pytest.raises(AuthenticationError) as unauthorized:
            wrong.verify(key.key)
    assert (unauthorized.value.status, unauthorized.value.code) == (401, "unauthorized")
    # None of these counted: the key's one request an hour is still there.
    assert admin.verify(key.key).valid
    assert admin.verify(key.key).code == "rate_limited"


async def test_async_verify(server: ServerProcess, make_key: Callable[..., CreatedApiKey]) -> None:
    key = make_key(rate_limit_per_hour=1)
    async with AsyncNodai(admin_token=server.admin_token, base_url=server.base_url) as admin:
        ok = await admin.verify(key.key, hold=1, hold_seconds=30)
        assert (ok.valid, ok.hold) == (True, Decimal(1))
        refused = await admin.verify(key.key)
        assert (refused.valid, refused.code) == (False, "rate_limited")
        with pytest.raises(ValidationError):
            await admin.verify(key.key, hold_seconds=0)


def test_a_verification_holds_a_place_in_flight_until_its_event_settles_it(
    admin: Nodai, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key(max_concurrent=1)
    first = admin.verify(key.key, workflow_id=echo_workflow.id)
    assert first.valid and first.authorization_id is not None
    busy = admin.verify(key.key, workflow_id=echo_workflow.id)
    assert (busy.valid, busy.code) == (False, "concurrency_limited")
    assert busy.limit == ReachedLimit(scope="key", metric="concurrent", window=None, max=1)
    assert busy.retry_after is not None and busy.retry_after >= 0
    # The work is done: its event frees the place.
    admin.events.send([usage_event(key.id, echo_workflow.id, authorization_id=first.authorization_id)])
    assert admin.verify(key.key, workflow_id=echo_workflow.id).valid


def test_expired_and_revoked_keys(admin: Nodai, make_key: Callable[..., CreatedApiKey]) -> None:
    soon = datetime.now(timezone.utc) + timedelta(seconds=1)
    expiring = make_key(expires_at=soon)
    wait_until(lambda: datetime.now(timezone.utc) > soon + timedelta(milliseconds=100), what="the key's expiry")
    expired = admin.verify(expiring.key)
    assert (expired.valid, expired.code, expired.key_id) == (False, "key_expired", expiring.id)

    revoked = make_key()
    admin.keys.revoke(revoked.id)
    assert (admin.verify(revoked.key).valid, admin.verify(revoked.key).code) == (False, "invalid_api_key")
