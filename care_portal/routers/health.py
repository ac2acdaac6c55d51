"""Operator endpoints: ``/healthz`` (database and MQTT ingest) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

import hub.metrics  # noqa: F401  (importing it registers the hub's metrics in REGISTRY)
from care_portal.deps import IngestStatusDep, SessionDep
from care_portal.schemas.health import HealthResponse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

INGEST_NOT_RUNNING = "not running"
_ERROR_DETAIL_MAX_CHARS = 200


@router.get(
    "/healthz",
    response_model=HealthResponse,
    responses={
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "model": HealthResponse,
            "description": "The database does not answer",
        }
    },
)
def healthz(
    session: SessionDep, ingest_status: IngestStatusDep, response: Response
) -> HealthResponse:
    """200 when the database answers ``SELECT 1``, 503 otherwise; the ingest's status besides."""
    response.headers["Cache-Control"] = "no-store"
    try:
        session.execute(text("SELECT 1"))
        database = "ok"
    except SQLAlchemyError as exc:
        logger.warning("health check: the database does not answer", exc_info=True)
        database = f"error: {_describe(exc)}"
    if database != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthResponse(
        status="ok" if database == "ok" else "degraded",
        database=database,
        mqtt=_ingest_status(ingest_status),
    )


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """The process's Prometheus metrics, in the text exposition format."""
    body: bytes = generate_latest(REGISTRY)
    return Response(
        content=body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
    )


def _ingest_status(reporter: IngestStatusDep) -> str:
    if reporter is None:
        return INGEST_NOT_RUNNING
    try:
        return reporter()
    except Exception as exc:  # a broken reporter must not break the health check
        logger.exception("health check: the ingest status reporter failed")
        return f"error: {_describe(exc)}"


def _describe(exc: BaseException) -> str:
    """The driver's own error in one short line (no SQL, no parameters)."""
    cause: BaseException = getattr(exc, "orig", None) or exc
    first_line = (str(cause).strip().splitlines() or [""])[0]
    detail = f"{type(cause).__name__}: {first_line}" if first_line else type(cause).__name__
    return detail[:_ERROR_DETAIL_MAX_CHARS]
