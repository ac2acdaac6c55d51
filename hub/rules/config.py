"""Per-resident rule settings with the defaults of the alarm catalogue (PRODUCT.md)."""

from __future__ import annotations

from datetime import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.storage.models import Severity


class RuleConfig(BaseModel):
    """Every number is configurable per resident (``residents.rule_config`` holds overrides).

    Times of day are local to the municipality; durations are real elapsed seconds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # fall
    fall_enabled: bool = True
    fall_min_confidence: float | None = Field(default=None, ge=0, le=1)
    fall_severity: Severity = Severity.RED
    # alarm button
    button_enabled: bool = True
    button_cancel_window_s: int = Field(default=60, ge=0)
    button_severity: Severity = Severity.RED
    # door at night
    door_night_enabled: bool = True
    night_start: time = time(22, 0)
    night_end: time = time(7, 0)
    door_grace_s: int = Field(default=600, ge=0)
    door_severity: Severity = Severity.YELLOW
    # long bathroom visit at night
    bathroom_enabled: bool = True
    bathroom_max_s: int = Field(default=45 * 60, ge=60)
    bathroom_severity: Severity = Severity.YELLOW
    # inactivity: stopwatch mode (no motion for N s) and/or window mode (no motion by a time)
    inactivity_stopwatch_enabled: bool = True
    inactivity_stopwatch_s: int = Field(default=12 * 3600, ge=60)
    inactivity_window_enabled: bool = False
    inactivity_window_start: time = time(6, 0)
    inactivity_window_end: time = time(10, 0)
    inactivity_prealarm_s: int = Field(default=5 * 60, ge=0)
    inactivity_severity: Severity = Severity.YELLOW
    # device supervision
    supervision_enabled: bool = True
    supervision_grace_s: int = Field(default=60, ge=0)
    offline_severity: Severity = Severity.GREEN
    offline_life_safety_severity: Severity = Severity.RED
    low_battery_pct: int = Field(default=20, ge=0, le=100)
    low_battery_severity: Severity = Severity.GREEN
    tamper_severity: Severity = Severity.YELLOW


DEFAULT_RULE_CONFIG = RuleConfig()


def rule_config(overrides: dict[str, Any] | None) -> RuleConfig:
    """The defaults with a resident's overrides applied; unknown keys are refused."""
    return RuleConfig.model_validate(overrides or {})
