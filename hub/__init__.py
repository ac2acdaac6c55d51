"""CareHub hub service: ingest, rules, alarms, escalation, notification, storage and CLI."""
