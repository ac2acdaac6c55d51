"""Signing, SMS segment counting and TwiML reading, without any server."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from simulators.twilio_sim import twiml
from simulators.twilio_sim.resources import num_segments
from simulators.twilio_sim.signing import is_valid, signature

# The worked example of Twilio's webhook-security documentation.
DOC_TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}


def test_signature_matches_twilios_documented_example() -> None:
    assert signature(DOC_TOKEN, DOC_URL, DOC_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_signature_is_hmac_sha1_over_url_and_sorted_params() -> None:
    params = {"To": "+4791234567", "Body": "Fall hos Kari", "AccountSid": "AC1"}
    signed = "http://h/x" + "AccountSidAC1" + "BodyFall hos Kari" + "To+4791234567"
    expected = base64.b64encode(hmac.new(b"tok", signed.encode(), hashlib.sha1).digest())

    assert signature("tok", "http://h/x", params) == expected.decode()
    assert is_valid("tok", "http://h/x", params, expected.decode())


def test_a_changed_value_token_or_url_does_not_validate() -> None:
    good = signature(DOC_TOKEN, DOC_URL, DOC_PARAMS)

    assert is_valid(DOC_TOKEN, DOC_URL, DOC_PARAMS, good)
    assert not is_valid(DOC_TOKEN, DOC_URL, {**DOC_PARAMS, "Digits": "9"}, good)
    assert not is_valid("other-token", DOC_URL, DOC_PARAMS, good)
    assert not is_valid(DOC_TOKEN, DOC_URL + "&baz=3", DOC_PARAMS, good)


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("Fall hos Kåre Ødegård, Æsøy" * 5, 1),  # æøå are GSM-7
        ("€" * 80, 1),  # two septets each
        ("€" * 81, 2),
        ("Alarm ✓" * 10, 1),  # 70 UCS-2 units
        ("Alarm ✓" * 11, 2),
    ],
)
def test_num_segments(body: str, segments: int) -> None:
    assert num_segments(body) == segments


def test_twiml_reads_say_gather_and_messages() -> None:
    document = twiml.parse(
        '<?xml version="1.0"?><Response><Say voice="alice">Hei</Say>'
        '<Gather action="/g" numDigits="1"><Say language="nb-NO">Trykk  1</Say></Gather>'
        '<Message to="+4791234567">Takk</Message><Message><Body>To</Body></Message>'
        "<Redirect>/next</Redirect><Hangup/></Response>"
    )

    assert document.said == (
        twiml.Said("Hei", None, "alice"),
        twiml.Said("Trykk 1", "nb-NO", None),
    )
    assert document.gather == twiml.Gather(action="/g", method="POST", num_digits=1, timeout_s=5)
    assert [r.body for r in document.replies] == ["Takk", "To"]
    assert document.replies[0].to == "+4791234567"
    assert document.redirect == "/next"
    assert document.hangup


@pytest.mark.parametrize("text", ["not xml", "<html><body/></html>"])
def test_twiml_refuses_what_is_not_twiml(text: str) -> None:
    with pytest.raises(twiml.TwimlError):
        twiml.parse(text)
