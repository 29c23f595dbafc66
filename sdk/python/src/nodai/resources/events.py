"""``client.events``: usage CloudEvents for work done outside nodai (``POST /api/v1/events``).

A service that does the work itself (after ``client.verify``) reports it as a
usage event: a CloudEvent 1.0 of type ``nodai.usage`` whose ``subject`` is the
key id. The server applies each ``(source, id)`` once within 24 hours, so a
post of events is safe to repeat: ``send`` retries a batch after a 503 or a
failed connection, even one that may have reached the server, and what was
stored already comes back among the ``duplicates``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, List, Mapping, Optional, Union

from .._base import AsyncAPIClient, Request, SyncAPIClient, dumps
from .._models import (
    IngestResult,
    Money,
    RejectedEvent,
    UsageEvent,
    UsageEventData,
    format_datetime,
    money_to_json,
)

__all__ = [
    "Events",
    "AsyncEvents",
    "usage_event",
    "MAX_BATCH_EVENTS",
    "MAX_BATCH_BYTES",
    "DEFAULT_SOURCE",
]

_PATH = "/api/v1/events"
#: The most events the server takes in one request.
MAX_BATCH_EVENTS = 1000
#: The largest request body the server takes (1 MiB), the batch's brackets and commas included.
MAX_BATCH_BYTES = 1024 * 1024
#: The ``source`` of events that ``usage_event`` builds without one.
DEFAULT_SOURCE = "nodai-python"
USAGE_EVENT_TYPE = "nodai.usage"
SINGLE_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


def usage_event(
    key_id: str,
    workflow_id: str,
    *,
    id: Optional[str] = None,
    source: Optional[str] = None,
    time: Union[datetime, str, None] = None,
    cost: Optional[Money] = None,
    input_tokens: Optional[int] = None,
    output_tokens: Optional[int] = None,
    status_code: Optional[int] = None,
    duration_ms: Optional[int] = None,
    authorization_id: Optional[str] = None,
) -> UsageEvent:
    """A usage CloudEvent for ``events.send``: ``key_id``'s use of ``workflow_id``.

    ``id`` defaults to a fresh UUID and ``source`` to ``"nodai-python"``: give
    your own (a request id of yours, say) to make a resend from elsewhere
    count as the same event. ``time`` (aware datetime or RFC 3339, at most 5
    minutes ahead and 35 days back) defaults to when the server receives it.
    ``cost`` is USD (default: priced like a query of the workflow, 0 for a
    ``status_code`` of 500 or more). ``authorization_id`` (from
    ``client.verify``) settles that verification's hold.
    """
    data: UsageEventData = {"workflow_id": workflow_id}
    if authorization_id is not None:
        data["authorization_id"] = authorization_id
    if cost is not None:
        data["cost"] = money_to_json(cost)
    if input_tokens is not None:
        data["input_tokens"] = input_tokens
    if output_tokens is not None:
        data["output_tokens"] = output_tokens
    if status_code is not None:
        data["status_code"] = status_code
    if duration_ms is not None:
        data["duration_ms"] = duration_ms
    event: UsageEvent = {
        "specversion": "1.0",
        "id": id if id is not None else str(uuid.uuid4()),
        "source": source if source is not None else DEFAULT_SOURCE,
        "type": USAGE_EVENT_TYPE,
        "subject": key_id,
        "data": data,
    }
    if time is not None:
        event["time"] = format_datetime(time)
    return event


@dataclass(frozen=True)
class _Batch:
    #: The index of its first event in the caller's list.
    offset: int
    count: int
    body: bytes


def _encode(index: int, event: Any) -> bytes:
    if not isinstance(event, Mapping):
        raise TypeError(
            f"event {index} is a {type(event).__name__}: events are mappings "
            "(dicts such as nodai.usage_event(...) builds)"
        )
    encoded = dumps(event)
    if len(encoded) + 2 > MAX_BATCH_BYTES:
        raise ValueError(
            f"event {index} is {len(encoded)} bytes as JSON: more than a request may carry (1 MiB)"
        )
    return encoded


def plan_batches(events: Iterable[Mapping[str, Any]]) -> List[_Batch]:
    """Split ``events`` into request bodies of at most ``MAX_BATCH_EVENTS``
    events and ``MAX_BATCH_BYTES`` bytes, in order. Every event is serialised
    (and checked) before anything is sent."""
    encoded = [_encode(i, e) for i, e in enumerate(events)]
    batches: List[_Batch] = []
    start, size = 0, 2  # "[" and "]"
    for i, item in enumerate(encoded):
        count = i - start
        added = len(item) + (1 if count else 0)  # a comma before all but the first
        if count and (count >= MAX_BATCH_EVENTS or size + added > MAX_BATCH_BYTES):
            batches.append(_Batch(start, count, b"[" + b",".join(encoded[start:i]) + b"]"))
            start, size, added = i, 2, len(item)
        size += added
    if start < len(encoded):
        batches.append(
            _Batch(start, len(encoded) - start, b"[" + b",".join(encoded[start:]) + b"]")
        )
    return batches


def _batch_request(batch: _Batch) -> Request:
    # replayable: the server applies each (source, id) once, so a batch may be
    # sent again after a failure that followed sending.
    return Request(
        "POST", _PATH, content=batch.body, content_type=BATCH_CONTENT_TYPE, replayable=True
    )


def _single_request(event: Mapping[str, Any]) -> Request:
    return Request(
        "POST", _PATH, content=_encode(0, event), content_type=SINGLE_CONTENT_TYPE, replayable=True
    )


class _Totals:
    def __init__(self) -> None:
        self.accepted = 0
        self.duplicates = 0
        self.rejected: List[RejectedEvent] = []

    def add(self, body: Mapping[str, Any], offset: int) -> None:
        part = IngestResult.from_json(body, offset)
        self.accepted += part.accepted
        self.duplicates += part.duplicates
        self.rejected.extend(part.rejected)

    def result(self) -> IngestResult:
        return IngestResult(self.accepted, self.duplicates, self.rejected)


class Events:
    def __init__(self, client: SyncAPIClient) -> None:
        self._client = client

    def send(self, events: Iterable[Mapping[str, Any]]) -> IngestResult:
        """Send usage events, any number, as batches of at most 1000 events and
        1 MiB (``application/cloudevents-batch+json``), one after another.

        Returns the sums over the batches: ``accepted``, ``duplicates`` (sent
        before, or twice here) and ``rejected``, whose ``index`` is the event's
        place in ``events``. A batch is retried after a 503 or a failed
        connection (events are applied once, so this is safe). An error that
        is not retried (``AuthenticationError``, a retried 503 that lasts, ...)
        is raised, and the batches before it stay accepted: sending the whole
        list again is safe (what arrived counts as duplicates).

        Raises ``ValueError`` (before sending anything) for an event over 1 MiB
        as JSON, ``TypeError`` for one that is not a mapping. An empty list
        sends nothing.
        """
        totals = _Totals()
        for batch in plan_batches(events):
            totals.add(self._client.request(_batch_request(batch)), batch.offset)
        return totals.result()

    def send_one(self, event: Mapping[str, Any]) -> IngestResult:
        """Send one usage event (``application/cloudevents+json``). An invalid
        event raises ``ValidationError`` (422) with its ``code``
        (``invalid_event``, ``key_not_found``, ``workflow_not_found``,
        ``time_out_of_range``, ...); a repeat is ``duplicates == 1``."""
        return IngestResult.from_json(self._client.request(_single_request(event)))


class AsyncEvents:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def send(self, events: Iterable[Mapping[str, Any]]) -> IngestResult:
        """Send usage events in batches; see ``Events.send``."""
        totals = _Totals()
        for batch in plan_batches(events):
            totals.add(await self._client.request(_batch_request(batch)), batch.offset)
        return totals.result()

    async def send_one(self, event: Mapping[str, Any]) -> IngestResult:
        """Send one usage event; see ``Events.send_one``."""
        return IngestResult.from_json(await self._client.request(_single_request(event)))
