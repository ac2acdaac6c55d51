"""Constants of the care portal, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Final

PACKAGE_DIR: Final = Path(__file__).resolve().parent
TEMPLATES_DIR: Final = PACKAGE_DIR / "templates"
STATIC_DIR: Final = PACKAGE_DIR / "static"
TRANSLATIONS_DIR: Final = PACKAGE_DIR / "translations"

# The cookie that remembers a language picked with ``?lang=``; a year, like most sites do.
LANG_COOKIE: Final = "carehub_lang"
LANG_COOKIE_MAX_AGE_S: Final = 365 * 24 * 3600
LANG_QUERY_PARAM: Final = "lang"

# How often the overview page asks for a fresh fragment (htmx ``every``).
OVERVIEW_POLL_INTERVAL_S: Final = 5
OVERVIEW_HOMES_LIMIT: Final = 100
OVERVIEW_EVENTS_LIMIT: Final = 50
OVERVIEW_REJECTED_LIMIT: Final = 10
# Characters of an event's data shown on the overview before it is cut with "…".
EVENT_DATA_MAX_CHARS: Final = 160
# Under this battery level a device's battery is highlighted (the product's low-battery line).
LOW_BATTERY_PERCENT: Final = 20

# The JSON API: its prefix, bearer-token lifetime and page sizes.
API_PREFIX: Final = "/api/v1"
API_TOKEN_URL: Final = f"{API_PREFIX}/auth/token"
API_TOKEN_TTL_S: Final = 12 * 3600
API_TOKEN_BYTES: Final = 32
API_PAGE_DEFAULT: Final = 100
API_PAGE_MAX: Final = 500
API_NOTE_MAX_CHARS: Final = 1000
# The largest values the database columns hold (PostgreSQL INTEGER / BIGINT; SQLite's INTEGER is
# 64-bit): ids and offsets beyond them are refused with 422 instead of failing in the driver.
DB_INT_MAX: Final = 2**31 - 1
DB_BIGINT_MAX: Final = 2**63 - 1
# Text query parameters refuse NUL characters (422): PostgreSQL text cannot hold them.
NO_NUL_PATTERN: Final = r"^[^\x00]*$"

# Open alarms shown at the top of the overview (all active ones, up to this many).
OVERVIEW_ALARMS_LIMIT: Final = 200
