"""The HTML pages. Each reads what it shows in one read-only ledger connection (the
writer's snapshot while one runs; the page then says so) through the same library calls
the CLI makes — `query.lookup` for leaderboards, top-k lists and contributors — so the UI
and `gmv top/values/contributor` show the same numbers."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..api import sql
from ..errors import BadInput, GmvError, NotFound
from ..ledger.connection import Connection
from .attribution import MAX_K, MAX_RECALL, attribute
from .charts import bars_svg, histogram_svg, linear_histogram_svg, rho_k_svg
from .images import data_uri, remember
from .reading import Reader
from .render import one_line, page, source_check, status_of
from .routing import Routes
from .tables import export, paged

T = TypeVar("T")
route = Routes()  # this module's addresses, in order (routing.py)

BOARD_ROWS = 50
TILES = 48
STATUS_SHOWN = {"store", "qdrant", "ledger", "embedder", "rerank", "quality", "training_images", "owners", "sets",
                "pending_journal", "pending_refresh", "refresh_queue", "schema_version", "writer", "refresh_due",
                "warnings", "collections", "unreachable_sources"}


def read(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(con, ...) on a read-only ledger connection; a note about a snapshot goes on the page.
    The ledger generation read in is kept in `request.state.generation` (see `remember`)."""
    reader: Reader = request.app.state.reader
    request.state.generation = reader.generation()
    return reader.read(fn, *args, note=request.state.notes.append, **kwargs)


def page_number(request: Request, param: str = "page") -> int:
    raw = request.query_params.get(param, "1")
    return min(int(raw), 100_000) if raw.isdigit() and int(raw) >= 1 else 1


def require_id(text: str, what: str) -> str:
    from gmv_store.query.browse import is_id

    if not is_id(text):
        raise NotFound(f"{what} {text!r} is not an id (16 hex digits, 0-9 a-f)")
    return text


def rho_groups(con: Connection) -> list[dict[str, Any]]:
    """ρ at each labelled set's k, grouped by the generated images the sets share."""
    from gmv_store.query.browse import set_groups

    from ..eval.class_test import class_ratio

    groups = []
    for grp in set_groups(con):
        points = []
        for s in grp:
            try:
                points += [{**r, "set_name": s["set_name"]} for r in class_ratio(con, s["set_name"], [s["k"]])] \
                    if s["labelled"] else []
            except BadInput:  # no labelled contributors
                pass
        if points:
            groups.append({"sets": [s["set_name"] for s in grp], "points": points})
    return groups


@route("/")
def overview(request: Request) -> Response:
    from ..ledger.browse import counts, sets

    memo, generation = request.app.state.memo, request.app.state.reader.generation()
    known = memo.get(generation, ("rho",))
    info = request.app.state.reader.status(
        note=request.state.notes.append, sources=source_check(request),
        also=lambda con: {"counts": counts(con), "sets": sets(con), "rho": known if known is not None else rho_groups(con)})
    data = info.pop("also")
    memo.put(generation, {("rho",): data["rho"]})
    rows = export(request, {"sets": data["sets"]})
    if rows is not None:
        return rows
    extra = [(k, v) for k, v in info.items() if k not in STATUS_SHOWN]  # whatever status reports beyond these
    chart = rho_k_svg(data["rho"], "ρ against k: the share of each generated image's top-k with its label")
    return page(request, "overview.html", info=info, extra=extra, rho_chart=chart, **data)


@route("/sets/{set_name:path}")
def set_page(request: Request) -> Response:
    from gmv_store.query.browse import one_set, value_histogram
    from gmv_store.query.lookup import values
    from gmv_store.query.table import generated, leaderboard

    from ..eval.class_test import class_ratio
    from ..ledger.browse import qualities, value_by_label

    name = request.path_params["set_name"]
    memo, generation = request.app.state.memo, request.app.state.reader.generation()
    known = memo.get(generation, ("set", name))  # only a write changes them

    def aggregates(con: Connection) -> dict[str, Any]:
        s = one_set(con, name)
        try:
            rho = class_ratio(con, name, [s["k"]])[0] if s["labelled"] else None
        except BadInput:  # no labelled contributors
            rho = None
        owners = values(con, name, by="owner", limit=20)
        for o in owners:
            o["share"] = o["value"] / s["value_total"] if s["value_total"] else None
        return {"s": s, "rho": rho, "owners": owners, "hist": value_histogram(con, name),
                "by_label": value_by_label(con, name), "qualities": qualities(con, name)}

    board_key = ("facets", name) + tuple(request.query_params.get(k) for k in ("label", "owner", "q"))
    facets = memo.get(generation, board_key)  # only a write or another filter changes them

    def gather(con: Connection) -> dict[str, Any]:
        agg = known or aggregates(con)  # one_set first: an unknown set is a 404 before any table
        unfiltered = board_key[2:] == (None, None, None)
        return {**agg, "board": paged(leaderboard, con, name, request, "", BOARD_ROWS, facets=facets,
                                      total=agg["s"]["n_credited"] if unfiltered else None),
                "gens": paged(generated, con, name, request, "g", TILES)}

    d = read(request, gather)
    memo.put(generation, {board_key: d["board"]["facets"]})
    if known is None:
        memo.put(generation, {("set", name): {k: d[k] for k in ("s", "rho", "owners", "hist", "by_label", "qualities")}})
    data = export(request, {"leaderboard": d["board"]["rows"], "generated": d["gens"]["rows"], "owners": d["owners"]})
    if data is not None:
        return data
    remember(request, generation, training=d["board"]["rows"], generated=[{**g, "set_name": name} for g in d["gens"]["rows"]])
    charts: dict[str, Any] = {"histogram": histogram_svg(d["hist"], f"values of the credited contributors in {name}"),
                              "label_chart": bars_svg(d["by_label"], f"share of {name}'s value by contributor label"),
                              "quality_chart": linear_histogram_svg(
                                  d["qualities"], f"quality q of {name}'s generated images",
                                  "quality q of a generated image (= the credits it hands out)")}
    return page(request, "set.html", **charts, **d)


@route("/generated/{set_name:path}/{generated_id}")
def generated_page(request: Request) -> Response:
    from gmv_store.query.lookup import top

    from ..ledger.browse import label_share
    from ..ledger.lookups import other_sets_of

    name = request.path_params["set_name"]
    gid = require_id(request.path_params["generated_id"], "generated image")

    def gather(con: Connection) -> dict[str, Any]:
        g = top(con, [gid], set_name=name)[0]
        return {"g": g, "share": label_share(con, name, gid), "others": other_sets_of(con, gid, name)}

    d = read(request, gather)
    data = export(request, {"contributors": d["g"]["contributors"]})
    if data is not None:
        return data
    remember(request, request.state.generation, training=d["g"]["contributors"], generated=[d["g"]])
    return page(request, "generated.html", **d)


@route("/contributors/{contributor_id}")
def contributor_page(request: Request) -> Response:
    from gmv_store.query.browse import contributed_to
    from gmv_store.query.lookup import contributor

    cid = require_id(request.path_params["contributor_id"], "contributor")
    c, groups = read(request, lambda con: (contributor(con, cid, limit=0), contributed_to(con, cid, per_set=TILES // 4)))
    remember(request, request.state.generation, training=[c], generated=[g for grp in groups for g in grp["rows"]])
    data = export(request, {"sets": c["sets"], "generated": [g for grp in groups for g in grp["rows"]]})
    return data or page(request, "contributor.html", c=c, groups=groups)


@route("/owners")
def owners_page(request: Request) -> Response:
    from ..ledger.browse import owners

    rows = read(request, owners)
    return export(request, {"owners": rows}) or page(request, "owners.html", owners=rows)


@route("/owners/{owner:path}")
def owner_page(request: Request) -> Response:
    from gmv_store.query.browse import owner

    from ..ledger.browse import owner_images

    name, pg = request.path_params["owner"], page_number(request)
    wanted = request.query_params.get("set")

    def gather(con: Connection) -> dict[str, Any]:
        o = owner(con, name)
        names = [s["set_name"] for s in o["sets"]]
        chosen = wanted if wanted in names else (names[0] if names else None)
        pages = max(1, -(-o["training_images"] // TILES))
        at = min(pg, pages)  # past the end: the last page
        images = owner_images(con, name, chosen, limit=TILES, offset=(at - 1) * TILES)
        return {"o": o, "chosen": chosen, "images": images,
                "t": {"page": at, "pages": pages, "total": o["training_images"]}}

    d = read(request, gather)
    data = export(request, {"images": d["images"], "sets": d["o"]["sets"]})
    if data is not None:
        return data
    remember(request, request.state.generation, training=d["images"])
    return page(request, "owner.html", **d)


def _attribute_page(request: Request, status: int = 200, **ctx: Any) -> Response:
    cfg = request.app.state.cfg
    ctx.setdefault("k", cfg.default_k)
    return page(request, "attribute.html", status=status, limit_mb=f"{cfg.max_upload_bytes / 1e6:g}", max_k=MAX_K,
                max_recall=MAX_RECALL, **ctx)


@route("/attribute", methods=["GET", "POST"])
async def attribute_page(request: Request) -> Response:
    if request.method == "GET":
        return _attribute_page(request)
    generation = request.app.state.reader.generation()
    try:
        decoded, result = await attribute(request)
    except HTTPException as e:  # refused upload: the form again, with the reason above it
        return _attribute_page(request, status=e.status_code, message=e.detail)
    except GmvError as e:  # not an image, store busy...
        return _attribute_page(request, status=status_of(e)[0], message=one_line(e))
    remember(request, generation, training=result["contributors"])
    return _attribute_page(request, result=result, preview=data_uri(decoded.pixels), k=result["k"],
                           filename=result["source"].removeprefix("upload:"))


SQL_EXAMPLES = (  # {set}: the store's first set, so that sums never mix sets
    "SELECT * FROM sets",
    "SELECT owner, value, n_contributors FROM owner_values WHERE set_name = {set} ORDER BY value DESC LIMIT 20",
    "SELECT c.label, sum(v.value) AS value, count(*) AS credited FROM contributor_values v "
    "JOIN contributors c USING (contributor_id) WHERE v.set_name = {set} GROUP BY 1 ORDER BY 2 DESC",
    "SELECT v.set_name, sum(v.value) AS value_total, any_value(g.mean_quality) AS mean_quality FROM contributor_values v "
    "JOIN (SELECT set_name, avg(quality) AS mean_quality FROM generated GROUP BY 1) g USING (set_name) GROUP BY 1 ORDER BY 1",
    "SELECT s.rank, s.contributor_id, s.credit, s.distance, c.label, c.owner FROM scores s JOIN contributors c "
    "USING (contributor_id) WHERE s.set_name = {set} AND s.generated_id = (SELECT generated_id FROM generated "
    "WHERE set_name = {set} ORDER BY quality DESC, generated_id LIMIT 1) ORDER BY s.rank",
)
SQL_SHOWN = 1000


def sql_examples(first_set: str | None) -> list[str]:
    name = "'" + (first_set or "SET").replace("'", "''") + "'"
    return [ex.replace("{set}", name) for ex in SQL_EXAMPLES]


def run_query(request: Request, q: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cfg = request.app.state.cfg
    cols, rows = sql(cfg.store, q, [], note=request.state.notes.append, timeout=cfg.sql_timeout,
                     memory_limit=cfg.sql_memory_limit)
    return cols, rows


def sql_columns(cols: list[str], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """How each result column shows: "float" (one format for the column, render.NumColumn),
    "int", a link kind for ids, set and owner names, or plain text."""
    from .render import NumColumn

    out = []
    for i, c in enumerate(cols):
        vals = [r[i] for r in rows if r[i] is not None]
        kind = {"contributor_id": "contributor", "generated_id": "generated" if "set_name" in cols else None,
                "set_name": "set", "owner": "owner"}.get(c)
        if kind is None and vals and all(isinstance(v, float) for v in vals):
            kind = "float"
        elif kind is None and vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            kind = "int"
        out.append({"name": c, "kind": kind or "text", "fmt": NumColumn(vals) if kind == "float" else None})
    return out


@route("/sql")
def sql_page(request: Request) -> Response:
    from ..ledger.lookups import first_set_name

    cfg = request.app.state.cfg
    q = request.query_params.get("q", "").strip()
    first = read(request, first_set_name)
    ctx: dict[str, Any] = {"q": q, "timeout": f"{cfg.sql_timeout:g}" if cfg.sql_timeout else "no limit",
                           "memory": cfg.sql_memory_limit or "25 %", "examples": sql_examples(first), "cols": None,
                           "rows": [], "total": 0}
    if q:
        try:
            cols, rows = run_query(request, q)
            ctx.update(cols=sql_columns(cols, rows[:SQL_SHOWN]), rows=rows[:SQL_SHOWN], total=len(rows),
                       set_col=cols.index("set_name") if "set_name" in cols else None)
        except GmvError as e:  # refusals, errors, limits: shown with the query kept for editing
            return page(request, "sql.html", status=status_of(e)[0], message=one_line(e), **ctx)
    return page(request, "sql.html", **ctx)


@route("/sql.csv")
def sql_csv(request: Request) -> Response:
    import csv
    import io
    import json

    q = request.query_params.get("q", "").strip()
    if not q:
        raise BadInput("no query given; fix: /sql.csv?q=SELECT ...")
    cols, rows = run_query(request, q)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    w.writerows([[json.dumps(v, default=str) if isinstance(v, (list, dict)) else v for v in r] for r in rows])
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="gmv-query.csv"'})
