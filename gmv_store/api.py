"""The Python API: every command of the CLI as a call (the CLI is a thin layer over these).

    import gmv_store
    store = gmv_store.init("my-store", profile="basic")
    store.ingest(["mnist:train"], owner="mnist")
    store.value(["samples/"], "gan-v1", label_from="parent", k=50)
    store.values("gan-v1", limit=10)          # a pandas DataFrame
    store.sql("SELECT owner, sum(value) AS v FROM owner_values GROUP BY 1")

Module-level functions take the store folder and return plain records (lists of dicts,
reports); `GmvStore` wraps them and returns pandas DataFrames for tables. Writers open the
store as its single writer for the length of the call, so other processes can use it between
calls; readers open the ledger read-only (its snapshot while a writer runs).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import BadInput

# Heavy modules (duckdb, numpy, pydantic, Pillow) are imported inside the calls, so that
# importing the API (and the CLI over it) stays fast.

Note = Callable[[str], None]
_log = logging.getLogger("gmv_store")
PARAM_STAGES = ("embedder", "rerank", "quality")


# ----------------------------------------------------------------------------- store lifecycle


def init_store(path, profile: str | None = None, embedder: str | None = None, rerank: str | None = None,
               quality: str | None = None, params: dict[str, dict] | None = None, engine: str = "edge",
               qdrant_url: str | None = None, collection_prefix: str = "gmv") -> dict:
    """Create a store from a profile (default `basic`) with optional per-stage overrides;
    returns its description (as `status`)."""
    from .backends.profiles import get_profile
    from .store import Store

    prof = get_profile(profile or "basic")
    extra = params or {}
    unknown = sorted(set(extra) - set(PARAM_STAGES))
    if unknown:
        raise BadInput(f"parameters for unknown stage(s) {', '.join(unknown)}; stages: {', '.join(PARAM_STAGES)}")
    chosen = {}
    for stage, override in zip(PARAM_STAGES, (embedder, rerank, quality)):
        base = prof[stage]
        name = override or base["name"]
        p = dict(base.get("params", {})) if name == base["name"] else {}
        p.update(extra.get(stage, {}))
        chosen[stage] = (name, p)
    s = Store.init(path, embedder=chosen["embedder"], rerank=chosen["rerank"], quality=chosen["quality"],
                   engine=engine, qdrant_url=qdrant_url, collection_prefix=collection_prefix)
    s.close()
    return describe(path)


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
        "embedder": describe_backend(cfg.embedder), "rerank": describe_backend(cfg.rerank),
        "quality": describe_backend(cfg.quality),
    }


def _writer(path, wait: float = 0.0, device: str | None = None):
    from .store import Store

    return Store.open(path, wait=wait, device=device)


def _reader(path, note: Note | None = None, config: dict | None = None):
    from .ledger import open_ledger_readonly

    return open_ledger_readonly(path, config=config, on_snapshot=note)


# ----------------------------------------------------------------------------- writers


def ingest(path, paths: Sequence[str], *, owner: str | None = None, label_from: str | None = None,
           label: str | None = None, meta: dict | None = None, batch_size: int | None = None,
           refresh: bool = True, wait: float = 0.0, device: str | None = None, progress: bool = False,
           image_column: str | None = None, label_column: str | None = None, workers: int | None = None):
    """Add training images, then (unless refresh=False) bring earlier generated images up to
    date. `image_column`/`label_column` pick Parquet columns (WebDataset: the image extension
    and the .json label key); `workers` decoding processes (default: the core count; 0 or 1:
    in-process). Returns an IngestReport whose `.refresh` holds the RefreshReport (or None)."""
    from ingest.pipeline import ingest as run
    from query.refresh import refresh as run_refresh

    from .sources import InputOptions, default_workers

    opts = InputOptions(label_from=label_from, label=label, image_column=image_column, label_column=label_column)
    with _writer(path, wait, device) as s:
        report = run(s, [str(p) for p in paths], owner=owner, options=opts, meta=meta, progress=progress,
                     workers=default_workers() if workers is None else workers,
                     **({"batch_size": batch_size} if batch_size else {}))
        report.refresh = run_refresh(s, progress=progress) if refresh else None
    return report


def value(path, paths: Sequence[str], set_name: str, *, k: int = 50, recall: int | None = None,
          label_from: str | None = None, label: str | None = None, meta: dict | None = None,
          batch_size: int | None = None, wait: float = 0.0, device: str | None = None, progress: bool = False,
          image_column: str | None = None, label_column: str | None = None):
    """Value generated images into a set. Returns a ValueReport."""
    from query.value import value as run

    from .sources import InputOptions

    opts = InputOptions(label_from=label_from, label=label, image_column=image_column, label_column=label_column)
    with _writer(path, wait, device) as s:
        return run(s, [str(p) for p in paths], set_name, k=k, recall=recall, options=opts, meta=meta,
                   progress=progress, **({"batch_size": batch_size} if batch_size else {}))


def refresh(path, *, wait: float = 0.0, progress: bool = False):
    """Re-score what pending training-set changes may alter. Returns a RefreshReport."""
    from query.refresh import refresh as run

    with _writer(path, wait) as s:
        return run(s, progress=progress)


def forget(path, ids: Sequence[str] = (), *, owner: str | None = None, source: str | None = None,
           refresh: bool = True, wait: float = 0.0, progress: bool = False):
    """Remove training images (by id, owner or source glob), then re-score what they touched.
    Returns a ForgetReport whose `.refresh` holds the RefreshReport (or None)."""
    from query.forget import forget_training
    from query.refresh import refresh as run_refresh

    with _writer(path, wait) as s:
        report = forget_training(s, list(ids), owner=owner, source=source)
        report.refresh = run_refresh(s, progress=progress) if refresh else None
    return report


def forget_set(path, set_name: str, *, wait: float = 0.0):
    from query.forget import forget_set as run

    with _writer(path, wait) as s:
        return run(s, set_name)


def forget_generated(path, set_name: str, ids: Sequence[str], *, wait: float = 0.0):
    from query.forget import forget_generated as run

    with _writer(path, wait) as s:
        return run(s, set_name, list(ids))


def verify(path, *, full: bool = False, sample: int = 200, seed: int = 0, wait: float = 0.0):
    """Recompute and compare (see `query.verify`). Returns a VerifyReport."""
    from query.verify import verify as run

    with _writer(path, wait) as s:
        return run(s, sample=None if full else sample, seed=seed)


def repair(path, *, k: int | None = None, recall: int | None = None, drop_unreadable: bool = False,
           wait: float = 0.0):
    """Rebuild a missing or damaged ledger or vector collection (see `gmv_store.repair`)."""
    from .repair import repair as run

    return run(path, k=k, recall=recall, drop_unreadable=drop_unreadable, wait=wait)


def migrate(path) -> list[dict]:
    """Apply pending ledger migrations (opening as the writer does it); returns the status."""
    from .migrate import migration_status

    with _writer(path) as s:
        return migration_status(s.ledger)


# ----------------------------------------------------------------------------- readers


def migrations(path) -> list[dict]:
    """Applied and pending migrations; never writes."""
    from .migrate import migration_status

    con = _reader(path)
    try:
        return migration_status(con)
    finally:
        con.close()


def read(path, fn, *args, note: Note | None = None, **kwargs):
    """fn(con, *args, **kwargs) on a read-only ledger connection (the writer's snapshot while
    one runs; `note` hears about that); for library functions that take a connection."""
    con = _reader(path, note)
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


def status(path, note: Note | None = None) -> dict:
    """Counts, backends, locations, pending work and warnings of a store."""
    from query.lookup import status as run

    from .config import default_store_path
    from .lock import current_holder

    info = describe(path)
    root = default_store_path(path)
    info.update(read(path, run, note=note))
    info["writer"] = current_holder(root) or "none"
    info["refresh_due"] = bool(info["pending_refresh"] or info["refresh_queue"])
    info["warnings"] = _missing_parts(root)
    return info


def _missing_parts(root: Path) -> list[str]:
    from .config import read_config
    from .vectors import ENGINE_DIRS

    cfg = read_config(root)
    if cfg.engine == "server":
        return []  # checked by every writer when it opens the collections
    base = root / ENGINE_DIRS[cfg.engine]
    out = []
    if cfg.engine == "edge":
        for name in ("training", "generated"):
            d = base / name
            if not (d.is_dir() and any(d.iterdir())):
                out.append(f"vector collection '{name}' is missing ({d}); writers will refuse the store until it is "
                           f"restored from a backup or rebuilt with `gmv repair --store {root}`")
    elif not base.is_dir():
        out.append(f"vector store folder {base} is missing; restore it from a backup or run `gmv repair --store {root}`")
    return out


def backends() -> list[dict]:
    """Every backend (kind, name, parameters, description) and profile."""
    from .backends import registry
    from .backends.profiles import PROFILES

    rows = []
    for kind in registry.KINDS:
        for name, cls in registry.available(kind).items():
            rows.append({"kind": kind, "name": name, "params": cls.defaults, "description": cls.description})
    for name, prof in PROFILES.items():
        desc = " + ".join(f"{prof[k]['name']}" for k in PARAM_STAGES)
        rows.append({"kind": "profile", "name": name, "params": {}, "description": f"{desc}: {prof.get('description', '')}"})
    return rows


# ----------------------------------------------------------------------------- the object form


class GmvStore:
    """A store folder as an object. Tables come back as pandas DataFrames.

        store = gmv_store.open("my-store")
        store.ingest(["new-batch/"], owner="bob")
        store.top("1cd0b151467cf018", set_name="gan-v1")
    """

    def __init__(self, path, *, wait: float = 0.0, device: str | None = None, note: Note | None = None):
        from .config import default_store_path, read_config

        self.path = default_store_path(path)
        read_config(self.path)  # a clear error now if there is no store
        self.wait, self.device = wait, device
        self.note = note or _log.info

    def __repr__(self) -> str:
        return f"GmvStore({str(self.path)!r})"

    # writers
    def ingest(self, paths, **kw):
        """Add training images (see `gmv ingest`); returns the IngestReport."""
        return ingest(self.path, _as_list(paths), wait=self.wait, device=self.device, **kw)

    def value(self, paths, set_name: str, **kw):
        """Value generated images into a set (see `gmv value`); returns the ValueReport."""
        return value(self.path, _as_list(paths), set_name, wait=self.wait, device=self.device, **kw)

    def refresh(self, **kw):
        return refresh(self.path, wait=self.wait, **kw)

    def forget(self, ids: Sequence[str] = (), **kw):
        return forget(self.path, _as_list(ids), wait=self.wait, **kw)

    def forget_set(self, set_name: str):
        return forget_set(self.path, set_name, wait=self.wait)

    def forget_generated(self, set_name: str, ids: Sequence[str]):
        return forget_generated(self.path, set_name, _as_list(ids), wait=self.wait)

    def verify(self, **kw):
        return verify(self.path, wait=self.wait, **kw)

    def repair(self, **kw):
        return repair(self.path, wait=self.wait, **kw)

    # readers
    def top(self, generated, set_name: str | None = None, limit: int | None = None):
        """One row per (generated image, contributor), best first."""
        gens = top(self.path, _as_list(generated), set_name=set_name, limit=limit, note=self.note)
        return _frame([{"set_name": g["set_name"], "generated_id": g["generated_id"], "generated_label": g["label"],
                        **c} for g in gens for c in g["contributors"]])

    def values(self, set_name: str, by: str | None = None, limit: int | None = None):
        return _frame(values(self.path, set_name, by=by, limit=limit, note=self.note))

    def contributor(self, contributor_id: str, limit: int = 10) -> dict:
        return contributor(self.path, contributor_id, limit=limit, note=self.note)

    def sql(self, query: str, params: Sequence | None = None, **limits):
        cols, rows = sql(self.path, query, params, note=self.note, **limits)
        import pandas as pd

        return pd.DataFrame.from_records(rows, columns=cols)

    def status(self) -> dict:
        return status(self.path, note=self.note)


def _as_list(x) -> list[str]:
    return [str(x)] if isinstance(x, (str, Path)) else [str(v) for v in x]


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame.from_records(rows)


def open(path, *, wait: float = 0.0, device: str | None = None) -> GmvStore:  # noqa: A001 - mirrors builtins.open
    """An existing store."""
    return GmvStore(path, wait=wait, device=device)


def init(path, profile: str | None = None, **kw) -> GmvStore:
    """Create a store (or open an identical existing one); see `init_store` for the options."""
    init_store(path, profile, **kw)
    return GmvStore(path)
