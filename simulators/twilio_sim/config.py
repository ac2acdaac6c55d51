"""The simulator's configuration: account credentials, the hub's webhook URL, timings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "carehub-sim-token"
DEFAULT_INBOUND_SMS_URL = "http://127.0.0.1:8000/api/v1/twilio/sms"
DEFAULT_PORT = 8025


class SimConfig(BaseModel):
    """How the simulator presents itself and where it sends webhooks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_sid: str = Field(DEFAULT_ACCOUNT_SID, pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: str = Field(DEFAULT_AUTH_TOKEN, min_length=1)
    inbound_sms_url: str = DEFAULT_INBOUND_SMS_URL
    public_base_url: str | None = Field(
        None, description="Where the simulator is reachable; default http://<host>:<port>."
    )
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    service_number: str = Field(
        "+4759440000",
        pattern=r"^\+[1-9]\d{1,14}$",
        description="The From number of messages sent through a MessagingServiceSid.",
    )
    step_delay_s: float = Field(
        0.02, ge=0.0, le=60.0, description="Pause between status steps (queued → sent → …)."
    )
    hang_s: float = Field(
        15.0, ge=0.0, le=120.0, description="How long a 'timeout' fault holds a REST call."
    )
    webhook_timeout_s: float = Field(
        15.0, gt=0.0, le=60.0, description="Timeout of callbacks and webhooks to the hub."
    )

    @property
    def base_url(self) -> str:
        """The simulator's own base URL, without a trailing slash."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        return f"http://{self.host}:{self.port}"
