"""Scenario files (``scenarios/*.yaml``): who lives where, what happens, which alarms must follow.

The schema is pydantic with ``extra="forbid"``; :func:`load_scenario` turns every problem into a
:class:`ScenarioError` that names the file and the field. Times without a zone are local to the
scenario's ``timezone`` (default Europe/Oslo), as a care worker would write them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.rules.config import rule_config
from hub.rules.model import AlarmType
from hub.storage.models import AlarmStatus, Protocol, Severity
from simulators.life.faults import BrokerRestartFault, Fault
from simulators.life.incidents import Fall, Incident, MaybeFall
from simulators.life.model import DEVICE_KEYS, Duration, ResidentSpec, Routine
from simulators.life.simulation import Simulation, simulate

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the field."""


class ResidentEntry(BaseModel):
    """A resident of the scenario: ``id``, devices' ``protocol``, routine tweaks, rule overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    protocol: Protocol = Protocol.NATIVE
    routine: Routine = Routine()
    rules: dict[str, Any] = Field(default_factory=dict)

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: dict[str, Any]) -> dict[str, Any]:
        rule_config(value)  # unknown keys and bad values are refused like the hub does
        return value

    @property
    def spec(self) -> ResidentSpec:
        return ResidentSpec(key=self.id, protocol=self.protocol, routine=self.routine)


class Expectation(BaseModel):
    """An alarm that must appear: of ``type`` for ``resident`` with ``severity``, opened between
    ``not_before`` and ``within`` after the incident or fault named by ``after``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: AlarmType
    resident: str
    severity: Severity
    after: str
    within: Duration
    not_before: Duration = timedelta(0)
    device: str | None = None
    status: AlarmStatus | None = None

    @model_validator(mode="after")
    def _window(self) -> Expectation:
        if self.not_before > self.within:
            raise ValueError("not_before must not be after within")
        if self.device is not None and self.device not in DEVICE_KEYS:
            raise ValueError(f"device {self.device!r} is not one of {sorted(DEVICE_KEYS)}")
        return self

    def describe(self) -> str:
        what = f"{self.type.value} {self.severity.value} for {self.resident}"
        if self.device:
            what += f" ({self.device})"
        if self.status:
            what += f", {self.status.value}"
        return what


class Scenario(BaseModel):
    """One scenario file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    description: str
    fast: bool = False
    seed: int = 1
    timezone: str = "Europe/Oslo"
    start: datetime
    duration: Duration
    residents: list[ResidentEntry] = Field(min_length=1)
    incidents: list[Incident] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _local_times(cls, data: Any) -> Any:
        """Give zone-less times (``start``, every ``at``) the scenario's time zone."""
        if not isinstance(data, dict):
            return data
        try:
            tz = ZoneInfo(str(data.get("timezone", "Europe/Oslo")))
        except (ZoneInfoNotFoundError, ValueError):
            return data  # the field validator reports it
        data = dict(data)
        data["start"] = _localise(data.get("start"), tz)
        for section in ("incidents", "faults"):
            items = data.get(section)
            if isinstance(items, list):
                data[section] = [
                    {**item, "at": _localise(item.get("at"), tz)}
                    if isinstance(item, dict)
                    else item
                    for item in items
                ]
        return data

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs a time zone")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        residents = {r.id: r for r in self.residents}
        if len(residents) != len(self.residents):
            raise ValueError("resident ids must be unique")
        ids = [i.id for i in self.incidents] + [f.id for f in self.faults]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"incident and fault ids must be unique: {', '.join(duplicates)}")
        for where, items in (("incidents", self.incidents), ("faults", self.faults)):
            for n, item in enumerate(items):
                who = getattr(item, "resident", None)
                if not isinstance(item, BrokerRestartFault) and who not in residents:
                    raise ValueError(f"{where}.{n} ({item.id}): no resident {who!r}")
                if not self.start <= item.at < self.end:
                    raise ValueError(f"{where}.{n} ({item.id}): at {item.at} is outside the period")
                if (
                    isinstance(item, MaybeFall | Fall)
                    and (isinstance(item, MaybeFall) or item.maybe_fall_first)
                    and residents[item.resident].protocol is not Protocol.ZIGBEE2MQTT
                ):
                    raise ValueError(
                        f"{where}.{n} ({item.id}): maybe_fall comes from a Zigbee2MQTT radar;"
                        f" give resident {item.resident!r} protocol: zigbee2mqtt"
                    )
        for n, expected in enumerate(self.expect):
            if expected.resident not in residents:
                raise ValueError(f"expect.{n}: no resident {expected.resident!r}")
            if expected.after not in ids:
                raise ValueError(f"expect.{n}: after names no incident or fault {expected.after!r}")
        return self

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def anchor(self, name: str) -> datetime:
        """The time of the incident or fault named ``name``."""
        for item in [*self.incidents, *self.faults]:
            if item.id == name:
                return item.at
        raise KeyError(name)

    def simulation(self) -> Simulation:
        """The messages this scenario's homes send (pure; the runner replays them)."""
        return simulate(
            [r.spec for r in self.residents],
            self.start,
            self.end,
            seed=self.seed,
            incidents=self.incidents,
            faults=self.faults,
            tz=self.tz,
        )


def _localise(value: Any, tz: ZoneInfo) -> Any:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return value  # pydantic names the field and says why
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=tz)
    return value


class _NoTimestampLoader(yaml.SafeLoader):
    """Safe YAML that keeps dates and times as text: we give them the scenario's zone."""


_NoTimestampLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """A scenario from YAML text; errors name ``source`` and the field."""
    try:
        data = yaml.load(text, Loader=_NoTimestampLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping (name, start, residents...)")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{source}: {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ScenarioError("\n".join(lines)) from exc
    if not scenario.name:
        scenario = scenario.model_copy(update={"name": Path(source).stem})
    return scenario


def load_scenario(path: Path) -> Scenario:
    """Read and validate one scenario file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_scenario(text, str(path))


def scenario_files(paths: Iterable[Path] = ()) -> list[Path]:
    """The given files (directories expand to their ``*.yaml``), else the whole corpus."""
    chosen = list(paths) or [SCENARIO_DIR]
    files: list[Path] = []
    for path in chosen:
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    return files
