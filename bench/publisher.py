"""A device fleet in a separate process: publishes native v1 events at QoS 1 and logs send times.

Usage: python -m bench.publisher --port P --count N --rate R --devices D --homes H --out FILE
``--rate 0`` publishes as fast as the broker takes them. Send times are ``SystemClock.monotonic``
(CLOCK_MONOTONIC, the same clock in every process), written as JSON ``{"<device>/<seq>": t}``.

``--fleet rules`` publishes door and motion events from the homes of ``rules_fleet`` instead, and
``--falls F`` adds F fall events spread evenly over the run, each from a different home's fall
sensor (``fall_device``); their send times are in the same file.
"""

from __future__ import annotations

import argparse
import json
import threading
from datetime import timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hub.clock import SystemClock

# the devices of one rules-benchmark home: suffix -> (device type, room kind)
HOME_DEVICES: dict[str, tuple[str, str]] = {
    "door": ("door_contact", "entrance"),
    "m-hall": ("motion_sensor", "entrance"),
    "m-bath": ("motion_sensor", "bathroom"),
    "m-living": ("motion_sensor", "living"),
    "fall": ("fall_sensor", "bedroom"),
    "button": ("alarm_button", "living"),
}
LOAD_DEVICES = ("door", "m-hall", "m-bath", "m-living")


def device_ids(devices: int, homes: int) -> list[tuple[str, str]]:
    """(home_id, device_id) pairs of the benchmark fleet."""
    return [(f"bh-{i % homes:04d}", f"bd-{i:05d}") for i in range(devices)]


def rules_home(index: int) -> str:
    """The id of the rules benchmark's home number ``index``."""
    return f"rh-{index:05d}"


def rules_fleet(homes: int) -> list[tuple[str, str]]:
    """(home_id, device_id) of the background load: every home's door and motion sensors."""
    return [
        (rules_home(h), f"{rules_home(h)}-{suffix}")
        for suffix in LOAD_DEVICES
        for h in range(homes)
    ]


def fall_device(index: int) -> tuple[str, str]:
    """(home_id, device_id) of home ``index``'s fall sensor."""
    return rules_home(index), f"{rules_home(index)}-fall"


def _payload(device: str, seq: int, ts: str) -> str:
    if device.endswith("-door"):
        return json.dumps({"type": "door", "ts": ts, "seq": seq, "open": seq % 2 == 1})
    if device.endswith("-fall"):
        return json.dumps({"type": "fall", "ts": ts, "seq": seq, "confidence": 0.95})
    return json.dumps({"type": "motion", "ts": ts, "seq": seq, "motion": True})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--homes", type=int, default=10)
    parser.add_argument("--fleet", choices=("ingest", "rules"), default="ingest")
    parser.add_argument("--falls", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.falls > args.homes:
        raise SystemExit("bench publisher: at most one fall per home")

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

    fleet = (
        rules_fleet(args.homes) if args.fleet == "rules" else device_ids(args.devices, args.homes)
    )
    # the load event before which fall k is sent: spread evenly over the run
    fall_at = {(2 * k + 1) * args.count // (2 * args.falls): k for k in range(args.falls)}
    start_wall = clock.now()
    sent: dict[str, float] = {}
    infos = []
    pace = threading.Event()
    t0 = clock.monotonic()

    def send(home: str, device: str, seq: int, i: int) -> None:
        ts = (start_wall + timedelta(milliseconds=i)).isoformat()
        payload = (
            _payload(device, seq, ts)
            if args.fleet == "rules"
            else json.dumps({"type": "motion", "ts": ts, "seq": seq, "motion": True})
        )
        sent[f"{device}/{seq}"] = clock.monotonic()
        infos.append(client.publish(f"carehub/v1/{home}/{device}/event", payload, qos=1))

    for i in range(args.count):
        if args.rate > 0:
            due = t0 + i / args.rate
            delay = due - clock.monotonic()
            if delay > 0:
                pace.wait(delay)
        if i in fall_at:
            send(*fall_device(fall_at[i]), 1, i)
        home, device = fleet[i % len(fleet)]
        send(home, device, i // len(fleet) + 1, i)
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(sent, fh)


if __name__ == "__main__":
    main()
