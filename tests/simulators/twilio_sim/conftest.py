"""Fixtures: the simulator and a stand-in hub, each a real uvicorn server on a loopback port.

The real ``twilio`` library is pointed at the simulator with
``client.api.base_url = "http://127.0.0.1:<port>"`` (twilio 9.x): every REST API resource of
the ``api`` domain (Messages, Calls, …) builds its URLs from that attribute, so nothing else
needs rewriting. ``edge``/``region`` only rewrite ``*.twilio.com`` host names and do not help.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from hub.broker import free_port
from hub.clock import SystemClock
from simulators.twilio_sim import SimConfig, create_app

T = TypeVar("T")

HOST = "127.0.0.1"
WAIT_S = 5.0
HUB_NUMBER = "+4759440001"
NURSE = "+4791234567"
RELATIVE = "+4798765432"

VOICE_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Gather action="gather" method="POST" numDigits="1" timeout="5">'
    '<Say language="nb-NO">Fall hos Kari. Trykk 1 for å ta alarmen.</Say>'
    "</Gather><Say>Goodbye.</Say></Response>"
)
GATHER_TWIML = '<Response><Say language="nb-NO">Alarmen er din.</Say></Response>'
SMS_REPLY_TWIML = "<Response><Message>Du har tatt alarmen.</Message></Response>"


class Server:
    """A uvicorn server in a background thread; started and stopped with bounded waits."""

    def __init__(self, app: FastAPI, port: int) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}"
        config = uvicorn.Config(
            app, host=HOST, port=port, log_level="warning", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name=f"uv-{port}")

    def start(self) -> None:
        self._thread.start()
        pace = SystemClock()
        deadline = pace.monotonic() + WAIT_S
        while not self._server.started:
            if pace.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"uvicorn on port {self.port} did not start")
            self._thread.join(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(WAIT_S)


@dataclass(frozen=True)
class Hook:
    """One webhook the stand-in hub received from the simulator."""

    path: str
    url: str
    params: dict[str, str]
    signature: str
    valid: bool
    user_agent: str


@dataclass
class HubStandIn:
    """Records every webhook, checks its signature with the twilio library's validator."""

    token: str
    url: str = ""
    hooks: list[Hook] = field(default_factory=list)
    sms_reply: str = "<Response></Response>"
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def record(self, hook: Hook) -> None:
        with self._cond:
            self.hooks.append(hook)
            self._cond.notify_all()

    def reset(self) -> None:
        with self._cond:
            self.hooks.clear()
            self.sms_reply = "<Response></Response>"

    def at(self, path: str) -> list[Hook]:
        with self._cond:
            return [h for h in self.hooks if h.path == path]

    def wait_for(self, found: Callable[[], T | None], timeout: float = WAIT_S) -> T:
        """Wait until ``found()`` returns something; fail after ``timeout`` seconds."""
        with self._cond:
            result = found()
            pace = SystemClock()
            deadline = pace.monotonic() + timeout
            while not result:
                remaining = deadline - pace.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out; hooks so far: {self.hooks}")
                self._cond.wait(remaining)
                result = found()
            return result


def hub_app(hub: HubStandIn) -> FastAPI:
    app = FastAPI()
    validator = RequestValidator(hub.token)

    async def receive(request: Request) -> Hook:
        form = await request.form()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        signature = request.headers.get("X-Twilio-Signature", "")
        url = str(request.url)
        hook = Hook(
            path=request.url.path,
            url=url,
            params=params,
            signature=signature,
            valid=validator.validate(url, params, signature),
            user_agent=request.headers.get("user-agent", ""),
        )
        hub.record(hook)
        return hook

    def xml(text: str) -> Response:
        return Response(text, media_type="application/xml")

    @app.post("/sms/status")
    async def sms_status(request: Request) -> Response:
        await receive(request)
        return Response(status_code=204)

    @app.post("/sms/inbound")
    async def sms_inbound(request: Request) -> Response:
        await receive(request)
        return xml(hub.sms_reply)

    @app.post("/voice/twiml")
    async def voice_twiml(request: Request) -> Response:
        await receive(request)
        return xml(VOICE_TWIML)

    @app.post("/voice/gather")
    async def voice_gather(request: Request) -> Response:
        await receive(request)
        return xml(GATHER_TWIML)

    @app.post("/voice/status")
    async def voice_status(request: Request) -> Response:
        await receive(request)
        return Response(status_code=204)

    return app


@dataclass(frozen=True)
class Sim:
    """The running simulator and an HTTP client for its /_sim controls."""

    config: SimConfig
    url: str
    control: httpx.Client

    def messages(self, **query: str) -> list[dict[str, Any]]:
        response = self.control.get("/_sim/messages", params=query)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def record(self, sid: str) -> dict[str, Any] | None:
        return next((m for m in self.messages() if m["sid"] == sid), None)


@pytest.fixture(scope="module")
def hub_server() -> Iterator[HubStandIn]:
    stand_in = HubStandIn(token=SimConfig().auth_token)
    server = Server(hub_app(stand_in), free_port(HOST))
    stand_in.url = server.url
    server.start()
    yield stand_in
    server.stop()


@pytest.fixture
def hub(hub_server: HubStandIn) -> HubStandIn:
    """The module's stand-in hub, with no hooks recorded and the default SMS answer."""
    hub_server.reset()
    return hub_server


@pytest.fixture
def sim(hub: HubStandIn) -> Iterator[Sim]:
    port = free_port(HOST)
    config = SimConfig(
        port=port,
        inbound_sms_url=f"{hub.url}/sms/inbound",
        step_delay_s=0.005,
        hang_s=1.5,
        webhook_timeout_s=5.0,
    )
    server = Server(create_app(config), port)
    server.start()
    with httpx.Client(base_url=server.url, timeout=WAIT_S) as control:
        yield Sim(config=config, url=server.url, control=control)
    server.stop()


def twilio_client(sim: Sim, *, token: str | None = None, timeout: float = WAIT_S) -> Client:
    """The real twilio client, pointed at the simulator."""
    client = Client(
        sim.config.account_sid,
        token or sim.config.auth_token,
        http_client=TwilioHttpClient(timeout=timeout),
    )
    client.api.base_url = sim.url
    return client


@pytest.fixture
def client(sim: Sim) -> Client:
    return twilio_client(sim)
