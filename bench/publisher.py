"""A device fleet in a separate process: publishes native v1 events at QoS 1 and logs send times.

Usage: python -m bench.publisher --port P --count N --rate R --devices D --homes H --out FILE
``--rate 0`` publishes as fast as the broker takes them. Send times are ``SystemClock.monotonic``
(CLOCK_MONOTONIC, the same clock in every process), written as JSON ``{"<device>/<seq>": t}``.
"""

from __future__ import annotations

import argparse
import json
import threading
from datetime import timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hub.clock import SystemClock


def device_ids(devices: int, homes: int) -> list[tuple[str, str]]:
    """(home_id, device_id) pairs of the benchmark fleet."""
    return [(f"bh-{i % homes:04d}", f"bd-{i:05d}") for i in range(devices)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--homes", type=int, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    clock = SystemClock()
    connected = threading.Event()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="bench-fleet",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.on_connect = lambda *a: connected.set()
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(args.host, args.port)
    client.loop_start()
    if not connected.wait(10):
        raise SystemExit("bench publisher: cannot connect")

    fleet = device_ids(args.devices, args.homes)
    start_wall = clock.now()
    sent: dict[str, float] = {}
    infos = []
    pace = threading.Event()
    t0 = clock.monotonic()
    for i in range(args.count):
        if args.rate > 0:
            due = t0 + i / args.rate
            delay = due - clock.monotonic()
            if delay > 0:
                pace.wait(delay)
        home, device = fleet[i % len(fleet)]
        seq = i // len(fleet) + 1
        ts = (start_wall + timedelta(milliseconds=i)).isoformat()
        payload = json.dumps({"type": "motion", "ts": ts, "seq": seq, "motion": True})
        sent[f"{device}/{seq}"] = clock.monotonic()
        infos.append(client.publish(f"carehub/v1/{home}/{device}/event", payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(sent, fh)


if __name__ == "__main__":
    main()
