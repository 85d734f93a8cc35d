"""JSON under /api/: the objects the CLI prints with --json.

    GET  /api/status                         gmv status --json (one object)
    GET  /api/values?set=S&limit=N[&by=owner|label][&offset=O]   gmv values --json (array)
    GET  /api/top/{set}/{generated_id}       one object of gmv top --json
    GET  /api/contributors/{contributor_id}  gmv contributor --json (one object)
    POST /api/match  (multipart: image, k, recall, exact)  one object of gmv match --json
    GET  /api/sets                           every set with m, k, N, mean quality, credited count, value total
    GET  /api/sets/{set}/generated?limit=N&offset=O   a page of its generated images, highest quality first
    GET  /api/sql?q=SELECT...&limit=N        {"columns", "rows" (objects), "total", "truncated"}: gmv sql's fences

A `meta` field is the JSON object that was recorded, not a string holding it.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import BadInput
from ..ledger.connection import Connection
from .attribution import attribute
from .pages import read, require_id
from .render import JSON
from .routing import Routes

route = Routes()  # this module's addresses, in order (routing.py)

MAX_ROWS = 100_000


def _count(request: Request, name: str, default: int, low: int = 0) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= MAX_ROWS:
        raise BadInput(f"{name}={raw!r}: a whole number from {low} to {MAX_ROWS:,}")
    return int(raw)


def _objects(x: Any) -> Any:
    """Recorded metadata (a JSON column, which DuckDB hands over as text) as objects."""
    import json

    if isinstance(x, list):
        return [_objects(v) for v in x]
    if isinstance(x, dict):
        return {k: (json.loads(v) if k == "meta" and isinstance(v, str) else _objects(v)) for k, v in x.items()}
    return x


@route("/api/status")
def status(request: Request) -> Response:
    return JSON(request.app.state.reader.status(note=request.state.notes.append))


@route("/api/values")
def values(request: Request) -> Response:
    from gmv_store.query.lookup import values as run

    set_name = request.query_params.get("set")
    if not set_name:
        raise BadInput("the query parameter set=NAME is required, e.g. /api/values?set=gan-v1&limit=20")
    by = request.query_params.get("by") or None
    limit, offset = _count(request, "limit", 20), _count(request, "offset", 0)
    return JSON(read(request, run, set_name, by=by, limit=limit or MAX_ROWS, offset=offset))


@route("/api/top/{set_name:path}/{generated_id}")
def top(request: Request) -> Response:
    from gmv_store.query.lookup import top as run

    gid = require_id(request.path_params["generated_id"], "generated image")
    return JSON(_objects(read(request, run, [gid], set_name=request.path_params["set_name"])[0]))


@route("/api/contributors/{contributor_id}")
def contributor(request: Request) -> Response:
    from gmv_store.query.lookup import contributor as run

    cid = require_id(request.path_params["contributor_id"], "contributor")
    return JSON(_objects(read(request, run, cid, limit=_count(request, "limit", 10, low=1))))


@route("/api/match", methods=["POST"])
async def match(request: Request) -> Response:
    _, result = await attribute(request)
    return JSON(result)


@route("/api/sets")
def sets(request: Request) -> Response:
    from ..ledger.browse import sets as run

    return JSON(read(request, run))


@route("/api/sets/{set_name:path}/generated")
def generated(request: Request) -> Response:
    from gmv_store.query.browse import one_set

    from ..ledger.lookups import generated_details

    name = request.path_params["set_name"]
    limit, offset = _count(request, "limit", 100), _count(request, "offset", 0)

    def run(con: Connection) -> dict[str, Any]:
        s = one_set(con, name)  # NotFound names the sets there are
        page = generated_details(con, name, limit or MAX_ROWS, offset)
        return {"set_name": name, "total": s["m"], "offset": offset, "generated": page}

    return JSON(_objects(read(request, run)))


@route("/api/sql")
def sql(request: Request) -> Response:
    from .pages import run_query

    q = request.query_params.get("q", "").strip()
    if not q:
        raise BadInput("the query parameter q=SELECT... is required, e.g. /api/sql?q=SELECT+*+FROM+sets")
    limit = _count(request, "limit", 1000, low=1)
    cols, found = run_query(request, q)
    return JSON({"columns": cols, "rows": [dict(zip(cols, r)) for r in found[:limit]], "total": len(found),
                 "truncated": len(found) > limit})
