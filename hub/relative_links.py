"""Signed, expiring links for relatives: ``<alarm>.<relative>.<expires>.<HMAC-SHA256>`` tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime
from typing import Final

# alarm id, relative id, expiry (Unix seconds), then the base64url signature without padding.
_TOKEN_RE: Final = re.compile(
    r"^([1-9][0-9]{0,18})\.([1-9][0-9]{0,18})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})$"
)
_CONTEXT: Final = b"carehub:relative-link:v1:"


def _signature(message: str, secret: str) -> str:
    digest = hmac.new(
        secret.encode("utf-8"), _CONTEXT + message.encode("ascii"), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_relative_link(
    alarm_id: int, relative_id: int, *, now: datetime, ttl_s: int, secret: str
) -> str:
    """A token for the page ``/r/<token>`` that shows ``relative_id`` one alarm until it expires."""
    if not secret:
        raise ValueError("a relative link needs a secret")
    if alarm_id <= 0 or relative_id <= 0 or ttl_s <= 0:
        raise ValueError("alarm id, relative id and lifetime must be positive")
    expires = int(now.timestamp()) + ttl_s
    message = f"{alarm_id}.{relative_id}.{expires}"
    return f"{message}.{_signature(message, secret)}"


def verify_relative_link(token: str, *, now: datetime, secret: str) -> tuple[int, int] | None:
    """``(alarm_id, relative_id)`` of a genuine, unexpired token; ``None`` for anything else."""
    if not secret:
        return None
    match = _TOKEN_RE.match(token)
    if match is None:
        return None
    alarm, relative, expires, signature = match.groups()
    expected = _signature(f"{alarm}.{relative}.{expires}", secret)
    if not hmac.compare_digest(signature, expected):
        return None
    if int(expires) <= now.timestamp():
        return None
    return int(alarm), int(relative)


__all__ = ["make_relative_link", "verify_relative_link"]
