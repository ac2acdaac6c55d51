"""The ``carehub-sim`` command: send one device event or status, kill a device, or run a fleet."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from typing import Annotated, NoReturn, TypeVar

import typer
import uvicorn
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from devices.events import EventKind
from devices.signing import decode_key
from hub.clock import Clock, SystemClock
from hub.storage.models import DeviceType, Protocol
from simulators.devices import DevicePublisher, PublisherError, UnsupportedEvent, VirtualDevice
from simulators.homes import FleetEvent, FleetSummary, HomeFleet
from simulators.life.cli import scenarios_app
from simulators.payloads import MqttMessage
from simulators.twilio_sim import SimConfig, create_app
from simulators.twilio_sim.config import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    DEFAULT_INBOUND_SMS_URL,
)

app = typer.Typer(
    name="carehub-sim",
    help="Simulated CareHub devices: publish events and statuses over MQTT like real sensors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(scenarios_app, name="scenarios")

T = TypeVar("T")

# The clock the commands read; tests may replace it.
clock: Clock = SystemClock()

_KIND_TO_TYPE = {
    EventKind.FALL: DeviceType.FALL_SENSOR,
    EventKind.DOOR: DeviceType.DOOR_CONTACT,
    EventKind.MOTION: DeviceType.MOTION_SENSOR,
    EventKind.BUTTON: DeviceType.ALARM_BUTTON,
}


class Action(enum.StrEnum):
    PRESS = "press"
    CANCEL = "cancel"


class FallStatus(enum.StrEnum):
    FALL = "fall"
    MAYBE_FALL = "maybe_fall"
    NONE = "none"


class AvailabilityStyle(enum.StrEnum):
    PLAIN = "plain"
    JSON = "json"


HomeOpt = Annotated[str, typer.Option("--home", help="The home id (<home_id> of the topic).")]
DeviceOpt = Annotated[
    str,
    typer.Option("--device", help="The device id, or the Zigbee2MQTT friendly name."),
]
ProtocolOpt = Annotated[
    Protocol, typer.Option("--protocol", help="native (carehub/v1) or zigbee2mqtt.")
]
HostOpt = Annotated[str, typer.Option("--host", help="MQTT broker host.")]
PortOpt = Annotated[int, typer.Option("--port", min=1, max=65535, help="MQTT broker port.")]
BatteryOpt = Annotated[
    int | None, typer.Option("--battery", min=0, max=100, help="Battery level 0..100 to report.")
]
AvailabilityOpt = Annotated[
    AvailabilityStyle,
    typer.Option(
        "--availability",
        help='Zigbee2MQTT availability payload: plain "online" or {"state": "online"}.',
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the broker.")
]


@app.command()
def event(
    kind: Annotated[
        EventKind, typer.Argument(metavar="KIND", help="fall, door, motion or button.")
    ],
    home: HomeOpt,
    device: DeviceOpt,
    protocol: ProtocolOpt = Protocol.NATIVE,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 1883,
    seq: Annotated[
        int | None,
        typer.Option(
            "--seq",
            min=0,
            help="Native seq; default: milliseconds since 1970, so repeated runs keep increasing.",
        ),
    ] = None,
    door_open: Annotated[
        bool, typer.Option("--open/--closed", help="door: opened or closed.")
    ] = True,
    motion: Annotated[
        bool, typer.Option("--motion/--no-motion", help="motion: seen or ended.")
    ] = True,
    action: Annotated[Action, typer.Option("--action", help="button: press or cancel.")] = (
        Action.PRESS
    ),
    confidence: Annotated[
        float | None,
        typer.Option("--confidence", min=0.0, max=1.0, help="fall (native): confidence 0..1."),
    ] = None,
    fall_status: Annotated[
        FallStatus,
        typer.Option("--fall-status", help="fall (zigbee2mqtt radar): fall_down_status."),
    ] = FallStatus.FALL,
    battery: BatteryOpt = None,
    tamper: Annotated[
        bool, typer.Option("--tamper", help="Report the tamper flag as set.")
    ] = False,
    availability: AvailabilityOpt = AvailabilityStyle.PLAIN,
    timeout: TimeoutOpt = 5.0,
    hmac_key: Annotated[
        str | None,
        typer.Option(
            "--hmac-key",
            help="Sign the event with the device's HMAC key (base64, as `carehub device "
            "register --hmac` prints it). Native only.",
        ),
    ] = None,
) -> None:
    """Publish one event (QoS 1, waits for the broker's PUBACK) and print it.

    Example: carehub-sim event fall --home h1 --device d1
    """
    if seq is None:
        seq = int(clock.now().timestamp() * 1000)
    key = _hmac_key(hmac_key)
    last_seq = seq - 1  # the device's last used seq: its next event carries --seq
    virtual = _guard(
        lambda: _device(
            home,
            device,
            _KIND_TO_TYPE[kind],
            protocol,
            battery=battery,
            availability=availability,
            seq=last_seq,
            tamper=True if tamper else None,
            hmac_key=key,
        )
    )

    def build() -> MqttMessage:
        if kind is not EventKind.FALL and (
            confidence is not None or fall_status is not FallStatus.FALL
        ):
            raise UnsupportedEvent("--confidence and --fall-status are for fall events")
        if kind is EventKind.FALL:
            if virtual.is_native and fall_status is not FallStatus.FALL:
                raise UnsupportedEvent("--fall-status is for zigbee2mqtt fall radars")
            return virtual.fall(confidence=confidence, status=fall_status.value)
        if kind is EventKind.DOOR:
            return virtual.door(open=door_open)
        if kind is EventKind.MOTION:
            return virtual.motion(detected=motion)
        return virtual.button(action=action.value)

    message = _guard(build)
    publisher = DevicePublisher(virtual, host=host, port=port, will=True, timeout_s=timeout)
    _guard(publisher.connect)
    try:
        _published(virtual.status(online=True), "online status")
        _guard(lambda: publisher.publish(message))
        _published(message, f"{kind.value} event")
    finally:
        publisher.close()


@app.command()
def status(
    home: HomeOpt,
    device: DeviceOpt,
    offline: Annotated[bool, typer.Option("--offline", help="Report offline.")] = False,
    battery: BatteryOpt = None,
    rssi: Annotated[int | None, typer.Option("--rssi", help="Signal (native).")] = None,
    protocol: ProtocolOpt = Protocol.NATIVE,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 1883,
    availability: AvailabilityOpt = AvailabilityStyle.PLAIN,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Publish a device's retained status (native) or availability (Zigbee2MQTT)."""
    virtual = _device(
        home,
        device,
        DeviceType.ALARM_BUTTON,
        protocol,
        battery=battery,
        availability=availability,
        rssi=rssi,
    )
    message = _guard(lambda: virtual.status(online=not offline))
    publisher = DevicePublisher(
        virtual, host=host, port=port, will=False, announce_online=False, timeout_s=timeout
    )
    _guard(publisher.connect)
    try:
        _guard(lambda: publisher.publish(message))
        _published(message, "status")
    finally:
        publisher.close()


@app.command()
def die(
    home: HomeOpt,
    device: DeviceOpt,
    protocol: ProtocolOpt = Protocol.NATIVE,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 1883,
    battery: BatteryOpt = None,
    availability: AvailabilityOpt = AvailabilityStyle.PLAIN,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Go online with a last will, then drop the connection abruptly: the broker publishes the will.

    The TCP connection is shut down without an MQTT DISCONNECT, like a device losing power.
    """
    virtual = _device(
        home, device, DeviceType.ALARM_BUTTON, protocol, battery=battery, availability=availability
    )
    publisher = DevicePublisher(virtual, host=host, port=port, will=True, timeout_s=timeout)
    _guard(publisher.connect)
    _published(virtual.status(online=True), "online status")
    _guard(publisher.die)
    will = virtual.will()
    _console().print(
        f"dropped the connection without DISCONNECT: the broker now publishes the last will"
        f" {will.topic} {will.text} (retained)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def homes(
    count: Annotated[int, typer.Option("--count", min=1, help="Number of homes.")] = 3,
    rate: Annotated[
        float, typer.Option("--rate", min=0.0, help="Events per minute, whole fleet.")
    ] = 30.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed: same seed, same fleet.")] = 1,
    duration: Annotated[
        float, typer.Option("--duration", min=0.1, help="Seconds to run (Ctrl-C stops early).")
    ] = 60.0,
    heartbeat: Annotated[
        float, typer.Option("--heartbeat", min=0.0, help="Status every N seconds (0: none).")
    ] = 60.0,
    z2m_share: Annotated[
        float, typer.Option("--z2m-share", min=0.0, max=1.0, help="Share of Zigbee2MQTT devices.")
    ] = 0.5,
    show_devices: Annotated[
        bool, typer.Option("--show-devices", help="List every device before starting.")
    ] = False,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 1883,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Run a fleet of homes trickling plausible events (one connection, with a will, per device)."""
    out = _console()
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    fleet = _guard(
        lambda: HomeFleet(count, rate_per_min=rate, seed=seed, clock=clock, z2m_share=z2m_share)
    )
    devices = fleet.devices
    z2m = sum(1 for d in devices if not d.is_native)
    out.print(
        f"{count} homes, {len(devices)} devices ({len(devices) - z2m} native, {z2m} zigbee2mqtt),"
        f" {rate:g} events/min, seed {seed}, {duration:g} s against {host}:{port}",
        highlight=False,
    )
    if show_devices:
        out.print(_device_table(fleet))

    outcome: dict[str, FleetSummary | BaseException] = {}
    recent: list[str] = []

    def on_event(ev: FleetEvent, summary: FleetSummary) -> None:
        recent.append(f"{ev.home_id}: {ev.description}")

    def worker() -> None:
        try:
            outcome["summary"] = fleet.run(
                duration_s=duration,
                host=host,
                port=port,
                heartbeat_s=heartbeat or None,
                on_event=on_event,
                timeout_s=timeout,
            )
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc

    pace = SystemClock()
    start = pace.monotonic()
    thread = threading.Thread(target=worker, name="carehub-sim-fleet", daemon=True)
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task("connecting…", total=duration)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.2)
                last = recent[-1] if recent else "waiting for the first event"
                progress.update(
                    task,
                    completed=min(pace.monotonic() - start, duration),
                    description=f"{len(recent)} events · {last}",
                )
        except KeyboardInterrupt:
            fleet.stop()
            thread.join()
    error = outcome.get("error")
    if isinstance(error, PublisherError | ValueError):
        _fail(str(error))
    if isinstance(error, BaseException):
        raise error
    summary = outcome["summary"]
    assert isinstance(summary, FleetSummary)
    out.print(_summary_table(summary))


@app.command("sms-gateway")
def sms_gateway(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")
    ] = 8025,
    inbound_url: Annotated[
        str,
        typer.Option("--inbound-url", help="The hub's webhook for inbound SMS (signed POSTs)."),
    ] = DEFAULT_INBOUND_SMS_URL,
    account_sid: Annotated[
        str, typer.Option("--account-sid", help="Account SID the REST API accepts (AC + 32 hex).")
    ] = DEFAULT_ACCOUNT_SID,
    auth_token: Annotated[
        str, typer.Option("--auth-token", help="Auth token: REST password and signing key.")
    ] = DEFAULT_AUTH_TOKEN,
    public_url: Annotated[
        str | None,
        typer.Option("--public-url", help="Base URL it is reached at, if not host:port."),
    ] = None,
) -> None:
    """Run the Twilio-compatible SMS and voice gateway simulator.

    Point the twilio library at it with client.api.base_url = "http://HOST:PORT";
    see docs/sms-simulator.md. Inspect at GET /_sim/messages, reply with POST /_sim/inbound.
    """
    config = _guard(
        lambda: SimConfig(
            host=host,
            port=port,
            inbound_sms_url=inbound_url,
            account_sid=account_sid,
            auth_token=auth_token,
            public_base_url=public_url,
        )
    )
    _console().print(
        f"SMS gateway simulator on {config.base_url} (account {config.account_sid},"
        f" token {config.auth_token}); inbound SMS go to {config.inbound_sms_url}",
        markup=False,
        soft_wrap=True,
    )
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")


# --- helpers ------------------------------------------------------------------------------------


def _device(
    home: str,
    device: str,
    device_type: DeviceType,
    protocol: Protocol,
    *,
    battery: int | None,
    availability: AvailabilityStyle,
    seq: int = 0,
    rssi: int | None = None,
    tamper: bool | None = None,
    hmac_key: bytes | None = None,
) -> VirtualDevice:
    return VirtualDevice(
        identifier=device,
        home_id=home,
        type=device_type,
        protocol=protocol,
        battery=battery,
        rssi=rssi,
        tamper=tamper,
        seq=seq,
        availability_format=availability.value,
        clock=clock,
        hmac_key=hmac_key,
    )


def _hmac_key(text: str | None) -> bytes | None:
    """The ``--hmac-key`` option as bytes (base64, as the hub prints it); exit 1 when invalid."""
    if text is None:
        return None
    key = text.strip()
    return _guard(lambda: decode_key(key))


def _guard(action: Callable[[], T]) -> T:
    """Run ``action``; turn the errors a user can cause into a one-line message and exit 1."""
    try:
        return action()
    except (PublisherError, ValueError) as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    Console(stderr=True).print(f"error: {message}", style="bold red", markup=False, soft_wrap=True)
    raise typer.Exit(code=1)


def _console() -> Console:
    return Console(highlight=False)


def _published(message: MqttMessage, what: str) -> None:
    flags = "QoS 1, retained" if message.retain else "QoS 1"
    _console().print(
        f"published {what}: {message.topic} {message.text} ({flags}, acknowledged)",
        markup=False,
        soft_wrap=True,
    )


def _device_table(fleet: HomeFleet) -> Table:
    table = Table("home", "device / friendly name", "type", "protocol", "room", title="devices")
    for home in fleet.homes:
        for device in home.devices:
            table.add_row(
                home.home_id,
                device.identifier,
                device.type.value,
                device.protocol.value,
                device.room or "",
            )
    return table


def _summary_table(summary: FleetSummary) -> Table:
    table = Table("what", "count", title=f"fleet run, {summary.elapsed_s:.1f} s")
    for kind, n in sorted(summary.by_kind.items()):
        table.add_row(f"{kind} events", str(n))
    table.add_row("published (acknowledged)", str(summary.published))
    table.add_row("failed", str(summary.failed))
    table.add_row("heartbeats (device statuses)", str(summary.heartbeats))
    return table
