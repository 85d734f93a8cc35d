"""Turning data into responses: the Jinja environment (autoescaped, templates shipped as
package data), number formats, JSON that carries dates, and the error page every failure
ends on — one readable line, never a traceback."""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

TEMPLATES = Path(__file__).parent / "templates"


def fmt_value(v: float | None) -> str:
    """Values and credits: 4 significant digits (full precision sits in the title)."""
    if v is None:
        return "–"
    return f"{float(v):.4g}"


def fmt_int(v: int | None) -> str:
    return "–" if v is None else f"{int(v):,}"


def fmt_pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * float(v):.1f} %"


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


class NumColumn:
    """One format for a whole column: numbers scaled by a common power of ten (named once,
    in the header: `×10⁻⁵`) with as many decimals as 4 significant digits of its largest
    value need, so that the digits of every row line up and compare at a glance."""

    def __init__(self, values: Iterable[float | None], digits: int = 4) -> None:
        vals = [abs(float(v)) for v in values if v is not None]
        top = max(vals, default=0.0)
        self.exp = 0 if top == 0 or 1e-2 <= top < 1e5 else math.floor(math.log10(top))
        lead = math.floor(math.log10(top / 10 ** self.exp)) if top else 0
        self.decimals = max(0, digits - 1 - lead)
        self.unit = f"×10{str(self.exp).translate(SUPERSCRIPT)}" if self.exp else ""

    def __call__(self, v: float | None) -> str:
        return "–" if v is None else f"{float(v) / 10 ** self.exp:,.{self.decimals}f}"


class PctColumn:
    """Shares in per cent, with the decimals 2 significant digits of the column's largest need."""

    def __init__(self, values: Iterable[float | None]) -> None:
        top = max((abs(float(v)) for v in values if v is not None), default=0.0) * 100
        self.decimals = 1 if top == 0 or top >= 10 else min(6, 1 - math.floor(math.log10(top)))
        self.unit = "%"

    def __call__(self, v: float | None) -> str:
        return "–" if v is None else f"{100 * float(v):.{self.decimals}f} %"


def url(request: Request, anchor: str = "", **changes: Any) -> str:
    """The current address with some parameters changed (None: removed) and `#anchor`."""
    params = dict(request.query_params)
    params.pop("format", None)
    params.pop("table", None)
    for k, v in changes.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = str(v)
    qs = urlencode(params)
    return request.url.path + (f"?{qs}" if qs else "") + (f"#{anchor}" if anchor else "")


def seg(text: object) -> str:
    """One URL path segment: any character of a set or owner name, '/' included, escaped."""
    return quote(str(text), safe="")


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(value=fmt_value, int=fmt_int, pct=fmt_pct, seg=seg, full=repr)
    env.globals.update(numcol=NumColumn, pctcol=PctColumn)
    return env


ENV = _env()


RECHECK_S = 60.0  # files can come back (or go) without a ledger write: look again after this


def unreachable(request: Request) -> dict[str, Any] | None:
    """The reachability check when sources are missing (every page shows it as a banner
    with the fix), else None."""
    got = source_check(request)
    return got if got and got["missing"] else None


def source_check(request: Request) -> dict[str, Any] | None:
    """The sampled count of recorded sources that cannot be read (gmv_store.query.relocate), kept for
    the ledger's generation and at most a minute; None when the store cannot be read."""
    import time

    from gmv_store.query.relocate import unreachable as check

    from ..errors import GmvError

    state = request.app.state
    gen = state.reader.generation()
    got: dict[str, Any] | None = state.memo.get(gen, ("unreachable",))
    if got is None or time.monotonic() - got["at"] > RECHECK_S:
        try:
            got = {**state.reader.read(check, state.cfg.store), "at": time.monotonic()}
        except GmvError:  # a store that cannot be read: the page itself says why
            return None
        state.memo.put(gen, {("unreachable",): got})
    return got


def page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    cfg = request.app.state.cfg
    moved = unreachable(request) if template not in ("error.html", "login.html") else None
    html = ENV.get_template(template).render(request=request, notes=getattr(request.state, "notes", []),
                                             auth=cfg.token is not None, moved=moved,
                                             u=partial(url, request), **ctx)
    return HTMLResponse(html, status_code=status)


def _default(v: Any) -> str:
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


class JSON(Response):
    """JSON whose dates and other values print as `gmv ... --json` prints them."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
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


def error(request: Request, status: int, title: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """The one error response: JSON under /api/, else a readable page."""
    if wants_json(request):
        return JSON({"error": message, "status": status}, status_code=status, headers=headers)
    resp = page(request, "error.html", status=status, title=title, message=message)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp
