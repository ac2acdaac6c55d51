"""Message texts (SMS, replies, voice) in bokmål and English, from ``translations/<lang>.json``."""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Final

TRANSLATIONS_DIR: Final = Path(__file__).resolve().parent / "translations"
LANGUAGES: Final[tuple[str, ...]] = ("nb", "en")
DEFAULT_LANGUAGE: Final = "nb"

# What a voice call's <Say language="…"> is for each message language.
VOICE_LANGUAGES: Final[Mapping[str, str]] = {"nb": "nb-NO", "en": "en-GB"}

# GSM 03.38: the basic character set plus the extension table (each extension char costs two).
GSM7_CHARS: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    "^{}\\[~]|€"
)


def language_of(language: str | None) -> str:
    """A language the texts exist in: ``language`` if known (``nb-NO`` → ``nb``), else bokmål."""
    if language:
        primary = language.strip().lower().replace("_", "-").split("-", 1)[0]
        if primary in LANGUAGES:
            return primary
        if primary in ("no", "nn"):
            return DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


@cache
def catalogue(language: str) -> Mapping[str, str]:
    """The flat ``key → text`` catalogue of one language (read once)."""
    if language not in LANGUAGES:
        raise KeyError(f"no message texts for language {language!r}; known: {LANGUAGES}")
    path = TRANSLATIONS_DIR / f"{language}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise ValueError(f"{path}: expected a flat JSON object of strings")
    return dict(raw)


@lru_cache(maxsize=1024)
def placeholders(text: str) -> frozenset[str]:
    """The ``{name}`` placeholders of a text."""
    return frozenset(
        name for _, name, _, _ in string.Formatter().parse(text) if name is not None and name
    )


def render(key: str, language: str, **params: str) -> str:
    """The text ``key`` in ``language`` (unknown languages fall back to bokmål), filled in.

    A missing key or a missing parameter raises ``KeyError`` naming it; parameters the text
    does not use are ignored (callers may pass a common set).
    """
    lang = language_of(language)
    texts = catalogue(lang)
    text = texts.get(key)
    if text is None:
        raise KeyError(f"no message text {key!r} in language {lang!r}")
    missing = sorted(placeholders(text) - params.keys())
    if missing:
        raise KeyError(
            f"message text {key!r} ({lang}) needs parameter(s) {', '.join(missing)}; "
            f"got: {', '.join(sorted(params)) or 'none'}"
        )
    return text.format(**params)


def type_label(alarm_type: str, language: str) -> str:
    """An alarm type for people (``type.<type>``); an unknown type is shown as it is."""
    try:
        return render(f"type.{alarm_type}", language)
    except KeyError:
        return alarm_type


def severity_label(severity: str, language: str) -> str:
    """A severity for people (``severity.<severity>``); an unknown one is shown as it is."""
    try:
        return render(f"severity.{severity}", language)
    except KeyError:
        return severity


def is_gsm7(text: str) -> bool:
    """Whether ``text`` fits the GSM-7 alphabet (160 characters a segment instead of 70)."""
    return all(char in GSM7_CHARS for char in text)


__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "VOICE_LANGUAGES",
    "catalogue",
    "is_gsm7",
    "language_of",
    "placeholders",
    "render",
    "severity_label",
    "type_label",
]
