"""``client.webhooks`` against a real server, with a real receiver verifying real deliveries.

Every endpoint here subscribes to ``webhook.test`` only, so the key events of
other tests never reach it; each is deleted at the end.
"""

from __future__ import annotations

from typing import Iterator, List, Optional

import pytest

import nodai
from _support import Captured, Receiver, wait_until
from nodai import Delivery, Nodai, NotFoundError, Webhook, WebhookVerificationError


@pytest.fixture
def endpoint(admin: Nodai, receiver: Receiver) -> Iterator[Webhook]:
    webhook = admin.webhooks.create(
        receiver.url + "/hooks", events=["webhook.test"], description="sdk tests"
    )
    yield webhook
    try:
        admin.webhooks.delete(webhook.id)
    except NotFoundError:
        pass


def delivery_status(admin: Nodai, webhook_id: str, delivery_id: str, status: str) -> Optional[Delivery]:
    for delivery in admin.webhooks.deliveries(webhook_id):
        if delivery.id == delivery_id and delivery.status == status:
            return delivery
    return None


def test_webhook_crud(admin: Nodai, receiver: Receiver) -> None:
    created = admin.webhooks.create(receiver.url + "/crud", events=["webhook.test"], description="first")
    assert created.id.startswith("wh_")
    assert created.secret is not None and created.secret.startswith("whsec_")
    assert created.secret not in repr(created)
    assert (created.url, created.events, created.description, created.active) == (
        receiver.url + "/crud",
        ["webhook.test"],
        "first",
        True,
    )

    fetched = admin.webhooks.get(created.id)
    assert fetched.secret is None  # shown once, at creation
    assert created.id in {w.id for w in admin.webhooks.list()}
    first = admin.webhooks.list(limit=1)
    assert len(first.data) == 1

    updated = admin.webhooks.update(created.id, description=None, active=False)
    assert (updated.description, updated.active, updated.events) == (None, False, ["webhook.test"])
    assert updated.secret is None

    rotated = admin.webhooks.update(created.id, rotate_secret=True)
    assert rotated.secret is not None and rotated.secret != created.secret

    admin.webhooks.delete(created.id)
    with pytest.raises(NotFoundError):
        admin.webhooks.get(created.id)
    with pytest.raises(NotFoundError):
        admin.webhooks.deliveries(created.id)


def test_a_real_delivery_verifies_and_a_tampered_one_does_not(
    admin: Nodai, receiver: Receiver, endpoint: Webhook
) -> None:
    assert endpoint.secret is not None
    delivery_id = admin.webhooks.test(endpoint.id)
    assert delivery_id.startswith("msg_")

    [message] = receiver.wait_for(lambda c: c.headers.get("webhook-id") == delivery_id)
    assert message.path == "/hooks"

    event = nodai.webhooks.verify(message.body, message.headers, endpoint.secret)
    assert event["type"] == "webhook.test"
    assert event["data"]["webhook_id"] == endpoint.id
    assert "timestamp" in event
    # The same function hangs off the client too.
    assert admin.webhooks.verify(message.body, message.headers, endpoint.secret) == event

    tampered = message.body.replace(b"webhook.test", b"webhook.tost")
    with pytest.raises(WebhookVerificationError):
        nodai.webhooks.verify(tampered, message.headers, endpoint.secret)
    other = admin.webhooks.create(receiver.url + "/other", events=["webhook.test"])
    try:
        assert other.secret is not None
        with pytest.raises(WebhookVerificationError):
            nodai.webhooks.verify(message.body, message.headers, other.secret)
    finally:
        admin.webhooks.delete(other.id)

    delivered = wait_until(
        lambda: delivery_status(admin, endpoint.id, delivery_id, "succeeded"),
        what="the delivery to be marked succeeded",
    )
    assert delivered.event_type == "webhook.test"
    assert delivered.attempts == 1
    assert delivered.last_status_code == 200


def test_failed_delivery_is_retried_then_retried_by_hand(
    admin: Nodai, receiver: Receiver, endpoint: Webhook
) -> None:
    # The server's retry schedule here is 1s,1s,1s: four attempts, then failed.
    receiver.set(500)
    delivery_id = admin.webhooks.test(endpoint.id)
    failed = wait_until(
        lambda: delivery_status(admin, endpoint.id, delivery_id, "failed"),
        timeout=30,
        interval=0.2,
        what="the delivery to fail every attempt",
    )
    assert failed.attempts == 4
    assert failed.last_status_code == 500
    attempts: List[Captured] = receiver.captured(lambda c: c.headers.get("webhook-id") == delivery_id)
    assert len(attempts) == 4
    # webhook-id is the same on every attempt, so receivers can de-duplicate.
    assert {a.headers["webhook-id"] for a in attempts} == {delivery_id}

    receiver.set(204)
    retried = admin.webhooks.retry(endpoint.id, delivery_id)
    assert retried.id == delivery_id
    assert retried.status == "pending"
    done = wait_until(
        lambda: delivery_status(admin, endpoint.id, delivery_id, "succeeded"),
        what="the retried delivery to succeed",
    )
    assert done.last_status_code == 204
    last = receiver.captured(lambda c: c.headers.get("webhook-id") == delivery_id)[-1]
    assert endpoint.secret is not None
    assert nodai.webhooks.verify(last.body, last.headers, endpoint.secret)["type"] == "webhook.test"

    with pytest.raises(NotFoundError) as caught:
        admin.webhooks.retry(endpoint.id, "msg_" + "0" * 32)
    assert caught.value.code == "delivery_not_found"


def test_rotated_secret_signs_with_both_during_grace(
    admin: Nodai, receiver: Receiver, endpoint: Webhook
) -> None:
    assert endpoint.secret is not None
    rotated = admin.webhooks.update(endpoint.id, rotate_secret=True, grace_period_seconds=3600)
    assert rotated.secret is not None and rotated.secret != endpoint.secret

    delivery_id = admin.webhooks.test(endpoint.id)
    [message] = receiver.wait_for(lambda c: c.headers.get("webhook-id") == delivery_id)
    assert len(message.headers["webhook-signature"].split()) == 2
    assert nodai.webhooks.verify(message.body, message.headers, endpoint.secret)["type"] == "webhook.test"
    assert nodai.webhooks.verify(message.body, message.headers, rotated.secret)["type"] == "webhook.test"
