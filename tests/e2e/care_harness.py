"""A harness for care stories: the real hub (real Mosquitto, real database) on a fake clock.

Devices publish through the broker exactly as in a home; ``advance`` moves time and runs what
became due, with the devices' heartbeats on the way, as a real home would send them.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import func, select

from devices.catalogue import info
from hub.broker import MosquittoProcess
from hub.clock import FakeClock
from hub.config import DatabaseSettings, IngestSettings, MqttSettings, Settings
from hub.rules.timers import ManualTimer
from hub.runtime import HubRuntime
from hub.storage.models import (
    Alarm,
    AlarmTimelineEntry,
    Device,
    DeviceType,
    Home,
    Protocol,
    Resident,
    Room,
    SensorEvent,
    Zone,
)
from tests.mqtt_helpers import Publisher, wait_until
from tests.providers import RecordingProvider

OSLO = ZoneInfo("Europe/Oslo")
HOME = "h-kari"

# device id -> (type, room name, room kind)
DEVICES: dict[str, tuple[DeviceType, str, str]] = {
    "fall": (DeviceType.FALL_SENSOR, "Soverom", "bedroom"),
    "button": (DeviceType.ALARM_BUTTON, "Stue", "living"),
    "door": (DeviceType.DOOR_CONTACT, "Gang", "entrance"),
    "m-hall": (DeviceType.MOTION_SENSOR, "Gang", "entrance"),
    "m-bath": (DeviceType.MOTION_SENSOR, "Bad", "bathroom"),
    "m-bed": (DeviceType.MOTION_SENSOR, "Soverom", "bedroom"),
    "m-living": (DeviceType.MOTION_SENSOR, "Stue", "living"),
}
HEARTBEAT = timedelta(minutes=30)


@dataclass(frozen=True)
class SeenAlarm:
    """An alarm as a test sees it: local opening time and what it is."""

    type: str
    severity: str
    status: str
    opened_local: str  # "HH:MM" in Oslo time
    device_id: str | None
    event_count: int


class CareHarness:
    """Kari lives alone in h-kari; her home has a fall sensor, a button, a door and four rooms."""

    def __init__(self, broker: MosquittoProcess, db_url: str, start_local: datetime) -> None:
        self.broker = broker
        self.clock = FakeClock(
            start_local.astimezone(OSLO) if start_local.tzinfo else start_local.replace(tzinfo=OSLO)
        )
        self.settings = Settings(
            mqtt=MqttSettings(host=broker.host, port=broker.port, client_id="carehub-stories"),
            database=DatabaseSettings(url=db_url),
            ingest=IngestSettings(batch_max_wait_ms=1),
        )
        self.seq: dict[str, int] = {}
        self.feedback: list[dict[str, Any]] = []
        self._feedback_seen = threading.Condition()
        self.runtime = self._new_runtime()
        self._seed()
        self.device = Publisher(broker.host, broker.port, client_id="kari-home")
        self._listener = self._listen_feedback()
        self.runtime.start()
        assert self.runtime.ingest.wait_connected(10)
        self.last_heartbeat = self.clock.now()
        self.heartbeat()

    # -- set-up ---------------------------------------------------------------------------------
    def _new_runtime(self) -> HubRuntime:
        self.timer = ManualTimer()
        # Escalation and sending are not part of these stories (tests/e2e/test_escalation.py)
        return HubRuntime(
            self.settings,
            clock=self.clock,
            timer=self.timer,
            escalation_timer=ManualTimer(),
            provider=RecordingProvider(),
            background_sender=False,
        )

    def _seed(self) -> None:
        now = self.clock.now()
        with self.runtime.session_factory() as s, s.begin():
            zone = Zone(name="Ørje", created_at=now)
            s.add(zone)
            s.flush()
            home = Home(id=HOME, zone_id=zone.id, address="Storgata 1", created_at=now)
            s.add(home)
            rooms: dict[str, Room] = {}
            for _type, room, kind in DEVICES.values():
                if room not in rooms:
                    rooms[room] = Room(home=home, name=room, kind=kind)
            s.add_all(rooms.values())
            s.add(
                Resident(
                    home=home, zone_id=zone.id, label="Kari N.", full_name="Kari N", created_at=now
                )
            )
            for device_id, (device_type, room, _kind) in DEVICES.items():
                s.add(
                    Device(
                        id=device_id,
                        home=home,
                        room=rooms[room],
                        type=device_type,
                        protocol=Protocol.NATIVE,
                        supervision_interval_s=info(device_type).default_supervision_interval_s,
                        created_at=now,
                    )
                )

    def _listen_feedback(self) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="kari-home-unit",
            protocol=MQTTProtocolVersion.MQTTv5,
        )

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            with self._feedback_seen:
                self.feedback.append(json.loads(msg.payload))
                self._feedback_seen.notify_all()

        connected = threading.Event()
        client.on_message = on_message
        client.on_connect = lambda c, *a: (
            c.subscribe(f"carehub/v1/{HOME}/feedback", qos=1),
            connected.set(),
        )
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        assert connected.wait(10)
        return client

    def close(self) -> None:
        self.runtime.stop()
        self.device.close()
        self._listener.disconnect()
        self._listener.loop_stop()

    # -- what happens in the home ---------------------------------------------------------------
    def _stored(self, device_id: str) -> int:
        with self.runtime.session_factory() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(SensorEvent)
                    .where(SensorEvent.device_id == device_id, SensorEvent.kind != "status")
                )
                or 0
            )

    def event(self, device_id: str, kind: str, **fields: Any) -> None:
        """A device reports an event now; returns once the hub has committed it."""
        before = self._stored(device_id)
        seq = self.seq.get(device_id, 0) + 1
        self.seq[device_id] = seq
        payload = {"type": kind, "ts": self.clock.now().isoformat(), "seq": seq, **fields}
        self.device.publish(f"carehub/v1/{HOME}/{device_id}/event", payload)
        wait_until(lambda: self._stored(device_id) > before, timeout=10)

    def republish_last(self, device_id: str, kind: str, **fields: Any) -> None:
        """The device sends its last event again (a retry): same seq, same time."""
        seq = self.seq[device_id]
        payload = {"type": kind, "ts": self.clock.now().isoformat(), "seq": seq, **fields}
        self.device.publish(f"carehub/v1/{HOME}/{device_id}/event", payload)

    def status(self, device_id: str, **fields: Any) -> None:
        """A device's status report (or, with online=False, its last will)."""
        before = self._last_seen(device_id)
        self.device.publish(f"carehub/v1/{HOME}/{device_id}/status", {"online": True, **fields})
        if fields.get("online", True):
            wait_until(lambda: self._last_seen(device_id) != before, timeout=10)
        else:
            wait_until(lambda: self._online(device_id) is False, timeout=10)

    def _last_seen(self, device_id: str) -> datetime | None:
        with self.runtime.session_factory() as s:
            device = s.get(Device, device_id)
            return device.last_seen_at if device else None

    def _online(self, device_id: str) -> bool | None:
        with self.runtime.session_factory() as s:
            device = s.get(Device, device_id)
            return device.online if device else None

    def heartbeat(self, *, skip: tuple[str, ...] = ()) -> None:
        for device_id in DEVICES:
            if device_id not in skip:
                self.status(device_id)

    def at(self, hh_mm: str) -> None:
        """Advance to the next local time HH:MM (heartbeats on the way)."""
        hour, minute = (int(x) for x in hh_mm.split(":"))
        local = self.clock.now().astimezone(OSLO)
        target = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if target <= local:
            target += timedelta(days=1)
        self.advance(target - local)

    def advance(self, delta: timedelta, *, silent: tuple[str, ...] = ()) -> None:
        """Let time pass; devices (except ``silent`` ones) heartbeat every 30 minutes, and
        the hub runs what is due at each time its timer asked for."""
        end = self.clock.now() + delta
        while True:
            self.run_due()
            now = self.clock.now()
            if now >= self.last_heartbeat + HEARTBEAT:
                self.heartbeat(skip=silent)
                self.last_heartbeat = now
            if now >= end:
                return
            stops = [end, self.last_heartbeat + HEARTBEAT]
            if self.timer.requested is not None and self.timer.requested > now:
                stops.append(self.timer.requested)
            self.clock.set(min(stops))

    def run_due(self) -> None:
        assert self.runtime.rules is not None
        self.runtime.rules.run_due()

    def restart_hub(self, *, down_for: timedelta) -> None:
        """The hub dies; time passes; a new hub process starts on the same database."""
        self.runtime.stop()
        self.clock.advance(down_for)
        self.runtime = self._new_runtime()
        self.runtime.start()
        assert self.runtime.ingest.wait_connected(10)

    # -- what the test looks at -----------------------------------------------------------------
    def alarms(self) -> list[SeenAlarm]:
        with self.runtime.session_factory() as s:
            rows = s.scalars(select(Alarm).order_by(Alarm.id)).all()
            return [
                SeenAlarm(
                    type=a.type,
                    severity=a.severity.value,
                    status=a.status.value,
                    opened_local=a.opened_at.astimezone(OSLO).strftime("%H:%M"),
                    device_id=a.device_id,
                    event_count=a.event_count,
                )
                for a in rows
            ]

    def timeline(self, alarm_type: str) -> list[tuple[str, str | None]]:
        with self.runtime.session_factory() as s:
            alarm = s.scalars(select(Alarm).where(Alarm.type == alarm_type)).one()
            entries = s.scalars(
                select(AlarmTimelineEntry)
                .where(AlarmTimelineEntry.alarm_id == alarm.id)
                .order_by(AlarmTimelineEntry.id)
            ).all()
            return [(e.kind, e.to_status) for e in entries]

    def wait_feedback(self, state: str, timeout: float = 10.0) -> dict[str, Any]:
        with self._feedback_seen:
            ok = self._feedback_seen.wait_for(
                lambda: bool(self.feedback) and self.feedback[-1]["state"] == state, timeout
            )
        assert ok, f"feedback never said {state!r}: {self.feedback[-3:]}"
        return self.feedback[-1]
