"""The Python API's read-only calls (`api` re-exports each): lookups, values, SQL, status,
migrations and backends. Readers open the ledger read-only (its snapshot while a writer
runs) and never take the writer lock."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Note = Callable[[str], None]
PARAM_STAGES = ("embedder", "rerank", "quality")


def describe(path) -> dict:
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


def _describe_index(index) -> str:
    if index.mode == "exact":
        return index.mode
    ef = f", search ef {index.ef_factor:g}x" if index.ef_factor != 2.0 else ""  # shown only when chosen
    return f"{index.mode} (m {index.hnsw_m}, ef_construct {index.hnsw_ef_construct}, quantization {index.quantization}{ef})"


def _reader(path, note: Note | None = None, config: dict | None = None, unfinished_ok: bool = False):
    from .ledger import open_ledger_readonly

    return open_ledger_readonly(path, config=config, on_snapshot=note, unfinished_ok=unfinished_ok)


def migrations(path) -> list[dict]:
    """Applied and pending migrations; never writes."""
    from .migrate import migration_status

    con = _reader(path)
    try:
        return migration_status(con)
    finally:
        con.close()


def read(path, fn, *args, note: Note | None = None, config: dict | None = None, unfinished_ok: bool = False,
         **kwargs):
    """fn(con, *args, **kwargs) on a read-only ledger connection (the writer's snapshot while
    one runs; `note` hears about that); for library functions that take a connection.
    `config`: DuckDB settings of the connection (a process must open a file with one)."""
    con = _reader(path, note, config, unfinished_ok)
    try:
        return fn(con, *args, **kwargs)
    finally:
        con.close()


def top(path, refs: Sequence[str], *, set_name: str | None = None, limit: int | None = None,
        note: Note | None = None) -> list[dict]:
    """Top-k contributors of generated images (ids or image paths): one dict per generated
    image and set, with its `contributors` list."""
    from query.lookup import top as run

    return read(path, run, [str(r) for r in refs], set_name=set_name, limit=limit, note=note)


def contributor(path, contributor_id: str, *, limit: int = 10, note: Note | None = None) -> dict:
    from query.lookup import contributor as run

    return read(path, run, contributor_id, limit=limit, note=note)


def values(path, set_name: str, *, by: str | None = None, limit: int | None = 20, note: Note | None = None) -> list[dict]:
    from query.lookup import values as run

    return read(path, run, set_name, by=by, limit=limit, note=note)


def sql(path, query: str, params: Sequence | None = None, *, note: Note | None = None,
        **limits: Any) -> tuple[list[str], list[tuple]]:
    """Read-only SQL over the documented views, with the fences and limits of `gmv sql`."""
    from query.sql import run_sql

    return run_sql(path, query, list(params or []), on_snapshot=note, **limits)


def status(path, note: Note | None = None, config: dict | None = None, also: Callable | None = None,
           count: bool = False, sources: dict | None = None) -> dict:
    """Counts, backends, locations, pending work and warnings of a store (`config`: as `read`).
    `also(con)`: more to read on the same connection, returned under "also". `count`: open
    the collections (when no writer holds them) and count their points against the ledger.
    `sources`: the reachability check of the recorded sources when the caller has it (else
    sampled now)."""
    from query.lookup import status as run
    from query.relocate import describe_unreachable, unreachable

    from .config import default_store_path
    from .integrity import sum_problems
    from .lock import current_holder
    from .status import collections, disagreements, missing_parts

    info = describe(path)
    root = default_store_path(path)
    info.update(read(path, lambda con: {**run(con), **_identities(con), **({"also": also(con)} if also else {}),
                                        "unreachable_sources": sources or unreachable(con, root),
                                        "warnings": sum_problems(con, root)},
                     note=note, config=config, unfinished_ok=True))
    info["writer"] = current_holder(root) or "none"
    info["refresh_due"] = bool(info["pending_refresh"] or info["refresh_queue"])
    info["collections"], info["points_counted"] = collections(root, info, count=count)
    info["warnings"] = (missing_parts(root) + disagreements(root, info) + info["warnings"]
                        + [w for w in [describe_unreachable(info["unreachable_sources"])] if w])
    return info


def _identities(con) -> dict:
    """Training rows identified by an id, not an image (`ingest --vectors --id-column`):
    said only where there are some."""
    n = con.execute("SELECT count(*) FROM training_images WHERE height = 0").fetchone()[0]
    return {"identity": f"{n:,} training rows identified by an id column, not an image (no thumbnails)"} if n else {}


def backends() -> list[dict]:
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
