"""Response model of the health check."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class HealthResponse(BaseModel):
    """What ``GET /healthz`` answers: overall status, the database and the MQTT ingest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["ok", "degraded"] = Field(
        description='"ok" when the database answers (HTTP 200), else "degraded" (HTTP 503)'
    )
    database: str = Field(description='"ok" or "error: <what went wrong>"')
    mqtt: str = Field(description='the ingest\'s own status, or "not running" in this process')
