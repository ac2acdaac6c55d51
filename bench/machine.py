"""How fast the machine is at the moment: a yardstick taken beside each benchmark run.

Machines of our kind differ in speed, and the same code's results spread widely from run to run
(fall → SMS p99 from 64 to 750 ms within an hour, docs/benchmarks.md, stop 18). Runs record
these readings right before their timed part, not only once per benchmark, so that a run can be
told apart from a slow machine: one-core Python speed and the disk's flush time (both databases
wait for a flush at every commit). In stop 18 they stayed steady while p99 spread: the spread
was the hub's, not the machine's."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import timeit


def python_loop_ms() -> float:
    """One-core Python speed: the best of five timings of ``sum(range(1_000_000))``, in ms
    (lower is faster). Machines of our kind have shown 12–18 ms (docs/benchmarks.md, "Machine")."""
    timer = timeit.Timer("sum(range(1_000_000))")
    return min(timer.repeat(repeat=5, number=4)) / 4 * 1000


def fsync_ms(directory: str | None = None, count: int = 50) -> float:
    """The disk's commit speed: the median time of ``fsync`` after a 4 KiB write, in ms, in a
    scratch file of ``directory`` (the temporary directory by default, where the benchmarks'
    databases live). SQLite and PostgreSQL wait for one such flush per commit."""
    with tempfile.NamedTemporaryFile(dir=directory) as scratch:
        times = []
        for _ in range(count):
            scratch.write(b"\0" * 4096)
            scratch.flush()
            t0 = time.perf_counter()
            os.fsync(scratch.fileno())
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)
