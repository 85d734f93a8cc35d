"""Read-only lookups: a generated image and its top-k contributors, a contributor's row,
values and best credits, a set's leaderboard and its roll-ups, the store's counts, and the
rows an attribution (`gmv match`) shows. Reads only, through the documented views; a row
shown as is comes back as a plain dict keyed by column name."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .connection import Connection, rows

Row = dict[str, Any]
GROUPS = ("owner", "label")  # what a leaderboard rolls up by (column names: an allow-list)


def _one(con: Connection, sql: str, params: list[Any] | None = None) -> Any:
    row = con.execute(sql, params or []).fetchone()
    return None if row is None else row[0]


def valued_set_names(con: Connection) -> list[str]:
    """Every valued set's name, in order."""
    return [r[0] for r in con.execute("SELECT set_name FROM sets ORDER BY 1").fetchall()]


def set_exists(con: Connection, set_name: str) -> bool:
    return bool(_one(con, "SELECT count(*) FROM sets WHERE set_name = ?", [set_name]))


def first_set_name(con: Connection) -> str | None:
    """The first valued set's name in order, None without one."""
    found: str | None = _one(con, "SELECT min(set_name) FROM sets")
    return found


def generated_by_id(con: Connection, generated_id: str, set_name: str | None = None) -> list[Row]:
    """A generated image's rows (set_name, generated_id, source, label, quality): one per set
    that values it (only `set_name`'s when given), in set order."""
    return rows(con, "SELECT set_name, generated_id, source, label, quality FROM generated WHERE generated_id = ?"
                + (" AND set_name = ?" if set_name else "") + " ORDER BY set_name",
                [generated_id] + ([set_name] if set_name else []))


def other_sets_of(con: Connection, generated_id: str, set_name: str) -> list[str]:
    """The sets other than `set_name` that value the same generated image, in order."""
    return [r[0] for r in con.execute("SELECT set_name FROM generated WHERE generated_id = ? AND set_name <> ? "
                                      "ORDER BY 1", [generated_id, set_name]).fetchall()]


def generated_details(con: Connection, set_name: str, limit: int, offset: int = 0) -> list[Row]:
    """A page of a set's generated images with their metadata and time, highest quality first."""
    return rows(con, "SELECT generated_id, label, quality, source, meta, valued_at FROM generated WHERE set_name = ? "
                     "ORDER BY quality DESC, generated_id LIMIT ? OFFSET ?", [set_name, limit, offset])


def top_contributors(con: Connection, set_name: str, generated_id: str, limit: int | None = None) -> list[Row]:
    """A generated image's top-k in a set, by rank: rank, contributor_id, distance, credit,
    and the contributor's label, owner and source; the first `limit` only when given."""
    return rows(
        con,
        "SELECT s.rank, s.contributor_id, s.distance, s.credit, c.label, c.owner, c.source "
        "FROM scores s LEFT JOIN contributors c USING (contributor_id) "
        "WHERE s.set_name = ? AND s.generated_id = ? ORDER BY s.rank" + (" LIMIT ?" if limit else ""),
        [set_name, generated_id] + ([limit] if limit else []),
    )


def contributor_row(con: Connection, contributor_id: str) -> Row | None:
    """Every column of a training image's row; None for an unknown id."""
    found = rows(con, "SELECT * FROM contributors WHERE contributor_id = ?", [contributor_id])
    return found[0] if found else None


def contributor_sets(con: Connection, contributor_id: str) -> list[Row]:
    """Per set a contributor is credited in: value, value_sum, n_credits, its rank and how
    many the set values."""
    return rows(
        con,
        # rank = 1 + how many are worth more (as rank() OVER ...), counted per set without
        # ranking every contributor of every set
        "SELECT v.set_name, v.value, v.value_sum, v.n_credits,"
        " (SELECT count(*) + 1 FROM value_sums w WHERE w.set_name = v.set_name AND w.value_sum > v.value_sum) AS rank,"
        " (SELECT count(*) FROM value_sums w WHERE w.set_name = v.set_name AND w.n_credits > 0) AS n_valued"
        " FROM contributor_values v WHERE v.contributor_id = ? ORDER BY v.set_name",
        [contributor_id],
    )


def contributor_top_generated(con: Connection, contributor_id: str, limit: int) -> list[Row]:
    """The generated images (any set) a contributor has most credit in, most first."""
    return rows(
        con,
        "SELECT s.set_name, s.generated_id, s.rank, s.distance, s.credit, g.label, g.source "
        "FROM scores s JOIN generated g USING (set_name, generated_id) "
        "WHERE s.contributor_id = ? ORDER BY s.credit DESC, s.set_name, s.generated_id LIMIT ?",
        [contributor_id, limit],
    )


def _page(limit: int | None, offset: int) -> tuple[str, list[int]]:
    return (" LIMIT ?" if limit else "") + (" OFFSET ?" if offset else ""), \
        ([limit] if limit else []) + ([offset] if offset else [])


def leaderboard(con: Connection, set_name: str, limit: int | None = 20, offset: int = 0) -> list[Row]:
    """A set's contributors by value: rank, contributor_id, value, value_sum, n_credits,
    label, owner, source. No `limit`: all of them."""
    lim, page = _page(limit, offset)
    # rank and cut first, then join the page's rows only (not every training image)
    return rows(con, "WITH v AS (SELECT row_number() OVER (ORDER BY value DESC, contributor_id) AS rank,"
                     " contributor_id, value, value_sum, n_credits FROM contributor_values WHERE set_name = ?"
                     " ORDER BY rank" + lim + ")"
                     " SELECT v.rank, v.contributor_id, v.value, v.value_sum, v.n_credits, c.label, c.owner, c.source"
                     " FROM v JOIN contributors c USING (contributor_id) ORDER BY v.rank", [set_name, *page])


def leaderboard_by(con: Connection, set_name: str, by: str, limit: int | None = 20, offset: int = 0) -> list[Row]:
    """A set's values rolled up by a contributor column `by` (one of GROUPS): rank, `by`,
    value, value_sum, n_contributors, n_credits."""
    if by not in GROUPS:
        raise ValueError(f"by={by!r}: one of {', '.join(GROUPS)}")
    lim, page = _page(limit, offset)
    return rows(con, f"SELECT row_number() OVER (ORDER BY sum(v.value) DESC) AS rank, c.{by},"
                     " sum(v.value) AS value, sum(v.value_sum) AS value_sum, count(*) AS n_contributors,"
                     " sum(v.n_credits) AS n_credits"
                     " FROM contributor_values v JOIN contributors c USING (contributor_id)"
                     f" WHERE v.set_name = ? GROUP BY c.{by} ORDER BY value DESC" + lim, [set_name, *page])


def status_counts(con: Connection) -> dict[str, Any]:
    """What `gmv status` counts in the ledger: images, owners, the sets (m, k, N, exact),
    the journal and refresh queues, and the schema version."""
    return {
        "training_images": _one(con, "SELECT count(*) FROM contributors"),
        "owners": _one(con, "SELECT count(DISTINCT owner) FROM contributors"),
        "sets": rows(con, "SELECT set_name, m AS generated, k, recall, exact FROM sets ORDER BY set_name"),
        "pending_journal": _one(con, "SELECT count(*) FROM journal"),
        "pending_refresh": _one(con, "SELECT (SELECT count(*) FROM pending_refresh) + (SELECT count(*) FROM pending_removal)"),
        "pending_removal": _one(con, "SELECT count(*) FROM pending_removal"),
        "refresh_queue": _one(con, "SELECT count(*) FROM refresh_queue"),
        "schema_version": _one(con, "SELECT max(version) FROM schema_migrations"),
    }


def training_shape_sample(con: Connection) -> tuple[str, int, int, int] | None:
    """(source, height, width, channels) of one training image; None in an empty store."""
    row = con.execute("SELECT source, height, width, channels FROM contributors LIMIT 1").fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3])


def contributor_cards(con: Connection, contributor_ids: Sequence[str]) -> dict[str, Row]:
    """contributor_id -> {contributor_id, label, owner, source} for the ids in the store."""
    return {r["contributor_id"]: r for r in rows(
        con, "SELECT contributor_id, label, owner, source FROM contributors WHERE contributor_id IN (SELECT unnest(?))",
        [list(contributor_ids)])}


def sets_holding(con: Connection, generated_ids: Sequence[str]) -> dict[str, list[str]]:
    """generated_id -> the sets that value it (in order), for those valued anywhere."""
    out: dict[str, list[str]] = {}
    for gid, set_name in con.execute(
            "SELECT generated_id, set_name FROM generated WHERE generated_id IN (SELECT unnest(?)) ORDER BY set_name",
            [list(generated_ids)]).fetchall():
        out.setdefault(gid, []).append(set_name)
    return out


def nearest_distance_quantile(con: Connection, share: float) -> tuple[float | None, int]:
    """The `share` quantile of the stored top-1 distances (every set's generated images to
    their closest training image) and how many there are."""
    q, n = con.execute("SELECT quantile_cont(distance, ?), count(*) FROM scores WHERE rank = 1",
                       [share]).fetchone() or (None, 0)
    return (None if q is None else float(q)), int(n)
