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

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .api_read import (  # the API's readers, re-exported: api.status, api.values, ...
    PARAM_STAGES,
    Note,
    StorePath,
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
from .options import (
    DEFAULT_K,
    ForgetOptions,
    IngestOptions,
    MatchOptions,
    RefreshOptions,
    RelocateOptions,
    RepairOptions,
    ValueOptions,
    VerifyOptions,
    check_index_settings,
    options_of,
)

if TYPE_CHECKING:
    from gmv_store.ingest.index import IndexReport
    from gmv_store.ingest.pipeline import IngestReport
    from gmv_store.query.attribute import MatchReport
    from gmv_store.query.forget import ForgetReport
    from gmv_store.query.refresh import RefreshReport
    from gmv_store.query.relocate import RelocateReport
    from gmv_store.query.value import ValueReport
    from gmv_store.query.verify import VerifyReport

    from .distributed.settings import RaySettings
    from .options import Vectors
    from .repair import RepairReport
    from .sources import InputOptions
    from .sources.items import Decoded, InputReport
    from .store import Store

__all__ = [  # the calls; readers from api_read
    "PARAM_STAGES", "Note", "StorePath", "backends", "contributor", "describe", "forget", "forget_generated",
    "forget_set", "index", "ingest", "init_store", "match", "migrate", "migrations", "read", "refresh", "relocate",
    "repair", "sql", "status", "top", "value", "values", "verify",
]

# Heavy modules (duckdb, numpy, pydantic, Pillow) are imported inside the calls, so that
# importing the API (and the CLI over it) stays fast. Each call's options are one record of
# gmv_store/options.py (defaults and limits there); the first line of a call builds it.

# ----------------------------------------------------------------------------- store lifecycle


def init_store(path: StorePath, profile: str | None = None, embedder: str | None = None, rerank: str | None = None,
               quality: str | None = None, params: dict[str, dict[str, Any]] | None = None, engine: str = "edge",
               qdrant_url: str | None = None, collection_prefix: str = "gmv",
               index: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create a store from a profile (default `basic`) with optional per-stage overrides and
    index settings (`IndexConfig` fields, e.g. {"mode": "hnsw", "quantization": "int8"});
    returns its description (as `status`)."""
    from pydantic import ValidationError

    from .backends.profiles import get_profile
    from .config import IndexConfig
    from .store import Store

    check_index_settings(index or {})
    try:
        index_config = IndexConfig(**(index or {}))
    except ValidationError as e:
        raise BadInput(f"index settings: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}") from None
    prof = get_profile(profile or "basic")
    extra = params or {}
    unknown = sorted(set(extra) - set(PARAM_STAGES))
    if unknown:
        raise BadInput(f"parameters for unknown stage(s) {', '.join(unknown)}; stages: {', '.join(PARAM_STAGES)}")
    chosen: dict[str, tuple[str, dict[str, Any]]] = {}
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


def _writer(path: StorePath, wait: float = 0.0, device: str | None = None) -> Store:
    """Open as the writer; a `gmv repair` that was killed or stopped is finished first."""
    from .errors import RepairUnfinished
    from .store import Store

    try:
        return Store.open(path, wait=wait, device=device)
    except RepairUnfinished:
        from .repair import finish_repair

        finish_repair(path, wait=wait)
        return Store.open(path, wait=wait, device=device)


def _ray(ray: str | None, workers: int | None, gpus: float | None, vectors: Vectors = None) -> RaySettings | None:
    """RaySettings for `ray=` (host:port, "auto", "local"), or None: the in-process path."""
    from .distributed.settings import ray_settings

    if vectors is not None and ray:
        raise BadInput("--vectors with --ray: rows given with their vectors need no forwards on a cluster; "
                       "fix: drop --ray (ray=; or unset GMV_RAY_ADDRESS)")

    return ray_settings(ray, workers, gpus)


# ----------------------------------------------------------------------------- writers


def ingest(path: StorePath, paths: Sequence[str | Path], *, owner: str | None = None, label_from: str | None = None,
           label: str | None = None, meta: dict[str, Any] | None = None, batch_size: int | None = None,
           refresh: bool = True, index: bool = True, wait: float = 0.0, device: str | None = None,
           progress: bool = False, image_column: str | None = None, label_column: str | None = None,
           workers: int | None = None, owner_column: str | None = None, vectors: Vectors = None, ray: str | None = None,
           ray_workers: int | None = None, ray_gpus_per_worker: float | None = None) -> IngestReport:
    """Add training images, bring the index up to date (unless index=False), then (unless
    refresh=False) bring earlier generated images up to date. `image_column`/`label_column`
    pick Parquet columns (WebDataset: the image extension and the .json label key);
    `owner_column` each image's owner from a Parquet column or .json key (`owner` where an
    image has none); `workers` decoding processes (default: the core count; 0:
    in-process). `vectors`: rows with their recall vectors instead of `paths` (a path, or a
    dict of `sources.vectors.VectorOptions` fields such as {"path": "emb/", "id_column": "url"};
    docs/precomputed.md). `ray`: a Ray cluster's address (host:port, "auto", "local") that
    decodes and embeds instead (docs/scale-out.md), with `ray_workers` forward actors of
    `ray_gpus_per_worker` GPUs. Returns an
    IngestReport whose `.index` holds the IndexReport and `.refresh` the RefreshReport (or None)."""
    o = options_of(IngestOptions, locals())
    from gmv_store.ingest.pipeline import ingest as ingest_images

    from .sources import default_workers

    opts = _inputs(o.label_from, o.label, o.image_column, o.label_column)
    cluster = _ray(o.ray, o.ray_workers, o.ray_gpus_per_worker, o.vectors)
    batch = {"batch_size": o.batch_size} if o.batch_size else {}
    with _writer(path, o.wait, o.device) as s:
        report: IngestReport
        if o.vectors is not None:
            from gmv_store.ingest.vectors_in import ingest_vectors

            from .sources.vectors import vector_options

            report = ingest_vectors(s, vector_options(o.vectors), owner=o.owner, owner_column=o.owner_column,
                                    options=opts, meta=o.meta, progress=o.progress, **batch)
        else:
            report = ingest_images(s, [str(p) for p in paths], owner=o.owner, owner_column=o.owner_column,
                                   options=opts, meta=o.meta, progress=o.progress,
                                   workers=default_workers() if o.workers is None else o.workers, ray=cluster, **batch)
        report.index = _index_and_recheck(s, o.progress) if o.index else None
        report.refresh = _refresh(s, o.progress) if o.refresh else None
    return report


def _inputs(label_from: str | None, label: str | None, image_column: str | None = None,
            label_column: str | None = None) -> InputOptions:
    from .sources import InputOptions

    return InputOptions(label_from=label_from, label=label, image_column=image_column, label_column=label_column)


def _index_and_recheck(store: Store, progress: bool) -> IndexReport:
    """Build the index; a build changes what an approximate search returns, so every stored
    match is queued to be matched again (the pending merge is covered by that)."""
    from gmv_store.ingest.index import build_index
    from gmv_store.query.refresh import queue_all

    report = build_index(store, progress=progress)
    if report.changed:
        report.rechecked = queue_all(store, "index")
    return report


def _refresh(store: Store, progress: bool) -> RefreshReport:
    from gmv_store.query.refresh import refresh as refresh_store

    return refresh_store(store, progress=progress)


def index(path: StorePath, *, settings: dict[str, Any] | None = None, refresh: bool = True, wait: float = 0.0,
          progress: bool = False) -> IndexReport:
    """Build the training collection's HNSW index now (gmv index), after applying new index
    `settings` (IndexConfig fields: mode, hnsw_m, hnsw_ef_construct, quantization) if given.
    Returns the IndexReport, with `.refresh` the re-check of stored matches when the build
    changed anything."""
    from pydantic import ValidationError

    check_index_settings(settings or {})
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


def _refresh_due(store: Store) -> bool:
    from gmv_store.query.refresh import refresh_due

    return any(refresh_due(store.ledger))


def value(path: StorePath, paths: Sequence[str | Path], set_name: str, *, k: int = DEFAULT_K, recall: int | None = None,
          label_from: str | None = None, label: str | None = None, meta: dict[str, Any] | None = None,
          batch_size: int | None = None, exact: bool = False, wait: float = 0.0, device: str | None = None,
          progress: bool = False, image_column: str | None = None, label_column: str | None = None,
          vectors: Vectors = None, ray: str | None = None, ray_workers: int | None = None,
          ray_gpus_per_worker: float | None = None) -> ValueReport:
    """Value generated images into a set (exact=True: bypass the index). `vectors`: rows with
    their recall vectors instead of `paths` (as `ingest`); `ray` as in `ingest` (decoding,
    embedding and quality on the cluster). Returns a ValueReport."""
    o = options_of(ValueOptions, locals())
    from gmv_store.query.value import value as value_images

    opts = _inputs(o.label_from, o.label, o.image_column, o.label_column)
    cluster = _ray(o.ray, o.ray_workers, o.ray_gpus_per_worker, o.vectors)
    with _writer(path, o.wait, o.device) as s:
        return value_images(s, [str(p) for p in paths], set_name, k=o.k, recall=o.recall, options=opts, meta=o.meta,
                            exact=o.exact, progress=o.progress, ray=cluster,
                            batches=_given(s, o.vectors, opts, o.batch_size or 256),
                            **({"batch_size": o.batch_size} if o.batch_size else {}))


def _given(store: Store, vectors: Vectors, options: InputOptions, batch_size: int
           ) -> Callable[[InputReport], Iterator[list[Decoded]]] | None:
    """The batches of rows given with their vectors (`vectors=`), or None: read `paths`."""
    if vectors is None:
        return None
    from gmv_store.query.given import given_batches

    from .sources.vectors import vector_options

    vo = vector_options(vectors)
    return lambda report: given_batches(store, vo, options, batch_size, report)


def match(path: StorePath, paths: Sequence[str | Path], *, k: int = DEFAULT_K, recall: int | None = None,
          exact: bool = False, label_from: str | None = None, label: str | None = None, batch_size: int | None = None,
          wait: float = 0.0, device: str | None = None, vectors: Vectors = None, ray: str | None = None,
          ray_workers: int | None = None, ray_gpus_per_worker: float | None = None) -> MatchReport:
    """Top-k contributors and credits of images in no set; nothing is written (`vectors`:
    rows with their recall vectors instead of `paths`, `ray` as in `ingest`). Returns a
    MatchReport whose `.results` hold one dict per image (what `gmv match --json` prints).
    The embedded engines let one process open the vectors: this takes the writer lock for
    the call (`wait` seconds for a running writer), see `Store.open_reader`."""
    o = options_of(MatchOptions, locals())
    from gmv_store.query.attribute import match as match_images

    from .store import Store

    opts = _inputs(o.label_from, o.label)
    cluster = _ray(o.ray, o.ray_workers, o.ray_gpus_per_worker, o.vectors)
    with Store.open_reader(path, wait=o.wait, device=o.device) as s:
        return match_images(s, [str(p) for p in paths], k=o.k, recall=o.recall, exact=o.exact, options=opts,
                            ray=cluster, batches=_given(s, o.vectors, opts, o.batch_size or 64),
                            **({"batch_size": o.batch_size} if o.batch_size else {}))


def refresh(path: StorePath, *, wait: float = 0.0, progress: bool = False) -> RefreshReport:
    """Re-score what pending training-set changes may alter. Returns a RefreshReport."""
    o = options_of(RefreshOptions, locals())
    with _writer(path, o.wait) as s:
        return _refresh(s, o.progress)


def forget(path: StorePath, ids: Sequence[str] = (), *, owner: str | None = None, source: str | None = None,
           refresh: bool = True, wait: float = 0.0, progress: bool = False) -> ForgetReport:
    """Remove training images (by id, owner or source glob), then re-score what they touched.
    Returns a ForgetReport whose `.refresh` holds the RefreshReport (or None)."""
    o = options_of(ForgetOptions, locals())
    from gmv_store.query.forget import forget_training

    with _writer(path, o.wait) as s:
        report = forget_training(s, list(ids), owner=o.owner, source=o.source)
        report.refresh = _refresh(s, o.progress) if o.refresh else None
    return report


def forget_set(path: StorePath, set_name: str, *, wait: float = 0.0) -> ForgetReport:
    """Remove a generated set: its generated images, scores and values (audited)."""
    from gmv_store.query.forget import forget_set as forget_one_set

    with _writer(path, wait) as s:
        return forget_one_set(s, set_name)


def forget_generated(path: StorePath, set_name: str, ids: Sequence[str], *, wait: float = 0.0) -> ForgetReport:
    """Remove single generated images from a set; the set's values are updated (m shrinks)."""
    from gmv_store.query.forget import forget_generated as forget_images

    with _writer(path, wait) as s:
        return forget_images(s, set_name, list(ids))


def verify(path: StorePath, *, full: bool = False, sample: int = 200, seed: int = 0, wait: float = 0.0) -> VerifyReport:
    """Recompute and compare (see `query.verify`). Returns a VerifyReport."""
    o = options_of(VerifyOptions, locals())
    from gmv_store.query.verify import verify as verify_store

    with _writer(path, o.wait) as s:
        return verify_store(s, sample=None if o.full else o.sample, seed=o.seed)


def relocate(path: StorePath, old: str | Path, new: str | Path, *, dry_run: bool = False,
             wait: float = 0.0) -> RelocateReport:
    """Data outside the store moved from folder `old` to `new`: rewrite the recorded sources
    (ledger and vector payloads, journaled). Returns a RelocateReport (see `query.relocate`)."""
    o = options_of(RelocateOptions, locals())
    from gmv_store.query.relocate import relocate as relocate_sources

    with _writer(path, o.wait) as s:
        return relocate_sources(s, old, new, dry_run=o.dry_run)


def repair(path: StorePath, *, k: int | None = None, recall: int | None = None, drop_unreadable: bool = False,
           wait: float = 0.0) -> RepairReport:
    """Rebuild a missing or damaged ledger or vector collection (see `gmv_store.repair`)."""
    o = options_of(RepairOptions, locals())
    from .repair import repair as repair_store

    return repair_store(path, k=o.k, recall=o.recall, drop_unreadable=o.drop_unreadable, wait=o.wait)


def migrate(path: StorePath) -> list[dict[str, Any]]:
    """Apply pending ledger migrations (opening as the writer does it); returns the status."""
    from .migrate import migration_status

    with _writer(path) as s:
        return migration_status(s.ledger)
