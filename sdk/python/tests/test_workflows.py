"""``client.workflows`` against a real server."""

from __future__ import annotations

from decimal import Decimal
from typing import Callable

import pytest

from _support import Receiver, ServerProcess, unique
from nodai import CreatedApiKey, NotFoundError, Nodai, ValidationError, Workflow


def test_workflow_crud(admin: Nodai, server: ServerProcess, make_key: Callable[..., CreatedApiKey]) -> None:
    workflow_id = unique("crud")
    created = admin.workflows.create(
        workflow_id, name="First", upstream_url="builtin:echo", price_per_request="0.000001"
    )
    assert isinstance(created, Workflow)
    assert (created.id, created.name, created.upstream_url) == (workflow_id, "First", "builtin:echo")
    assert created.price_per_request == Decimal("0.000001")
    assert admin.workflows.get(workflow_id) == created

    updated = admin.workflows.update(workflow_id, price_per_request=Decimal("1.5"))
    assert updated.price_per_request == Decimal("1.5")
    assert updated.name == "First"  # not given: unchanged

    # The new price applies to the next query.
    key = make_key()
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        assert client.query_workflow(workflow_id, None).cost == Decimal("1.5")

    renamed = admin.workflows.update(workflow_id, name="Second")
    assert (renamed.name, renamed.price_per_request) == ("Second", Decimal("1.5"))

    assert workflow_id in {w.id for w in admin.workflows.list()}

    admin.workflows.delete(workflow_id)
    with pytest.raises(NotFoundError):
        admin.workflows.get(workflow_id)
    with pytest.raises(NotFoundError):
        admin.workflows.delete(workflow_id)
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        with pytest.raises(NotFoundError) as caught:
            client.query_workflow(workflow_id, None)
    assert caught.value.code == "workflow_not_found"


def test_price_defaults_to_zero(admin: Nodai) -> None:
    workflow = admin.workflows.create(unique("free"), name="Free", upstream_url="builtin:echo")
    try:
        assert workflow.price_per_request == Decimal(0)
        assert workflow.max_cost_per_request is None
    finally:
        admin.workflows.delete(workflow.id)


def test_max_cost_per_request(
    admin: Nodai, server: ServerProcess, receiver: Receiver, make_key: Callable[..., CreatedApiKey]
) -> None:
    receiver.set(200, {"output": "ok", "usage": {"cost": 0.5}})
    workflow_id = unique("capped")
    created = admin.workflows.create(
        workflow_id,
        name="Capped",
        upstream_url=receiver.url,
        price_per_request="0.1",
        max_cost_per_request="0.3",
    )
    try:
        assert created.max_cost_per_request == Decimal("0.3")
        assert admin.workflows.get(workflow_id).max_cost_per_request == Decimal("0.3")

        # The upstream reports 0.50: recorded and answered as the maximum.
        key = make_key()
        with Nodai(api_key=key.key, base_url=server.base_url) as client:
            assert client.query_workflow(workflow_id, None).cost == Decimal("0.3")

            # Not given: unchanged. None: cleared.
            assert admin.workflows.update(workflow_id, name="Renamed").max_cost_per_request == Decimal("0.3")
            assert admin.workflows.update(workflow_id, max_cost_per_request=None).max_cost_per_request is None
            assert admin.workflows.get(workflow_id).max_cost_per_request is None
            assert client.query_workflow(workflow_id, None).cost == Decimal("0.5")

        # Below the price: 422 on update and on create, and nothing changes.
        with pytest.raises(ValidationError) as caught:
            admin.workflows.update(workflow_id, max_cost_per_request="0.05")
        assert (caught.value.status, caught.value.code) == (422, "validation_error")
        assert admin.workflows.get(workflow_id).max_cost_per_request is None
        with pytest.raises(ValidationError) as caught:
            admin.workflows.create(
                unique("below"),
                name="Below",
                upstream_url="builtin:echo",
                price_per_request="0.1",
                max_cost_per_request="0.05",
            )
        assert (caught.value.status, caught.value.code) == (422, "validation_error")

        # Equal to the price is allowed; a price raised above the maximum is not.
        assert admin.workflows.update(
            workflow_id, max_cost_per_request=Decimal("0.1")
        ).max_cost_per_request == Decimal("0.1")
        with pytest.raises(ValidationError):
            admin.workflows.update(workflow_id, price_per_request="0.2")
    finally:
        admin.workflows.delete(workflow_id)


def test_workflow_list_pages(admin: Nodai) -> None:
    ids = [admin.workflows.create(unique("wfpage"), name="P", upstream_url="builtin:echo").id for _ in range(3)]
    try:
        first = admin.workflows.list(limit=1)
        assert len(first.data) == 1 and first.next_cursor is not None
        walked = [w.id for w in first]
        assert len(walked) == len(set(walked))
        assert set(ids) <= set(walked)
    finally:
        for workflow_id in ids:
            admin.workflows.delete(workflow_id)
