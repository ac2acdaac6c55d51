"""Translation files: the same keys and placeholders in every language; language negotiation."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from care_portal.i18n import (
    LANGUAGES,
    Language,
    Translator,
    load_catalogues,
    negotiate_language,
    parse_accept_language,
)
from care_portal.schemas.overview import DeviceState
from hub.storage.models import DeviceType, Protocol

CATALOGUES = load_catalogues()
# The kinds the ingest stores in SensorEvent.kind (see hub.storage.models).
EVENT_KINDS = ("fall", "door", "motion", "button", "status")


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_language_has_the_same_keys() -> None:
    reference = set(CATALOGUES["nb"])
    for language in LANGUAGES:
        keys = set(CATALOGUES[language])
        assert keys == reference, (
            f"{language}.json: missing {sorted(reference - keys)}, extra {sorted(keys - reference)}"
        )


def test_every_text_is_filled_in_with_the_same_placeholders() -> None:
    for key, reference in CATALOGUES["nb"].items():
        for language in LANGUAGES:
            text = CATALOGUES[language].get(key, "")
            assert text.strip(), f"{language}.json: {key} is empty"
            assert placeholders(text) == placeholders(reference), f"{language}.json: {key}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_value_shown_on_the_page_has_a_label(language: Language) -> None:
    catalogue = CATALOGUES[language]
    wanted = (
        [f"device_type.{value}" for value in DeviceType]
        + [f"protocol.{value}" for value in Protocol]
        + [f"state.{value}" for value in DeviceState]
        + [f"event_kind.{kind}" for kind in EVENT_KINDS]
        + [f"lang.{code}" for code in LANGUAGES]
    )
    assert [key for key in wanted if key not in catalogue] == []


def test_a_missing_file_key_is_caught(tmp_path: Path) -> None:
    for language in LANGUAGES:
        (tmp_path / f"{language}.json").write_text('{"a": "x", "b": "y"}', encoding="utf-8")
    (tmp_path / "en.json").write_text('{"a": "x"}', encoding="utf-8")

    catalogues = load_catalogues(tmp_path)

    assert set(catalogues["nb"]) - set(catalogues["en"]) == {"b"}


def test_a_missing_key_shows_the_key_and_placeholders_are_filled() -> None:
    t = Translator("en", CATALOGUES["en"])

    assert t("no.such.key") == "no.such.key"
    assert t("overview.updated", time="13:00:00") == "Updated 13:00:00"
    assert t.get("device_type.robot", "robot") == "robot"


def test_accept_language_is_ordered_by_quality() -> None:
    assert parse_accept_language("en;q=0.5, nb-NO, da;q=0, sv;q=0.7") == ["nb-no", "sv", "en"]
    assert parse_accept_language(None) == []
    assert parse_accept_language("en;q=abc") == []


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "expected"),
    [
        ("en", "nb", "nb", "en"),  # an explicit choice wins
        (None, "en", "nb", "en"),  # then the remembered one
        ("xx", None, "en-US", "en"),  # an unknown choice is ignored
        (None, None, "no", "nb"),
        (None, None, "sv, da", "nb"),  # nothing we speak: the default
    ],
)
def test_negotiation(query: str | None, cookie: str | None, accept: str, expected: str) -> None:
    assert (
        negotiate_language(query=query, cookie=cookie, accept_language=accept, default="nb")
        == expected
    )
