"""Tables to browse: a set's leaderboard and generated images, sorted by any column,
filtered by label / owner and a search (an id or source prefix), with facet counts and the
number of rows that match. Ranks stay those of the whole set (as `gmv values`), whatever
the filter or order. Column and direction names come from fixed lists, never from SQL text.
"""
from __future__ import annotations

from dataclasses import dataclass

from gmv_store.ledger import rows as _rows

BOARD_SORTS = {"rank": "v.rank", "contributor_id": "v.contributor_id", "value": "v.value", "share": "v.value",
               "n_credits": "v.n_credits", "owner": "c.owner", "label": "c.label", "source": "c.source"}
GENERATED_SORTS = {"quality": "g.quality", "generated_id": "g.generated_id", "label": "g.label",
                   "source": "g.source", "valued_at": "g.valued_at"}
FACET_LIMIT = 30


@dataclass(frozen=True)
class Query:
    """What a table page asks for: `sort` one of the table's columns, `desc`, exact filters
    (label, owner), `q` an id prefix or the start of a source, and the page's rows."""
    sort: str | None = None
    desc: bool | None = None
    label: str | None = None
    owner: str | None = None
    q: str | None = None
    limit: int = 50
    offset: int = 0


def _where(qy: Query, id_col: str, src_col: str, label_col: str, owner_col: str | None,
           skip: str | None = None) -> tuple[str, list]:
    parts, params = [], []
    if qy.label is not None and skip != "label":
        parts.append(f"{label_col} IS NOT DISTINCT FROM ?")
        params.append(qy.label or None)  # label= (empty): the rows without a label
    if owner_col and qy.owner is not None and skip != "owner":
        parts.append(f"{owner_col} IS NOT DISTINCT FROM ?")
        params.append(qy.owner or None)
    if qy.q:
        parts.append(f"(starts_with({id_col}, ?) OR starts_with({src_col}, ?))")
        params += [qy.q.lower(), qy.q]
    return "".join(f" AND {p}" for p in parts), params


def _order(qy: Query, sorts: dict, default: str, default_desc: bool, tie: str) -> tuple[str, str, bool]:
    sort = qy.sort if qy.sort in sorts else default
    desc = default_desc if qy.desc is None and sort == default else bool(qy.desc)
    return f"{sorts[sort]} {'DESC' if desc else 'ASC'} NULLS LAST, {tie}", sort, desc


def leaderboard(con, set_name: str, qy: Query, total: int | None = None, facets: dict | None = None) -> dict:
    """{"rows", "total" (rows matching), "sort", "desc", "facets": {"label": [(value, n)], "owner": ...}}.
    Each row: rank (in the whole set), contributor_id, value, share (of the set's total
    value), n_credits, label, owner, source. Without a filter or an order by a training
    image's own column, the page is cut from the set's values before the join (as
    `lookup.values`); `total` (the credited count) and `facets` already known skip their reads."""
    order, sort, desc = _order(qy, BOARD_SORTS, "rank", False, "v.rank")
    ranked = ("WITH v AS (SELECT row_number() OVER (ORDER BY value DESC, contributor_id) AS rank, contributor_id, value,"
              " value / sum(value) OVER () AS share, n_credits FROM contributor_values WHERE set_name = ?)")
    base = ranked + " SELECT {cols} FROM v JOIN contributors c USING (contributor_id) WHERE true"
    where, params = _where(qy, "v.contributor_id", "c.source", "c.label", "c.owner")
    cols = "v.rank, v.contributor_id, v.value, v.share, v.n_credits, c.label, c.owner, c.source"
    if not where and not BOARD_SORTS[sort].startswith("c."):
        rows = _rows(con, ranked + f", page AS (SELECT * FROM v ORDER BY {order} LIMIT ? OFFSET ?) SELECT {cols} "
                     f"FROM page v JOIN contributors c USING (contributor_id) ORDER BY {order}",
                     [set_name, qy.limit, qy.offset])
        if total is None:
            total = con.execute("SELECT count(*) FROM contributor_values WHERE set_name = ?", [set_name]).fetchone()[0]
    else:
        rows = _rows(con, base.format(cols=cols + ", count(*) OVER () AS n_rows") + where
                     + f" ORDER BY {order} LIMIT ? OFFSET ?", [set_name, *params, qy.limit, qy.offset])
        total = rows[0]["n_rows"] if rows else _count(con, base, where, [set_name, *params])
        for r in rows:
            r.pop("n_rows")
    if facets is None:
        facets = {}
        for col in ("label", "owner"):
            w, p = _where(qy, "v.contributor_id", "c.source", "c.label", "c.owner", skip=col)
            facets[col] = con.execute(base.format(cols=f"c.{col}, count(*) AS n") + w
                                      + f" GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {FACET_LIMIT}", [set_name, *p]).fetchall()
    return {"rows": rows, "total": total, "sort": sort, "desc": desc, "facets": facets}


def _count(con, base: str, where: str, params: list) -> int:
    return con.execute(base.format(cols="count(*)") + where, params).fetchone()[0]


def generated(con, set_name: str, qy: Query, total: int | None = None, facets: dict | None = None) -> dict:
    """A page of the set's generated images (default: highest quality first) with the
    label facet; rows: generated_id, label, quality, share (of q's sum = of the set's value), source."""
    order, sort, desc = _order(qy, GENERATED_SORTS, "quality", True, "g.generated_id")
    base = ("WITH g AS (SELECT generated_id, label, quality, quality / sum(quality) OVER () AS share, source, "
            "valued_at FROM generated WHERE set_name = ?) SELECT {cols} FROM g WHERE true")
    where, params = _where(qy, "g.generated_id", "g.source", "g.label", None)
    rows = _rows(con, base.format(cols="generated_id, label, quality, share, source, count(*) OVER () AS n_rows")
                 + where + f" ORDER BY {order} LIMIT ? OFFSET ?", [set_name, *params, qy.limit, qy.offset])
    total = rows[0].pop("n_rows") if rows else _count(con, base, where, [set_name, *params])
    for r in rows[1:]:
        r.pop("n_rows")
    if facets is None:
        w, p = _where(qy, "g.generated_id", "g.source", "g.label", None, skip="label")
        facets = {"label": con.execute(base.format(cols="label, count(*) AS n") + w
                                       + f" GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {FACET_LIMIT}", [set_name, *p]).fetchall()}
    return {"rows": rows, "total": total, "sort": sort, "desc": desc, "facets": facets}
