"""Configuration: pydantic-settings with the CAREHUB_ prefix and an optional TOML file.

Unknown keys, in the TOML file or in ``CAREHUB_*`` variables, are an error that names the key.
Order of precedence: explicit arguments, environment, TOML file, defaults.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV_VAR = "CAREHUB_CONFIG"
# The TOML file named on the command line; wins over $CAREHUB_CONFIG.
_config_file: ContextVar[str | None] = ContextVar("carehub_config_file", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Section):
    """How the hub reaches the MQTT broker."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    client_id: str = "carehub-hub"
    keepalive_s: int = Field(default=30, ge=5)
    # How long the broker keeps the hub's session (and queues messages for it) while it is away.
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=60)
    receive_maximum: int = Field(default=1000, ge=1, le=65535)
    topic_prefix: str = "carehub/v1"
    zigbee2mqtt_prefix: str = "zigbee2mqtt"


class DatabaseSettings(_Section):
    """Where the truth lives."""

    url: str = "sqlite:///var/carehub.db"
    echo: bool = False


class IngestSettings(_Section):
    """Batching and bounds of the MQTT ingest path."""

    batch_max_messages: int = Field(default=500, ge=1)
    batch_max_wait_ms: float = Field(default=5.0, ge=0)
    max_payload_bytes: int = Field(default=4096, ge=64)
    rejected_keep: int = Field(default=10_000, ge=10)
    rejected_excerpt_bytes: int = Field(default=512, ge=16)
    device_cache_ttl_s: float = Field(default=5.0, ge=0)
    retry_backoff_max_s: float = Field(default=5.0, gt=0)


class PortalSettings(_Section):
    """The care portal's HTTP server."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_base_url: str = "http://127.0.0.1:8000"
    default_language: Literal["nb", "en"] = "nb"


class TwilioSettings(_Section):
    """How the hub reaches Twilio (or, by default, the local Twilio-compatible simulator)."""

    account_sid: str = "AC" + "0" * 32
    auth_token: str = "carehub-sim-token"
    # The number (or alphanumeric sender) SMS and calls come from, E.164.
    from_number: str = "+4759440000"
    # None = real Twilio; a URL = a Twilio-compatible server such as the simulator.
    api_base_url: str | None = "http://127.0.0.1:8025"
    request_timeout_s: float = Field(default=10.0, gt=0)
    # An SMS of a red alarm not delivered within this time is followed by a voice call.
    red_sms_delivery_timeout_s: int = Field(default=90, ge=10)


class BrokerSettings(_Section):
    """The broker's login files, when the hub runs beside Mosquitto and keeps them in sync.

    With both files set, the portal's installer pages rewrite them after every device change
    (and ``carehub broker sync`` needs no options); ``pid_file`` (Mosquitto's ``pid_file``) lets
    the hub send it SIGHUP to re-read them. Unset: the portal says ``carehub broker sync`` must
    follow a change.
    """

    password_file: Path | None = None
    acl_file: Path | None = None
    pid_file: Path | None = None


class SecuritySettings(_Section):
    """Sign-in, sessions, two-factor, personal data at rest, retention."""

    session_ttl_s: int = Field(default=12 * 3600, ge=300)
    # Secure cookies need HTTPS; only a local demo may turn this off.
    secure_cookies: bool = True
    # TOTP two-factor for staff; demo mode turns it off.
    require_totp: bool = True
    login_max_failures: int = Field(default=5, ge=1)
    lockout_s: int = Field(default=15 * 60, ge=10)
    # Fernet keys (urlsafe base64, 32 bytes), newest first; older ones only decrypt (rotation).
    # Never in the repository: set CAREHUB_SECURITY__DATA_KEYS='["...","..."]' or in the TOML file.
    data_keys: list[str] = Field(default_factory=list)
    # Key for the signed, expiring links in relatives' SMS (HMAC).
    link_secret: str | None = None
    relative_link_ttl_s: int = Field(default=24 * 3600, ge=60)
    # Raw sensor events older than this are deleted; alarms and the audit log are kept.
    event_retention_days: int = Field(default=30, ge=1)


class Settings(BaseSettings):
    """All of CareHub's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="CAREHUB_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    timezone: str = "Europe/Oslo"
    demo_mode: bool = False
    mqtt: MqttSettings = MqttSettings()
    database: DatabaseSettings = DatabaseSettings()
    ingest: IngestSettings = IngestSettings()
    portal: PortalSettings = PortalSettings()
    twilio: TwilioSettings = TwilioSettings()
    broker: BrokerSettings = BrokerSettings()
    security: SecuritySettings = SecuritySettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Oslo)"
            ) from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = _EnvWithoutConfigPath(env_settings)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env]
        toml_path = _config_file.get() or os.environ.get(CONFIG_ENV_VAR)
        if toml_path:
            path = Path(toml_path)
            if not path.is_file():
                raise FileNotFoundError(f"{CONFIG_ENV_VAR} points to {path}, which is not a file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


class _EnvWithoutConfigPath(PydanticBaseSettingsSource):
    """The environment source, minus ``CAREHUB_CONFIG`` (which names the TOML file, not a key)."""

    def __init__(self, inner: PydanticBaseSettingsSource) -> None:
        super().__init__(inner.settings_cls)
        self._inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        _refuse_unknown_env(self.settings_cls)
        data = dict(self._inner())
        data.pop("config", None)
        return data


def _refuse_unknown_env(settings_cls: type[BaseSettings]) -> None:
    """Raise on a ``CAREHUB_*`` variable that names no setting (a typo must not pass silently)."""
    known = {CONFIG_ENV_VAR}
    for name, field in settings_cls.model_fields.items():
        known.add(f"CAREHUB_{name.upper()}")
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            known.update(f"CAREHUB_{name.upper()}__{sub.upper()}" for sub in section.model_fields)
    unknown = sorted(
        k for k in os.environ if k.upper().startswith("CAREHUB_") and k.upper() not in known
    )
    if unknown:
        raise ValueError(f"unknown configuration variable(s): {', '.join(unknown)}")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings; ``config_file`` (else ``$CAREHUB_CONFIG``) names an optional TOML file."""
    token = _config_file.set(str(config_file) if config_file is not None else None)
    try:
        return Settings(**overrides)
    finally:
        _config_file.reset(token)
