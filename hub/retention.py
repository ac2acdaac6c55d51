"""Retention: raw sensor events older than the configured period are deleted, in batches."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hub.storage.models import SensorEvent

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000


def delete_old_events(
    session: Session,
    *,
    now: datetime,
    days: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
) -> int:
    """Delete sensor events received more than ``days`` days before ``now``; return how many.

    Deletes by primary key in batches of ``batch_size`` (short statements, bounded memory); with
    ``limit`` it stops after about that many, so a caller can commit between calls and never hold a
    long write transaction (see ``hub.cli_security``). Alarms, their timelines and the audit log
    are never touched: they do not reference events. Never commits.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    cutoff = now - timedelta(days=days)
    deleted = 0
    while limit is None or deleted < limit:
        size = batch_size if limit is None else min(batch_size, limit - deleted)
        ids = list(
            session.scalars(
                select(SensorEvent.id)
                .where(SensorEvent.received_at < cutoff)
                .order_by(SensorEvent.id)
                .limit(size)
            )
        )
        if not ids:
            break
        session.execute(
            delete(SensorEvent)
            .where(SensorEvent.id.in_(ids))
            .execution_options(synchronize_session=False)
        )
        deleted += len(ids)
        if len(ids) < size:
            break
    if deleted:
        logger.info("retention: deleted %d sensor events received before %s", deleted, cutoff)
    return deleted
