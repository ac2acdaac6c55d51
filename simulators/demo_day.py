"""The demo municipality's day: ordinary life in each home, incidents on a daily schedule, and
the simulated nurse who takes some alarms by SMS reply. Time is the (scaled) clock's.

:func:`plan_day` is pure (a local date → the day's device actions); :class:`DemoDay` publishes
them as the scaled clock reaches them; :class:`SimNurse` answers the SMS gateway simulator.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import httpx

from hub.clock import Clock
from simulators.devices import DevicePublisher, PublishError, VirtualDevice, connect_all
from simulators.homes import SimHome
from simulators.payloads import MqttMessage

logger = logging.getLogger(__name__)

OSLO = ZoneInfo("Europe/Oslo")
DAY_STARTS_AT = time(5, 30)  # where the demo's clock starts: before the first incident
HEARTBEAT = timedelta(minutes=30)  # simulated; well inside the one-hour supervision interval
CANCEL_AFTER = timedelta(seconds=20)
# How a motion episode looks: on, and off again after the PIR's hold time.
MOTION_HOLD = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class Incident:
    """A scripted incident: at ``at`` (local time, every simulated day) in home ``home``.

    ``quiet`` is how long the home shows no ordinary life from ``at`` (a resident on the floor,
    out of the door, not up). ``nurse_after`` is when the simulated nurse replies "1" to the
    alarm's SMS (simulated time after the SMS); ``None`` leaves the alarm for the visitor.
    """

    at: time
    home: int
    kind: str  # fall, button, button_cancel, night_wander, not_up, long_bathroom
    story: str
    quiet: timedelta = timedelta(0)
    nurse_after: timedelta | None = None


SCHEDULE: tuple[Incident, ...] = (
    Incident(
        time(6, 10),
        0,
        "fall",
        "Kari falls getting out of bed (fall radar: maybe_fall, then fall); "
        "the nurse answers the SMS after 3 min",
        quiet=timedelta(minutes=30),
        nurse_after=timedelta(minutes=3),
    ),
    Incident(
        time(7, 5),
        1,
        "button",
        "Ola presses his alarm button; nobody answers the SMS: take it in the portal",
    ),
    Incident(
        time(6, 0),
        2,
        "not_up",
        "Ingrid does not get up this morning (no motion 06:00–09:00, alarm at 09:00); "
        "take it in the portal",
        quiet=timedelta(hours=3, minutes=40),
    ),
    Incident(
        time(11, 30),
        0,
        "button_cancel",
        "Kari presses her button by mistake and cancels it 20 s later",
    ),
    Incident(
        time(14, 45),
        1,
        "fall",
        "Ola falls in the bedroom; the nurse answers the SMS after 2 min",
        quiet=timedelta(minutes=30),
        nurse_after=timedelta(minutes=2),
    ),
    Incident(
        time(17, 50),
        2,
        "fall",
        "Ingrid falls; the nurse answers only after 4 min, so the escalation reaches step 2",
        quiet=timedelta(minutes=30),
        nurse_after=timedelta(minutes=4),
    ),
    Incident(
        time(23, 20),
        1,
        "night_wander",
        "Ola walks out of the front door at night and does not come back (alarm after the "
        "10 min grace); the nurse answers after 5 min; he is home at 00:05",
        quiet=timedelta(minutes=45),
        nurse_after=timedelta(minutes=5),
    ),
    Incident(
        time(2, 50),
        1,
        "long_bathroom",
        "Ola stays in the bathroom (alarm after 45 min); the nurse answers after 3 min",
        quiet=timedelta(hours=1),
        nurse_after=timedelta(minutes=3),
    ),
)
# When each home is up and about (local): from, to. Ingrid's "not up" is an incident.
AWAKE: tuple[tuple[time, time], ...] = (
    (time(6, 0), time(22, 0)),
    (time(6, 45), time(23, 0)),
    (time(7, 15), time(22, 15)),
)
EARLY_VISIT = time(5, 40)  # everyone is up briefly before the morning window starts


@dataclass(frozen=True, slots=True, order=True)
class Action:
    """One thing a device does at a simulated time; ``story`` is printed for the visitor."""

    at: datetime
    home: int
    device: str  # a role: fall, door, button, motion:<room>
    what: str  # fall, maybe_fall, press, cancel, open, closed, motion_on, motion_off, status
    story: str = ""


def incident_at(day: date, incident: Incident, tz: tzinfo) -> datetime:
    return datetime.combine(day, incident.at, tzinfo=tz)


def plan_day(
    homes: Sequence[SimHome],
    day: date,
    *,
    seed: int,
    schedule: Sequence[Incident] = SCHEDULE,
    tz: tzinfo = OSLO,
) -> list[Action]:
    """Everything the homes do on ``day`` (local 00:00–24:00), sorted by time.

    Ordinary life: a motion episode every 8–25 min while awake (never in the bathroom at
    night, and the last one of the evening in the bedroom or living room, so the night rules
    stay quiet), a home-care visit through the door by day, every device's status every
    30 min; none of it inside an incident's quiet period. Then the incidents' own actions.
    """
    rng = random.Random(f"demo-day-{seed}-{day.isoformat()}")
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = start + timedelta(days=1)
    quiet: dict[int, list[tuple[datetime, datetime]]] = {i: [] for i in range(len(homes))}
    for incident in schedule:
        if incident.home < len(homes):
            for d in (day - timedelta(days=1), day):  # yesterday's quiet may reach into today
                begin = incident_at(d, incident, tz)
                quiet[incident.home].append((begin, begin + incident.quiet))

    def is_quiet(h: int, at: datetime) -> bool:
        return any(a <= at < b for a, b in quiet[h])

    actions: list[Action] = []
    for h, home in enumerate(homes):
        rooms = [d.room or "" for d in home.motion_sensors]
        day_rooms = rooms
        night_rooms = [r for r in rooms if r != "bathroom"] or rooms
        ordinary: list[Action] = []
        early = datetime.combine(day, EARLY_VISIT, tzinfo=tz)
        room = "bathroom" if "bathroom" in rooms else night_rooms[0]
        ordinary += _episode(h, room, early)
        ordinary += _episode(h, _bed_room(night_rooms), early + timedelta(minutes=5))
        wake, sleep = AWAKE[h % len(AWAKE)]
        at = datetime.combine(day, wake, tzinfo=tz)
        bedtime = datetime.combine(day, sleep, tzinfo=tz)
        while at < bedtime:
            night = at.hour >= 22 or at.hour < 7
            ordinary += _episode(h, rng.choice(night_rooms if night else day_rooms), at)
            at += timedelta(minutes=rng.uniform(8, 25))
        ordinary += _episode(h, _bed_room(night_rooms), bedtime)
        visit = datetime.combine(day, time(10), tzinfo=tz) + timedelta(minutes=rng.randint(0, 90))
        ordinary += [
            Action(visit, h, "door", "open"),
            Action(visit + timedelta(minutes=1), h, "door", "closed"),
            *_episode(h, night_rooms[0], visit + timedelta(minutes=2)),
        ]
        actions += [a for a in ordinary if not is_quiet(h, a.at)]
        roles = ["fall", "door", "button", *(f"motion:{r}" for r in rooms)]
        for n, role in enumerate(roles):
            beat = start + timedelta(minutes=n)
            while beat < end:
                actions.append(Action(beat, h, role, "status"))
                beat += HEARTBEAT
    for incident in schedule:
        if incident.home < len(homes):
            for d in (day - timedelta(days=1), day):  # yesterday's may end today
                actions += _incident_actions(homes[incident.home], incident, d, tz)
    return sorted(a for a in actions if start <= a.at < end)


def _bed_room(rooms: Sequence[str]) -> str:
    return "bedroom" if "bedroom" in rooms else rooms[0]


def _episode(h: int, room: str, at: datetime) -> list[Action]:
    return [
        Action(at, h, f"motion:{room}", "motion_on"),
        Action(at + MOTION_HOLD, h, f"motion:{room}", "motion_off"),
    ]


def _incident_actions(home: SimHome, incident: Incident, day: date, tz: tzinfo) -> list[Action]:
    h, at, story = incident.home, incident_at(day, incident, tz), incident.story
    rooms = [d.room or "" for d in home.motion_sensors]
    living = rooms[0]
    back = at + incident.quiet
    if incident.kind == "fall":
        first = "maybe_fall" if not home.fall_sensor.is_native else "fall"
        out = [Action(at, h, "fall", first, story)]
        if first == "maybe_fall":
            out.append(Action(at + timedelta(seconds=15), h, "fall", "fall"))
        return [*out, *_episode(h, living, back)]
    if incident.kind == "button":
        return [Action(at, h, "button", "press", story)]
    if incident.kind == "button_cancel":
        return [
            Action(at, h, "button", "press", story),
            Action(at + CANCEL_AFTER, h, "button", "cancel"),
        ]
    if incident.kind == "night_wander":
        return [
            Action(at, h, "door", "open", story),
            Action(back, h, "door", "closed"),
            *_episode(h, living, back + timedelta(seconds=30)),
            *_episode(h, _bed_room(rooms), back + timedelta(minutes=5)),
        ]
    if incident.kind == "long_bathroom":
        bath = "bathroom" if "bathroom" in rooms else living
        return [
            Action(at, h, f"motion:{bath}", "motion_on", story),
            Action(at + MOTION_HOLD, h, f"motion:{bath}", "motion_off"),
            *_episode(h, _bed_room(rooms), back),
        ]
    if incident.kind == "not_up":  # nothing happens: that is the incident
        return [Action(at, h, "none", "story", story), *_episode(h, living, back)]
    raise ValueError(f"unknown incident kind {incident.kind!r}")


# --- the shell: publishing on the scaled clock -------------------------------------------------


def device_for(home: SimHome, role: str) -> VirtualDevice | None:
    """The home's device playing ``role`` (fall, door, button, motion:<room>)."""
    if role == "fall":
        return home.fall_sensor
    if role == "door":
        return home.door
    if role == "button":
        return home.button
    for sensor in home.motion_sensors:
        if role == f"motion:{sensor.room}":
            return sensor
    return None


def message_for(device: VirtualDevice, what: str) -> MqttMessage | None:
    """The device's MQTT message for an action (None: nothing to send, e.g. a story line)."""
    if what == "status":
        return device.status(online=True)
    if what in ("fall", "maybe_fall"):
        if device.is_native:
            return device.fall(confidence=0.93)
        return device.fall(status="fall" if what == "fall" else "maybe_fall")
    if what in ("press", "cancel"):
        return device.button(action="press" if what == "press" else "cancel")
    if what in ("open", "closed"):
        return device.door(open=what == "open")
    if what in ("motion_on", "motion_off"):
        return device.motion(detected=what == "motion_on")
    return None


class DemoDay:
    """Publishes each day's plan as the clock reaches it, one MQTT connection per device."""

    def __init__(
        self,
        homes: Sequence[SimHome],
        clock: Clock,
        *,
        speed: float,
        seed: int,
        labels: Sequence[str],
        tz: tzinfo = OSLO,
        tell: Callable[[str], None] = print,
        schedule: Sequence[Incident] = SCHEDULE,
        since: datetime | None = None,
    ) -> None:
        self.homes = homes
        self.clock = clock
        self.speed = speed
        self.seed = seed
        self.labels = labels
        self.tz = tz
        self.tell = tell
        self.schedule = schedule
        self.published = 0
        # resident label → how long the nurse waits before answering the next alarm SMS about
        # them (None: she leaves it for the visitor); set by an incident, used up by the nurse
        self.nurse_plan: dict[str, timedelta | None] = {}
        # actions from here on are done (late rather than never while the hub is starting)
        self.since = since or clock.now()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, host: str, port: int) -> None:
        """Until :meth:`stop`: today's remaining actions, then the next day's, and so on."""
        devices = [d for home in self.homes for d in home.devices]
        publishers = {id(d): DevicePublisher(d, host=host, port=port) for d in devices}
        connect_all(publishers.values())
        try:
            day = self.since.astimezone(self.tz).date()
            while not self._stop.is_set():
                for action in plan_day(self.homes, day, seed=self.seed, schedule=self.schedule):
                    if action.at < self.since:
                        continue
                    if self._wait_until(action.at):
                        return
                    self._do(action, publishers)
                day += timedelta(days=1)
        finally:
            for publisher in publishers.values():
                publisher.close()

    def _wait_until(self, at: datetime) -> bool:
        """Wait (in real time) until the clock reaches ``at``; True if asked to stop."""
        while True:
            ahead = (at - self.clock.now()).total_seconds()
            if ahead <= 0:
                return self._stop.is_set()
            if self._stop.wait(min(ahead / self.speed, 1.0)):
                return True

    def _do(self, action: Action, publishers: dict[int, DevicePublisher]) -> None:
        home = self.homes[action.home]
        if action.story:
            label = self.labels[action.home] if action.home < len(self.labels) else home.home_id
            incident = next(
                (i for i in self.schedule if i.home == action.home and i.story == action.story),
                None,
            )
            self.nurse_plan[label] = incident.nurse_after if incident else None
            local = action.at.astimezone(self.tz).strftime("%a %H:%M")
            self.tell(f"[{local}] {label}: {action.story}")
        device = device_for(home, action.device)
        if device is None:
            return
        message = message_for(device, action.what)
        if message is None:
            return
        try:
            publishers[id(device)].publish(message)
            self.published += 1
        except PublishError as exc:
            logger.warning("%s: %s not delivered: %s", device.identifier, action.what, exc)


# --- the simulated nurse -----------------------------------------------------------------------

_CODE = re.compile(r"\((?:kode|code) ([A-Za-z0-9]{1,8})\)")


class SimNurse:
    """Reads the SMS the simulator delivered to the nurse's phone and, for the alarms the
    schedule says she takes, replies "1 <code>" through ``POST /_sim/inbound`` after her delay
    (simulated time). Every other alarm is left for the visitor.

    ``plan`` is :attr:`DemoDay.nurse_plan`: the first alarm SMS naming a resident after one of
    their incidents uses that incident's delay up; later SMS (another step, another alarm) do
    not make her reply again.
    """

    def __init__(
        self,
        sim_url: str,
        phone: str,
        clock: Clock,
        *,
        speed: float,
        plan: MutableMapping[str, timedelta | None],
        tell: Callable[[str], None] = print,
        tz: tzinfo = OSLO,
        poll_s: float = 0.5,
    ) -> None:
        self.sim_url = sim_url.rstrip("/")
        self.phone = phone
        self.clock = clock
        self.speed = speed
        self.plan = plan
        self.tell = tell
        self.tz = tz
        self.poll_s = poll_s
        self.replied: set[str] = set()  # alarm codes answered
        self._seen: set[str] = set()  # message sids looked at
        self._due: list[tuple[datetime, str, str]] = []  # (when, code, label)
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        with httpx.Client(base_url=self.sim_url, timeout=5) as http:
            while not self._stop.wait(self.poll_s):
                try:
                    self._poll(http)
                    self._reply_due(http)
                except httpx.HTTPError as exc:
                    logger.debug("the simulated nurse cannot reach the SMS simulator: %s", exc)

    def _poll(self, http: httpx.Client) -> None:
        answer = http.get("/_sim/messages", params={"to": self.phone, "kind": "sms"})
        for message in answer.json():
            sid = str(message.get("sid"))
            if sid in self._seen or message.get("direction") != "outbound-api":
                continue
            self._seen.add(sid)
            body = str(message.get("body") or "")
            match = _CODE.search(body)
            if match is None:
                continue
            code = match.group(1).upper()
            label = next((lbl for lbl in list(self.plan) if lbl in body), None)
            if label is None or code in self.replied or any(c == code for _, c, _ in self._due):
                continue
            delay = self.plan.pop(label, None)  # the first alarm SMS after the incident
            if delay is not None:
                self._due.append((self.clock.now() + delay, code, label))

    def _reply_due(self, http: httpx.Client) -> None:
        now = self.clock.now()
        for item in [d for d in self._due if d[0] <= now]:
            self._due.remove(item)
            _, code, label = item
            http.post(
                "/_sim/inbound", json={"from": self.phone, "body": f"1 {code}"}
            ).raise_for_status()
            self.replied.add(code)
            local = now.astimezone(self.tz).strftime("%a %H:%M")
            self.tell(f"[{local}] the nurse replies 1 by SMS: she takes {label}'s alarm ({code})")
