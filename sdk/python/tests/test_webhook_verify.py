"""``nodai.webhooks.verify`` on its own (no server): signatures, tolerance, headers.

The deliveries of a real server are verified in test_webhooks.py; these pin
the edge cases, with a signature computed here independently of ``sign``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from email.message import Message
from typing import Dict

import httpx
import pytest

from nodai import WebhookVerificationError
from nodai.webhooks import sign, verify

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
BODY = json.dumps({"type": "key.created", "timestamp": "2026-01-01T00:00:00Z", "data": {"id": "key_1"}}).encode()
NOW = 1_800_000_000


def reference_signature(msg_id: str, ts: int, body: bytes, secret: str = SECRET) -> str:
    key = base64.b64decode(secret[len("whsec_") :])
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(signature: str, msg_id: str = "msg_1", ts: int = NOW) -> Dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_valid_message_returns_the_parsed_body() -> None:
    event = verify(BODY, headers(reference_signature("msg_1", NOW, BODY)), SECRET, now=NOW)
    assert event == json.loads(BODY)


def test_sign_matches_the_reference() -> None:
    assert sign("msg_1", NOW, BODY, SECRET) == reference_signature("msg_1", NOW, BODY)


def test_any_one_of_several_signatures_is_enough() -> None:
    good = reference_signature("msg_1", NOW, BODY)
    other = reference_signature("msg_1", NOW, BODY, "whsec_" + base64.b64encode(b"x" * 32).decode())
    both = f"v1,bm90IGEgbWFj {other} v2,{good.split(',')[1]} {good}"
    assert verify(BODY, headers(both), SECRET, now=NOW)["type"] == "key.created"


def test_no_matching_signature_fails() -> None:
    other = reference_signature("msg_1", NOW, BODY, "whsec_" + base64.b64encode(b"x" * 32).decode())
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers(other), SECRET, now=NOW)
    # A v1 MAC under another version tag does not count.
    good = reference_signature("msg_1", NOW, BODY)
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers("v2," + good.split(",")[1]), SECRET, now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers("v1,%%%not-base64"), SECRET, now=NOW)


def test_the_id_and_timestamp_are_signed_too() -> None:
    signature = reference_signature("msg_1", NOW, BODY)
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers(signature, msg_id="msg_2"), SECRET, now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers(signature, ts=NOW + 1), SECRET, now=NOW)


def test_tampered_body_fails() -> None:
    signature = reference_signature("msg_1", NOW, BODY)
    with pytest.raises(WebhookVerificationError):
        verify(BODY + b" ", headers(signature), SECRET, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, -3600, 10**6])
def test_timestamp_outside_five_minutes_fails(offset: int) -> None:
    ts = NOW + offset
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        verify(BODY, headers(reference_signature("msg_1", ts, BODY), ts=ts), SECRET, now=NOW)


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_timestamp_within_five_minutes_passes(offset: int) -> None:
    ts = NOW + offset
    assert verify(BODY, headers(reference_signature("msg_1", ts, BODY), ts=ts), SECRET, now=NOW)


def test_tolerance_is_configurable_and_now_defaults_to_the_clock() -> None:
    ts = int(time.time())
    assert verify(BODY, headers(reference_signature("msg_1", ts, BODY), ts=ts), SECRET)
    old = ts - 60
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers(reference_signature("msg_1", old, BODY), ts=old), SECRET, tolerance=30)


def test_headers_are_case_insensitive_and_any_mapping_type_works() -> None:
    signature = reference_signature("msg_1", NOW, BODY)
    upper = {k.upper(): v for k, v in headers(signature).items()}
    assert verify(BODY, upper, SECRET, now=NOW)
    assert verify(BODY, httpx.Headers(headers(signature)), SECRET, now=NOW)
    message = Message()  # what http.server hands a handler as self.headers
    for name, value in headers(signature).items():
        message[name.title()] = value
    assert verify(BODY, message, SECRET, now=NOW)


def test_str_payload_is_utf8() -> None:
    body = json.dumps({"type": "x", "data": {"name": "café"}}, ensure_ascii=False)
    signature = reference_signature("msg_1", NOW, body.encode())
    assert verify(body, headers(signature), SECRET, now=NOW)["data"]["name"] == "café"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_fails(missing: str) -> None:
    h = headers(reference_signature("msg_1", NOW, BODY))
    del h[missing]
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify(BODY, h, SECRET, now=NOW)


def test_non_integer_timestamp_fails() -> None:
    h = headers(reference_signature("msg_1", NOW, BODY))
    h["webhook-timestamp"] = "yesterday"
    with pytest.raises(WebhookVerificationError):
        verify(BODY, h, SECRET, now=NOW)


def test_signed_body_that_is_not_json_fails() -> None:
    body = b"not json"
    with pytest.raises(WebhookVerificationError, match="JSON"):
        verify(body, headers(reference_signature("msg_1", NOW, body)), SECRET, now=NOW)


def test_malformed_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        verify(BODY, headers("v1,x"), "whsec_%%%", now=NOW)
