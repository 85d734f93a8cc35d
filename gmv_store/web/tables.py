"""Browsing tables from the address bar (datasette is the model): `sort=COLUMN&order=asc|desc`,
`label=`, `owner=`, `q=` (an id or source prefix) and `page=` — each with a prefix for a
second table on the same page (`g` for a set's generated images). A page past the end shows
the last one. `format=json|csv&table=NAME` returns exactly the rows of that table on screen."""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import BadInput
from .render import JSON

if TYPE_CHECKING:
    from gmv_store.query.table import Query

    from ..ledger.connection import Connection

MAX_PAGE = 100_000


def table_query(request: Request, prefix: str = "", limit: int = 50, page: int | None = None) -> tuple[Query, int]:
    """The Query a table's parameters ask for, and its page number (1 = first)."""
    from gmv_store.query.table import Query

    p = request.query_params
    raw = p.get(prefix + "page", "1")
    page = page or (min(int(raw), MAX_PAGE) if raw.isdigit() and int(raw) >= 1 else 1)
    order = p.get(prefix + "order")
    return Query(sort=p.get(prefix + "sort") or None, desc=None if order not in ("asc", "desc") else order == "desc",
                 label=p.get(prefix + "label"), owner=p.get(prefix + "owner"), q=(p.get(prefix + "q") or "").strip() or None,
                 limit=limit, offset=(page - 1) * limit), page


def paged(fn: Callable[..., dict[str, Any]], con: Connection, name: str, request: Request, prefix: str = "",
          limit: int = 50, **known: Any) -> dict[str, Any]:
    """fn(con, name, Query, **known) for the page asked for; past the end: the last page. Adds
    "page", "pages" and "filters" (the active filters, for the page to show and clear)."""
    qy, page = table_query(request, prefix, limit)
    got = fn(con, name, qy, **known)
    pages = max(1, math.ceil(got["total"] / limit))
    if page > pages:
        qy, page = table_query(request, prefix, limit, page=pages)
        got = fn(con, name, qy, **{**known, "total": got["total"], "facets": got["facets"]})
    got.update(page=page, pages=pages, limit=limit,
               filters={k: v for k, v in (("label", qy.label), ("owner", qy.owner), ("q", qy.q)) if v is not None})
    return got


def export(request: Request, tables: dict[str, list[dict[str, Any]]]) -> Response | None:
    """None unless `format=` asks for data: then the rows of `table=` (default: the first
    table), as JSON (an array of objects) or CSV."""
    fmt = request.query_params.get("format")
    if fmt is None:
        return None
    name = request.query_params.get("table") or next(iter(tables))
    if fmt not in ("json", "csv") or name not in tables:
        raise BadInput(f"format={fmt!r}&table={name!r}: format is json or csv, table one of {', '.join(tables)}")
    rows = tables[name]
    if fmt == "json":
        return JSON(rows)
    buf = io.StringIO()
    cols = list(rows[0]) if rows else []
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    w.writerows([[json.dumps(v, default=str) if isinstance(v, (list, dict)) else v for v in r.values()] for r in rows])
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="gmv-{name}.csv"'})
