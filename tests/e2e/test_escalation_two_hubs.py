"""Two hub processes against one PostgreSQL database: every escalation step fires exactly once.

Real processes (``carehub run --no-portal``), real time, one Mosquitto, one PostgreSQL database,
the Twilio simulator. Hub A opens the alarms (step 1 runs in that commit); hub B starts after
them, so both know when steps 2 and 3 fall due and both tick at the same moments, claiming due
escalations with ``FOR UPDATE SKIP LOCKED``. Nobody may get a step's SMS twice.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from hub.broker import MosquittoProcess
from hub.clock import SystemClock
from hub.escalation.policy import Policy, Step, Target, policy_steps_json
from hub.storage.db import make_engine, make_sessionmaker
from hub.storage.models import (
    Device,
    DeviceType,
    EscalationPolicy,
    Home,
    Notification,
    Protocol,
    Resident,
    Room,
)
from tests.e2e.escalation_harness import KRISTIN, NINA, OLA, Server, seed_kari
from tests.e2e.test_escalation_sigkill import SID, TOKEN, Hub, sms_to
from tests.e2e.test_escalation_sigkill import sim as sim
from tests.mqtt_helpers import Publisher, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.broker, pytest.mark.postgres]

STEP_S = 3
HOMES = 12


def _seed(db_url: str) -> list[str]:
    """Kari's zone and staff, plus more homes with a fall sensor; one fast policy for all."""
    clock = SystemClock()
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    seed_kari(factory, clock.now(), relatives=False)
    fast = Policy(
        name="fast",
        repeat_rounds=1,
        steps=[
            Step(wait_s=STEP_S, targets=[Target(kind="on_duty")], channels=["sms"]),
            Step(wait_s=STEP_S, targets=[Target(kind="zone_staff")], channels=["sms"]),
            Step(wait_s=STEP_S, targets=[Target(kind="on_duty")], channels=["sms"]),
        ],
    )
    homes = ["h-kari"]
    with factory() as s, s.begin():
        kari = s.scalars(select(Resident)).one()
        for n in range(1, HOMES):
            home = Home(id=f"h-{n:02d}", zone_id=kari.zone_id, created_at=clock.now())
            room = Room(home=home, name="Stue", kind="living")
            s.add_all(
                [
                    home,
                    room,
                    Resident(
                        home=home,
                        zone_id=kari.zone_id,
                        label=f"Beboer {n}",
                        full_name=f"Beboer {n}",
                        created_at=clock.now(),
                    ),
                    Device(
                        id=f"fall-{n:02d}",
                        home=home,
                        room=room,
                        type=DeviceType.FALL_SENSOR,
                        protocol=Protocol.NATIVE,
                        supervision_interval_s=3600,
                        created_at=clock.now(),
                    ),
                ]
            )
            homes.append(home.id)
        row = EscalationPolicy(
            name="fast", repeat_rounds=1, steps=policy_steps_json(fast), created_at=clock.now()
        )
        s.add(row)
        s.flush()
        s.execute(update(Resident).values(escalation_policy_id=row.id))
    engine.dispose()
    return homes


@pytest.fixture
def hubs(
    mosquitto: MosquittoProcess, pg_url: str, sim: Server, tmp_path: Path
) -> Iterator[list[Hub]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CAREHUB_")}
    base.update(
        CAREHUB_MQTT__HOST=mosquitto.host,
        CAREHUB_MQTT__PORT=str(mosquitto.port),
        CAREHUB_DATABASE__URL=pg_url,
        CAREHUB_TWILIO__API_BASE_URL=sim.url,
        CAREHUB_TWILIO__ACCOUNT_SID=SID,
        CAREHUB_TWILIO__AUTH_TOKEN=TOKEN,
        CAREHUB_PORTAL__PUBLIC_BASE_URL="http://127.0.0.1:9",
    )
    made = [
        Hub({**base, "CAREHUB_MQTT__CLIENT_ID": f"carehub-{name}"}, tmp_path / f"hub-{name}.log")
        for name in ("a", "b")
    ]
    yield made
    for hub in made:
        hub.stop()


def test_two_hub_processes_fire_every_step_exactly_once(
    mosquitto: MosquittoProcess, pg_url: str, sim: Server, hubs: list[Hub]
) -> None:
    homes = _seed(pg_url)
    hub_a, hub_b = hubs
    clock = SystemClock()
    device = Publisher(mosquitto.host, mosquitto.port, client_id="fall-sensors")
    try:
        hub_a.start()
        wait_until(lambda: hub_a.connections() >= 1, timeout=30)
        for home in homes:
            sensor = "fall" if home == "h-kari" else f"fall-{home[2:]}"
            device.publish(
                f"carehub/v1/{home}/{sensor}/event",
                {"type": "fall", "ts": clock.now().isoformat(), "seq": 1},
            )
        # step 1 of every alarm reached Nina (in the commit that opened it)
        wait_until(lambda: Counter(to for to, _ in sms_to(sim))[NINA] >= HOMES, timeout=20)
        hub_b.start()
        wait_until(lambda: hub_b.connections() >= 1, timeout=30)
        # steps 2 (Nina, Ola, Kristin) and 3 (Nina) for every alarm
        wait_until(
            lambda: Counter(to for to, _ in sms_to(sim))[NINA] >= 3 * HOMES,
            timeout=3 * STEP_S + 40,
        )
        wait_until(lambda: Counter(to for to, _ in sms_to(sim))[KRISTIN] >= HOMES, timeout=10)
    finally:
        device.close()

    received = Counter(to for to, _ in sms_to(sim))
    assert received == {NINA: 3 * HOMES, OLA: HOMES, KRISTIN: HOMES}
    engine = make_engine(pg_url)
    with make_sessionmaker(engine)() as s:
        fired = Counter(
            s.execute(
                select(
                    Notification.alarm_id, Notification.step_index, Notification.recipient_id
                ).where(Notification.purpose == "alarm", Notification.channel == "sms")
            ).all()
        )
    engine.dispose()
    assert len(fired) == HOMES * 5 and max(fired.values()) == 1, "a step fired twice"
    # steps 2 and 3 came from the two hubs' ticks (which hub ran which is up to the race; in
    # the runs we looked at, each hub ran one of them)
    by_tick = [
        sum(int(m) for m in re.findall(r"escalation: (\d+) step\(s\) run", hub.log.read_text()))
        for hub in hubs
    ]
    assert sum(by_tick) == 2 * HOMES, by_tick
