"""Steps the codecs share: bytes to a JSON object, and typed field reads with readable errors."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from devices.events import DeviceRef, Rejected, RejectReason

# seq is stored in a 64-bit signed column.
MAX_SEQ = 2**63 - 1
# A reason lists at most this many field problems, then says how many more there were.
_MAX_ERRORS = 3
# Quoted values in a reason are cut to this many characters.
_MAX_SHOWN = 32

# RFC 3339 / ISO 8601 extended date-time; the zone is a separate group so a naive time can be named.
_TIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?"
    r"(?P<zone>[Zz]|[+-]\d{2}:?\d{2})?"
)
TIME_EXAMPLE = "2026-01-05T14:32:00+01:00"

JsonObject = dict[str, object]


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _NonFiniteError(Exception):
    pass


def _pairs_hook(pairs: list[tuple[str, object]]) -> JsonObject:
    out: JsonObject = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def _refuse_constant(name: str) -> object:
    raise _NonFiniteError(name)


def safe_text(text: str) -> str:
    """Text that can be encoded as UTF-8 (lone surrogates from JSON escapes are escaped)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe(value: object) -> str:
    """A short rendering of a JSON value for an operator: ``"yes"``, ``12``, ``null``."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        shown = value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "…"
        return safe_text(json.dumps(shown, ensure_ascii=False))
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        text = str(value)
        return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "a number too large"
    return type(value).__name__


def _kind_of(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def load_json(payload: bytes, device: DeviceRef | None) -> object | Rejected:
    """UTF-8 then JSON (strict: no NaN/Infinity, no duplicate keys); a Rejected on failure."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(
            RejectReason.NOT_UTF8, f"payload is not UTF-8 (bad byte at offset {exc.start})", device
        )
    problem: str
    try:
        value: object = json.loads(
            text, object_pairs_hook=_pairs_hook, parse_constant=_refuse_constant
        )
        return value
    except json.JSONDecodeError as exc:
        problem = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except _DuplicateKeyError as exc:
        problem = f"key {describe(exc.key)} appears more than once"
    except _NonFiniteError as exc:
        problem = f"{exc.args[0]} is not a JSON number"
    except RecursionError:
        problem = "nested too deeply"
    except ValueError:
        # Python refuses integers of more than 4300 digits.
        problem = "a number is too long"
    return Rejected(RejectReason.INVALID_JSON, f"payload is not valid JSON: {problem}", device)


def load_object(payload: bytes, device: DeviceRef | None) -> JsonObject | Rejected:
    """UTF-8, JSON, then "must be an object"; a Rejected on the first step that fails."""
    value = load_json(payload, device)
    if isinstance(value, Rejected):
        return value
    return as_object(value, device)


def as_object(value: object, device: DeviceRef | None) -> JsonObject | Rejected:
    """The parsed JSON value if it is an object, else a NOT_AN_OBJECT rejection."""
    if not isinstance(value, dict):
        return Rejected(
            RejectReason.NOT_AN_OBJECT,
            f"payload must be a JSON object (got {_kind_of(value)})",
            device,
        )
    return value


def choices_text(choices: Sequence[str]) -> str:
    return ", ".join(json.dumps(choice) for choice in choices)


def parse_time(value: str) -> datetime | str:
    """An aware datetime from an ISO 8601 text, or the problem with it."""
    match = _TIME_RE.fullmatch(value)
    if match is None:
        return f"must be an ISO 8601 time like {TIME_EXAMPLE} (got {describe(value)})"
    if match.group("zone") is None:
        return f"time must include a zone offset, like {TIME_EXAMPLE} (got {describe(value)})"
    text = value.upper()  # "t" and "z" are allowed by RFC 3339; fromisoformat wants them upper
    # Python keeps microseconds: cut longer fractions (nanoseconds) rather than refuse them.
    frac = re.search(r"\.(\d{7,9})", text)
    if frac is not None:
        text = text[: frac.start(1) + 6] + text[frac.end(1) :]
    try:
        parsed = datetime.fromisoformat(text)
        parsed.astimezone(UTC)  # must be representable in UTC (refuses year 1 at +01:00 etc.)
    except (ValueError, OverflowError):
        return f"is not a valid date and time (got {describe(value)})"
    return parsed


class Fields:
    """Reads typed fields of a JSON object, collecting readable errors instead of raising.

    Optional fields may be absent or null; a required field must be present and not null.
    """

    def __init__(self, obj: Mapping[str, object]) -> None:
        self._obj = obj
        self.errors: list[str] = []

    def fail(self, name: str, problem: str) -> None:
        self.errors.append(f"field {json.dumps(name)}: {problem}")

    def reason(self) -> str:
        shown = self.errors[:_MAX_ERRORS]
        more = len(self.errors) - len(shown)
        text = "; ".join(shown)
        return f"{text}; and {more} more" if more else text

    def _present(self, name: str, required: bool) -> tuple[bool, object]:
        if name not in self._obj:
            if required:
                self.fail(name, "is required")
            return False, None
        value = self._obj[name]
        if value is None and not required:
            return False, None
        return True, value

    def boolean(self, name: str, *, required: bool = False) -> bool | None:
        present, value = self._present(name, required)
        if not present:
            return None
        if not isinstance(value, bool):
            self.fail(name, f"must be true or false (got {describe(value)})")
            return None
        return value

    def integer(self, name: str, low: int, high: int, *, required: bool = False) -> int | None:
        present, value = self._present(name, required)
        if not present:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"must be a whole number (got {describe(value)})")
            return None
        if not low <= value <= high:
            self.fail(name, f"must be {_range_text(low, high, value)} (got {describe(value)})")
            return None
        return value

    def number(self, name: str, low: float, high: float, *, required: bool = False) -> float | None:
        present, value = self._present(name, required)
        if not present:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(name, f"must be a number (got {describe(value)})")
            return None
        if not (math.isfinite(value) and low <= value <= high):
            self.fail(name, f"must be from {low:g} to {high:g} (got {describe(value)})")
            return None
        return float(value)

    def choice(self, name: str, choices: Sequence[str], *, required: bool = False) -> str | None:
        present, value = self._present(name, required)
        if not present:
            return None
        if not isinstance(value, str) or value not in choices:
            self.fail(name, f"must be one of {choices_text(choices)} (got {describe(value)})")
            return None
        return value

    def text(self, name: str, *, required: bool = False) -> str | None:
        present, value = self._present(name, required)
        if not present:
            return None
        if not isinstance(value, str):
            self.fail(name, f"must be a string (got {describe(value)})")
            return None
        return value

    def time(self, name: str, *, required: bool = False) -> datetime | None:
        present, value = self._present(name, required)
        if not present:
            return None
        if not isinstance(value, str):
            self.fail(name, f"must be an ISO 8601 time like {TIME_EXAMPLE} (got {describe(value)})")
            return None
        parsed = parse_time(value)
        if isinstance(parsed, str):
            self.fail(name, parsed)
            return None
        return parsed


def _range_text(low: int, high: int, value: int) -> str:
    if high >= MAX_SEQ:
        return f"{low} or more" if value < low else f"at most {high} (2^63-1)"
    return f"from {low} to {high}"
