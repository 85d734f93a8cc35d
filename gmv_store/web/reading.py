"""How the server reads the ledger.

Every read opens its own read-only connection (the writer's snapshot while one runs), all
with one DuckDB configuration — that of `gmv sql`, fences and memory cap included — since
DuckDB refuses a second configuration for a file a process already has open, which a page
and an SQL query running side by side would otherwise hit.

Opening a ledger costs DuckDB's start-up (~40 ms on the 60k demo store) unless the process
already holds a connection to it. So one connection is kept open for `hold` seconds after a
read, and the requests of that burst (a page and its thumbnails) open theirs in well under
a millisecond. It is closed by a timer, never kept longer: a writer that starts meanwhile
waits for it (writers wait out readers for up to 10 s), and from then on reads go to the
writer's snapshot.
"""
from __future__ import annotations

import threading
import time

from .. import api
from ..ledger import open_ledger_readonly

HOLD_S = 2.0


class Reader:
    def __init__(self, store, sql_memory_limit: str | None, hold: float = HOLD_S):
        from query.sql import SAFE_CONFIG, memory_limit_setting

        self.store, self.hold = store, hold
        self.config = {**SAFE_CONFIG, "memory_limit": memory_limit_setting(sql_memory_limit)}
        self._lock = threading.Lock()
        self._warm = None
        self._opened = 0.0
        self._timer: threading.Timer | None = None

    def _keep_warm(self) -> None:
        with self._lock:
            if self._warm is not None and time.monotonic() - self._opened < self.hold:
                return
            self._close_locked()
            try:
                self._warm = open_ledger_readonly(self.store, config=self.config)
            except Exception:  # the read itself will report what is wrong
                return
            self._opened = time.monotonic()
            self._timer = threading.Timer(self.hold, self.close)
            self._timer.daemon = True
            self._timer.start()

    def _close_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._warm is not None:
            self._warm.close()
            self._warm = None

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def read(self, fn, *args, note=None, **kwargs):
        """fn(con, *args, **kwargs) on a read-only connection, as `api.read`."""
        self._keep_warm()
        return api.read(self.store, fn, *args, note=note, config=self.config, **kwargs)

    def status(self, note=None) -> dict:
        self._keep_warm()
        return api.status(self.store, note=note, config=self.config)
