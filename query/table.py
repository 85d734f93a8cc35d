"""Tables to browse: a set's leaderboard and generated images, sorted by any column,
filtered by label / owner and a search (an id or source prefix), with facet counts and the
number of rows that match. Ranks stay those of the whole set (as `gmv values`), whatever
the filter or order. The statements (columns from fixed lists, values as parameters) are
in `gmv_store.ledger.browse`; here, what a page reads and what it may reuse.
"""
from __future__ import annotations

from typing import Any

from gmv_store.ledger.browse import (
    Facets,
    Query,
    board_facets,
    board_page,
    board_sort,
    credited_count,
    generated_facets,
    generated_page,
    generated_sort,
)
from gmv_store.ledger.connection import Connection

__all__ = ["Query", "generated", "leaderboard"]


def leaderboard(con: Connection, set_name: str, qy: Query, total: int | None = None,
                facets: Facets | None = None) -> dict[str, Any]:
    """{"rows", "total" (rows matching), "sort", "desc", "facets": {"label": [(value, n)], "owner": ...}}
    (rows: see `ledger.browse.board_page`). `total` (the credited count, used when nothing
    filters) and `facets` already known skip their reads."""
    sort, desc = board_sort(qy)
    rows, matching = board_page(con, set_name, qy)
    if matching is None:
        matching = total if total is not None else credited_count(con, set_name)
    return {"rows": rows, "total": matching, "sort": sort, "desc": desc,
            "facets": facets if facets is not None else board_facets(con, set_name, qy)}


def generated(con: Connection, set_name: str, qy: Query, total: int | None = None,
              facets: Facets | None = None) -> dict[str, Any]:
    """A page of the set's generated images (default: highest quality first) with the
    label facet (rows: see `ledger.browse.generated_page`); `total` is counted anew."""
    sort, desc = generated_sort(qy)
    rows, matching = generated_page(con, set_name, qy)
    return {"rows": rows, "total": matching, "sort": sort, "desc": desc,
            "facets": facets if facets is not None else generated_facets(con, set_name, qy)}
