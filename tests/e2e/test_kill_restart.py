"""A care story about crashes: the hub is SIGKILLed twice while 1,000 events stream in.

Every event must end up stored exactly once: the broker keeps what the hub had not acknowledged,
the restarted hub takes it again, and de-duplication absorbs what was committed but not yet acked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.broker import MosquittoProcess
from hub.storage.db import make_engine, make_sessionmaker
from hub.storage.models import SensorEvent
from tests.factories import add_home
from tests.mqtt_helpers import Publisher, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]

REPO = Path(__file__).resolve().parents[2]
TOTAL = 1000


class HubProcess:
    """``carehub run --no-portal`` as a child process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
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
def hub_process(mosquitto: MosquittoProcess, db_url: str, tmp_path: Path) -> Iterator[HubProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREHUB_")}
    env.update(
        CAREHUB_MQTT__HOST=mosquitto.host,
        CAREHUB_MQTT__PORT=str(mosquitto.port),
        CAREHUB_MQTT__CLIENT_ID="carehub-kill-test",
        CAREHUB_DATABASE__URL=db_url,
        # nothing listens there: the escalation's SMS attempts fail fast and are retried
        CAREHUB_TWILIO__API_BASE_URL="http://127.0.0.1:9",
    )
    hub = HubProcess(env, tmp_path / "hub.log")
    yield hub
    hub.stop()


def test_sigkill_mid_stream_stores_every_event_exactly_once(
    mosquitto: MosquittoProcess, db_url: str, hub_process: HubProcess, tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    add_home(factory)

    def stored() -> int:
        with factory() as session:
            return int(
                session.scalar(
                    select(func.count()).select_from(SensorEvent).where(SensorEvent.kind == "fall")
                )
                or 0
            )

    # The hub's first start creates its persistent session; from then on the broker queues for it.
    publisher = Publisher(mosquitto.host, mosquitto.port, client_id="kill-test-device")
    hub_process.start()
    publisher.publish("carehub/v1/h1/d-fall/status", {"online": True})
    # ready once the broker granted the subscriptions: before that, on the session's first
    # connection, a published event would not be routed to the hub at all
    wait_until(lambda: "the hub is ready" in hub_process.log.read_text(), timeout=30)

    t0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
    done = threading.Event()
    pace = threading.Event()

    def stream() -> None:
        for seq in range(1, TOTAL + 1):
            ts = (t0 + timedelta(seconds=seq)).isoformat()
            publisher.publish("carehub/v1/h1/d-fall/event", {"type": "fall", "ts": ts, "seq": seq})
            pace.wait(0.002)  # about 400 events/s, so the kills land mid-stream
        done.set()

    streamer = threading.Thread(target=stream)
    streamer.start()
    kills = 0
    for threshold in (200, 550):
        wait_until(lambda t=threshold: stored() >= t, timeout=60)  # type: ignore[misc]
        hub_process.kill()
        kills += 1
        hub_process.start()
    streamer.join(120)
    assert done.is_set(), "the device could not publish all events"
    publisher.close()

    wait_until(lambda: stored() >= TOTAL, timeout=60)
    with factory() as session:
        seqs = session.scalars(select(SensorEvent.seq).where(SensorEvent.kind == "fall")).all()
    engine.dispose()
    assert kills == 2
    assert len(seqs) == TOTAL, f"{len(seqs) - len(set(seqs))} events stored twice"
    assert sorted(seqs) == list(range(1, TOTAL + 1))
