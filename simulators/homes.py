"""A fleet of simulated homes trickling plausible, seeded events for a bounded time."""

from __future__ import annotations

import logging
import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import tzinfo
from zoneinfo import ZoneInfo

from devices.events import EventKind
from hub.clock import Clock, SystemClock
from hub.storage.models import DeviceType, Protocol
from simulators.devices import DevicePublisher, PublishError, VirtualDevice, connect_all
from simulators.payloads import FallDownStatus, MqttMessage

logger = logging.getLogger(__name__)

DEFAULT_TZ = ZoneInfo("Europe/Oslo")
MOTION_ROOMS = ("living room", "bathroom", "bedroom", "kitchen")
# Local hours when residents are usually up and about.
DAY_START_HOUR = 7
DAY_END_HOUR = 22

# Share of events per kind, by day and by night (the rest is motion).
_DAY_MIX = {EventKind.DOOR: 0.12, EventKind.BUTTON: 0.015, EventKind.FALL: 0.01}
_NIGHT_MIX = {EventKind.DOOR: 0.04, EventKind.BUTTON: 0.01, EventKind.FALL: 0.01}


@dataclass(frozen=True, slots=True)
class SimHome:
    """One resident's home: a fall sensor, an entrance door contact, motion sensors, a button."""

    home_id: str
    fall_sensor: VirtualDevice
    door: VirtualDevice
    motion_sensors: tuple[VirtualDevice, ...]
    button: VirtualDevice

    @property
    def devices(self) -> tuple[VirtualDevice, ...]:
        return (self.fall_sensor, self.door, *self.motion_sensors, self.button)


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """One event the fleet chose to send, with a line a person can read."""

    home_id: str
    device: VirtualDevice
    kind: EventKind
    description: str
    message: MqttMessage


@dataclass(slots=True)
class FleetSummary:
    """What a run did."""

    by_kind: Counter[str] = field(default_factory=Counter)
    published: int = 0
    failed: int = 0
    heartbeats: int = 0
    elapsed_s: float = 0.0

    @property
    def attempted(self) -> int:
        return self.published + self.failed


@dataclass(slots=True)
class _HomeState:
    door_open: bool = False
    motion: dict[str, bool] = field(default_factory=dict)
    button_pressed: bool = False
    radar_fallen: bool = False


class HomeFleet:
    """``count`` homes with a seeded mix of native and Zigbee2MQTT devices.

    :meth:`next_event` is deterministic for a seed and the clock's time of day (local time in
    ``tz``): motion by day, bedroom and bathroom at night, the door now and then (open, later
    closed), a rare button press or fall. ``rate_per_min`` is for the whole fleet.
    :meth:`run` publishes them, one MQTT connection (with its last will) per device.
    """

    def __init__(
        self,
        count: int,
        *,
        rate_per_min: float,
        seed: int,
        clock: Clock | None = None,
        tz: tzinfo = DEFAULT_TZ,
        z2m_share: float = 0.5,
        home_prefix: str = "sim-home",
        max_motion_sensors: int = 3,
    ) -> None:
        if count < 1:
            raise ValueError("a fleet needs at least one home")
        if rate_per_min < 0:
            raise ValueError("the event rate cannot be negative")
        if not 0 <= z2m_share <= 1:
            raise ValueError("z2m_share must be in 0..1")
        if not 1 <= max_motion_sensors <= len(MOTION_ROOMS):
            raise ValueError(f"max_motion_sensors must be 1..{len(MOTION_ROOMS)}")
        self.rate_per_min = rate_per_min
        self.seed = seed
        self.clock: Clock = clock or SystemClock()
        self.tz = tz
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self.homes: tuple[SimHome, ...] = tuple(
            self._build_home(f"{home_prefix}-{n:03d}", z2m_share, max_motion_sensors)
            for n in range(1, count + 1)
        )
        self._state = {home.home_id: _HomeState() for home in self.homes}

    @property
    def devices(self) -> tuple[VirtualDevice, ...]:
        return tuple(device for home in self.homes for device in home.devices)

    # --- the pure part: what happens next ----------------------------------------------------

    def next_delay_s(self) -> float:
        """Seconds until the next event (exponential inter-arrival; inf at rate 0)."""
        if self.rate_per_min == 0:
            return math.inf
        return self._rng.expovariate(self.rate_per_min / 60.0)

    def is_daytime(self) -> bool:
        hour = self.clock.now().astimezone(self.tz).hour
        return DAY_START_HOUR <= hour < DAY_END_HOUR

    def next_event(self) -> FleetEvent:
        """Choose and build the next event (advances the devices' seq and the homes' state)."""
        home = self._rng.choice(self.homes)
        state = self._state[home.home_id]
        mix = _DAY_MIX if self.is_daytime() else _NIGHT_MIX
        roll = self._rng.random()
        if roll < mix[EventKind.FALL]:
            event = self._fall(home, state)
        elif roll < mix[EventKind.FALL] + mix[EventKind.BUTTON]:
            event = self._button(home, state)
        elif roll < mix[EventKind.FALL] + mix[EventKind.BUTTON] + mix[EventKind.DOOR]:
            event = self._door(home, state)
        else:
            event = self._motion(home, state)
        if event.device.battery is not None and self._rng.random() < 0.02:
            event.device.drain_battery()
        return event

    def _fall(self, home: SimHome, state: _HomeState) -> FleetEvent:
        device = home.fall_sensor
        if device.is_native:
            confidence = round(self._rng.uniform(0.55, 0.99), 2)
            return self._event(
                home,
                device,
                EventKind.FALL,
                f"fall ({confidence:.0%})",
                device.fall(confidence=confidence),
            )
        if state.radar_fallen:
            state.radar_fallen = False
            return self._event(
                home, device, EventKind.FALL, "fall radar clear", device.fall(status="none")
            )
        state.radar_fallen = True
        status: FallDownStatus = "fall" if self._rng.random() < 0.7 else "maybe_fall"
        return self._event(
            home, device, EventKind.FALL, status.replace("_", " "), device.fall(status=status)
        )

    def _button(self, home: SimHome, state: _HomeState) -> FleetEvent:
        device = home.button
        if state.button_pressed and self._rng.random() < 0.5:
            state.button_pressed = False
            return self._event(
                home, device, EventKind.BUTTON, "button cancel", device.button(action="cancel")
            )
        state.button_pressed = True
        return self._event(
            home, device, EventKind.BUTTON, "button press", device.button(action="press")
        )

    def _door(self, home: SimHome, state: _HomeState) -> FleetEvent:
        state.door_open = not state.door_open
        text = "door opened" if state.door_open else "door closed"
        return self._event(
            home, home.door, EventKind.DOOR, text, home.door.door(open=state.door_open)
        )

    def _motion(self, home: SimHome, state: _HomeState) -> FleetEvent:
        sensors = home.motion_sensors
        if self.is_daytime():
            device = self._rng.choice(sensors)
        else:
            weights = [3.0 if s.room in ("bedroom", "bathroom") else 1.0 for s in sensors]
            device = self._rng.choices(sensors, weights=weights)[0]
        detected = not state.motion.get(device.identifier, False)
        state.motion[device.identifier] = detected
        text = f"motion {'in' if detected else 'ended in'} {device.room}"
        return self._event(home, device, EventKind.MOTION, text, device.motion(detected=detected))

    @staticmethod
    def _event(
        home: SimHome,
        device: VirtualDevice,
        kind: EventKind,
        description: str,
        message: MqttMessage,
    ) -> FleetEvent:
        return FleetEvent(home.home_id, device, kind, description, message)

    def _build_home(self, home_id: str, z2m_share: float, max_motion: int) -> SimHome:
        rng = self._rng

        def make(suffix: str, device_type: DeviceType, room: str) -> VirtualDevice:
            z2m = rng.random() < z2m_share
            battery: int | None = rng.randint(40, 100)
            if z2m and device_type is DeviceType.FALL_SENSOR:
                battery = None  # the TuYa radar is mains powered
            return VirtualDevice(
                identifier=f"{home_id}-{suffix}",
                home_id=home_id,
                type=device_type,
                protocol=Protocol.ZIGBEE2MQTT if z2m else Protocol.NATIVE,
                battery=battery,
                rssi=None if z2m else rng.randint(-85, -45),
                linkquality=rng.randint(40, 255) if z2m else None,
                availability_format="json" if rng.random() < 0.5 else "plain",
                room=room,
                clock=self.clock,
                tz=self.tz,
            )

        rooms = MOTION_ROOMS[: rng.randint(1, max_motion)]
        return SimHome(
            home_id=home_id,
            fall_sensor=make("fall", DeviceType.FALL_SENSOR, "bedroom"),
            door=make("door", DeviceType.DOOR_CONTACT, "entrance"),
            motion_sensors=tuple(
                make(f"motion-{room.replace(' ', '-')}", DeviceType.MOTION_SENSOR, room)
                for room in rooms
            ),
            button=make("button", DeviceType.ALARM_BUTTON, "pendant"),
        )

    # --- the shell: publishing ---------------------------------------------------------------

    def stop(self) -> None:
        """Ask a running :meth:`run` to finish (it closes its connections cleanly)."""
        self._stop.set()

    def run(
        self,
        *,
        duration_s: float,
        host: str = "127.0.0.1",
        port: int = 1883,
        heartbeat_s: float | None = 60.0,
        max_events: int | None = None,
        on_event: Callable[[FleetEvent, FleetSummary], None] | None = None,
        timeout_s: float = 5.0,
    ) -> FleetSummary:
        """Connect every device, publish events for ``duration_s`` real seconds (or until
        :meth:`stop` or ``max_events``), send heartbeats every ``heartbeat_s``, then disconnect.

        Raises :class:`~simulators.devices.BrokerUnavailable` if the broker cannot be reached.
        A failed publish is counted and logged, and the run goes on.
        """
        if duration_s <= 0:
            raise ValueError("the duration must be positive")
        pace = SystemClock()  # elapsed real time of the run; self.clock is the simulated world
        summary = FleetSummary()
        publishers = {
            id(device): DevicePublisher(device, host=host, port=port, timeout_s=timeout_s)
            for device in self.devices
        }
        self._stop.clear()
        connect_all(publishers.values())
        start = pace.monotonic()  # the run's time counts from when every device is online
        deadline = start + duration_s
        next_beat = start + heartbeat_s if heartbeat_s else math.inf
        try:
            next_event_at = pace.monotonic() + self.next_delay_s()
            while not self._stop.is_set():
                now = pace.monotonic()
                wake = min(next_event_at, next_beat, deadline)
                if wake > now and self._stop.wait(wake - now):
                    break
                now = pace.monotonic()
                if now >= deadline:
                    break
                if now >= next_beat and heartbeat_s:
                    self._heartbeat(publishers.values(), summary)
                    next_beat = pace.monotonic() + heartbeat_s
                if now >= next_event_at:
                    event = self.next_event()
                    try:
                        publishers[id(event.device)].publish(event.message)
                        summary.published += 1
                    except PublishError as exc:
                        summary.failed += 1
                        logger.warning("%s: %s not delivered: %s", event.home_id, event.kind, exc)
                    summary.by_kind[event.kind.value] += 1
                    summary.elapsed_s = pace.monotonic() - start
                    if on_event is not None:
                        on_event(event, summary)
                    if max_events is not None and summary.attempted >= max_events:
                        break
                    next_event_at = pace.monotonic() + self.next_delay_s()
        finally:
            for publisher in publishers.values():
                publisher.close()
            summary.elapsed_s = pace.monotonic() - start
        return summary

    @staticmethod
    def _heartbeat(publishers: Iterable[DevicePublisher], summary: FleetSummary) -> None:
        for publisher in publishers:
            try:
                publisher.publish_status(online=True)
                summary.heartbeats += 1
            except PublishError as exc:
                logger.warning("heartbeat of %s not delivered: %s", publisher.client_id, exc)
