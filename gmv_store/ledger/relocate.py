"""Recorded sources, for `gmv relocate` and the reachability check of `gmv status`: find
the sources under a folder, rewrite them, count and sample them. Table names come from a
fixed list, never from the caller's text; every value is a parameter."""
from __future__ import annotations

from collections.abc import Sequence

from .connection import Connection

SOURCE_TABLES = ("training_images", "generated_images")   # where `relocate` rewrites sources
BROWSED_TABLES = ("contributors", "generated")              # the views `unreachable` samples


def _table(table: str, allowed: tuple[str, ...]) -> str:
    if table not in allowed:
        raise ValueError(f"table {table!r}: one of {', '.join(allowed)}")
    return table


def sources_under(con: Connection, table: str, folder: str) -> list[tuple[int, str]]:
    """(point_id, source) of the rows whose source is the path `folder` or lies under it
    (`folder/...`, or `folder#...` for an entry in an archive or array file)."""
    t = _table(table, SOURCE_TABLES)
    return [(int(p), str(s)) for p, s in con.execute(
        f"SELECT point_id, source FROM {t} WHERE source = ? OR starts_with(source, ?) OR starts_with(source, ?)",
        [folder, folder.rstrip("/") + "/", folder + "#"]).fetchall()]


def set_sources(con: Connection, table: str, point_ids: Sequence[int], sources: Sequence[str]) -> None:
    """Record `sources[i]` as the source of the row of `point_ids[i]`."""
    t = _table(table, SOURCE_TABLES)
    con.execute(f"UPDATE {t} SET source = n.source FROM (SELECT unnest(?) AS point_id, "
                f"unnest(?) AS source) n WHERE {t}.point_id = n.point_id", [list(point_ids), list(sources)])


def row_count(con: Connection, table: str) -> int:
    t = _table(table, BROWSED_TABLES)
    row = con.execute(f"SELECT count(*) FROM {t}").fetchone()
    return int(row[0]) if row else 0


def sample_sources(con: Connection, table: str, sample: int, total: int) -> list[str]:
    """`sample` recorded sources of `table` (the same ones each time), all of them when it
    holds no more than that (`total`: its row count)."""
    t = _table(table, BROWSED_TABLES)
    return [r[0] for r in con.execute(f"SELECT source FROM {t} USING SAMPLE reservoir({int(sample)} ROWS) REPEATABLE (7)"
                                      if total > sample else f"SELECT source FROM {t}").fetchall()]
