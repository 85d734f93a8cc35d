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

from . import api

_log = logging.getLogger("gmv_store")


def _mirrors(fn, drop=("path", "wait", "device")):
    """The method's signature and keywords are those of `api.<fn>` (less what the store
    object supplies), so `help(store.ingest)` and editors show every option and its default."""
    import inspect

    def wrap(method):
        sig = inspect.signature(fn)
        params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        params += [p for n, p in sig.parameters.items() if n not in drop]
        method.__signature__ = sig.replace(parameters=params)
        method.__doc__ = f"{method.__doc__ or ''}\n\n    Options (as `gmv_store.api.{fn.__name__}`): {fn.__doc__ or ''}"
        return method

    return wrap


class GmvStore:
    """A store folder. Writers (ingest, value, refresh, forget...) open it as its single
    writer for the length of the call; readers (top, values, contributor, sql, status) read
    the ledger, or the running writer's snapshot (`note` hears about that: default, the
    `gmv_store` logger).

        store = gmv_store.open("my-store", wait=30)   # wait up to 30 s for another writer
        store.status()["training_images"]
    """

    def __init__(self, path, *, wait: float = 0.0, device: str | None = None, note=None):
        from .config import default_store_path, read_config

        self.path = default_store_path(path)
        read_config(self.path)  # a clear error now if there is no store
        self.wait, self.device = wait, device
        self.note = note or _log.info

    def __repr__(self) -> str:
        return f"GmvStore({str(self.path)!r})"

    # ------------------------------------------------------------------ writers
    @_mirrors(api.ingest)
    def ingest(self, paths, **kw):
        """Add training images (see `gmv ingest`); returns the IngestReport (`.added`,
        `.duplicates`, `.problems`, `.refresh`).

            store.ingest(["photos/"], owner="alice", label_from="parent", meta={"licence": "cc-by"})
        """
        return api.ingest(self.path, _as_list(paths), wait=self.wait, device=self.device, **kw)

    @_mirrors(api.value)
    def value(self, paths, set_name: str, **kw):
        """Value generated images into a set (see `gmv value`); returns the ValueReport.

            store.value(["samples/"], "gan-v1", label_from="parent", k=50, recall=500)
        """
        return api.value(self.path, _as_list(paths), set_name, wait=self.wait, device=self.device, **kw)

    @_mirrors(api.refresh)
    def refresh(self, **kw):
        """Re-score what pending training-set changes may alter; returns the RefreshReport.

            store.ingest(["more/"], refresh=False); store.refresh()
        """
        return api.refresh(self.path, wait=self.wait, **kw)

    @_mirrors(api.forget)
    def forget(self, ids: Sequence[str] = (), **kw):
        """Remove training images by id, `owner=` or `source=` glob, then re-score what they
        touched; returns the ForgetReport.

            store.forget(owner="alice")
        """
        return api.forget(self.path, _as_list(ids), wait=self.wait, **kw)

    def forget_set(self, set_name: str):
        """Remove a generated set: `store.forget_set("gan-v1")`."""
        return api.forget_set(self.path, set_name, wait=self.wait)

    def forget_generated(self, set_name: str, ids: Sequence[str]):
        """Remove generated images from a set: `store.forget_generated("gan-v1", ["1cd0b151467cf018"])`."""
        return api.forget_generated(self.path, set_name, _as_list(ids), wait=self.wait)

    @_mirrors(api.verify)
    def verify(self, **kw):
        """Recompute a sample (or `full=True`: everything) and compare; `.ok` is True when
        stored and recomputed values agree: `store.verify(full=True).ok`."""
        return api.verify(self.path, wait=self.wait, **kw)

    def relocate(self, old, new, dry_run: bool = False):
        """Data outside the store moved from folder `old` to `new`: rewrite its recorded
        sources (see `gmv relocate`). Returns a RelocateReport."""
        return api.relocate(self.path, old, new, dry_run=dry_run, wait=self.wait)

    @_mirrors(api.repair)
    def repair(self, **kw):
        """Rebuild a missing or damaged ledger or vector collection (see `gmv repair`)."""
        return api.repair(self.path, wait=self.wait, **kw)

    # ------------------------------------------------------------------ attribution (no writes)
    def match(self, images, k: int = 50, recall: int | None = None, exact: bool = False, **kw):
        """Top-k contributors and credits of images that are in no set; nothing is stored.
        One row per (image, contributor), best first; skipped inputs go to `note`.

            store.match(["new.png", "more/"], k=10)   # source, generated_id, quality, rank, contributor_id, ...
        """
        report = api.match(self.path, _as_list(images), k=k, recall=recall, exact=exact, wait=self.wait,
                           device=self.device, **kw)
        for p in report.problems:
            self.note(f"skipped: {p.where}: {p.reason}")
        return _frame([{"source": r["source"], "generated_id": r["generated_id"], "generated_label": r["label"],
                        "quality": r["quality"], **c} for r in report.results for c in r["contributors"]])

    # ------------------------------------------------------------------ readers
    def top(self, generated, set_name: str | None = None, limit: int | None = None):
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

    def values(self, set_name: str, by: str | None = None, limit: int | None = None):
        """The set's leaderboard (value φ = value_sum / m): set_name, rank, contributor_id,
        value, value_sum, n_credits, label, owner, source; or rolled up `by="owner"` / `"label"`.

            store.values("gan-v1", limit=10); store.values("gan-v1", by="owner")
        """
        rows = api.values(self.path, set_name, by=by, limit=limit, note=self.note)
        return _frame([{"set_name": set_name, **r} for r in rows])

    def contributor(self, contributor_id: str, limit: int = 10) -> dict:
        """A training image's ledger row, its value and rank in each set (`sets`) and the
        generated images it contributed most to (`top_generated`)."""
        return api.contributor(self.path, contributor_id, limit=limit, note=self.note)

    def sql(self, query: str, params: Sequence | None = None, **limits):
        """Read-only SQL over the documented views with the fences and limits of `gmv sql`
        (`timeout=` seconds, `memory_limit=`); a DataFrame.

            store.sql("SELECT owner, sum(value) AS v FROM owner_values WHERE set_name = ? GROUP BY 1", ["gan-v1"])
        """
        cols, rows = api.sql(self.path, query, params, note=self.note, **limits)
        import pandas as pd

        return pd.DataFrame.from_records(rows, columns=cols)

    def status(self) -> dict:
        """Counts, backends, sets (m, k, N), pending work and warnings: `store.status()["sets"]`."""
        return api.status(self.path, note=self.note)

    def export(self, set_name: str, out, fmt: str = "parquet", overwrite: bool = False) -> dict:
        """Write the set's values, scores and generated rows and the contributors as Parquet
        (or `fmt="csv"`) files into the folder `out`; returns the manifest.

            store.export("gan-v1", "exports/gan-v1")["files"]["values"]["rows"]
        """
        from .export import export

        return export(self.path, set_name, out, fmt, overwrite=overwrite, note=self.note)


def _as_list(x) -> list[str]:
    return [str(x)] if isinstance(x, (str, Path)) else [str(v) for v in x]


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame.from_records(rows)


def open(path, *, wait: float = 0.0, device: str | None = None) -> GmvStore:  # noqa: A001 - mirrors builtins.open
    """An existing store: `store = gmv_store.open("my-store")` (StoreNotFound if there is none)."""
    return GmvStore(path, wait=wait, device=device)


def init(path, profile: str | None = None, **kw) -> GmvStore:
    """Create a store (or open an identical existing one); options as `gmv init`
    (`embedder=`, `rerank=`, `quality=`, `params={"embedder": {"size": 16}}`, `engine=`,
    `qdrant_url=`): `store = gmv_store.init("my-store", profile="offline")`."""
    api.init_store(path, profile, **kw)
    return GmvStore(path)
