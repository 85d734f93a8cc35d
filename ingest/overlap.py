"""Ingest as two stages on two threads: read -> dedupe -> embed -> prepare on one, write on
the other, with a bounded queue between them, so the writer's engine upsert and ledger
commit (both release the GIL) overlap the next batches' reading and preparing, and the
writer never waits while a prepared batch does.

The preparing thread dedupes against the rows the store held when the run started and those
it has written since (`StoredContents`, by point id) and against the batches it handed over
that are not committed yet (`InFlight`).
Batches are written in the order they were read.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np

from gmv_store.collector import collector_frozen
from gmv_store.ids import point_id
from gmv_store.ledger.connection import fewer_checkpoints
from gmv_store.ledger.training import has_generated, training_point_ids
from gmv_store.sources import Decoded, unique_new
from gmv_store.sources.parallel import HELPER_NICE, lower_priority
from gmv_store.store import Store

from .write import PreparedBatch, check_room_prepared, commit_prepared, journal_prepared, prepare_training

T = TypeVar("T")
U = TypeVar("U")
DEPTH = 2  # prepared batches waiting for the writer: enough to keep it busy, few to hold in memory


def pipelined(source: Iterator[T], stage: Callable[[T], U], depth: int = DEPTH, name: str = "gmv-ingest-prepare"
              ) -> Iterator[U]:
    """stage(x) for each x of `source`, run up to `depth` ahead in a thread; the results in
    the source's order. The thread's errors are raised here; when the consumer stops early
    the thread stops at its next hand-over and `source` is closed."""
    q: queue.Queue[Any] = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def put(x: Any) -> bool:
        while not stop.is_set():  # the consumer may have stopped: never block on a full queue
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def run() -> None:
        try:
            for x in source:
                if not put(stage(x)):
                    return
            put(done)
        except BaseException as e:  # handed to the consumer, which raises it
            put(e)

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    try:
        while (r := q.get()) is not done:
            if isinstance(r, BaseException):
                raise r
            yield r
    finally:
        stop.set()
        t.join()
        close = getattr(source, "close", None)
        if close is not None:
            close()


@dataclass
class Written:
    """One batch: the rows read, those written (new content) and of them those without an
    image (an --id-column row), and the seconds spent embedding them (preparing thread) and
    writing them (writer)."""

    read: int
    added: int
    without_images: int = 0
    embed_seconds: float = 0.0
    write_seconds: float = 0.0


class InFlight:
    """Contents prepared but not yet committed. The preparing thread takes those of a batch
    before it asks the ledger, so that a batch committed in between is seen in one or the
    other: the writer removes a batch's contents only after its commit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[str] = set()

    def among(self, hashes: list[str]) -> set[str]:
        with self._lock:
            return {h for h in hashes if h in self._held}

    def add(self, hashes: list[str]) -> None:
        with self._lock:
            self._held.update(hashes)

    def remove(self, hashes: list[str]) -> None:
        with self._lock:
            self._held.difference_update(hashes)


class StoredContents:
    """The contents the store holds, by point id: the ledger's ids read once (this process is
    the store's only writer while it runs), then what this run writes. One column scan per
    run, where a query per batch cost more as the store grew (6 ms a batch empty, 23 ms at
    200,000 rows)."""

    def __init__(self, base: np.ndarray):
        self._base = base  # sorted
        self._added: set[int] = set()
        self._lock = threading.Lock()

    def among(self, hashes: list[str]) -> set[str]:
        ids = np.fromiter((point_id(h) for h in hashes), np.uint64, len(hashes))
        hit = np.zeros(len(ids), bool)
        if len(self._base):
            pos = np.minimum(np.searchsorted(self._base, ids), len(self._base) - 1)
            hit = self._base[pos] == ids
        with self._lock:
            return {h for h, i, s in zip(hashes, ids.tolist(), hit.tolist()) if s or i in self._added}

    def add(self, point_ids: list[int]) -> None:
        with self._lock:
            self._added.update(point_ids)


Prepare = Callable[[list[Decoded]], tuple[dict[str, np.ndarray], list[Decoded]]]


def write_all(store: Store, batches: Iterator[list[Decoded]], prepare: Prepare, owner: str | None,
              meta: dict[str, Any], owner_column: str | None = None, prepare_ahead: bool = True) -> Iterator[Written]:
    """Write every new row of `batches`, one journaled write per batch, in order; yields what
    each batch added, once its ledger rows are committed. `prepare(new)` -> (their vectors,
    the rows as completed) runs on the preparing thread (which makes the store's backends
    where it first needs them, as the one thread did: Store makes each once under a lock);
    the vector engine is opened here. `prepare_ahead=False`: batches are prepared on this
    thread, for input whose preparing holds the GIL throughout (precomputed vectors without
    images: a second thread then only slows the engine's own calls, measured 2.5 s on 5.3 s;
    benchmarks/precomputed.py)."""
    _ = store.vectors  # opened on this thread: the preparing one only converts points
    in_flight = InFlight()
    stored = StoredContents(training_point_ids(store.ledger))

    def stage(batch: list[Decoded]) -> Staged:
        hashes = [d.sha256 for d in batch]
        known = in_flight.among(hashes)  # first: see InFlight
        new = unique_new(batch, known | stored.among(hashes))
        if not new:
            return len(batch), None, 0.0
        t = time.perf_counter()
        vectors, new = prepare(new)
        embed_s = time.perf_counter() - t
        p = prepare_training(store, new, vectors, owner, meta, owner_column)
        in_flight.add(p.sha256)
        return len(batch), p, embed_s

    def committed(p: PreparedBatch) -> None:
        stored.add(p.columns["point_id"])  # before leaving in_flight: never in neither
        in_flight.remove(p.sha256)

    yield from write_staged(store, pipelined(batches, stage) if prepare_ahead else map(stage, batches), committed)


Staged = tuple[int, "PreparedBatch | None", float]  # rows read, the new ones prepared (None: none), embed seconds


def write_staged(store: Store, items: Iterator[Staged], committed: Callable[[PreparedBatch], None] | None = None
                 ) -> Iterator[Written]:
    """Write prepared batches in order, one journaled write each; yields each once its
    ledger rows are committed (after `committed(p)`). Each batch's ledger transaction runs
    on a third thread (`LedgerCommits`) while this one writes the next batch's points:
    DuckDB works without the GIL, which the engine holds. Per batch: its points (its journal
    row committed before), then the batch two ahead taken (prepared, or made ready by
    whoever yields `items`), then this batch's commit started, which also opens that
    batch's journal row: this thread commits nothing itself. (An auto-committed journal
    insert beside a running commit waited for it: 20 ms a batch at 1M rows.) The first two
    batches are journaled here, before any commit."""
    generated_exist = has_generated(store.ledger)  # once: only this process (the store's writer) can value images

    def done(w: Written, p: PreparedBatch | None) -> Written:
        if p is not None and committed is not None:
            committed(p)
        return w

    try:
        with collector_frozen(), LedgerCommits(store) as commits:
            cur, error = _take(items)
            nxt, error = _take(items) if cur is not None and error is None else (None, error)
            for s in (cur, nxt):
                if s is not None and s.p is not None:
                    s.op = journal_prepared(store, s.p)
            while cur is not None:
                t = time.perf_counter()
                if cur.p is not None:
                    store.vectors.write_prepared(cur.p.upsert)  # overlaps the previous batch's commit
                w = _written(cur, time.perf_counter() - t)
                # an error taking the next one (a bad file, Ctrl-C) is raised once the batches in hand are committed
                after, error = _take(items) if nxt is not None and error is None else (None, error)
                for prev, p in commits.wait():  # nothing in flight while the consumer runs (it may snapshot the ledger)
                    yield done(prev, p)
                t = time.perf_counter()
                ahead = after.p if after is not None else None
                if ahead is not None:
                    try:
                        check_room_prepared(store, ahead)
                    except BaseException as e:  # a full disk: the batches in hand are still committed, then it is raised
                        after, ahead, error = None, None, e
                if cur.p is not None and cur.op is not None:
                    commits.submit(w, cur.p, partial(_commit, store, cur, after, generated_exist))
                else:
                    if after is not None and ahead is not None:  # no commit to open its row in (nothing in flight)
                        after.op = journal_prepared(store, ahead)
                    yield w
                w.write_seconds += time.perf_counter() - t
                cur, nxt = nxt, after
            for w, p in commits.wait():
                yield done(w, p)
            if error is not None:
                raise error
    finally:
        close = getattr(items, "close", None)  # the preparing thread stops where the consumer stopped early
        if close is not None:
            close()


@dataclass
class _Step:
    """A batch as prepared, and its journal op once its row is committed."""

    read: int
    p: PreparedBatch | None
    embed_s: float
    op: int | None = None


def _written(s: _Step, write_s: float) -> Written:
    if s.p is None:
        return Written(s.read, 0, 0, s.embed_s, write_s)
    return Written(s.read, s.p.size, s.p.columns["height"].count(0), s.embed_s, write_s)  # height 0: no image


def _commit(store: Store, step: _Step, after: _Step | None, generated_exist: bool, con: Any) -> None:
    """`step`'s commit on the ledger thread, opening `after`'s journal row in it."""
    assert step.p is not None and step.op is not None
    op = commit_prepared(store, con, step.p, step.op, generated_exist, after.p if after is not None else None)
    if after is not None:
        after.op = op  # read by the writer once it has waited for this commit


def _take(items: Iterator[Staged]) -> tuple[_Step | None, BaseException | None]:
    """The next batch, or None at the end or on an error (returned, for the caller to raise
    once what it has in hand is committed)."""
    try:
        x = next(items, None)
    except BaseException as e:
        return None, e
    return (_Step(*x) if x is not None else None), None


class LedgerCommits:
    """One batch's ledger transaction at a time, on its own thread and its own DuckDB cursor
    (a connection of the same database: DuckDB connections are not shared between threads).
    The journal op of a batch is committed before its points are written, so a commit still
    running when the process dies leaves what `Store.recover` undoes, as in one thread."""

    def __init__(self, store: Store):
        self._store = store
        self._pending: tuple[Written, PreparedBatch, Future[None]] | None = None

    def __enter__(self) -> LedgerCommits:
        self._con = self._store.ledger.cursor()
        self._checkpoints = fewer_checkpoints(self._con)
        self._checkpoints.__enter__()
        # the writer's engine calls bound the rate: they keep their core
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="gmv-ingest-ledger", initializer=lower_priority,
                                        initargs=(HELPER_NICE, True))
        return self

    def submit(self, w: Written, p: PreparedBatch, commit: Callable[[Any], None]) -> None:
        if self._pending is not None:  # pragma: no cover - write_all waits before each submit
            raise RuntimeError("LedgerCommits: one commit at a time")
        self._pending = (w, p, self._pool.submit(commit, self._con))

    def wait(self) -> list[tuple[Written, PreparedBatch | None]]:
        """The batch whose commit was running, once it is done (its error raised here)."""
        if self._pending is None:
            return []
        w, p, fut = self._pending
        self._pending = None
        t = time.perf_counter()
        fut.result()
        w.write_seconds += time.perf_counter() - t  # the writer's wait for it (the commit itself ran beside)
        return [(w, p)]

    def __exit__(self, *exc: object) -> None:
        try:
            if self._pending is not None:  # leaving on an error: let the running commit end first
                wait([self._pending[2]])
        finally:
            self._pool.shutdown(wait=True)
            try:
                self._checkpoints.__exit__(None, None, None)
            finally:
                self._con.close()
