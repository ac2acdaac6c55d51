"""Signs outgoing webhooks exactly as Twilio does (X-Twilio-Signature, HMAC-SHA1)."""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """base64(HMAC-SHA1(auth_token, url + every POST param's name and value, sorted by name)).

    For a GET webhook the parameters are in ``url``'s query string and ``params`` is empty.
    """
    computed: str = RequestValidator(auth_token).compute_signature(url, dict(params))
    return computed


def is_valid(auth_token: str, url: str, params: Mapping[str, str], sig: str) -> bool:
    """What a receiver checks: the twilio library's own validator."""
    valid: bool = RequestValidator(auth_token).validate(url, dict(params), sig)
    return valid
