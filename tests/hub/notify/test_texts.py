"""Message texts: both languages say the same things, relatives never read an alarm type."""

from __future__ import annotations

import pytest

from hub.notify.texts import (
    LANGUAGES,
    catalogue,
    is_gsm7,
    language_of,
    placeholders,
    render,
    severity_label,
    type_label,
)
from hub.storage.models import Severity

# Every key the escalation engine, the sender and the webhooks render, with its parameters.
REQUIRED: dict[str, set[str]] = {
    "sms.staff_alarm": {"severity_label", "type_label", "resident_label", "code", "link"},
    "sms.relative_acting_alarm": {"resident_label", "code", "link"},
    "sms.relative_informed": {"resident_label", "link"},
    "sms.taken_by": {"resident_label", "taker"},
    "sms.taken_by_relative": {"resident_label"},
    "sms.cancelled": {"resident_label"},
    "sms.unanswered": {"resident_label", "type_label", "code"},
    "reply.taken": {"resident_label"},
    "reply.already_taken": {"resident_label", "taker"},
    "reply.unknown_number": set(),
    "reply.choose_code": {"codes"},
    "reply.no_open_alarm": set(),
    "reply.help": set(),
    "reply.stop": set(),
    "reply.start": set(),
    "voice.alarm": {"type_label", "resident_label"},
    "voice.relative_alarm": {"resident_label"},
    "voice.taken": set(),
    "voice.no_input": set(),
    "voice.already_taken": {"taker"},
    "voice.cancelled": set(),
}
ALARM_TYPES = (
    "fall",
    "button",
    "door_night",
    "bathroom_long",
    "inactivity",
    "device_offline",
    "low_battery",
    "tamper",
)
# What a relative may read: the alarm type is a health detail and must never be in it.
RELATIVE_KEYS = (
    "sms.relative_acting_alarm",
    "sms.relative_informed",
    "sms.taken_by_relative",
    "sms.cancelled",
    "voice.relative_alarm",
    "reply.taken",
    "reply.already_taken",
    "reply.choose_code",
    "reply.no_open_alarm",
    "reply.help",
    "reply.stop",
    "reply.start",
    "reply.unknown_number",
)
PARAMS = {
    "severity_label": "RØD",
    "type_label": "Fall",
    "resident_label": "Kari N., Storgata",
    "code": "A7K2",
    "link": "https://carehub.example/alarms/1",
    "taker": "Nina Nilsen",
    "codes": "A7K2 (Kari N., Storgata); B3X9 (Ola H., Torget)",
}


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    nb, en = catalogue("nb"), catalogue("en")
    assert set(nb) == set(en), f"only nb: {set(nb) - set(en)}, only en: {set(en) - set(nb)}"
    for key, text in nb.items():
        assert text.strip() and en[key].strip(), key
        assert placeholders(text) == placeholders(en[key]), key


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_text_the_hub_sends_exists_with_its_parameters(language: str) -> None:
    texts = catalogue(language)
    for key, params in REQUIRED.items():
        assert placeholders(texts[key]) == params, f"{language}: {key}"
    for alarm_type in ALARM_TYPES:
        assert texts[f"type.{alarm_type}"], alarm_type
    for severity in Severity:
        assert texts[f"severity.{severity.value}"], severity


@pytest.mark.parametrize("language", LANGUAGES)
def test_relatives_never_read_an_alarm_type_in_any_language(language: str) -> None:
    type_words = {
        word
        for lang in LANGUAGES
        for alarm_type in ALARM_TYPES
        for word in (catalogue(lang)[f"type.{alarm_type}"].lower(), alarm_type.replace("_", " "))
    }
    params = {**PARAMS, "codes": "A7K2 (Kari N., Storgata)"}
    for key in RELATIVE_KEYS:
        text = render(key, language, **params).lower()
        hits = sorted(word for word in type_words if word in text)
        assert not hits, f"{language}: {key} names an alarm type: {hits}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_sms_templates_fit_the_gsm7_alphabet(language: str) -> None:
    for key, text in catalogue(language).items():
        if key.startswith(("sms.", "reply.")):
            assert is_gsm7(text), f"{language}: {key} costs a UCS-2 SMS: {text!r}"


def test_the_staff_alarm_names_type_resident_code_and_link() -> None:
    text = render("sms.staff_alarm", "nb", **PARAMS)

    assert text == (
        "CareHub RØD: Fall - Kari N., Storgata. Svar 1 for å ta alarmen (kode A7K2). "
        "https://carehub.example/alarms/1"
    )


def test_the_voice_prompt_ends_with_press_one() -> None:
    text = render("voice.alarm", "nb", type_label="Fall", resident_label="Kari N., Storgata")

    assert text.endswith("Trykk 1 for å ta alarmen.")


def test_an_unknown_language_falls_back_to_bokmal() -> None:
    assert render("reply.help", "de") == render("reply.help", "nb")
    assert render("reply.help", "en-GB") == render("reply.help", "en")
    assert language_of("nn") == "nb"
    assert language_of(None) == "nb"


def test_a_missing_key_raises_a_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match=r"sms\.no_such_text"):
        render("sms.no_such_text", "nb")


def test_a_missing_parameter_raises_a_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match=r"needs parameter.*taker"):
        render("sms.taken_by", "en", resident_label="Kari N.")


def test_labels_of_known_and_new_values() -> None:
    assert type_label("fall", "en") == "Fall"
    assert type_label("door_night", "nb") == "Dør åpnet om natten"
    assert type_label("brand_new_type", "nb") == "brand_new_type"
    assert severity_label("red", "nb") == "RØD"
    assert severity_label("green", "en") == "GREEN"
