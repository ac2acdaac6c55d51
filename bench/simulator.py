"""The Twilio simulator for the benchmarks: in its own process, with arrival stamps.

The provider is never inside the hub's interpreter in production. Run in a thread of the
benchmark process (as the benchmarks did before 2026-11-25), the simulator shared the hub's GIL:
the moment it "received" an SMS request was when uvicorn got the GIL back from a loaded hub,
and its status callbacks' signing ran on the hub's CPU time. Here it runs as
``python -m bench.simulator`` and the benchmark reads its stamps over HTTP.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import httpx
import uvicorn

from hub.broker import free_port
from hub.clock import SystemClock
from hub.config import TwilioSettings
from hub.storage.migrate import REPO_ROOT
from simulators.twilio_sim import SimConfig, create_app

CLOCK = SystemClock()
ARRIVALS_PATH = "/_bench/arrivals"
START_S = 20.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class ArrivalLog:
    """ASGI middleware before the simulator: stamps each ``Messages.json`` POST as it arrives.

    The stamp is ``SystemClock().monotonic()`` (CLOCK_MONOTONIC, the same in every process of
    the machine) when uvicorn hands the request to the app (headers parsed, before the body is
    read), so it is the moment the simulator received the request, independent of the
    simulator's own work and of its ``date_created`` (wall clock, seconds). ``GET
    /_bench/arrivals`` returns the stamps so far as JSON: ``[[monotonic, To, Body], …]``.
    """

    def __init__(self, app: Asgi) -> None:
        self.app = app
        self.arrivals: list[tuple[float, str, str]] = []  # (monotonic, To, Body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] == "http" and path == ARRIVALS_PATH:
            body = json.dumps(self.arrivals).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not path.endswith("/Messages.json")
        ):
            await self.app(scope, receive, send)
            return
        at = CLOCK.monotonic()
        chunks: list[bytes] = []

        async def tap() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        await self.app(scope, tap, send)
        form = parse_qs(b"".join(chunks).decode())
        self.arrivals.append((at, form.get("To", [""])[0], form.get("Body", [""])[0]))


class SimulatorProcess:
    """``python -m bench.simulator`` on a loopback port; ``arrivals`` reads its stamps."""

    def __init__(self, *, account_sid: str, auth_token: str, portal_url: str) -> None:
        """A simulator on a free port whose inbound SMS go to the portal at ``portal_url``."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.account_sid, self.auth_token = account_sid, auth_token
        self._args = [
            sys.executable,
            "-m",
            "bench.simulator",
            f"--port={port}",
            f"--account-sid={account_sid}",
            f"--auth-token={auth_token}",
            f"--inbound-sms-url={portal_url}/api/v1/twilio/sms",
        ]
        self._process: subprocess.Popen[bytes] | None = None
        self._final: list[tuple[float, str, str]] | None = None

    def twilio_settings(self) -> TwilioSettings:
        """The hub's Twilio settings for this simulator."""
        return TwilioSettings(
            account_sid=self.account_sid, auth_token=self.auth_token, api_base_url=self.url
        )

    def start(self) -> None:
        self._process = subprocess.Popen(self._args, cwd=REPO_ROOT)
        deadline = CLOCK.monotonic() + START_S
        while CLOCK.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the simulator exited with {self._process.returncode}")
            try:
                httpx.get(self.url + ARRIVALS_PATH, timeout=1.0).raise_for_status()
                return
            except httpx.HTTPError:
                threading.Event().wait(0.1)
        self.stop()
        raise RuntimeError("the simulator did not start")

    @property
    def arrivals(self) -> list[tuple[float, str, str]]:
        """The stamps so far; once stopped, the last ones it reported."""
        if self._final is not None:
            return self._final
        rows = httpx.get(self.url + ARRIVALS_PATH, timeout=10.0).json()
        return [(float(at), str(to), str(body)) for at, to, body in rows]

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._final = self.arrivals
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--inbound-sms-url", required=True)
    args = parser.parse_args()
    app = create_app(
        SimConfig(
            account_sid=args.account_sid,
            auth_token=args.auth_token,
            inbound_sms_url=args.inbound_sms_url,
            port=args.port,
        )
    )
    uvicorn.run(ArrivalLog(app), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
