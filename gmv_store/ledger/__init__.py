"""The DuckDB ledger, the one owner of every table: opening it (connection), typed rows and
the payload <-> row mapping (records), and one function per operation on each table (the
other modules of this package). Outside this package only `query/sql.py` (ad-hoc, read-only
SQL) and the migrations run SQL; tests/test_architecture.py checks it."""
from .connection import (
    READER_WAIT_S,
    SNAPSHOT_FILE,
    connect_ledger,
    copy_snapshot,
    insert_columns,
    open_ledger_readonly,
    rows,
    transaction,
)
from .records import SetRow

__all__ = ["READER_WAIT_S", "SNAPSHOT_FILE", "SetRow", "connect_ledger", "copy_snapshot", "insert_columns",
           "open_ledger_readonly", "rows", "transaction"]
