"""How the server reads the ledger.

Every read opens its own read-only connection (the writer's snapshot while one runs) and
closes it, so a writer is never kept waiting by the server. All of them use one DuckDB
configuration, that of `gmv sql` with its fences and memory cap: DuckDB refuses a second
configuration for a file that a process already has open, which a page and an SQL query
running side by side would otherwise hit.

`generation()` says, from a few stat calls, which ledger state a read would see now (the
ledger file and its WAL, or the snapshot while a writer holds the store): two reads in the
same generation read the same rows. The thumbnails use it to skip the ledger for images a
page has just listed.
"""
from __future__ import annotations

from pathlib import Path

from .. import api
from ..config import LEDGER_FILE
from ..ledger import SNAPSHOT_FILE
from ..lock import current_holder


def _state(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class Reader:
    def __init__(self, store: Path, sql_memory_limit: str | None):
        from query.sql import SAFE_CONFIG, memory_limit_setting

        self.store = Path(store)
        self.config = {**SAFE_CONFIG, "memory_limit": memory_limit_setting(sql_memory_limit)}

    def read(self, fn, *args, note=None, **kwargs):
        """fn(con, *args, **kwargs) on a read-only connection, as `api.read`."""
        return api.read(self.store, fn, *args, note=note, config=self.config, **kwargs)

    def status(self, note=None) -> dict:
        return api.status(self.store, note=note, config=self.config)

    def generation(self) -> tuple:
        if current_holder(self.store):
            return ("snapshot", _state(self.store / SNAPSHOT_FILE))
        return ("ledger", _state(self.store / LEDGER_FILE), _state(self.store / (LEDGER_FILE + ".wal")))
