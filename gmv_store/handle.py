"""The object form of the Python API: a store folder as a `GmvStore`, tables as pandas
DataFrames. Every method is one call of `gmv_store.api` (what the CLI runs).

    import gmv_store
    store = gmv_store.init("my-store", profile="basic")    # or gmv_store.open("my-store")
    store.ingest(["train/"], owner="alice", label_from="parent")
    store.value(["samples/"], "gan-v1", label_from="parent", k=10)
    store.values("gan-v1", limit=5)                         # DataFrame: rank, contributor_id, value, ...
    store.match(["new.png"], k=5)                           # DataFrame, nothing stored
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import api
from .api_read import Note, StorePath
from .options import DEFAULT_K, DEFAULT_SQL_TIMEOUT_S

if TYPE_CHECKING:
    import pandas as pd

    from gmv_store.ingest.pipeline import IngestReport
    from gmv_store.query.forget import ForgetReport
    from gmv_store.query.refresh import RefreshReport
    from gmv_store.query.relocate import RelocateReport
    from gmv_store.query.value import ValueReport
    from gmv_store.query.verify import VerifyReport

    from .options import Vectors
    from .repair import RepairReport

_log = logging.getLogger("gmv_store")

# Each method takes the options of the `gmv_store.api` call it makes (gmv_store/options.py has
# their defaults and limits), less what the store object supplies: the folder, `wait` and
# `device`. tests/test_options.py checks that the signatures agree.


class GmvStore:
    """A store folder. Writers (ingest, value, refresh, forget...) open it as its single
    writer for the length of the call; readers (top, values, contributor, sql, status) read
    the ledger, or the running writer's snapshot (`note` hears about that: default, the
    `gmv_store` logger).

        store = gmv_store.open("my-store", wait=30)   # wait up to 30 s for another writer
        store.status()["training_images"]
    """

    def __init__(self, path: StorePath, *, wait: float = 0.0, device: str | None = None,
                 note: Note | None = None) -> None:
        from .config import default_store_path, read_config

        self.path = default_store_path(path)
        read_config(self.path)  # a clear error now if there is no store
        self.wait, self.device = wait, device
        self.note = note or _log.info

    def __repr__(self) -> str:
        return f"GmvStore({str(self.path)!r})"

    # ------------------------------------------------------------------ writers
    def ingest(self, paths: str | Path | Sequence[str | Path], *, owner: str | None = None,
               label_from: str | None = None, label: str | None = None, meta: dict[str, Any] | None = None,
               batch_size: int | None = None, refresh: bool = True, index: bool = True, progress: bool = False,
               image_column: str | None = None, label_column: str | None = None, workers: int | None = None,
               owner_column: str | None = None, vectors: Vectors = None, ray: str | None = None,
               ray_workers: int | None = None, ray_gpus_per_worker: float | None = None) -> IngestReport:
        """Add training images (see `gmv ingest`; options as `gmv_store.api.ingest`); returns
        the IngestReport (`.added`, `.duplicates`, `.problems`, `.refresh`).

            store.ingest(["photos/"], owner="alice", label_from="parent", meta={"licence": "cc-by"})
        """
        return api.ingest(self.path, _as_list(paths), owner=owner, label_from=label_from, label=label, meta=meta,
                          batch_size=batch_size, refresh=refresh, index=index, wait=self.wait, device=self.device,
                          progress=progress, image_column=image_column, label_column=label_column, workers=workers,
                          owner_column=owner_column, vectors=vectors, ray=ray, ray_workers=ray_workers,
                          ray_gpus_per_worker=ray_gpus_per_worker)

    def value(self, paths: str | Path | Sequence[str | Path], set_name: str, *, k: int = DEFAULT_K,
              recall: int | None = None, label_from: str | None = None, label: str | None = None,
              meta: dict[str, Any] | None = None, batch_size: int | None = None, exact: bool = False,
              progress: bool = False, image_column: str | None = None, label_column: str | None = None,
              vectors: Vectors = None, ray: str | None = None, ray_workers: int | None = None,
              ray_gpus_per_worker: float | None = None) -> ValueReport:
        """Value generated images into a set (see `gmv value`; options as `gmv_store.api.value`);
        returns the ValueReport.

            store.value(["samples/"], "gan-v1", label_from="parent", k=50, recall=500)
        """
        return api.value(self.path, _as_list(paths), set_name, k=k, recall=recall, label_from=label_from, label=label,
                         meta=meta, batch_size=batch_size, exact=exact, wait=self.wait, device=self.device,
                         progress=progress, image_column=image_column, label_column=label_column, vectors=vectors,
                         ray=ray, ray_workers=ray_workers, ray_gpus_per_worker=ray_gpus_per_worker)

    def refresh(self, *, progress: bool = False) -> RefreshReport:
        """Re-score what pending training-set changes may alter; returns the RefreshReport.

            store.ingest(["more/"], refresh=False); store.refresh()
        """
        return api.refresh(self.path, wait=self.wait, progress=progress)

    def forget(self, ids: str | Sequence[str] = (), *, owner: str | None = None, source: str | None = None,
               refresh: bool = True, progress: bool = False) -> ForgetReport:
        """Remove training images by id, `owner=` or `source=` glob, then re-score what they
        touched (unless refresh=False); returns the ForgetReport.

            store.forget(owner="alice")
        """
        return api.forget(self.path, _as_list(ids), owner=owner, source=source, refresh=refresh, wait=self.wait,
                          progress=progress)

    def forget_set(self, set_name: str) -> ForgetReport:
        """Remove a generated set: `store.forget_set("gan-v1")`."""
        return api.forget_set(self.path, set_name, wait=self.wait)

    def forget_generated(self, set_name: str, ids: str | Sequence[str]) -> ForgetReport:
        """Remove generated images from a set: `store.forget_generated("gan-v1", ["1cd0b151467cf018"])`."""
        return api.forget_generated(self.path, set_name, _as_list(ids), wait=self.wait)

    def verify(self, *, full: bool = False, sample: int = 200, seed: int = 0) -> VerifyReport:
        """Recompute a sample of `sample` generated images (or `full=True`: everything) and
        compare; `.ok` is True when stored and recomputed values agree: `store.verify(full=True).ok`."""
        return api.verify(self.path, full=full, sample=sample, seed=seed, wait=self.wait)

    def relocate(self, old: str | Path, new: str | Path, dry_run: bool = False) -> RelocateReport:
        """Data outside the store moved from folder `old` to `new`: rewrite its recorded
        sources (see `gmv relocate`). Returns a RelocateReport."""
        return api.relocate(self.path, old, new, dry_run=dry_run, wait=self.wait)

    def repair(self, *, k: int | None = None, recall: int | None = None, drop_unreadable: bool = False) -> RepairReport:
        """Rebuild a missing or damaged ledger or vector collection (see `gmv repair`); `k`
        and `recall` only for sets whose points do not record them."""
        return api.repair(self.path, k=k, recall=recall, drop_unreadable=drop_unreadable, wait=self.wait)

    # ------------------------------------------------------------------ attribution (no writes)
    def match(self, images: str | Path | Sequence[str | Path], k: int = DEFAULT_K, recall: int | None = None,
              exact: bool = False, label_from: str | None = None, label: str | None = None,
              batch_size: int | None = None, vectors: Vectors = None, ray: str | None = None,
              ray_workers: int | None = None, ray_gpus_per_worker: float | None = None) -> pd.DataFrame:
        """Top-k contributors and credits of images that are in no set; nothing is stored.
        One row per (image, contributor), best first; skipped inputs go to `note`.

            store.match(["new.png", "more/"], k=10)   # source, generated_id, quality, rank, contributor_id, ...
        """
        report = api.match(self.path, _as_list(images), k=k, recall=recall, exact=exact, label_from=label_from,
                           label=label, batch_size=batch_size, wait=self.wait, device=self.device, vectors=vectors,
                           ray=ray, ray_workers=ray_workers, ray_gpus_per_worker=ray_gpus_per_worker)
        for p in report.problems:
            self.note(f"skipped: {p.where}: {p.reason}")
        return _frame([{"source": r["source"], "generated_id": r["generated_id"], "generated_label": r["label"],
                        "quality": r["quality"], **c} for r in report.results for c in r["contributors"]])

    # ------------------------------------------------------------------ readers
    def top(self, generated: str | Path | Sequence[str | Path], set_name: str | None = None,
            limit: int | None = None) -> pd.DataFrame:
        """Top contributors of valued generated images (ids or paths): one row per
        (generated image, contributor), best first. An image valued in several sets needs
        `set_name` (BadInput lists them; each set has its own k and credits).

            store.top("1cd0b151467cf018", set_name="gan-v1", limit=10)
        """
        from .errors import BadInput

        gens = api.top(self.path, _as_list(generated), set_name=set_name, limit=limit, note=self.note)
        if set_name is None:
            sets: dict[str, list[str]] = {}
            for g in gens:
                sets.setdefault(g["generated_id"], []).append(g["set_name"])
            several = {gid: names for gid, names in sets.items() if len(names) > 1}
            if several:
                gid, names = next(iter(several.items()))
                raise BadInput(f"generated image {gid} is valued in {len(names)} sets ({', '.join(names)}), each with "
                               f"its own k and credits; fix: pass set_name=, e.g. store.top({gid!r}, "
                               f"set_name={names[0]!r})")
        return _frame([{"set_name": g["set_name"], "generated_id": g["generated_id"], "generated_label": g["label"],
                        **c} for g in gens for c in g["contributors"]])

    def values(self, set_name: str, by: str | None = None, limit: int | None = 20) -> pd.DataFrame:
        """The set's leaderboard (value φ = value_sum / m): set_name, rank, contributor_id,
        value, value_sum, n_credits, label, owner, source; or rolled up `by="owner"` / `"label"`.
        The first `limit` rows (as `gmv values`); `limit=None`: every row.

            store.values("gan-v1", limit=10); store.values("gan-v1", by="owner")
        """
        rows = api.values(self.path, set_name, by=by, limit=limit, note=self.note)
        return _frame([{"set_name": set_name, **r} for r in rows])

    def contributor(self, contributor_id: str, limit: int = 10) -> dict[str, Any]:
        """A training image's ledger row, its value and rank in each set (`sets`) and the
        generated images it contributed most to (`top_generated`)."""
        return api.contributor(self.path, contributor_id, limit=limit, note=self.note)

    def sql(self, query: str, params: Sequence[Any] | None = None, *, timeout: float | None = DEFAULT_SQL_TIMEOUT_S,
            memory_limit: str | None = None) -> pd.DataFrame:
        """Read-only SQL over the documented views with the fences and limits of `gmv sql`
        (`timeout` seconds, 0 or None: no limit; `memory_limit` a DuckDB size or a share of
        RAM); a DataFrame.

            store.sql("SELECT owner, sum(value) AS v FROM owner_values WHERE set_name = ? GROUP BY 1", ["gan-v1"])
        """
        cols, rows = api.sql(self.path, query, params, timeout=timeout, memory_limit=memory_limit, note=self.note)
        import pandas as pd

        return pd.DataFrame.from_records(rows, columns=cols)

    def status(self) -> dict[str, Any]:
        """Counts, backends, sets (m, k, N), pending work and warnings: `store.status()["sets"]`."""
        return api.status(self.path, note=self.note)

    def export(self, set_name: str, out: str | Path, fmt: str = "parquet", overwrite: bool = False) -> dict[str, Any]:
        """Write the set's values, scores and generated rows and the contributors as Parquet
        (or `fmt="csv"`) files into the folder `out`; returns the manifest.

            store.export("gan-v1", "exports/gan-v1")["files"]["values"]["rows"]
        """
        from .export import export

        return export(self.path, set_name, out, fmt, overwrite=overwrite, note=self.note)


def _as_list(x: str | Path | Sequence[str | Path]) -> list[str]:
    return [str(x)] if isinstance(x, (str, Path)) else [str(v) for v in x]


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame.from_records(rows)


def open(path: StorePath, *, wait: float = 0.0, device: str | None = None) -> GmvStore:  # noqa: A001 - mirrors builtins.open
    """An existing store: `store = gmv_store.open("my-store")` (StoreNotFound if there is none)."""
    return GmvStore(path, wait=wait, device=device)


def init(path: StorePath, profile: str | None = None, embedder: str | None = None, rerank: str | None = None,
         quality: str | None = None, params: dict[str, dict[str, Any]] | None = None, engine: str = "edge",
         qdrant_url: str | None = None, collection_prefix: str = "gmv", index: dict[str, Any] | None = None) -> GmvStore:
    """Create a store (or open an identical existing one); options as `gmv init` and
    `gmv_store.api.init_store`: `store = gmv_store.init("my-store", profile="offline")`,
    `gmv_store.init("s", params={"embedder": {"size": 16}})`."""
    api.init_store(path, profile, embedder=embedder, rerank=rerank, quality=quality, params=params, engine=engine,
                   qdrant_url=qdrant_url, collection_prefix=collection_prefix, index=index)
    return GmvStore(path)
