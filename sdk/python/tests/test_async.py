"""``AsyncNodai`` against the real server: queries, keys, workflows, webhooks, errors."""

from __future__ import annotations

from decimal import Decimal
from typing import List

import httpx
import pytest

import nodai
from _support import Receiver, ServerProcess, closed_port, unique
from conftest import ECHO_PRICE
from nodai import (
    APIConnectionError,
    AsyncNodai,
    AsyncPage,
    AuthenticationError,
    ConflictError,
    CreatedApiKey,
    Limit,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)


def admin_client(server: ServerProcess) -> AsyncNodai:
    return AsyncNodai(admin_token=server.admin_token, base_url=server.base_url)


async def test_async_query_and_key_lifecycle(server: ServerProcess) -> None:
    async with admin_client(server) as admin:
        workflow = await admin.workflows.create(
            unique("aecho"), name="Async echo", upstream_url="builtin:echo", price_per_request=ECHO_PRICE
        )
        key = await admin.keys.create(unique("akey"), workflow_ids=[workflow.id], rate_limit_per_hour=5)
        assert isinstance(key, CreatedApiKey)

        async with AsyncNodai(api_key=key.key, base_url=server.base_url) as client:
            result = await client.query_workflow(workflow.id, {"hello": "async"})
        assert result.output == {"hello": "async"}
        assert result.cost == ECHO_PRICE
        assert result.rate_limit is not None and result.rate_limit.remaining == 4

        assert (await admin.keys.get(key.id)).last_used_at is not None
        updated = await admin.keys.update(key.id, rate_limit_per_hour=None, owner="async-owner")
        assert (updated.rate_limit_per_hour, updated.owner) == (None, "async-owner")

        usage = await admin.keys.usage(key.id)
        assert (usage.total_requests, usage.total_cost) == (1, ECHO_PRICE)

        rotated = await admin.keys.rotate(key.id, grace_period_seconds=60)
        assert rotated.id == key.id and rotated.key != key.key

        assert (await admin.workflows.get(workflow.id)).price_per_request == Decimal("0.002")
        await admin.keys.revoke(key.id)
        revoked = await admin.keys.get(key.id)
        assert revoked.active is False and revoked.revoked_at is not None
        assert (await admin.keys.usage(key.id)).total_requests == 1
        tag = key.name
        assert [k.id async for k in admin.keys.list(q=tag)] == []
        assert [k.id async for k in admin.keys.list(q=tag, status="revoked")] == [key.id]
        assert [k.id for k in (await admin.keys.list(q=tag, status="all")).data] == [key.id]
        with pytest.raises(ConflictError) as conflict:
            await admin.keys.update(key.id, owner=None)
        assert conflict.value.code == "key_revoked"
        await admin.keys.revoke(key.id)
        await admin.workflows.delete(workflow.id)
        with pytest.raises(NotFoundError):
            await admin.workflows.get(workflow.id)


async def test_async_customers(server: ServerProcess) -> None:
    async with admin_client(server) as admin:
        workflow = await admin.workflows.create(
            unique("acust"), name="E", upstream_url="builtin:echo", price_per_request=ECHO_PRICE,
            price_per_million_input_tokens="1.5",
        )
        assert workflow.price_per_million_input_tokens == Decimal("1.5")
        tag = unique("acust")
        customer = await admin.customers.create(tag, name="Async customer", limits=[Limit("requests", "hour", 1)])
        assert customer.limits == [Limit("requests", "hour", 1)]
        assert (await admin.customers.get(tag)) == customer
        assert [c.id async for c in admin.customers.list(q=tag)] == [tag]
        assert [c.id for c in (await admin.customers.list(q=tag, limit=1)).data] == [tag]
        updated = await admin.customers.update(tag, email="a@b.example", limits=None)
        assert (updated.email, updated.limits, updated.name) == ("a@b.example", [], "Async customer")
        await admin.customers.update(tag, limits=[Limit("requests", "hour", 1)])

        first = await admin.keys.create(unique("akey"), customer_id=tag)
        second = await admin.keys.create(unique("akey"), customer_id=tag)
        assert first.customer_id == tag
        try:
            async with AsyncNodai(base_url=server.base_url) as client:
                result = await client.query_workflow(workflow.id, "x", api_key=first.key)
                assert (result.input_tokens, result.output_tokens) == (0, 0)
                with pytest.raises(RateLimitError) as limited:
                    await client.query_workflow(workflow.id, "x", api_key=second.key)
            assert limited.value.limit is not None and limited.value.limit.scope == "customer"
            usage = await admin.customers.usage(tag)
            assert (usage.customer_id, usage.total_requests, usage.total_input_tokens) == (tag, 1, 0)
            with pytest.raises(ConflictError) as has_keys:
                await admin.customers.delete(tag)
            assert has_keys.value.code == "customer_has_keys"
        finally:
            await admin.keys.revoke(first.id)
            await admin.keys.revoke(second.id)
            await admin.workflows.delete(workflow.id)
        await admin.customers.delete(tag)
        with pytest.raises(NotFoundError) as gone:
            await admin.customers.get(tag)
        assert gone.value.code == "customer_not_found"


async def test_async_list_awaits_one_page_or_iterates_all(server: ServerProcess) -> None:
    async with admin_client(server) as admin:
        mine = {(await admin.keys.create(unique("apage"))).id for _ in range(5)}
        try:
            first = await admin.keys.list(limit=2)
            assert isinstance(first, AsyncPage)
            assert len(first.data) == 2 and first.next_cursor is not None
            second = await first.next_page()
            assert second is not None and len(second.data) <= 2

            pages = [page async for page in first.iter_pages()]
            assert len(pages) >= 3 and pages[-1].next_cursor is None

            every: List[str] = [key.id async for key in admin.keys.list(limit=2)]
            assert len(every) == len(set(every))
            assert mine <= set(every)
            assert every == [k.id for p in pages for k in p.data]

            tagged = unique("aneedle")
            found = await admin.keys.create(f"{tagged} key")
            mine.add(found.id)
            assert [key.id async for key in admin.keys.list(q=tagged.upper(), limit=1)] == [found.id]
        finally:
            for key_id in mine:
                await admin.keys.revoke(key_id)


async def test_async_errors(server: ServerProcess) -> None:
    async with AsyncNodai(base_url=server.base_url, admin_token="wrong-token-wrong-token") as bad:
        with pytest.raises(AuthenticationError) as unauthorized:
            await bad.keys.get("key_x")
        assert unauthorized.value.code == "unauthorized"

    async with admin_client(server) as admin:
        with pytest.raises(NotFoundError) as missing:
            await admin.keys.get("key_" + "1" * 32)
        assert missing.value.code == "key_not_found"

        workflow = await admin.workflows.create(unique("aerr"), name="E", upstream_url="builtin:echo")
        key = await admin.keys.create(unique("aerr"), rate_limit_per_hour=1)
        try:
            async with AsyncNodai(base_url=server.base_url, api_key="") as client:
                with pytest.raises(AuthenticationError) as no_key:
                    await client.query_workflow(workflow.id, "x")
                assert no_key.value.code == "missing_api_key"

                with pytest.raises(PermissionDeniedError) as invalid:
                    await client.query_workflow(workflow.id, "x", api_key="nk_" + "c" * 64)
                assert invalid.value.code == "invalid_api_key"

                await client.query_workflow(workflow.id, "x", api_key=key.key)
                with pytest.raises(RateLimitError) as limited:
                    await client.query_workflow(workflow.id, "x", api_key=key.key)
                assert limited.value.retry_after is not None and limited.value.retry_after > 0

                with pytest.raises(NotFoundError) as no_workflow:
                    await client.query_workflow(unique("nope"), "x", api_key=key.key)
                assert no_workflow.value.code == "workflow_not_found"
        finally:
            await admin.keys.revoke(key.id)
            await admin.workflows.delete(workflow.id)

    async with AsyncNodai(base_url=f"http://127.0.0.1:{closed_port()}", max_retries=0) as dead:
        with pytest.raises(APIConnectionError):
            await dead.keys.list()


async def test_async_webhook_round_trip(server: ServerProcess, receiver: Receiver) -> None:
    async with admin_client(server) as admin:
        webhook = await admin.webhooks.create(receiver.url + "/async", events=["webhook.test"])
        try:
            assert webhook.secret is not None
            delivery_id = await admin.webhooks.test(webhook.id)
            [message] = receiver.wait_for(lambda c: c.headers.get("webhook-id") == delivery_id)
            event = nodai.webhooks.verify(message.body, message.headers, webhook.secret)
            assert event["data"]["webhook_id"] == webhook.id
            assert webhook.id in {w.id async for w in admin.webhooks.list()}
            assert (await admin.webhooks.update(webhook.id, description="d")).description == "d"
            deliveries = await admin.webhooks.deliveries(webhook.id)
            assert delivery_id in {d.id for d in deliveries}
        finally:
            await admin.webhooks.delete(webhook.id)


async def test_async_client_accepts_its_own_http_client(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as http:
        client = AsyncNodai(admin_token=server.admin_token, base_url=server.base_url, http_client=http)
        await client.workflows.list()
        await client.aclose()
        # Not ours to close: it still works.
        assert (await http.get(f"{server.base_url}/healthz")).status_code == 200
