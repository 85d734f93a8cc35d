"""The browsing reads (the web UI's pages and JSON): sets with their sizes and values, a
set's value distribution, pages of its generated images, an owner's images, and the tables
to sort, filter and page (a set's leaderboard and its generated images) with facet counts.

Reads only, through the documented views. Column and direction names come from the fixed
lists below (allow-lists), never from request text; every value is a parameter. A row
shown as is comes back as a plain dict keyed by column name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .connection import Connection, rows

Row = dict[str, Any]
Facets = dict[str, list[tuple[Any, int]]]  # column -> [(value, rows with it)], most first

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


def _one(con: Connection, sql: str, params: list[Any] | None = None) -> Any:
    row = con.execute(sql, params or []).fetchone()
    return None if row is None else row[0]


def counts(con: Connection) -> dict[str, int]:
    return {"training_images": _one(con, "SELECT count(*) FROM contributors"),
            "owners": _one(con, "SELECT count(DISTINCT owner) FROM contributors"),
            "labels": _one(con, "SELECT count(DISTINCT label) FROM contributors"),
            "generated_images": _one(con, "SELECT count(*) FROM generated")}


def sets(con: Connection, set_name: str | None = None) -> list[Row]:
    """Each set (or the one named) with m, k, N, when it began, its generated images' mean
    quality, how many contributors it credits and the sum of its values."""
    return rows(con, """
        SELECT s.set_name, s.m, s.k, s.recall, s.created_at, g.mean_quality, g.labelled,
               coalesce(v.n_credited, 0) AS n_credited, coalesce(v.value_total, 0.0) AS value_total
        FROM sets s
        LEFT JOIN (SELECT set_name, avg(quality) AS mean_quality, count(label) AS labelled
                   FROM generated GROUP BY 1) g USING (set_name)
        LEFT JOIN (SELECT set_name, count(*) AS n_credited, sum(value) AS value_total
                   FROM contributor_values GROUP BY 1) v USING (set_name)
        """ + ("WHERE s.set_name = ? " if set_name is not None else "") + "ORDER BY s.set_name",
        [set_name] if set_name is not None else [])


def value_range(con: Connection, set_name: str) -> tuple[float | None, float | None, int]:
    """(smallest value, largest value, credited contributors) of a set."""
    lo, hi, n = con.execute("SELECT min(value), max(value), count(*) FROM contributor_values WHERE set_name = ?",
                            [set_name]).fetchone() or (None, None, 0)
    return lo, hi, int(n)


def training_count(con: Connection) -> int:
    return int(_one(con, "SELECT count(*) FROM contributors"))


def log_value_bins(con: Connection, set_name: str, start: float, width: float, bins: int) -> dict[int, int]:
    """Credited contributors per bin of log10(value): bin i spans start + i·width (the
    first and last bins take what falls outside)."""
    return {int(b): int(n) for b, n in con.execute(
        "SELECT least(?, greatest(0, floor((log10(value) - ?) / ?)))::INT AS bin, count(*) FROM contributor_values "
        "WHERE set_name = ? GROUP BY 1", [bins - 1, start, width, set_name]).fetchall()}


def training_source(con: Connection, contributor_id: str) -> tuple[str, str] | None:
    """(recorded source, sha256) of a training image; None for an unknown id."""
    row = con.execute("SELECT source, sha256 FROM contributors WHERE contributor_id = ?", [contributor_id]).fetchone()
    return None if row is None else (row[0], row[1])


def generated_source(con: Connection, set_name: str, generated_id: str) -> tuple[str, str] | None:
    row = con.execute("SELECT source, sha256 FROM generated WHERE set_name = ? AND generated_id = ?",
                      [set_name, generated_id]).fetchone()
    return None if row is None else (row[0], row[1])


def label_share(con: Connection, set_name: str, generated_id: str) -> float | None:
    """The share of a generated image's top-k that carry its label (its own ρ), or None
    when it or they have no labels."""
    row = con.execute(
        "SELECT avg(CASE WHEN c.label = g.label THEN 1.0 ELSE 0.0 END), count(*) FROM scores s "
        "JOIN generated g USING (set_name, generated_id) JOIN contributors c USING (contributor_id) "
        "WHERE s.set_name = ? AND s.generated_id = ? AND g.label IS NOT NULL AND c.label IS NOT NULL",
        [set_name, generated_id]).fetchone()
    return float(row[0]) if row and row[1] else None


def owner_counts(con: Connection, owner_name: str) -> tuple[int, int]:
    """(training images, distinct labels) of an owner."""
    n, labels = con.execute("SELECT count(*), count(DISTINCT label) FROM contributors WHERE owner = ?",
                            [owner_name]).fetchone() or (0, 0)
    return int(n), int(labels)


def owner_sets(con: Connection, owner_name: str) -> list[Row]:
    """Per set: the owner's value, its share of the set, its rank among owners."""
    return rows(con, """
        SELECT set_name, value, value_sum, n_contributors, n_credits, rank, n_owners, share FROM (
            SELECT o.*, rank() OVER (PARTITION BY set_name ORDER BY value DESC) AS rank,
                   count(*) OVER (PARTITION BY set_name) AS n_owners,
                   value / sum(value) OVER (PARTITION BY set_name) AS share
            FROM owner_values o)
        WHERE owner = ? ORDER BY set_name""", [owner_name])


def owner_images(con: Connection, owner_name: str, set_name: str | None, limit: int = 48,
                 offset: int = 0) -> list[Row]:
    """A page of an owner's images with their value in `set_name` (0 when not credited),
    most valuable first; without a set, in id order."""
    return rows(con, """
        SELECT c.contributor_id, c.label, c.source, coalesce(v.value, 0.0) AS value, coalesce(v.n_credits, 0) AS n_credits
        FROM contributors c
        LEFT JOIN contributor_values v ON v.contributor_id = c.contributor_id AND v.set_name = ?
        WHERE c.owner = ? ORDER BY value DESC, c.contributor_id LIMIT ? OFFSET ?""",
                [set_name, owner_name, limit, offset])


def credited_in(con: Connection, contributor_id: str, per_set: int = 12) -> list[Row]:
    """Per set, the `per_set` generated images a training image has most credit in (with
    the credit's share of their quality and `n_generated`, how many credit it in that set)."""
    return rows(con, """
        SELECT * FROM (
            SELECT s.set_name, s.generated_id, s.rank, s.distance, s.credit, s.credit / g.quality AS share,
                   g.label, g.source, row_number() OVER (PARTITION BY s.set_name ORDER BY s.credit DESC, s.generated_id) AS n,
                   count(*) OVER (PARTITION BY s.set_name) AS n_generated
            FROM scores s JOIN generated g USING (set_name, generated_id) WHERE s.contributor_id = ?)
        WHERE n <= ? ORDER BY set_name, n""", [contributor_id, per_set])


def value_by_label(con: Connection, set_name: str, limit: int = 20) -> list[tuple[str, float]]:
    """(contributor label, share of the set's value), largest first: where the credit went."""
    found = con.execute(
        "SELECT coalesce(c.label, 'none'), sum(v.value) / any_value(t.total) FROM contributor_values v "
        "JOIN contributors c USING (contributor_id) "
        "CROSS JOIN (SELECT sum(value) AS total FROM contributor_values WHERE set_name = ?) t "
        "WHERE v.set_name = ? GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?", [set_name, set_name, limit]).fetchall()
    return [(str(a), float(b)) for a, b in found if b is not None]


def qualities(con: Connection, set_name: str, limit: int = 200_000) -> list[float]:
    return [r[0] for r in con.execute("SELECT quality FROM generated WHERE set_name = ? LIMIT ?",
                                      [set_name, limit]).fetchall()]


def set_fingerprints(con: Connection) -> list[Row]:
    """Each set with its k, labelled count and `fingerprint` (a hash of its generated ids),
    in fingerprint order, then k."""
    return rows(con, """
        SELECT s.set_name, s.k, g.labelled, g.fingerprint FROM sets s JOIN (
            SELECT set_name, count(label) AS labelled, md5(string_agg(generated_id, ',' ORDER BY generated_id)) AS fingerprint
            FROM generated GROUP BY 1) g USING (set_name) ORDER BY g.fingerprint, s.k""")


def owners(con: Connection) -> list[Row]:
    """Every owner with its training images and labels, most images first."""
    return rows(con, "SELECT owner, count(*) AS training_images, count(DISTINCT label) AS labels FROM contributors "
                     "GROUP BY 1 ORDER BY 2 DESC, 1 NULLS LAST")


# ----------------------------------------------------------------------------- tables

def _where(qy: Query, id_col: str, src_col: str, label_col: str, owner_col: str | None,
           skip: str | None = None) -> tuple[str, list[Any]]:
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


def _sort(qy: Query, sorts: dict[str, str], default: str, default_desc: bool) -> tuple[str, bool]:
    sort = qy.sort if qy.sort in sorts else default
    desc = default_desc if qy.desc is None and sort == default else bool(qy.desc)
    return sort, desc


def _order(qy: Query, sorts: dict[str, str], default: str, default_desc: bool, tie: str) -> str:
    sort, desc = _sort(qy, sorts, default, default_desc)
    return f"{sorts[sort]} {'DESC' if desc else 'ASC'} NULLS LAST, {tie}"


def board_sort(qy: Query) -> tuple[str, bool]:
    """The leaderboard's column and direction for `qy` (rank, ascending, unless it names one)."""
    return _sort(qy, BOARD_SORTS, "rank", False)


def generated_sort(qy: Query) -> tuple[str, bool]:
    """The generated table's column and direction (quality, descending, unless `qy` names one)."""
    return _sort(qy, GENERATED_SORTS, "quality", True)


_RANKED = ("WITH v AS (SELECT row_number() OVER (ORDER BY value DESC, contributor_id) AS rank, contributor_id, value,"
           " value / sum(value) OVER () AS share, n_credits FROM contributor_values WHERE set_name = ?)")
_BOARD = _RANKED + " SELECT {cols} FROM v JOIN contributors c USING (contributor_id) WHERE true"
_BOARD_COLS = "v.rank, v.contributor_id, v.value, v.share, v.n_credits, c.label, c.owner, c.source"
_GENERATED = ("WITH g AS (SELECT generated_id, label, quality, quality / sum(quality) OVER () AS share, source, "
              "valued_at FROM generated WHERE set_name = ?) SELECT {cols} FROM g WHERE true")


def _count(con: Connection, base: str, where: str, params: list[Any]) -> int:
    return int(_one(con, base.format(cols="count(*)") + where, params))


def board_page(con: Connection, set_name: str, qy: Query) -> tuple[list[Row], int | None]:
    """A page of the set's leaderboard and the number of rows matching `qy`; None for that
    number when nothing filters (then it is `credited_count`). Rows: rank (in the whole
    set), contributor_id, value, share (of the set's total value), n_credits, label, owner,
    source. Without a filter or an order by a training image's own column, the page is cut
    from the set's values before the join."""
    order = _order(qy, BOARD_SORTS, "rank", False, "v.rank")
    where, params = _where(qy, "v.contributor_id", "c.source", "c.label", "c.owner")
    if not where and not BOARD_SORTS[board_sort(qy)[0]].startswith("c."):
        return rows(con, _RANKED + f", page AS (SELECT * FROM v ORDER BY {order} LIMIT ? OFFSET ?) SELECT "
                    f"{_BOARD_COLS} FROM page v JOIN contributors c USING (contributor_id) ORDER BY {order}",
                    [set_name, qy.limit, qy.offset]), None
    found = rows(con, _BOARD.format(cols=_BOARD_COLS + ", count(*) OVER () AS n_rows") + where
                 + f" ORDER BY {order} LIMIT ? OFFSET ?", [set_name, *params, qy.limit, qy.offset])
    total = found[0]["n_rows"] if found else _count(con, _BOARD, where, [set_name, *params])
    for r in found:
        r.pop("n_rows")
    return found, total


def credited_count(con: Connection, set_name: str) -> int:
    return int(_one(con, "SELECT count(*) FROM contributor_values WHERE set_name = ?", [set_name]))


def board_facets(con: Connection, set_name: str, qy: Query) -> Facets:
    """Label and owner counts of the leaderboard's rows matching `qy`'s other filters."""
    out: Facets = {}
    for col in ("label", "owner"):
        w, p = _where(qy, "v.contributor_id", "c.source", "c.label", "c.owner", skip=col)
        out[col] = con.execute(_BOARD.format(cols=f"c.{col}, count(*) AS n") + w
                               + f" GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {FACET_LIMIT}", [set_name, *p]).fetchall()
    return out


def generated_page(con: Connection, set_name: str, qy: Query) -> tuple[list[Row], int]:
    """A page of the set's generated images matching `qy` (default: highest quality first)
    and how many match; rows: generated_id, label, quality, share (of q's sum = of the
    set's value), source."""
    order = _order(qy, GENERATED_SORTS, "quality", True, "g.generated_id")
    where, params = _where(qy, "g.generated_id", "g.source", "g.label", None)
    found = rows(con, _GENERATED.format(cols="generated_id, label, quality, share, source, count(*) OVER () AS n_rows")
                 + where + f" ORDER BY {order} LIMIT ? OFFSET ?", [set_name, *params, qy.limit, qy.offset])
    total = found[0].pop("n_rows") if found else _count(con, _GENERATED, where, [set_name, *params])
    for r in found[1:]:
        r.pop("n_rows")
    return found, total


def generated_facets(con: Connection, set_name: str, qy: Query) -> Facets:
    """Label counts of the generated images matching `qy`'s other filters."""
    w, p = _where(qy, "g.generated_id", "g.source", "g.label", None, skip="label")
    return {"label": con.execute(_GENERATED.format(cols="label, count(*) AS n") + w
                                 + f" GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {FACET_LIMIT}", [set_name, *p]).fetchall()}
