"""The scenario corpus: every file is valid and covers what issue 7 asks; the fast subset runs
through the real hub (Mosquitto, SQLite, one on PostgreSQL) in ``make test``; the runner fails
a scenario whose expectation is wrong; the full corpus runs with ``-m scenarios``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.broker import MosquittoProcess
from hub.rules.model import AlarmType
from simulators import cli
from simulators.life.faults import FAULT_TYPES
from simulators.life.incidents import INCIDENT_TYPES
from simulators.life.runner import SeenAlarm, match_alarms, run_scenario, total_line
from simulators.life.scenario import (
    SCENARIO_DIR,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
    scenario_files,
)

FILES = scenario_files()
CORPUS = {path.name: load_scenario(path) for path in FILES}
FAST = sorted(name for name, s in CORPUS.items() if s.fast)
SLOW = sorted(name for name, s in CORPUS.items() if not s.fast)


# --- the files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_scenario_file_is_valid(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.simulation().publishes, "a scenario sends something"


def test_the_corpus_covers_every_incident_and_fault_and_twenty_normal_weeks() -> None:
    assert len(CORPUS) >= 30
    incidents = {i.type for s in CORPUS.values() for i in s.incidents}
    faults = {f.type for s in CORPUS.values() for f in s.faults}
    assert incidents == set(INCIDENT_TYPES)
    assert faults == set(FAULT_TYPES)
    weeks = [
        s
        for s in CORPUS.values()
        if s.duration >= timedelta(days=7) and not s.incidents and not s.faults
    ]
    assert len({r.id for s in weeks for r in s.residents}) >= 20
    assert all(s.expect == [] for s in weeks), "a normal week raises no alarm"


def test_the_fast_subset_covers_every_incident_type() -> None:
    fast = [CORPUS[name] for name in FAST]
    assert {i.type for s in fast for i in s.incidents} == set(INCIDENT_TYPES)


def test_a_bad_scenario_names_the_file_and_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "description: x\nstart: 2026-01-05T12:00\nduration: 1h\n"
        "residents: [{id: kari}]\n"
        "incidents: [{id: f, type: fall, resident: kari, at: 2026-01-05T12:30, lie_for: soon}]\n"
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(bad)
    assert str(bad) in str(caught.value)
    assert "incidents.0.fall.lie_for" in str(caught.value)
    assert "45m, 2h" in str(caught.value)


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("incidents: [{id: f, type: fall, resident: per, at: 2026-01-05T12:30}]", "no resident"),
        ("incidents: [{id: f, type: fall, resident: kari, at: 2026-01-06T12:30}]", "outside"),
        ("incidents: [{id: m, type: maybe_fall, resident: kari, at: 2026-01-05T12:30}]", "radar"),
        ("expect: [{type: fall, resident: kari, severity: red, after: nope, within: 1m}]", "nope"),
        ("expect: [{type: flood, resident: kari, severity: red, after: x, within: 1m}]", "type"),
    ],
)
def test_inconsistent_scenarios_are_refused(snippet: str, message: str) -> None:
    text = (
        "description: x\nstart: 2026-01-05T12:00\nduration: 2h\nresidents: [{id: kari}]\n"
        + snippet
        + "\n"
    )
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(text, "inline.yaml")


def test_unknown_rule_overrides_are_refused_like_the_hub_refuses_them() -> None:
    text = (
        "description: x\nstart: 2026-01-05T12:00\nduration: 2h\n"
        "residents: [{id: kari, rules: {inactivity_hours: 3}}]\n"
    )
    with pytest.raises(ScenarioError, match=r"residents\.0\.rules"):
        parse_scenario(text, "inline.yaml")


# --- matching (pure) ----------------------------------------------------------------------------


def test_matching_reports_found_missed_and_unexpected() -> None:
    scenario = CORPUS["fall-native.yaml"]
    fall_at = scenario.anchor("fall")
    fall = SeenAlarm("fall", "red", "open", "kari", "fall", fall_at + timedelta(seconds=1))
    late = SeenAlarm("fall", "red", "open", "kari", "fall", fall_at + timedelta(minutes=5))
    ok = match_alarms(scenario, [fall])
    assert ok.ok and [f.delay for f in ok.found] == [timedelta(seconds=1)]
    wrong = match_alarms(scenario, [late])
    assert not wrong.ok
    assert [e.type.value for e in wrong.missed] == ["fall"]
    assert wrong.unexpected == [late]


# --- through the real hub -----------------------------------------------------------------------


def _run(scenario: Scenario, broker: MosquittoProcess, url: str) -> None:
    result = run_scenario(scenario, broker=broker, db_url=url)
    assert result.ok, (
        f"{scenario.name}: missed {[e.describe() for e in result.missed]},"
        f" unexpected {[a.describe() for a in result.unexpected]}"
    )
    assert len(result.found) == len(scenario.expect)


pytestmark = pytest.mark.broker


@pytest.mark.parametrize("name", FAST)
def test_fast_scenario_on_sqlite(name: str, mosquitto: MosquittoProcess, sqlite_url: str) -> None:
    _run(CORPUS[name], mosquitto, sqlite_url)


@pytest.mark.postgres
@pytest.mark.parametrize("name", ["broker-restart.yaml", "night-wandering.yaml"])
def test_scenario_on_postgres(name: str, mosquitto: MosquittoProcess, pg_url: str) -> None:
    _run(CORPUS[name], mosquitto, pg_url)


def test_the_runner_fails_a_scenario_whose_expectation_is_wrong(
    mosquitto: MosquittoProcess, sqlite_url: str
) -> None:
    """Kari falls; the file claims a button alarm: the fall is unexpected, the button missed."""
    scenario = CORPUS["fall-native.yaml"]
    wrong = scenario.model_copy(
        update={
            "expect": [scenario.expect[0].model_copy(update={"type": AlarmType.BUTTON})],
        }
    )
    result = run_scenario(wrong, broker=mosquitto, db_url=sqlite_url)
    assert not result.ok
    assert [e.describe() for e in result.missed] == ["button red for kari"]
    assert [(a.type, a.severity, a.resident) for a in result.unexpected] == [
        ("fall", "red", "kari")
    ]
    assert "1 failed" in total_line([result]) and "missed 1, unexpected 1" in total_line([result])


def test_the_command_exits_non_zero_when_a_scenario_fails(tmp_path: Path) -> None:
    """A quiet scenario that claims an alarm nobody raises: the command prints MISSED, exits 1."""
    source = (SCENARIO_DIR / "maybe-fall-only.yaml").read_text()
    wrong = tmp_path / "claims-a-fall.yaml"
    wrong.write_text(
        source.replace(
            "expect: []",
            "expect:\n  - {type: fall, resident: ola, severity: red, after: stoop, within: 1m}",
        )
    )
    result = CliRunner().invoke(cli.app, ["scenarios", "run", str(wrong)])
    assert result.exit_code == 1, result.output
    assert "MISSED" in result.output
    assert "TOTAL 1 scenarios: 0 passed, 1 failed" in result.output


# --- the whole corpus (make scenarios, or pytest -m scenarios) ----------------------------------


@pytest.mark.scenarios
@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_corpus_scenario(name: str, mosquitto: MosquittoProcess, sqlite_url: str) -> None:
    _run(CORPUS[name], mosquitto, sqlite_url)
