"""Configuration: defaults, TOML file, environment, and unknown keys refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.config import CONFIG_ENV_VAR, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("CAREHUB_"):
            monkeypatch.delenv(key)


def test_defaults_are_a_local_sqlite_file_and_a_local_broker() -> None:
    settings = Settings()
    assert settings.database.url == "sqlite:///var/carehub.db"
    assert (settings.mqtt.host, settings.mqtt.port) == ("127.0.0.1", 1883)
    assert settings.timezone == "Europe/Oslo"
    assert settings.ingest.max_payload_bytes == 4096


def test_a_toml_file_sets_values_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "carehub.toml"
    path.write_text('timezone = "Europe/Oslo"\n[mqtt]\nport = 1999\nhost = "broker.local"\n')
    monkeypatch.setenv("CAREHUB_MQTT__PORT", "2001")
    settings = load_settings(path)
    assert settings.mqtt.host == "broker.local"
    assert settings.mqtt.port == 2001
    assert Settings().mqtt.host == "127.0.0.1"  # the file applied to that load only


def test_an_unknown_key_in_the_toml_file_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "carehub.toml"
    path.write_text("[mqtt]\nprot = 1999\n")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    with pytest.raises(ValidationError, match=r"mqtt\.prot"):
        Settings()


def test_an_unknown_carehub_variable_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREHUB_MQTT__PROT", "1999")
    with pytest.raises(ValueError, match="CAREHUB_MQTT__PROT"):
        Settings()


def test_a_missing_config_file_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV_VAR, "/nonexistent/carehub.toml")
    with pytest.raises(FileNotFoundError, match=r"carehub\.toml"):
        Settings()


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="Europe/Olso"):
        Settings(timezone="Europe/Olso")


def test_wrong_types_are_refused_with_the_field_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREHUB_MQTT__PORT", "not-a-port")
    with pytest.raises(ValidationError, match=r"mqtt\.port"):
        Settings()
