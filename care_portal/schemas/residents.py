"""Response models of the residents API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ResidentPublic(BaseModel):
    """A resident: who and where; no health details."""

    model_config = ConfigDict(extra="forbid", frozen=True, from_attributes=True)

    id: int
    home_id: str
    zone_id: int
    label: str = Field(description='short label safe for an SMS, e.g. "Kari N., Storgata"')
    full_name: str
    absence_until: datetime | None = Field(description="activity rules are off until then")


class ResidentsPublic(BaseModel):
    """A page of residents and how many match in all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: list[ResidentPublic]
    count: int
