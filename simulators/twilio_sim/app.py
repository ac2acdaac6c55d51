"""The simulator's FastAPI app: Twilio's Messages and Calls endpoints and the ``/_sim`` controls."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData

from hub.clock import Clock, SystemClock
from simulators.twilio_sim.config import SimConfig
from simulators.twilio_sim.delivery import Delivery, is_http_url
from simulators.twilio_sim.resources import (
    API_VERSION,
    call_resource,
    error_body,
    message_resource,
    sim_view,
)
from simulators.twilio_sim.schemas import (
    Cleared,
    FaultIn,
    FaultOut,
    InboundIn,
    InboundOut,
    ScriptIn,
    ScriptOut,
)
from simulators.twilio_sim.state import (
    REQUEST_FAULTS,
    Fault,
    FaultMode,
    Kind,
    Record,
    Script,
    Store,
    new_sid,
)

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_CALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
_HANG_POLL_S = 0.05


class TwilioError(Exception):
    """Answered as Twilio's JSON error body, which the twilio library raises as an exception."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def create_app(config: SimConfig | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the simulator; its delivery worker runs while the app's lifespan does."""
    config = config or SimConfig()
    clock = clock or SystemClock()
    store = Store(clock)
    delivery = Delivery(config, store, clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await delivery.start()
        try:
            yield
        finally:
            await delivery.stop()

    app = FastAPI(
        title="CareHub SMS and voice gateway simulator",
        description="Twilio-compatible Messages and Calls endpoints; controls under /_sim.",
        lifespan=lifespan,
    )
    app.state.sim_config = config
    app.state.sim_store = store
    app.state.sim_delivery = delivery

    @app.exception_handler(TwilioError)
    async def _twilio_error(_: Request, exc: TwilioError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if exc.status == 401 else None
        return JSONResponse(
            error_body(exc.status, exc.code, exc.message), status_code=exc.status, headers=headers
        )

    app.include_router(_rest_router(config, store, delivery, clock))
    app.include_router(_sim_router(config, store, delivery))
    return app


# --- Twilio REST API --------------------------------------------------------------------------


def _rest_router(config: SimConfig, store: Store, delivery: Delivery, clock: Clock) -> APIRouter:
    router = APIRouter(prefix=f"/{API_VERSION}/Accounts/{{account_sid}}", tags=["twilio"])
    pace = SystemClock()

    def authenticate(request: Request, account_sid: str) -> None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        valid = (
            scheme.lower() == "basic"
            and hmac.compare_digest(user.encode(), config.account_sid.encode())
            and hmac.compare_digest(password.encode(), config.auth_token.encode())
        )
        if not valid:
            raise TwilioError(401, 20003, "Authenticate")
        if account_sid != config.account_sid:
            raise TwilioError(
                404, 20404, f"The requested resource {request.url.path} was not found"
            )

    def request_fault(to: str) -> Fault | None:
        """Answer 500 under an http_500 fault; return a timeout fault for the caller to hang."""
        fault = store.take_fault(REQUEST_FAULTS, to)
        if fault is not None and fault.mode is FaultMode.HTTP_500:
            raise TwilioError(500, 20500, "Internal Server Error")
        return fault

    async def hang(request: Request) -> None:
        """Hold the request for ``hang_s`` (less if the client gives up first)."""
        deadline = pace.monotonic() + config.hang_s
        while pace.monotonic() < deadline:
            if await request.is_disconnected():
                return
            await asyncio.sleep(min(_HANG_POLL_S, max(0.0, deadline - pace.monotonic())))

    @router.post("/Messages.json", status_code=201)
    async def create_message(account_sid: str, request: Request) -> JSONResponse:
        authenticate(request, account_sid)
        form = await request.form()
        to = _field(form, "To")
        fault = request_fault(to)
        body = _field(form, "Body")
        from_ = _field(form, "From")
        service = _field(form, "MessagingServiceSid")
        callback = _field(form, "StatusCallback")
        if from_.startswith("MG") and not service:
            service, from_ = from_, ""
        if not to:
            raise TwilioError(400, 21604, "A 'To' phone number is required.")
        if not _E164.match(to):
            raise TwilioError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not body:
            raise TwilioError(400, 21602, "Message body is required.")
        if not from_ and not service:
            raise TwilioError(400, 21603, "A 'From' phone number is required.")
        if from_ and not _E164.match(from_):
            raise TwilioError(
                400,
                21606,
                f"The From phone number {from_} is not a valid, SMS-capable inbound phone"
                " number or short code for your account.",
            )
        if callback and not is_http_url(callback):
            raise TwilioError(400, 21609, f"The StatusCallback URL {callback} is not a valid URL.")
        now = clock.now()
        record = Record(
            sid=new_sid("SM"),
            kind=Kind.SMS,
            direction="outbound-api",
            account_sid=config.account_sid,
            to=to,
            from_=from_ or None,
            status="accepted" if service else "queued",
            date_created=now,
            date_updated=now,
            body=body,
            messaging_service_sid=service or None,
            status_callback=callback or None,
            status_callback_method=(_field(form, "StatusCallbackMethod") or "POST").upper(),
        )
        return await accept(request, fault, record, message_resource(record))

    @router.get("/Messages/{sid}.json")
    async def fetch_message(account_sid: str, sid: str, request: Request) -> JSONResponse:
        authenticate(request, account_sid)
        return JSONResponse(message_resource(find(request, sid, Kind.SMS)))

    @router.post("/Calls.json", status_code=201)
    async def create_call(account_sid: str, request: Request) -> JSONResponse:
        authenticate(request, account_sid)
        form = await request.form()
        to = _field(form, "To")
        fault = request_fault(to)
        from_ = _field(form, "From")
        url = _field(form, "Url")
        inline = _field(form, "Twiml")
        callback = _field(form, "StatusCallback")
        if not to:
            raise TwilioError(400, 21201, "No 'To' number is specified")
        if not _E164.match(to):
            raise TwilioError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not from_:
            raise TwilioError(400, 21213, "No 'From' number is specified")
        if not url and not inline:
            raise TwilioError(400, 21205, "Url parameter is required.")
        if url and not is_http_url(url):
            raise TwilioError(400, 21205, f"Url is not a valid URL: {url}")
        if callback and not is_http_url(callback):
            raise TwilioError(400, 21609, f"The StatusCallback URL {callback} is not valid.")
        events = {
            event.lower()
            for value in form.getlist("StatusCallbackEvent")
            if isinstance(value, str)
            for event in value.split()
        }
        unknown = events - _CALL_EVENTS
        if unknown:
            raise TwilioError(
                400, 21626, f"Invalid StatusCallbackEvent: {', '.join(sorted(unknown))}"
            )
        now = clock.now()
        record = Record(
            sid=new_sid("CA"),
            kind=Kind.CALL,
            direction="outbound-api",
            account_sid=config.account_sid,
            to=to,
            from_=from_,
            status="queued",
            date_created=now,
            date_updated=now,
            status_callback=callback or None,
            status_callback_method=(_field(form, "StatusCallbackMethod") or "POST").upper(),
            status_callback_events=frozenset(events or {"completed"}),
            url=url or None,
            method=(_field(form, "Method") or "POST").upper(),
            inline_twiml=inline or None,
        )
        return await accept(request, fault, record, call_resource(record))

    async def accept(
        request: Request, fault: Fault | None, record: Record, resource: dict[str, Any]
    ) -> JSONResponse:
        """Store and start the new message or call, or hang under a timeout fault."""
        start = delivery.start_sms if record.kind is Kind.SMS else delivery.start_call
        if fault is None or fault.accept:
            store.add(record)
            start(record.sid)
        if fault is not None:
            await hang(request)
            if not fault.accept:
                raise TwilioError(500, 20500, "Internal Server Error (timed out)")
        return JSONResponse(resource, status_code=201)

    @router.get("/Calls/{sid}.json")
    async def fetch_call(account_sid: str, sid: str, request: Request) -> JSONResponse:
        authenticate(request, account_sid)
        return JSONResponse(call_resource(find(request, sid, Kind.CALL)))

    def find(request: Request, sid: str, kind: Kind) -> Record:
        record = store.get(sid)
        if record is None or record.kind is not kind:
            raise TwilioError(
                404, 20404, f"The requested resource {request.url.path} was not found"
            )
        return record

    return router


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


# --- simulator controls -----------------------------------------------------------------------


def _sim_router(config: SimConfig, store: Store, delivery: Delivery) -> APIRouter:
    router = APIRouter(prefix="/_sim", tags=["simulator"])

    @router.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "account_sid": config.account_sid,
            "inbound_sms_url": config.inbound_sms_url,
            "base_url": config.base_url,
            "records": len(store.all()),
            "pending_deliveries": delivery.pending,
        }

    @router.get("/messages")
    async def messages(
        to: Annotated[str | None, Query(description="Only records to this number.")] = None,
        kind: Annotated[Kind | None, Query(description="sms or call.")] = None,
        direction: Annotated[str | None, Query(description="e.g. outbound-api, inbound.")] = None,
    ) -> list[dict[str, Any]]:
        return [
            sim_view(record, config.base_url)
            for record in store.all()
            if (to is None or record.to == to)
            and (kind is None or record.kind is kind)
            and (direction is None or record.direction == direction)
        ]

    @router.delete("/messages")
    async def clear_messages() -> Cleared:
        return Cleared(cleared=store.clear())

    @router.post("/inbound")
    async def inbound(message: InboundIn, response: Response) -> InboundOut:
        """Text the hub; answers 502 if the hub could not be reached."""
        result = await delivery.receive_sms(
            from_=message.from_, to=message.to or config.service_number, body=message.body
        )
        if result.answer.status is None:
            response.status_code = 502
        replies = [store.get(sid) for sid in result.replies]
        return InboundOut(
            sid=result.sid,
            status=result.answer.status,
            body=result.answer.body,
            content_type=result.answer.content_type,
            error=result.answer.error,
            replies=[sim_view(r, config.base_url) for r in replies if r is not None],
        )

    @router.get("/faults")
    async def faults() -> list[FaultOut]:
        return [_fault_out(f) for f in store.faults()]

    @router.post("/faults", status_code=201)
    async def add_fault(fault: FaultIn) -> FaultOut:
        added = store.add_fault(
            fault.mode, count=fault.count, to=fault.to, delay_s=fault.delay_s, accept=fault.accept
        )
        return _fault_out(added)

    @router.delete("/faults")
    async def clear_faults() -> Cleared:
        return Cleared(cleared=store.clear_faults())

    @router.get("/script")
    async def scripts() -> list[ScriptOut]:
        return [_script_out(s) for s in store.scripts()]

    @router.post("/script", status_code=201)
    async def add_script(script: ScriptIn) -> ScriptOut:
        kind = Kind.SMS if script.reply is not None else Kind.CALL
        added = store.add_script(
            Script(
                id=0,
                to=script.to,
                kind=kind,
                reply=script.reply,
                after_s=script.after_s,
                digits=script.digits,
                answer=script.answer,
            )
        )
        return _script_out(added)

    @router.delete("/script")
    async def clear_scripts() -> Cleared:
        return Cleared(cleared=store.clear_scripts())

    return router


def _fault_out(fault: Fault) -> FaultOut:
    return FaultOut(
        id=fault.id,
        mode=fault.mode,
        remaining=fault.remaining,
        to=fault.to,
        delay_s=fault.delay_s,
        accept=fault.accept,
    )


def _script_out(script: Script) -> ScriptOut:
    return ScriptOut(
        id=script.id,
        kind=script.kind.value,
        to=script.to,
        reply=script.reply,
        after_s=script.after_s,
        digits=script.digits,
        answer=script.answer,
    )
