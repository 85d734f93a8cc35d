"""What the front door (the Python API, the `GmvStore` handle, the CLI) reads from the ledger
itself; everything else it reads through the query modules."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


def count_identified_rows(con: Connection) -> int:
    """Training rows identified by an id column, not an image (`ingest --vectors --id-column`
    records them with height 0)."""
    row = con.execute("SELECT count(*) FROM training_images WHERE height = 0").fetchone()
    return int(row[0]) if row else 0


def identities(con: Connection) -> dict[str, str]:
    """The `identity` line of `status`: said only where there are such rows."""
    n = count_identified_rows(con)
    return {"identity": f"{n:,} training rows identified by an id column, not an image (no thumbnails)"} if n else {}
