"""TOTP two-factor (RFC 6238) with pyotp: secrets, provisioning URIs, verification, QR as SVG."""

from __future__ import annotations

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
    """Whether ``code`` is the TOTP of ``secret`` at ``now`` (± one step)."""
    digits = normalise_code(code)
    if len(digits) != CODE_DIGITS or not digits.isdigit():
        return False
    return bool(pyotp.TOTP(secret).verify(digits, for_time=now, valid_window=VALID_WINDOW))


def qr_svg(uri: str, *, label: str) -> str:
    """The URI as an inline SVG QR code (no raster library needed), scalable by CSS."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    svg = str(image.to_string(encoding="unicode"))
    start = svg.index("<svg")
    end = svg.index(">", start)
    head = _SIZE_ATTRS.sub("", svg[start:end])
    label_attr = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return f'{head} class="qr" role="img" aria-label="{label_attr}"{svg[end:]}'
