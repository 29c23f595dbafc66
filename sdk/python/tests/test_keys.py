"""``client.keys`` against a real server: create, read, partial update, pages, revoke, rotate."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Callable, List, Optional

import pytest

from _support import ServerProcess, unique
from conftest import ECHO_PRICE
from nodai import (
    ApiKey,
    ConflictError,
    CreatedApiKey,
    KeyStatus,
    Nodai,
    NotFoundError,
    Page,
    PermissionDeniedError,
    ValidationError,
    Workflow,
)


def test_create_returns_the_plaintext_once(admin: Nodai, make_key: Callable[..., CreatedApiKey]) -> None:
    expires_at = (datetime.now(timezone.utc) + timedelta(days=30)).replace(microsecond=0)
    key = make_key(
        name="acme",
        owner="team-a",
        workflow_ids=["wf-a", "wf-b"],
        rate_limit_per_hour=100,
        cost_limit_per_month=Decimal("5.25"),
        alert_thresholds=[50, 90],
        expires_at=expires_at,
        metadata={"plan": "pro", "seats": 3},
    )
    assert isinstance(key, CreatedApiKey)
    assert key.key.startswith("nk_") and len(key.key) == 67
    assert key.prefix == key.key[:11]
    assert key.id.startswith("key_")
    assert key.key not in repr(key)

    fetched = admin.keys.get(key.id)
    assert not isinstance(fetched, CreatedApiKey)
    assert fetched.name == "acme"
    assert fetched.owner == "team-a"
    assert fetched.active is True
    assert fetched.workflow_ids == ["wf-a", "wf-b"]
    assert fetched.rate_limit_per_hour == 100
    assert fetched.cost_limit_per_month == Decimal("5.25")
    assert fetched.alert_thresholds == [50, 90]
    assert fetched.expires_at == expires_at
    assert fetched.metadata == {"plan": "pro", "seats": 3}
    assert fetched.last_used_at is None
    assert fetched.revoked_at is None
    assert fetched.created_at.tzinfo is not None


def test_defaults(make_key: Callable[..., CreatedApiKey]) -> None:
    key = make_key()
    assert key.workflow_ids == []
    assert key.rate_limit_per_hour is None
    assert key.cost_limit_per_month is None
    assert key.alert_thresholds == [80, 100]
    assert key.expires_at is None
    assert key.owner is None


def test_update_changes_only_the_fields_given(
    admin: Nodai, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key(owner="o", rate_limit_per_hour=10, cost_limit_per_month=2, metadata={"a": 1})

    renamed = admin.keys.update(key.id, name="renamed")
    assert renamed.name == "renamed"
    assert (renamed.owner, renamed.rate_limit_per_hour, renamed.cost_limit_per_month) == (
        "o",
        10,
        Decimal("2"),
    )
    assert renamed.metadata == {"a": 1}
    assert renamed.updated_at >= key.updated_at

    # None is JSON null: it clears the limit; the other limit stays.
    cleared = admin.keys.update(key.id, rate_limit_per_hour=None)
    assert cleared.rate_limit_per_hour is None
    assert cleared.cost_limit_per_month == Decimal("2")
    assert cleared.name == "renamed"

    cleared = admin.keys.update(key.id, cost_limit_per_month=None, owner=None, metadata=None)
    assert (cleared.cost_limit_per_month, cleared.owner, cleared.metadata) == (None, None, None)

    changed = admin.keys.update(key.id, workflow_ids=["x"], alert_thresholds=[100], active=False)
    assert (changed.workflow_ids, changed.alert_thresholds, changed.active) == (["x"], [100], False)
    assert admin.keys.get(key.id) == changed


def test_update_unknown_key_is_404(admin: Nodai) -> None:
    with pytest.raises(NotFoundError):
        admin.keys.update("key_" + "f" * 32, name="x")


def test_list_pages_through_next_cursor(admin: Nodai, make_key: Callable[..., CreatedApiKey]) -> None:
    mine = {make_key(name=unique("page")).id for _ in range(5)}

    first = admin.keys.list(limit=2)
    assert isinstance(first, Page)
    assert len(first.data) == 2
    assert first.next_cursor is not None and first.has_next_page()

    # One page at a time, by hand.
    second = admin.keys.list(limit=2, cursor=first.next_cursor)
    assert {k.id for k in second.data}.isdisjoint({k.id for k in first.data})

    pages = list(first.iter_pages())
    assert len(pages) >= 3  # at least our 5 keys, 2 a page
    assert all(len(p.data) <= 2 for p in pages)
    assert pages[-1].next_cursor is None and pages[-1].next_page() is None

    # Iterating the page walks every key, each once.
    every = [k.id for k in admin.keys.list(limit=2)]
    assert len(every) == len(set(every))
    assert mine <= set(every)
    assert every == [k.id for p in pages for k in p.data]
    assert all(isinstance(k, ApiKey) for k in admin.keys.list(limit=1000).data)


def test_list_with_q_finds_keys_by_name_or_owner(admin: Nodai, make_key: Callable[..., CreatedApiKey]) -> None:
    tag = unique("needle")
    a = make_key(name=f"{tag} one")
    b = make_key(name=unique("other"), owner=tag.upper())
    assert [k.id for k in admin.keys.list(q=tag, limit=1)] == [a.id, b.id]
    assert admin.keys.list(q=f"{tag}-nobody").data == []


def test_revoke(admin: Nodai, server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]) -> None:
    key = make_key()
    admin.keys.revoke(key.id)
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        with pytest.raises(PermissionDeniedError) as caught:
            client.query_workflow(echo_workflow.id, "x")
    assert caught.value.code == "invalid_api_key"


def test_a_revoked_key_is_kept_but_no_longer_changes(
    admin: Nodai, server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    tag = unique("kept")
    live = make_key(name=f"{tag} live")
    key = make_key(name=f"{tag} revoked")
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        client.query_workflow(echo_workflow.id, "x")
    before = datetime.now(timezone.utc)
    admin.keys.revoke(key.id)

    revoked = admin.keys.get(key.id)
    assert (revoked.id, revoked.name, revoked.active) == (key.id, f"{tag} revoked", False)
    assert revoked.revoked_at is not None
    assert abs(revoked.revoked_at - before) < timedelta(minutes=1)
    assert admin.keys.usage(key.id).total_requests == 1  # kept for billing

    def ids(status: Optional[KeyStatus]) -> List[str]:
        return [k.id for k in admin.keys.list(q=tag, status=status)]

    assert ids(None) == [live.id]  # the default is live
    assert ids("live") == [live.id]
    assert ids("revoked") == [key.id]
    assert ids("all") == [live.id, key.id]
    assert [k.revoked_at for k in admin.keys.list(q=tag, status="revoked").data] == [revoked.revoked_at]
    with pytest.raises(ValidationError) as bad_status:
        admin.keys.list(status="gone")  # type: ignore[arg-type]
    assert (bad_status.value.status, bad_status.value.code) == (422, "validation_error")

    with pytest.raises(ConflictError) as update:
        admin.keys.update(key.id, name="back")
    assert (update.value.status, update.value.code) == (409, "key_revoked")
    with pytest.raises(ConflictError) as rotate:
        admin.keys.rotate(key.id)
    assert (rotate.value.status, rotate.value.code) == (409, "key_revoked")

    admin.keys.revoke(key.id)  # again: fine, and the first time stays
    assert admin.keys.get(key.id).revoked_at == revoked.revoked_at
    with Nodai(api_key=key.key, base_url=server.base_url) as client:
        with pytest.raises(PermissionDeniedError) as caught:
            client.query_workflow(echo_workflow.id, "x")
    assert caught.value.code == "invalid_api_key"


def test_rotate_with_grace_keeps_the_old_secret_working(
    admin: Nodai, server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    old = make_key()
    rotated = admin.keys.rotate(old.id, grace_period_seconds=600)
    assert isinstance(rotated, CreatedApiKey)
    assert rotated.id == old.id
    assert rotated.key != old.key and rotated.prefix == rotated.key[:11]

    with Nodai(base_url=server.base_url) as client:
        assert client.query_workflow(echo_workflow.id, "old", api_key=old.key).output == "old"
        assert client.query_workflow(echo_workflow.id, "new", api_key=rotated.key).output == "new"

    # Same id, same usage: both queries count for the key.
    usage = admin.keys.usage(old.id)
    assert usage.total_requests == 2
    assert usage.total_cost == 2 * ECHO_PRICE


def test_rotate_without_grace_stops_the_old_secret_at_once(
    admin: Nodai, server: ServerProcess, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    old = make_key()
    rotated = admin.keys.rotate(old.id)
    with Nodai(base_url=server.base_url) as client:
        with pytest.raises(PermissionDeniedError) as caught:
            client.query_workflow(echo_workflow.id, "x", api_key=old.key)
        assert caught.value.code == "invalid_api_key"
        assert client.query_workflow(echo_workflow.id, "x", api_key=rotated.key).output == "x"


def test_usage_of_unknown_key_is_404(admin: Nodai) -> None:
    with pytest.raises(NotFoundError):
        admin.keys.usage("key_" + "e" * 32)
