"""A GoAlert-style harness: the real hub on a fake clock, the Twilio simulator, and a script.

Everything real talks over loopback: devices publish to Mosquitto, the hub's sender uses the
``twilio`` library against the simulator, the simulator signs its status callbacks and inbound
SMS and posts them to the hub's portal. Tests read like a script::

    h.fall()
    h.expect_sms(NINA, "Fall")
    h.advance(minutes=2)
    h.expect_call(OLA)
    h.reply(NINA, "1")
    h.expect_sms(OLA, "tatt")

and ``close()`` fails the test on any SMS or call nobody expected.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devices.catalogue import info
from hub.broker import MosquittoProcess, free_port
from hub.clock import FakeClock, SystemClock
from hub.config import (
    DatabaseSettings,
    IngestSettings,
    MqttSettings,
    PortalSettings,
    Settings,
    TwilioSettings,
)
from hub.rules.timers import ManualTimer
from hub.runtime import HubRuntime
from hub.storage.models import (
    Alarm,
    Device,
    DeviceType,
    Home,
    Notification,
    Protocol,
    Relative,
    RelativeRole,
    Resident,
    Room,
    SensorEvent,
    ShiftPattern,
    StaffRole,
    StaffUser,
    Zone,
)
from simulators.twilio_sim import SimConfig, create_app
from tests.mqtt_helpers import Publisher, wait_until

OSLO = ZoneInfo("Europe/Oslo")
HOME = "h-kari"
NINA = "+4790000001"  # nurse, on duty
OLA = "+4790000002"  # nurse of the zone, off duty
KRISTIN = "+4790000003"  # coordinator
ANNE = "+4791000001"  # daughter, acting relative
PER = "+4791000002"  # son, informed relative
TOKEN = "harness-token"
SID = "AC" + "1" * 32
WAIT_S = 10.0


class Server:
    """A uvicorn server in a thread on a loopback port."""

    def __init__(self, app: FastAPI, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        wait_until(lambda: bool(self._server.started), timeout=WAIT_S)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(WAIT_S)


@dataclass(frozen=True)
class Sent:
    """One SMS or call the simulator received from the hub."""

    sid: str
    kind: str
    to: str
    body: str
    said: str
    status: str


def seed_kari(
    factory: sessionmaker[Session],
    now: datetime,
    relatives: bool = True,
    anne_quiet: tuple[time, time] | None = None,
) -> None:
    """Kari's home (fall sensor, door, button), Nina on duty, Ola, Kristin, Anne and Per."""
    with factory() as s, s.begin():
        zone = Zone(name="Ørje", created_at=now)
        s.add(zone)
        s.flush()
        home = Home(id=HOME, zone_id=zone.id, address="Storgata 1", created_at=now)
        room = Room(home=home, name="Stue", kind="living")
        kari = Resident(
            home=home, zone_id=zone.id, label="Kari N.", full_name="Kari N", created_at=now
        )
        s.add_all([home, room, kari])
        for device_id, device_type in (
            ("fall", DeviceType.FALL_SENSOR),
            ("door", DeviceType.DOOR_CONTACT),
            ("button", DeviceType.ALARM_BUTTON),
        ):
            s.add(
                Device(
                    id=device_id,
                    home=home,
                    room=room,
                    type=device_type,
                    protocol=Protocol.NATIVE,
                    supervision_interval_s=info(device_type).default_supervision_interval_s,
                    created_at=now,
                )
            )
        people = {}
        for username, name, role, phone in (
            ("nina", "Nina Sykepleier", StaffRole.NURSE, NINA),
            ("ola", "Ola Sykepleier", StaffRole.NURSE, OLA),
            ("kristin", "Kristin Koordinator", StaffRole.COORDINATOR, KRISTIN),
        ):
            user = StaffUser(
                username=username,
                display_name=name,
                role=role,
                password_hash="x",
                phone=phone,
                zone_id=zone.id,
                active=True,
                created_at=now,
            )
            s.add(user)
            people[username] = user
        s.flush()
        for weekday in range(7):  # Nina is on duty around the clock
            s.add(
                ShiftPattern(
                    zone_id=zone.id,
                    user_id=people["nina"].id,
                    name="all",
                    weekday=weekday,
                    start=time(0, 0),
                    end=time(0, 0),
                )
            )
        if relatives:
            s.add(
                Relative(
                    resident=kari,
                    name="Anne",
                    phone=ANNE,
                    priority=1,
                    role=RelativeRole.ACTING,
                    quiet_start=anne_quiet[0] if anne_quiet else None,
                    quiet_end=anne_quiet[1] if anne_quiet else None,
                    created_at=now,
                )
            )
            s.add(
                Relative(
                    resident=kari,
                    name="Per",
                    phone=PER,
                    priority=2,
                    role=RelativeRole.INFORMED,
                    created_at=now,
                )
            )


class EscalationHarness:
    """Kari's home in zone Ørje, its staff and relatives, the hub and the SMS simulator."""

    def __init__(
        self,
        broker: MosquittoProcess,
        db_url: str,
        start_local: datetime,
        *,
        relatives: bool = True,
        anne_quiet: tuple[time, time] | None = None,
    ) -> None:
        self.clock = FakeClock(start_local.astimezone(OSLO))
        portal_port, sim_port = free_port(), free_port()
        portal_url = f"http://127.0.0.1:{portal_port}"
        self.sim = Server(
            create_app(
                SimConfig(
                    account_sid=SID,
                    auth_token=TOKEN,
                    inbound_sms_url=f"{portal_url}/api/v1/twilio/sms",
                    port=sim_port,
                )
            ),
            sim_port,
        )
        self.sim.start()
        self.settings = Settings(
            mqtt=MqttSettings(host=broker.host, port=broker.port, client_id="carehub-escalation"),
            database=DatabaseSettings(url=db_url),
            ingest=IngestSettings(batch_max_wait_ms=1),
            portal=PortalSettings(port=portal_port, public_base_url=portal_url),
            twilio=TwilioSettings(
                account_sid=SID,
                auth_token=TOKEN,
                api_base_url=self.sim.url,
                from_number="+4759440000",
            ),
        )
        self.runtime = self._new_runtime()
        self._seed(relatives=relatives, anne_quiet=anne_quiet)
        self.runtime.start()
        assert self.runtime.ingest.wait_connected(WAIT_S)
        self._portal_stop = threading.Event()
        self._portal = threading.Thread(
            target=self.runtime.serve_portal, args=(self._portal_stop,), daemon=True
        )
        self._portal.start()
        wait_until(lambda: self._portal_up(portal_url), timeout=WAIT_S)
        self.device = Publisher(broker.host, broker.port, client_id="kari-devices")
        self.seq = 0
        self.consumed: set[str] = set()

    def _new_runtime(self) -> HubRuntime:
        self.rules_timer = ManualTimer()
        self.escalation_timer = ManualTimer()
        return HubRuntime(
            self.settings,
            clock=self.clock,
            timer=self.rules_timer,
            escalation_timer=self.escalation_timer,
            background_sender=False,
        )

    @staticmethod
    def _portal_up(url: str) -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    def _seed(self, *, relatives: bool, anne_quiet: tuple[time, time] | None) -> None:
        seed_kari(self.runtime.session_factory, self.clock.now(), relatives, anne_quiet)

    # -- the home ---------------------------------------------------------------------------------
    def publish(self, device_id: str, kind: str, **fields: Any) -> None:
        self.seq += 1
        payload = {"type": kind, "ts": self.clock.now().isoformat(), "seq": self.seq, **fields}
        with self.runtime.session_factory() as s:
            before = len(s.scalars(select(SensorEvent.id)).all())
        self.device.publish(f"carehub/v1/{HOME}/{device_id}/event", payload)

        def stored() -> bool:
            with self.runtime.session_factory() as s:
                return len(s.scalars(select(SensorEvent.id)).all()) > before

        wait_until(stored, timeout=WAIT_S)
        self.pump()

    def fall(self) -> None:
        self.publish("fall", "fall")

    # -- time and the engine -----------------------------------------------------------------------
    def pump(self) -> None:
        """Run what is due now: rules, escalation steps, the outbox."""
        assert self.runtime.rules is not None
        self.runtime.rules.run_due()
        self.runtime.escalation.tick()
        self.runtime.sender.drain()

    def advance(self, *, minutes: float = 0, seconds: float = 0) -> None:
        """Let time pass, stopping at every time the hub asked to be woken."""
        end = self.clock.now() + timedelta(minutes=minutes, seconds=seconds)
        while True:
            self.pump()
            self.settle()
            now = self.clock.now()
            if now >= end:
                return
            stops = [end]
            sender_due = self.runtime.sender.next_due()
            for due in (self.rules_timer.requested, self.escalation_timer.requested, sender_due):
                if due is not None and due > now:
                    stops.append(due)
            self.clock.set(min(stops))

    def settle(self) -> None:
        """Wait (real time, bounded) until the simulator has reported on everything sent, so that
        jumping the fake clock never outruns a delivery receipt still on its way."""

        def quiet() -> bool:
            with self.runtime.session_factory() as s:
                pending = s.scalars(
                    select(Notification.id).where(
                        Notification.status.in_(("sending", "sent")),
                        Notification.channel.in_(("sms", "voice")),
                    )
                ).all()
            return not pending

        try:
            wait_until(quiet, timeout=WAIT_S, interval=0.02)
        except AssertionError:
            raise AssertionError("the simulator never reported on some messages") from None

    def kill_hub(self, *, down_for: timedelta) -> None:
        """The hub process dies without any goodbye; time passes; a new one starts."""
        self._portal_stop.set()
        self._portal.join(WAIT_S)
        self.runtime.ingest.stop()  # only so the old MQTT session does not compete
        self.runtime.engine.dispose()
        self.clock.advance(down_for)
        self.runtime = self._new_runtime()
        self.runtime.start()
        assert self.runtime.ingest.wait_connected(WAIT_S)
        self._portal_stop = threading.Event()
        self._portal = threading.Thread(
            target=self.runtime.serve_portal, args=(self._portal_stop,), daemon=True
        )
        self._portal.start()
        wait_until(lambda: self._portal_up(self.settings.portal.public_base_url), timeout=WAIT_S)

    # -- the simulator ----------------------------------------------------------------------------
    def sim_records(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.sim.url}/_sim/messages", timeout=5)
        response.raise_for_status()
        data = response.json()
        return list(data if isinstance(data, list) else data.get("messages", data))

    def _outbound(self) -> list[Sent]:
        out = []
        for r in self.sim_records():
            if not str(r.get("direction", "")).startswith("outbound"):
                continue
            out.append(
                Sent(
                    sid=r["sid"],
                    kind=r["kind"],
                    to=r["to"],
                    body=r.get("body") or "",
                    said=" ".join(s["text"] for s in r.get("said", [])),
                    status=r.get("status", ""),
                )
            )
        return out

    def unexpected(self) -> list[Sent]:
        return [m for m in self._outbound() if m.sid not in self.consumed]

    def _expect(self, kind: str, to: str, contains: str | None) -> Sent:
        found: list[Sent] = []

        def look() -> bool:
            self.pump()
            for m in self._outbound():
                if m.sid in self.consumed or m.kind != kind or m.to != to:
                    continue
                if contains and contains.lower() not in (m.body + " " + m.said).lower():
                    continue
                found.append(m)
                return True
            return False

        try:
            wait_until(look, timeout=WAIT_S, interval=0.05)
        except AssertionError:
            raise AssertionError(
                f"expected {kind} to {to} containing {contains!r}; unconsumed: {self.unexpected()}"
            ) from None
        self.consumed.add(found[0].sid)
        return found[0]

    def expect_sms(self, to: str, contains: str | None = None) -> Sent:
        return self._expect("sms", to, contains)

    def expect_call(self, to: str, contains: str | None = None) -> Sent:
        return self._expect("call", to, contains)

    def expect_nothing_more(self, settle_s: float = 0.3) -> None:
        """After the hub has run everything due, no SMS or call is left unexpected."""
        self.pump()
        pause = threading.Event()
        pace = SystemClock()
        end = pace.monotonic() + settle_s
        while pace.monotonic() < end:
            pause.wait(0.05)
            self.pump()
        leftover = self.unexpected()
        assert leftover == [], f"unexpected messages: {leftover}"

    def reply(self, from_number: str, body: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.sim.url}/_sim/inbound", json={"from": from_number, "body": body}, timeout=10
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        self.pump()
        return result

    def fault(self, **spec: Any) -> None:
        httpx.post(f"{self.sim.url}/_sim/faults", json=spec, timeout=5).raise_for_status()

    def script(self, **spec: Any) -> None:
        httpx.post(f"{self.sim.url}/_sim/script", json=spec, timeout=5).raise_for_status()

    # -- the database -----------------------------------------------------------------------------
    def alarm(self) -> Alarm:
        with self.runtime.session_factory() as s:
            return s.scalars(select(Alarm).order_by(Alarm.id.desc())).first()  # type: ignore[return-value]

    def close(self) -> None:
        try:
            leftover = self.unexpected()
        finally:
            self._portal_stop.set()
            self._portal.join(WAIT_S)
            self.runtime.stop()
            self.device.close()
            self.sim.stop()
        assert leftover == [], f"messages nobody expected: {leftover}"
