"""Tests for rosters, escalation policies and recipients."""
