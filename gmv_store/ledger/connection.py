"""The DuckDB ledger: opening it (writer or reader), bulk inserts, transactions.

DuckDB lets one process write a file and no other process open it meanwhile, so writers
publish `ledger.snapshot.duckdb` (see Store.snapshot) and readers fall back to it.
Only `gmv init` creates a ledger: every other command refuses a store whose ledger is
missing or unreadable, rather than carrying on over an empty new one.
"""
from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from ..config import LEDGER_FILE, default_store_path, read_config
from ..errors import GmvError, StoreDamaged, StoreLocked
from ..integrity import describe_unfinished, unfinished_repair
from ..lock import current_holder
from .checks import schema_problems

SNAPSHOT_FILE = "ledger.snapshot.duckdb"
Connection = duckdb.DuckDBPyConnection
READER_WAIT_S = 10.0  # how long opening the ledger waits for a reader's file lock


def _damaged(path: Path, what: str) -> StoreDamaged:
    return StoreDamaged(
        f"ledger {path} {what}; fix: restore it from a backup of the store folder, or rebuild it from the "
        f"vector collections with `gmv repair --store {path.parent}`"
    )


def connect_ledger(path: Path, read_only: bool = False, config: dict[str, Any] | None = None, create: bool = False,
                   wait: float = READER_WAIT_S) -> Connection:
    """Open a ledger file. `create` only for `gmv init`: elsewhere a missing file is damage.
    A file lock held by a reader (lookups are short) is waited out for up to `wait` seconds."""
    if not create and not path.is_file():
        raise _damaged(path, "is missing")
    deadline = time.monotonic() + wait
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config or {})
        except duckdb.IOException as e:
            if "lock" in str(e).lower() and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            raise _open_error(path, e) from None
        except duckdb.ConnectionException as e:
            if "different configuration" not in str(e):
                raise _damaged(path, f"is damaged ({str(e).splitlines()[0][:160]})") from None
            # DuckDB allows one set of settings per file and process (`gmv sql` reads with its fences)
            raise GmvError(f"ledger {path} is open in this process with other DuckDB settings (another read is "
                           "running, e.g. a `sql` query); fix: run the reads one after the other") from None
        except duckdb.Error as e:  # truncated or not a DuckDB file
            raise _damaged(path, f"is damaged ({str(e).splitlines()[0][:160]})") from None


def _open_error(path: Path, e: Exception) -> GmvError:
    msg = str(e)
    if "lock" in msg.lower():
        holder = current_holder(path.parent) or "another process"
        if holder.startswith(f"pid {os.getpid()} "):  # we hold the writer lock: a reader has the file open
            holder = _file_users(path) or "a reading process (e.g. `gmv sql`, `values` or `serve`)"
        return StoreLocked(f"ledger {path} is held by {holder}; fix: retry when it finishes, or pass a longer "
                           "--wait SECONDS")
    if "space" in msg.lower():
        return GmvError(f"cannot open ledger {path}: {msg.splitlines()[0]}; fix: free disk space")
    return _damaged(path, f"cannot be read ({msg.splitlines()[0][:160]})")


def _file_users(path: Path) -> str | None:
    """Other processes with `path` open, as "pid N (command)" (Linux /proc; None elsewhere)."""
    target, found = str(path.resolve()), []
    for proc in Path("/proc").glob("[0-9]*"):
        if proc.name == str(os.getpid()):
            continue
        try:
            if any(os.readlink(fd) == target for fd in (proc / "fd").iterdir()):
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
                found.append(f"pid {proc.name} ({' '.join(os.path.basename(c.decode(errors='replace')) for c in cmd[:4])})")
        except OSError:
            continue
    return ", ".join(found[:3]) or None


def open_ledger_readonly(store: str | Path | None, config: dict[str, Any] | None = None,
                         on_snapshot: Callable[[str], None] | None = None, unfinished_ok: bool = False) -> Connection:
    """A read-only ledger connection. While a writer holds the store, read the snapshot it
    publishes instead, and tell `on_snapshot(message)` how old it is. A store whose repair
    did not finish is refused (StoreDamaged) unless `unfinished_ok` (`gmv status`).

    The store's own writer lock decides, not DuckDB's: after a checkpoint DuckDB's file lock
    no longer covers the database file, and reading it under a writer is not safe."""
    root = default_store_path(store)
    read_config(root)  # clear error if there is no store
    marker = None if unfinished_ok else unfinished_repair(root)
    if marker is not None:
        raise StoreDamaged(describe_unfinished(root, marker))
    holder = current_holder(root)
    if holder is None:
        return _whole(connect_ledger(root / LEDGER_FILE, read_only=True, config=config), root / LEDGER_FILE)
    snap = root / SNAPSHOT_FILE
    if not snap.exists():
        raise StoreLocked(f"store {root} is being written by {holder} and has no read snapshot yet; "
                          "fix: retry when it finishes (writers publish a snapshot every minute or so)")
    if on_snapshot is not None:
        age = _dt.datetime.now().timestamp() - snap.stat().st_mtime
        on_snapshot(f"note: store is being written by {holder}; reading its snapshot from {age:.0f}s ago")
    return _whole(connect_ledger(snap, read_only=True, config=config), snap)


def _whole(con: Connection, path: Path) -> Connection:
    """The connection, if the ledger has every table and view its migrations make."""
    lacking = schema_problems(con)
    if lacking:
        con.close()
        raise _damaged(path, "lacks " + ", ".join(f"{kind} {name}" for kind, name in lacking))
    return con


def arrow_scans_paid() -> bool:
    """Whether DuckDB's scans of Arrow tables cost nothing more in this process. Faster than
    list parameters per row (pyarrow converts in C, DuckDB scans without the GIL), but
    DuckDB imports pandas at its first one (~0.35 s here), which a short ingest of images
    should not pay; `--vectors` ingest pays it in its first batch (vector_origins) and then
    gains on every batch."""
    return "pandas" in sys.modules


def insert_columns(con: Connection, table: str, columns: Mapping[str, Sequence[Any]], conflict: str = "") -> None:
    """Bulk insert: one statement with a list parameter per column (unnested side by side).
    DuckDB's executemany runs row by row and is ~50x slower."""
    if not columns or not len(next(iter(columns.values()))):
        return
    names = list(columns)
    select = ", ".join(f"unnest(${i + 1}) AS {n}" for i, n in enumerate(names))
    con.execute(
        f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(names)} FROM (SELECT {select}) {conflict}",
        [list(columns[n]) for n in names],
    )


@contextmanager
def transaction(con: Connection) -> Iterator[Connection]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


# DuckDB's own default (16 MB of WAL): every checkpoint also rewrites the tables' indexes, so
# at a million rows one took longer than a batch's upsert and stopped the writer (6 s of a 1M
# ingest); 64 MB: 2.5 s (one timed run each). 1 GB did away with the waits but the engine's
# own calls then took ~20 % more CPU, twice.
BULK_CHECKPOINT = "64MB"


@contextmanager
def fewer_checkpoints(con: Connection, threshold: str = BULK_CHECKPOINT) -> Iterator[None]:
    """A bulk write's checkpoints less often (the setting is the database's, restored after)."""
    row = con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
    con.execute(f"SET checkpoint_threshold = '{threshold}'")
    try:
        yield
    finally:
        con.execute(f"SET checkpoint_threshold = '{row[0] if row else '16MB'}'")


def rows(con: Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """A query's rows as dicts keyed by column name."""
    cur = con.execute(sql, list(params))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def copy_snapshot(con: Connection, root: Path) -> float | None:
    """Checkpoint the writer's ledger and copy it to the readers' snapshot file (replaced
    whole); the seconds the copy took, or None when the disk has no room for it."""
    import shutil

    from .. import diskspace

    tmp = root / (SNAPSHOT_FILE + ".tmp")
    try:
        con.execute("CHECKPOINT")
        if (diskspace.free_bytes(root) or 0) < (root / LEDGER_FILE).stat().st_size + diskspace.SLACK:
            return None
        t = time.monotonic()
        shutil.copyfile(root / LEDGER_FILE, tmp)
        os.replace(tmp, root / SNAPSHOT_FILE)
        return time.monotonic() - t
    except Exception as e:
        tmp.unlink(missing_ok=True)
        if diskspace.is_disk_full(e):
            return None
        raise
