"""The hub process is SIGKILLed between two escalation steps; the restarted one fires the next
step on time, and nobody is messaged twice for the same step.

Real processes and real time: ``carehub run`` as a child process (system clock, APScheduler),
Mosquitto, the database, and the Twilio simulator. The policy is shortened (steps 4 s apart) so
the story takes seconds; waits are bounded, and the only timing assertion is that the next step
did not come early.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from hub.broker import MosquittoProcess, free_port
from hub.clock import SystemClock
from hub.escalation.policy import Policy, Step, Target, policy_steps_json
from hub.storage.db import make_engine, make_sessionmaker
from hub.storage.models import EscalationPolicy, Notification, Resident
from simulators.twilio_sim import SimConfig, create_app
from tests.e2e.escalation_harness import KRISTIN, NINA, OLA, SID, TOKEN, Server, seed_kari
from tests.mqtt_helpers import Publisher, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]

REPO = Path(__file__).resolve().parents[2]
STEP_S = 4


class Hub:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "run", "--no-portal"],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def connections(self) -> int:
        """Connections whose subscriptions the broker granted (the hub's readiness)."""
        return self.log.read_text(errors="replace").count("the hub is ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def sim() -> Iterator[Server]:
    port = free_port()
    server = Server(
        create_app(
            SimConfig(
                account_sid=SID,
                auth_token=TOKEN,
                inbound_sms_url="http://127.0.0.1:9/none",
                port=port,
            )
        ),
        port,
    )
    server.start()
    yield server
    server.stop()


def sms_to(sim: Server) -> list[tuple[str, str]]:
    records = httpx.get(f"{sim.url}/_sim/messages", timeout=5).json()
    records = records if isinstance(records, list) else records.get("messages", [])
    return [
        (r["to"], r.get("body") or "")
        for r in records
        if r["kind"] == "sms" and str(r.get("direction", "")).startswith("outbound")
    ]


def test_sigkill_between_two_steps(
    mosquitto: MosquittoProcess, db_url: str, sim: Server, tmp_path: Path
) -> None:
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
        ],
    )
    with factory() as s, s.begin():
        row = EscalationPolicy(
            name="fast", repeat_rounds=1, steps=policy_steps_json(fast), created_at=clock.now()
        )
        s.add(row)
        s.flush()
        s.execute(update(Resident).values(escalation_policy_id=row.id))

    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREHUB_")}
    env.update(
        CAREHUB_MQTT__HOST=mosquitto.host,
        CAREHUB_MQTT__PORT=str(mosquitto.port),
        CAREHUB_MQTT__CLIENT_ID="carehub-sigkill",
        CAREHUB_DATABASE__URL=db_url,
        CAREHUB_TWILIO__API_BASE_URL=sim.url,
        CAREHUB_TWILIO__ACCOUNT_SID=SID,
        CAREHUB_TWILIO__AUTH_TOKEN=TOKEN,
        CAREHUB_PORTAL__PUBLIC_BASE_URL="http://127.0.0.1:9",
    )
    hub = Hub(env, tmp_path / "hub.log")
    device = Publisher(mosquitto.host, mosquitto.port, client_id="kari-fall-sensor")
    try:
        hub.start()
        wait_until(lambda: hub.connections() >= 1, timeout=30)
        device.publish(
            "carehub/v1/h-kari/fall/event",
            {"type": "fall", "ts": clock.now().isoformat(), "seq": 1},
        )
        wait_until(lambda: any(to == NINA for to, _ in sms_to(sim)), timeout=15)
        step1_seen = clock.monotonic()
        hub.kill()  # between step 1 and step 2
        hub.start()
        wait_until(lambda: hub.connections() >= 2, timeout=30)
        wait_until(
            lambda: {OLA, KRISTIN} <= {to for to, _ in sms_to(sim)},
            timeout=STEP_S + 20,
        )
        step2_seen = clock.monotonic()
    finally:
        device.close()
        hub.stop()

    received = Counter(to for to, _ in sms_to(sim))
    # step 1 reached Nina, step 2 reached the whole zone (Nina again, Ola, Kristin): once each
    assert received == {NINA: 2, OLA: 1, KRISTIN: 1}
    assert step2_seen - step1_seen >= STEP_S - 1.0, "step 2 fired early"
    with factory() as s:
        steps = Counter(
            s.execute(
                select(Notification.step_index, Notification.to_number).where(
                    Notification.purpose == "alarm", Notification.channel == "sms"
                )
            ).all()
        )
    engine.dispose()
    assert max(steps.values()) == 1
