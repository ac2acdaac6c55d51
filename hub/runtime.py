"""Assembles the running hub: database, ingest (MQTT), and optionally the portal's HTTP server."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import Clock, SystemClock
from hub.config import Settings
from hub.escalation.engine import EscalationContext, EscalationEngine
from hub.escalation.policy import ensure_default_policies
from hub.feedback import FeedbackPublisher
from hub.ingest.pipeline import IngestProcessor, IngestSink
from hub.ingest.service import IngestService
from hub.notify.sender import Provider, Sender, TwilioProvider
from hub.retention import delete_old_events
from hub.rules.service import RulesService
from hub.rules.timers import SchedulerTimer, TimerDriver
from hub.storage.crypto import configure_keys
from hub.storage.db import make_engine, make_sessionmaker
from hub.storage.models import Alarm

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
        timer: TimerDriver | None = None,
        rules: bool = True,
        escalation_timer: TimerDriver | None = None,
        provider: Provider | None = None,
        background_sender: bool = True,
        retention: bool = True,
    ) -> None:
        self.settings = settings
        configure_keys(settings.security.data_keys)
        self.clock = clock or SystemClock()
        self.retention = retention
        self._stopping = threading.Event()
        self.engine = engine or make_engine(settings.database.url, echo=settings.database.echo)
        self.session_factory: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.rules: RulesService | None = None
        self.background_sender = background_sender
        self.sender = Sender(
            self.session_factory,
            self.clock,
            provider or TwilioProvider(settings),
            public_base_url=settings.portal.public_base_url,
            red_sms_delivery_timeout_s=settings.twilio.red_sms_delivery_timeout_s,
        )
        self.escalation = EscalationEngine(
            self.session_factory,
            self.clock,
            escalation_timer or SchedulerTimer(self.clock),
            EscalationContext(
                ZoneInfo(settings.timezone),
                settings.portal.public_base_url,
                link_secret=settings.security.link_secret,
                link_ttl_s=settings.security.relative_link_ttl_s,
            ),
            on_outbox=self.sender.wake,
        )
        all_sinks: list[IngestSink] = []
        if rules:
            self.rules = RulesService(
                self.session_factory,
                self.clock,
                timer or SchedulerTimer(self.clock),
                timezone=settings.timezone,
                escalation=self.escalation,
            )
            all_sinks.append(self.rules)
        all_sinks.extend(sinks)
        self.processor = IngestProcessor(settings, self.session_factory, all_sinks)
        self.ingest = IngestService(settings, self.processor, self.clock)
        if self.rules is not None:
            self.rules.feedback = FeedbackPublisher(self.ingest.publish, settings.mqtt.topic_prefix)

    def start(self) -> None:
        with self.session_factory() as session, session.begin():
            ensure_default_policies(session, self.clock.now())
        if self.retention:
            threading.Thread(target=self._retention_loop, name="retention", daemon=True).start()
        if self.background_sender:
            self.sender.start_background()
            # an alarm's first SMS goes to the running sender straight from its commit (ADR 23)
            self.escalation.hand_over = self.sender.hand_over
        self.escalation.start()
        self.ingest.start()
        if self.rules is not None:
            self.rules.start()
        self.settle_heap()

    @staticmethod
    def settle_heap() -> None:
        """Collect once, then freeze what is alive: the modules, mappers and caches built at
        start-up live as long as the process. Python's full collection walks every tracked
        object and holds every thread meanwhile: in a burst of 10,000 escalation steps it ran
        2-3 times for 40-90 ms each. Frozen objects are no longer walked (``gc.freeze``), and a
        full collection then takes 1-2 ms. ``stop`` unfreezes them. ADR 17."""
        gc.collect()
        gc.freeze()

    def _retention_loop(self) -> None:
        """Once at start and then daily: delete raw sensor events past the retention period."""
        while not self._stopping.is_set():
            try:
                total = 0
                while True:
                    with self.session_factory() as session, session.begin():
                        deleted = delete_old_events(
                            session,
                            now=self.clock.now(),
                            days=self.settings.security.event_retention_days,
                            limit=1000,
                        )
                    total += deleted
                    if deleted < 1000:
                        break
                if total:
                    logger.info("retention: deleted %d sensor events", total)
            except Exception:
                logger.exception("retention run failed; trying again tomorrow")
            # a day of the hub's clock (a scaled demo clock makes it shorter in real time)
            self._stopping.wait(24 * 3600 / float(getattr(self.clock, "speed", 1.0)))

    def stop(self) -> None:
        self._stopping.set()
        if self.rules is not None:
            self.rules.stop()
        self.ingest.stop()
        self.escalation.stop()
        self.sender.stop()
        self.engine.dispose()
        gc.unfreeze()  # what this runtime built may be collected again

    def alarm_changed(self, alarm_id: int) -> None:
        """A person changed an alarm (portal/API/SMS): stop escalating if taken, tell the home."""
        self.escalation.on_alarm_changed(alarm_id)
        if self.rules is None or self.rules.feedback is None:
            return
        with self.session_factory() as session:
            alarm = session.get(Alarm, alarm_id)
            if alarm is not None:
                self.rules.feedback.publish_homes(session, [alarm.home_id], self.clock.now())

    def serve_portal(self, stop: threading.Event | None = None) -> None:
        """Serve the portal in this thread until Ctrl-C (or ``stop`` is set)."""
        import uvicorn

        from care_portal.app import create_app

        app = create_app(
            self.settings,
            session_factory=self.session_factory,
            clock=self.clock,
            ingest_status=self.ingest.status,
            on_alarm_changed=self.alarm_changed,
            on_outbox=self.sender.wake,
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
