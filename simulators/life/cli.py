"""``carehub-sim scenarios``: validate and replay scenario files through the real hub."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from hub.broker import find_mosquitto
from simulators.life.runner import (
    ScenarioResult,
    own_broker,
    postgres_databases,
    print_results,
    run_scenario,
    scenario_table,
    sqlite_databases,
)
from simulators.life.scenario import Scenario, ScenarioError, load_scenario, scenario_files

scenarios_app = typer.Typer(
    name="scenarios",
    help="Scenario files (scenarios/*.yaml): residents, incidents, faults and expected alarms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

FilesArg = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="[FILES]...",
        help="Scenario files or directories (default: the whole scenarios/ corpus).",
    ),
]


def _load(files: list[Path] | None, fast: bool) -> list[Scenario]:
    paths = scenario_files(files or [])
    if not paths:
        _fail("no scenario files found")
    scenarios: list[Scenario] = []
    errors: list[str] = []
    for path in paths:
        try:
            scenarios.append(load_scenario(path))
        except ScenarioError as exc:
            errors.append(str(exc))
    if errors:
        _fail("\n".join(errors), code=2)
    return [s for s in scenarios if s.fast] if fast else scenarios


@scenarios_app.command("check")
def check(files: FilesArg = None) -> None:
    """Validate scenario files against the schema (no broker, no database)."""
    scenarios = _load(files, fast=False)
    Console(highlight=False).print(f"{len(scenarios)} scenario files are valid")


@scenarios_app.command("run")
def run(
    files: FilesArg = None,
    fast: Annotated[
        bool, typer.Option("--fast", help="Only the scenarios marked fast: true.")
    ] = False,
    db_url: Annotated[
        str | None,
        typer.Option(
            "--db-url",
            help="A PostgreSQL server URL on which a fresh database is created for each"
            " scenario (and dropped after). Default: fresh SQLite files in a temporary directory.",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the hub's log (alarms opened...).")
    ] = False,
) -> None:
    """Replay scenarios through the real hub (own Mosquitto, fresh database, fake clock).

    Prints a table per scenario and the totals; exits 1 when any scenario fails.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(levelname)s %(name)s %(message)s",
    )
    scenarios = _load(files, fast)
    if not scenarios:
        _fail("no scenario selected (none is marked fast: true?)")
    if find_mosquitto() is None:
        _fail("Mosquitto is not installed (no `mosquitto` on PATH): run `make services`")
    if db_url is not None and not db_url.startswith("postgresql"):
        _fail("--db-url takes a PostgreSQL server URL; SQLite is the default")
    # wide enough for the tables when the output goes to a file or a CI log
    console = Console(highlight=False, width=max(Console().width, 140))
    results: list[ScenarioResult] = []
    with tempfile.TemporaryDirectory(prefix="carehub-scenarios-") as tmp:
        workdir = Path(tmp)
        databases = postgres_databases(db_url) if db_url else sqlite_databases(workdir)
        with databases as make_database:
            for scenario in scenarios:
                with own_broker(workdir) as broker, make_database(scenario.name) as url:
                    try:
                        result = run_scenario(scenario, broker=broker, db_url=url)
                    except Exception as exc:  # reported as a failed scenario, the rest still run
                        logging.getLogger(__name__).exception("scenario %s", scenario.name)
                        result = _crashed(scenario, exc)
                results.append(result)
                console.print(scenario_table(result))
    print_results(console, results)
    if not all(r.ok for r in results):
        raise typer.Exit(code=1)


def _crashed(scenario: Scenario, exc: Exception) -> ScenarioResult:
    result = ScenarioResult(scenario.name, scenario.description, scenario.start, scenario.tz)
    result.error = f"{type(exc).__name__}: {exc}"
    return result


def _fail(message: str, code: int = 1) -> NoReturn:
    Console(stderr=True).print(f"error: {message}", style="bold red", markup=False, soft_wrap=True)
    raise typer.Exit(code=code)
