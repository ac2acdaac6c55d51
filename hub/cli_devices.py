"""The installer's ``carehub device`` operations and the ``carehub broker`` commands."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from hub import devices_admin as admin
from hub.broker_auth import BrokerAuthError, BrokerAuthPaths, PidFileReload, sync_broker_auth
from hub.clock import SystemClock
from hub.config import Settings
from hub.storage.db import make_engine, make_sessionmaker, transaction
from hub.storage.models import DeviceType, Protocol

device_admin_app = typer.Typer()
walk_app = typer.Typer(help="Walk test of a home: every device shows what it must.")
broker_app = typer.Typer(help="Mosquitto: credentials, ACL and TLS files.", no_args_is_help=True)
device_admin_app.add_typer(walk_app, name="walk-test")

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

ActorOption = Annotated[str, typer.Option("--actor", help="Who does this (for the history).")]
DEFAULT_ACTOR = "installer"


def _settings() -> Settings:
    # Imported here: hub.cli imports this module to register its commands.
    from hub.cli import _require_schema
    from hub.cli import _settings as load

    settings = load()
    _require_schema(settings)
    return settings


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    engine = make_engine(settings.database.url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _run(settings: Settings, operation: Callable[[Session], T]) -> T:
    """Run one service operation in a transaction; an installer's mistake exits with code 1."""
    try:
        with _session(settings) as session:
            return operation(session)
    except admin.DeviceAdminError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc


def _show_secrets(registration: admin.Registration, settings: Settings) -> None:
    device = registration.device
    console.print(
        f"Registered {device.type.value} [bold]{device.id}[/bold] ({device.protocol.value}) "
        f"in home {device.home_id}."
    )
    if registration.mqtt_password is not None:
        console.print(
            "MQTT login, shown [bold]once[/bold] (only a hash is kept):\n"
            f"  username: {registration.mqtt_username}\n"
            f"  password: {registration.mqtt_password}\n"
            f"  publishes to {settings.mqtt.topic_prefix}/{device.home_id}/{device.id}/event "
            "and /status",
            highlight=False,
        )
    else:
        console.print("No MQTT login: the Zigbee2MQTT bridge publishes for this device.")
    if registration.hmac_key is not None:
        console.print(f"  HMAC key (base64): {registration.hmac_key}", highlight=False)
    console.print("Run `carehub broker sync` to let the broker know.")


@device_admin_app.command("register")
def device_register(
    device_id: Annotated[str, typer.Argument(help="The device's id (serial) for its topics.")],
    type: Annotated[DeviceType, typer.Option("--type", help="Device type.")],
    protocol: Annotated[Protocol, typer.Option("--protocol")],
    home: Annotated[str, typer.Option("--home", help="The home's id.")],
    room: Annotated[str, typer.Option("--room", help="Room name (created when new).")],
    z2m_name: Annotated[
        str | None, typer.Option("--z2m-name", help="Zigbee2MQTT friendly name.")
    ] = None,
    hmac: Annotated[bool, typer.Option("--hmac", help="The device signs its payloads.")] = False,
    room_kind: Annotated[str, typer.Option(help="Kind of a new room (bathroom, …).")] = "other",
    actor: ActorOption = DEFAULT_ACTOR,
) -> None:
    """Register a device; prints its MQTT login (and HMAC key) once."""
    settings = _settings()
    registration = _run(
        settings,
        lambda s: admin.register(
            s,
            device_id=device_id,
            type=type,
            protocol=protocol,
            home_id=home,
            room=room,
            z2m_friendly_name=z2m_name,
            hmac=hmac,
            room_kind=room_kind,
            now=SystemClock().now(),
            actor=actor,
        ),
    )
    _show_secrets(registration, settings)


@device_admin_app.command("pair")
def device_pair(
    discovered: Annotated[str, typer.Argument(help="Identifier from `carehub device discovered`.")],
    type: Annotated[DeviceType, typer.Option("--type", help="Device type.")],
    room: Annotated[str, typer.Option("--room", help="Room name (created when new).")],
    home: Annotated[str | None, typer.Option("--home", help="Home (default: the topic's).")] = None,
    device_id: Annotated[
        str | None, typer.Option("--id", help="Id of a Zigbee2MQTT device.")
    ] = None,
    hmac: Annotated[bool, typer.Option("--hmac", help="The device signs its payloads.")] = False,
    room_kind: Annotated[str, typer.Option(help="Kind of a new room (bathroom, …).")] = "other",
    actor: ActorOption = DEFAULT_ACTOR,
) -> None:
    """Register a device from the discovered list (and take it off the list)."""
    settings = _settings()
    registration = _run(
        settings,
        lambda s: admin.pair(
            s,
            admin.find_discovered(s, discovered).id,
            type=type,
            room=room,
            home_id=home,
            device_id=device_id,
            hmac=hmac,
            room_kind=room_kind,
            now=SystemClock().now(),
            actor=actor,
        ),
    )
    _show_secrets(registration, settings)


@device_admin_app.command("move")
def device_move(
    device_id: str,
    home: Annotated[str, typer.Option("--home", help="The (new) home's id.")],
    room: Annotated[str, typer.Option("--room", help="Room name (created when new).")],
    room_kind: Annotated[str, typer.Option(help="Kind of a new room.")] = "other",
    actor: ActorOption = DEFAULT_ACTOR,
) -> None:
    """Move a device to another room or home."""
    settings = _settings()
    _run(
        settings,
        lambda s: admin.move(
            s,
            device_id,
            home_id=home,
            room=room,
            room_kind=room_kind,
            now=SystemClock().now(),
            actor=actor,
        ),
    )
    console.print(f"Moved {device_id} to {home} / {room}. Run `carehub broker sync`.")


@device_admin_app.command("replace")
def device_replace(
    old_id: str,
    new_id: str,
    z2m_name: Annotated[
        str | None, typer.Option("--z2m-name", help="Friendly name of the new device.")
    ] = None,
    actor: ActorOption = DEFAULT_ACTOR,
) -> None:
    """Retire a device and register its replacement in the same room (history kept)."""
    settings = _settings()
    registration = _run(
        settings,
        lambda s: admin.replace(
            s, old_id, new_id, z2m_friendly_name=z2m_name, now=SystemClock().now(), actor=actor
        ),
    )
    console.print(f"Retired {old_id}.")
    _show_secrets(registration, settings)


@device_admin_app.command("retire")
def device_retire(
    device_id: str,
    reason: Annotated[str | None, typer.Option(help="Why (for the history).")] = None,
    actor: ActorOption = DEFAULT_ACTOR,
) -> None:
    """Retire a device: its events are refused and its MQTT login revoked."""
    settings = _settings()
    _run(
        settings,
        lambda s: admin.retire(s, device_id, now=SystemClock().now(), actor=actor, reason=reason),
    )
    console.print(f"Retired {device_id}. Run `carehub broker sync` to revoke its login.")


@device_admin_app.command("test-mode")
def device_test_mode(
    device: Annotated[str | None, typer.Option("--device", help="One device.")] = None,
    home: Annotated[str | None, typer.Option("--home", help="All devices of a home.")] = None,
    minutes: Annotated[int, typer.Option(min=0, help="How long; 0 ends test mode.")] = 30,
    actor: ActorOption = DEFAULT_ACTOR,
) -> None:
    """Put a device or a home in test mode (nothing escalates); it ends by itself."""
    settings = _settings()
    now = SystemClock().now()
    until = now + timedelta(minutes=minutes) if minutes else None
    devices = _run(
        settings,
        lambda s: [
            d.id
            for d in admin.set_test_mode(
                s, device_id=device, home_id=home, until=until, now=now, actor=actor
            )
        ],
    )
    when = f"until {until.isoformat(timespec='seconds')}" if until else "ended"
    console.print(f"Test mode {when} for: {', '.join(devices) or 'no devices'}")


@device_admin_app.command("history")
def device_history(device_id: str) -> None:
    """Everything done to a device, oldest first."""
    settings = _settings()
    table = Table("at", "action", "actor", "home", "detail")
    with _session(settings) as session:
        for entry in admin.history(session, device_id):
            detail = {k: v for k, v in entry.detail.items() if v is not None}
            table.add_row(
                entry.at.isoformat(timespec="seconds"),
                entry.action,
                entry.actor,
                entry.home_id or "",
                json.dumps(detail, ensure_ascii=False),
            )
    console.print(table)


def _print_walk(status: admin.WalkTestStatus) -> None:
    state = "finished" if status.finished_at else f"test mode until {status.test_mode_until:%H:%M}"
    console.print(
        f"Walk test {status.id} of home {status.home_id}, started by {status.started_by} "
        f"at {status.started_at.isoformat(timespec='seconds')} ({state})"
    )
    table = Table("device", "type", "room", "checklist", "done")
    for device in status.devices:
        items = ", ".join(f"{'✓' if i.done else '○'} {i.label}" for i in device.items)
        table.add_row(
            device.device_id,
            device.type.value,
            device.room or "",
            items,
            "yes" if device.complete else "no",
        )
    console.print(table, highlight=False)
    console.print("All devices passed." if status.complete else "Not all items are ticked yet.")


@walk_app.command("start")
def walk_start(
    home: Annotated[str, typer.Option("--home")],
    minutes: Annotated[int, typer.Option(min=1, help="Test mode length.")] = 30,
    actor: ActorOption = DEFAULT_ACTOR,
) -> None:
    """Start a walk test: the home's devices go into test mode."""
    settings = _settings()
    walk_id = _run(
        settings,
        lambda s: (
            admin.start_walk_test(
                s, home_id=home, now=SystemClock().now(), actor=actor, minutes=minutes
            ).id
        ),
    )
    status = _run(settings, lambda s: admin.walk_test_status(s, walk_id))
    _print_walk(status)


@walk_app.command("status")
def walk_status(home: Annotated[str, typer.Option("--home")]) -> None:
    """What each device of the home has shown since the walk test started."""
    settings = _settings()
    status = _run(settings, lambda s: admin.walk_test_status(s, admin.latest_walk_test(s, home).id))
    _print_walk(status)


@walk_app.command("finish")
def walk_finish(
    home: Annotated[str, typer.Option("--home")],
    actor: ActorOption = DEFAULT_ACTOR,
) -> None:
    """Record the walk test's results and end the home's test mode."""
    settings = _settings()
    status = _run(
        settings,
        lambda s: admin.finish_walk_test(
            s, admin.latest_walk_test(s, home).id, now=SystemClock().now(), actor=actor
        ),
    )
    _print_walk(status)


@broker_app.command("sync")
def broker_sync(
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="Mosquitto's file (default: broker.password_file)."),
    ] = None,
    acl_file: Annotated[
        Path | None,
        typer.Option("--acl-file", help="Mosquitto's ACL file (default: broker.acl_file)."),
    ] = None,
    pid: Annotated[
        int | None, typer.Option("--pid", help="Mosquitto's pid: SIGHUP it to reload.")
    ] = None,
) -> None:
    """Write the password file and ACL from the database (and reload the broker)."""
    settings = _settings()
    password_file = password_file or settings.broker.password_file
    acl_file = acl_file or settings.broker.acl_file
    if password_file is None or acl_file is None:
        err.print(
            "[red]where are Mosquitto's files? Give --password-file and --acl-file, or set "
            "broker.password_file and broker.acl_file in the settings.[/red]"
        )
        raise typer.Exit(2)
    reload: int | PidFileReload | None = pid
    if reload is None and settings.broker.pid_file is not None:
        reload = PidFileReload(settings.broker.pid_file)
    try:
        with _session(settings) as session:
            result = sync_broker_auth(
                session, BrokerAuthPaths(password_file, acl_file), reload, mqtt=settings.mqtt
            )
    except (BrokerAuthError, ProcessLookupError, PermissionError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(
        f"Wrote {password_file} and {acl_file}: the hub, {result.bridges} bridge(s), "
        f"{result.devices} device(s)."
        + (" Broker reloaded." if result.reloaded else " Reload the broker (SIGHUP).")
    )


@broker_app.command("bridge-user")
def broker_bridge_user(
    username: Annotated[str, typer.Argument(help="The Zigbee2MQTT bridge's MQTT username.")],
    actor: ActorOption = DEFAULT_ACTOR,
) -> None:
    """Issue (or renew) the login of a Zigbee2MQTT bridge; prints the password once."""
    settings = _settings()
    name, password = _run(
        settings,
        lambda s: admin.issue_bridge_account(s, username, now=SystemClock().now(), actor=actor),
    )
    console.print(
        f"Zigbee2MQTT bridge login, shown once:\n  username: {name}\n  password: {password}\n"
        "Put them in Zigbee2MQTT's configuration.yaml (mqtt.user, mqtt.password) and run "
        "`carehub broker sync`.",
        highlight=False,
    )


@broker_app.command("pki")
def broker_pki(
    out: Annotated[Path, typer.Option("--out", help="Directory for the keys and certificates.")],
    hostname: Annotated[
        list[str], typer.Option("--hostname", help="Broker host name (repeatable).")
    ],
    ip: Annotated[
        list[str] | None, typer.Option("--ip", help="Broker IP address (default 127.0.0.1).")
    ] = None,
    client: Annotated[
        list[str] | None, typer.Option("--client", help="Also issue a client certificate.")
    ] = None,
) -> None:
    """Create a CA and the broker's certificate (and client certificates) for TLS on 8883."""
    from hub import pki

    now = SystemClock().now()
    if (out / pki.CA_KEY).exists():
        ca = pki.load_ca(out)
        console.print(f"Using the CA in {out}.")
    else:
        ca = pki.create_ca(now=now)
        pki.write_issued(ca, out, "ca")
    broker = pki.create_broker_cert(ca, now=now, hostnames=hostname, ips=ip)
    pki.write_issued(broker, out, "broker")
    for name in client or []:
        pki.write_issued(pki.create_client_cert(ca, name, now=now), out, f"client-{name}")
    console.print(f"Wrote the CA, the broker's certificate and key to {out} (docs/broker-tls.md).")
