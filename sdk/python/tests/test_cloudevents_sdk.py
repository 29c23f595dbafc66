"""Interoperability: a usage event made by the official CloudEvents SDK for
Python (``cloudevents`` on PyPI), sent in structured mode with plain HTTP, is
taken by ``POST /api/v1/events`` as nodai's own SDK's events are."""

from __future__ import annotations

from decimal import Decimal
from typing import Callable, Optional

import httpx
from cloudevents.core.bindings.http import to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from _support import ServerProcess, unique, wait_until
from nodai import CreatedApiKey, Nodai, UsageRow, Workflow


def test_a_cloudevents_sdk_event_is_accepted(
    server: ServerProcess, admin: Nodai, echo_workflow: Workflow, make_key: Callable[..., CreatedApiKey]
) -> None:
    key = make_key()
    source = unique("cloudevents-sdk")
    # The SDK fills specversion "1.0", a UUID id and the time (now, with microseconds).
    event = CloudEvent(
        attributes={"type": "nodai.usage", "source": source, "subject": key.id},
        data={"workflow_id": echo_workflow.id, "cost": 0.25, "input_tokens": 11, "output_tokens": 7},
    )
    message = to_structured(event, JSONFormat())
    assert message.headers["content-type"].startswith("application/cloudevents+json")

    url = f"{server.base_url}/api/v1/events"
    auth = {"authorization": f"Bearer {server.admin_token}"}
    response = httpx.post(url, headers={**message.headers, **auth}, content=message.body)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}

    # The same event again is a duplicate: (source, id) is applied once.
    again = httpx.post(url, headers={**message.headers, **auth}, content=message.body)
    assert (again.status_code, again.json()["duplicates"]) == (202, 1)

    # And it is metered as sent.
    def row() -> Optional[UsageRow]:
        rows = admin.usage.query(key_id=key.id, group_by=["workflow_id"])
        return rows[0] if rows else None

    counted = wait_until(row, timeout=90, what="the event in the usage report")
    assert (counted.workflow_id, counted.requests, counted.cost) == (echo_workflow.id, 1, Decimal("0.25"))
    assert (counted.input_tokens, counted.output_tokens) == (11, 7)
