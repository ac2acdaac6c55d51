"""SMS replies, delivery receipts and voice keypresses against SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.alarms import service
from hub.notify import replies
from hub.notify.replies import InboundResult
from hub.notify.texts import render
from hub.storage.models import (
    Alarm,
    AlarmEscalation,
    AlarmStatus,
    AlarmTimelineEntry,
    Notification,
    Relative,
)
from tests.hub.notify.seed import (
    ACTING_NAME,
    ACTING_PHONE,
    COORDINATOR_NAME,
    COORDINATOR_PHONE,
    ENGLISH_NURSE_PHONE,
    INFORMED_PHONE,
    KARI,
    NURSE_NAME,
    NURSE_PHONE,
    OLA,
    OTHER_NURSE_PHONE,
    T0,
    UNKNOWN_PHONE,
    People,
    notify,
    open_alarm,
    seed,
)

NOW = T0


@pytest.fixture
def people(session_factory: sessionmaker[Session]) -> People:
    return seed(session_factory)


@pytest.fixture
def kari_fall(session_factory: sessionmaker[Session], people: People) -> int:
    """Kari fell; the nurse, the coordinator and Kari's acting relative had an SMS, the
    informed relative an informational one."""
    with session_factory() as s, s.begin():
        alarm = open_alarm(s, people.kari, code="A7K2")
        notify(s, alarm, "staff", people.nurse, NURSE_PHONE)
        notify(s, alarm, "staff", people.coordinator, COORDINATOR_PHONE)
        notify(s, alarm, "relative", people.acting, ACTING_PHONE)
        notify(s, alarm, "relative", people.informed, INFORMED_PHONE, purpose="informed")
        return alarm.id


def text_in(
    factory: sessionmaker[Session], from_number: str, body: str, minutes: int = 0
) -> InboundResult:
    """An SMS arrives; handled and committed in one transaction, as the webhook does."""
    with factory() as s, s.begin():
        return replies.handle_inbound_sms(
            s, from_number=from_number, body=body, now=NOW + timedelta(minutes=minutes)
        )


def alarm_status(factory: sessionmaker[Session], alarm_id: int) -> AlarmStatus:
    with factory() as s:
        return AlarmStatus(service.get_alarm(s, alarm_id).status)


def entries(factory: sessionmaker[Session], alarm_id: int, kind: str) -> list[dict[str, Any]]:
    with factory() as s:
        rows = s.scalars(
            select(AlarmTimelineEntry)
            .where(AlarmTimelineEntry.alarm_id == alarm_id, AlarmTimelineEntry.kind == kind)
            .order_by(AlarmTimelineEntry.id)
        ).all()
        return [{"actor": e.actor, "to": e.to_status, **(e.detail or {})} for e in rows]


# ---- taking an alarm by SMS --------------------------------------------------------------------


def test_the_nurse_replies_1_and_takes_the_alarm(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    result = text_in(session_factory, NURSE_PHONE, " 1 ")

    assert result.taken_alarm_id == kari_fall
    assert result.reply_text == render("reply.taken", "nb", resident_label=KARI)
    assert alarm_status(session_factory, kari_fall) is AlarmStatus.ACKNOWLEDGED
    taken = [
        e for e in entries(session_factory, kari_fall, "transition") if e["to"] == "acknowledged"
    ]
    assert [e["actor"] for e in taken] == [f"sms:{NURSE_NAME}"]
    assert entries(session_factory, kari_fall, "reply") == [
        {
            "actor": f"sms:{NURSE_NAME}",
            "to": None,
            "from": NURSE_PHONE,
            "body": " 1 ",
            "result": "taken",
            "taker_kind": "staff",
        }
    ]


def test_taking_it_stops_the_escalation_and_tells_the_others_who_took_it(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    text_in(session_factory, NURSE_PHONE, "1")

    with session_factory() as s:
        escalation = s.get(AlarmEscalation, kari_fall)
        assert escalation is not None and escalation.state == "stopped"
        told = s.scalars(
            select(Notification).where(
                Notification.alarm_id == kari_fall, Notification.purpose == "taken_by"
            )
        ).all()
    by_person = {(n.recipient_kind, n.recipient_id): n.body for n in told}
    assert NURSE_NAME in by_person[("staff", people.coordinator)]
    # The relative hears that it is taken care of, never the nurse's name.
    assert NURSE_NAME not in by_person[("relative", people.acting)]
    assert ("staff", people.nurse) not in by_person


def test_1_with_a_code_takes_that_alarm_when_the_nurse_has_two(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    with session_factory() as s, s.begin():
        ola = open_alarm(s, people.ola, code="B3X9", alarm_type="button")
        notify(s, ola, "staff", people.nurse, NURSE_PHONE)
        ola_id = ola.id

    first = text_in(session_factory, NURSE_PHONE, "1 b3x9")
    second = text_in(session_factory, NURSE_PHONE, "1A7K2", minutes=1)

    assert first.taken_alarm_id == ola_id
    assert first.reply_text == render("reply.taken", "nb", resident_label=OLA)
    assert second.taken_alarm_id == kari_fall
    assert alarm_status(session_factory, ola_id) is AlarmStatus.ACKNOWLEDGED
    assert alarm_status(session_factory, kari_fall) is AlarmStatus.ACKNOWLEDGED


def test_two_alarms_and_no_code_asks_which_one(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    with session_factory() as s, s.begin():
        ola = open_alarm(s, people.ola, code="B3X9", alarm_type="button")
        notify(s, ola, "staff", people.nurse, NURSE_PHONE)
        ola_id = ola.id

    result = text_in(session_factory, NURSE_PHONE, "1")

    assert result.taken_alarm_id is None
    assert result.reply_text == render(
        "reply.choose_code", "nb", codes=f"A7K2 ({KARI}); B3X9 ({OLA})"
    )
    assert alarm_status(session_factory, kari_fall) is AlarmStatus.NOTIFIED
    assert alarm_status(session_factory, ola_id) is AlarmStatus.NOTIFIED
    for alarm_id in (kari_fall, ola_id):
        assert [e["result"] for e in entries(session_factory, alarm_id, "reply")] == ["choose_code"]


def test_a_code_that_is_not_hers_lists_the_ones_she_can_take(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    result = text_in(session_factory, NURSE_PHONE, "1 ZZZZ")

    assert result.reply_text == render("reply.choose_code", "nb", codes=f"A7K2 ({KARI})")
    assert alarm_status(session_factory, kari_fall) is AlarmStatus.NOTIFIED


def test_a_late_reply_names_who_took_it_from_the_portal(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    with session_factory() as s, s.begin():
        service.transition(s, kari_fall, to=AlarmStatus.ACKNOWLEDGED, actor="user:cora", now=NOW)

    result = text_in(session_factory, NURSE_PHONE, "1", minutes=1)

    assert result.taken_alarm_id is None
    assert result.reply_text == render(
        "reply.already_taken", "nb", resident_label=KARI, taker=COORDINATOR_NAME
    )
    assert [e["result"] for e in entries(session_factory, kari_fall, "reply")] == ["already_taken"]


def test_a_relative_is_told_the_home_care_service_took_it_not_the_nurses_name(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    text_in(session_factory, NURSE_PHONE, "1")

    result = text_in(session_factory, ACTING_PHONE, "1", minutes=1)

    assert result.reply_text == render(
        "reply.already_taken", "nb", resident_label=KARI, taker="hjemmetjenesten"
    )


def test_the_acting_relative_takes_it_and_staff_hear_the_relatives_name(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    took = text_in(session_factory, ACTING_PHONE, "1")
    late = text_in(session_factory, NURSE_PHONE, "1", minutes=1)

    assert took.taken_alarm_id == kari_fall
    assert late.reply_text == render(
        "reply.already_taken", "nb", resident_label=KARI, taker=ACTING_NAME
    )
    transition = [
        e for e in entries(session_factory, kari_fall, "transition") if e["to"] == "acknowledged"
    ]
    assert transition[0]["actor"] == f"sms:{ACTING_NAME}"


def test_an_informed_relative_cannot_take_the_alarm(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    result = text_in(session_factory, INFORMED_PHONE, "1")

    assert result.taken_alarm_id is None
    assert result.reply_text == render("reply.help", "nb")
    assert alarm_status(session_factory, kari_fall) is AlarmStatus.NOTIFIED
    assert [e["result"] for e in entries(session_factory, kari_fall, "reply")] == ["not_acting"]


def test_an_unknown_number_gets_a_clear_answer_and_nothing_changes(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    # UNKNOWN_PHONE belongs to a deactivated account: as good as unknown.
    result = text_in(session_factory, UNKNOWN_PHONE, "1")
    foreign = text_in(session_factory, "+447700900123", "1")

    assert result.reply_text == render("reply.unknown_number", "nb")
    assert foreign.reply_text == render("reply.unknown_number", "en")
    assert result.taken_alarm_id is None and not result.changed_alarm_ids
    assert alarm_status(session_factory, kari_fall) is AlarmStatus.NOTIFIED
    assert entries(session_factory, kari_fall, "reply") == []


def test_a_nurse_with_nothing_to_take_and_a_message_that_is_not_1(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    nothing = text_in(session_factory, OTHER_NURSE_PHONE, "1")
    chatter = text_in(session_factory, NURSE_PHONE, "på vei!")

    assert nothing.reply_text == render("reply.no_open_alarm", "nb")
    assert chatter.reply_text == render("reply.help", "nb")
    assert alarm_status(session_factory, kari_fall) is AlarmStatus.NOTIFIED
    assert [e["result"] for e in entries(session_factory, kari_fall, "reply")] == ["help"]


def test_the_reply_is_in_the_persons_language(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    with session_factory() as s, s.begin():
        notify(s, s.get_one(Alarm, kari_fall), "staff", people.english_nurse, ENGLISH_NURSE_PHONE)

    result = text_in(session_factory, ENGLISH_NURSE_PHONE, "1")

    assert result.language == "en"
    assert result.reply_text == render("reply.taken", "en", resident_label=KARI)


# ---- STOP / START ------------------------------------------------------------------------------


def test_a_relative_answers_stop_then_start(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    with session_factory() as s, s.begin():
        queued = notify(
            s,
            s.get_one(Alarm, kari_fall),
            "relative",
            people.acting,
            ACTING_PHONE,
            purpose="alarm",
            status="queued",
        )
        queued_id = queued.id

    stop = text_in(session_factory, ACTING_PHONE, "Stopp")

    assert stop.reply_text == render("reply.stop", "nb")
    with session_factory() as s:
        assert s.get_one(Relative, people.acting).sms_opt_out is True
        assert s.get_one(Notification, queued_id).status == "cancelled"

    start = text_in(session_factory, ACTING_PHONE, "start", minutes=1)

    assert start.reply_text == render("reply.start", "nb")
    with session_factory() as s:
        assert s.get_one(Relative, people.acting).sms_opt_out is False
    assert [e["result"] for e in entries(session_factory, kari_fall, "reply")] == [
        "stop",
        "start",
    ]


def test_staff_cannot_opt_out_of_alarms_by_stop(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    result = text_in(session_factory, NURSE_PHONE, "STOP")

    assert result.reply_text == render("reply.help", "nb")
    assert alarm_status(session_factory, kari_fall) is AlarmStatus.NOTIFIED


# ---- delivery receipts -------------------------------------------------------------------------


def receipt(
    factory: sessionmaker[Session], sid: str, status: str, error_code: str | None = None
) -> int | None:
    with factory() as s, s.begin():
        return replies.apply_status_callback(
            s, sid=sid, status=status, error_code=error_code, now=NOW
        )


def notification(factory: sessionmaker[Session], notification_id: int) -> Notification:
    with factory() as s:
        note = s.get_one(Notification, notification_id)
        s.expunge(note)
        return note


def test_sms_receipts_move_forward_and_a_late_sent_never_undoes_delivered(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    with session_factory() as s, s.begin():
        note = notify(
            s,
            s.get_one(Alarm, kari_fall),
            "staff",
            people.other_nurse,
            OTHER_NURSE_PHONE,
            status="sending",
            sid="SM0001",
        )
        note_id = note.id

    seen = []
    for status in ("queued", "sent", "delivered", "sent"):
        assert receipt(session_factory, "SM0001", status) == kari_fall
        seen.append(notification(session_factory, note_id).status)

    assert seen == ["sent", "sent", "delivered", "delivered"]
    deliveries = entries(session_factory, kari_fall, "delivery")
    assert [(d["status"], d["notification_status"]) for d in deliveries] == [
        ("queued", "sent"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("sent", "delivered"),
    ]
    assert deliveries[0]["notification_id"] == note_id
    assert deliveries[0]["channel"] == "sms"
    assert deliveries[0]["actor"] == "twilio"


def test_an_undelivered_sms_keeps_its_error_code(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    with session_factory() as s, s.begin():
        note_id = notify(
            s,
            s.get_one(Alarm, kari_fall),
            "staff",
            people.other_nurse,
            OTHER_NURSE_PHONE,
            status="sent",
            sid="SM0002",
        ).id

    receipt(session_factory, "SM0002", "undelivered", "30003")
    receipt(session_factory, "SM0002", "delivered")

    note = notification(session_factory, note_id)
    assert note.status == "undelivered"
    assert note.last_error is not None and "30003" in note.last_error
    assert entries(session_factory, kari_fall, "delivery")[0]["error_code"] == "30003"


@pytest.mark.parametrize(
    ("statuses", "final"),
    [
        (
            ("initiated", "ringing", "in-progress", "completed"),
            ["sent", "sent", "sent", "delivered"],
        ),
        (("initiated", "ringing", "no-answer"), ["sent", "sent", "failed"]),
        (("ringing", "busy", "completed"), ["sent", "failed", "failed"]),
        (("canceled",), ["failed"]),
        (("failed", "ringing"), ["failed", "failed"]),
    ],
)
def test_call_receipts_map_onto_the_notification(
    session_factory: sessionmaker[Session],
    people: People,
    kari_fall: int,
    statuses: tuple[str, ...],
    final: list[str],
) -> None:
    with session_factory() as s, s.begin():
        note_id = notify(
            s,
            s.get_one(Alarm, kari_fall),
            "staff",
            people.nurse,
            NURSE_PHONE,
            channel="voice",
            status="sending",
            sid="CA0001",
        ).id

    seen = []
    for status in statuses:
        receipt(session_factory, "CA0001", status)
        seen.append(notification(session_factory, note_id).status)

    assert seen == final


def test_a_receipt_for_an_unknown_sid_is_ignored(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    assert receipt(session_factory, "SMdoesnotexist", "delivered") is None
    assert entries(session_factory, kari_fall, "delivery") == []


# ---- voice -------------------------------------------------------------------------------------

GATHER_URL = "https://carehub.example/api/v1/twilio/voice/1/gather"


def call(
    factory: sessionmaker[Session], alarm_id: int, kind: str, recipient_id: int, phone: str
) -> int:
    with factory() as s, s.begin():
        return notify(
            s,
            s.get_one(Alarm, alarm_id),
            kind,
            recipient_id,
            phone,
            channel="voice",
            status="sent",
            sid=f"CA{kind}{recipient_id}",
        ).id


def twiml(factory: sessionmaker[Session], notification_id: int) -> str:
    with factory() as s, s.begin():
        return replies.voice_twiml(s, notification_id, now=NOW, gather_url=GATHER_URL)


def press(factory: sessionmaker[Session], notification_id: int, digits: str) -> str:
    with factory() as s, s.begin():
        return replies.voice_gather(s, notification_id, digits=digits, now=NOW)


def test_the_call_reads_the_alarm_in_norwegian_and_asks_for_1(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    note_id = call(session_factory, kari_fall, "staff", people.nurse, NURSE_PHONE)

    document = twiml(session_factory, note_id)

    prompt = render("voice.alarm", "nb", type_label="Fall", resident_label=KARI)
    assert (
        f'<Gather action="{GATHER_URL}" method="POST" numDigits="1" timeout="8">'
        f'<Say language="nb-NO">{prompt}</Say></Gather>'
    ) in document
    assert f'<Say language="nb-NO">{render("voice.no_input", "nb")}</Say>' in document


def test_a_relative_hears_no_alarm_type(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    note_id = call(session_factory, kari_fall, "relative", people.acting, ACTING_PHONE)

    document = twiml(session_factory, note_id)

    assert render("voice.relative_alarm", "nb", resident_label=KARI) in document
    assert "Fall" not in document


def test_pressing_1_takes_the_alarm_and_other_keys_repeat_the_prompt(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    note_id = call(session_factory, kari_fall, "staff", people.nurse, NURSE_PHONE)

    again = press(session_factory, note_id, "5")
    assert alarm_status(session_factory, kari_fall) is AlarmStatus.NOTIFIED
    assert "<Gather" in again and "Trykk 1 for å ta alarmen." in again

    taken = press(session_factory, note_id, "1")

    assert render("voice.taken", "nb") in taken
    assert alarm_status(session_factory, kari_fall) is AlarmStatus.ACKNOWLEDGED
    transition = [
        e for e in entries(session_factory, kari_fall, "transition") if e["to"] == "acknowledged"
    ]
    assert transition[0]["actor"] == f"voice:{NURSE_NAME}"
    assert [
        (e["body"], e["result"], e["channel"]) for e in entries(session_factory, kari_fall, "reply")
    ] == [("5", "help", "voice"), ("1", "taken", "voice")]


def test_a_call_to_an_alarm_already_taken_says_who_took_it(
    session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    note_id = call(session_factory, kari_fall, "staff", people.coordinator, COORDINATOR_PHONE)
    text_in(session_factory, NURSE_PHONE, "1")

    pressed = press(session_factory, note_id, "1")
    fetched = twiml(session_factory, note_id)

    said = render("voice.already_taken", "nb", taker=NURSE_NAME)
    assert said in pressed
    assert said in fetched and "<Gather" not in fetched
