"""Ingest benchmark: events committed per second and publish→committed latency, against a bare
paho subscriber measured in the same run as the ceiling."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.publisher import device_ids
from devices.events import DecodeResult
from hub.broker import MosquittoProcess
from hub.clock import SystemClock
from hub.config import DatabaseSettings, MqttSettings, Settings
from hub.ingest.pipeline import BatchOutcome, InboundMessage, IngestProcessor
from hub.runtime import HubRuntime
from hub.storage import migrate
from hub.storage.models import Device, DeviceType, Home, Protocol, Zone

CLOCK = SystemClock()


@dataclass
class Run:
    """One measured run."""

    target: str  # "paho ceiling", "hub sqlite", "hub postgresql"
    mode: str  # "burst" or "steady"
    offered_rate: float  # events/s offered (0 = as fast as possible)
    events: int
    received: int
    throughput: float  # events/s, first send to last receive/commit
    p50_ms: float
    p99_ms: float
    max_ms: float


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def publish(
    port: int, count: int, rate: float, devices: int, homes: int, out: Path, *extra: str
) -> None:
    """Run the publisher subprocess to the end (``extra``: more publisher arguments)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.publisher",
            "--port",
            str(port),
            "--count",
            str(count),
            "--rate",
            str(rate),
            "--devices",
            str(devices),
            "--homes",
            str(homes),
            "--out",
            str(out),
            *extra,
        ],
        check=True,
    )


def _summarise(
    target: str, mode: str, rate: float, count: int, sent: dict[str, float], done: dict[str, float]
) -> Run:
    lat = [(done[k] - sent[k]) * 1000 for k in sent if k in done]
    first = min(sent.values())
    last = max(done.values()) if done else first
    return Run(
        target=target,
        mode=mode,
        offered_rate=rate,
        events=count,
        received=len(done),
        throughput=len(done) / (last - first) if last > first else 0.0,
        p50_ms=percentile(lat, 0.50),
        p99_ms=percentile(lat, 0.99),
        max_ms=max(lat) if lat else float("nan"),
    )


def wait_for(done: dict[str, float], count: int, timeout: float) -> None:
    """Wait (bounded) until ``done`` holds ``count`` entries."""
    deadline = CLOCK.monotonic() + timeout
    pause = threading.Event()
    while len(done) < count and CLOCK.monotonic() < deadline:
        pause.wait(0.05)


def measure_ceiling(
    broker: MosquittoProcess, mode: str, rate: float, count: int, work: Path
) -> Run:
    """A bare paho subscriber (auto-ack, no database): the most any subscriber can take."""
    done: dict[str, float] = {}
    connected = threading.Event()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-ceiling-{mode}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        seq = json.loads(msg.payload)["seq"]
        done[f"{parts[3]}/{seq}"] = CLOCK.monotonic()

    def on_connect(c: mqtt.Client, *_a: Any) -> None:
        c.subscribe("carehub/v1/+/+/+", qos=1)
        connected.set()

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.loop_start()
    connected.wait(10)
    out = work / f"ceiling-{mode}.json"
    publish(broker.port, count, rate, 100, 10, out)
    wait_for(done, count, 60)
    client.disconnect()
    client.loop_stop()
    sent = json.loads(out.read_text())
    return _summarise("paho ceiling", mode, rate, count, sent, done)


class _TimedProcessor(IngestProcessor):
    """Records when each event's batch committed."""

    done: dict[str, float]

    def process(
        self, messages: Sequence[InboundMessage], decoded: Sequence[DecodeResult] | None = None
    ) -> BatchOutcome:
        outcome = super().process(messages, decoded)
        now = CLOCK.monotonic()
        for event in outcome.stored:
            if event.kind != "status":
                self.done[f"{event.device_id}/{event.seq}"] = now
        return outcome


def _seed(runtime: HubRuntime, devices: int, homes: int) -> None:
    now = CLOCK.now()
    with runtime.session_factory() as session, session.begin():
        zone = Zone(name="Bench", created_at=now)
        session.add(zone)
        session.flush()
        for h in range(homes):
            session.add(Home(id=f"bh-{h:04d}", zone_id=zone.id, created_at=now))
        session.flush()
        for home_id, device_id in device_ids(devices, homes):
            session.add(
                Device(
                    id=device_id,
                    home_id=home_id,
                    type=DeviceType.MOTION_SENSOR,
                    protocol=Protocol.NATIVE,
                    supervision_interval_s=3600,
                    created_at=now,
                )
            )


def measure_hub(
    broker: MosquittoProcess,
    db_url: str,
    label: str,
    mode: str,
    rate: float,
    count: int,
    work: Path,
) -> Run:
    """The real hub: decode, store once, commit, then acknowledge."""
    migrate.upgrade(db_url)
    settings = Settings(
        mqtt=MqttSettings(
            host=broker.host, port=broker.port, client_id=f"bench-hub-{label}-{mode}"
        ),
        database=DatabaseSettings(url=db_url),
    )
    runtime = HubRuntime(settings)
    _seed(runtime, 100, 10)
    # the hub's own sinks (the rules): the real ingest path, not ingest alone
    sinks = [runtime.rules] if runtime.rules is not None else []
    timed = _TimedProcessor(settings, runtime.session_factory, sinks)
    timed.done = {}
    runtime.processor = timed
    runtime.ingest._processor = timed
    runtime.start()
    runtime.ingest.wait_connected(10)
    out = work / f"hub-{label}-{mode}.json"
    publish(broker.port, count, rate, 100, 10, out)
    wait_for(timed.done, count, 120)
    runtime.stop()
    sent = json.loads(out.read_text())
    return _summarise(f"hub {label}", mode, rate, count, sent, timed.done)


def run_ingest_bench(
    *, burst: int, steady_rate: float, steady_seconds: float, pg_admin_url: str | None
) -> list[Run]:
    """Burst throughput and steady-load latency for the ceiling, SQLite and PostgreSQL."""
    runs: list[Run] = []
    steady = int(steady_rate * steady_seconds)
    with tempfile.TemporaryDirectory(prefix="carehub-bench-") as tmp:
        work = Path(tmp)
        with MosquittoProcess(work / "broker") as broker:
            runs.append(measure_ceiling(broker, "burst", 0, burst, work))
            runs.append(measure_ceiling(broker, "steady", steady_rate, steady, work))
            for mode, rate, count in (("burst", 0.0, burst), ("steady", steady_rate, steady)):
                runs.append(
                    measure_hub(
                        broker, f"sqlite:///{work}/{mode}.db", "sqlite", mode, rate, count, work
                    )
                )
            if pg_admin_url:
                from bench.pg import temporary_database

                for mode, rate, count in (("burst", 0.0, burst), ("steady", steady_rate, steady)):
                    with temporary_database(pg_admin_url) as url:
                        runs.append(measure_hub(broker, url, "postgresql", mode, rate, count, work))
    return runs


def as_json(runs: list[Run]) -> list[dict[str, Any]]:
    """The runs as JSON-ready dicts."""
    return [asdict(r) for r in runs]
