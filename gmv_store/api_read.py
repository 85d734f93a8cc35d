"""The Python API's read-only calls (`api` re-exports each): lookups, values, SQL, status,
migrations and backends. Readers open the ledger read-only (its snapshot while a writer
runs) and never take the writer lock."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .options import DEFAULT_SQL_TIMEOUT_S, ContributorOptions, SqlOptions, TopOptions, ValuesOptions, options_of

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

    from .config import IndexConfig

Note = Callable[[str], None]
StorePath = str | Path | None  # a store folder; None: $GMV_STORE, else ./gmv-store-data
PARAM_STAGES = ("embedder", "rerank", "quality")
T = TypeVar("T")


def describe(path: StorePath) -> dict[str, Any]:
    """Where a store's parts are and which backends it uses (no ledger read)."""
    from .config import default_store_path, describe_backend, read_config
    from .vectors import ENGINE_DIRS

    root = default_store_path(path)
    cfg = read_config(root)
    return {
        "store": str(root.absolute()),
        "qdrant": f"{cfg.engine} " + (cfg.qdrant_url or str((root / ENGINE_DIRS[cfg.engine]).absolute())),
        "ledger": str((root / "ledger.duckdb").absolute()),
        "embedder": describe_backend(cfg.embedder),
        "rerank": describe_backend(cfg.rerank) + (" -> falls back to the recall distance (training rows without "
                                                  "images; docs/precomputed.md)" if cfg.rerank_fallback else ""),
        "quality": describe_backend(cfg.quality),
        "index": _describe_index(cfg.index),
    }


def _describe_index(index: IndexConfig) -> str:
    if index.mode == "exact":
        return index.mode
    ef = f", search ef {index.ef_factor:g}x" if index.ef_factor != 2.0 else ""  # shown only when chosen
    return f"{index.mode} (m {index.hnsw_m}, ef_construct {index.hnsw_ef_construct}, quantization {index.quantization}{ef})"


def _reader(path: StorePath, note: Note | None = None, config: dict[str, Any] | None = None,
            unfinished_ok: bool = False) -> DuckDBPyConnection:
    from .ledger import open_ledger_readonly

    return open_ledger_readonly(path, config=config, on_snapshot=note, unfinished_ok=unfinished_ok)


def migrations(path: StorePath) -> list[dict[str, Any]]:
    """Applied and pending migrations; never writes."""
    from .migrate import migration_status

    con = _reader(path)
    try:
        return migration_status(con)
    finally:
        con.close()


def read(path: StorePath, fn: Callable[..., T], *args: Any, note: Note | None = None,
         config: dict[str, Any] | None = None, unfinished_ok: bool = False, **kwargs: Any) -> T:
    """fn(con, *args, **kwargs) on a read-only ledger connection (the writer's snapshot while
    one runs; `note` hears about that); for library functions that take a connection.
    `config`: DuckDB settings of the connection (a process must open a file with one)."""
    con = _reader(path, note, config, unfinished_ok)
    try:
        return fn(con, *args, **kwargs)
    finally:
        con.close()


def top(path: StorePath, refs: Sequence[str | Path], *, set_name: str | None = None, limit: int | None = None,
        note: Note | None = None) -> list[dict[str, Any]]:
    """Top-k contributors of generated images (ids or image paths): one dict per generated
    image and set, with its `contributors` list."""
    o = options_of(TopOptions, locals())
    from gmv_store.query.lookup import top as top_of

    return read(path, top_of, [str(r) for r in refs], set_name=o.set_name, limit=o.limit, note=note)


def contributor(path: StorePath, contributor_id: str, *, limit: int = 10, note: Note | None = None) -> dict[str, Any]:
    """A training image's ledger row, its value and rank in each set (`sets`) and the
    generated images it contributed most to (`top_generated`)."""
    o = options_of(ContributorOptions, locals())
    from gmv_store.query.lookup import contributor as contributor_of

    return read(path, contributor_of, contributor_id, limit=o.limit, note=note)


def values(path: StorePath, set_name: str, *, by: str | None = None, limit: int | None = 20,
           note: Note | None = None) -> list[dict[str, Any]]:
    """The set's leaderboard, or its roll-up `by` "owner" or "label"; `limit` None: every row."""
    o = options_of(ValuesOptions, locals())
    from gmv_store.query.lookup import values as values_of

    return read(path, values_of, set_name, by=o.by, limit=o.limit, note=note)


def sql(path: StorePath, query: str, params: Sequence[Any] | None = None, *, timeout: float | None = DEFAULT_SQL_TIMEOUT_S,
        memory_limit: str | None = None, note: Note | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Read-only SQL over the documented views, with the fences and limits of `gmv sql`:
    `timeout` seconds (0 or None: no limit), `memory_limit` a DuckDB size ("2GB") or a share
    of RAM ("10%") [default 25%]."""
    o = options_of(SqlOptions, locals())
    from gmv_store.query.sql import run_sql

    return run_sql(path, query, list(params or []), timeout=o.timeout, memory_limit=o.memory_limit, on_snapshot=note)


def status(path: StorePath, note: Note | None = None, config: dict[str, Any] | None = None,
           also: Callable[[DuckDBPyConnection], Any] | None = None, count: bool = False,
           sources: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts, backends, locations, pending work and warnings of a store (`config`: as `read`).
    `also(con)`: more to read on the same connection, returned under "also". `count`: open
    the collections (when no writer holds them) and count their points against the ledger.
    `sources`: the reachability check of the recorded sources when the caller has it (else
    sampled now)."""
    from gmv_store.query.lookup import status as counts_of
    from gmv_store.query.relocate import describe_unreachable, unreachable

    from .config import default_store_path
    from .integrity import sum_problems
    from .ledger.front import identities
    from .lock import current_holder
    from .status import collections, disagreements, missing_parts

    info = describe(path)
    root = default_store_path(path)
    info.update(read(path, lambda con: {**counts_of(con), **identities(con), **({"also": also(con)} if also else {}),
                                        "unreachable_sources": sources or unreachable(con, root),
                                        "warnings": sum_problems(con, root)},
                     note=note, config=config, unfinished_ok=True))
    info["writer"] = current_holder(root) or "none"
    info["refresh_due"] = bool(info["pending_refresh"] or info["refresh_queue"])
    info["collections"], info["points_counted"] = collections(root, info, count=count)
    info["warnings"] = (missing_parts(root) + disagreements(root, info) + info["warnings"]
                        + [w for w in [describe_unreachable(info["unreachable_sources"])] if w])
    return info


def backends() -> list[dict[str, Any]]:
    """Every backend (kind, name, parameters, description, origin: built-in or the plugin's
    distribution) and profile."""
    from .backends import registry
    from .backends.profiles import PROFILES

    rows = registry.describe()
    for name, prof in PROFILES.items():
        desc = " + ".join(f"{prof[k]['name']}" for k in PARAM_STAGES)
        rows.append({"kind": "profile", "name": name, "params": {}, "description": f"{desc}: {prof.get('description', '')}",
                     "origin": "built-in"})
    return rows
