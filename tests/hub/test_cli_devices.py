"""The installer's CLI: register, walk test, history, retire, and the broker's files."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.broker_auth import verify_mosquitto_hash
from hub.cli import app
from hub.storage import migrate
from hub.storage.db import make_engine, make_sessionmaker
from tests.factories import add_home

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("CAREHUB_DATABASE__URL", url)
    monkeypatch.setenv("CAREHUB_MQTT__USERNAME", "carehub-hub")
    monkeypatch.setenv("CAREHUB_MQTT__PASSWORD", "hub-secret")
    migrate.upgrade(url)
    engine = make_engine(url)
    add_home(make_sessionmaker(engine), "h1", devices=())
    engine.dispose()
    return url


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _secret(output: str, name: str) -> str:
    return next(line.split(": ", 1)[1] for line in output.splitlines() if f"{name}:" in line)


def test_an_installer_registers_tests_and_retires_a_device_and_the_broker_files_follow(
    db: str, tmp_path: Path
) -> None:
    out = _ok(
        "device", "register", "btn-1", "--type", "alarm_button", "--protocol", "native",
        "--home", "h1", "--room", "Stue", "--hmac", "--actor", "ingrid",
    )  # fmt: skip
    password = _secret(out, "password")
    assert _secret(out, "HMAC key (base64)")
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    files = ["--password-file", str(passwd), "--acl-file", str(acl)]
    _ok("broker", "sync", *files)
    logins = dict(line.split(":", 1) for line in passwd.read_text().splitlines())
    assert set(logins) == {"btn-1", "carehub-hub"}
    assert verify_mosquitto_hash(password, logins["btn-1"])
    assert "topic write carehub/v1/h1/btn-1/event" in acl.read_text()

    assert "Press the alarm button" in _ok("device", "walk-test", "start", "--home", "h1")
    assert "Not all items are ticked" in _ok("device", "walk-test", "status", "--home", "h1")
    _ok("device", "walk-test", "finish", "--home", "h1", "--actor", "ingrid")
    assert "Test mode until" in _ok("device", "test-mode", "--device", "btn-1", "--minutes", "5")

    _ok("device", "retire", "btn-1", "--reason", "broken")
    _ok("broker", "sync", *files)
    assert "btn-1" not in passwd.read_text() and "btn-1" not in acl.read_text()
    history = _ok("device", "history", "btn-1")
    for action in ("registered", "test_mode", "walk_test", "retired"):
        assert action in history

    refused = runner.invoke(app, ["device", "move", "btn-1", "--home", "h1", "--room", "Bad"])
    assert refused.exit_code == 1 and "retired" in refused.output


def test_broker_sync_needs_the_hubs_own_login(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAREHUB_MQTT__PASSWORD")
    result = runner.invoke(
        app, ["broker", "sync", "--password-file", str(tmp_path / "p"), "--acl-file", "a"]
    )
    assert result.exit_code == 1 and "mqtt.password" in result.output
    assert not (tmp_path / "p").exists()


def test_broker_pki_writes_a_ca_and_the_brokers_certificate(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    _ok("broker", "pki", "--out", str(out), "--hostname", "hub.local", "--client", "btn-1")
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "broker.crt", "broker.key", "ca.crt", "ca.key", "client-btn-1.crt", "client-btn-1.key",
    ]  # fmt: skip
