"""Voice calls through the real twilio client: TwiML fetched, <Say> recorded, keys pressed."""

from __future__ import annotations

import re

from twilio.rest import Client

from tests.simulators.twilio_sim.conftest import (
    GATHER_TWIML,
    HUB_NUMBER,
    NURSE,
    VOICE_TWIML,
    Hook,
    HubStandIn,
    Sim,
)

ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


def call(client: Client, hub: HubStandIn, *, events: list[str] | None = None) -> str:
    kwargs = {"status_callback_event": events} if events else {}
    created = client.calls.create(
        to=NURSE,
        from_=HUB_NUMBER,
        url=f"{hub.url}/voice/twiml",
        status_callback=f"{hub.url}/voice/status",
        **kwargs,
    )
    sid: str = created.sid
    return sid


def ended(hub: HubStandIn, sid: str) -> list[Hook] | None:
    hooks = [h for h in hub.at("/voice/status") if h.params["CallSid"] == sid]
    finals = {"completed", "no-answer", "failed", "busy"}
    return hooks if hooks and hooks[-1].params["CallStatus"] in finals else None


def test_a_call_reads_the_alarm_and_presses_the_scripted_digit(
    client: Client, hub: HubStandIn, sim: Sim
) -> None:
    sim.control.post("/_sim/script", json={"to": NURSE, "digits": "1"}).raise_for_status()

    created = client.calls.create(
        to=NURSE,
        from_=HUB_NUMBER,
        url=f"{hub.url}/voice/twiml",
        status_callback=f"{hub.url}/voice/status",
        status_callback_event=ALL_EVENTS,
    )
    assert re.fullmatch(r"CA[0-9a-f]{32}", created.sid)
    assert created.status == "queued"

    progress = hub.wait_for(lambda: ended(hub, created.sid))
    assert [h.params["CallStatus"] for h in progress] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [h.params["SequenceNumber"] for h in progress] == ["0", "1", "2", "3"]
    fetch = hub.at("/voice/twiml")[0]
    assert fetch.valid
    assert fetch.params["CallStatus"] == "in-progress"
    assert (fetch.params["CallSid"], fetch.params["To"]) == (created.sid, NURSE)
    assert fetch.params["Direction"] == "outbound-api"
    press = hub.at("/voice/gather")[0]  # action="gather", relative to /voice/twiml
    assert press.valid
    assert press.params["Digits"] == "1"
    assert all(h.valid for h in progress)

    record = sim.record(created.sid)
    assert record is not None
    assert record["kind"] == "call"
    assert record["status"] == "completed"
    assert record["digits"] == "1"
    assert record["twiml"] == [VOICE_TWIML, GATHER_TWIML]
    assert {
        "text": "Fall hos Kari. Trykk 1 for å ta alarmen.",
        "language": "nb-NO",
        "voice": None,
    } in record["said"]
    assert record["said"][-1]["text"] == "Alarmen er din."
    assert client.calls(created.sid).fetch().status == "completed"


def test_without_a_script_the_gather_times_out_and_only_completed_is_reported(
    client: Client, hub: HubStandIn, sim: Sim
) -> None:
    sid = call(client, hub)  # no StatusCallbackEvent: Twilio reports "completed" only

    progress = hub.wait_for(lambda: ended(hub, sid))

    assert [h.params["CallStatus"] for h in progress] == ["completed"]
    assert "CallDuration" in progress[0].params
    assert hub.at("/voice/gather") == []
    record = sim.record(sid)
    assert record is not None and record["digits"] is None
    assert [h["status"] for h in record["history"]] == [
        "queued",
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]


def test_a_scripted_no_answer_never_fetches_twiml(
    client: Client, hub: HubStandIn, sim: Sim
) -> None:
    sim.control.post("/_sim/script", json={"to": NURSE, "answer": False}).raise_for_status()

    sid = call(client, hub, events=ALL_EVENTS)
    progress = hub.wait_for(lambda: ended(hub, sid))

    assert [h.params["CallStatus"] for h in progress] == ["initiated", "ringing", "no-answer"]
    assert hub.at("/voice/twiml") == []


def test_a_failed_fault_fails_the_call(client: Client, hub: HubStandIn, sim: Sim) -> None:
    sim.control.post("/_sim/faults", json={"mode": "failed", "to": NURSE}).raise_for_status()

    sid = call(client, hub)

    assert hub.wait_for(lambda: ended(hub, sid))[-1].params["CallStatus"] == "failed"


def test_inline_twiml_is_read_without_a_fetch(client: Client, hub: HubStandIn, sim: Sim) -> None:
    created = client.calls.create(
        to=NURSE,
        from_=HUB_NUMBER,
        twiml='<Response><Say language="en-GB">Test call</Say></Response>',
        status_callback=f"{hub.url}/voice/status",
    )

    hub.wait_for(lambda: ended(hub, created.sid))
    record = sim.record(created.sid)
    assert record is not None
    assert record["said"] == [{"text": "Test call", "language": "en-GB", "voice": None}]
    assert hub.at("/voice/twiml") == []
