"""``carehub demo``: broker, database, demo municipality, hub, portal and simulated homes, on a
scaled clock (``--speed``) with incidents on a daily schedule (simulators/demo_day.py)."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import uvicorn
from rich.console import Console
from rich.panel import Panel
from sqlalchemy import func, select

from hub.broker import BrokerError, ensure_broker
from hub.clock import ScaledClock, SystemClock
from hub.config import Settings
from hub.runtime import HubRuntime
from hub.seed import (
    DEMO_ACCOUNTS,
    DEMO_PASSWORD,
    DEMO_RESIDENTS,
    DemoDevice,
    DemoHome,
    seed_demo,
)
from hub.storage import migrate
from hub.storage.crypto import load_or_create_demo_keys
from hub.storage.db import make_engine, make_sessionmaker, transaction
from hub.storage.models import Alarm, Protocol, Resident, SensorEvent
from simulators.demo_day import DAY_STARTS_AT, SCHEDULE, DemoDay, Incident, SimNurse
from simulators.homes import HomeFleet
from simulators.twilio_sim import SimConfig
from simulators.twilio_sim import create_app as create_sim_app

logger = logging.getLogger(__name__)

DEMO_SEED = 2026
DEMO_HOMES = 3
DEMO_EVENTS_PER_MIN = 30.0  # only builds the homes now; their life is simulators.demo_day
VAR = Path("var")
DEFAULT_SPEED = 30.0  # a simulated day in 48 minutes
NURSE_PHONE = next(phone for name, _r, _d, phone in DEMO_ACCOUNTS if name == "nurse")
# Ingrid (the third resident) is watched in window mode: up by 09:00, the "not up" incident.
NOT_UP_CONFIG = {
    "inactivity_window_enabled": True,
    "inactivity_window_start": "06:00",
    "inactivity_window_end": "09:00",
}


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


def start_sms_gateway(settings: Settings, console: Console) -> uvicorn.Server | None:
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


def demo_settings(settings: Settings, speed: float = 1.0) -> Settings:
    """Demo mode: no TOTP, cookies over plain http on 127.0.0.1, keys kept under var/.

    Portal sessions and relatives' links expire on the hub's clock: at ``speed`` their lifetime
    is stretched by the same factor, so that a visitor is not signed out every few minutes.
    """
    security = settings.security.model_copy(
        update={
            "require_totp": False,
            "secure_cookies": False,
            "session_ttl_s": int(settings.security.session_ttl_s * max(1.0, speed)),
            "relative_link_ttl_s": int(settings.security.relative_link_ttl_s * max(1.0, speed)),
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


def demo_start(settings: Settings, speed: float, real_now: datetime) -> datetime:
    """Where the demo's clock starts. At ``speed`` 1: now. Faster: the next 05:30 local after
    both now and the newest event or alarm already in the database (an earlier fast demo ran
    ahead of real time; time must never go backwards for the rules)."""
    if speed == 1:
        return real_now
    tz = ZoneInfo(settings.timezone)
    engine = make_engine(settings.database.url)
    try:
        with make_sessionmaker(engine)() as session:
            stored = [
                session.scalar(select(func.max(SensorEvent.received_at))),
                session.scalar(select(func.max(Alarm.opened_at))),
            ]
    finally:
        engine.dispose()
    latest = max([real_now, *(t for t in stored if t is not None)]).astimezone(tz)
    start = datetime.combine(latest.date(), DAY_STARTS_AT, tzinfo=tz)
    return start if start > latest else start + timedelta(days=1)


def _watch_not_up(runtime: HubRuntime) -> None:
    """The third demo resident gets the morning window (once; a coordinator may change it)."""
    with transaction(runtime.session_factory) as session:
        residents = list(session.scalars(select(Resident).order_by(Resident.id).limit(3)))
        if len(residents) == 3 and residents[2].rule_config is None:
            residents[2].rule_config = dict(NOT_UP_CONFIG)


@dataclass
class DemoRun:
    """The demo's running parts (the portal is served by the caller)."""

    runtime: HubRuntime
    clock: ScaledClock
    fleet: HomeFleet
    created: bool
    day: DemoDay | None = None
    nurse: SimNurse | None = None
    threads: list[threading.Thread] = field(default_factory=list)

    def stop(self) -> None:
        for part in (self.day, self.nurse):
            if part is not None:
                part.stop()
        for thread in self.threads:
            thread.join(10)
        self.runtime.stop()


def start_demo(
    settings: Settings,
    *,
    clock: ScaledClock,
    broker_host: str,
    broker_port: int,
    simulate: bool,
    tell: Callable[[str], None],
    schedule: tuple[Incident, ...] = SCHEDULE,
) -> DemoRun:
    """Migrate, seed, start the hub on ``clock``; with ``simulate`` the homes' day and the
    simulated nurse (she needs the SMS simulator at ``twilio.api_base_url``)."""
    since = clock.now()  # the homes' day starts here, however long seeding and connecting take
    migrate.upgrade(settings.database.url)
    # the devices stamp their events with the scaled clock
    fleet = HomeFleet(
        DEMO_HOMES,
        rate_per_min=DEMO_EVENTS_PER_MIN,
        seed=DEMO_SEED,
        home_prefix="h-orje",
        clock=clock,
        tz=ZoneInfo(settings.timezone),
    )
    runtime = HubRuntime(settings, clock=clock)
    with transaction(runtime.session_factory) as session:
        created = seed_demo(session, runtime.clock, demo_homes(fleet))
    _watch_not_up(runtime)
    run = DemoRun(runtime, clock, fleet, created)
    runtime.start()
    if not runtime.ingest.wait_connected(15):
        tell("The hub has not connected to the broker yet; it keeps trying.")
    if not simulate:
        return run
    labels = [person.label for person in DEMO_RESIDENTS]
    run.day = DemoDay(
        fleet.homes,
        clock,
        speed=clock.speed,
        seed=DEMO_SEED,
        labels=labels,
        tz=ZoneInfo(settings.timezone),
        tell=tell,
        schedule=schedule,
        since=since,
    )
    run.threads.append(
        threading.Thread(
            target=run.day.run,
            kwargs={"host": broker_host, "port": broker_port},
            name="demo-day",
            daemon=True,
        )
    )
    if settings.twilio.api_base_url:
        run.nurse = SimNurse(
            settings.twilio.api_base_url,
            NURSE_PHONE or "",
            clock,
            speed=clock.speed,
            plan=run.day.nurse_plan,
            tell=tell,
            tz=ZoneInfo(settings.timezone),
        )
        run.threads.append(threading.Thread(target=run.nurse.run, name="demo-nurse", daemon=True))
    for thread in run.threads:
        thread.start()
    return run


def schedule_text(schedule: tuple[Incident, ...], labels: list[str]) -> str:
    """The daily incidents, one line each, in the order of the day from 05:30."""

    def order(incident: Incident) -> tuple[bool, object]:
        return (incident.at < DAY_STARTS_AT, incident.at)

    return "\n".join(
        f"  {i.at.strftime('%H:%M')}  {labels[i.home].split(',')[0]}: {i.story}"
        for i in sorted(schedule, key=order)
    )


def run_demo(
    settings: Settings,
    *,
    simulate: bool,
    allow_install: bool,
    console: Console,
    speed: float = DEFAULT_SPEED,
) -> None:
    """Run everything until Ctrl-C, then stop it all cleanly."""
    if speed <= 0:
        raise ValueError("the speed must be positive")
    VAR.mkdir(exist_ok=True)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # the nurse polls the simulator and the timers fire often at speed: keep the console
        # for the story of the day (``--verbose`` shows everything)
        for chatty in ("httpx", "apscheduler", "twilio"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    settings = demo_settings(settings, speed)
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
    demo: DemoRun | None = None
    sms_gateway = start_sms_gateway(settings, console)
    try:
        migrate.upgrade(settings.database.url)
        start = demo_start(settings, speed, SystemClock().now())
        clock = ScaledClock(speed, start)
        demo = start_demo(
            settings,
            clock=clock,
            broker_host=broker.host,
            broker_port=broker.port,
            simulate=simulate,
            tell=lambda line: console.print(line, highlight=False, markup=False),
        )
        first = demo.fleet.homes[0].fall_sensor
        protocol_flag = " --protocol zigbee2mqtt" if first.protocol is Protocol.ZIGBEE2MQTT else ""
        accounts = "\n".join(
            f"  {name:<12} ({role.value}) password: {DEMO_PASSWORD}"
            for name, role, _display, _phone in DEMO_ACCOUNTS
        )
        tz = ZoneInfo(settings.timezone)
        day_real_min = 24 * 60 / speed
        labels = [person.label for person in DEMO_RESIDENTS]
        console.print(
            Panel.fit(
                f"Care portal   {settings.portal.public_base_url}\n"
                f"MQTT broker   {broker.host}:{broker.port} ({broker.kind.value})\n"
                f"SMS simulator {settings.twilio.api_base_url} (sent messages: "
                f"{settings.twilio.api_base_url}/_sim/messages)\n"
                f"Database      {settings.database.url}"
                f"{' (demo municipality created)' if demo.created else ''}\n"
                f"Speed         {speed:g}× real time: a simulated day takes "
                f"{day_real_min:.0f} min, an escalation wait of 2 min takes "
                f"{120 / speed:.1f} s\n"
                f"Clock starts  {start.astimezone(tz):%a %d %b %Y %H:%M} ({settings.timezone})\n"
                f"Simulated     {DEMO_HOMES} homes in Ørje: ordinary life"
                f"{'' if simulate else ' (off: --no-simulate)'}, and every day:\n"
                f"{schedule_text(SCHEDULE, labels) if simulate else '  (nothing)'}\n"
                "  Red alarms go to the nurse on duty by SMS (the simulator above); where the\n"
                "  nurse does not answer, take the alarm in the portal (nurse / demo).\n\n"
                f"Demo accounts (demo mode only):\n{accounts}\n\n"
                "Fire an event yourself, e.g.:\n"
                f"  .venv/bin/carehub-sim event fall --home {first.home_id} "
                f"--device {first.identifier}{protocol_flag}\n"
                "Stop with Ctrl-C.",
                title="CareHub demo",
            )
        )
        demo.runtime.serve_portal()
    except KeyboardInterrupt:
        pass
    finally:
        console.print("Stopping the demo…")
        if demo is not None:
            demo.stop()
        broker.close()
        if sms_gateway is not None:
            sms_gateway.should_exit = True
        console.print("CareHub demo stopped.")
