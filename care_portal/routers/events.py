"""``GET /events``: Server-Sent Events that tell a board when the open alarms changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from care_portal.deps import SessionDep
from care_portal.queries.board import open_alarms_fingerprint
from care_portal.routers.board import BoardUser

logger = logging.getLogger(__name__)

router = APIRouter(tags=["events"])

# Module attributes (not constants) so tests can make a connection short and fast.
TICK_S: float = 1.0
# A connection closes after this many ticks (about 10 min); EventSource reconnects by itself.
MAX_TICKS: int = 600
HEARTBEAT_EVERY_TICKS: int = 15
RETRY_MS: Final = 3000

Snapshot = tuple[str, list[tuple[int, bool]]]


def _snapshot(factory: sessionmaker[Session]) -> Snapshot:
    """The open alarms' fingerprint, in its own short session (run in a worker thread)."""
    with factory() as session:
        return open_alarms_fingerprint(session)


def _event(name: str, data: str, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {data}\n\n"


def _parse_last_id(value: str | None) -> tuple[str | None, int]:
    """The fingerprint and highest red alarm id a reconnecting client had seen."""
    if not value:
        return None, 0
    digest, _, red = value.partition("-")
    return digest or None, int(red) if red.isdigit() else 0


async def _stream(
    request: Request, factory: sessionmaker[Session], last_event_id: str | None
) -> AsyncIterator[str]:
    digest, reds = await run_in_threadpool(_snapshot, factory)
    seen_red = {alarm_id for alarm_id, red in reds if red}
    client_digest, client_max_red = _parse_last_id(last_event_id)
    max_red = max(seen_red, default=0)
    yield f"retry: {RETRY_MS}\n: connected\n\n"
    if client_digest is not None and client_digest != digest:
        # Reconnected after a gap: tell the board to catch up, and beep for reds it missed.
        yield _event("alarms", digest, f"{digest}-{max(max_red, client_max_red)}")
        for alarm_id in sorted(a for a in seen_red if a > client_max_red and client_max_red):
            yield _event("red", str(alarm_id))
    for tick in range(1, MAX_TICKS + 1):
        await asyncio.sleep(TICK_S)
        if await request.is_disconnected():
            return
        try:
            current, reds = await run_in_threadpool(_snapshot, factory)
        except Exception:  # the database is away: say nothing new; the board's poll shows it
            logger.warning("events: could not read the open alarms", exc_info=True)
            continue
        if current != digest:
            red_now = {alarm_id for alarm_id, red in reds if red}
            new_reds = sorted(red_now - seen_red)
            seen_red |= red_now
            max_red = max([max_red, *red_now])
            digest = current
            yield _event("alarms", digest, f"{digest}-{max_red}")
            for alarm_id in new_reds:
                yield _event("red", str(alarm_id))
        elif tick % HEARTBEAT_EVERY_TICKS == 0:
            yield ": heartbeat\n\n"


@router.get("/events", name="events", response_class=StreamingResponse)
def events(request: Request, session: SessionDep, user: BoardUser) -> StreamingResponse:
    """``event: alarms`` when the open alarms change, ``event: red`` (data: the alarm's id) when
    a new red alarm appears, a comment every 15 s; the stream ends after about 10 minutes."""
    username = user.username
    # Signed in and allowed: let go of the request's database connection for the stream's life.
    session.close()
    factory: sessionmaker[Session] = request.app.state.session_factory
    logger.debug("events stream for %s", username)
    return StreamingResponse(
        _stream(request, factory, request.headers.get("last-event-id")),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


__all__ = ["router"]
