"""Verifying webhook messages on the receiving side (Standard Webhooks v1).

nodai signs each delivery with HMAC-SHA256, keyed by the base64-decoded part
of the endpoint secret after ``whsec_``, over ``"{webhook-id}.{webhook-timestamp}.{body}"``.
The ``webhook-signature`` header holds one or more space-separated ``v1,<base64>``
entries (two while a rotated secret is in its grace period); one match is enough.

``verify`` needs the raw body bytes exactly as received: verify before parsing,
never a re-serialised JSON. Delivery is at least once, so de-duplicate on
``webhook-id`` after verifying. This module does no network I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any, Dict, Iterable, Mapping, Optional, Protocol, Tuple, Union

from ._errors import WebhookVerificationError

__all__ = ["verify", "sign", "WebhookVerificationError", "DEFAULT_TOLERANCE_SECONDS"]

#: How far the message's timestamp may be from now, either way: 5 minutes.
DEFAULT_TOLERANCE_SECONDS = 300

_SECRET_PREFIX = "whsec_"


class _HeaderItems(Protocol):
    """Anything with ``items()``: a dict, ``httpx.Headers``, ``http.server``'s message,
    a Flask/Django/Starlette headers object."""

    def items(self) -> Iterable[Tuple[str, Any]]: ...


HeadersLike = Union[Mapping[str, str], _HeaderItems]


def _secret_bytes(secret: str) -> bytes:
    raw = secret[len(_SECRET_PREFIX) :] if secret.startswith(_SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        # A configuration mistake, not a bad message: not a WebhookVerificationError.
        raise ValueError("the webhook secret is not whsec_ followed by base64") from None


def _lower_headers(headers: HeadersLike) -> Dict[str, str]:
    return {str(name).lower(): str(value) for name, value in headers.items()}


def _as_bytes(payload: Union[bytes, bytearray, memoryview, str]) -> bytes:
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return bytes(payload)


def sign(
    msg_id: str,
    timestamp: int,
    payload: Union[bytes, bytearray, memoryview, str],
    secret: str,
) -> str:
    """The ``webhook-signature`` entry (``v1,<base64>``) nodai would send for this message.

    Handy for testing a receiver without a server.
    """
    to_sign = f"{msg_id}.{timestamp}.".encode() + _as_bytes(payload)
    mac = hmac.new(_secret_bytes(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(
    payload: Union[bytes, bytearray, memoryview, str],
    headers: HeadersLike,
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: Optional[float] = None,
) -> Any:
    """Verify one webhook message and return its parsed JSON body.

    ``payload`` is the raw request body, ``headers`` the request headers (any
    case), ``secret`` the endpoint's ``whsec_...`` secret. ``now`` (epoch
    seconds) is for tests. Raises ``WebhookVerificationError`` when a header is
    missing, the timestamp is more than ``tolerance`` seconds off, no signature
    matches, or the body is not JSON; ``ValueError`` if the secret itself is malformed.
    """
    key = _secret_bytes(secret)
    lowered = _lower_headers(headers)
    msg_id = lowered.get("webhook-id")
    timestamp_text = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not msg_id or not timestamp_text or not signatures:
        raise WebhookVerificationError(
            "missing webhook-id, webhook-timestamp or webhook-signature header"
        )

    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("message timestamp too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("message timestamp too new")

    body = _as_bytes(payload)
    expected = hmac.new(key, f"{msg_id}.{timestamp_text}.".encode() + body, hashlib.sha256).digest()
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(candidate, expected):
            break
    else:
        raise WebhookVerificationError("no matching signature")

    try:
        return json.loads(body)
    except ValueError:
        raise WebhookVerificationError("the signed body is not JSON") from None
