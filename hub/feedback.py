"""The hub → home feedback topic: the home's alarm state, so an in-home unit can reassure.

Published retained at QoS 1 on ``carehub/v1/<home_id>/feedback`` after every change (and for
every home at start-up). Payload (see docs/mqtt.md):
``{"home_id", "state": "ok"|"prealarm"|"alarm", "alarm": {...}|null, "prealarm": {...}|null, "ts"}``
where ``alarm.status`` tells "acknowledged"/"on_site" = help is on the way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from hub.alarms.service import chunked
from hub.storage.bulk import one_of
from hub.storage.models import Alarm, AlarmStatus, Home, Resident, RuleState

logger = logging.getLogger(__name__)

OPEN_STATUSES = (
    AlarmStatus.OPEN,
    AlarmStatus.NOTIFIED,
    AlarmStatus.ACKNOWLEDGED,
    AlarmStatus.ON_SITE,
)
_SEVERITY_ORDER = case({"red": 0, "yellow": 1, "green": 2}, value=Alarm.severity, else_=3)

Publish = Callable[[str, bytes], None]
# Kept in a resident's rule state by hub.rules.service while a pre-alarm is pending.
PREALARM_KEY = "_prealarm"


def feedback_topic(prefix: str, home_id: str) -> str:
    return f"{prefix}/{home_id}/feedback"


def home_feedback(session: Session, home_id: str, now: datetime) -> dict[str, Any]:
    """The feedback document for one home, from the database."""
    return homes_feedback(session, [home_id], now)[home_id]


def homes_feedback(
    session: Session, home_ids: Iterable[str], now: datetime
) -> dict[str, dict[str, Any]]:
    """The feedback documents of these homes, by home id: two reads per ``chunked`` slice of
    homes (an ingest batch changes dozens of homes at once; a read per home cost a round trip).
    A home's alarm is its open alarm of the highest severity, the oldest first among equals; its
    pre-alarm, the first pending one among its residents (by resident id)."""
    docs: dict[str, dict[str, Any]] = {}
    for chunk in chunked(sorted(set(home_ids))):
        alarms: dict[str, Any] = {}
        for row in session.execute(
            select(
                Alarm.home_id,
                Alarm.id,
                Alarm.type,
                Alarm.severity,
                Alarm.status,
                Alarm.opened_at,
            )
            .where(one_of(session, Alarm.home_id, chunk), Alarm.status.in_(OPEN_STATUSES))
            .order_by(Alarm.home_id, _SEVERITY_ORDER, Alarm.opened_at, Alarm.id)
        ):
            alarms.setdefault(row.home_id, row)
        prealarms: dict[str, dict[str, Any]] = {}
        for home_id, state in session.execute(
            select(Resident.home_id, RuleState.state)
            .join(Resident, Resident.id == RuleState.resident_id)
            .where(one_of(session, Resident.home_id, chunk))
            .order_by(Resident.home_id, RuleState.resident_id)
        ):
            pending = state.get(PREALARM_KEY) if isinstance(state, dict) else None
            if home_id not in prealarms and isinstance(pending, dict) and pending.get("fires_at"):
                prealarms[home_id] = {"type": pending.get("type"), "fires_at": pending["fires_at"]}
        for home_id in chunk:
            docs[home_id] = _document(home_id, alarms.get(home_id), prealarms.get(home_id), now)
    return docs


def _document(
    home_id: str, alarm: Any, prealarm: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "home_id": home_id,
        "state": "alarm" if alarm else ("prealarm" if prealarm else "ok"),
        "alarm": None,
        "prealarm": prealarm,
        "ts": now.isoformat(),
    }
    if alarm is not None:
        doc["alarm"] = {
            "id": alarm.id,
            "type": alarm.type,
            "severity": alarm.severity.value,
            "status": alarm.status.value,
            "help_on_the_way": alarm.status in (AlarmStatus.ACKNOWLEDGED, AlarmStatus.ON_SITE),
            "opened_at": alarm.opened_at.isoformat(),
        }
    return doc


class FeedbackPublisher:
    """Publishes feedback documents through a publish function (the hub's MQTT client)."""

    def __init__(self, publish: Publish, topic_prefix: str) -> None:
        self._publish = publish
        self._prefix = topic_prefix

    def publish_homes(self, session: Session, home_ids: Iterable[str], now: datetime) -> None:
        for home_id, doc in homes_feedback(session, home_ids, now).items():
            try:
                self._publish(
                    feedback_topic(self._prefix, home_id), json.dumps(doc).encode("utf-8")
                )
            except Exception:
                # Feedback is a courtesy to the home; the alarm itself is already committed.
                logger.exception("could not publish feedback for home %s", home_id)

    def publish_all(self, session: Session, now: datetime) -> None:
        self.publish_homes(session, session.scalars(select(Home.id)).all(), now)
