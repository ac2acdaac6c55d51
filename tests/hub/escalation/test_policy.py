"""Escalation policies: refused shapes and their reasons, the defaults, per-resident choice."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub.escalation.policy import (
    Policy,
    PolicyError,
    Step,
    Target,
    check_reaches_someone,
    default_policies,
    ensure_default_policies,
    from_snapshot,
    parse_policy,
    policy_for,
    policy_steps_json,
    snapshot,
    validate_policy,
)
from hub.storage.models import EscalationPolicy, Resident, Severity, StaffRole, StaffUser, Zone
from tests.factories import add_home

OSLO = ZoneInfo("Europe/Oslo")
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
ON_DUTY = {"kind": "on_duty"}
RELATIVES = {"kind": "acting_relatives"}


def policy(*steps: dict[str, Any], rounds: int = 3) -> dict[str, Any]:
    return {"name": "Natt Ørje", "repeat_rounds": rounds, "steps": list(steps)}


def step(
    *targets: dict[str, Any], channels: tuple[str, ...] = ("sms",), wait: int = 60
) -> dict[str, Any]:
    return {"wait_s": wait, "targets": list(targets), "channels": list(channels)}


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (policy(), "has no steps: it would reach nobody"),
        (policy(step()), "step 1 has no targets"),
        (policy(step(ON_DUTY, channels=())), "step 1 has no channels"),
        (policy(step(ON_DUTY), step({"kind": "role"})), "step 2: a 'role' target needs a role"),
        (policy(step({"kind": "users"})), "step 1: a 'users' target needs at least one user id"),
        (
            policy(step({"kind": "on_duty", "role": "nurse"})),
            "a target of kind 'on_duty' takes no role",
        ),
        (policy(step({"kind": "role", "role": "nurse", "user_ids": [1]})), "takes no user ids"),
        (policy(step(ON_DUTY, channels=("sms", "sms"))), "lists the channel 'sms' twice"),
        (policy(step(RELATIVES)), "the first step must reach staff"),
        (
            policy(step(ON_DUTY), step(RELATIVES, channels=("portal",))),
            "step 2 reaches only relatives, by portal only",
        ),
        (
            policy(step(ON_DUTY, channels=("portal",)), step(RELATIVES)),
            "at least one step must reach staff by sms or voice",
        ),
        (policy(step(ON_DUTY, wait=0), step(ON_DUTY, wait=0)), "every round would fire at once"),
    ],
)
def test_a_policy_that_reaches_nobody_is_refused_with_a_reason(
    data: dict[str, Any], reason: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)

    assert reason in str(caught.value)
    assert "'Natt Ørje'" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (policy(step(ON_DUTY), rounds=0), "repeat_rounds"),
        (policy(step(ON_DUTY), rounds=11), "repeat_rounds"),
        (policy(step(ON_DUTY, wait=-1)), "steps.0.wait_s"),
        (policy(step({"kind": "everyone"})), "steps.0.targets.0.kind"),
        (policy(step(ON_DUTY, channels=("pager",))), "steps.0.channels.0"),
        (policy(step({"kind": "role", "role": "doctor"})), "steps.0.targets.0.role"),
        ({**policy(step(ON_DUTY)), "colour": "red"}, "colour"),
    ],
)
def test_a_malformed_policy_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError, match="is malformed") as caught:
        parse_policy(data)

    assert field in str(caught.value)


def test_a_sensible_policy_passes_including_a_single_round_without_waits() -> None:
    parse_policy(policy(step(ON_DUTY, channels=("portal", "sms"), wait=0), rounds=1))
    parse_policy(
        policy(step(ON_DUTY, channels=("portal",)), step({"kind": "users", "user_ids": [4]}))
    )


# --- defaults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", list(Severity))
def test_every_default_policy_is_valid(severity: Severity) -> None:
    validate_policy(default_policies()[severity])


def test_the_red_default_is_the_product_brief() -> None:
    red = default_policies()[Severity.RED]

    assert red.repeat_rounds == 3
    assert [(s.wait_s, s.channels) for s in red.steps] == [
        (120, ["portal", "sms"]),
        (180, ["sms", "voice"]),
        (300, ["sms"]),
    ]
    assert [[(t.kind, t.role) for t in s.targets] for s in red.steps] == [
        [("on_duty", None)],
        [("zone_staff", StaffRole.NURSE), ("role", StaffRole.COORDINATOR)],
        [("acting_relatives", None)],
    ]


def test_yellow_is_red_without_voice_and_green_never_reaches_relatives() -> None:
    defaults = default_policies()
    red, yellow, green = defaults[Severity.RED], defaults[Severity.YELLOW], defaults[Severity.GREEN]

    assert [s.targets for s in yellow.steps] == [s.targets for s in red.steps]
    assert [s.wait_s for s in yellow.steps] == [s.wait_s for s in red.steps]
    assert all("voice" not in s.channels for s in yellow.steps)
    assert all(t.kind != "acting_relatives" for s in green.steps for t in s.targets)
    assert green.steps[0].targets == [Target(kind="role", role=StaffRole.INSTALLER)]
    assert min(s.wait_s for s in green.steps) > max(s.wait_s for s in red.steps)


def _default_rows(factory: sessionmaker[Session]) -> dict[str, str]:
    with factory() as session:
        rows = session.scalars(
            select(EscalationPolicy).where(EscalationPolicy.default_for_severity.is_not(None))
        ).all()
        return {str(r.default_for_severity): r.name for r in rows}


def test_ensure_default_policies_is_idempotent(session_factory: sessionmaker[Session]) -> None:
    for _ in range(2):
        with session_factory() as session, session.begin():
            ensure_default_policies(session, T0)

    assert _default_rows(session_factory) == {
        "red": "Default red",
        "yellow": "Default yellow",
        "green": "Default green",
    }
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(EscalationPolicy)) == 3
        red = session.scalars(
            select(EscalationPolicy).where(EscalationPolicy.default_for_severity == "red")
        ).one()
        assert _is_the_built_in_red(red)


def _is_the_built_in_red(row: EscalationPolicy) -> bool:
    red = default_policies()[Severity.RED]
    return row.repeat_rounds == red.repeat_rounds and row.steps == policy_steps_json(red)


def test_ensure_default_policies_keeps_a_coordinators_default_and_dodges_a_taken_name(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session, session.begin():
        session.add_all(
            [
                _row("Ørje red", severity="red"),
                _row("Default yellow", severity=None),  # a coordinator's copy, not a default
            ]
        )
    with session_factory() as session, session.begin():
        ensure_default_policies(session, T0)

    assert _default_rows(session_factory) == {
        "red": "Ørje red",
        "yellow": "Default yellow (2)",
        "green": "Default green",
    }


def _row(
    name: str, severity: str | None, steps: list[dict[str, Any]] | None = None
) -> EscalationPolicy:
    return EscalationPolicy(
        name=name,
        repeat_rounds=1,
        default_for_severity=severity,
        steps=steps if steps is not None else [step(ON_DUTY, channels=("portal", "sms"))],
        created_at=T0,
    )


# --- choosing a policy for an alarm ------------------------------------------------------------


@pytest.fixture
def resident_db(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    add_home(session_factory)
    return session_factory


def _resident(session: Session) -> Resident:
    return session.scalars(select(Resident)).one()


def test_policy_for_prefers_the_residents_own_policy(resident_db: sessionmaker[Session]) -> None:
    with resident_db() as session, session.begin():
        ensure_default_policies(session, T0)
        own = _row("Kari: daughter first", severity=None)
        session.add(own)
        session.flush()
        _resident(session).escalation_policy_id = own.id

    with resident_db() as session:
        chosen = policy_for(session, _resident(session), Severity.RED)

    assert chosen.name == "Kari: daughter first"
    assert chosen.repeat_rounds == 1


def test_policy_for_uses_the_stored_default_then_the_built_in_one(
    resident_db: sessionmaker[Session],
) -> None:
    with resident_db() as session:
        assert (
            policy_for(session, _resident(session), Severity.YELLOW)
            == (default_policies()[Severity.YELLOW])
        )
    with resident_db() as session, session.begin():
        session.add(_row("Ørje yellow", severity="yellow"))

    with resident_db() as session:
        assert policy_for(session, _resident(session), Severity.YELLOW).name == "Ørje yellow"
        assert policy_for(session, _resident(session), Severity.RED).name == "Default red"


def test_a_broken_stored_policy_is_logged_and_the_alarm_still_gets_one(
    resident_db: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    with resident_db() as session, session.begin():
        broken = _row("Kari: broken", severity=None, steps=[step(RELATIVES)])
        session.add_all([broken, _row("Ørje red", severity="red")])
        session.flush()
        _resident(session).escalation_policy_id = broken.id

    with resident_db() as session, caplog.at_level(logging.ERROR, "hub.escalation.policy"):
        chosen = policy_for(session, _resident(session), Severity.RED)

    assert chosen.name == "Ørje red"
    assert "Kari: broken" in caplog.text and "first step must reach staff" in caplog.text


# --- snapshots ---------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", list(Severity))
def test_a_snapshot_survives_json_and_comes_back_equal(severity: Severity) -> None:
    original = default_policies()[severity]

    stored = json.loads(json.dumps(snapshot(original)))

    assert stored["version"] == 1
    assert from_snapshot(stored) == original


def test_a_snapshot_with_named_users_round_trips() -> None:
    original = Policy(
        name="Named",
        repeat_rounds=2,
        steps=[
            Step(wait_s=30, targets=[Target(kind="users", user_ids=[3, 1])], channels=["voice"])
        ],
    )

    assert from_snapshot(json.loads(json.dumps(snapshot(original)))) == original


def test_an_unknown_snapshot_version_is_refused() -> None:
    data = {**snapshot(default_policies()[Severity.RED]), "version": 99}

    with pytest.raises(PolicyError, match="version 99"):
        from_snapshot(data)


# --- warnings for the portal -------------------------------------------------------------------


def test_check_reaches_someone_warns_when_nobody_is_on_duty_or_has_a_phone(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session, session.begin():
        zone = Zone(name="Ørje", created_at=T0)
        session.add(zone)
        session.flush()
        session.add(
            StaffUser(
                username="anna",
                display_name="Anna",
                role=StaffRole.NURSE,
                password_hash="x",
                phone=None,
                zone_id=zone.id,
                created_at=T0,
            )
        )
        zone_id = zone.id
    red = default_policies()[Severity.RED]

    with session_factory() as session:
        warnings = check_reaches_someone(session, red, zone_id, OSLO, T0)

    assert "step 1: on duty in Ørje is nobody at the moment" in warnings
    assert "step 2: the role coordinator for Ørje is nobody at the moment" in warnings
    assert "step 2: none of the staff it reaches has a phone number for sms or voice" in warnings
    assert warnings[-1] == "in zone Ørje, no staff member can be reached by sms or voice now"


def test_check_reaches_someone_is_quiet_when_all_is_well(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session, session.begin():
        zone = Zone(name="Ørje", created_at=T0)
        session.add(zone)
        session.flush()
        session.add(
            StaffUser(
                username="anna",
                display_name="Anna",
                role=StaffRole.NURSE,
                password_hash="x",
                phone="+4790000000",
                zone_id=zone.id,
                created_at=T0,
            )
        )
        zone_id = zone.id
    nurses = Policy(
        name="Nurses",
        repeat_rounds=1,
        steps=[
            Step(
                wait_s=60,
                targets=[Target(kind="zone_staff", role=StaffRole.NURSE)],
                channels=["sms"],
            )
        ],
    )

    with session_factory() as session:
        assert check_reaches_someone(session, nurses, zone_id, OSLO, T0) == []
        assert check_reaches_someone(session, nurses, zone_id + 99, OSLO, T0) == [
            f"zone {zone_id + 99} does not exist"
        ]
