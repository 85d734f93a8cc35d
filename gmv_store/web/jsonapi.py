"""JSON under /api/: the objects the CLI prints with --json.

    GET  /api/status                         gmv status --json (one object)
    GET  /api/values?set=S&limit=N[&by=owner|label][&offset=O]   gmv values --json (array)
    GET  /api/top/{set}/{generated_id}       one object of gmv top --json
    GET  /api/contributors/{contributor_id}  gmv contributor --json (one object)
    POST /api/match  (multipart: image, k, recall, exact)  one object of gmv match --json
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..errors import BadInput
from .attribution import attribute
from .pages import read, require_id
from .render import JSON

MAX_ROWS = 100_000


def _count(request: Request, name: str, default: int, low: int = 0) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= MAX_ROWS:
        raise BadInput(f"{name}={raw!r}: a whole number from {low} to {MAX_ROWS:,}")
    return int(raw)


def status(request: Request) -> Response:
    return JSON(request.app.state.reader.status(note=request.state.notes.append))


def values(request: Request) -> Response:
    from query.lookup import values as run

    set_name = request.query_params.get("set")
    if not set_name:
        raise BadInput("the query parameter set=NAME is required, e.g. /api/values?set=gan-v1&limit=20")
    by = request.query_params.get("by") or None
    limit, offset = _count(request, "limit", 20), _count(request, "offset", 0)
    return JSON(read(request, run, set_name, by=by, limit=limit or MAX_ROWS, offset=offset))


def top(request: Request) -> Response:
    from query.lookup import top as run

    gid = require_id(request.path_params["generated_id"], "generated image")
    return JSON(read(request, run, [gid], set_name=request.path_params["set_name"])[0])


def contributor(request: Request) -> Response:
    from query.lookup import contributor as run

    cid = require_id(request.path_params["contributor_id"], "contributor")
    return JSON(read(request, run, cid, limit=_count(request, "limit", 10, low=1)))


async def match(request: Request) -> Response:
    _, result = await attribute(request)
    return JSON(result)
