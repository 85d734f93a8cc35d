"""A store folder as an object: `gmv_store.open(path)` / `gmv_store.init(path, ...)`.

    store = gmv_store.open("my-store")
    store.ingest(["new-batch/"], owner="bob")
    store.top("1cd0b151467cf018", set_name="gan-v1")     # pandas DataFrame

Each method is one call of `gmv_store.api` (which returns plain records, as the CLI prints
them); tables come back as pandas DataFrames.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from . import api
from .api import Note

_log = logging.getLogger("gmv_store")


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
        return api.ingest(self.path, _as_list(paths), wait=self.wait, device=self.device, **kw)

    def value(self, paths, set_name: str, **kw):
        """Value generated images into a set (see `gmv value`); returns the ValueReport."""
        return api.value(self.path, _as_list(paths), set_name, wait=self.wait, device=self.device, **kw)

    def refresh(self, **kw):
        return api.refresh(self.path, wait=self.wait, **kw)

    def forget(self, ids: Sequence[str] = (), **kw):
        return api.forget(self.path, _as_list(ids), wait=self.wait, **kw)

    def forget_set(self, set_name: str):
        return api.forget_set(self.path, set_name, wait=self.wait)

    def forget_generated(self, set_name: str, ids: Sequence[str]):
        return api.forget_generated(self.path, set_name, _as_list(ids), wait=self.wait)

    def verify(self, **kw):
        return api.verify(self.path, wait=self.wait, **kw)

    def repair(self, **kw):
        return api.repair(self.path, wait=self.wait, **kw)

    # readers
    def top(self, generated, set_name: str | None = None, limit: int | None = None):
        """One row per (generated image, contributor), best first."""
        gens = api.top(self.path, _as_list(generated), set_name=set_name, limit=limit, note=self.note)
        return _frame([{"set_name": g["set_name"], "generated_id": g["generated_id"], "generated_label": g["label"],
                        **c} for g in gens for c in g["contributors"]])

    def values(self, set_name: str, by: str | None = None, limit: int | None = None):
        return _frame(api.values(self.path, set_name, by=by, limit=limit, note=self.note))

    def contributor(self, contributor_id: str, limit: int = 10) -> dict:
        return api.contributor(self.path, contributor_id, limit=limit, note=self.note)

    def sql(self, query: str, params: Sequence | None = None, **limits):
        cols, rows = api.sql(self.path, query, params, note=self.note, **limits)
        import pandas as pd

        return pd.DataFrame.from_records(rows, columns=cols)

    def status(self) -> dict:
        return api.status(self.path, note=self.note)


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
    api.init_store(path, profile, **kw)
    return GmvStore(path)
