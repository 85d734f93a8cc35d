"""A store: a folder holding store.json, the DuckDB ledger and (embedded) Qdrant data.

`Store.open` takes the writer lock, applies pending migrations and finishes any work an
interrupted command left in the journal, so every command starts from a consistent store.
Read-only lookups use `open_ledger_readonly` and never touch Qdrant.
"""
from __future__ import annotations

import json
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb

from . import diskspace
from . import migrate as migrations
from .backends import registry
from .backends.base import Embedder, Quality, Reranker
from .config import (LEDGER_FILE, BackendSpec, StoreConfig, default_store_path, read_config,
                     write_config)
from .errors import GmvError, StoreLocked, StoreMismatch, StoreNotFound
from .lock import WriterLock, current_holder
from .vectors import VectorSpec, VectorStore, open_vector_store

TRAINING = "training"
GENERATED = "generated"
SNAPSHOT_FILE = "ledger.snapshot.duckdb"
SNAPSHOT_EVERY_S = 60.0


def connect_ledger(path: Path, read_only: bool = False, config: dict | None = None):
    try:
        return duckdb.connect(str(path), read_only=read_only, config=config or {})
    except duckdb.IOException as e:
        msg = str(e)
        if "lock" in msg.lower():
            holder = current_holder(path.parent) or "another process"
            raise StoreLocked(
                f"ledger {path} is being written by {holder} and has no read snapshot yet; "
                "fix: retry when it finishes (writers publish a snapshot at least every minute)"
            ) from None
        raise GmvError(f"cannot open ledger {path}: {msg.splitlines()[0]}") from None


def open_ledger_readonly(store: str | Path | None, config: dict | None = None, on_snapshot=None):
    """A read-only ledger connection. While a writer holds the ledger (DuckDB allows one
    writing process and no readers beside it), fall back to the snapshot the writer
    publishes, and tell `on_snapshot(message)` how old it is."""
    root = default_store_path(store)
    read_config(root)  # clear error if there is no store
    try:
        return connect_ledger(root / LEDGER_FILE, read_only=True, config=config)
    except StoreLocked:
        snap = root / SNAPSHOT_FILE
        if not snap.exists():
            raise
        if on_snapshot is not None:
            import datetime as _dt

            age = _dt.datetime.now().timestamp() - snap.stat().st_mtime
            on_snapshot(f"note: store is being written by {current_holder(root) or 'another process'}; "
                        f"reading its snapshot from {age:.0f}s ago")
        return connect_ledger(snap, read_only=True, config=config)


class Store:
    def __init__(self, root: Path, config: StoreConfig, ledger, lock: WriterLock):
        self.root = root
        self.config = config
        self.ledger = ledger
        self._lock = lock
        self._vectors: VectorStore | None = None
        self._last_snapshot = 0.0
        self.device: str | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def init(
        cls,
        path: str | Path | None,
        embedder: tuple[str, dict] = ("pixels", {}),
        rerank: tuple[str, dict] = ("l2", {}),
        quality: tuple[str, dict] = ("none", {}),
        engine: str = "edge",
        qdrant_url: str | None = None,
        collection_prefix: str = "gmv",
    ) -> "Store":
        """Create a store (or open an identical existing one). Instantiates the backends
        once to record their dimensions and weight checksums."""
        root = default_store_path(path)
        if qdrant_url:
            engine = "server"
        if engine == "server" and not qdrant_url:
            raise GmvError("engine 'server' needs a URL; fix: pass --qdrant-url or set GMV_QDRANT_URL")
        backends = {
            "embedder": registry.create("embedder", *embedder),
            "rerank": registry.create("rerank", *rerank),
            "quality": registry.create("quality", *quality),
        }
        specs = {k: BackendSpec(**b.fingerprint()) for k, b in backends.items()}
        config = StoreConfig(**specs, engine=engine, qdrant_url=qdrant_url, collection_prefix=collection_prefix)
        if (root / "store.json").exists():
            have = read_config(root)
            if not have.backends_equal(config) or have.engine != config.engine:
                raise StoreMismatch(
                    f"{root} already holds a store with {_backend_summary(have)} on engine {have.engine}; "
                    "fix: choose another --store for other backends"
                )
            return cls.open(root)
        diskspace.require_free(root, diskspace.INIT_NEED, "a new store")
        root.mkdir(parents=True, exist_ok=True)
        created_files = not any(root.iterdir())
        try:
            lock = WriterLock(root)
            ledger = connect_ledger(root / LEDGER_FILE)
            migrations.migrate(ledger)
            store = cls(root, config, ledger, lock)
            store.__dict__["embedder"] = backends["embedder"]
            store.__dict__["reranker"] = backends["rerank"]
            store.__dict__["quality"] = backends["quality"]
            for name in (TRAINING, GENERATED):
                store.vectors.ensure_collection(name, store.vector_spec())
            write_config(root, config)  # last: a store exists once store.json does
        except BaseException as e:
            if created_files:
                shutil.rmtree(root, ignore_errors=True)
            diskspace.raise_if_full(e, root)
            raise
        return store

    @classmethod
    def open(cls, path: str | Path | None, wait: float = 0.0, device: str | None = None) -> "Store":
        """Open as the (single) writer. `device` (cuda, mps, cpu, auto) overrides where model
        backends run; it does not change the vectors, so it is not part of the store's record."""
        root = default_store_path(path)
        config = read_config(root)
        lock = WriterLock(root, wait=wait)
        try:
            ledger = connect_ledger(root / LEDGER_FILE)
            migrations.migrate(ledger)
            store = cls(root, config, ledger, lock)
            store.device = device
            store.recover()
        except BaseException as e:
            lock.release()
            diskspace.raise_if_full(e, root)
            raise
        return store

    def snapshot(self) -> bool:
        """Publish a consistent copy of the ledger for readers (between transactions only).
        Skipped (False) when the disk has no room for the copy: readers keep the older one."""
        import os
        import time

        self._last_snapshot = time.monotonic()
        tmp = self.root / (SNAPSHOT_FILE + ".tmp")
        try:
            self.ledger.execute("CHECKPOINT")
            if (diskspace.free_bytes(self.root) or 0) < (self.root / LEDGER_FILE).stat().st_size + diskspace.SLACK:
                return False
            shutil.copyfile(self.root / LEDGER_FILE, tmp)
            os.replace(tmp, self.root / SNAPSHOT_FILE)
        except Exception as e:
            tmp.unlink(missing_ok=True)
            if diskspace.is_disk_full(e):
                return False
            raise
        return True

    def maybe_snapshot(self) -> None:
        import time

        if time.monotonic() - self._last_snapshot > SNAPSHOT_EVERY_S:
            self.snapshot()

    def close(self) -> None:
        try:
            if self.ledger is not None:
                try:
                    self.snapshot()
                except Exception:  # a failed copy must not hide the command's own outcome
                    pass
            if self._vectors is not None:
                vectors, self._vectors = self._vectors, None
                vectors.close()
        finally:
            if self.ledger is not None:
                self.ledger.close()
                self.ledger = None
            self._lock.release()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close; an engine's disk-full error (from the command or from closing) becomes DiskFull."""
        try:
            self.close()
        except BaseException as close_error:
            if exc is None:
                diskspace.raise_if_full(close_error, self.root)
                raise
            # else: report the command's own error, not a follow-up one
        if exc is not None:
            diskspace.raise_if_full(exc, self.root)

    # ------------------------------------------------------------------ parts
    @property
    def vectors(self) -> VectorStore:
        if self._vectors is None:
            c = self.config
            self._vectors = open_vector_store(c.engine, self.root, url=c.qdrant_url, prefix=c.collection_prefix)
        return self._vectors

    def _backend(self, kind: str, spec: BackendSpec):
        params = dict(spec.params)
        if self.device and "device" in registry.backend_class(kind, spec.name).defaults:
            params["device"] = self.device
        backend = registry.create(kind, spec.name, params)
        have = BackendSpec(**backend.fingerprint())
        if have != spec:
            raise StoreMismatch(
                f"{kind} '{spec.name}' now loads weights {have.weights_sha256} but the store's vectors were made "
                f"with {spec.weights_sha256}; fix: restore those weights or use a new store"
            )
        return backend

    @cached_property
    def embedder(self) -> Embedder:
        return self._backend("embedder", self.config.embedder)

    @cached_property
    def reranker(self) -> Reranker:
        return self._backend("rerank", self.config.rerank)

    @cached_property
    def quality(self) -> Quality:
        return self._backend("quality", self.config.quality)

    def vector_spec(self) -> dict[str, VectorSpec]:
        spec = {"recall": VectorSpec(self.embedder.dim, self.embedder.metric)}
        rv = self.reranker.vector_embedder()
        if rv is not None:
            spec["rerank"] = VectorSpec(rv.dim, rv.metric)
        return spec

    def embed(self, images) -> dict[str, Any]:
        """Every stored named vector for a batch of images: one forward per model."""
        out = {"recall": self.embedder.embed(images)}
        rv = self.reranker.vector_embedder()
        if rv is not None:
            # the same model for both stages (e.g. dreamsim + dreamsim): one forward, not two
            same = rv.fingerprint() == self.embedder.fingerprint() and type(rv) is type(self.embedder)
            out["rerank"] = out["recall"] if same else rv.embed(images)
        return out

    # ------------------------------------------------------------------ journal
    def journal_begin(self, kind: str, collection: str, point_ids: list[int], detail: dict | None = None) -> int:
        op_id = self.ledger.execute("SELECT coalesce(max(op_id), 0) + 1 FROM journal").fetchone()[0]
        self.ledger.execute(
            "INSERT INTO journal VALUES (?, ?, ?, ?, ?, current_timestamp)",
            [op_id, kind, collection, point_ids, json.dumps(detail or {})],
        )
        return op_id

    def recover(self) -> int:
        """Undo Qdrant writes whose ledger transaction never committed (the ledger is the
        truth: a point is kept only if its row exists). Returns the number of journal entries."""
        rows = self.ledger.execute("SELECT op_id, kind, collection, point_ids FROM journal ORDER BY op_id").fetchall()
        for op_id, kind, collection, point_ids in rows:
            table = "training_images" if collection == TRAINING else "generated_images"
            kept = {
                r[0]
                for r in self.ledger.execute(
                    f"SELECT point_id FROM {table} WHERE point_id IN (SELECT unnest(?))", [point_ids]
                ).fetchall()
            }
            self.vectors.delete(collection, [p for p in point_ids if p not in kept])
            self.ledger.execute("DELETE FROM journal WHERE op_id = ?", [op_id])
        return len(rows)


def _backend_summary(config: StoreConfig) -> str:
    from .config import describe_backend

    return (
        f"embedder {describe_backend(config.embedder)}, rerank {describe_backend(config.rerank)}, "
        f"quality {describe_backend(config.quality)}"
    )


def require_store(path) -> Path:
    root = default_store_path(path)
    if not (root / "store.json").exists():
        raise StoreNotFound(f"{root}: no gmv store here; fix: run `gmv init --store {root}` or pass --store / set GMV_STORE")
    return root
