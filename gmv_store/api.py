"""The Python API: every command of the CLI as a call (the CLI is a thin layer over these).

    from gmv_store import api
    api.init_store("my-store", "basic")
    api.ingest("my-store", ["train/"], owner="alice", label_from="parent")
    api.value("my-store", ["samples/"], "gan-v1", label_from="parent", k=50)
    api.values("my-store", "gan-v1", limit=10)        # [{"rank": 1, "contributor_id": ..., "value": ...}, ...]
    api.match("my-store", ["new.png"], k=10).results  # attribution without storing anything

Module-level functions take the store folder and return plain records (lists of dicts,
reports); `GmvStore` (gmv_store/handle.py) wraps them and returns pandas DataFrames for tables. Writers open the
store as its single writer for the length of the call, so other processes can use it between
calls; readers open the ledger read-only (its snapshot while a writer runs).
"""
from __future__ import annotations

from collections.abc import Sequence

from .api_read import (  # noqa: F401 - the API's readers, re-exported: api.status, api.values, ...
    PARAM_STAGES,
    Note,
    backends,
    contributor,
    describe,
    migrations,
    read,
    sql,
    status,
    top,
    values,
)
from .errors import BadInput

# Heavy modules (duckdb, numpy, pydantic, Pillow) are imported inside the calls, so that
# importing the API (and the CLI over it) stays fast.

# ----------------------------------------------------------------------------- store lifecycle


def init_store(path, profile: str | None = None, embedder: str | None = None, rerank: str | None = None,
               quality: str | None = None, params: dict[str, dict] | None = None, engine: str = "edge",
               qdrant_url: str | None = None, collection_prefix: str = "gmv", index: dict | None = None) -> dict:
    """Create a store from a profile (default `basic`) with optional per-stage overrides and
    index settings (`IndexConfig` fields, e.g. {"mode": "hnsw", "quantization": "int8"});
    returns its description (as `status`)."""
    from pydantic import ValidationError

    from .backends.profiles import get_profile
    from .config import IndexConfig
    from .store import Store

    try:
        index_config = IndexConfig(**(index or {}))
    except ValidationError as e:
        raise BadInput(f"index settings: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}") from None
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
                   engine=engine, qdrant_url=qdrant_url, collection_prefix=collection_prefix,
                   index=index_config if index else None)
    s.close()
    return describe(path)


def _writer(path, wait: float = 0.0, device: str | None = None):
    """Open as the writer; a `gmv repair` that was killed or stopped is finished first."""
    from .errors import RepairUnfinished
    from .store import Store

    try:
        return Store.open(path, wait=wait, device=device)
    except RepairUnfinished:
        from .repair import finish_repair

        finish_repair(path, wait=wait)
        return Store.open(path, wait=wait, device=device)


def _ray(ray: str | None, workers: int | None, gpus: float | None, vectors=None):
    """RaySettings for `ray=` (host:port, "auto", "local"), or None: the in-process path."""
    from .distributed.settings import ray_settings

    if vectors is not None and ray:
        raise BadInput("--vectors with --ray: rows given with their vectors need no forwards on a cluster; "
                       "fix: drop --ray (ray=; or unset GMV_RAY_ADDRESS)")

    return ray_settings(ray, workers, gpus)


# ----------------------------------------------------------------------------- writers


def ingest(path, paths: Sequence[str], *, owner: str | None = None, label_from: str | None = None,
           label: str | None = None, meta: dict | None = None, batch_size: int | None = None,
           refresh: bool = True, index: bool = True, wait: float = 0.0, device: str | None = None,
           progress: bool = False, image_column: str | None = None, label_column: str | None = None,
           workers: int | None = None, owner_column: str | None = None, vectors=None, ray: str | None = None,
           ray_workers: int | None = None, ray_gpus_per_worker: float | None = None):
    """Add training images, bring the index up to date (unless index=False), then (unless
    refresh=False) bring earlier generated images up to date. `image_column`/`label_column`
    pick Parquet columns (WebDataset: the image extension and the .json label key);
    `owner_column` each image's owner from a Parquet column or .json key (`owner` where an
    image has none); `workers` decoding processes (default: the core count; 0 or 1:
    in-process). `vectors`: rows with their recall vectors instead of `paths` (a path, or a
    dict of `sources.vectors.VectorOptions` fields such as {"path": "emb/", "id_column": "url"};
    docs/precomputed.md). `ray`: a Ray cluster's address (host:port, "auto", "local") that
    decodes and embeds instead (docs/scale-out.md), with `ray_workers` forward actors of
    `ray_gpus_per_worker` GPUs. Returns an
    IngestReport whose `.index` holds the IndexReport and `.refresh` the RefreshReport (or None)."""
    from ingest.pipeline import ingest as run

    from .sources import InputOptions, default_workers

    opts = InputOptions(label_from=label_from, label=label, image_column=image_column, label_column=label_column)
    cluster = _ray(ray, ray_workers, ray_gpus_per_worker, vectors)
    with _writer(path, wait, device) as s:
        if vectors is not None:
            from ingest.vectors_in import ingest_vectors

            from .sources.vectors import vector_options

            report = ingest_vectors(s, vector_options(vectors), owner=owner, owner_column=owner_column, options=opts,
                                    meta=meta, progress=progress, **({"batch_size": batch_size} if batch_size else {}))
        else:
            report = run(s, [str(p) for p in paths], owner=owner, owner_column=owner_column, options=opts, meta=meta, progress=progress,
                         workers=default_workers() if workers is None else workers, ray=cluster,
                         **({"batch_size": batch_size} if batch_size else {}))
        report.index = _index_and_recheck(s, progress) if index else None
        report.refresh = _refresh(s, progress) if refresh else None
    return report


def _index_and_recheck(store, progress: bool):
    """Build the index; a build changes what an approximate search returns, so every stored
    match is queued to be matched again (the pending merge is covered by that)."""
    from ingest.index import build_index
    from query.refresh import queue_all

    report = build_index(store, progress=progress)
    if report.changed:
        report.rechecked = queue_all(store, "index")
    return report


def _refresh(store, progress: bool):
    from query.refresh import refresh as run_refresh

    return run_refresh(store, progress=progress)


def index(path, *, settings: dict | None = None, refresh: bool = True, wait: float = 0.0, progress: bool = False):
    """Build the training collection's HNSW index now (gmv index), after applying new index
    `settings` (IndexConfig fields: mode, hnsw_m, hnsw_ef_construct, quantization) if given.
    Returns the IndexReport, with `.refresh` the re-check of stored matches when the build
    changed anything."""
    from pydantic import ValidationError

    with _writer(path, wait) as s:
        if settings:
            try:
                s.reconfigure_index(**settings)
            except ValidationError as e:
                raise BadInput(f"index settings: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}") from None
        report = _index_and_recheck(s, progress)
        # also when this build changed nothing: a run killed after its build queued the
        # re-check leaves that work for the next `gmv index` to finish
        report.refresh = _refresh(s, progress) if refresh and (report.changed or _refresh_due(s)) else None
    return report


def _refresh_due(store) -> bool:
    from query.refresh import refresh_due

    return any(refresh_due(store.ledger))


def value(path, paths: Sequence[str], set_name: str, *, k: int = 50, recall: int | None = None,
          label_from: str | None = None, label: str | None = None, meta: dict | None = None,
          batch_size: int | None = None, exact: bool = False, wait: float = 0.0, device: str | None = None,
          progress: bool = False, image_column: str | None = None, label_column: str | None = None, vectors=None,
          ray: str | None = None, ray_workers: int | None = None, ray_gpus_per_worker: float | None = None):
    """Value generated images into a set (exact=True: bypass the index). `vectors`: rows with
    their recall vectors instead of `paths` (as `ingest`); `ray` as in `ingest` (decoding,
    embedding and quality on the cluster). Returns a ValueReport."""
    from query.value import value as run

    from .sources import InputOptions

    opts = InputOptions(label_from=label_from, label=label, image_column=image_column, label_column=label_column)
    cluster = _ray(ray, ray_workers, ray_gpus_per_worker, vectors)
    with _writer(path, wait, device) as s:
        return run(s, [str(p) for p in paths], set_name, k=k, recall=recall, options=opts, meta=meta, exact=exact,
                   progress=progress, ray=cluster, batches=_given(s, vectors, opts, batch_size or 256),
                   **({"batch_size": batch_size} if batch_size else {}))


def _given(store, vectors, options, batch_size: int):
    """The batches of rows given with their vectors (`vectors=`), or None: read `paths`."""
    if vectors is None:
        return None
    from query.given import given_batches

    from .sources.vectors import vector_options

    vo = vector_options(vectors)
    return lambda report: given_batches(store, vo, options, batch_size, report)


def match(path, paths: Sequence[str], *, k: int = 50, recall: int | None = None, exact: bool = False,
          label_from: str | None = None, label: str | None = None, batch_size: int | None = None,
          wait: float = 0.0, device: str | None = None, vectors=None, ray: str | None = None,
          ray_workers: int | None = None, ray_gpus_per_worker: float | None = None):
    """Top-k contributors and credits of images in no set; nothing is written (`vectors`:
    rows with their recall vectors instead of `paths`, `ray` as in `ingest`). Returns a
    MatchReport whose `.results` hold one dict per image (what `gmv match --json` prints).
    The embedded engines let one process open the vectors: this takes the writer lock for
    the call (`wait` seconds for a running writer), see `Store.open_reader`."""
    from query.attribute import match as run

    from .sources import InputOptions
    from .store import Store

    opts = InputOptions(label_from=label_from, label=label)
    cluster = _ray(ray, ray_workers, ray_gpus_per_worker, vectors)
    with Store.open_reader(path, wait=wait, device=device) as s:
        return run(s, [str(p) for p in paths], k=k, recall=recall, exact=exact, options=opts, ray=cluster,
                   batches=_given(s, vectors, opts, batch_size or 64), **({"batch_size": batch_size} if batch_size else {}))


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


def relocate(path, old, new, *, dry_run: bool = False, wait: float = 0.0):
    """Data outside the store moved from folder `old` to `new`: rewrite the recorded sources
    (ledger and vector payloads, journaled). Returns a RelocateReport (see `query.relocate`)."""
    from query.relocate import relocate as run

    with _writer(path, wait) as s:
        return run(s, old, new, dry_run=dry_run)


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


