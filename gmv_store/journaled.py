"""Journaled writes: every write that touches Qdrant goes through `adding`, `removing` or
`relocating`, which own the order of the Qdrant write, the ledger's transaction and a
journal row (see their docstrings); `recover` undoes or finishes what a killed command left.
A mixin of `Store` (store.py), which opens the ledger and the vector engine they use."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import diskspace
from .config import StoreConfig
from .ledger import journal, transaction
from .ledger.origins import forget_origins
from .ledger.training import point_sources, points_with_rows
from .vectors import PreparedUpsert, VectorStore

TRAINING = "training"
GENERATED = "generated"
TABLES = {TRAINING: "training_images", GENERATED: "generated_images"}  # ledger table of each collection


class JournaledWrites:
    root: Path
    config: StoreConfig
    ledger: Any  # Store's DuckDB connection

    @property
    def vectors(self) -> VectorStore:
        raise NotImplementedError  # Store opens its engine

    @contextmanager
    def adding(self, kind: str, collection: str, point_ids: Sequence[int], vectors: dict[str, Any] | None,
               payloads: Sequence[dict[str, Any]], detail: dict[str, Any] | None = None, ledger_rows: int | None = None,
               blob_bytes: int = 0, prepared: PreparedUpsert | None = None) -> Iterator[Any]:
        """Add points and their ledger rows. Order: room checked for all of it, once (a full
        disk must stop the write before it starts, see diskspace.py) -> journal row
        (committed) -> Qdrant upsert (durable) -> the block's ledger writes (about
        `ledger_rows` rows, default 2 per point) and the journal row's removal in one
        transaction. A crash before that commit leaves journaled points without rows, which
        `recover` deletes. `prepared`: the points already made ready for the engine
        (`VectorStore.prepare_upsert`, off the writing thread); `vectors`/`payloads` are then
        not used. Yields the ledger connection inside the transaction. The same in two
        halves, for a caller that commits on another thread: `journal_upsert`, `committing`."""
        if prepared is None:
            if vectors is None:
                raise ValueError("adding: give the vectors and payloads, or a prepared upsert")
            prepared = self.vectors.prepare_upsert(collection, point_ids, vectors, payloads)
        op = self.journal_upsert(kind, collection, point_ids, prepared, detail, ledger_rows, blob_bytes)
        with self.committing(self.ledger, op) as con:
            yield con

    def journal_upsert(self, kind: str, collection: str, point_ids: Sequence[int], prepared: PreparedUpsert,
                       detail: dict[str, Any] | None = None, ledger_rows: int | None = None, blob_bytes: int = 0) -> int:
        """`adding`'s first half: room checked, journal row committed, Qdrant upsert. Returns
        the journal op, which `committing` closes with the rows."""
        op = self.journaling(kind, collection, point_ids, prepared, detail, ledger_rows, blob_bytes)
        self.vectors.write_prepared(prepared)  # room checked: not again per batch
        return op

    def journaling(self, kind: str, collection: str, point_ids: Sequence[int], prepared: PreparedUpsert,
                   detail: dict[str, Any] | None = None, ledger_rows: int | None = None, blob_bytes: int = 0) -> int:
        """`journal_upsert` without the upsert: room checked, journal row committed; the caller
        then writes `prepared` (`vectors.write_prepared`) and `committing` closes the op."""
        self.check_room(collection, point_ids, prepared, ledger_rows, blob_bytes)
        return journal.open_entry(self.ledger, kind, collection, point_ids, detail)

    def check_room(self, collection: str, point_ids: Sequence[int], prepared: PreparedUpsert,
                   ledger_rows: int | None = None, blob_bytes: int = 0) -> None:
        """Room on disk for a journaled write of these points (see diskspace.py), checked once
        before its journal row; with `journal_in`, for a caller that opens that row inside
        another transaction."""
        diskspace.check_write(self.root, self.config.engine, f"writing {len(point_ids):,} {collection} images", upsert=prepared,
                              rows=2 * len(point_ids) if ledger_rows is None else ledger_rows, blob_bytes=blob_bytes)

    @staticmethod
    def journal_in(con: Any, kind: str, collection: str, point_ids: Sequence[int], detail: dict[str, Any] | None = None) -> int:
        """A journal row in the caller's transaction on `con`, once `check_room` passed: ingest
        opens the row of a batch two ahead inside the commit of the current one, so that the
        writing thread never commits a ledger statement itself. Its points may be written
        once that transaction has committed."""
        return journal.open_entry(con, kind, collection, point_ids, detail)

    @contextmanager
    def committing(self, con: Any, op: int) -> Iterator[Any]:
        """`adding`'s second half: the block's ledger writes and the removal of journal row
        `op` in one transaction on `con` (the ledger, or a cursor of it on another thread:
        ingest commits one batch while the next one's points are written)."""
        with transaction(con) as c:
            yield c
            journal.close_entry(c, op)

    @contextmanager
    def removing(self, kind: str, collection: str, point_ids: Sequence[int],
                 detail: dict[str, Any] | None = None) -> Iterator[Any]:
        """Remove points and their ledger rows. Order: the block's ledger writes and a journal
        row in one transaction -> Qdrant delete -> journal row removed. A crash after the
        commit leaves journaled points without rows, which `recover` deletes."""
        with transaction(self.ledger) as con:
            op = journal.open_entry(con, kind, collection, point_ids, detail)
            yield con
            forget_origins(con, collection, point_ids)
        if len(point_ids):
            self.vectors.delete(collection, point_ids)
        journal.close_entry(self.ledger, op)

    @contextmanager
    def relocating(self, collection: str, point_ids: Sequence[int],
                   detail: dict[str, Any] | None = None) -> Iterator[Any]:
        """Rewrite recorded sources (`gmv relocate`). Order: the block's ledger updates and a
        journal row in one transaction -> each point's payload `source` set from its row ->
        journal row removed. A crash after the commit leaves the row; `recover` sets the
        payloads again."""
        with transaction(self.ledger) as con:
            op = journal.open_entry(con, "relocate", collection, point_ids, detail)
            yield con
        self.sync_sources(collection, point_ids)
        journal.close_entry(self.ledger, op)

    def sync_sources(self, collection: str, point_ids: Sequence[int]) -> None:
        """Copy the ledger's recorded source of these points into their payloads."""
        rows = point_sources(self.ledger, TABLES[collection], point_ids)
        self.vectors.set_payloads(collection, [r[0] for r in rows], [{"source": r[1]} for r in rows])

    def recover(self) -> int:
        """Finish or undo Qdrant writes a killed command left: the ledger is the truth, so a
        journaled point is kept only if its row exists (a relocation's points get their
        rows' sources again). Returns the number of entries."""
        entries = journal.entries(self.ledger)
        for e in entries:
            if e.kind == "relocate":
                self.sync_sources(e.collection, e.point_ids)
            else:
                kept = points_with_rows(self.ledger, TABLES[e.collection], e.point_ids)
                self.vectors.delete(e.collection, [p for p in e.point_ids if p not in kept])
            journal.close_entry(self.ledger, e.op_id)
        return len(entries)
