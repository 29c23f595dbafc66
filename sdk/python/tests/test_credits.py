"""Prepaid credits against a real server: a prepaid customer's queries are paid
from grants (``customers.grant_credits``, ``credits``, ``void_credits``), and
refused with ``InsufficientCreditsError`` once the balance is used up."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Callable, Iterator

import pytest

from _support import ServerProcess, unique
from nodai import (
    AsyncNodai,
    CostLimitExceededError,
    CreatedApiKey,
    Credits,
    Customer,
    Grant,
    IdempotencyConflictError,
    InsufficientCreditsError,
    Nodai,
    NotFoundError,
    ValidationError,
    Workflow,
)

DIME = Decimal("0.1")


@pytest.fixture
def dime_workflow(admin: Nodai) -> Iterator[Workflow]:
    """A ``builtin:echo`` workflow priced at 0.10 USD per query."""
    workflow = admin.workflows.create(
        unique("dime"), name="Dime", upstream_url="builtin:echo", price_per_request=DIME
    )
    yield workflow
    try:
        admin.workflows.delete(workflow.id)
    except NotFoundError:
        pass


def test_a_prepaid_customer_without_credits_is_refused(
    server: ServerProcess,
    admin: Nodai,
    dime_workflow: Workflow,
    make_customer: Callable[..., Customer],
    make_key: Callable[..., CreatedApiKey],
) -> None:
    customer = make_customer(billing="prepaid")
    key = make_key(customer_id=customer.id)
    assert admin.customers.credits(customer.id) == Credits(balance=Decimal(0), grants=[])
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        with pytest.raises(InsufficientCreditsError) as caught:
            client.query_workflow(dime_workflow.id, "x")
    error = caught.value
    assert (error.status, error.code, error.limit) == (402, "insufficient_credits", None)
    assert isinstance(error, CostLimitExceededError)
    assert admin.customers.usage(customer.id).total_requests == 0


def test_a_grant_pays_for_queries_until_it_is_used_up(
    server: ServerProcess,
    admin: Nodai,
    dime_workflow: Workflow,
    make_customer: Callable[..., Customer],
    make_key: Callable[..., CreatedApiKey],
) -> None:
    customer = make_customer(billing="prepaid")
    key = make_key(customer_id=customer.id)
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)
    grant = admin.customers.grant_credits(
        customer.id, "0.30", expires_at=expires, description="starter pack"
    )
    assert isinstance(grant, Grant) and grant.id.startswith("gr_")
    assert (grant.amount, grant.remaining) == (Decimal("0.3"), Decimal("0.3"))
    assert (grant.expires_at, grant.voided_at, grant.description) == (expires, None, "starter pack")
    assert grant.created_at.tzinfo is not None
    assert admin.customers.credits(customer.id) == Credits(balance=Decimal("0.3"), grants=[grant])

    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        # Three queries at 0.10 (the third may cross zero), then refused.
        costs = [client.query_workflow(dime_workflow.id, n).cost for n in range(3)]
        assert costs == [DIME] * 3
        with pytest.raises(InsufficientCreditsError):
            client.query_workflow(dime_workflow.id, "one too many")

    credits = admin.customers.credits(customer.id)
    assert isinstance(credits.balance, Decimal)
    assert credits.balance == 0
    assert [(g.id, g.remaining) for g in credits.grants] == [(grant.id, Decimal(0))]
    assert admin.customers.usage(customer.id).total_cost == Decimal("0.3")

    # More credits: the key works again.
    admin.customers.grant_credits(customer.id, 1)
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        assert client.query_workflow(dime_workflow.id, "again").output == "again"
    after = admin.customers.credits(customer.id)
    assert after.balance == Decimal("0.9") and len(after.grants) == 2


def test_an_idempotency_key_makes_a_grant_once(
    admin: Nodai, make_customer: Callable[..., Customer]
) -> None:
    customer = make_customer(billing="prepaid")
    key = unique("order")
    first = admin.customers.grant_credits(customer.id, "5", description="order", idempotency_key=key)
    again = admin.customers.grant_credits(customer.id, Decimal("5.00"), description="order", idempotency_key=key)
    assert again == first  # the first answer, replayed
    credits = admin.customers.credits(customer.id)
    assert credits.balance == 5 and [g.id for g in credits.grants] == [first.id]

    with pytest.raises(IdempotencyConflictError) as caught:
        admin.customers.grant_credits(customer.id, "6", description="order", idempotency_key=key)
    assert (caught.value.status, caught.value.code) == (409, "idempotency_conflict")
    with pytest.raises(IdempotencyConflictError):
        admin.customers.grant_credits(customer.id, "5", idempotency_key=key)  # no description: another body
    assert admin.customers.credits(customer.id).balance == 5

    # The key is the customer's own: another customer's grant under it is another grant.
    other = make_customer(billing="prepaid")
    assert admin.customers.grant_credits(other.id, "6", idempotency_key=key).id != first.id

    # Without a key, each call is its own grant (the SDK makes a key per call).
    one = admin.customers.grant_credits(customer.id, 1)
    two = admin.customers.grant_credits(customer.id, 1)
    assert one.id != two.id
    assert admin.customers.credits(customer.id).balance == 7


def test_void_drops_the_balance(
    server: ServerProcess,
    admin: Nodai,
    dime_workflow: Workflow,
    make_customer: Callable[..., Customer],
    make_key: Callable[..., CreatedApiKey],
) -> None:
    customer = make_customer(billing="prepaid")
    key = make_key(customer_id=customer.id)
    kept = admin.customers.grant_credits(customer.id, "0.5")
    voided = admin.customers.grant_credits(customer.id, "2")
    assert admin.customers.credits(customer.id).balance == Decimal("2.5")

    result = admin.customers.void_credits(customer.id, voided.id)
    assert result.id == voided.id and result.voided_at is not None
    assert result.amount == 2
    credits = admin.customers.credits(customer.id)
    assert credits.balance == Decimal("0.5")
    assert [(g.id, g.voided_at is not None) for g in credits.grants] == [(kept.id, False), (voided.id, True)]
    assert admin.customers.void_credits(customer.id, voided.id).voided_at == result.voided_at  # again: a no-op

    admin.customers.void_credits(customer.id, kept.id)
    assert admin.customers.credits(customer.id).balance == 0
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        with pytest.raises(InsufficientCreditsError):
            client.query_workflow(dime_workflow.id, "x")


def test_credit_errors(admin: Nodai, make_customer: Callable[..., Customer]) -> None:
    customer = make_customer(billing="prepaid")
    with pytest.raises(NotFoundError) as no_grant:
        admin.customers.void_credits(customer.id, "gr_nosuchgrant")
    assert (no_grant.value.status, no_grant.value.code) == (404, "grant_not_found")
    nobody = unique("nobody")
    for call in (
        lambda: admin.customers.credits(nobody),
        lambda: admin.customers.grant_credits(nobody, 1),
        lambda: admin.customers.void_credits(nobody, "gr_x"),
    ):
        with pytest.raises(NotFoundError) as missing:
            call()
        assert missing.value.code == "customer_not_found"
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    for amount, fields in (
        (0, {}),
        ("-1", {}),
        (1, {"expires_at": past}),
        (1, {"description": "x" * 1001}),
        (1, {"idempotency_key": "has space"}),
        (1, {"idempotency_key": "k" * 256}),
    ):
        with pytest.raises(ValidationError) as invalid:
            admin.customers.grant_credits(customer.id, amount, **fields)
        assert (invalid.value.status, invalid.value.code) == (422, "validation_error"), (amount, fields)
    assert admin.customers.credits(customer.id).grants == []


async def test_async_credits(server: ServerProcess, make_customer: Callable[..., Customer]) -> None:
    customer = make_customer(billing="prepaid")
    async with AsyncNodai(admin_token=server.admin_token, base_url=server.base_url) as admin:
        key = unique("order")
        grant = await admin.customers.grant_credits(customer.id, "1.25", idempotency_key=key)
        assert await admin.customers.grant_credits(customer.id, "1.25", idempotency_key=key) == grant
        with pytest.raises(IdempotencyConflictError):
            await admin.customers.grant_credits(customer.id, "2", idempotency_key=key)
        assert (await admin.customers.credits(customer.id)).balance == Decimal("1.25")
        voided = await admin.customers.void_credits(customer.id, grant.id)
        assert voided.voided_at is not None
        assert await admin.customers.credits(customer.id) == Credits(balance=Decimal(0), grants=[voided])
