"""The ``carehub`` command line: run, demo, db, user and device commands."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from hub.cli_devices import broker_app, device_admin_app
from hub.cli_security import keys_app, retention_app
from hub.clock import SystemClock
from hub.config import Settings, load_settings
from hub.passwords import hash_password
from hub.storage import migrate
from hub.storage.crypto import configure_keys
from hub.storage.db import make_engine, make_sessionmaker, transaction
from hub.storage.models import Device, DiscoveredDevice, StaffRole, StaffUser

app = typer.Typer(
    pretty_exceptions_show_locals=False,
    help="CareHub: the welfare-technology home-care and alarm hub.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
user_app = typer.Typer(help="Portal accounts.", no_args_is_help=True)
device_app = typer.Typer(help="Installer's device commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(device_app, name="device")
device_app.add_typer(device_admin_app)
app.add_typer(broker_app, name="broker")
app.add_typer(keys_app, name="keys")
app.add_typer(retention_app, name="retention")

console = Console()
err = Console(stderr=True)


class _State:
    config: Path | None = None


def _settings(*, configure: bool = True) -> Settings:
    try:
        settings = load_settings(_State.config)
    except Exception as exc:
        err.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if configure:  # personal fields are written encrypted
        configure_keys(settings.security.data_keys)
    return settings


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.callback()
def main(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML configuration file.")
    ] = None,
) -> None:
    """CareHub command line."""
    _State.config = config


def _require_schema(settings: Settings) -> None:
    head = migrate.head_revision()
    current = migrate.current(settings.database.url)
    if current != head:
        err.print(
            f"[red]The database is at revision {current or 'none'}, not {head}.[/red] "
            "Run: carehub db upgrade"
        )
        raise typer.Exit(2)


@app.command()
def run(
    portal: Annotated[bool, typer.Option(help="Serve the care portal too.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the hub (MQTT ingest) and the care portal until Ctrl-C or SIGTERM."""
    from hub.runtime import HubRuntime

    _setup_logging(verbose)
    settings = _settings()
    _require_schema(settings)
    runtime = HubRuntime(settings)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    runtime.start()
    console.print(
        f"CareHub hub running: MQTT {settings.mqtt.host}:{settings.mqtt.port}, "
        f"database {settings.database.url}"
    )
    try:
        if portal:
            console.print(f"Care portal at {settings.portal.public_base_url}")
            runtime.serve_portal(stop)
        else:
            signal.signal(signal.SIGINT, _on_signal)
            stop.wait()
    finally:
        runtime.stop()
        console.print("CareHub stopped.")


@app.command()
def demo(
    simulate: Annotated[bool, typer.Option(help="Run simulated homes.")] = True,
    install: Annotated[
        bool, typer.Option(help="Install Mosquitto with apt-get when missing (as root).")
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    speed: Annotated[
        float,
        typer.Option(
            min=1.0,
            max=3600.0,
            help="Simulated seconds per real second (30: a day in 48 min; 1: real time).",
        ),
    ] = 30.0,
) -> None:
    """Run the whole system on this machine with embedded defaults (accounts use password demo)."""
    from hub.demo import run_demo

    _setup_logging(verbose)
    run_demo(
        _settings(configure=False),
        simulate=simulate,
        allow_install=install,
        console=console,
        speed=speed,
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply the schema migrations (Alembic) to the configured database."""
    settings = _settings()
    migrate.upgrade(settings.database.url, revision)
    console.print(f"Database at {migrate.current(settings.database.url)}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the configured database."""
    settings = _settings()
    console.print(migrate.current(settings.database.url) or "empty (no revision)")


@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[StaffRole, typer.Option(help="nurse, coordinator, installer or admin")],
    name: Annotated[str, typer.Option(help="Display name.")],
    phone: Annotated[
        str | None, typer.Option(help="Mobile number in E.164, e.g. +4790000000")
    ] = None,
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)
    ] = "",
) -> None:
    """Add a portal account."""
    settings = _settings()
    _require_schema(settings)
    engine = make_engine(settings.database.url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            if session.scalar(select(StaffUser).where(StaffUser.username == username)):
                err.print(f"[red]A user named {username!r} exists already.[/red]")
                raise typer.Exit(1)
            session.add(
                StaffUser(
                    username=username,
                    display_name=name,
                    role=role,
                    password_hash=hash_password(password),
                    phone=phone,
                    active=True,
                    created_at=SystemClock().now(),
                )
            )
    finally:
        engine.dispose()
    console.print(f"Added {role.value} {username}.")


@device_app.command("list")
def device_list(home: Annotated[str | None, typer.Option(help="Only this home.")] = None) -> None:
    """List registered devices with online state, battery and last seen."""
    settings = _settings()
    _require_schema(settings)
    engine = make_engine(settings.database.url)
    table = Table("device", "home", "type", "protocol", "online", "battery", "last seen")
    try:
        with transaction(make_sessionmaker(engine)) as session:
            query = select(Device).where(Device.retired_at.is_(None)).order_by(Device.id)
            if home:
                query = query.where(Device.home_id == home)
            for d in session.scalars(query):
                online = {True: "online", False: "OFFLINE", None: "unknown"}[d.online]
                table.add_row(
                    d.id,
                    d.home_id,
                    d.type.value,
                    d.protocol.value,
                    online,
                    "" if d.battery is None else f"{d.battery} %",
                    d.last_seen_at.isoformat(timespec="seconds") if d.last_seen_at else "never",
                )
    finally:
        engine.dispose()
    console.print(table)


@device_app.command("discovered")
def device_discovered() -> None:
    """List devices that talk to the hub but are not registered (waiting to be paired)."""
    settings = _settings()
    _require_schema(settings)
    engine = make_engine(settings.database.url)
    table = Table("protocol", "identifier", "home (from topic)", "messages", "last seen", "last")
    try:
        with transaction(make_sessionmaker(engine)) as session:
            for d in session.scalars(select(DiscoveredDevice).order_by(DiscoveredDevice.id)):
                table.add_row(
                    d.protocol.value,
                    d.identifier,
                    d.home_hint or "",
                    str(d.message_count),
                    d.last_seen_at.isoformat(timespec="seconds"),
                    d.last_kind or "",
                )
    finally:
        engine.dispose()
    console.print(table)


if __name__ == "__main__":
    app()
