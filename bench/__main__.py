"""Run the benchmarks (all, ingest, rules, escalation, fleet); print tables, write JSON results."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.escalation import SmsRun, StepRun, run_escalation_bench
from bench.escalation import as_json as escalation_json
from bench.fleet import QUICK_RAMP as FLEET_QUICK_RAMP
from bench.fleet import QUICK_SIZES as FLEET_QUICK_SIZES
from bench.fleet import RAMP as FLEET_RAMP
from bench.fleet import SIZES as FLEET_SIZES
from bench.fleet import as_json as fleet_json
from bench.fleet import run_fleet_bench
from bench.fleet import summary as fleet_summary
from bench.fleet import table as fleet_table
from bench.ingest import Run, run_ingest_bench
from bench.ingest import as_json as ingest_json
from bench.machine import fsync_ms, python_loop_ms
from bench.rules import LatencyRun, ScaleRun, run_rules_bench
from bench.rules import as_json as rules_json
from hub.clock import SystemClock

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
FALL_SMS_GOAL_MS = 50.0  # issue 4: fall → first SMS p99
STEP_LAG_GOAL_MS = 1000.0  # issue 4: step-firing lag p99 with 10,000 alarms escalating at once


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="CareHub benchmarks")
    parser.add_argument(
        "suite", nargs="?", choices=("ingest", "rules", "escalation", "fleet", "all"), default="all"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (small counts)")
    parser.add_argument("--burst", type=int, default=20_000, help="ingest: events in the burst")
    parser.add_argument("--rate", type=float, default=1000.0, help="steady offered events/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the steady runs")
    parser.add_argument("--homes", type=int, default=500, help="rules: homes under the load")
    parser.add_argument("--falls", type=int, default=100, help="rules: falls during the load")
    parser.add_argument("--residents", type=int, default=10_000, help="rules: armed residents")
    parser.add_argument(
        "--alarms", type=int, default=10_000, help="escalation: alarms with a step due at once"
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=120.0,
        help="escalation: seconds over which the spread run's steps fall due",
    )
    parser.add_argument(
        "--sms-runs",
        type=int,
        default=3,
        help="escalation: fall → first SMS runs per database (its p99 varies from run to run)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="escalation: cProfile the step tick (inflates its times)",
    )
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.burst, args.seconds = min(args.burst, 2_000), min(args.seconds, 2.0)
        args.homes, args.falls = min(args.homes, 100), min(args.falls, 20)
        args.residents, args.alarms = min(args.residents, 500), min(args.alarms, 500)
        args.spread = min(args.spread, 10.0)
        args.sms_runs = 1
    return args


def _reachable(url: str, console: Console) -> bool:
    """Whether PostgreSQL answers at ``url`` (the PostgreSQL runs are skipped if not)."""
    from sqlalchemy import create_engine, text

    from hub.storage.db import normalise_url

    engine = create_engine(normalise_url(url), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception as exc:  # any failure means: no PostgreSQL runs
        console.print(f"[yellow]PostgreSQL not reachable, skipped: {exc.__class__.__name__}")
        return False
    finally:
        engine.dispose()


def _write(name: str, payload: dict[str, Any], console: Console) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = SystemClock().now().strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{name}-{stamp}.json"
    machine = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python_loop_ms": round(python_loop_ms(), 2),
        "fsync_ms": round(fsync_ms(), 3),
    }
    out.write_text(json.dumps({**machine, **payload}, indent=2))
    console.print(f"written {out}")


def _ingest(args: argparse.Namespace, pg: str | None, console: Console) -> None:
    console.print("[bold]Ingest benchmark[/bold] (one Mosquitto, publisher in its own process)")
    runs = run_ingest_bench(
        burst=args.burst, steady_rate=args.rate, steady_seconds=args.seconds, pg_admin_url=pg
    )
    table = Table(
        "target", "mode", "offered/s", "events", "stored", "events/s", "p50 ms", "p99 ms", "max ms"
    )
    for r in runs:
        table.add_row(
            r.target,
            r.mode,
            "max" if r.offered_rate == 0 else f"{r.offered_rate:.0f}",
            str(r.events),
            str(r.received),
            f"{r.throughput:,.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.1f}",
        )
    console.print(table)
    _ingest_goals(runs, console)
    _write("ingest", {"args": vars(args), "runs": ingest_json(runs)}, console)


def _ingest_goals(runs: list[Run], console: Console) -> None:
    ceiling = {r.mode: r for r in runs if r.target == "paho ceiling"}
    for r in runs:
        if r.target != "paho ceiling" and r.mode == "burst":
            share = r.throughput / ceiling["burst"].throughput * 100
            console.print(f"{r.target}: {share:.0f} % of the ceiling (goal ≥ 50 %)")
        if r.target != "paho ceiling" and r.mode == "steady":
            console.print(
                f"{r.target}: p99 {r.p99_ms:.1f} ms at {r.offered_rate:.0f}/s (goal ≤ 20 ms)"
            )


def _rules(args: argparse.Namespace, pg: str | None, console: Console) -> None:
    console.print("[bold]Rules benchmark[/bold] (fall → alarm under load; armed residents)")
    latency, scale = run_rules_bench(
        homes=args.homes,
        rate=args.rate,
        seconds=args.seconds,
        falls=args.falls,
        residents=args.residents,
        pg_admin_url=pg,
        log=lambda line: console.print(f"[dim]{line}[/dim]"),
    )
    console.print(_latency_table(latency))
    for r in latency:
        ok = "ok" if r.fall_alarms == r.falls else "MISSING ALARMS"
        console.print(
            f"{r.target}: fall → alarm committed p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms at "
            f"{r.load_rate:.0f}/s ({r.fall_alarms}/{r.falls} alarms, {ok}; no goal in issue 3, "
            f"issue 4 wants fall → first SMS p99 ≤ {FALL_SMS_GOAL_MS:.0f} ms)"
        )
    console.print(_scale_table(scale))
    _write("rules", {"args": vars(args), **rules_json(latency, scale)}, console)


def _latency_table(runs: list[LatencyRun]) -> Table:
    table = Table(
        "target",
        "homes",
        "load/s",
        "load stored",
        "load ev/s",
        "load p50",
        "load p99",
        "falls",
        "alarms",
        "fall p50 ms",
        "fall p99 ms",
        "fall max ms",
        title="fall → alarm committed, with background load",
    )
    for r in runs:
        table.add_row(
            r.target,
            str(r.homes),
            f"{r.load_rate:.0f}",
            f"{r.load_committed}/{r.load_events}",
            f"{r.load_throughput:,.0f}",
            f"{r.load_p50_ms:.1f}",
            f"{r.load_p99_ms:.1f}",
            str(r.falls),
            str(r.fall_alarms),
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.1f}",
        )
    return table


def _scale_table(runs: list[ScaleRun]) -> Table:
    table = Table(
        "target",
        "residents",
        "arm s",
        "arm ms/res",
        "armed",
        "fire s",
        "fire ms/res",
        "alarms",
        "RSS KiB/1k",
        "heap KiB/1k",
        "peak RSS MiB",
        "state B/res",
        title="residents with their timers armed (door at night), then fired by run_due",
    )
    for r in runs:
        table.add_row(
            r.target,
            f"{r.residents:,}",
            f"{r.arm_s:.2f}",
            f"{r.arm_ms_per_resident:.2f}",
            f"{r.armed:,}",
            f"{r.fire_s:.2f}",
            f"{r.fire_ms_per_resident:.2f}",
            f"{r.alarms:,}",
            f"{r.rss_growth_kib_per_1000:,.0f}",
            f"{r.heap_peak_kib_per_1000:,.0f}",
            f"{r.peak_rss_mib:,.0f}",
            f"{r.state_bytes_per_resident:,.0f}",
        )
    return table


def _escalation(args: argparse.Namespace, pg: str | None, console: Console) -> None:
    console.print(
        "[bold]Escalation benchmark[/bold] (fall → first SMS at the simulator under load; "
        "steps due at once)"
    )
    load_before = os.getloadavg()  # other work on the machine shows in these numbers
    sms, steps, profiles = run_escalation_bench(
        homes=args.homes,
        rate=args.rate,
        seconds=args.seconds,
        falls=args.falls,
        alarms=args.alarms,
        pg_admin_url=pg,
        profile=args.profile,
        spread_s=args.spread,
        sms_runs=args.sms_runs,
        log=lambda line: console.print(f"[dim]{line}[/dim]"),
    )
    console.print(_sms_table(sms))
    by_target: dict[str, list[SmsRun]] = {}
    for r in sms:
        by_target.setdefault(r.target, []).append(r)
    for target, runs in by_target.items():
        p99s = sorted(r.p99_ms for r in runs)
        median = statistics.median(p99s)
        all_sent = all(r.sms == r.falls for r in runs)
        ok = "met" if median <= FALL_SMS_GOAL_MS and all_sent else "MISSED"
        console.print(
            f"{target}: fall → first SMS p99 {', '.join(f'{p:.1f}' for p in p99s)} ms in "
            f"{len(runs)} run(s) at {runs[0].load_rate:.0f}/s (median {median:.1f}), every fall "
            f"got its SMS: {all_sent} (goal p99 ≤ {FALL_SMS_GOAL_MS:.0f} ms, median of the runs: "
            f"{ok})"
        )
    console.print(_step_table(steps))
    for s in steps:
        ok = "met" if s.p99_lag_ms <= STEP_LAG_GOAL_MS else "MISSED"
        when = "spread" if "due over" in s.target else "due at once"
        console.print(
            f"{s.target}: {s.steps:,} steps {when}, lag p99 {s.p99_lag_ms:,.0f} ms "
            f"(goal ≤ {STEP_LAG_GOAL_MS:,.0f} ms: {ok})"
        )
    for label, text in profiles.items():
        console.print(f"[bold]cProfile of the tick on {label}[/bold] (cumulative)")
        console.print(text, markup=False, highlight=False)
    loadavg = {"before": load_before, "after": os.getloadavg()}
    console.print(f"load average (1, 5, 15 min) before {load_before}, after {loadavg['after']}")
    payload = {"args": vars(args), "loadavg": loadavg, **escalation_json(sms, steps)}
    _write("escalation", payload, console)


def _sms_table(runs: list[SmsRun]) -> Table:
    table = Table(
        "target",
        "homes",
        "load/s",
        "load stored",
        "load ev/s",
        "load p99 ms",
        "falls",
        "SMS",
        "p50 ms",
        "p99 ms",
        "max ms",
        "→ alarm p50/p99",
        "alarm → SMS p50/p99",
        "worker busy",
        "yardstick / fsync ms",
        title="fall published → first SMS request received by the simulator, with background load",
    )
    for r in runs:
        table.add_row(
            r.target,
            str(r.homes),
            f"{r.load_rate:.0f}",
            f"{r.load_committed}/{r.load_events}",
            f"{r.load_throughput:,.0f}",
            f"{r.load_p99_ms:,.1f}",
            str(r.falls),
            str(r.sms),
            f"{r.p50_ms:,.1f}",
            f"{r.p99_ms:,.1f}",
            f"{r.max_ms:,.1f}",
            f"{r.alarm_p50_ms:,.0f} / {r.alarm_p99_ms:,.0f}",
            f"{r.to_sms_p50_ms:,.0f} / {r.to_sms_p99_ms:,.0f}",
            f"{r.worker_busy:.0%}",
            f"{r.python_loop_ms:.1f} / {r.fsync_ms:.2f}",
        )
    return table


def _step_table(runs: list[StepRun]) -> Table:
    table = Table(
        "target",
        "alarms",
        "seed s",
        "steps",
        "queued",
        "commits",
        "tick s",
        "steps/s",
        "lag p50 ms",
        "lag p99 ms",
        "lag max ms",
        "yardstick / fsync ms",
        title="one EscalationEngine.tick() with every alarm's step due at the same moment",
    )
    for r in runs:
        table.add_row(
            r.target,
            f"{r.alarms:,}",
            f"{r.seed_s:.1f}",
            f"{r.steps:,}",
            f"{r.queued:,}",
            str(r.commits),
            f"{r.tick_s:.2f}",
            f"{r.steps_per_s:,.0f}",
            f"{r.p50_lag_ms:,.0f}",
            f"{r.p99_lag_ms:,.0f}",
            f"{r.max_lag_ms:,.0f}",
            f"{r.python_loop_ms:.1f} / {r.fsync_ms:.2f}",
        )
    return table


def _fleet(args: argparse.Namespace, pg: str | None, console: Console) -> None:
    console.print(
        "[bold]Fleet benchmark[/bold] (simulators.fleet at the morning peak → the real hub; "
        "incident → alarm and → first SMS; ramp until it falls behind)"
    )
    load_before = os.getloadavg()
    quick = args.quick  # 200 and 1,000 homes for 6 s, ramp to 2,000
    result = run_fleet_bench(
        sizes=FLEET_QUICK_SIZES if quick else FLEET_SIZES,
        ramp=FLEET_QUICK_RAMP if quick else FLEET_RAMP,
        seconds=6.0 if quick else 30.0,
        ramp_seconds=6.0 if quick else 20.0,
        incidents=5 if quick else 20,
        pg_admin_url=pg,
        log=lambda line: console.print(f"[dim]{line}[/dim]"),
    )
    console.print(fleet_table(result))
    for line in fleet_summary(result):
        console.print(line)
    loadavg = {"before": load_before, "after": os.getloadavg()}
    console.print(f"load average (1, 5, 15 min) before {load_before}, after {loadavg['after']}")
    _write("fleet", {"args": vars(args), "loadavg": loadavg, **fleet_json(result)}, console)


def main() -> None:
    args = _args()
    pg: str | None = None if args.no_postgres else os.environ.get("TEST_PG_ADMIN_URL", DEFAULT_PG)
    console = Console()
    if not console.is_terminal:
        console = Console(width=170)
    # the hub logs every alarm it opens; thousands of them would bury the tables
    logging.getLogger("hub").setLevel(logging.ERROR)
    # "job skipped: maximum number of running instances reached": a wake-up that arrives while a
    # tick runs; the tick's own reschedule at its end re-arms the timer, so nothing is lost
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    if pg is not None and not _reachable(pg, console):
        pg = None
    console.print(
        f"machine: {os.cpu_count()} CPUs, Python yardstick {python_loop_ms():.1f} ms "
        f"(sum(range(1_000_000)), lower is faster), fsync {fsync_ms():.2f} ms (4 KiB, median); "
        "results files record both, the escalation runs each at its start"
    )
    if args.suite in ("ingest", "all"):
        _ingest(args, pg, console)
    if args.suite in ("rules", "all"):
        _rules(args, pg, console)
    if args.suite in ("escalation", "all"):
        _escalation(args, pg, console)
    if args.suite in ("fleet", "all"):
        _fleet(args, pg, console)


if __name__ == "__main__":
    main()
