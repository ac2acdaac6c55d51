"""SMS through the real twilio client: receipts, auth, faults, scripted and TwiML replies."""

from __future__ import annotations

import re

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from hub.clock import SystemClock
from tests.simulators.twilio_sim.conftest import (
    HUB_NUMBER,
    NURSE,
    RELATIVE,
    SMS_REPLY_TWIML,
    Hook,
    HubStandIn,
    Sim,
    twilio_client,
)


def send(client: Client, hub: HubStandIn, to: str = NURSE, body: str = "Fall hos Kari") -> str:
    message = client.messages.create(
        to=to, from_=HUB_NUMBER, body=body, status_callback=f"{hub.url}/sms/status"
    )
    sid: str = message.sid
    return sid


def statuses(hub: HubStandIn, sid: str) -> list[Hook]:
    return [h for h in hub.at("/sms/status") if h.params["MessageSid"] == sid]


def final_status(hub: HubStandIn, sid: str) -> list[Hook] | None:
    hooks = statuses(hub, sid)
    finals = {"delivered", "undelivered", "failed"}
    return hooks if hooks and hooks[-1].params["MessageStatus"] in finals else None


def test_sms_is_queued_then_sent_and_delivered_with_signed_callbacks(
    client: Client, hub: HubStandIn, sim: Sim
) -> None:
    message = client.messages.create(
        to=NURSE,
        from_=HUB_NUMBER,
        body="Fall hos Kari, Åsveien 3",
        status_callback=f"{hub.url}/sms/status",
    )

    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.status == "queued"
    assert (message.to, message.from_, message.body) == (
        NURSE,
        HUB_NUMBER,
        "Fall hos Kari, Åsveien 3",
    )
    assert message.direction == "outbound-api"
    assert message.account_sid == sim.config.account_sid
    assert message.num_segments == "1"
    assert message.error_code is None
    assert message.date_created is not None and message.date_created.tzinfo is not None
    assert (
        message.uri == f"/2010-04-01/Accounts/{sim.config.account_sid}/Messages/{message.sid}.json"
    )

    hooks = hub.wait_for(lambda: final_status(hub, message.sid))
    assert [h.params["MessageStatus"] for h in hooks] == ["sent", "delivered"]
    assert all(h.valid for h in hooks), "every callback validates with RequestValidator"
    assert hooks[-1].params == {
        "AccountSid": sim.config.account_sid,
        "ApiVersion": "2010-04-01",
        "From": HUB_NUMBER,
        "MessageSid": message.sid,
        "MessageStatus": "delivered",
        "SmsSid": message.sid,
        "SmsStatus": "delivered",
        "To": NURSE,
    }
    assert hooks[-1].user_agent.startswith("TwilioProxy")
    assert client.messages(message.sid).fetch().status == "delivered"


def test_a_tampered_callback_would_not_validate(client: Client, hub: HubStandIn) -> None:
    sid = send(client, hub)
    hook = hub.wait_for(lambda: final_status(hub, sid))[-1]
    validator = RequestValidator(hub.token)

    assert validator.validate(hook.url, hook.params, hook.signature)
    forged = {**hook.params, "MessageStatus": "failed"}
    assert not validator.validate(hook.url, forged, hook.signature)
    assert not RequestValidator("not-the-token").validate(hook.url, hook.params, hook.signature)


def test_wrong_credentials_are_refused_with_401(sim: Sim, hub: HubStandIn) -> None:
    client = twilio_client(sim, token="wrong-token")

    with pytest.raises(TwilioRestException) as caught:
        send(client, hub)

    assert caught.value.status == 401
    assert caught.value.code == 20003
    assert sim.messages() == []


def test_a_number_that_is_not_e164_is_refused_with_21211(client: Client, hub: HubStandIn) -> None:
    with pytest.raises(TwilioRestException) as caught:
        send(client, hub, to="91234567")

    assert (caught.value.status, caught.value.code) == (400, 21211)


def test_http_500_fault_fails_one_send_and_the_next_succeeds(
    client: Client, hub: HubStandIn, sim: Sim
) -> None:
    sim.control.post("/_sim/faults", json={"mode": "http_500", "count": 1}).raise_for_status()

    with pytest.raises(TwilioRestException) as caught:
        send(client, hub)
    assert caught.value.status == 500

    sid = send(client, hub)
    assert hub.wait_for(lambda: final_status(hub, sid))[-1].params["MessageStatus"] == "delivered"
    assert [m["sid"] for m in sim.messages()] == [sid]


def test_a_fault_can_target_one_number_until_cleared(
    client: Client, hub: HubStandIn, sim: Sim
) -> None:
    sim.control.post(
        "/_sim/faults", json={"mode": "http_500", "count": None, "to": NURSE}
    ).raise_for_status()

    for _ in range(2):
        with pytest.raises(TwilioRestException):
            send(client, hub, to=NURSE)
    send(client, hub, to=RELATIVE)
    assert sim.control.delete("/_sim/faults").json() == {"cleared": 1}
    send(client, hub, to=NURSE)

    assert sorted(m["to"] for m in sim.messages()) == sorted([RELATIVE, NURSE])


def test_timeout_fault_outlasts_the_client_timeout(hub: HubStandIn, sim: Sim) -> None:
    impatient = twilio_client(sim, timeout=0.3)
    sim.control.post("/_sim/faults", json={"mode": "timeout"}).raise_for_status()

    with pytest.raises(requests.exceptions.Timeout):
        send(impatient, hub)

    assert sim.messages() == []  # the request never went through
    sid = send(impatient, hub)
    assert hub.wait_for(lambda: final_status(hub, sid))


def test_timeout_with_accept_sends_the_sms_though_the_answer_is_lost(
    hub: HubStandIn, sim: Sim
) -> None:
    impatient = twilio_client(sim, timeout=0.3)
    sim.control.post("/_sim/faults", json={"mode": "timeout", "accept": True}).raise_for_status()

    with pytest.raises(requests.exceptions.Timeout):
        send(impatient, hub)

    # The provider took it: a retry by the sender would be a duplicate SMS.
    def receipts() -> list[Hook] | None:
        hooks = hub.at("/sms/status")
        return final_status(hub, hooks[0].params["MessageSid"]) if hooks else None

    assert hub.wait_for(receipts)[-1].params["MessageStatus"] == "delivered"
    assert len(sim.messages()) == 1


@pytest.mark.parametrize(
    ("mode", "expected", "code"),
    [("undelivered", ["sent", "undelivered"], "30003"), ("failed", ["failed"], "30008")],
)
def test_undelivered_and_failed_faults_end_with_an_error_code(
    client: Client, hub: HubStandIn, sim: Sim, mode: str, expected: list[str], code: str
) -> None:
    sim.control.post("/_sim/faults", json={"mode": mode}).raise_for_status()

    sid = send(client, hub)
    hooks = hub.wait_for(lambda: final_status(hub, sid))

    assert [h.params["MessageStatus"] for h in hooks] == expected
    assert hooks[-1].params["ErrorCode"] == code
    assert "ErrorCode" not in hooks[0].params or len(hooks) == 1
    assert all(h.valid for h in hooks)
    fetched = client.messages(sid).fetch()
    assert (fetched.status, fetched.error_code) == (mode, int(code))
    # The fault was used up: the next message is delivered.
    nxt = send(client, hub)
    assert hub.wait_for(lambda: final_status(hub, nxt))[-1].params["MessageStatus"] == "delivered"


def test_slow_fault_delays_the_delivery_receipts(client: Client, hub: HubStandIn, sim: Sim) -> None:
    sim.control.post("/_sim/faults", json={"mode": "slow", "delay_s": 0.2}).raise_for_status()
    pace = SystemClock()

    start = pace.monotonic()
    sid = send(client, hub)
    hub.wait_for(lambda: final_status(hub, sid))

    assert pace.monotonic() - start >= 0.6  # three steps, each 0.2 s late


def test_scripted_reply_comes_back_as_a_signed_inbound_sms(
    client: Client, hub: HubStandIn, sim: Sim
) -> None:
    sim.control.post(
        "/_sim/script", json={"to": NURSE, "reply": "1", "after_s": 0.05}
    ).raise_for_status()

    sid = send(client, hub, to=NURSE)
    inbound = hub.wait_for(lambda: hub.at("/sms/inbound"))[0]

    assert inbound.valid
    assert inbound.params["Body"] == "1"
    assert (inbound.params["From"], inbound.params["To"]) == (NURSE, HUB_NUMBER)
    assert re.fullmatch(r"SM[0-9a-f]{32}", inbound.params["MessageSid"])
    assert inbound.params["SmsSid"] == inbound.params["MessageSid"] != sid
    assert inbound.params["AccountSid"] == sim.config.account_sid
    assert inbound.params["NumMedia"] == "0"
    assert sim.control.get("/_sim/script").json() == []  # used once


def test_sim_inbound_posts_a_signed_webhook_and_records_the_twiml_reply(
    hub: HubStandIn, sim: Sim
) -> None:
    hub.sms_reply = SMS_REPLY_TWIML

    answer = sim.control.post(
        "/_sim/inbound", json={"from": NURSE, "to": HUB_NUMBER, "body": "1"}
    ).json()

    hook = hub.at("/sms/inbound")[0]
    assert hook.valid
    assert (hook.params["From"], hook.params["To"], hook.params["Body"]) == (NURSE, HUB_NUMBER, "1")
    assert answer["status"] == 200
    assert answer["body"] == SMS_REPLY_TWIML
    assert answer["sid"] == hook.params["MessageSid"]
    [reply] = answer["replies"]
    assert (reply["to"], reply["from"], reply["body"]) == (
        NURSE,
        HUB_NUMBER,
        "Du har tatt alarmen.",
    )
    assert reply["direction"] == "outbound-reply"
    assert reply["in_reply_to"] == answer["sid"]
    listed = {m["sid"]: m for m in sim.messages()}
    assert listed[answer["sid"]]["direction"] == "inbound"
    assert listed[reply["sid"]]["body"] == "Du har tatt alarmen."


def test_sim_inbound_goes_to_the_service_number_by_default(sim: Sim, hub: HubStandIn) -> None:
    hub.sms_reply = "<Response/>"
    answer = sim.control.post("/_sim/inbound", json={"from": NURSE, "body": "STOP"}).json()

    assert answer["status"] == 200 and answer["replies"] == []
    assert hub.at("/sms/inbound")[0].params["To"] == sim.config.service_number


def test_messaging_service_sends_are_accepted_then_get_a_sender(
    client: Client, hub: HubStandIn, sim: Sim
) -> None:
    message = client.messages.create(
        to=NURSE,
        messaging_service_sid="MG" + "1" * 32,
        body="Fall hos Kari",
        status_callback=f"{hub.url}/sms/status",
    )

    assert message.status == "accepted"
    assert message.from_ is None
    hook = hub.wait_for(lambda: final_status(hub, message.sid))[-1]
    assert hook.params["From"] == sim.config.service_number
    assert hook.params["MessagingServiceSid"] == "MG" + "1" * 32
