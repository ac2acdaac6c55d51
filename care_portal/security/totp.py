"""TOTP two-factor (RFC 6238) with pyotp: secrets, provisioning URIs, verification, QR as SVG."""

from __future__ import annotations

import hmac
import re
from datetime import datetime
from typing import Final

import pyotp
import qrcode
import qrcode.image.svg

ISSUER: Final = "CareHub"
CODE_DIGITS: Final = 6
# One 30 s step either side: a phone clock a little off still works.
VALID_WINDOW: Final = 1
# Seconds per time step (RFC 6238 default; what authenticator apps use).
STEP_S: Final = 30

_SIZE_ATTRS = re.compile(r'\s(width|height)="[^"]*"')


def new_secret() -> str:
    """A fresh random base32 secret (160 bits) to share with the user's authenticator app."""
    return str(pyotp.random_base32(32))


def provisioning_uri(secret: str, username: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the QR code."""
    return str(pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER))


def normalise_code(code: str) -> str:
    """The digits of a typed code (spaces and dashes people type are dropped)."""
    return "".join(ch for ch in code if not ch.isspace() and ch != "-")


def verify(secret: str, code: str, *, now: datetime) -> bool:
    """Whether ``code`` is the TOTP of ``secret`` at ``now`` (± one step).

    Says nothing about replay: sign-in uses ``accepted_step`` with the last step it accepted.
    """
    return accepted_step(secret, code, now=now, last_step=None) is not None


def time_step(now: datetime) -> int:
    """The RFC 6238 time step (counter) of ``now`` (timezone-aware): Unix seconds // 30."""
    return int(now.timestamp()) // STEP_S


def accepted_step(secret: str, code: str, *, now: datetime, last_step: int | None) -> int | None:
    """The time step whose code ``code`` is (within ± one step of ``now``), or ``None``.

    A code is single-use: a step at or before ``last_step`` (the last one this user signed in
    with) is refused, so a code seen over a shoulder or in a proxy log cannot be replayed
    within the 90 s it would otherwise stay valid. Steps are tried newest first, so a code
    that matches two steps (a 1-in-a-million coincidence) is bound to the later one.
    """
    digits = normalise_code(code)
    if len(digits) != CODE_DIGITS or not digits.isdigit():
        return None
    generator = pyotp.TOTP(secret)
    current = time_step(now)
    for step in range(current + VALID_WINDOW, current - VALID_WINDOW - 1, -1):
        if last_step is not None and step <= last_step:
            break
        if hmac.compare_digest(str(generator.generate_otp(step)), digits):
            return step
    return None


def qr_svg(uri: str, *, label: str) -> str:
    """The URI as an inline SVG QR code (no raster library needed), scalable by CSS."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    svg = str(image.to_string(encoding="unicode"))
    start = svg.index("<svg")
    end = svg.index(">", start)
    head = _SIZE_ATTRS.sub("", svg[start:end])
    label_attr = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return f'{head} class="qr" role="img" aria-label="{label_attr}"{svg[end:]}'
