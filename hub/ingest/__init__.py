"""Ingest: MQTT messages in, decoded, stored once, acknowledged only after commit."""
