"""Escalation: rosters, policies, the engine that reaches people until someone takes the alarm."""
