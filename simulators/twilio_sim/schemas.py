"""Request and response models of the simulator's own control API (``/_sim/...``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulators.twilio_sim.state import FaultMode

E164 = r"^\+[1-9]\d{1,14}$"


class FaultIn(BaseModel):
    """Inject a failure into the next ``count`` requests (``null``: until cleared)."""

    model_config = ConfigDict(extra="forbid")

    mode: FaultMode
    count: int | None = Field(1, ge=1, description="Requests affected; null until cleared.")
    to: str | None = Field(None, pattern=E164, description="Only requests to this number.")
    delay_s: float = Field(0.0, ge=0.0, le=600.0, description="For 'slow': the extra delay.")
    accept: bool = Field(
        False, description="For 'timeout': the message is sent even though the answer is lost."
    )

    @model_validator(mode="after")
    def _slow_needs_a_delay(self) -> FaultIn:
        if self.mode is FaultMode.SLOW and self.delay_s <= 0:
            raise ValueError("a 'slow' fault needs delay_s > 0")
        return self


class FaultOut(BaseModel):
    id: int
    mode: FaultMode
    remaining: int | None
    to: str | None
    delay_s: float
    accept: bool


class ScriptIn(BaseModel):
    """What a phone does next: reply to the next SMS, or answer the next call and press keys."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(pattern=E164)
    reply: str | None = Field(None, min_length=1, max_length=1600)
    after_s: float = Field(0.0, ge=0.0, le=600.0)
    digits: str | None = Field(None, pattern=r"^[0-9*#]{1,32}$")
    answer: bool = Field(True, description="false: the next call is not answered (no-answer).")

    @model_validator(mode="after")
    def _one_kind(self) -> ScriptIn:
        is_call = self.digits is not None or not self.answer
        if self.reply is not None and is_call:
            raise ValueError("a script is either an SMS reply or a call's keypress, not both")
        if self.reply is None and not is_call:
            raise ValueError("give 'reply' (SMS), 'digits' (call) or 'answer': false (call)")
        return self


class ScriptOut(BaseModel):
    id: int
    kind: str
    to: str
    reply: str | None
    after_s: float
    digits: str | None
    answer: bool


class InboundIn(BaseModel):
    """An SMS from a phone to the hub."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", pattern=E164)
    to: str | None = Field(None, pattern=E164, description="Default: the service number.")
    body: str = Field(max_length=1600)


class InboundOut(BaseModel):
    """The hub's answer to the inbound webhook, and any TwiML replies it caused."""

    sid: str
    status: int | None
    body: str
    content_type: str | None
    error: str | None
    replies: list[dict[str, Any]]


class Cleared(BaseModel):
    cleared: int
