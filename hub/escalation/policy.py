"""Escalation policies: their typed shape, validation, the defaults per severity, snapshots."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from hub.escalation import roster
from hub.storage.models import EscalationPolicy, Resident, Severity, StaffRole, StaffUser, Zone

logger = logging.getLogger(__name__)

TargetKind = Literal["on_duty", "zone_staff", "role", "users", "acting_relatives"]
Channel = Literal["portal", "sms", "voice"]

STAFF_TARGETS: frozenset[str] = frozenset({"on_duty", "zone_staff", "role", "users"})
PHONE_CHANNELS: frozenset[str] = frozenset({"sms", "voice"})
SNAPSHOT_VERSION = 1


class Target(BaseModel):
    """Who a step reaches.

    - ``on_duty``: staff on duty in the resident's zone now (``roster.on_duty``);
    - ``zone_staff``: every active staff member of the zone, only ``role`` if given;
    - ``role``: staff with ``role`` in the zone or without a zone (municipality-wide);
    - ``users``: the named accounts ``user_ids``, in that order;
    - ``acting_relatives``: the resident's acting relatives in priority order, by their wishes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TargetKind
    role: StaffRole | None = None
    user_ids: list[int] = Field(default_factory=list)


class Step(BaseModel):
    """Reach ``targets`` on ``channels``, then wait ``wait_s`` before the next step (or round)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wait_s: int = Field(ge=0)
    targets: list[Target]
    channels: list[Channel]


class Policy(BaseModel):
    """Ordered steps, run ``repeat_rounds`` times; after the last round the alarm is unanswered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    repeat_rounds: int = Field(ge=1, le=10)
    steps: list[Step]


class PolicyError(ValueError):
    """A policy refused, with a reason a coordinator can read."""


def validate_policy(policy: Policy) -> None:
    """Refuse a policy that could reach nobody; raises ``PolicyError`` naming the first problem.

    Rules: at least one step; every step has targets and channels; a ``role`` target names its
    role, a ``users`` target its user ids, and no other target carries them (``zone_staff`` may
    narrow by role); a step reaching only relatives uses SMS or voice (relatives have no
    portal); the first step reaches staff (home care carries the responsibility, relatives
    come later); some step reaches staff by SMS or voice (a portal nobody looks at reaches
    nobody; relatives may have opted out); and with several rounds, waits that add up to more
    than zero (else every round would fire in the same instant).
    """
    where = f"policy {policy.name!r}"
    if not policy.steps:
        raise PolicyError(f"{where} has no steps: it would reach nobody")
    for number, step in enumerate(policy.steps, start=1):
        at = f"{where}, step {number}"
        if not step.targets:
            raise PolicyError(f"{at} has no targets: say whom it should reach")
        if not step.channels:
            raise PolicyError(f"{at} has no channels: choose portal, sms or voice")
        for channel in step.channels:
            if step.channels.count(channel) > 1:
                raise PolicyError(f"{at} lists the channel {channel!r} twice")
        for target in step.targets:
            _check_target(at, target)
        if all(t.kind == "acting_relatives" for t in step.targets) and not (
            set(step.channels) & PHONE_CHANNELS
        ):
            raise PolicyError(
                f"{at} reaches only relatives, by portal only: relatives have no portal, "
                "add sms or voice"
            )
    if not any(t.kind in STAFF_TARGETS for t in policy.steps[0].targets):
        raise PolicyError(
            f"{where}: the first step must reach staff (on duty, zone staff, a role or named "
            "users), not only relatives"
        )
    if not any(
        set(step.channels) & PHONE_CHANNELS and any(t.kind in STAFF_TARGETS for t in step.targets)
        for step in policy.steps
    ):
        raise PolicyError(
            f"{where} reaches staff only in the portal: at least one step must reach staff by "
            "sms or voice"
        )
    if policy.repeat_rounds > 1 and sum(step.wait_s for step in policy.steps) == 0:
        raise PolicyError(
            f"{where} repeats {policy.repeat_rounds} rounds with no waits: every round would "
            "fire at once; give a step a wait"
        )


def _check_target(at: str, target: Target) -> None:
    if target.kind == "role" and target.role is None:
        raise PolicyError(f"{at}: a 'role' target needs a role (nurse, coordinator, ...)")
    if target.kind == "users" and not target.user_ids:
        raise PolicyError(f"{at}: a 'users' target needs at least one user id")
    if target.role is not None and target.kind not in ("role", "zone_staff"):
        raise PolicyError(f"{at}: a target of kind {target.kind!r} takes no role")
    if target.user_ids and target.kind != "users":
        raise PolicyError(f"{at}: a target of kind {target.kind!r} takes no user ids")


def parse_policy(data: dict[str, Any]) -> Policy:
    """Parse and validate a policy from JSON-like data; every problem is a ``PolicyError``."""
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'policy'}: {error['msg']}"
            for error in exc.errors()
        )
        raise PolicyError(f"policy {data.get('name')!r} is malformed: {reasons}") from exc
    validate_policy(policy)
    return policy


def check_reaches_someone(
    session: Session, policy: Policy, zone_id: int, tz: ZoneInfo, at: datetime
) -> list[str]:
    """Warnings (not errors) about whom the policy would reach in ``zone_id`` at ``at``.

    For the portal's policy and roster pages: an empty list means every staff target resolves
    to someone who can be reached on the step's channels. Relatives are per resident and are
    not checked here.
    """
    try:
        validate_policy(policy)
    except PolicyError as exc:
        return [str(exc)]
    zone = session.get(Zone, zone_id)
    if zone is None:
        return [f"zone {zone_id} does not exist"]
    warnings: list[str] = []
    reached_by_phone = False
    for number, step in enumerate(policy.steps, start=1):
        phone_step = bool(set(step.channels) & PHONE_CHANNELS)
        step_people: dict[int, StaffUser] = {}
        for target in step.targets:
            if target.kind == "acting_relatives":
                continue
            people = _staff_for(session, target, zone_id, at, tz)
            if not people:
                warnings.append(
                    f"step {number}: {_describe(target, zone.name)} is nobody at the moment"
                )
            step_people.update((p.id, p) for p in people)
        if phone_step and step_people:
            if any(p.phone for p in step_people.values()):
                reached_by_phone = True
            else:
                warnings.append(
                    f"step {number}: none of the staff it reaches has a phone number for "
                    f"{' or '.join(c for c in step.channels if c in PHONE_CHANNELS)}"
                )
    if not reached_by_phone:
        warnings.append(f"in zone {zone.name}, no staff member can be reached by sms or voice now")
    return warnings


def _staff_for(
    session: Session, target: Target, zone_id: int, at: datetime, tz: ZoneInfo
) -> list[StaffUser]:
    if target.kind == "on_duty":
        return roster.on_duty(session, zone_id, at, tz)
    if target.kind == "zone_staff":
        return roster.zone_staff(session, zone_id, None if target.role is None else {target.role})
    if target.kind == "role":
        assert target.role is not None  # validate_policy
        return roster.role_staff(session, zone_id, target.role)
    if target.kind == "users":
        return roster.named_staff(session, target.user_ids)
    return []


def _describe(target: Target, zone_name: str) -> str:
    if target.kind == "on_duty":
        return f"on duty in {zone_name}"
    if target.kind == "zone_staff":
        role = f"{target.role.value}s" if target.role else "staff"
        return f"every active {role} of {zone_name}"
    if target.kind == "role":
        return f"the role {target.role.value if target.role else '?'} for {zone_name}"
    return f"the users {target.user_ids} (active ones)"


def default_policies() -> dict[Severity, Policy]:
    """The built-in policies per severity (PRODUCT.md's red default; yellow and green derived)."""
    on_duty = Target(kind="on_duty")
    nurses = Target(kind="zone_staff", role=StaffRole.NURSE)
    coordinator = Target(kind="role", role=StaffRole.COORDINATOR)
    relatives = Target(kind="acting_relatives")
    installers = Target(kind="role", role=StaffRole.INSTALLER)
    return {
        Severity.RED: Policy(
            name="Default red",
            repeat_rounds=3,
            steps=[
                Step(wait_s=120, targets=[on_duty], channels=["portal", "sms"]),
                Step(wait_s=180, targets=[nurses, coordinator], channels=["sms", "voice"]),
                Step(wait_s=300, targets=[relatives], channels=["sms"]),
            ],
        ),
        Severity.YELLOW: Policy(
            name="Default yellow",
            repeat_rounds=3,
            steps=[
                Step(wait_s=120, targets=[on_duty], channels=["portal", "sms"]),
                Step(wait_s=180, targets=[nurses, coordinator], channels=["sms"]),
                Step(wait_s=300, targets=[relatives], channels=["sms"]),
            ],
        ),
        # Technical: the people who can fix a device first; the night nurse only when they
        # have not answered (alarm fatigue), never relatives.
        Severity.GREEN: Policy(
            name="Default green",
            repeat_rounds=2,
            steps=[
                Step(wait_s=900, targets=[installers], channels=["portal", "sms"]),
                Step(wait_s=1800, targets=[on_duty], channels=["portal", "sms"]),
            ],
        ),
    }


def policy_steps_json(policy: Policy) -> list[dict[str, Any]]:
    """The ``escalation_policies.steps`` JSON of a policy."""
    return [step.model_dump(mode="json") for step in policy.steps]


def ensure_default_policies(session: Session, now: datetime) -> None:
    """Insert the built-in default of every severity that has no default policy row.

    Flushes nothing else and commits nothing: the caller owns the transaction. Safe when two
    hubs start at once (``INSERT ... ON CONFLICT DO NOTHING``); a name already used by another
    policy gets a suffix rather than blocking the default.
    """
    present = set(
        session.scalars(
            select(EscalationPolicy.default_for_severity).where(
                EscalationPolicy.default_for_severity.is_not(None)
            )
        )
    )
    taken = set(session.scalars(select(EscalationPolicy.name)))
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    for severity, policy in default_policies().items():
        if severity.value in present:
            continue
        name = policy.name
        suffix = 1
        while name in taken:
            suffix += 1
            name = f"{policy.name} ({suffix})"
        taken.add(name)
        statement = (
            insert(EscalationPolicy)
            .values(
                name=name,
                repeat_rounds=policy.repeat_rounds,
                default_for_severity=severity.value,
                steps=policy_steps_json(policy),
                created_at=now,
            )
            .on_conflict_do_nothing()
        )
        session.execute(statement)
        logger.info("default escalation policy for %s alarms created: %s", severity.value, name)


def policy_from_row(row: EscalationPolicy) -> Policy:
    """The typed, validated policy of a row; ``PolicyError`` if it is malformed."""
    return parse_policy({"name": row.name, "repeat_rounds": row.repeat_rounds, "steps": row.steps})


def policy_for(session: Session, resident: Resident, severity: Severity) -> Policy:
    """The policy an alarm of ``severity`` for ``resident`` starts with.

    The resident's own policy, else the database default for the severity, else the built-in
    default. A stored policy that is malformed is logged as an error and skipped for the next
    one: an alarm is never left without a policy.
    """
    candidates: list[EscalationPolicy | None] = []
    if resident.escalation_policy_id is not None:
        candidates.append(session.get(EscalationPolicy, resident.escalation_policy_id))
    candidates.append(
        session.scalars(
            select(EscalationPolicy).where(EscalationPolicy.default_for_severity == severity.value)
        ).one_or_none()
    )
    for row in candidates:
        if row is None:
            continue
        try:
            return policy_from_row(row)
        except PolicyError as exc:
            logger.error(
                "escalation policy %s (%s) unusable for resident %s, falling back: %s",
                row.id,
                row.name,
                resident.id,
                exc,
            )
    return default_policies()[severity]


def snapshot(policy: Policy) -> dict[str, Any]:
    """The JSON an alarm keeps of the policy it started with (later edits do not change it)."""
    return {"version": SNAPSHOT_VERSION, **policy.model_dump(mode="json")}


def from_snapshot(data: dict[str, Any]) -> Policy:
    """The policy of a snapshot. Parsed, not re-validated: a running alarm keeps its policy."""
    body = dict(data)
    version = body.pop("version", None)
    if version != SNAPSHOT_VERSION:
        raise PolicyError(f"unknown policy snapshot version {version!r}")
    return Policy.model_validate(body)
