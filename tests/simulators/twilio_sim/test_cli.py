"""``carehub-sim sms-gateway``: the options reach the simulator's config and uvicorn."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from simulators import cli

runner = CliRunner()


def test_sms_gateway_runs_the_simulator_with_the_given_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: dict[str, Any] = {}

    def fake_run(app: FastAPI, *, host: str, port: int, log_level: str) -> None:
        ran.update(app=app, host=host, port=port)

    monkeypatch.setattr("simulators.cli.uvicorn.run", fake_run)
    result = runner.invoke(
        cli.app,
        [
            "sms-gateway",
            "--port",
            "8125",
            "--inbound-url",
            "http://127.0.0.1:9/sms",
            "--auth-token",
            "t0ken",
        ],
    )

    assert result.exit_code == 0, result.output
    assert (ran["host"], ran["port"]) == ("127.0.0.1", 8125)
    config = ran["app"].state.sim_config
    assert (config.inbound_sms_url, config.auth_token) == ("http://127.0.0.1:9/sms", "t0ken")
    assert "http://127.0.0.1:8125" in result.output


def test_sms_gateway_refuses_a_malformed_account_sid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("simulators.cli.uvicorn.run", lambda *a, **k: pytest.fail("must not start"))

    result = runner.invoke(cli.app, ["sms-gateway", "--account-sid", "nope"])

    assert result.exit_code == 1
    assert "account_sid" in result.output
