"""Ad-hoc, read-only SQL over the documented views.

Fences against writes, any one of which refuses one: only a single SELECT statement passes
the parser check, and no INSERT/UPDATE/DELETE may hide inside it (in a WITH clause or a
subquery); the connection is opened read-only; and external access (files, URLs, ATTACH,
INSTALL/LOAD of extensions, spilling to a temp directory) is disabled in its configuration,
then the configuration is locked so a statement cannot switch it back on.

Limits against runaway reads, set in the same locked configuration or by the caller's thread:
a memory cap (DuckDB's memory_limit, default 25 % of RAM) and a time limit (default 60 s).
The statement runs in a worker thread, so the calling thread stays free to stop it — on the
time limit or on Ctrl-C (SIGINT reaches the main thread as KeyboardInterrupt) — with DuckDB's
`interrupt()`, which ends a running query within milliseconds.
"""
from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import duckdb

from gmv_store.errors import (
    BadInput,
    QueryInterrupted,
    QueryMemoryLimit,
    QueryTimeout,
    ReadOnlyViolation,
    SqlError,
    param,
)
from gmv_store.ledger import open_ledger_readonly
from gmv_store.options import DEFAULT_SQL_TIMEOUT_S

DEFAULT_MEMORY_LIMIT = "25%"  # of this machine's memory (DuckDB's own percentage form)
FETCH_ROWS = 10_000  # rows per fetch: between fetches the worker checks whether it was stopped

SAFE_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "temp_directory": "",  # no spilling: the memory cap is a cap, and `gmv sql` writes no files
    "lock_configuration": True,
}

REFUSED = "`gmv sql` is read-only (one SELECT statement, no files, no extensions)"
_NODE = re.compile(r"^([A-Z_]+)_QUERY_NODE$")
_LEADING = re.compile(r"^(?:\s+|--[^\n]*\n?|/\*.*?\*/)*", re.S)


def _statement_name(st: duckdb.Statement) -> str:
    """What the user wrote: its leading keyword (INSTALL, CHECKPOINT, USE...), since DuckDB's
    statement types lump several together (INSTALL is a LOAD, CHECKPOINT a CALL, USE a SET)."""
    text = _LEADING.sub("", st.query, count=1)
    words = re.findall(r"[A-Za-z_]+", text[:40])
    if words and words[0].upper() not in ("WITH",):
        first = words[0].upper()
        return f"{first} {words[1].upper()}" if first == "FORCE" and len(words) > 1 else first
    return str(st.type).rsplit(".", 1)[-1]


def _hidden_writes(con: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    """Data-modifying statements inside a SELECT (`WITH x AS (DELETE ... RETURNING *) SELECT ...`).

    Read from DuckDB's own parse tree (json_serialize_sql), not from a keyword scan: the tree
    is exactly what would run, so quoted identifiers, string literals and comments that
    contain INSERT cannot be mistaken for writes, and no spelling of a write can slip past."""
    row = cast(tuple[Any, ...], con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone())  # one row always
    tree = json.loads(row[0])
    if tree.get("error"):
        raise ReadOnlyViolation(f"statement could not be checked ({tree.get('error_message', 'unknown error')}): {REFUSED}")
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            kind = node.get("type")
            m = _NODE.match(kind) if isinstance(kind, str) else None
            if m:
                found.add(m.group(1))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(tree)
    return found


_SCRATCH: list[duckdb.DuckDBPyConnection] = []
_SCRATCH_LOCK = threading.Lock()


def _scratch() -> duckdb.DuckDBPyConnection:
    """A cursor on one private in-memory database for the parse-tree check: starting a
    DuckDB database costs tens of ms, a cursor on a running one nothing (the web UI's SQL
    page runs one query after another)."""
    with _SCRATCH_LOCK:
        if not _SCRATCH:
            _SCRATCH.append(duckdb.connect(":memory:", config=SAFE_CONFIG))
        return _SCRATCH[0].cursor()


def check_read_only(sql: str, con: duckdb.DuckDBPyConnection | None = None) -> None:
    """Refuse anything but one SELECT statement that writes nothing (ReadOnlyViolation)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise SqlError(f"SQL does not parse: {str(e).splitlines()[0]}") from None
    if not statements:
        raise SqlError("no SQL statement given; fix: gmv sql \"SELECT * FROM contributor_values LIMIT 5\"")
    for st in statements:
        if st.type != duckdb.StatementType.SELECT:
            raise ReadOnlyViolation(f"{_statement_name(st)} statements are refused: {REFUSED}")
    if len(statements) > 1:
        raise ReadOnlyViolation(f"{len(statements)} statements given: `gmv sql` runs one statement at a time; "
                                "fix: run them one by one")
    scratch = con or _scratch()
    try:
        hidden = _hidden_writes(scratch, statements[0].query)
    finally:
        if con is None:
            scratch.close()
    if hidden:
        kinds = "/".join(sorted(hidden))
        raise ReadOnlyViolation(f"{kinds} statements are refused, also inside WITH or a subquery: {REFUSED}")


def memory_limit_setting(memory_limit: str | None) -> str:
    """A DuckDB memory_limit value ("2GB", "512MiB", "10%"), checked by DuckDB's own parser."""
    value = DEFAULT_MEMORY_LIMIT if memory_limit in (None, "") else str(memory_limit).strip()
    return _checked_memory_limit(value)


@functools.lru_cache(maxsize=64)
def _checked_memory_limit(value: str) -> str:
    """Checked once per value (a refused one raises and is not kept): the check starts a
    DuckDB database, tens of ms."""
    try:
        duckdb.connect(":memory:", config={"memory_limit": value}).close()
    except duckdb.Error as e:
        raise BadInput(f"{param('memory_limit')} {value!r}: {str(e).splitlines()[0].split(': ', 1)[-1]}; "
                       "fix: give a size such as 2GB or 512MB, or a share of RAM such as 10%") from None
    return value


def run_sql(store: str | Path | None, sql: str, params: list[Any] | None = None,
            timeout: float | None = DEFAULT_SQL_TIMEOUT_S, memory_limit: str | None = None,
            on_snapshot: Callable[[str], None] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one read-only SELECT on the store's ledger; returns (column names, rows).

    `timeout`: seconds before the query is stopped (QueryTimeout); 0 or None = no limit.
    `memory_limit`: DuckDB size ("2GB") or share of RAM ("10%"); default 25 % of RAM
    (QueryMemoryLimit beyond it). Ctrl-C in the main thread stops the query (QueryInterrupted).
    Every other failure of the statement is a SqlError; refusals are ReadOnlyViolation."""
    if timeout is not None and timeout < 0:
        raise BadInput(f"{param('timeout')} {timeout}: must be 0 (no limit) or a number of seconds")
    check_read_only(sql)
    limit = memory_limit_setting(memory_limit)
    con = open_ledger_readonly(store, config={**SAFE_CONFIG, "memory_limit": limit}, on_snapshot=on_snapshot)
    return _run_stoppable(con, sql, list(params or []), timeout or None, limit)


def _run_stoppable(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], timeout: float | None,
                   limit: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    outcome: dict[str, Any] = {}
    done = threading.Event()
    stop = threading.Event()

    def work() -> None:
        try:
            cur = con.execute(sql, params)
            cols = [d[0] for d in cur.description] if cur.description else []
            rows: list[tuple[Any, ...]] = []
            while not stop.is_set():
                chunk = cur.fetchmany(FETCH_ROWS)
                rows.extend(chunk)
                if len(chunk) < FETCH_ROWS:
                    break
            outcome["result"] = (cols, rows)
        except BaseException as e:  # handed to the calling thread
            outcome["error"] = e
        finally:
            done.set()

    t0 = time.monotonic()
    worker = threading.Thread(target=work, name="gmv-sql", daemon=True)
    worker.start()
    try:
        while not done.wait(0.05):
            if timeout is not None and time.monotonic() - t0 >= timeout:
                _stop(con, stop, done)
                raise QueryTimeout(f"query stopped at its time limit of {timeout:g} s; fix: narrow it (WHERE, LIMIT) "
                                   "or allow more time with --timeout SECONDS (0 = no limit)")
    except KeyboardInterrupt:
        _stop(con, stop, done)
        raise QueryInterrupted(f"query interrupted (Ctrl-C) after {time.monotonic() - t0:.1f} s; nothing was changed") from None
    finally:
        if done.is_set():
            con.close()
        # else: DuckDB did not stop within the grace period; the daemon thread ends with the
        # process, and closing the connection under a running query is not safe
    err = outcome.get("error")
    if err is None:
        result: tuple[list[str], list[tuple[Any, ...]]] = outcome["result"]
        return result
    if isinstance(err, duckdb.OutOfMemoryException):
        raise QueryMemoryLimit(f"query needs more memory than its limit of {limit} ({_first_line(err)}); fix: narrow "
                               "it (WHERE, LIMIT, fewer columns) or raise --memory-limit (e.g. --memory-limit 8GB)") from None
    if isinstance(err, duckdb.PermissionException):
        raise ReadOnlyViolation(f"refused: {_first_line(err)} (`gmv sql` cannot read or write files)") from None
    if isinstance(err, duckdb.Error):
        raise SqlError(f"SQL error: {_first_line(err)}") from None
    raise err


def _stop(con: duckdb.DuckDBPyConnection, stop: threading.Event, done: threading.Event, grace: float = 1.0) -> None:
    """Interrupt the running statement; repeated, since an interrupt sent before DuckDB starts
    executing is lost."""
    stop.set()
    deadline = time.monotonic() + grace
    while not done.is_set() and time.monotonic() < deadline:
        con.interrupt()
        done.wait(0.02)


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
