"""The home feedback documents (hub.feedback) of many homes at once, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from hub.alarms import service as alarms
from hub.feedback import FeedbackPublisher, home_feedback, homes_feedback
from hub.storage.models import AlarmStatus, Resident, RuleState, Severity
from tests.factories import T0, add_home


def _resident(session: Session, home_id: str) -> int:
    return session.scalars(select(Resident.id).where(Resident.home_id == home_id)).one()


def _open(session: Session, home_id: str, type_: str, severity: Severity, minutes: int) -> int:
    alarm, _created = alarms.open_or_join(
        session,
        now=T0 + timedelta(minutes=minutes),
        resident_id=_resident(session, home_id),
        home_id=home_id,
        type=type_,
        severity=severity,
        summary=type_,
    )
    return alarm.id


def test_each_home_gets_its_own_document_from_two_reads(
    session_factory: sessionmaker[Session],
) -> None:
    for home_id in ("h1", "h2", "h3", "h4"):
        add_home(session_factory, home_id, devices=[])
    with session_factory() as s, s.begin():
        _open(s, "h1", "door_left_open", Severity.YELLOW, 0)
        red = _open(s, "h1", "fall", Severity.RED, 5)  # newer, but red goes first
        _open(s, "h1", "inactivity", Severity.RED, 9)  # red too, but newer
        taken = _open(s, "h2", "fall", Severity.RED, 0)
        alarms.transition(s, taken, to=AlarmStatus.ACKNOWLEDGED, actor="user:nina", now=T0)
        closed = _open(s, "h3", "fall", Severity.RED, 0)
        alarms.transition(s, closed, to=AlarmStatus.CANCELLED, actor="resident", now=T0)
        s.add(
            RuleState(
                resident_id=_resident(s, "h3"),
                state={"_prealarm": {"type": "door_at_night", "fires_at": "2026-01-05T23:10"}},
                updated_at=T0,
            )
        )
        s.add(RuleState(resident_id=_resident(s, "h4"), state={"version": 1}, updated_at=T0))

    now = T0 + timedelta(minutes=10)
    reads: list[str] = []
    bind = session_factory.kw["bind"]

    def count(*args: object) -> None:
        reads.append(str(args[2]))

    with session_factory() as s:
        event.listen(bind, "before_cursor_execute", count)
        try:
            docs = homes_feedback(s, ["h4", "h1", "h3", "h2", "h1"], now)
        finally:
            event.remove(bind, "before_cursor_execute", count)
        assert len(reads) == 2
        assert list(docs) == ["h1", "h2", "h3", "h4"]
        assert docs["h1"]["state"] == "alarm" and docs["h1"]["alarm"]["id"] == red
        assert docs["h1"]["alarm"]["help_on_the_way"] is False
        assert docs["h2"]["alarm"]["status"] == "acknowledged"
        assert docs["h2"]["alarm"]["help_on_the_way"] is True
        assert docs["h3"]["state"] == "prealarm" and docs["h3"]["alarm"] is None
        assert docs["h3"]["prealarm"] == {"type": "door_at_night", "fires_at": "2026-01-05T23:10"}
        assert docs["h4"] == {
            "home_id": "h4",
            "state": "ok",
            "alarm": None,
            "prealarm": None,
            "ts": now.isoformat(),
        }
        assert home_feedback(s, "h1", now) == docs["h1"]

        published: list[tuple[str, bytes]] = []
        FeedbackPublisher(
            lambda topic, payload: published.append((topic, payload)), "p/v1"
        ).publish_homes(s, ["h2", "h4"], now)
        assert [topic for topic, _payload in published] == ["p/v1/h2/feedback", "p/v1/h4/feedback"]
