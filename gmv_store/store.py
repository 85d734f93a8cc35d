"""A store: a folder holding store.json, the DuckDB ledger and (embedded) Qdrant data.

`Store.open` takes the writer lock, applies pending migrations, checks that the ledger and
the vector collections are both there, and finishes any work an interrupted command left in
the journal, so every command starts from a consistent store. Read-only lookups use
`ledger.open_ledger_readonly` and never touch Qdrant.

Every write that touches Qdrant goes through `adding` or `removing`, which own the write
order (see their docstrings); `recover` undoes or finishes what a killed command left.
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from . import diskspace
from . import migrate as migrations
from .backends import registry
from .backends.base import Embedder, Quality, Reranker
from .backends.named import WorkerEmbedding, embed_named, worker_embedding
from .backends.stored import backend_summary, make_backend  # make_backend: also what workers and the web call
from .config import LEDGER_FILE, BackendSpec, IndexConfig, StoreConfig, default_store_path, read_config, write_config
from .errors import GmvError, RepairUnfinished, StoreDamaged, StoreMismatch
from .integrity import count_problems, describe_unfinished, unfinished_repair
from .ledger import READER_WAIT_S, SNAPSHOT_FILE, connect_ledger, copy_snapshot, open_ledger_readonly, transaction
from .ledger.origins import forget_origins
from .lock import WriterLock
from .vectors import VectorSpec, VectorStore, open_vector_store

TRAINING = "training"
GENERATED = "generated"
TABLES = {TRAINING: "training_images", GENERATED: "generated_images"}  # ledger table of each collection
SNAPSHOT_EVERY_S = 60.0
SNAPSHOT_SHARE = 0.05  # at most this share of a long write spent copying the ledger for readers


class Store:
    def __init__(self, root: Path, config: StoreConfig, ledger, lock: WriterLock):
        self.root = root
        self.config = config
        self.ledger = ledger
        self._lock = lock
        self._vectors: VectorStore | None = None
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
        embedder: tuple[str, dict] = ("pixels", {}),
        rerank: tuple[str, dict] = ("l2", {}),
        quality: tuple[str, dict] = ("none", {}),
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
        config = StoreConfig(**specs, engine=engine, qdrant_url=qdrant_url, collection_prefix=collection_prefix,
                             index=index or IndexConfig())
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
            store.__dict__["embedder"] = backends["embedder"]
            store.__dict__["stored_reranker"] = backends["rerank"]
            store.__dict__["quality"] = backends["quality"]
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
                    backends: dict[str, Any] | None = None, ledger_config: dict | None = None) -> Store:
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
            if ledger.execute("SELECT count(*) FROM journal").fetchone()[0]:
                raise GmvError(f"store {root} holds unfinished writes of an interrupted command; fix: run "
                               f"`gmv refresh --store {root}` (any writer completes them), then try again")
            # only the collection a search opens (opening one rewrites some of its files)
            if lock is not None and (problems := count_problems(ledger, store.vectors, root, {TRAINING: TABLES[TRAINING]})):
                raise StoreDamaged(problems[0])
            for kind, attr in (("embedder", "embedder"), ("rerank", "stored_reranker"), ("quality", "quality")):
                if backends and kind in backends:
                    store.__dict__[attr] = backends[kind]
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
            n = self.ledger.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
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

    def reconfigure_index(self, **changes) -> IndexConfig:
        """New index settings (IndexConfig fields) for the training collection, recorded in
        store.json; the next `build_index` rebuilds what they change."""
        index = IndexConfig(**{**self.config.index.model_dump(), **changes})
        if index != self.config.index:
            self.vectors.reconfigure(TRAINING, self.vector_spec(), index)
            self.config = self.config.model_copy(update={"index": index})
            write_config(self.root, self.config)
        return index

    def search_options(self, limit: int) -> dict:
        """Query options for a recall search keeping `limit` hits: exact when the store has no
        index, else HNSW with ef derived from the limit."""
        if self.config.index.mode == "exact":
            return {"exact": True}
        return {"ef": self.config.index.search_ef(limit)}

    def vectors_location(self) -> str:
        c = self.config
        return c.qdrant_url if c.engine == "server" else str(self.root / f"qdrant-{c.engine}")

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
            if self.ledger is not None and not self.read_only:
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
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> Store:
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
        return make_backend(kind, spec, self.device)

    @cached_property
    def embedder(self) -> Embedder:
        return self._backend("embedder", self.config.embedder)

    @cached_property
    def stored_reranker(self) -> Reranker:
        """The re-ranker store.json records: it decides the stored vectors."""
        return self._backend("rerank", self.config.rerank)

    @cached_property
    def reranker(self) -> Reranker:
        """The re-ranker searches use: the recorded one, or `none` (the recall distance) where
        training rows came without images (`ingest --vectors --id-column`, docs/precomputed.md)."""
        return registry.create("rerank", "none") if self.config.rerank_fallback else self.stored_reranker

    @cached_property
    def quality(self) -> Quality:
        return self._backend("quality", self.config.quality)

    def vector_spec(self) -> dict[str, VectorSpec]:
        spec = {"recall": VectorSpec(self.embedder.dim, self.embedder.metric)}
        rv = self.stored_reranker.vector_embedder()
        if rv is not None:
            spec["rerank"] = VectorSpec(rv.dim, rv.metric)
        return spec

    def embed(self, images) -> dict[str, Any]:
        """Every stored named vector for a batch of images: one forward per model."""
        self.check_vector_spec()
        return embed_named(self.embedder, self.stored_reranker, images)

    def worker_embedding(self) -> WorkerEmbedding | None:
        """The same embedding for decoding workers, when the store's models are light."""
        self.check_vector_spec()
        return worker_embedding(self.embedder, self.stored_reranker)

    def check_vector_spec(self) -> None:
        """store.json's backends make the vectors stored (once per open: it makes the backends)."""
        if not self.__dict__.get("_spec_checked"):
            from .integrity import check_vector_spec

            check_vector_spec(self, [TRAINING])  # both collections hold one spec; a search opens this one
            self._spec_checked = True

    # ------------------------------------------------------------------ journaled writes
    def _journal(self, kind: str, collection: str, point_ids: Sequence[int], detail: dict | None) -> int:
        op_id = self.ledger.execute("SELECT coalesce(max(op_id), 0) + 1 FROM journal").fetchone()[0]
        self.ledger.execute("INSERT INTO journal VALUES (?, ?, ?, ?, ?, current_timestamp)",
                            [op_id, kind, collection, list(point_ids), json.dumps(detail or {})])
        return op_id

    @contextmanager
    def adding(self, kind: str, collection: str, point_ids: Sequence[int], vectors: dict, payloads: Sequence[dict],
               detail: dict | None = None, ledger_rows: int | None = None, blob_bytes: int = 0) -> Iterator[Any]:
        """Add points and their ledger rows. Order: room checked for all of it (a full disk
        must stop the write before it starts, see diskspace.py) -> journal row (committed) ->
        Qdrant upsert (durable) -> the block's ledger writes (about `ledger_rows` rows, default
        2 per point) and the journal row's removal in one transaction. A crash before that
        commit leaves journaled points without rows, which `recover` deletes. Yields the
        ledger connection inside the transaction."""
        diskspace.check_write(self, f"writing {len(point_ids):,} {collection} images", vectors=vectors,
                              payloads=payloads, rows=2 * len(point_ids) if ledger_rows is None else ledger_rows,
                              blob_bytes=blob_bytes)
        op = self._journal(kind, collection, point_ids, detail)
        self.vectors.upsert(collection, point_ids, vectors, payloads)
        with transaction(self.ledger) as con:
            yield con
            con.execute("DELETE FROM journal WHERE op_id = ?", [op])

    @contextmanager
    def removing(self, kind: str, collection: str, point_ids: Sequence[int], detail: dict | None = None) -> Iterator[Any]:
        """Remove points and their ledger rows. Order: the block's ledger writes and a journal
        row in one transaction -> Qdrant delete -> journal row removed. A crash after the
        commit leaves journaled points without rows, which `recover` deletes."""
        with transaction(self.ledger) as con:
            op = self._journal(kind, collection, point_ids, detail)
            yield con
            forget_origins(con, collection, point_ids)
        if len(point_ids):
            self.vectors.delete(collection, point_ids)
        self.ledger.execute("DELETE FROM journal WHERE op_id = ?", [op])

    @contextmanager
    def relocating(self, collection: str, point_ids: Sequence[int], detail: dict | None = None) -> Iterator[Any]:
        """Rewrite recorded sources (`gmv relocate`). Order: the block's ledger updates and a
        journal row in one transaction -> each point's payload `source` set from its row ->
        journal row removed. A crash after the commit leaves the row; `recover` sets the
        payloads again."""
        with transaction(self.ledger) as con:
            op = self._journal("relocate", collection, point_ids, detail)
            yield con
        self.sync_sources(collection, point_ids)
        self.ledger.execute("DELETE FROM journal WHERE op_id = ?", [op])

    def sync_sources(self, collection: str, point_ids: Sequence[int]) -> None:
        """Copy the ledger's recorded source of these points into their payloads."""
        rows = self.ledger.execute(f"SELECT point_id, source FROM {TABLES[collection]} "
                                   "WHERE point_id IN (SELECT unnest(?))", [list(point_ids)]).fetchall()
        self.vectors.set_payloads(collection, [r[0] for r in rows], [{"source": r[1]} for r in rows])

    def recover(self) -> int:
        """Finish or undo Qdrant writes a killed command left: the ledger is the truth, so a
        journaled point is kept only if its row exists (a relocation's points get their
        rows' sources again). Returns the number of entries."""
        entries = self.ledger.execute("SELECT op_id, collection, point_ids, kind FROM journal ORDER BY op_id").fetchall()
        for op_id, collection, point_ids, kind in entries:
            if kind == "relocate":
                self.sync_sources(collection, point_ids)
                self.ledger.execute("DELETE FROM journal WHERE op_id = ?", [op_id])
                continue
            kept = {r[0] for r in self.ledger.execute(
                f"SELECT point_id FROM {TABLES[collection]} WHERE point_id IN (SELECT unnest(?))", [point_ids]).fetchall()}
            self.vectors.delete(collection, [p for p in point_ids if p not in kept])
            self.ledger.execute("DELETE FROM journal WHERE op_id = ?", [op_id])
        return len(entries)
