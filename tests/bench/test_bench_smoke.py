"""The benchmarks of `make bench` still run, at a size that takes seconds.

These check that each measurement sees everything it sent (every event committed, every fall's
SMS at the simulator, every step counted), not how fast: timings belong to `make bench`. A
benchmark that breaks (the ingest benchmark's processor lost the worker's `decoded` argument
in stop 14 and retried its first batch for ever) now fails here, not at the next `make bench`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.escalation import measure_fall_sms, measure_steps
from bench.ingest import measure_hub
from hub.broker import MosquittoProcess

# each measurement starts a HubRuntime, which configures the process's data keys
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("restore_key_ring")]


@pytest.mark.broker
def test_the_ingest_benchmark_commits_every_event_it_sends(
    mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    run = measure_hub(
        mosquitto, f"sqlite:///{tmp_path / 'ingest.db'}", "sqlite", "steady", 200.0, 200, tmp_path
    )
    assert (run.events, run.received) == (200, 200)


@pytest.mark.broker
def test_the_escalation_benchmark_sees_every_falls_sms_at_the_simulator_process(
    mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    run = measure_fall_sms(
        mosquitto,
        f"sqlite:///{tmp_path / 'sms.db'}",
        "sqlite",
        homes=10,
        rate=100.0,
        seconds=2.0,
        falls=5,
        work=tmp_path,
    )
    assert (run.falls, run.sms) == (5, 5)
    assert run.load_committed == run.load_events == 200
    assert run.p50_ms > 0 and run.alarm_p50_ms > 0 and run.to_sms_p50_ms > 0
    assert run.python_loop_ms > 0 and run.fsync_ms > 0  # the machine's speed at the run
    assert 0 < run.worker_busy <= 1  # a share of the load's wall time


def test_the_step_benchmark_counts_every_step_once(db_url: str) -> None:
    run, _profile = measure_steps(db_url, "bench", 60)
    assert (run.steps, run.queued, run.commits) == (60, 120, 1)
    assert run.python_loop_ms > 0 and run.fsync_ms > 0
