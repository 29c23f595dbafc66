"""``client.customers`` and named limits against a real server: customers' CRUD, pages
and search, keys that name a customer, shared limits, and the limit a refusal names."""

from __future__ import annotations

from decimal import Decimal
from typing import Callable, List

import pytest

from _support import ServerProcess, unique
from conftest import ECHO_PRICE
from nodai import (
    ConflictError,
    CostLimitExceededError,
    CreatedApiKey,
    Customer,
    Limit,
    Nodai,
    NotFoundError,
    Page,
    RateLimitError,
    ReachedLimit,
    ValidationError,
    Workflow,
)


def test_create_and_get_with_every_field(admin: Nodai, make_customer: Callable[..., Customer]) -> None:
    customer_id = unique("Acme.Corp:eu@1")
    created = make_customer(
        id=customer_id,
        name="Acme Corp",
        email="billing@acme.example",
        metadata={"plan": "enterprise", "seats": 40},
        limits=[Limit("requests", "minute", 600), {"metric": "cost", "window": "month", "max": "250.5"}],
        max_concurrent=8,
        billing="prepaid",
        low_balance_threshold=Decimal("10.25"),
        billing_anchor_day=15,
    )
    assert isinstance(created, Customer)
    assert (created.id, created.name, created.email) == (customer_id, "Acme Corp", "billing@acme.example")
    assert created.metadata == {"plan": "enterprise", "seats": 40}
    assert set(created.limits) == {Limit("requests", "minute", 600), Limit("cost", "month", Decimal("250.5"))}
    cost = next(limit for limit in created.limits if limit.metric == "cost")
    assert isinstance(cost.max, Decimal)
    assert created.max_concurrent == 8
    assert created.billing == "prepaid"
    assert created.low_balance_threshold == Decimal("10.25")
    assert created.billing_anchor_day == 15
    assert created.created_at.tzinfo is not None and created.updated_at >= created.created_at
    assert admin.customers.get(customer_id) == created


def test_defaults(make_customer: Callable[..., Customer]) -> None:
    customer = make_customer()
    assert customer.email is None and customer.metadata is None
    assert customer.limits == [] and customer.max_concurrent is None
    assert (customer.billing, customer.billing_anchor_day) == ("postpaid", 1)
    assert customer.low_balance_threshold is None


def test_update_changes_only_the_fields_given(admin: Nodai, make_customer: Callable[..., Customer]) -> None:
    customer = make_customer(
        name="Before",
        email="a@b.example",
        metadata={"a": 1},
        limits=[Limit("requests", "day", 100)],
        max_concurrent=3,
        low_balance_threshold=5,
    )
    renamed = admin.customers.update(customer.id, name="After")
    assert renamed.name == "After"
    assert (renamed.email, renamed.metadata, renamed.limits, renamed.max_concurrent) == (
        "a@b.example",
        {"a": 1},
        [Limit("requests", "day", 100)],
        3,
    )
    assert renamed.low_balance_threshold == Decimal(5)

    # None is JSON null: it clears; what is left out stays.
    cleared = admin.customers.update(customer.id, email=None, max_concurrent=None, low_balance_threshold=None)
    assert (cleared.email, cleared.max_concurrent, cleared.low_balance_threshold) == (None, None, None)
    assert cleared.limits == [Limit("requests", "day", 100)] and cleared.metadata == {"a": 1}

    # limits is the complete new list; None removes every limit.
    replaced = admin.customers.update(customer.id, limits=[Limit("tokens", "hour", 50_000)], billing="prepaid")
    assert replaced.limits == [Limit("tokens", "hour", 50_000)] and replaced.billing == "prepaid"
    assert admin.customers.update(customer.id, limits=None, metadata=None).limits == []
    changed = admin.customers.update(customer.id, billing_anchor_day=28)
    assert (changed.billing_anchor_day, changed.metadata, changed.billing) == (28, None, "prepaid")
    assert admin.customers.get(customer.id) == changed


def test_list_pages_and_searches(admin: Nodai, make_customer: Callable[..., Customer]) -> None:
    tag = unique("needle")
    mine = [
        make_customer(id=unique("c"), name=f"{tag} one").id,
        make_customer(id=unique("c"), name="other", email=f"x@{tag}.example").id,
        make_customer(id=f"{tag}-three", name="third").id,
    ]

    first = admin.customers.list(q=tag.upper(), limit=2)
    assert isinstance(first, Page)
    assert len(first.data) == 2 and first.next_cursor is not None
    second = admin.customers.list(q=tag, limit=2, cursor=first.next_cursor)
    assert len(second.data) == 1 and second.next_cursor is None
    found = [c.id for c in admin.customers.list(q=tag, limit=1)]  # every page
    assert sorted(found) == sorted(mine)
    assert found == [c.id for c in first.data + second.data]
    assert admin.customers.list(q=f"{tag}-nobody").data == []

    every: List[str] = [c.id for c in admin.customers.list(limit=2)]
    assert len(every) == len(set(every)) and set(mine) <= set(every)


def test_delete_and_the_conflicts(admin: Nodai, make_customer: Callable[..., Customer], make_key: Callable[..., CreatedApiKey]) -> None:
    customer = make_customer()
    with pytest.raises(ConflictError) as exists:
        admin.customers.create(customer.id, name="again")
    assert (exists.value.status, exists.value.code) == (409, "customer_exists")

    key = make_key(customer_id=customer.id)
    with pytest.raises(ConflictError) as has_keys:
        admin.customers.delete(customer.id)
    assert (has_keys.value.status, has_keys.value.code) == (409, "customer_has_keys")

    admin.keys.revoke(key.id)
    admin.customers.delete(customer.id)
    for call in (admin.customers.get, admin.customers.delete):
        with pytest.raises(NotFoundError) as missing:
            call(customer.id)
        assert (missing.value.status, missing.value.code) == (404, "customer_not_found")
    with pytest.raises(NotFoundError) as missing:
        admin.customers.update(unique("nobody"), name="x")
    assert missing.value.code == "customer_not_found"
    with pytest.raises(NotFoundError) as no_usage:
        admin.customers.usage(unique("nobody"))
    assert no_usage.value.code == "customer_not_found"


def test_invalid_customers_are_422(admin: Nodai, make_key: Callable[..., CreatedApiKey]) -> None:
    for fields in (
        dict(billing="monthly"),
        dict(billing_anchor_day=29),
        dict(limits=[Limit("cost", "minute", 1)]),
        dict(limits=[Limit("requests", "day", 1), Limit("requests", "day", 2)]),
        dict(max_concurrent=0),
    ):
        with pytest.raises(ValidationError) as caught:
            admin.customers.create(unique("bad"), name="Bad", **fields)
        assert (caught.value.status, caught.value.code) == (422, "validation_error"), fields
    with pytest.raises(ValidationError):
        admin.customers.create("not a valid id!", name="x")
    with pytest.raises(ValidationError) as no_customer:
        make_key(customer_id=unique("nobody"))
    assert no_customer.value.status == 422


def test_keys_name_a_customer_and_carry_named_limits(
    admin: Nodai, make_customer: Callable[..., Customer], make_key: Callable[..., CreatedApiKey]
) -> None:
    customer = make_customer()
    key = make_key(
        customer_id=customer.id,
        limits=[Limit("tokens", "day", 1_000_000), Limit("cost", "day", Decimal("2.5")), Limit("requests", "hour", 100)],
        max_concurrent=4,
    )
    assert key.customer_id == customer.id and key.max_concurrent == 4
    assert set(key.limits) == {
        Limit("requests", "hour", 100),
        Limit("tokens", "day", 1_000_000),
        Limit("cost", "day", Decimal("2.5")),
    }
    # Requests per hour is rate_limit_per_hour under its other name.
    assert key.rate_limit_per_hour == 100 and key.cost_limit_per_month is None
    legacy = make_key(rate_limit_per_hour=5)
    assert legacy.limits == [Limit("requests", "hour", 5)]
    with pytest.raises(ValidationError):  # both spellings, saying different things
        make_key(rate_limit_per_hour=5, limits=[Limit("requests", "hour", 6)])

    # Both spellings are one limit: {cost, month} is cost_limit_per_month.
    updated = admin.keys.update(key.id, limits=[Limit("cost", "month", 7)])
    assert updated.limits == [Limit("cost", "month", 7)]
    assert (updated.cost_limit_per_month, updated.rate_limit_per_hour) == (Decimal(7), None)
    assert (updated.customer_id, updated.max_concurrent) == (customer.id, 4)  # left out: unchanged

    detached = admin.keys.update(key.id, customer_id=None, limits=None, max_concurrent=None)
    assert (detached.customer_id, detached.limits, detached.max_concurrent) == (None, [], None)
    assert detached.cost_limit_per_month is None
    assert admin.keys.update(key.id, customer_id=customer.id).customer_id == customer.id


def test_a_customers_limit_is_shared_by_its_keys(
    admin: Nodai,
    server: ServerProcess,
    echo_workflow: Workflow,
    make_customer: Callable[..., Customer],
    make_key: Callable[..., CreatedApiKey],
) -> None:
    customer = make_customer(limits=[Limit("requests", "hour", 1)])
    first, second = make_key(customer_id=customer.id), make_key(customer_id=customer.id)
    with Nodai(base_url=server.base_url) as client:
        client.query_workflow(echo_workflow.id, "first", api_key=first.key)
        with pytest.raises(RateLimitError) as caught:
            client.query_workflow(echo_workflow.id, "second", api_key=second.key)
    error = caught.value
    assert (error.status, error.code) == (429, "rate_limited")
    assert error.limit == ReachedLimit(scope="customer", metric="requests", window="hour", max=1)
    assert error.retry_after is not None and error.retry_after > 0
    # X-RateLimit-* report the requests limit with the fewest remaining: the customer's.
    assert error.rate_limit is not None and (error.rate_limit.limit, error.rate_limit.remaining) == (1, 0)

    # The customer's usage sums its keys'; the refused query is not in it.
    usage = admin.customers.usage(customer.id)
    assert (usage.customer_id, usage.key_id) == (customer.id, None)
    assert (usage.total_requests, usage.total_cost) == (1, ECHO_PRICE)
    assert usage.requests_this_hour == 1 and usage.cost_this_month == ECHO_PRICE
    assert (usage.total_input_tokens, usage.total_output_tokens) == (0, 0)
    assert len(usage.hourly) == 48 and sum(h.requests for h in usage.hourly) == 1
    assert len(usage.daily) == 31 and sum(d.requests for d in usage.daily) == 1
    assert admin.keys.usage(second.id).total_requests == 0


def test_a_keys_own_limit_is_named_with_scope_key(
    server: ServerProcess, echo_workflow: Workflow, make_customer: Callable[..., Customer], make_key: Callable[..., CreatedApiKey]
) -> None:
    customer = make_customer(limits=[Limit("requests", "day", 1000)])
    key = make_key(customer_id=customer.id, limits=[Limit("requests", "minute", 1)])
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        client.query_workflow(echo_workflow.id, "first")
        with pytest.raises(RateLimitError) as caught:
            client.query_workflow(echo_workflow.id, "second")
    assert caught.value.limit == ReachedLimit(scope="key", metric="requests", window="minute", max=1)
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 120


def test_a_customers_cost_limit_names_itself(
    server: ServerProcess, echo_workflow: Workflow, make_customer: Callable[..., Customer], make_key: Callable[..., CreatedApiKey]
) -> None:
    # 0.002 a query, 0.001 a day: the query that crosses the limit is allowed, the next is not.
    customer = make_customer(limits=[Limit("cost", "day", Decimal("0.001"))])
    key = make_key(customer_id=customer.id)
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        client.query_workflow(echo_workflow.id, "crosses")
        with pytest.raises(CostLimitExceededError) as caught:
            client.query_workflow(echo_workflow.id, "over")
    assert (caught.value.status, caught.value.code) == (402, "cost_limit_exceeded")
    assert caught.value.limit == ReachedLimit(scope="customer", metric="cost", window="day", max=Decimal("0.001"))
    assert isinstance(caught.value.limit.max, Decimal)
