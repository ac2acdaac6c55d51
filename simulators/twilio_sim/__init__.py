"""A Twilio-compatible SMS and voice gateway simulator for tests and the demo (port 8025)."""

from __future__ import annotations

from simulators.twilio_sim.app import create_app
from simulators.twilio_sim.config import SimConfig

__all__ = ["SimConfig", "create_app"]
