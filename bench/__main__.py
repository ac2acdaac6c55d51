"""Run the benchmarks, print a table, and write JSON under bench/results/."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.ingest import as_json, run_ingest_bench
from hub.clock import SystemClock

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description="CareHub benchmarks")
    parser.add_argument("--burst", type=int, default=20_000, help="events in the burst run")
    parser.add_argument("--rate", type=float, default=1000.0, help="steady offered events/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the steady run")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    pg = (
        None
        if args.no_postgres
        else os.environ.get(
            "TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        )
    )
    console = Console()
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
    ceiling = {r.mode: r for r in runs if r.target == "paho ceiling"}
    for r in runs:
        if r.target != "paho ceiling" and r.mode == "burst":
            share = r.throughput / ceiling["burst"].throughput * 100
            console.print(f"{r.target}: {share:.0f} % of the ceiling (goal ≥ 50 %)")
        if r.target != "paho ceiling" and r.mode == "steady":
            console.print(
                f"{r.target}: p99 {r.p99_ms:.1f} ms at {r.offered_rate:.0f}/s (goal ≤ 20 ms)"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = SystemClock().now().strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"ingest-{stamp}.json"
    out.write_text(
        json.dumps(
            {"machine": platform.platform(), "cpus": os.cpu_count(), "runs": as_json(runs)},
            indent=2,
        )
    )
    console.print(f"written {out}")


if __name__ == "__main__":
    main()
