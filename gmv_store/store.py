"""A store: a folder holding store.json, the DuckDB ledger and (embedded) Qdrant data.

`Store.open` takes the writer lock, applies pending migrations, checks that the ledger and
the vector collections are both there, and finishes any work an interrupted command left in
the journal, so every command starts from a consistent store. Read-only lookups use
`ledger.open_ledger_readonly` and never touch Qdrant.

Every write that touches Qdrant goes through `adding` or `removing`, which own the write
order (see their docstrings in journaled.py, a mixin of Store); `recover` undoes or
finishes what a killed command left.
"""
from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import numpy as np

from . import diskspace
from . import migrate as migrations
from .backends import registry
from .backends.base import Embedder, Quality, Reranker
from .backends.named import WorkerEmbedding, embed_named, worker_embedding
from .backends.stored import backend_summary
from .backends.stored import make_backend as make_backend  # re-exported: also what workers and the web call
from .config import LEDGER_FILE, BackendSpec, IndexConfig, StoreConfig, default_store_path, read_config, write_config
from .errors import GmvError, RepairUnfinished, StoreDamaged, StoreMismatch
from .integrity import count_problems, describe_unfinished, unfinished_repair
from .journaled import GENERATED as GENERATED  # the names: importers take them from here
from .journaled import TABLES as TABLES
from .journaled import TRAINING as TRAINING
from .journaled import JournaledWrites
from .ledger import (
    READER_WAIT_S,
    SNAPSHOT_FILE,
    connect_ledger,
    copy_snapshot,
    journal,
    open_ledger_readonly,
)
from .ledger.connection import Connection
from .ledger.training import count_points
from .lock import WriterLock
from .vectors import VectorSpec, VectorStore, open_vector_store

SNAPSHOT_EVERY_S = 60.0
SNAPSHOT_SHARE = 0.05  # at most this share of a long write spent copying the ledger for readers


BACKEND_KINDS = ("embedder", "rerank", "quality")  # the backends store.json records, made once per open


class Store(JournaledWrites):
    def __init__(self, root: Path, config: StoreConfig, ledger: Connection, lock: WriterLock | None) -> None:
        self.root = root
        self.config = config
        # a DuckDB connection; typed Any until the query modules handle fetchone()'s None
        self.ledger: Any = ledger
        self._ledger_open = True
        self._lock = lock
        self._vectors: VectorStore | None = None
        self._backends: dict[str, Any] = {}  # kind -> instance, made on first use (or given by `use_backends`)
        self._reranker: Reranker | None = None
        self._spec_checked = False
        self._making = threading.RLock()  # ingest's preparing thread may make a backend first
        # the snapshot left by the last writer's close is current: the first copy is due a
        # period from now (at once when there is none)
        self._last_snapshot = time.monotonic() if (root / SNAPSHOT_FILE).exists() else 0.0
        self._snapshot_every = SNAPSHOT_EVERY_S
        self.device: str | None = None
        self.read_only = False  # open_reader: nothing may be written, not even the snapshot

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def init(
        cls,
        path: str | Path | None,
        embedder: tuple[str, dict[str, Any]] = ("pixels", {}),
        rerank: tuple[str, dict[str, Any]] = ("l2", {}),
        quality: tuple[str, dict[str, Any]] = ("none", {}),
        engine: str = "edge",
        qdrant_url: str | None = None,
        collection_prefix: str = "gmv",
        index: IndexConfig | None = None,
    ) -> Store:
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
        config = StoreConfig.model_validate({**specs, "engine": engine, "qdrant_url": qdrant_url,
                                             "collection_prefix": collection_prefix, "index": index or IndexConfig()})
        if (root / "store.json").exists():
            have = read_config(root)
            if not have.backends_equal(config) or have.engine != config.engine or (index and have.index != index):
                raise StoreMismatch(
                    f"{root} already holds a store with {backend_summary(have)} on engine {have.engine} "
                    f"(index {have.index.mode}); fix: choose another --store for other backends or index settings"
                )
            return cls.open(root)
        diskspace.require_free(root, diskspace.INIT_NEED, "a new store")
        root.mkdir(parents=True, exist_ok=True)
        created_files = not any(root.iterdir())
        try:
            lock = WriterLock(root)
            ledger = connect_ledger(root / LEDGER_FILE, create=True)
            migrations.migrate(ledger)
            store = cls(root, config, ledger, lock)
            store.use_backends(backends)
            for name in (TRAINING, GENERATED):
                store.vectors.ensure_collection(name, store.vector_spec(), store.collection_index(name))
            write_config(root, config)  # last: a store exists once store.json does
        except BaseException as e:
            if created_files:
                shutil.rmtree(root, ignore_errors=True)
            diskspace.raise_if_full(e, root)
            raise
        return store

    @classmethod
    def open(cls, path: str | Path | None, wait: float = 0.0, device: str | None = None) -> Store:
        """Open as the (single) writer. `device` (cuda, mps, cpu, auto) overrides where model
        backends run; it does not change the vectors, so it is not part of the store's record."""
        root = default_store_path(path)
        config = read_config(root)
        lock = WriterLock(root, wait=wait)
        try:
            if (marker := unfinished_repair(root)) is not None:  # first: a killed rebuild may leave a part ledger
                raise RepairUnfinished(describe_unfinished(root, marker))
            ledger = connect_ledger(root / LEDGER_FILE, wait=max(wait, READER_WAIT_S))
            migrations.migrate(ledger)
            store = cls(root, config, ledger, lock)
            store.device = device
            store.check_collections()
            store.check_whole()
        except BaseException as e:
            if "store" in locals() and store._vectors is not None:
                store._vectors.close()
            if "ledger" in locals():
                ledger.close()
            lock.release()
            diskspace.raise_if_full(e, root)
            raise
        return store

    @classmethod
    def open_reader(cls, path: str | Path | None, wait: float = 0.0, device: str | None = None,
                    backends: dict[str, Any] | None = None, ledger_config: dict[str, Any] | None = None) -> Store:
        """Open for searching only (`gmv match`, the web UI's attribution): the ledger
        read-only, the vector collections for queries; no migration, recovery or snapshot,
        so no row, point or value changes (the embedded engine rewrites its own JSON settings
        and index-state files, with the same content, when it opens and closes a collection).
        The embedded engines let one process open a collection, so this takes the writer lock
        like a writer (`wait` seconds; StoreLocked names the holder); a Qdrant server takes
        concurrent clients, so there it reads the ledger's snapshot while a writer runs. `backends` ({"embedder", "rerank", "quality"})
        reuses instances already made for this store (a server keeps them across requests);
        `ledger_config`: DuckDB settings (a process must open one file with one set of them)."""
        root = default_store_path(path)
        config = read_config(root)
        lock = WriterLock(root, wait=wait) if config.engine != "server" else None
        try:
            ledger = (open_ledger_readonly(root, config=ledger_config) if lock is None
                      else connect_ledger(root / LEDGER_FILE, read_only=True, config=ledger_config))
            store = cls(root, config, ledger, lock)
            store.read_only, store.device = True, device
            if (marker := unfinished_repair(root)) is not None:
                raise StoreDamaged(describe_unfinished(root, marker))
            if journal.unfinished_count(ledger):
                raise GmvError(f"store {root} holds unfinished writes of an interrupted command; fix: run "
                               f"`gmv refresh --store {root}` (any writer completes them), then try again")
            # only the collection a search opens (opening one rewrites some of its files)
            if lock is not None and (problems := count_problems(ledger, store.vectors, root, {TRAINING: TABLES[TRAINING]})):
                raise StoreDamaged(problems[0])
            store.use_backends(backends or {})
        except BaseException:
            if "store" in locals() and store._vectors is not None:
                store._vectors.close()
            if "ledger" in locals():
                ledger.close()
            if lock is not None:
                lock.release()
            raise
        return store

    def check_collections(self) -> None:
        """Both vector collections exist, or the ledger holds no rows for the missing one."""
        for collection, table in TABLES.items():
            if self.vectors.has_collection(collection):
                continue
            n = count_points(self.ledger, table)
            if n:
                raise StoreDamaged(
                    f"vector collection '{collection}' is missing ({self.vectors_location()}) while the ledger holds "
                    f"{n:,} {table.replace('_', ' ')}; fix: restore the store folder from a backup, or re-embed "
                    f"them from their recorded sources with `gmv repair --store {self.root}`"
                )
            self.vectors.ensure_collection(collection, self.vector_spec(), self.collection_index(collection))

    def check_whole(self) -> None:
        """Schema, journal finished, then rows and sums counted against the points (integrity)."""
        from .integrity import check_whole

        check_whole(self, TABLES)

    def collection_index(self, collection: str) -> IndexConfig:
        """Only the training collection's recall vector gets a graph: generated images are
        few and searched only among given ids. Both share the server layout."""
        index = self.config.index
        return index if collection == TRAINING else index.model_copy(update={"mode": "exact"})

    def reconfigure_index(self, **changes: Any) -> IndexConfig:
        """New index settings (IndexConfig fields) for the training collection, recorded in
        store.json; the next `build_index` rebuilds what they change."""
        index = IndexConfig(**{**self.config.index.model_dump(), **changes})
        if index != self.config.index:
            self.vectors.reconfigure(TRAINING, self.vector_spec(), index)
            self.config = self.config.model_copy(update={"index": index})
            write_config(self.root, self.config)
        return index

    def search_options(self, limit: int) -> dict[str, Any]:
        """Query options for a recall search keeping `limit` hits: exact when the store has no
        index, else HNSW with ef derived from the limit."""
        if self.config.index.mode == "exact":
            return {"exact": True}
        return {"ef": self.config.index.search_ef(limit)}

    def vectors_location(self) -> str:
        c = self.config
        return c.qdrant_url or "" if c.engine == "server" else str(self.root / f"qdrant-{c.engine}")

    def snapshot(self) -> bool:
        """Publish a consistent copy of the ledger for readers (between transactions only).
        Skipped (False) when the disk has no room for the copy: readers keep the older one."""
        self._last_snapshot = time.monotonic()
        took = copy_snapshot(self.ledger, self.root)
        if took is None:
            return False
        # a large ledger is copied less often, so that copies stay a small share of the work
        self._snapshot_every = max(SNAPSHOT_EVERY_S, took / SNAPSHOT_SHARE)
        return True

    def maybe_snapshot(self) -> None:
        if time.monotonic() - self._last_snapshot > self._snapshot_every:
            self.snapshot()

    def close(self) -> None:
        try:
            if self._ledger_open and not self.read_only:
                try:
                    self.snapshot()
                except Exception:  # a failed copy must not hide the command's own outcome
                    pass
            if self._vectors is not None:
                vectors, self._vectors = self._vectors, None
                vectors.close()
        finally:
            if self._ledger_open:
                self._ledger_open = False
                self.ledger.close()
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
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

    def _backend(self, kind: str) -> Any:
        """The store's backend of this kind (BACKEND_KINDS), made from store.json on first use."""
        with self._making:
            if kind not in self._backends:
                spec: BackendSpec = getattr(self.config, kind)
                self._backends[kind] = make_backend(kind, spec, self.device)
            return self._backends[kind]

    def use_backends(self, backends: dict[str, Any]) -> None:
        """Use these instances ({"embedder", "rerank", "quality"}, any of them) instead of
        making them: `init` has just made them, a server keeps them across requests."""
        unknown = set(backends) - set(BACKEND_KINDS)
        if unknown:
            raise ValueError(f"unknown backend kinds {sorted(unknown)}; kinds: {', '.join(BACKEND_KINDS)}")
        self._backends.update(backends)
        self._reranker = None

    @property
    def embedder(self) -> Embedder:
        return cast(Embedder, self._backend("embedder"))

    @property
    def stored_reranker(self) -> Reranker:
        """The re-ranker store.json records: it decides the stored vectors."""
        return cast(Reranker, self._backend("rerank"))

    @property
    def reranker(self) -> Reranker:
        """The re-ranker searches use: the recorded one, or `none` (the recall distance) where
        training rows came without images (`ingest --vectors --id-column`, docs/precomputed.md)."""
        if self._reranker is None:
            self._reranker = (registry.create("rerank", "none") if self.config.rerank_fallback
                              else self.stored_reranker)
        return self._reranker

    def fall_back_to_recall_distance(self) -> None:
        """Record that searches re-rank by the recall distance (rows came with neither images
        nor re-rank vectors): store.json says so, and `reranker` is `none` from now on."""
        self.config = self.config.model_copy(update={"rerank_fallback": True})
        write_config(self.root, self.config)
        self._reranker = None

    @property
    def quality(self) -> Quality:
        return cast(Quality, self._backend("quality"))

    def vector_spec(self) -> dict[str, VectorSpec]:
        spec = {"recall": VectorSpec(self.embedder.dim, self.embedder.metric)}
        rv = self.stored_reranker.vector_embedder()
        if rv is not None:
            spec["rerank"] = VectorSpec(rv.dim, rv.metric)
        return spec

    def embed(self, images: Sequence[np.ndarray]) -> dict[str, Any]:
        """Every stored named vector for a batch of images: one forward per model."""
        self.check_vector_spec()
        return embed_named(self.embedder, self.stored_reranker, images)

    def worker_embedding(self) -> WorkerEmbedding | None:
        """The same embedding for decoding workers, when the store's models are light."""
        self.check_vector_spec()
        return worker_embedding(self.embedder, self.stored_reranker)

    def check_vector_spec(self) -> None:
        """store.json's backends make the vectors stored (once per open: it makes the backends)."""
        with self._making:
            if not self._spec_checked:
                from .integrity import check_vector_spec

                check_vector_spec(self, [TRAINING])  # both collections hold one spec; a search opens this one
                self._spec_checked = True
