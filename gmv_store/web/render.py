"""Turning data into responses: the Jinja environment (autoescaped, templates shipped as
package data), number formats, JSON that carries dates, and the error page every failure
ends on — one readable line, never a traceback."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

TEMPLATES = Path(__file__).parent / "templates"


def fmt_value(v) -> str:
    """Values and credits: 4 significant digits (full precision sits in the title)."""
    if v is None:
        return "–"
    return f"{float(v):.4g}"


def fmt_int(v) -> str:
    return "–" if v is None else f"{int(v):,}"


def fmt_pct(v) -> str:
    return "–" if v is None else f"{100 * float(v):.1f} %"


def seg(text) -> str:
    """One URL path segment: any character of a set or owner name, '/' included, escaped."""
    return quote(str(text), safe="")


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(value=fmt_value, int=fmt_int, pct=fmt_pct, seg=seg, full=repr)
    return env


ENV = _env()


def page(request: Request, template: str, status: int = 200, **ctx) -> HTMLResponse:
    cfg = request.app.state.cfg
    html = ENV.get_template(template).render(request=request, notes=getattr(request.state, "notes", []),
                                             auth=cfg.token is not None, **ctx)
    return HTMLResponse(html, status_code=status)


def _default(v):
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


class JSON(Response):
    """JSON whose dates and other values print as `gmv ... --json` prints them."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return json.dumps(content, default=_default, allow_nan=False).encode()


def status_of(exc: Exception) -> tuple[int, str]:
    """HTTP status and page title of a named library error. What is left — a store that
    cannot do it yet (no training images, unfinished writes) — is a 409."""
    from ..errors import (
        BadInput,
        DiskFull,
        MissingDependency,
        MissingWeights,
        NotFound,
        ReadOnlyViolation,
        SqlError,
        StoreDamaged,
        StoreLocked,
        StoreMismatch,
        VectorStoreUnavailable,
    )

    for cls, status, title in ((NotFound, 404, "Not found"), (StoreLocked, 503, "Store busy"),
                               (StoreDamaged, 503, "Store damaged"), (VectorStoreUnavailable, 503, "Qdrant unavailable"),
                               (DiskFull, 507, "Disk full"), (ReadOnlyViolation, 400, "Refused"),
                               (SqlError, 400, "SQL error"), (BadInput, 400, "Bad request"),
                               ((StoreMismatch, MissingWeights, MissingDependency), 500, "Server setup")):
        if isinstance(exc, cls):
            return status, title
    return 409, "Not possible now"


def one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error(request: Request, status: int, title: str, message: str, headers: dict | None = None) -> Response:
    """The one error response: JSON under /api/, else a readable page."""
    if wants_json(request):
        return JSON({"error": message, "status": status}, status_code=status, headers=headers)
    resp = page(request, "error.html", status=status, title=title, message=message)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp
