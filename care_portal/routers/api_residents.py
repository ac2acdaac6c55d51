"""``/api/v1/residents``: the residents care staff look after (not for installers)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlalchemy import func, select

from care_portal.const import (
    API_PAGE_DEFAULT,
    API_PAGE_MAX,
    API_PREFIX,
    DB_BIGINT_MAX,
    DB_INT_MAX,
    NO_NUL_PATTERN,
)
from care_portal.deps import CareStaffUser, SessionDep
from care_portal.schemas.auth import ErrorPublic
from care_portal.schemas.residents import ResidentPublic, ResidentsPublic
from hub.storage.models import Resident

logger = logging.getLogger(__name__)

router = APIRouter(prefix=f"{API_PREFIX}/residents", tags=["residents"])


@router.get("", response_model=ResidentsPublic)
def list_residents(
    session: SessionDep,
    user: CareStaffUser,
    home_id: Annotated[str | None, Query(pattern=NO_NUL_PATTERN)] = None,
    zone_id: Annotated[int | None, Query(ge=1, le=DB_INT_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=API_PAGE_MAX)] = API_PAGE_DEFAULT,
    offset: Annotated[int, Query(ge=0, le=DB_BIGINT_MAX)] = 0,
) -> ResidentsPublic:
    """Residents, by id, optionally of one home or one zone."""
    conditions = []
    if home_id is not None:
        conditions.append(Resident.home_id == home_id)
    if zone_id is not None:
        conditions.append(Resident.zone_id == zone_id)
    residents = session.scalars(
        select(Resident).where(*conditions).order_by(Resident.id).limit(limit).offset(offset)
    ).all()
    count = session.scalar(select(func.count()).select_from(Resident).where(*conditions)) or 0
    logger.info("user:%s listed residents (%d of %d)", user.username, len(residents), count)
    return ResidentsPublic(data=[ResidentPublic.model_validate(r) for r in residents], count=count)


@router.get(
    "/{resident_id}",
    response_model=ResidentPublic,
    responses={status.HTTP_404_NOT_FOUND: {"model": ErrorPublic}},
)
def get_resident(
    resident_id: Annotated[int, Path(ge=1, le=DB_INT_MAX)],
    session: SessionDep,
    user: CareStaffUser,
) -> ResidentPublic:
    """One resident."""
    resident = session.get(Resident, resident_id)
    if resident is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"resident {resident_id} not found")
    logger.info("user:%s read resident %d", user.username, resident_id)
    return ResidentPublic.model_validate(resident)
