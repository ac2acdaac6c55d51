"""Per-device HMAC-SHA256 signatures of native payloads: canonical JSON, sign and verify."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any

SIG_FIELD = "sig"
KEY_BYTES = 32


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the payload without ``sig``, keys sorted, no spaces, UTF-8.

    Numbers are written as Python's ``json`` writes the parsed values (integers as integers,
    floats in their shortest round-trip form, e.g. ``0.92``); strings are kept as sent.
    """
    body = {key: value for key, value in obj.items() if key != SIG_FIELD}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def new_key() -> bytes:
    """A fresh random 256-bit HMAC key."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """A key as the installer sees and stores it (standard base64)."""
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes:
    """A base64 key back to bytes; ValueError when it is not base64."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("an HMAC key must be standard base64") from exc


def signature(key: bytes, body: bytes) -> str:
    """base64(HMAC-SHA256(key, body))."""
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode("ascii")


def verify(key: bytes, body: bytes, sig: str) -> bool:
    """Whether ``sig`` is the base64 HMAC-SHA256 of ``body`` under ``key`` (constant time)."""
    try:
        given = base64.b64decode(sig.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    return hmac.compare_digest(given, hmac.new(key, body, hashlib.sha256).digest())


def sign_object(obj: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of ``obj`` with its ``sig`` field set."""
    signed = {k: v for k, v in obj.items() if k != SIG_FIELD}
    signed[SIG_FIELD] = signature(key, canonical_json(signed))
    return signed


def sign_payload(payload: bytes, key: bytes) -> bytes:
    """A native JSON payload signed: the same object plus ``sig`` (compact JSON, UTF-8)."""
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise ValueError("only a JSON object can be signed")
    return json.dumps(sign_object(obj, key), separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )
