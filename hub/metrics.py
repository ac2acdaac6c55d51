"""Prometheus metrics of the hub, in one place (names are part of the operator contract)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_RECEIVED = Counter(
    "carehub_mqtt_messages_received_total", "MQTT messages received by the ingest", ["kind"]
)
EVENTS_STORED = Counter("carehub_events_stored_total", "Sensor events committed", ["kind"])
EVENTS_DUPLICATE = Counter(
    "carehub_events_duplicate_total", "Sensor events recognised as duplicates and stored once"
)
MESSAGES_REJECTED = Counter(
    "carehub_messages_rejected_total", "MQTT messages rejected, by reason", ["reason"]
)
MESSAGES_IGNORED = Counter(
    "carehub_messages_ignored_total", "MQTT messages on subscribed topics not meant for the hub"
)
DISCOVERED_MESSAGES = Counter(
    "carehub_discovered_device_messages_total", "Messages from devices that are not registered"
)
BATCH_COMMITS = Counter("carehub_ingest_batches_total", "Ingest transactions committed")
INGEST_BUSY = Counter(
    "carehub_ingest_busy_seconds_total",
    "Seconds the ingest worker spent committing batches (its rate near 1: the worker is saturated "
    "and a fall waits behind big batches)",
)
BATCH_FAILURES = Counter(
    "carehub_ingest_batch_failures_total", "Ingest transactions that failed and were retried"
)
BATCH_SIZE = Histogram(
    "carehub_ingest_batch_size",
    "Messages per ingest transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
INGEST_LATENCY = Histogram(
    "carehub_ingest_latency_seconds",
    "Time from a message's arrival at the hub to its commit",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
MQTT_CONNECTED = Gauge("carehub_mqtt_connected", "1 while the hub's MQTT session is connected")
INGEST_QUEUE = Gauge("carehub_ingest_queue_depth", "Messages received and not yet committed")
ALARMS_OPENED = Counter(
    "carehub_alarms_opened_total", "Alarms opened by the rules", ["type", "severity"]
)
ESCALATION_STEPS = Counter("carehub_escalation_steps_total", "Escalation steps run")
ALARMS_UNANSWERED = Counter(
    "carehub_alarms_unanswered_total", "Alarms that passed every escalation round untaken"
)
NOTIFICATIONS_SENT = Counter(
    "carehub_notifications_sent_total", "Messages handed to the provider", ["channel"]
)
NOTIFICATION_FAILURES = Counter(
    "carehub_notification_failures_total", "Provider errors while sending", ["channel", "kind"]
)
