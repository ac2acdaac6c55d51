"""Response models of the API's authentication (OAuth2 password flow)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokenPublic(BaseModel):
    """The answer of ``POST /api/v1/auth/token``: a bearer token and how long it lasts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    access_token: str = Field(description="opaque bearer token for the Authorization header")
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the token expires")


class ErrorPublic(BaseModel):
    """An error the API answers with: a sentence a person can read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detail: str
