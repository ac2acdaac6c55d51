"""The portal's languages: translation catalogues, the ``t()`` function and language choice."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Final, Literal, TypeGuard, get_args

from starlette.requests import Request
from starlette.responses import Response

from care_portal.const import (
    LANG_COOKIE,
    LANG_COOKIE_MAX_AGE_S,
    LANG_QUERY_PARAM,
    TRANSLATIONS_DIR,
)

logger = logging.getLogger(__name__)

Language = Literal["nb", "en"]
LANGUAGES: Final[tuple[Language, ...]] = get_args(Language)

# Primary language subtags of Accept-Language and the portal language each one gets.
# Nynorsk and plain "no" readers get bokmål, which they read far more easily than English.
_ACCEPT_LANGUAGE_MAP: Final[Mapping[str, Language]] = {
    "nb": "nb",
    "no": "nb",
    "nn": "nb",
    "en": "en",
}

Catalogue = Mapping[str, str]


def is_language(value: object) -> TypeGuard[Language]:
    """Whether ``value`` names a language the portal speaks."""
    return isinstance(value, str) and value in LANGUAGES


def load_catalogues(directory: Path = TRANSLATIONS_DIR) -> dict[Language, dict[str, str]]:
    """Read ``<lang>.json`` for every portal language: a flat object of key → text."""
    catalogues: dict[Language, dict[str, str]] = {}
    for language in LANGUAGES:
        path = directory / f"{language}.json"
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
        ):
            raise ValueError(f"{path}: expected a flat JSON object of strings")
        catalogues[language] = raw
    return catalogues


class Translator:
    """``t("key", name=value)`` for one language; a missing key is logged and shown as the key."""

    def __init__(self, language: Language, catalogue: Catalogue) -> None:
        self.language: Language = language
        self._catalogue = catalogue

    def __call__(self, key: str, /, **params: object) -> str:
        text = self._catalogue.get(key)
        if text is None:
            logger.warning("missing translation %r for language %s", key, self.language)
            return key
        return text.format(**params) if params else text

    def get(self, key: str, default: str) -> str:
        """The text for ``key``, or ``default`` (for labels of values that may be new)."""
        return self._catalogue.get(key, default)

    def format_datetime(self, value: datetime | None) -> str:
        """A local time in this language's format; "–" for none."""
        if value is None:
            return self("common.none")
        return value.strftime(self("format.datetime"))

    def format_time(self, value: datetime) -> str:
        """A local time of day in this language's format."""
        return value.strftime(self("format.time"))


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags of an Accept-Language header, most preferred first (q=0 left out)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        if not tag:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            weighted.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate_language(
    *,
    query: str | None,
    cookie: str | None,
    accept_language: str | None,
    default: Language,
) -> Language:
    """``?lang=`` first, then the remembered cookie, then Accept-Language, then the default."""
    for explicit in (query, cookie):
        if is_language(explicit):
            return explicit
    for tag in parse_accept_language(accept_language):
        language = _ACCEPT_LANGUAGE_MAP.get(tag.split("-", 1)[0])
        if language is not None:
            return language
    return default


def request_language(request: Request, default: Language) -> Language:
    """The language a request should be answered in."""
    return negotiate_language(
        query=request.query_params.get(LANG_QUERY_PARAM),
        cookie=request.cookies.get(LANG_COOKIE),
        accept_language=request.headers.get("accept-language"),
        default=default,
    )


async def remember_language_choice(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """HTTP middleware: a valid ``?lang=`` is remembered in a cookie for the next requests."""
    response = await call_next(request)
    chosen = request.query_params.get(LANG_QUERY_PARAM)
    if is_language(chosen) and request.cookies.get(LANG_COOKIE) != chosen:
        response.set_cookie(
            LANG_COOKIE,
            chosen,
            max_age=LANG_COOKIE_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return response
