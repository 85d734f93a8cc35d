"""What `gmv export` reads of a ledger: one set's rows of the documented views (the stable
interface, docs/commands.md) copied to Parquet or CSV files by DuckDB's own COPY, their row
counts and the schema version."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection

FORMATS = {"parquet": "(FORMAT parquet, COMPRESSION zstd)", "csv": "(FORMAT csv, HEADER)"}

# name -> the query of its rows (? = the set); the views are the stable interface
QUERIES = {
    "values": "SELECT row_number() OVER (ORDER BY value DESC, contributor_id) AS rank, set_name, contributor_id, "
              "value, value_sum, n_credits FROM contributor_values WHERE set_name = ? ORDER BY rank",
    "scores": "SELECT set_name, generated_id, contributor_id, rank, distance, credit FROM scores "
              "WHERE set_name = ? ORDER BY generated_id, rank",
    "generated": "SELECT generated_id, set_name, source, sha256, label, quality, meta, valued_at FROM generated "
                 "WHERE set_name = ? ORDER BY generated_id",
    # every training image: a contributor without a row in `values` has value 0 in the set
    "contributors": "SELECT contributor_id, source, sha256, owner, label, meta, height, width, ingested_at "
                    "FROM contributors ORDER BY contributor_id",
}
TABLES = tuple(QUERIES)


def _literal(path: Path) -> str:
    """A file name as a SQL string literal (COPY takes no parameter for its target)."""
    return "'" + str(path).replace("'", "''") + "'"


def _params(table: str, set_name: str) -> list[str]:
    return [set_name] if "?" in QUERIES[table] else []


def copy_table(con: Connection, table: str, set_name: str, target: Path, fmt: str) -> None:
    """Write the rows of `table` (one of TABLES) for the set to the file `target` in `fmt`
    (one of FORMATS). DuckDB's errors (no space, no permission) pass through."""
    con.execute(f"COPY ({QUERIES[table]}) TO {_literal(target)} {FORMATS[fmt]}", _params(table, set_name))


def count_rows(con: Connection, table: str, set_name: str) -> int:
    """How many rows `table` (one of TABLES) holds for the set."""
    row = con.execute(f"SELECT count(*) FROM ({QUERIES[table]})", _params(table, set_name)).fetchone()
    assert row is not None  # count(*) always returns a row
    return int(row[0])


def schema_version(con: Connection) -> int | None:
    """The highest applied migration (None in a ledger with none)."""
    row = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return None if row is None or row[0] is None else int(row[0])
