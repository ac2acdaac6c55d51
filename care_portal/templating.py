"""The portal's Jinja2 environment and the one way its pages are rendered."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from care_portal.const import TEMPLATES_DIR
from care_portal.i18n import Translator


def make_templates(directory: Path = TEMPLATES_DIR) -> Jinja2Templates:
    """Templates that escape HTML and fail loudly on an undefined name."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return Jinja2Templates(env=env)


def render(
    templates: Jinja2Templates,
    request: Request,
    name: str,
    t: Translator,
    context: Mapping[str, object] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render ``name`` with ``t`` (the translator) and ``lang`` besides the page's own context."""
    return templates.TemplateResponse(
        request,
        name,
        {**(context or {}), "t": t, "lang": t.language},
        status_code=status_code,
        headers={"Cache-Control": "no-store", "Vary": "Accept-Language, Cookie"},
    )
