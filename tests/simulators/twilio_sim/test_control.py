"""The simulator's own controls: listing, clearing, validation of faults and scripts, health."""

from __future__ import annotations

import httpx
from twilio.rest import Client

from hub.broker import free_port
from simulators.twilio_sim import SimConfig, create_app
from tests.simulators.twilio_sim.conftest import (
    HOST,
    HUB_NUMBER,
    NURSE,
    HubStandIn,
    Server,
    Sim,
)


def test_messages_lists_sms_and_calls_and_can_be_filtered_and_cleared(
    client: Client, hub: HubStandIn, sim: Sim
) -> None:
    sms = client.messages.create(to=NURSE, from_=HUB_NUMBER, body="Fall hos Kari")
    voice = client.calls.create(to=NURSE, from_=HUB_NUMBER, url=f"{hub.url}/voice/twiml")

    listed = sim.messages()
    assert [(m["sid"], m["kind"]) for m in listed] == [(sms.sid, "sms"), (voice.sid, "call")]
    assert listed[0]["body"] == "Fall hos Kari"
    assert listed[0]["history"][0]["status"] == "queued"
    assert listed[0]["resource_url"] == f"{sim.url}{sms.uri}"
    assert [m["sid"] for m in sim.messages(kind="call")] == [voice.sid]
    assert sim.messages(to="+4700000000") == []

    assert sim.control.delete("/_sim/messages").json() == {"cleared": 2}
    assert sim.messages() == []


def test_faults_and_scripts_are_validated_listed_and_cleared(sim: Sim) -> None:
    control = sim.control
    assert control.post("/_sim/faults", json={"mode": "explode"}).status_code == 422
    assert control.post("/_sim/faults", json={"mode": "slow"}).status_code == 422  # no delay
    assert control.post("/_sim/script", json={"to": NURSE}).status_code == 422  # does nothing
    assert control.post("/_sim/script", json={"to": "123", "reply": "1"}).status_code == 422

    fault = control.post("/_sim/faults", json={"mode": "undelivered", "count": 2, "to": NURSE})
    assert fault.status_code == 201
    assert fault.json()["remaining"] == 2
    assert control.post("/_sim/script", json={"to": NURSE, "reply": "1"}).json()["kind"] == "sms"
    assert control.post("/_sim/script", json={"to": NURSE, "digits": "1"}).json()["kind"] == "call"
    assert len(control.get("/_sim/faults").json()) == 1
    assert len(control.get("/_sim/script").json()) == 2

    assert control.delete("/_sim/faults").json() == {"cleared": 1}
    assert control.delete("/_sim/script").json() == {"cleared": 2}


def test_health(sim: Sim) -> None:
    health = sim.control.get("/_sim/health").json()

    assert health["status"] == "ok"
    assert health["account_sid"] == sim.config.account_sid
    assert health["inbound_sms_url"] == sim.config.inbound_sms_url


def test_rest_calls_for_another_account_are_not_found(sim: Sim) -> None:
    other = "AC" + "1" * 32
    response = sim.control.post(
        f"/2010-04-01/Accounts/{other}/Messages.json",
        data={"To": NURSE, "From": HUB_NUMBER, "Body": "x"},
        auth=(sim.config.account_sid, sim.config.auth_token),
    )

    assert response.status_code == 404
    assert response.json()["code"] == 20404


def test_unauthenticated_rest_calls_get_twilios_error_body(sim: Sim) -> None:
    response = sim.control.post(
        f"/2010-04-01/Accounts/{sim.config.account_sid}/Messages.json",
        data={"To": NURSE, "From": HUB_NUMBER, "Body": "x"},
    )

    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


def test_inbound_to_an_unreachable_hub_answers_502() -> None:
    nowhere = f"http://{HOST}:{free_port(HOST)}/sms"  # nothing listens there
    port = free_port(HOST)
    server = Server(create_app(SimConfig(port=port, inbound_sms_url=nowhere)), port)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=5.0) as control:
            response = control.post("/_sim/inbound", json={"from": NURSE, "body": "1"})
            listed = control.get("/_sim/messages").json()
    finally:
        server.stop()

    assert response.status_code == 502
    assert response.json()["status"] is None
    assert "ConnectError" in response.json()["error"]
    assert listed[0]["webhooks"][0]["error"] == response.json()["error"]
