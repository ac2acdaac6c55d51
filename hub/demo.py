"""``carehub demo``: broker, database, demo municipality, hub, portal and simulated homes."""

from __future__ import annotations

import logging
import secrets
import threading
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from rich.console import Console
from rich.panel import Panel

from hub.broker import BrokerError, ensure_broker
from hub.config import Settings
from hub.runtime import HubRuntime
from hub.seed import DEMO_ACCOUNTS, DEMO_PASSWORD, DemoDevice, DemoHome, seed_demo
from hub.storage import migrate
from hub.storage.crypto import load_or_create_demo_keys
from hub.storage.db import transaction
from hub.storage.models import Protocol
from simulators.homes import HomeFleet
from simulators.twilio_sim import SimConfig
from simulators.twilio_sim import create_app as create_sim_app

logger = logging.getLogger(__name__)

DEMO_SEED = 2026
DEMO_HOMES = 3
DEMO_EVENTS_PER_MIN = 30.0
VAR = Path("var")


def demo_homes(fleet: HomeFleet) -> list[DemoHome]:
    """The simulated fleet's homes and devices, as rows for the demo municipality."""
    homes = []
    for home in fleet.homes:
        devices = tuple(
            DemoDevice(
                id=d.identifier,
                type=d.type,
                protocol=d.protocol,
                room=None if d.room in (None, "pendant") else d.room,
                z2m_name=d.identifier if d.protocol is Protocol.ZIGBEE2MQTT else None,
            )
            for d in home.devices
        )
        homes.append(DemoHome(home.home_id, devices))
    return homes


def _start_sms_gateway(settings: Settings, console: Console) -> uvicorn.Server | None:
    """The Twilio-compatible simulator on its demo port, unless SMS go elsewhere."""
    base = settings.twilio.api_base_url
    if not base:
        return None
    url = urlsplit(base)
    if url.hostname not in ("127.0.0.1", "localhost") or url.port is None:
        return None
    config = SimConfig(
        account_sid=settings.twilio.account_sid,
        auth_token=settings.twilio.auth_token,
        inbound_sms_url=f"{settings.portal.public_base_url.rstrip('/')}/api/v1/twilio/sms",
        host=url.hostname,
        port=url.port,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_sim_app(config), host=url.hostname, port=url.port, log_level="warning"
        )
    )
    threading.Thread(target=server.run, name="sms-gateway", daemon=True).start()
    console.print(f"SMS gateway simulator on {base}")
    return server


def demo_settings(settings: Settings) -> Settings:
    """Demo mode: no TOTP, cookies over plain http on 127.0.0.1, keys kept under var/."""
    security = settings.security.model_copy(
        update={
            "require_totp": False,
            "secure_cookies": False,
            "data_keys": settings.security.data_keys
            or load_or_create_demo_keys(VAR / "data-keys.json"),
            "link_secret": settings.security.link_secret or _demo_link_secret(),
        }
    )
    return settings.model_copy(update={"demo_mode": True, "security": security})


def _demo_link_secret() -> str:
    path = VAR / "link-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def run_demo(settings: Settings, *, simulate: bool, allow_install: bool, console: Console) -> None:
    """Run everything until Ctrl-C, then stop it all cleanly."""
    VAR.mkdir(exist_ok=True)
    settings = demo_settings(settings)
    try:
        broker = ensure_broker(
            settings.mqtt.host,
            settings.mqtt.port,
            VAR / "mosquitto",
            allow_install=allow_install,
        )
    except BrokerError as exc:
        console.print(f"[red]No MQTT broker:[/red] {exc}")
        raise SystemExit(1) from exc
    fleet_thread: threading.Thread | None = None
    fleet = HomeFleet(
        DEMO_HOMES, rate_per_min=DEMO_EVENTS_PER_MIN, seed=DEMO_SEED, home_prefix="h-orje"
    )
    runtime: HubRuntime | None = None
    sms_gateway = _start_sms_gateway(settings, console)
    try:
        migrate.upgrade(settings.database.url)
        runtime = HubRuntime(settings)
        with transaction(runtime.session_factory) as session:
            created = seed_demo(session, runtime.clock, demo_homes(fleet))
        runtime.start()
        if not runtime.ingest.wait_connected(15):
            console.print("[yellow]The hub has not connected to the broker yet; it keeps trying.")
        if simulate:
            fleet_thread = threading.Thread(
                target=fleet.run,
                kwargs={
                    "duration_s": 365 * 24 * 3600.0,
                    "host": broker.host,
                    "port": broker.port,
                    "heartbeat_s": 60.0,
                },
                name="demo-fleet",
                daemon=True,
            )
            fleet_thread.start()
        first = fleet.homes[0].fall_sensor
        protocol_flag = " --protocol zigbee2mqtt" if first.protocol is Protocol.ZIGBEE2MQTT else ""
        accounts = "\n".join(
            f"  {name:<12} ({role.value}) password: {DEMO_PASSWORD}"
            for name, role, _display, _phone in DEMO_ACCOUNTS
        )
        console.print(
            Panel.fit(
                f"Care portal   {settings.portal.public_base_url}\n"
                f"MQTT broker   {broker.host}:{broker.port} ({broker.kind.value})\n"
                f"SMS simulator {settings.twilio.api_base_url} (sent messages: "
                f"{settings.twilio.api_base_url}/_sim/messages)\n"
                f"Database      {settings.database.url}"
                f"{' (demo municipality created)' if created else ''}\n"
                f"Simulated     {DEMO_HOMES} homes in Ørje, about {DEMO_EVENTS_PER_MIN:.0f} "
                f"events/min{'' if simulate else ' (off)'}\n\n"
                f"Demo accounts (demo mode only):\n{accounts}\n\n"
                "Fire an event yourself, e.g.:\n"
                f"  .venv/bin/carehub-sim event fall --home {first.home_id} "
                f"--device {first.identifier}{protocol_flag}\n"
                "Stop with Ctrl-C.",
                title="CareHub demo",
            )
        )
        runtime.serve_portal()
    except KeyboardInterrupt:
        pass
    finally:
        console.print("Stopping the demo…")
        fleet.stop()
        if fleet_thread is not None:
            fleet_thread.join(10)
        if runtime is not None:
            runtime.stop()
        broker.close()
        if sms_gateway is not None:
            sms_gateway.should_exit = True
        console.print("CareHub demo stopped.")
