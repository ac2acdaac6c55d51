"""One-time recovery codes: shown once at enrolment, stored as argon2 hashes, consumed on use."""

from __future__ import annotations

import secrets
from typing import Final

from hub.passwords import hash_password, verify_password

CODE_COUNT: Final = 10
# Lowercase letters and digits without look-alikes (0/o, 1/l/i).
_ALPHABET: Final = "abcdefghjkmnpqrstuvwxyz23456789"
_GROUP: Final = 5


def normalise(code: str) -> str:
    """A typed code without spaces or dashes, in lowercase (the form that is hashed)."""
    return "".join(ch for ch in code.lower() if ch.isalnum())


def new_codes(count: int = CODE_COUNT) -> list[str]:
    """Fresh codes as shown to the user, e.g. ``k7qmz-4wbn2`` (about 49 bits each)."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(2 * _GROUP))
        codes.append(f"{raw[:_GROUP]}-{raw[_GROUP:]}")
    return codes


def hash_codes(codes: list[str]) -> list[str]:
    """The argon2 hashes to store in place of the codes."""
    return [hash_password(normalise(code)) for code in codes]


def consume(hashes: list[str], code: str) -> list[str] | None:
    """The hashes left after using ``code``, or ``None`` when it is not one of them."""
    typed = normalise(code)
    if len(typed) != 2 * _GROUP:
        return None
    for index, stored in enumerate(hashes):
        if verify_password(stored, typed):
            return hashes[:index] + hashes[index + 1 :]
    return None
