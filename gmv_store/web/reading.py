"""How the server reads the ledger.

Every read opens its own read-only connection (the writer's snapshot while one runs) and
closes it. All of them use one DuckDB configuration, that of `gmv sql` with its fences and
memory cap: DuckDB refuses a second configuration for a file that a process already has
open, which a page and an SQL query running side by side would otherwise hit.

Opening a ledger costs DuckDB's start-up (~40 ms on the 60k demo store, more on a busy
machine) unless the process already holds a connection to that file. With `hold` > 0
(`gmv serve` uses 2 s) one connection stays open for that long after a read, so the rest of
a burst — a page and its thumbnails — opens in well under a millisecond. A timer closes it:
a writer that starts meanwhile waits for it (writers wait out readers for up to 10 s), and
reads from then on go to the writer's snapshot. A process that also reads the ledger with
other settings (a notebook calling `gmv_store.api` beside an app) should keep hold at 0.

`generation()` says, from a few stat calls, which ledger state a read would see now (the
ledger file and its WAL, or the snapshot while a writer holds the store): two reads in the
same generation read the same rows. `Memo` keeps results for one generation: the sources of
the images a page has just listed (their thumbnails then skip the ledger) and a set's
aggregates (histogram, owners, ρ), which only a write changes.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from .. import api
from ..config import LEDGER_FILE
from ..ledger import SNAPSHOT_FILE, open_ledger_readonly
from ..lock import current_holder

T = TypeVar("T")


def _state(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class Memo:
    """Values by key for one ledger generation; a new generation starts empty."""

    LIMIT = 200_000

    def __init__(self) -> None:
        self._gen: Hashable = None
        self._items: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def put(self, generation: Hashable, items: dict[Hashable, Any]) -> None:
        with self._lock:
            if generation != self._gen:
                self._gen, self._items = generation, {}
            if len(self._items) < self.LIMIT:
                self._items.update(items)

    def get(self, generation: Hashable, key: Hashable) -> Any:
        with self._lock:
            return self._items.get(key) if generation == self._gen else None


class Reader:
    def __init__(self, store: Path, sql_memory_limit: str | None, hold: float = 0.0):
        from gmv_store.query.sql import SAFE_CONFIG, memory_limit_setting

        self.store, self.hold = Path(store), hold
        self.config = {**SAFE_CONFIG, "memory_limit": memory_limit_setting(sql_memory_limit)}
        self._lock = threading.Lock()
        self._warm: Any = None  # a held read-only connection, or None
        self._timer: threading.Timer | None = None

    def _keep_warm(self) -> None:
        if self.hold <= 0:
            return
        with self._lock:
            if self._warm is not None:
                return  # its timer closes it `hold` seconds after it was opened
            try:
                self._warm = open_ledger_readonly(self.store, config=self.config)
            except Exception:  # the read itself reports what is wrong
                return
            self._timer = threading.Timer(self.hold, self.close)
            self._timer.daemon = True
            self._timer.start()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._warm is not None:
                self._warm.close()
                self._warm = None

    def read(self, fn: Callable[..., T], *args: Any, note: Callable[[str], None] | None = None, **kwargs: Any) -> T:
        """fn(con, *args, **kwargs) on a read-only connection, as `api.read`."""
        self._keep_warm()
        got: T = api.read(self.store, fn, *args, note=note, config=self.config, **kwargs)
        return got

    def status(self, note: Callable[[str], None] | None = None, also: Callable[[Any], Any] | None = None,
               sources: dict[str, Any] | None = None) -> dict[str, Any]:
        self._keep_warm()
        return api.status(self.store, note=note, config=self.config, also=also, sources=sources)

    def generation(self) -> tuple[Any, ...]:
        if current_holder(self.store):
            return ("snapshot", _state(self.store / SNAPSHOT_FILE))
        return ("ledger", _state(self.store / LEDGER_FILE), _state(self.store / (LEDGER_FILE + ".wal")))
