"""Assembles the running hub: database, ingest (MQTT), and optionally the portal's HTTP server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import Clock, SystemClock
from hub.config import Settings
from hub.ingest.pipeline import IngestProcessor, IngestSink
from hub.ingest.service import IngestService
from hub.storage.db import make_engine, make_sessionmaker

logger = logging.getLogger(__name__)


class HubRuntime:
    """The hub's long-running parts, started and stopped together."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        sinks: Sequence[IngestSink] = (),
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.engine = engine or make_engine(settings.database.url, echo=settings.database.echo)
        self.session_factory: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.processor = IngestProcessor(settings, self.session_factory, sinks)
        self.ingest = IngestService(settings, self.processor, self.clock)

    def start(self) -> None:
        self.ingest.start()

    def stop(self) -> None:
        self.ingest.stop()
        self.engine.dispose()

    def serve_portal(self, stop: threading.Event | None = None) -> None:
        """Serve the portal in this thread until Ctrl-C (or ``stop`` is set)."""
        import uvicorn

        from care_portal.app import create_app

        app = create_app(
            self.settings,
            session_factory=self.session_factory,
            clock=self.clock,
            ingest_status=self.ingest.status,
        )
        config = uvicorn.Config(
            app,
            host=self.settings.portal.host,
            port=self.settings.portal.port,
            log_level="warning",
        )
        server = uvicorn.Server(config)
        if stop is not None:

            def _watch() -> None:
                stop.wait()
                server.should_exit = True

            threading.Thread(target=_watch, daemon=True).start()
        server.run()
