"""Property-based tests of the JSON API with schemathesis: every ``/api/v1`` operation of the
app's own OpenAPI document is called in-process (ASGI, no network) with generated requests -
valid ones and deliberately invalid ones - as a signed-in coordinator, on SQLite and PostgreSQL.
No answer may be a server error, and every answer must have a status code, content type,
headers and body that the document declares.

Each operation is its own test item. schemathesis' lazy ``from_fixture(...).parametrize()``
would be the shorter spelling, but 4.x breaks on pytest 9.2 (it rewrites ``Node._nodeid``,
which pytest no longer has), so the operations are parametrized here and each one runs its
own hypothesis test over ``APIOperation.as_strategy``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case as GenericCase
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from care_portal.const import API_PREFIX
from hub.clock import FakeClock
from hub.config import Settings
from tests.care_portal.api_seed import PASSWORD, add_alarms, add_staff, resident_ids
from tests.care_portal.seed import T0, seed_portal_data

Case = GenericCase[Any]  # an OpenAPI case; the operation type is schemathesis' business

# Few examples per operation keep the whole file well under a minute on two cores; derandomize
# makes every run (and CI) try the same examples.
MAX_EXAMPLES = 20

CHECKS: list[CheckFunction] = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]

# The Twilio webhooks (/api/v1/twilio/*) are excluded on purpose: they refuse every request
# without a valid X-Twilio-Signature, which generated requests cannot carry;
# tests/care_portal/test_twilio_hooks.py covers them with signed requests.
EXCLUDED = re.compile(f"^{API_PREFIX}/twilio/")
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every /api/v1 operation the app declares, Twilio webhooks left out.

    The document does not depend on the database, so an unbound session factory will do."""
    document = create_app(Settings(), session_factory=sessionmaker()).openapi()
    return sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        if path.startswith(f"{API_PREFIX}/") and not EXCLUDED.match(path)
        for method in item
        if method in HTTP_METHODS
    )


OPERATIONS = _operations()


def test_every_api_operation_but_the_twilio_webhooks_is_covered() -> None:
    paths = {path for _method, path in OPERATIONS}
    assert f"{API_PREFIX}/auth/token" in paths
    assert f"{API_PREFIX}/alarms/{{alarm_id}}/resolve" in paths
    assert not any("twilio" in path for path in paths)


@pytest.fixture
def seeded_ids(session_factory: sessionmaker[Session]) -> dict[str, list[int]]:
    """Seed homes, residents, devices, staff and alarms; the seeded ids by path parameter."""
    seed_portal_data(session_factory)
    add_staff(session_factory)
    alarms = add_alarms(session_factory)
    return {"alarm_id": sorted(alarms.values()), "resident_id": list(resident_ids(session_factory))}


@pytest.fixture
def api_app(session_factory: sessionmaker[Session], seeded_ids: dict[str, list[int]]) -> FastAPI:
    """The portal on the seeded database, its clock standing at the seed's T0."""
    return create_app(Settings(), session_factory=session_factory, clock=FakeClock(T0))


@pytest.fixture
def coordinator_headers(api_app: FastAPI) -> dict[str, str]:
    """An ``Authorization`` header with a real bearer token of the coordinator."""
    with TestClient(api_app) as client:
        response = client.post(
            f"{API_PREFIX}/auth/token", data={"username": "coordinator", "password": PASSWORD}
        )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.mark.parametrize(
    ("method", "path"), OPERATIONS, ids=[f"{method} {path}" for method, path in OPERATIONS]
)
def test_api_answers_generated_requests_as_its_openapi_document_says(
    api_app: FastAPI,
    coordinator_headers: dict[str, str],
    seeded_ids: dict[str, list[int]],
    method: str,
    path: str,
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_app)
    operation = schema[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
        _on_seeded_resources(operation.as_strategy(GenerationMode.POSITIVE), seeded_ids),
    )

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case: Case) -> None:
        case.call_and_validate(headers=coordinator_headers, checks=CHECKS)

    check()


def _on_seeded_resources(
    cases: st.SearchStrategy[Case], seeded_ids: dict[str, list[int]]
) -> st.SearchStrategy[Case]:
    """Valid cases whose id path parameters name seeded rows: random ids almost never exist, and
    these reach the success paths (an alarm taken, put on site, resolved; a resident read)."""

    @st.composite
    def aimed(draw: st.DrawFn) -> Case:
        case = draw(cases)
        for name, value in (case.path_parameters or {}).items():
            if name in seeded_ids and isinstance(value, int):
                case.path_parameters[name] = draw(st.sampled_from(seeded_ids[name]))
        return case

    return aimed()
