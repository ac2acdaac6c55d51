"""Renders records as Twilio REST resources (Message, Call) and Twilio error bodies."""

from __future__ import annotations

import math
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from simulators.twilio_sim.state import Record

API_VERSION = "2010-04-01"

# GSM 03.38: the basic set costs one septet, the extension set two.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


def rfc2822(when: datetime | None) -> str | None:
    """Twilio's date format: ``Mon, 05 Jan 2026 12:00:00 +0000``."""
    return format_datetime(when) if when is not None else None


def num_segments(body: str) -> int:
    """How many SMS parts a body needs (GSM-7: 160/153 septets; otherwise UCS-2: 70/67)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in body):
        septets = sum(2 if ch in _GSM_EXTENDED else 1 for ch in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's REST error shape, which the twilio library turns into TwilioRestException."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def account_path(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}"


def message_resource(record: Record) -> dict[str, Any]:
    """A Message resource as Twilio's API returns it."""
    base = f"{account_path(record.account_sid)}/Messages/{record.sid}"
    body = record.body or ""
    return {
        "account_sid": record.account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": rfc2822(record.date_created),
        "date_sent": rfc2822(record.date_sent),
        "date_updated": rfc2822(record.date_updated),
        "direction": record.direction,
        "error_code": record.error_code,
        "error_message": record.error_message,
        "from": record.from_,
        "messaging_service_sid": record.messaging_service_sid,
        "num_media": "0",
        "num_segments": str(num_segments(body)),
        "price": None,
        "price_unit": "USD",
        "sid": record.sid,
        "status": record.status,
        "subresource_uris": {"media": f"{base}/Media.json", "feedback": f"{base}/Feedback.json"},
        "to": record.to,
        "uri": f"{base}.json",
    }


def call_resource(record: Record) -> dict[str, Any]:
    """A Call resource as Twilio's API returns it."""
    base = f"{account_path(record.account_sid)}/Calls/{record.sid}"
    duration: str | None = None
    if record.start_time is not None and record.end_time is not None:
        duration = str(max(0, round((record.end_time - record.start_time).total_seconds())))
    return {
        "account_sid": record.account_sid,
        "annotation": None,
        "answered_by": None,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(record.date_created),
        "date_updated": rfc2822(record.date_updated),
        "direction": record.direction,
        "duration": duration,
        "end_time": rfc2822(record.end_time),
        "forwarded_from": None,
        "from": record.from_,
        "from_formatted": record.from_,
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": record.sid,
        "start_time": rfc2822(record.start_time),
        "status": record.status,
        "subresource_uris": {
            "notifications": f"{base}/Notifications.json",
            "recordings": f"{base}/Recordings.json",
        },
        "to": record.to,
        "to_formatted": record.to,
        "trunk_sid": None,
        "uri": f"{base}.json",
    }


def sim_view(record: Record, base_url: str) -> dict[str, Any]:
    """The simulator's own inspection view of a record (``GET /_sim/messages``)."""
    rest = message_resource if record.kind.value == "sms" else call_resource
    return {
        "sid": record.sid,
        "kind": record.kind.value,
        "direction": record.direction,
        "to": record.to,
        "from": record.from_,
        "body": record.body,
        "status": record.status,
        "error_code": record.error_code,
        "date_created": record.date_created.isoformat(),
        "history": [{"status": h.status, "at": h.at.isoformat()} for h in record.history],
        "said": [{"text": s.text, "language": s.language, "voice": s.voice} for s in record.said],
        "digits": record.digits,
        "twiml": list(record.twiml),
        "url": record.url,
        "status_callback": record.status_callback,
        "in_reply_to": record.in_reply_to,
        "webhooks": [
            {
                "purpose": w.purpose,
                "url": w.url,
                "method": w.method,
                "params": dict(w.params),
                "at": w.at.isoformat(),
                "http_status": w.http_status,
                "error": w.error,
            }
            for w in record.webhooks
        ],
        "resource_url": base_url + str(rest(record)["uri"]),
    }
