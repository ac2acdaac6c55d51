"""Refusals on pages are pages: a translated 403 with the navigation; the API keeps JSON."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from hub.clock import FakeClock
from hub.config import Settings
from hub.storage.models import StaffRole
from tests.care_portal.conftest import SignIn
from tests.care_portal.seed import T0, seed_portal_data


def test_an_installer_gets_a_readable_403_page_not_json(
    session_factory: sessionmaker[Session], sign_in: SignIn
) -> None:
    seed_portal_data(session_factory)
    app = create_app(Settings(), session_factory=session_factory, clock=FakeClock(T0))
    with TestClient(app) as client:
        sign_in(client, StaffRole.INSTALLER)
        page = client.get("/board", headers={"Accept": "text/html"})
        assert page.status_code == 403
        assert page.headers["content-type"].startswith("text/html")
        assert "Ingen tilgang" in page.text
        assert "Kari" not in page.text
        api = client.get("/board")  # no HTML wanted: FastAPI's JSON
        assert api.status_code == 403 and api.json()["detail"]
