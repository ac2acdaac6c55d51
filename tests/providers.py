"""A provider double for tests that are not about sending: records what would have been sent."""

from __future__ import annotations

import itertools
import threading


class RecordingProvider:
    """Accepts every SMS and call and remembers it (no network)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def send_sms(self, *, to: str, body: str, status_callback: str) -> str:
        with self._lock:
            self.sent.append(("sms", to, body))
            return f"SMtest{next(self._ids):026d}"

    def start_call(self, *, to: str, twiml_url: str, status_callback: str) -> str:
        with self._lock:
            self.sent.append(("voice", to, twiml_url))
            return f"CAtest{next(self._ids):026d}"
