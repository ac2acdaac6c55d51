"""Twilio's webhooks on the portal: signed like Twilio signs them, or refused with nothing changed.

The requests are signed with the twilio library's own ``RequestValidator.compute_signature``
for the portal's *public* URL (the app runs behind a proxy at ``PUBLIC``), and one test runs the
real Twilio-compatible simulator against the portal served by uvicorn.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from care_portal.app import create_app
from hub.alarms import service
from hub.broker import free_port
from hub.clock import FakeClock, SystemClock
from hub.config import PortalSettings, Settings, TwilioSettings
from hub.notify.sender import Sender
from hub.notify.texts import render
from hub.storage.models import Alarm, AlarmStatus, AlarmTimelineEntry, Notification
from simulators.twilio_sim import SimConfig
from simulators.twilio_sim import create_app as create_sim_app
from tests.hub.notify.seed import (
    COORDINATOR_PHONE,
    KARI,
    NURSE_NAME,
    NURSE_PHONE,
    T0,
    People,
    notify,
    open_alarm,
    seed,
)
from tests.simulators.twilio_sim.conftest import WAIT_S, Server

PUBLIC = "https://carehub.example"
TOKEN = "test-auth-token"
HUB_NUMBER = "+4759440000"
SMS = "/api/v1/twilio/sms"
STATUS = "/api/v1/twilio/status"


@dataclass
class Heard:
    """What the app told its listeners after committing."""

    alarms: list[int] = field(default_factory=list)
    outbox: int = 0

    def poke(self) -> None:
        self.outbox += 1


@pytest.fixture
def people(session_factory: sessionmaker[Session]) -> People:
    return seed(session_factory)


@pytest.fixture
def kari_fall(session_factory: sessionmaker[Session], people: People) -> int:
    with session_factory() as s, s.begin():
        alarm = open_alarm(s, people.kari, code="A7K2")
        notify(s, alarm, "staff", people.nurse, NURSE_PHONE, sid="SM" + "1" * 32)
        notify(s, alarm, "staff", people.coordinator, COORDINATOR_PHONE)
        return alarm.id


@pytest.fixture
def heard() -> Heard:
    return Heard()


@pytest.fixture
def client(session_factory: sessionmaker[Session], heard: Heard) -> Iterator[TestClient]:
    settings = Settings(
        portal=PortalSettings(public_base_url=PUBLIC), twilio=TwilioSettings(auth_token=TOKEN)
    )
    app = create_app(
        settings,
        session_factory=session_factory,
        clock=FakeClock(T0),
        on_alarm_changed=heard.alarms.append,
        on_outbox=heard.poke,
    )
    with TestClient(app) as client:
        yield client


def post_signed(
    client: TestClient,
    path: str,
    params: dict[str, str],
    *,
    signed_url: str | None = None,
    token: str = TOKEN,
    signature: str | None = None,
) -> httpx.Response:
    """POST the form as Twilio does: signed for the public URL unless told otherwise."""
    url = signed_url if signed_url is not None else PUBLIC + path
    headers = {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    response: httpx.Response = client.post(path, data=params, headers=headers)
    return response


def inbound(body: str, from_number: str = NURSE_PHONE) -> dict[str, str]:
    return {
        "MessageSid": "SM" + "a" * 32,
        "AccountSid": "AC" + "0" * 32,
        "From": from_number,
        "To": HUB_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }


def status_of(factory: sessionmaker[Session], alarm_id: int) -> AlarmStatus:
    with factory() as s:
        return AlarmStatus(s.get_one(Alarm, alarm_id).status)


def timeline_kinds(factory: sessionmaker[Session], alarm_id: int) -> list[str]:
    with factory() as s:
        return list(
            s.scalars(
                select(AlarmTimelineEntry.kind)
                .where(AlarmTimelineEntry.alarm_id == alarm_id)
                .order_by(AlarmTimelineEntry.id)
            )
        )


# ---- signatures --------------------------------------------------------------------------------


def test_a_signed_reply_1_takes_the_alarm_and_answers_twiml(
    client: TestClient, session_factory: sessionmaker[Session], kari_fall: int, heard: Heard
) -> None:
    response = post_signed(client, SMS, inbound("1"))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    reply = render("reply.taken", "nb", resident_label=KARI)
    assert f"<Response><Message>{reply}</Message></Response>" in response.text
    assert status_of(session_factory, kari_fall) is AlarmStatus.ACKNOWLEDGED
    assert heard.alarms == [kari_fall]
    assert heard.outbox == 1


@pytest.mark.parametrize(
    "forgery",
    [
        pytest.param({"signature": ""}, id="missing"),
        pytest.param({"signature": "bm90IGEgc2lnbmF0dXJl"}, id="forged"),
        pytest.param({"token": "someone-elses-token"}, id="wrong-token"),
        pytest.param({"signed_url": "http://testserver" + SMS}, id="signed-for-internal-url"),
        pytest.param({"signed_url": "https://evil.example" + SMS}, id="signed-for-other-host"),
    ],
)
def test_an_unsigned_or_forged_reply_is_refused_and_changes_nothing(
    client: TestClient,
    session_factory: sessionmaker[Session],
    kari_fall: int,
    heard: Heard,
    forgery: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = timeline_kinds(session_factory, kari_fall)

    response = post_signed(client, SMS, inbound("1"), **forgery)

    assert response.status_code == 403
    assert status_of(session_factory, kari_fall) is AlarmStatus.NOTIFIED
    assert timeline_kinds(session_factory, kari_fall) == before
    assert heard.alarms == [] and heard.outbox == 0
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_a_signature_for_other_parameters_is_refused(
    client: TestClient, session_factory: sessionmaker[Session], kari_fall: int
) -> None:
    signed_for = RequestValidator(TOKEN).compute_signature(PUBLIC + SMS, inbound("hei"))

    response = client.post(SMS, data=inbound("1"), headers={"X-Twilio-Signature": signed_for})

    assert response.status_code == 403
    assert status_of(session_factory, kari_fall) is AlarmStatus.NOTIFIED


def test_an_unknown_number_gets_an_answer_and_nothing_changes(
    client: TestClient, session_factory: sessionmaker[Session], kari_fall: int, heard: Heard
) -> None:
    response = post_signed(client, SMS, inbound("1", from_number="+4740000000"))

    assert response.status_code == 200
    assert render("reply.unknown_number", "nb") in response.text
    assert status_of(session_factory, kari_fall) is AlarmStatus.NOTIFIED
    assert heard.outbox == 0


# ---- status callbacks --------------------------------------------------------------------------


def test_a_signed_status_callback_updates_the_notification(
    client: TestClient, session_factory: sessionmaker[Session], kari_fall: int, heard: Heard
) -> None:
    sid = "SM" + "1" * 32
    params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": "delivered", "To": NURSE_PHONE}

    response = post_signed(client, STATUS, params)
    forged = post_signed(client, STATUS, {**params, "MessageStatus": "failed"}, signature="x")

    assert response.status_code == 204
    assert forged.status_code == 403
    with session_factory() as s:
        note = s.scalars(select(Notification).where(Notification.provider_sid == sid)).one()
        assert note.status == "delivered"
    assert timeline_kinds(session_factory, kari_fall).count("delivery") == 1
    # a receipt changes the notification, not the alarm: no alarm-changed hook, no sender wake
    assert heard.alarms == [] and heard.outbox == 0


def test_a_failed_sms_receipt_wakes_the_sender_for_its_fallback(
    client: TestClient, session_factory: sessionmaker[Session], kari_fall: int, heard: Heard
) -> None:
    sid = "SM" + "1" * 32
    with session_factory() as s, s.begin():  # sent, not yet delivered
        s.execute(
            update(Notification).where(Notification.provider_sid == sid).values(status="sent")
        )
    params = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}

    assert post_signed(client, STATUS, params).status_code == 204
    assert post_signed(client, STATUS, params).status_code == 204  # again: nothing changes

    with session_factory() as s:
        note = s.scalars(select(Notification).where(Notification.provider_sid == sid)).one()
        assert note.status == "undelivered"
    assert heard.outbox == 1 and heard.alarms == []


def test_a_status_callback_for_an_unknown_sid_is_answered_204(
    client: TestClient, kari_fall: int, heard: Heard
) -> None:
    params = {"MessageSid": "SMunknown", "MessageStatus": "delivered"}

    assert post_signed(client, STATUS, params).status_code == 204
    assert heard.alarms == []


class _ReceiptFirstProvider:
    """A provider whose delivery receipt reaches the portal before ``send_sms`` returns the
    sid to the sender: the race a loaded hub meets, where the provider answers the callback URL
    within milliseconds and the sender's commit of the sid waits for the database."""

    def __init__(self, client: TestClient, status: str = "delivered") -> None:
        self.client = client
        self.status = status
        self.receipts: list[int] = []
        self.calls: list[str] = []

    def send_sms(self, *, to: str, body: str, status_callback: str) -> str:
        sid = "SM" + "f" * 32
        params = {"MessageSid": sid, "MessageStatus": self.status, "To": to}
        if self.status == "undelivered":
            params["ErrorCode"] = "30003"
        path = status_callback.removeprefix(PUBLIC)
        self.receipts.append(post_signed(self.client, path, params).status_code)
        return sid

    def start_call(self, *, to: str, twiml_url: str, status_callback: str) -> str:
        self.calls.append(to)
        return "CA" + "f" * 32


@pytest.mark.parametrize("receipt", ["delivered", "undelivered"])
def test_a_receipt_that_comes_before_the_sender_recorded_the_sid_still_counts(
    client: TestClient,
    session_factory: sessionmaker[Session],
    people: People,
    heard: Heard,
    receipt: str,
) -> None:
    """It used to be dropped ("unknown sid"): the portal then showed the SMS as sent, not
    delivered, a red alarm's nurse got a needless voice call 90 s later, and an undelivered SMS
    got its voice call only then. The sender's callback URL names the notification, so the
    receipt counts, and the sender's own record that follows does not move it back."""
    with session_factory() as s, s.begin():
        alarm = open_alarm(s, people.kari, code="A7K2")
        note_id = notify(s, alarm, "staff", people.nurse, NURSE_PHONE, status="queued").id
        s.execute(update(Notification).values(next_attempt_at=T0))
    provider = _ReceiptFirstProvider(client, receipt)
    sender = Sender(session_factory, FakeClock(T0), provider, public_base_url=PUBLIC)

    calls = [NURSE_PHONE] if receipt == "undelivered" else []  # the red SMS's fallback, at once
    assert sender.drain() == 1 + len(calls)
    assert provider.receipts == [204]
    assert provider.calls == calls
    with session_factory() as s:
        note = s.get(Notification, note_id)
        assert note is not None
        assert (note.status, note.provider_sid) == (receipt, "SM" + "f" * 32)
        if receipt == "undelivered":
            assert note.last_error == "provider error 30003 (undelivered)"
    assert timeline_kinds(session_factory, alarm.id).count("delivery") == 1


def test_a_receipt_for_an_earlier_attempt_is_kept_in_the_timeline_and_changes_nothing(
    client: TestClient, session_factory: sessionmaker[Session], kari_fall: int
) -> None:
    with session_factory() as s:
        note = s.scalars(
            select(Notification).where(Notification.provider_sid == "SM" + "1" * 32)
        ).one()
    params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003"}

    assert post_signed(client, f"{STATUS}/{note.id}", params).status_code == 204

    with session_factory() as s:
        again = s.get(Notification, note.id)
        assert again is not None
        assert (again.status, again.provider_sid) == ("delivered", "SM" + "1" * 32)
        assert again.last_error is None  # nor its error
    assert timeline_kinds(session_factory, kari_fall).count("delivery") == 1


def test_a_receipt_naming_a_notification_that_does_not_exist_is_answered_204(
    client: TestClient, kari_fall: int, heard: Heard
) -> None:
    params = {"MessageSid": "SMunknown", "MessageStatus": "delivered"}

    assert post_signed(client, f"{STATUS}/999999", params).status_code == 204
    assert post_signed(client, f"{STATUS}/999999", params, signature="x").status_code == 403
    assert heard.alarms == [] and heard.outbox == 0


# ---- voice -------------------------------------------------------------------------------------


def add_call(factory: sessionmaker[Session], alarm_id: int, people: People) -> int:
    with factory() as s, s.begin():
        alarm = s.get_one(Alarm, alarm_id)
        return notify(
            s, alarm, "staff", people.nurse, NURSE_PHONE, channel="voice", status="sent"
        ).id


def test_the_voice_twiml_reads_the_alarm_in_norwegian_with_a_gather_to_the_public_url(
    client: TestClient, session_factory: sessionmaker[Session], people: People, kari_fall: int
) -> None:
    note_id = add_call(session_factory, kari_fall, people)
    path = f"/api/v1/twilio/voice/{note_id}"

    response = post_signed(client, path, {"CallSid": "CA1", "CallStatus": "in-progress"})
    refused = post_signed(client, path, {"CallSid": "CA1"}, signature="forged")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    prompt = render("voice.alarm", "nb", type_label="Fall", resident_label=KARI)
    assert f'<Gather action="{PUBLIC}{path}/gather" method="POST" numDigits="1"' in response.text
    assert f'<Say language="nb-NO">{prompt}</Say>' in response.text
    assert refused.status_code == 403


def test_pressing_1_on_the_call_takes_the_alarm(
    client: TestClient,
    session_factory: sessionmaker[Session],
    people: People,
    kari_fall: int,
    heard: Heard,
) -> None:
    note_id = add_call(session_factory, kari_fall, people)
    path = f"/api/v1/twilio/voice/{note_id}/gather"

    forged = post_signed(client, path, {"Digits": "1"}, token="wrong")
    assert forged.status_code == 403
    assert status_of(session_factory, kari_fall) is AlarmStatus.NOTIFIED

    response = post_signed(client, path, {"CallSid": "CA1", "Digits": "1"})

    assert response.status_code == 200
    assert render("voice.taken", "nb") in response.text
    assert status_of(session_factory, kari_fall) is AlarmStatus.ACKNOWLEDGED
    with session_factory() as s:
        actors = [e.actor for e in service.get_alarm(s, kari_fall).timeline]
    assert f"voice:{NURSE_NAME}" in actors
    assert heard.outbox == 1


# ---- against the real simulator ----------------------------------------------------------------


@pytest.fixture
def portal_and_sim(
    session_factory: sessionmaker[Session],
) -> Iterator[tuple[str, httpx.Client, SimConfig]]:
    """The portal served by uvicorn on a free port (its public URL is that address) and the
    Twilio simulator, whose inbound-SMS webhook is the portal's."""
    portal_port = free_port("127.0.0.1")
    portal_url = f"http://127.0.0.1:{portal_port}"
    sim_port = free_port("127.0.0.1")
    sim_config = SimConfig(
        port=sim_port,
        inbound_sms_url=f"{portal_url}{SMS}",
        step_delay_s=0.005,
        webhook_timeout_s=5.0,
    )
    settings = Settings(
        portal=PortalSettings(public_base_url=portal_url),
        twilio=TwilioSettings(auth_token=sim_config.auth_token),
    )
    portal = Server(
        create_app(settings, session_factory=session_factory, clock=FakeClock(T0)), portal_port
    )
    sim = Server(create_sim_app(sim_config), sim_port)
    portal.start()
    sim.start()
    try:
        with httpx.Client(base_url=sim.url, timeout=WAIT_S) as control:
            yield portal_url, control, sim_config
    finally:
        sim.stop()
        portal.stop()


def wait_until_call_ends(sim: httpx.Client, sid: str) -> dict[str, Any]:
    """The simulator's record of the call once it has ended (bounded wait)."""
    pace = SystemClock()
    deadline = pace.monotonic() + WAIT_S
    while True:
        record: dict[str, Any] = next(
            m for m in sim.get("/_sim/messages").json() if m["sid"] == sid
        )
        if record["status"] in ("completed", "failed", "no-answer", "busy"):
            return record
        if pace.monotonic() > deadline:
            raise AssertionError(f"the call did not end: {record}")
        threading.Event().wait(0.02)


def test_the_simulators_inbound_sms_reaches_the_portal_signed_and_takes_the_alarm(
    portal_and_sim: tuple[str, httpx.Client, SimConfig],
    session_factory: sessionmaker[Session],
    kari_fall: int,
) -> None:
    _, sim, _ = portal_and_sim

    answer = sim.post("/_sim/inbound", json={"from": NURSE_PHONE, "to": HUB_NUMBER, "body": "1"})

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status"] == 200  # the portal accepted the simulator's signature
    reply = render("reply.taken", "nb", resident_label=KARI)
    assert [(r["to"], r["body"]) for r in result["replies"]] == [(NURSE_PHONE, reply)]
    assert status_of(session_factory, kari_fall) is AlarmStatus.ACKNOWLEDGED


def test_a_simulated_call_fetches_the_twiml_and_the_keypress_takes_the_alarm(
    portal_and_sim: tuple[str, httpx.Client, SimConfig],
    session_factory: sessionmaker[Session],
    people: People,
    kari_fall: int,
) -> None:
    portal_url, sim, config = portal_and_sim
    note_id = add_call(session_factory, kari_fall, people)
    sim.post("/_sim/script", json={"to": NURSE_PHONE, "digits": "1"}).raise_for_status()
    twilio = Client(config.account_sid, config.auth_token)
    twilio.api.base_url = str(sim.base_url).rstrip("/")

    created = twilio.calls.create(
        to=NURSE_PHONE, from_=HUB_NUMBER, url=f"{portal_url}/api/v1/twilio/voice/{note_id}"
    )

    record = wait_until_call_ends(sim, created.sid)
    assert record["status"] == "completed", record
    prompt = render("voice.alarm", "nb", type_label="Fall", resident_label=KARI)
    assert {"text": prompt, "language": "nb-NO"}.items() <= record["said"][0].items()
    assert [w["http_status"] for w in record["webhooks"] if "/voice/" in w["url"]] == [200, 200]
    assert status_of(session_factory, kari_fall) is AlarmStatus.ACKNOWLEDGED
