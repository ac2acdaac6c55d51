"""The installer's pages: homes and device health, register/pair/move/replace/retire, test mode,
and the live walk test.

Every change goes through ``hub.devices_admin`` (the same service as ``carehub device``), is
audited, and then writes Mosquitto's password file and ACL with ``hub.broker_auth`` when whoever
runs the portal gave it ``app.state.broker_auth`` (a ``PortalBrokerSync``); otherwise the result
page says plainly that ``carehub broker sync`` must be run. Installers and admins change devices;
nurses and coordinators may look at device health only. Nothing here shows residents, alarms or
notes: installers have no business with them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from starlette.responses import Response

from care_portal.const import LOW_BATTERY_PERCENT
from care_portal.deps import (
    ClockDep,
    SessionDep,
    SettingsDep,
    TemplatesDep,
    TimezoneDep,
    TranslatorDep,
)
from care_portal.i18n import Translator
from care_portal.queries.overview import device_state
from care_portal.schemas.overview import DeviceState
from care_portal.templating import render
from care_portal.web_session import CsrfDep, audit, require_roles
from devices.topics import friendly_name_problem, id_problem
from hub import devices_admin as admin
from hub.broker_auth import (
    BrokerAuthError,
    BrokerAuthPaths,
    PidFileReload,
    Reloadable,
    sync_broker_auth,
    username_problem,
)
from hub.config import Settings
from hub.storage.models import (
    Device,
    DeviceType,
    DiscoveredDevice,
    Home,
    Protocol,
    StaffRole,
    StaffUser,
    WalkTest,
    Zone,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/installer", tags=["installer"], default_response_class=HTMLResponse)

# Everyone signed in may look at device health; only installers and admins change devices.
ViewerDep = Annotated[StaffUser, Depends(require_roles(*StaffRole))]
InstallerDep = Annotated[StaffUser, Depends(require_roles(StaffRole.INSTALLER, StaffRole.ADMIN))]
MANAGER_ROLES: Final = frozenset({StaffRole.INSTALLER, StaffRole.ADMIN})

BROKER_AUTH_STATE: Final = "broker_auth"
ROOM_KINDS: Final = ("bedroom", "bathroom", "entrance", "living", "kitchen", "other")
ROOM_MAX: Final = 64
REASON_MAX: Final = 300
TEST_MODE_MAX_MINUTES: Final = 24 * 60
# The walk test's checklist asks for a fresh fragment this often (htmx ``every``).
WALK_POLL_INTERVAL_S: Final = 2
HISTORY_LIMIT: Final = 200
# The kind of event a discovered device last sent suggests its type on the pair form.
_TYPE_FOR_KIND: Final = {
    "fall": DeviceType.FALL_SENSOR,
    "door": DeviceType.DOOR_CONTACT,
    "motion": DeviceType.MOTION_SENSOR,
    "button": DeviceType.ALARM_BUTTON,
}


# --- the broker's files ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortalBrokerSync:
    """Where the portal writes Mosquitto's files after a change, and how it reloads the broker.

    Whoever runs the portal on the broker's machine sets it as ``app.state.broker_auth``; without
    it the portal changes the database only and says that ``carehub broker sync`` must follow.
    """

    paths: BrokerAuthPaths
    reload: int | Reloadable | None = None


def broker_sync_from(settings: Settings) -> PortalBrokerSync | None:
    """The broker files the portal keeps in sync, from ``[broker]`` in the settings (or None)."""
    cfg = settings.broker
    if cfg.password_file is None or cfg.acl_file is None:
        return None
    reload = PidFileReload(cfg.pid_file) if cfg.pid_file is not None else None
    return PortalBrokerSync(BrokerAuthPaths(cfg.password_file, cfg.acl_file), reload)


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """What became of the broker's files after a change (shown on the result page)."""

    state: Literal["synced", "not_configured", "failed", "not_needed"]
    detail: str = ""


def sync_broker(request: Request, session: Session, settings: Settings) -> SyncOutcome:
    """Write the password file and ACL from the committed database, if the portal may."""
    target: PortalBrokerSync | None = getattr(request.app.state, BROKER_AUTH_STATE, None)
    if target is None:
        return SyncOutcome("not_configured")
    try:
        sync_broker_auth(session, target.paths, target.reload, mqtt=settings.mqtt)
    except (BrokerAuthError, OSError) as exc:
        logger.error("broker files not written after an installer's change: %s", exc)
        return SyncOutcome("failed", str(exc))
    return SyncOutcome("synced")


# --- view models --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A device as the installer sees it: health, place, test mode."""

    id: str
    type: DeviceType
    protocol: Protocol
    z2m_friendly_name: str | None
    room: str | None
    room_kind: str | None
    state: DeviceState
    battery: int | None
    battery_low: bool
    rssi: int | None
    tamper: bool | None
    last_seen: datetime | None
    test_mode_until: datetime | None
    retired_at: datetime | None
    home_id: str


@dataclass(frozen=True, slots=True)
class HomeRow:
    """One line of the homes list: counts that tell an installer where to go first."""

    id: str
    zone: str
    devices: int
    offline: int
    low_battery: int
    in_test: int
    walk_test_id: int | None


@dataclass(frozen=True, slots=True)
class DiscoveredRow:
    id: int
    protocol: Protocol
    identifier: str
    home_hint: str | None
    last_topic: str
    first_seen: datetime
    last_seen: datetime
    message_count: int
    last_kind: str | None
    suggested_type: DeviceType | None


@dataclass(frozen=True, slots=True)
class WalkRow:
    id: int
    started_by: str
    started_at: datetime
    finished_by: str | None
    finished_at: datetime | None
    complete: bool | None


@dataclass(slots=True)
class FormError:
    """A refused form: which form of which home or device, its fields' errors and values."""

    form: str
    target_id: str | int | None
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)


def _local(value: datetime | None, tz: ZoneInfo) -> datetime | None:
    return value.astimezone(tz) if value is not None else None


def device_row(device: Device, *, now: datetime, tz: ZoneInfo) -> DeviceRow:
    in_test = device.test_mode_until is not None and device.test_mode_until > now
    return DeviceRow(
        id=device.id,
        type=device.type,
        protocol=device.protocol,
        z2m_friendly_name=device.z2m_friendly_name,
        room=device.room.name if device.room is not None else None,
        room_kind=device.room.kind if device.room is not None else None,
        state=device_state(device.online),
        battery=device.battery,
        battery_low=device.battery is not None and device.battery < LOW_BATTERY_PERCENT,
        rssi=device.rssi,
        tamper=device.tamper,
        last_seen=_local(device.last_seen_at, tz),
        test_mode_until=_local(device.test_mode_until, tz) if in_test else None,
        retired_at=_local(device.retired_at, tz),
        home_id=device.home_id,
    )


def _running_walks(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(WalkTest.home_id, WalkTest.id).where(WalkTest.finished_at.is_(None))
    )
    return {home_id: walk_id for home_id, walk_id in rows}


def home_rows(session: Session, *, now: datetime) -> list[HomeRow]:
    """Every home with its active devices counted by what needs attention."""
    walks = _running_walks(session)
    homes = session.execute(
        select(Home, Zone.name)
        .join(Zone, Home.zone_id == Zone.id)
        .order_by(Zone.name, Home.id)
        .options(selectinload(Home.devices))
    ).all()
    result = []
    for home, zone in homes:
        active = [d for d in home.devices if d.retired_at is None]
        result.append(
            HomeRow(
                id=home.id,
                zone=zone,
                devices=len(active),
                offline=sum(1 for d in active if d.online is False),
                low_battery=sum(
                    1 for d in active if d.battery is not None and d.battery < LOW_BATTERY_PERCENT
                ),
                in_test=sum(
                    1 for d in active if d.test_mode_until is not None and d.test_mode_until > now
                ),
                walk_test_id=walks.get(home.id),
            )
        )
    return result


def discovered_rows(session: Session, tz: ZoneInfo) -> list[DiscoveredRow]:
    rows = session.scalars(
        select(DiscoveredDevice).order_by(DiscoveredDevice.last_seen_at.desc(), DiscoveredDevice.id)
    )
    return [_discovered_row(d, tz) for d in rows]


def _discovered_row(d: DiscoveredDevice, tz: ZoneInfo) -> DiscoveredRow:
    return DiscoveredRow(
        id=d.id,
        protocol=d.protocol,
        identifier=d.identifier,
        home_hint=d.home_hint,
        last_topic=d.last_topic,
        first_seen=d.first_seen_at.astimezone(tz),
        last_seen=d.last_seen_at.astimezone(tz),
        message_count=d.message_count,
        last_kind=d.last_kind,
        suggested_type=_TYPE_FOR_KIND.get(d.last_kind or ""),
    )


def _home_or_404(session: Session, home_id: str) -> Home:
    home = session.get(Home, home_id)
    if home is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such home")
    return home


def _device_or_404(session: Session, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such device")
    return device


def _walk_or_404(session: Session, walk_id: int) -> WalkTest:
    walk = session.get(WalkTest, walk_id)
    if walk is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such walk test")
    return walk


def _all_home_ids(session: Session) -> list[str]:
    return list(session.scalars(select(Home.id).order_by(Home.id)))


def _page(
    request: Request,
    templates: TemplatesDep,
    t: Translator,
    name: str,
    user: StaffUser,
    context: dict[str, Any],
    *,
    form_error: FormError | None = None,
) -> HTMLResponse:
    return render(
        templates,
        request,
        name,
        t,
        {
            "active_nav": "installer",
            "can_change": user.role in MANAGER_ROLES,
            "form_error": form_error,
            "room_kinds": ROOM_KINDS,
            "device_types": list(DeviceType),
            "protocols": list(Protocol),
            **context,
        },
        status_code=status.HTTP_400_BAD_REQUEST if form_error else status.HTTP_200_OK,
    )


# --- pages --------------------------------------------------------------------------------------


@router.get("", name="installer_homes")
def homes_page(
    request: Request,
    user: ViewerDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """Every home with counts of offline, low-battery and test-mode devices; discovered devices."""
    now = clock.now()
    return _page(
        request,
        templates,
        t,
        "installer.html",
        user,
        {
            "homes": home_rows(session, now=now),
            "discovered": discovered_rows(session, tz),
            "now_local": now.astimezone(tz),
        },
    )


def _home_page(
    request: Request,
    session: Session,
    home: Home,
    *,
    user: StaffUser,
    now: datetime,
    tz: ZoneInfo,
    t: Translator,
    templates: TemplatesDep,
    form_error: FormError | None = None,
) -> HTMLResponse:
    devices = session.scalars(
        select(Device)
        .where(Device.home_id == home.id)
        .order_by(Device.retired_at.is_not(None), Device.id)
        .options(selectinload(Device.room))
    ).all()
    walks = session.scalars(
        select(WalkTest).where(WalkTest.home_id == home.id).order_by(WalkTest.id.desc()).limit(20)
    ).all()
    rows = [device_row(d, now=now, tz=tz) for d in devices]
    active = [r for r in rows if r.retired_at is None]
    zone = session.get(Zone, home.zone_id)
    return _page(
        request,
        templates,
        t,
        "installer_home.html",
        user,
        {
            "home": home,
            "zone": zone.name if zone else "",
            "devices": active,
            "retired": [r for r in rows if r.retired_at is not None],
            "rooms": [r.name for r in home.rooms],
            "walks": [
                WalkRow(
                    w.id,
                    w.started_by,
                    w.started_at.astimezone(tz),
                    w.finished_by,
                    _local(w.finished_at, tz),
                    bool(w.results.get("complete")) if w.results else None,
                )
                for w in walks
            ],
            "running_walk": next((w.id for w in walks if w.finished_at is None), None),
            "home_in_test": bool(active) and all(r.test_mode_until for r in active),
            "now_local": now.astimezone(tz),
            "done": request.query_params.get("done"),
        },
        form_error=form_error,
    )


@router.get("/homes/{home_id}", name="installer_home")
def home_page(
    request: Request,
    home_id: str,
    user: ViewerDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """A home's devices: battery, signal, online state, last seen, test mode; its walk tests."""
    home = _home_or_404(session, home_id)
    return _home_page(
        request, session, home, user=user, now=clock.now(), tz=tz, t=t, templates=templates
    )


def _device_page(
    request: Request,
    session: Session,
    device: Device,
    *,
    user: StaffUser,
    now: datetime,
    tz: ZoneInfo,
    t: Translator,
    templates: TemplatesDep,
    form_error: FormError | None = None,
) -> HTMLResponse:
    entries = admin.history(session, device.id)[-HISTORY_LIMIT:]
    history = [
        {
            "at": e.at.astimezone(tz),
            "actor": e.actor,
            "action": e.action,
            "home_id": e.home_id,
            "detail": {k: v for k, v in (e.detail or {}).items() if v is not None},
        }
        for e in reversed(entries)
    ]
    return _page(
        request,
        templates,
        t,
        "installer_device.html",
        user,
        {
            "device": device_row(device, now=now, tz=tz),
            "history": history,
            "home_ids": _all_home_ids(session),
            "now_local": now.astimezone(tz),
            "done": request.query_params.get("done"),
        },
        form_error=form_error,
    )


@router.get("/devices/{device_id}", name="installer_device")
def device_page(
    request: Request,
    device_id: str,
    user: ViewerDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """One device: its health, its history (append-only), and the forms to change it."""
    device = _device_or_404(session, device_id)
    return _device_page(
        request, session, device, user=user, now=clock.now(), tz=tz, t=t, templates=templates
    )


# --- form parsing -------------------------------------------------------------------------------


def _parse_type(raw: str, errors: dict[str, str], t: Translator) -> DeviceType | None:
    try:
        return DeviceType(raw)
    except ValueError:
        errors["type"] = t("installer.error_type")
        return None


def _parse_room(raw: str, kind: str, errors: dict[str, str], t: Translator) -> str:
    room = raw.strip()
    if not room or len(room) > ROOM_MAX or not room.isprintable():
        errors["room"] = t("installer.error_room", max=ROOM_MAX)
    if kind not in ROOM_KINDS:
        errors["room_kind"] = t("installer.error_room_kind")
    return room


def _check_device_id(
    session: Session, device_id: str, native: bool, errors: dict[str, str], t: Translator
) -> None:
    problem = id_problem(device_id, "device id")
    if problem is None and native:
        problem = username_problem(device_id)
    if problem is not None:
        errors["device_id"] = t("installer.error_device_id")
    elif session.get(Device, device_id) is not None:
        errors["device_id"] = t("installer.error_device_exists", id=device_id)


def _parse_minutes(raw: str, errors: dict[str, str], t: Translator, *, allow_zero: bool) -> int:
    try:
        minutes = int(raw.strip())
    except ValueError:
        minutes = -1
    low = 0 if allow_zero else 1
    if not low <= minutes <= TEST_MODE_MAX_MINUTES:
        errors["minutes"] = t("installer.error_minutes", low=low, max=TEST_MODE_MAX_MINUTES)
    return minutes


def _refused(exc: admin.DeviceAdminError, t: Translator) -> str:
    """The service's own reason, inside a translated sentence (the service speaks English)."""
    return t("installer.error_refused", reason=str(exc))


def _result(
    request: Request,
    templates: TemplatesDep,
    t: Translator,
    user: StaffUser,
    *,
    action: str,
    device: DeviceRow,
    sync: SyncOutcome,
    registration: admin.Registration | None = None,
    settings: Settings,
    extra: dict[str, Any] | None = None,
) -> HTMLResponse:
    """The page after a change of credentials: secrets shown this once, and the broker's state."""
    return _page(
        request,
        templates,
        t,
        "installer_result.html",
        user,
        {
            "action": action,
            "device": device,
            "sync": sync,
            "registration": registration,
            "topic_prefix": settings.mqtt.topic_prefix,
            "extra": extra or {},
        },
    )


def _audit_change(
    session: Session,
    request: Request,
    user: StaffUser,
    now: datetime,
    action: str,
    detail: dict[str, Any],
) -> None:
    """Device changes are audited like every other change (no resident data, no secrets)."""
    audit(session, request=request, user=user, action=action, now=now, detail=detail)


# --- register and pair --------------------------------------------------------------------------


@router.post("/homes/{home_id}/devices", name="installer_register")
def register_device(
    request: Request,
    home_id: str,
    user: InstallerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    device_id: Annotated[str, Form()] = "",
    type: Annotated[str, Form()] = "",
    protocol: Annotated[str, Form()] = "",
    z2m_friendly_name: Annotated[str, Form()] = "",
    room: Annotated[str, Form()] = "",
    room_kind: Annotated[str, Form()] = "other",
    hmac: Annotated[str, Form()] = "",
) -> Response:
    """Register a device in this home; a native one's login is shown once on the result page."""
    home = _home_or_404(session, home_id)
    now = clock.now()
    values = {
        "device_id": device_id,
        "type": type,
        "protocol": protocol,
        "z2m_friendly_name": z2m_friendly_name,
        "room": room,
        "room_kind": room_kind,
        "hmac": hmac,
    }
    errors: dict[str, str] = {}
    new_id = device_id.strip()
    device_type = _parse_type(type, errors, t)
    try:
        proto: Protocol | None = Protocol(protocol)
    except ValueError:
        proto = None
        errors["protocol"] = t("installer.error_protocol")
    name = z2m_friendly_name.strip() or None
    _check_device_id(session, new_id, proto is Protocol.NATIVE, errors, t)
    if proto is Protocol.ZIGBEE2MQTT:
        if name is None or friendly_name_problem(name) is not None:
            errors["z2m_friendly_name"] = t("installer.error_friendly_name")
        elif session.scalar(select(Device.id).where(Device.z2m_friendly_name == name)):
            errors["z2m_friendly_name"] = t("installer.error_friendly_name_taken", name=name)
        if hmac:
            errors["hmac"] = t("installer.error_hmac_z2m")
    elif name is not None:
        errors["z2m_friendly_name"] = t("installer.error_friendly_name_native")
    room_name = _parse_room(room, room_kind, errors, t)
    registration: admin.Registration | None = None
    if not errors and device_type is not None and proto is not None:
        try:
            registration = admin.register(
                session,
                device_id=new_id,
                type=device_type,
                protocol=proto,
                home_id=home.id,
                room=room_name,
                room_kind=room_kind,
                z2m_friendly_name=name,
                hmac=bool(hmac),
                now=now,
                actor=user.username,
            )
        except admin.DeviceAdminError as exc:
            session.rollback()
            errors["device_id"] = _refused(exc, t)
    if registration is None:
        return _home_page(
            request,
            session,
            home,
            user=user,
            now=now,
            tz=tz,
            t=t,
            templates=templates,
            form_error=FormError("register", home.id, errors, values),
        )
    _audit_change(
        session,
        request,
        user,
        now,
        "device.register",
        {"device_id": new_id, "home_id": home.id, "room": room_name, "signed": bool(hmac)},
    )
    session.commit()
    device = _device_or_404(session, new_id)
    sync = sync_broker(request, session, settings) if proto is Protocol.NATIVE else None
    return _result(
        request,
        templates,
        t,
        user,
        action="registered",
        device=device_row(device, now=now, tz=tz),
        sync=sync or SyncOutcome("not_needed"),
        registration=registration,
        settings=settings,
    )


def _pair_page(
    request: Request,
    session: Session,
    found: DiscoveredDevice,
    *,
    user: StaffUser,
    tz: ZoneInfo,
    t: Translator,
    templates: TemplatesDep,
    form_error: FormError | None = None,
) -> HTMLResponse:
    row = _discovered_row(found, tz)
    suggested_id = found.identifier if found.protocol is Protocol.NATIVE else ""
    defaults = {
        "home_id": found.home_hint or "",
        "type": row.suggested_type.value if row.suggested_type else "",
        "device_id": suggested_id,
        "room": "",
        "room_kind": "other",
        "hmac": "",
    }
    return _page(
        request,
        templates,
        t,
        "installer_pair.html",
        user,
        {
            "found": row,
            "defaults": defaults,
            "home_ids": _all_home_ids(session),
        },
        form_error=form_error,
    )


@router.get("/pair/{discovered_id}", name="installer_pair")
def pair_page(
    request: Request,
    discovered_id: int,
    user: InstallerDep,
    session: SessionDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """The pair form, filled in from what the discovered device told the hub."""
    found = session.get(DiscoveredDevice, discovered_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such discovered device")
    return _pair_page(request, session, found, user=user, tz=tz, t=t, templates=templates)


@router.post("/pair/{discovered_id}", name="installer_pair_submit")
def pair_device(
    request: Request,
    discovered_id: int,
    user: InstallerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    home_id: Annotated[str, Form()] = "",
    type: Annotated[str, Form()] = "",
    device_id: Annotated[str, Form()] = "",
    room: Annotated[str, Form()] = "",
    room_kind: Annotated[str, Form()] = "other",
    hmac: Annotated[str, Form()] = "",
) -> Response:
    """Register a discovered device in a home and room (and take it off the list)."""
    found = session.get(DiscoveredDevice, discovered_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such discovered device")
    now = clock.now()
    values = {
        "home_id": home_id,
        "type": type,
        "device_id": device_id,
        "room": room,
        "room_kind": room_kind,
        "hmac": hmac,
    }
    errors: dict[str, str] = {}
    native = found.protocol is Protocol.NATIVE
    device_type = _parse_type(type, errors, t)
    if session.get(Home, home_id.strip()) is None:
        errors["home_id"] = t("installer.error_home")
    # A native device keeps the id its topic uses; a Zigbee one gets the chosen id, or the
    # service makes one from its friendly name.
    chosen_id = found.identifier if native else device_id.strip() or None
    if chosen_id is not None:
        _check_device_id(session, chosen_id, native, errors, t)
    if not native and hmac:
        errors["hmac"] = t("installer.error_hmac_z2m")
    room_name = _parse_room(room, room_kind, errors, t)
    registration: admin.Registration | None = None
    if not errors and device_type is not None:
        try:
            registration = admin.pair(
                session,
                found.id,
                type=device_type,
                room=room_name,
                room_kind=room_kind,
                home_id=home_id.strip(),
                device_id=None if native else chosen_id,
                hmac=bool(hmac),
                now=now,
                actor=user.username,
            )
        except admin.DeviceAdminError as exc:
            session.rollback()
            errors["device_id"] = _refused(exc, t)
    if registration is None:
        found = session.get(DiscoveredDevice, discovered_id) or found
        return _pair_page(
            request,
            session,
            found,
            user=user,
            tz=tz,
            t=t,
            templates=templates,
            form_error=FormError("pair", discovered_id, errors, values),
        )
    new_id = registration.device.id
    _audit_change(
        session,
        request,
        user,
        now,
        "device.pair",
        {
            "device_id": new_id,
            "discovered": found.identifier,
            "home_id": home_id.strip(),
            "room": room_name,
            "signed": bool(hmac),
        },
    )
    session.commit()
    device = _device_or_404(session, new_id)
    sync = sync_broker(request, session, settings) if native else SyncOutcome("not_needed")
    return _result(
        request,
        templates,
        t,
        user,
        action="paired",
        device=device_row(device, now=now, tz=tz),
        sync=sync,
        registration=registration,
        settings=settings,
    )


# --- move, replace, retire ----------------------------------------------------------------------


def _refuse_on_device(
    request: Request,
    session: Session,
    device_id: str,
    form: FormError,
    *,
    user: StaffUser,
    now: datetime,
    tz: ZoneInfo,
    t: Translator,
    templates: TemplatesDep,
) -> HTMLResponse:
    session.rollback()
    device = _device_or_404(session, device_id)
    return _device_page(
        request,
        session,
        device,
        user=user,
        now=now,
        tz=tz,
        t=t,
        templates=templates,
        form_error=form,
    )


@router.post("/devices/{device_id}/move", name="installer_move")
def move_device(
    request: Request,
    device_id: str,
    user: InstallerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    home_id: Annotated[str, Form()] = "",
    room: Annotated[str, Form()] = "",
    room_kind: Annotated[str, Form()] = "other",
) -> Response:
    """Move a device to another room or home (a native device's topics follow its home)."""
    device = _device_or_404(session, device_id)
    now = clock.now()
    values = {"home_id": home_id, "room": room, "room_kind": room_kind}
    errors: dict[str, str] = {}
    if session.get(Home, home_id.strip()) is None:
        errors["home_id"] = t("installer.error_home")
    room_name = _parse_room(room, room_kind, errors, t)
    old_home = device.home_id
    old_room = device.room.name if device.room is not None else None
    if not errors:
        try:
            admin.move(
                session,
                device_id,
                home_id=home_id.strip(),
                room=room_name,
                room_kind=room_kind,
                now=now,
                actor=user.username,
            )
        except admin.DeviceAdminError as exc:
            errors["home_id"] = _refused(exc, t)
    if errors:
        return _refuse_on_device(
            request,
            session,
            device_id,
            FormError("move", device_id, errors, values),
            user=user,
            now=now,
            tz=tz,
            t=t,
            templates=templates,
        )
    _audit_change(
        session,
        request,
        user,
        now,
        "device.move",
        {
            "device_id": device_id,
            "from_home": old_home,
            "from_room": old_room,
            "to_home": home_id.strip(),
            "to_room": room_name,
        },
    )
    session.commit()
    moved_home = old_home != home_id.strip() and device.protocol is Protocol.NATIVE
    sync = sync_broker(request, session, settings) if moved_home else SyncOutcome("not_needed")
    device = _device_or_404(session, device_id)
    return _result(
        request,
        templates,
        t,
        user,
        action="moved",
        device=device_row(device, now=now, tz=tz),
        sync=sync,
        settings=settings,
        extra={"from_home": old_home, "from_room": old_room},
    )


@router.post("/devices/{device_id}/replace", name="installer_replace")
def replace_device(
    request: Request,
    device_id: str,
    user: InstallerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    new_id: Annotated[str, Form()] = "",
    z2m_friendly_name: Annotated[str, Form()] = "",
) -> Response:
    """Retire a device and register its replacement in the same room (new login shown once)."""
    old = _device_or_404(session, device_id)
    now = clock.now()
    values = {"new_id": new_id, "z2m_friendly_name": z2m_friendly_name}
    errors: dict[str, str] = {}
    replacement = new_id.strip()
    native = old.protocol is Protocol.NATIVE
    id_errors: dict[str, str] = {}
    _check_device_id(session, replacement, native, id_errors, t)
    if "device_id" in id_errors:
        errors["new_id"] = id_errors["device_id"]
    name = z2m_friendly_name.strip() or None
    if name is not None and (native or friendly_name_problem(name) is not None):
        errors["z2m_friendly_name"] = t(
            "installer.error_friendly_name_native" if native else "installer.error_friendly_name"
        )
    registration: admin.Registration | None = None
    if not errors:
        try:
            registration = admin.replace(
                session,
                device_id,
                replacement,
                z2m_friendly_name=name,
                now=now,
                actor=user.username,
            )
        except admin.DeviceAdminError as exc:
            errors["new_id"] = _refused(exc, t)
    if registration is None:
        return _refuse_on_device(
            request,
            session,
            device_id,
            FormError("replace", device_id, errors, values),
            user=user,
            now=now,
            tz=tz,
            t=t,
            templates=templates,
        )
    _audit_change(
        session,
        request,
        user,
        now,
        "device.replace",
        {"device_id": device_id, "replaced_by": replacement, "home_id": old.home_id},
    )
    session.commit()
    sync = sync_broker(request, session, settings) if native else SyncOutcome("not_needed")
    device = _device_or_404(session, replacement)
    return _result(
        request,
        templates,
        t,
        user,
        action="replaced",
        device=device_row(device, now=now, tz=tz),
        sync=sync,
        registration=registration,
        settings=settings,
        extra={"replaces": device_id},
    )


@router.post("/devices/{device_id}/retire", name="installer_retire")
def retire_device(
    request: Request,
    device_id: str,
    user: InstallerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Retire a device with a reason: its events are refused and its login revoked."""
    device = _device_or_404(session, device_id)
    now = clock.now()
    why = reason.strip()
    errors: dict[str, str] = {}
    if not why or len(why) > REASON_MAX:
        errors["reason"] = t("installer.error_reason", max=REASON_MAX)
    else:
        try:
            admin.retire(session, device_id, now=now, actor=user.username, reason=why)
        except admin.DeviceAdminError as exc:
            errors["reason"] = _refused(exc, t)
    if errors:
        return _refuse_on_device(
            request,
            session,
            device_id,
            FormError("retire", device_id, errors, {"reason": reason}),
            user=user,
            now=now,
            tz=tz,
            t=t,
            templates=templates,
        )
    _audit_change(
        session,
        request,
        user,
        now,
        "device.retire",
        {"device_id": device_id, "home_id": device.home_id, "reason": why},
    )
    session.commit()
    native = device.protocol is Protocol.NATIVE
    sync = sync_broker(request, session, settings) if native else SyncOutcome("not_needed")
    device = _device_or_404(session, device_id)
    return _result(
        request,
        templates,
        t,
        user,
        action="retired",
        device=device_row(device, now=now, tz=tz),
        sync=sync,
        settings=settings,
        extra={"reason": why},
    )


# --- test mode ----------------------------------------------------------------------------------


def _redirect(request: Request, name: str, done: str, **params: str) -> RedirectResponse:
    return RedirectResponse(
        request.url_for(name, **params).path + f"?done={done}",
        status_code=status.HTTP_303_SEE_OTHER,
    )


@router.post("/devices/{device_id}/test-mode", name="installer_device_test_mode")
def device_test_mode(
    request: Request,
    device_id: str,
    user: InstallerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    minutes: Annotated[str, Form()] = "",
) -> Response:
    """Put one device in test mode for some minutes (0 ends it): nothing it sends escalates."""
    _device_or_404(session, device_id)
    now = clock.now()
    errors: dict[str, str] = {}
    count = _parse_minutes(minutes, errors, t, allow_zero=True)
    if not errors:
        until = now + timedelta(minutes=count) if count else None
        try:
            admin.set_test_mode(
                session, device_id=device_id, until=until, now=now, actor=user.username
            )
        except admin.DeviceAdminError as exc:
            errors["minutes"] = _refused(exc, t)
    if errors:
        return _refuse_on_device(
            request,
            session,
            device_id,
            FormError("test_mode", device_id, errors, {"minutes": minutes}),
            user=user,
            now=now,
            tz=tz,
            t=t,
            templates=templates,
        )
    _audit_change(
        session,
        request,
        user,
        now,
        "device.test_mode",
        {"device_id": device_id, "minutes": count},
    )
    session.commit()
    return _redirect(
        request,
        "installer_device",
        "test_mode_on" if count else "test_mode_off",
        device_id=device_id,
    )


@router.post("/homes/{home_id}/test-mode", name="installer_home_test_mode")
def home_test_mode(
    request: Request,
    home_id: str,
    user: InstallerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    minutes: Annotated[str, Form()] = "",
) -> Response:
    """Put every device of the home in test mode for some minutes (0 ends it)."""
    home = _home_or_404(session, home_id)
    now = clock.now()
    errors: dict[str, str] = {}
    count = _parse_minutes(minutes, errors, t, allow_zero=True)
    if errors:
        return _home_page(
            request,
            session,
            home,
            user=user,
            now=now,
            tz=tz,
            t=t,
            templates=templates,
            form_error=FormError("test_mode", home.id, errors, {"minutes": minutes}),
        )
    until = now + timedelta(minutes=count) if count else None
    devices = admin.set_test_mode(
        session, home_id=home.id, until=until, now=now, actor=user.username
    )
    _audit_change(
        session,
        request,
        user,
        now,
        "device.test_mode",
        {"home_id": home.id, "minutes": count, "devices": [d.id for d in devices]},
    )
    session.commit()
    return _redirect(
        request, "installer_home", "test_mode_on" if count else "test_mode_off", home_id=home.id
    )


# --- walk test ----------------------------------------------------------------------------------


@router.post("/homes/{home_id}/walk-tests", name="installer_walk_start")
def start_walk_test(
    request: Request,
    home_id: str,
    user: InstallerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    minutes: Annotated[str, Form()] = str(admin.DEFAULT_WALK_TEST_MINUTES),
) -> Response:
    """Start a walk test: the home's devices go into test mode; on to the live checklist."""
    home = _home_or_404(session, home_id)
    now = clock.now()
    errors: dict[str, str] = {}
    count = _parse_minutes(minutes, errors, t, allow_zero=False)
    walk: WalkTest | None = None
    if not errors:
        try:
            walk = admin.start_walk_test(
                session, home_id=home.id, now=now, actor=user.username, minutes=count
            )
        except admin.DeviceAdminError as exc:
            session.rollback()
            errors["minutes"] = _refused(exc, t)
    if walk is None:
        return _home_page(
            request,
            session,
            home,
            user=user,
            now=now,
            tz=tz,
            t=t,
            templates=templates,
            form_error=FormError("walk", home.id, errors, {"minutes": minutes}),
        )
    _audit_change(
        session,
        request,
        user,
        now,
        "device.walk_test_start",
        {"home_id": home.id, "walk_test_id": walk.id, "minutes": count},
    )
    session.commit()
    return RedirectResponse(
        request.url_for("installer_walk_test", walk_id=str(walk.id)).path,
        status_code=status.HTTP_303_SEE_OTHER,
    )


def _walk_context(session: Session, walk_id: int, *, tz: ZoneInfo) -> dict[str, Any]:
    _walk_or_404(session, walk_id)
    progress = admin.walk_test_status(session, walk_id)
    walk = session.get(WalkTest, walk_id)
    assert walk is not None
    return {
        "walk": progress,
        "finished_by": walk.finished_by,
        "started_local": progress.started_at.astimezone(tz),
        "until_local": progress.test_mode_until.astimezone(tz),
        "finished_local": _local(progress.finished_at, tz),
        "local": lambda value: _local(value, tz),
        "poll_interval_s": WALK_POLL_INTERVAL_S,
    }


@router.get("/walk-tests/{walk_id}", name="installer_walk_test")
def walk_test_page(
    request: Request,
    walk_id: int,
    user: ViewerDep,
    session: SessionDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """The live checklist: each device's items tick off by themselves as its events arrive."""
    return _page(
        request,
        templates,
        t,
        "installer_walk.html",
        user,
        _walk_context(session, walk_id, tz=tz),
    )


@router.get("/walk-tests/{walk_id}/checklist", name="installer_walk_checklist")
def walk_checklist(
    request: Request,
    walk_id: int,
    user: ViewerDep,
    session: SessionDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """The checklist alone, for htmx to swap in every couple of seconds."""
    return _page(
        request,
        templates,
        t,
        "partials/installer_walk.html",
        user,
        _walk_context(session, walk_id, tz=tz),
    )


@router.post("/walk-tests/{walk_id}/finish", name="installer_walk_finish")
def finish_walk_test(
    request: Request,
    walk_id: int,
    user: InstallerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
) -> Response:
    """Record who tested what and when, and end the home's test mode."""
    walk = _walk_or_404(session, walk_id)
    now = clock.now()
    if walk.finished_at is None:
        progress = admin.finish_walk_test(session, walk_id, now=now, actor=user.username)
        _audit_change(
            session,
            request,
            user,
            now,
            "device.walk_test_finish",
            {"home_id": walk.home_id, "walk_test_id": walk_id, "complete": progress.complete},
        )
        session.commit()
    return RedirectResponse(
        request.url_for("installer_walk_test", walk_id=str(walk_id)).path,
        status_code=status.HTTP_303_SEE_OTHER,
    )
