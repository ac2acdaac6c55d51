"""The SQLAlchemy 2 typed ORM model of CareHub. Alembic (``alembic/``) owns the schema."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from hub.storage.crypto import EncryptedString, JSONWithPrivateText, maintain_phone_index

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A 64-bit key that is still SQLite's INTEGER PRIMARY KEY (so it autoincrements there).
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC; SQLite gives naive values back, we restore UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store timezone-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class StaffRole(enum.StrEnum):
    ADMIN = "admin"
    COORDINATOR = "coordinator"
    NURSE = "nurse"
    INSTALLER = "installer"


class RelativeRole(enum.StrEnum):
    ACTING = "acting"
    INFORMED = "informed"


class DeviceType(enum.StrEnum):
    FALL_SENSOR = "fall_sensor"
    DOOR_CONTACT = "door_contact"
    MOTION_SENSOR = "motion_sensor"
    ALARM_BUTTON = "alarm_button"


class Protocol(enum.StrEnum):
    NATIVE = "native"
    ZIGBEE2MQTT = "zigbee2mqtt"


class AlarmStatus(enum.StrEnum):
    OPEN = "open"
    NOTIFIED = "notified"
    ACKNOWLEDGED = "acknowledged"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


class Severity(enum.StrEnum):
    RED = "red"
    YELLOW = "yellow"
    GREEN = "green"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK-free VARCHAR: adding a value needs no type migration.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda e: [m.value for m in e],
    )


class Zone(Base):
    """A home-care district (e.g. "Ørje") with its own roster."""

    __tablename__ = "zones"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Home(Base):
    """A resident's dwelling; ``id`` is the ``<home_id>`` of the MQTT topics."""

    __tablename__ = "homes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    address: Mapped[str | None] = mapped_column(EncryptedString("homes.address"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    rooms: Mapped[list[Room]] = relationship(back_populates="home", order_by="Room.id")
    devices: Mapped[list[Device]] = relationship(back_populates="home", order_by="Device.id")
    residents: Mapped[list[Resident]] = relationship(back_populates="home")


class Room(Base):
    __tablename__ = "rooms"
    __table_args__ = (UniqueConstraint("home_id", "name", name="uq_rooms_home_id_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # bedroom, bathroom, entrance, living, kitchen, other
    kind: Mapped[str] = mapped_column(String(32), default="other")

    home: Mapped[Home] = relationship(back_populates="rooms")


class Resident(Base):
    """A person receiving home care (tjenestemottaker)."""

    __tablename__ = "residents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    # Short label safe for an SMS to staff (e.g. "Kari N., Storgata"); never health details.
    # Encrypted too (a first name, an initial and a street identify a person): never filter or
    # order by it in SQL (docs/privacy.md).
    label: Mapped[str] = mapped_column(EncryptedString("residents.label"))
    full_name: Mapped[str] = mapped_column(EncryptedString("residents.full_name"))
    absence_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Per-resident overrides of the rule defaults (hub.rules.config.RuleConfig); NULL = defaults.
    rule_config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Escalation policy for this resident; NULL = the default policy of the alarm's severity.
    escalation_policy_id: Mapped[int | None] = mapped_column(ForeignKey("escalation_policies.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    home: Mapped[Home] = relationship(back_populates="residents")
    relatives: Mapped[list[Relative]] = relationship(
        back_populates="resident", order_by="Relative.priority"
    )


class Relative(Base):
    """A resident's relative (pårørende): acting (may take alarms) or informed."""

    __tablename__ = "relatives"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    name: Mapped[str] = mapped_column(EncryptedString("relatives.name"))
    phone: Mapped[str] = mapped_column(EncryptedString("relatives.phone"))
    # HMAC of the normalised phone (hub.storage.crypto.phone_index): the SMS reply lookup.
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=1)
    role: Mapped[RelativeRole] = mapped_column(_enum(RelativeRole, "relative_role"))
    # Alarm types this relative wants to hear about; NULL = all.
    alarm_types: Mapped[list[str] | None] = mapped_column(JSON)
    # Local quiet hours (no SMS, except red alarms to acting relatives); NULL = none.
    quiet_start: Mapped[time | None] = mapped_column(Time())
    quiet_end: Mapped[time | None] = mapped_column(Time())
    language: Mapped[str] = mapped_column(String(8), default="nb", server_default="nb")
    # The relative answered STOP: no SMS until START.
    sms_opt_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    resident: Mapped[Resident] = relationship(back_populates="relatives")


class StaffUser(Base):
    """A portal account: nurse, coordinator, installer or admin."""

    __tablename__ = "staff_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(EncryptedString("staff_users.display_name"))
    role: Mapped[StaffRole] = mapped_column(_enum(StaffRole, "staff_role"))
    password_hash: Mapped[str] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(EncryptedString("staff_users.phone"))
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id"))
    language: Mapped[str] = mapped_column(String(8), default="nb", server_default="nb")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # TOTP two-factor: the shared secret (set at enrolment) and whether it was confirmed
    totp_secret: Mapped[str | None] = mapped_column(EncryptedString("staff_users.totp_secret"))
    # The last accepted TOTP time step (Unix time // 30): a code of this step or an earlier
    # one is refused, so an overheard code cannot be replayed inside its validity window.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # argon2 hashes of unused one-time recovery codes
    recovery_codes: Mapped[list[str] | None] = mapped_column(JSON)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Device(Base):
    """A registered sensor; ``id`` is the ``<device_id>`` of the native topics."""

    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"), index=True)
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"))
    type: Mapped[DeviceType] = mapped_column(_enum(DeviceType, "device_type"))
    protocol: Mapped[Protocol] = mapped_column(_enum(Protocol, "device_protocol"))
    # Zigbee2MQTT friendly name (the topic's <friendly_name>); unique among registered devices.
    z2m_friendly_name: Mapped[str | None] = mapped_column(String(128), unique=True)
    supervision_interval_s: Mapped[int] = mapped_column(Integer)
    battery: Mapped[int | None] = mapped_column(Integer)
    rssi: Mapped[int | None] = mapped_column(Integer)
    tamper: Mapped[bool | None] = mapped_column(Boolean)
    online: Mapped[bool | None] = mapped_column(Boolean)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    test_mode_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    home: Mapped[Home] = relationship(back_populates="devices")
    room: Mapped[Room | None] = relationship()


class SensorEvent(Base):
    """One event a device reported, stored once (see ``dedup_key``)."""

    __tablename__ = "sensor_events"
    __table_args__ = (
        UniqueConstraint("device_id", "dedup_key", name="uq_sensor_events_device_dedup"),
        Index("ix_sensor_events_home_received", "home_id", "received_at"),
    )
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"))
    # fall, door, motion, button, status
    kind: Mapped[str] = mapped_column(String(16))
    event_ts: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    # "<seq>@<ts>" for native events; Zigbee2MQTT's last_seen when present; NULL = no dedup key.
    dedup_key: Mapped[str | None] = mapped_column(String(96))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class DiscoveredDevice(Base):
    """A device that talks but is not registered: waiting for an installer to pair it."""

    __tablename__ = "discovered_devices"
    __table_args__ = (
        UniqueConstraint("protocol", "identifier", name="uq_discovered_devices_protocol_ident"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    protocol: Mapped[Protocol] = mapped_column(_enum(Protocol, "device_protocol"))
    identifier: Mapped[str] = mapped_column(String(128))
    home_hint: Mapped[str | None] = mapped_column(String(64))
    last_topic: Mapped[str] = mapped_column(String(256))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    last_kind: Mapped[str | None] = mapped_column(String(16))
    last_payload: Mapped[str] = mapped_column(Text)


class RejectedMessage(Base):
    """An MQTT message the hub could not accept, with a reason an operator can read (bounded)."""

    __tablename__ = "rejected_messages"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    topic: Mapped[str] = mapped_column(String(256))
    reason_code: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str] = mapped_column(Text)
    payload_size: Mapped[int] = mapped_column(Integer)
    payload_excerpt: Mapped[str] = mapped_column(Text)


class Alarm(Base):
    """An alarm for a resident; its history is the append-only ``AlarmTimelineEntry`` list."""

    __tablename__ = "alarms"
    __table_args__ = (Index("ix_alarms_status_opened", "status", "opened_at"),)
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"))
    type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[Severity] = mapped_column(_enum(Severity, "alarm_severity"))
    status: Mapped[AlarmStatus] = mapped_column(_enum(AlarmStatus, "alarm_status"))
    outcome: Mapped[str | None] = mapped_column(String(32))
    # Why it fired, for people (e.g. "door open since 02:10, not back within 10 min")
    summary: Mapped[str] = mapped_column(String(300), default="", server_default="")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    event_count: Mapped[int] = mapped_column(Integer, default=1)
    # Short code for SMS replies ("1 <code>") when a person has several open alarms
    short_code: Mapped[str | None] = mapped_column(String(8))
    # All escalation rounds passed and nobody took it: flagged on every board
    unanswered: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))

    timeline: Mapped[list[AlarmTimelineEntry]] = relationship(
        back_populates="alarm", order_by="AlarmTimelineEntry.id"
    )


# Timeline detail keys whose values are personal: a nurse's note, an SMS reply's text and sender,
# the name of a person reached or of the person who took the alarm.
TIMELINE_PRIVATE_KEYS = ("note", "body", "from", "name", "taken_by", "taker")


class AlarmTimelineEntry(Base):
    """One fact in an alarm's history. Append-only: a database trigger refuses UPDATE and DELETE."""

    __tablename__ = "alarm_timeline"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    # transition, event_joined, notification, delivery, reply, note
    kind: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str | None] = mapped_column(String(32))
    # Personal values inside (a nurse's note, an SMS reply and its sender, people's names) are
    # encrypted in the JSON; the rest stays readable (hub.storage.crypto.JSONWithPrivateText).
    detail: Mapped[dict[str, Any]] = mapped_column(
        JSONWithPrivateText("alarm_timeline.detail", TIMELINE_PRIVATE_KEYS), default=dict
    )

    alarm: Mapped[Alarm] = relationship(back_populates="timeline")


class RuleState(Base):
    """The rules' memory for one resident (JSON), and when they next need to look again."""

    __tablename__ = "rule_states"
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The earliest time a timer-driven rule is due for this resident; NULL = nothing pending.
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiToken(Base):
    """A bearer token from the OAuth2 password flow; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ShiftPattern(Base):
    """A recurring weekly shift: this person is on duty in this zone on this weekday."""

    __tablename__ = "shift_patterns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    name: Mapped[str] = mapped_column(String(32))  # day, evening, night
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday … 6 = Sunday (local)
    start: Mapped[time] = mapped_column(Time())  # local time
    end: Mapped[time] = mapped_column(Time())  # local; end <= start means the next morning


class ShiftOverride(Base):
    """A one-off change: ``user_id`` is on duty in the zone for the period (instead of
    ``replaces_user_id`` when set: a swap or a sick-day replacement)."""

    __tablename__ = "shift_overrides"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"))
    replaces_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EscalationPolicy(Base):
    """Ordered steps of who to reach, how, and how long to wait; repeated for some rounds."""

    __tablename__ = "escalation_policies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    repeat_rounds: Mapped[int] = mapped_column(Integer, default=3)
    # The default policy for alarms of this severity (red/yellow/green); NULL = not a default.
    default_for_severity: Mapped[str | None] = mapped_column(String(16), unique=True)
    # [{"wait_s": 120, "targets": [{"kind": "on_duty"}, ...], "channels": ["portal", "sms"]}]
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlarmEscalation(Base):
    """Where an alarm's escalation stands. The engine's only memory: due times are rows."""

    __tablename__ = "alarm_escalations"
    # The engine's two queries (what is due now, in due order; when the next step is due) read
    # active rows by due time: one index on both, so the tick walks only the due rows in order
    # (ADR 19) and each step's UPDATE maintains one index instead of two.
    __table_args__ = (Index("ix_alarm_escalations_due", "state", "next_due_at"),)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), primary_key=True)
    # The policy as it was when the alarm started (later edits do not change a running alarm)
    policy_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    round: Mapped[int] = mapped_column(Integer, default=1)
    # active, stopped (someone took it), unanswered (all rounds done)
    state: Mapped[str] = mapped_column(String(16))
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Notification(Base):
    """One message to one person on one channel: the outbox row and its delivery state."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), index=True)
    # sms, voice, portal
    channel: Mapped[str] = mapped_column(String(8))
    # alarm, taken_by, informed, unanswered, fallback
    purpose: Mapped[str] = mapped_column(String(16))
    recipient_kind: Mapped[str] = mapped_column(String(16))  # staff, relative
    recipient_id: Mapped[int] = mapped_column(Integer)
    # Encrypted (a phone number, and the SMS text names the resident). Nothing looks a
    # notification up by number: replies find the person by the staff/relative phone index.
    to_number: Mapped[str | None] = mapped_column(EncryptedString("notifications.to_number"))
    body: Mapped[str] = mapped_column(EncryptedString("notifications.body"))
    # queued, sending, sent, delivered, failed, undelivered, cancelled
    status: Mapped[str] = mapped_column(String(16))
    provider_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    # a voice call queued because this SMS failed or was not delivered in time
    fallback_for_id: Mapped[int | None] = mapped_column(BigInteger)
    # escalation step and round that queued it (for the timeline and for tests)
    step_index: Mapped[int | None] = mapped_column(Integer)
    round: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    # False until the second factor is given (or when none is required)
    mfa_passed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Who looked at or changed what, about which resident, when and from where (Normen).

    Append-only like the alarm timeline (a database trigger refuses UPDATE and DELETE).
    """

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_resident_at", "resident_id", "at"),)
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    # e.g. alarm.read, alarm.acknowledge, resident.read, roster.update, audit.search, login
    action: Mapped[str] = mapped_column(String(64), index=True)
    resident_id: Mapped[int | None] = mapped_column(Integer)
    ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# Encrypted phones are found by their blind index, kept up to date on every ORM flush.
maintain_phone_index(Relative)
maintain_phone_index(StaffUser)


class DeviceCredential(Base):
    """A native device's MQTT login (Mosquitto's own ``$7$`` hash) and optional HMAC key."""

    __tablename__ = "device_credentials"
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    mqtt_username: Mapped[str] = mapped_column(String(128), unique=True)
    # PBKDF2-SHA512 as mosquitto_passwd writes it (hub.broker_auth.mosquitto_hash)
    password_hash: Mapped[str] = mapped_column(String(255))
    # base64 of the device's HMAC-SHA256 key for signed payloads; NULL = unsigned device
    hmac_key: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BrokerAccount(Base):
    """A broker login that is not a device: a Zigbee2MQTT bridge (hub.broker_auth)."""

    __tablename__ = "broker_accounts"
    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    # zigbee2mqtt_bridge
    kind: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeviceHistoryEntry(Base):
    """One installer operation on a device. Append-only: a trigger refuses UPDATE and DELETE."""

    __tablename__ = "device_history"
    __table_args__ = (Index("ix_device_history_device_at", "device_id", "at"),)
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    home_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    # registered, paired, moved, replaced, retired, test_mode, walk_test, credentials
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class WalkTest(Base):
    """An installer's walk test of a home: devices in test mode, checklists ticked by events."""

    __tablename__ = "walk_tests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    home_id: Mapped[str] = mapped_column(ForeignKey("homes.id"), index=True)
    started_by: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # the home's devices are in test mode until then
    test_mode_until: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_by: Mapped[str | None] = mapped_column(String(128))
    # per device: type, room, items ticked (with times), complete (set when finished)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# Kept for the migration tests: tables that the schema has but the ORM does not map.
UNMAPPED_TABLES = frozenset({"apscheduler_jobs"})
__all__ = [
    "Alarm",
    "AlarmEscalation",
    "AlarmStatus",
    "AlarmTimelineEntry",
    "ApiToken",
    "AuditEntry",
    "Base",
    "BrokerAccount",
    "Device",
    "DeviceCredential",
    "DeviceHistoryEntry",
    "DeviceType",
    "DiscoveredDevice",
    "EscalationPolicy",
    "Home",
    "Notification",
    "Protocol",
    "RejectedMessage",
    "Relative",
    "RelativeRole",
    "Resident",
    "Room",
    "RuleState",
    "SensorEvent",
    "Severity",
    "ShiftOverride",
    "ShiftPattern",
    "StaffRole",
    "StaffUser",
    "WalkTest",
    "WebSession",
    "Zone",
]
