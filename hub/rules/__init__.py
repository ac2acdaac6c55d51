"""Alarm rules: pure functions of (config, state, observation or due time, now) -> decisions."""
