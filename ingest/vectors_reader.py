"""`gmv ingest --vectors` rows without images (--id-column), read and prepared in a second
process while this one writes them.

Without images a row's whole cost besides the engine's upsert is ours and holds the GIL:
reading the files, converting float16, digests, ids, metadata, ledger columns and payloads
(~25 µs a row, a fifth of the engine's ~110 µs at 1M points). On threads it only adds to the
engine's time; here it runs on another core and arrives columnar (ledger columns, payloads,
one vector matrix: ~2 µs a row to unpickle), so the writing thread is left the engine's
points and upsert. The reader dedupes against the point ids the store held at the start
(this process is the store's only writer; ids repeated within the call are problems of the
reader itself), and sends the problems and notes it finds with each batch.

The process starts from a fresh interpreter (forkserver, else spawn; see
gmv_store/sources/parallel.py), ignores Ctrl-C and exits when this process dies. Used from
`READER_PROCESS_ROWS` rows on: below that its start (~1 s) is not won back.
"""
from __future__ import annotations

import pickle
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gmv_store.backends.named import batch_vectors
from gmv_store.errors import GmvError
from gmv_store.ids import point_id
from gmv_store.sources import Decoded, InputOptions, InputReport
from gmv_store.sources.parallel import lower_priority, main_hidden, watch_parent, worker_context
from gmv_store.sources.vectors import Expect, VectorOptions, read_vector_batches
from gmv_store.store import Store

from .write import TrainingRows, training_rows, with_points

READER_PROCESS_ROWS = 100_000  # rows from which the reading runs in its own process
DEPTH = 2                      # batches read ahead of the writer


def fill_rerank(batch: list[Decoded], dim: int | None, embed: Callable[[list[np.ndarray]], np.ndarray] | None,
                fallback: bool, rerank_name: str) -> list[Decoded]:
    """Every stored named vector of each row: a re-rank vector (of `dim`; None: the store
    keeps none) not given is `embed`ded from the row's image, and for a row without an image
    (whose store re-ranks by the recall distance, `fallback`, so it is never searched) is a
    fixed placeholder."""
    if dim is None:
        return batch
    todo = [d for d in batch if "rerank" not in _given(d)]
    pictured = [d for d in todo if d.pixels.size]
    if pictured and embed is not None:
        for d, v in zip(pictured, embed([d.pixels for d in pictured])):
            _given(d)["rerank"] = v
    if len(pictured) < len(todo):
        if not fallback:
            raise GmvError(f"rows without images need --rerank-vectors in this store (it re-ranks with '{rerank_name}'); "
                           "fix: pass --rerank-vectors or name the images")
        placeholder = np.zeros(dim, np.float32)
        placeholder[0] = 1.0  # a unit vector: valid under every metric, never searched
        for d in todo:
            if not d.pixels.size:
                _given(d)["rerank"] = placeholder
    return batch


def _given(d: Decoded) -> dict[str, np.ndarray]:
    """A row's named vectors (read_vector_batches gives every row its recall vector)."""
    if d.vectors is None:
        d.vectors = {}
    return d.vectors


@dataclass(frozen=True)
class ReaderJob:
    """What the reading process needs (it pickles): the input, what the store takes, and how
    rows become ledger rows."""

    vo: VectorOptions
    options: InputOptions
    expect: Expect
    batch_size: int
    root: str
    owner: str | None
    meta: dict[str, Any]
    owner_column: str | None
    rerank_fallback: bool
    rerank_name: str
    stored: np.ndarray  # the point ids the store held at the start, sorted


# a message from the reader: ("batch", rows read, TrainingRows | None, the vectors' slot, problems, notes),
# ("end", problems, notes) or ("error", exception)
Message = tuple[Any, ...]


def _read(job: ReaderJob, out: Any, alive: Any, slots: dict[str, str], free: Any) -> None:
    """The reading process: batches of new rows, prepared, onto `out`; their vectors into a
    free slot of the shared buffers `slots` ({vector name: shared memory name})."""
    from multiprocessing.shared_memory import SharedMemory

    watch_parent(alive)
    lower_priority()  # the writer's engine calls bound the rate: they keep their core
    report = InputReport()
    sent = [0, 0]
    # made and removed by the writer (the two share its resource tracker, which knows them once)
    shared = {name: SharedMemory(shm_name) for name, shm_name in slots.items()}

    def news() -> tuple[list[Any], list[str]]:
        p, n = report.problems[sent[0]:], report.notes[sent[1]:]
        sent[0], sent[1] = len(report.problems), len(report.notes)
        return p, n

    try:
        stored = job.stored
        for batch in read_vector_batches(job.vo, job.options, job.expect, job.batch_size, report):
            new = batch
            if len(stored):
                ids = np.fromiter((point_id(d.sha256) for d in batch), np.uint64, len(batch))
                pos = np.minimum(np.searchsorted(stored, ids), len(stored) - 1)
                new = [d for d, hit in zip(batch, (stored[pos] == ids).tolist()) if not hit]
            rows: TrainingRows | None = None
            slot = None
            if new:
                fill_rerank(new, job.expect.rerank_dim, None, job.rerank_fallback, job.rerank_name)
                vectors = batch_vectors(new, _not_embedded)
                rows = training_rows(Path(job.root), new, job.owner, job.meta, job.owner_column)
                slot = free.get()
                for name, v in vectors.items():
                    _slot_view(shared[name].buf, slot, job.batch_size, v.shape[1], len(v))[:] = v
            out.put(("batch", len(batch), rows, slot, *news()))
        out.put(("end", *news()))
    except BaseException as e:  # handed to the writer, which raises it
        try:
            pickle.dumps(e)
        except Exception:
            e = GmvError(f"reading --vectors failed: {type(e).__name__}: {e}")
        out.put(("error", e))
    finally:
        for m in shared.values():
            m.close()


def _slot_view(buf: Any, slot: int, batch_size: int, dim: int, n: int) -> np.ndarray:
    """Rows 0..n of slot `slot` of a shared buffer of batches of (batch_size, dim) float32."""
    view: np.ndarray = np.ndarray((n, dim), np.float32, buffer=buf, offset=slot * batch_size * dim * 4)
    return view


def _not_embedded(images: list[np.ndarray]) -> dict[str, np.ndarray]:  # pragma: no cover - every row has its vectors
    raise RuntimeError("a row read from --vectors without its vectors")


def read_in_process(store: Store, job: ReaderJob, report: InputReport) -> Iterator[tuple[int, Any, float]]:
    """The batches of `job`, read and prepared in a second process, with their engine points
    made here: what `write_staged` takes. The reader's problems and notes go to `report`.
    Vectors come through shared memory (a pipe moved a batch's 6 MB at ~250 MB/s, 24 ms of
    this thread's time a batch at 1M rows), the rest pickled."""
    from multiprocessing.shared_memory import SharedMemory

    ctx: Any = worker_context()  # a context has Process and Queue (BaseContext does not say so)
    out, free = ctx.Queue(DEPTH), ctx.Queue()
    dims = {"recall": job.expect.dim, **({"rerank": job.expect.rerank_dim} if job.expect.rerank_dim else {})}
    n_slots = DEPTH + 2  # queued, being filled, being read here
    shared = {name: SharedMemory(create=True, size=n_slots * job.batch_size * dim * 4) for name, dim in dims.items()}
    for i in range(n_slots):
        free.put(i)
    alive, keep = ctx.Pipe(duplex=False)  # `keep` stays here only: its end-of-file tells the reader to go
    proc = ctx.Process(target=_read, args=(job, out, alive, {k: m.name for k, m in shared.items()}, free),
                       name="gmv-vectors-reader", daemon=True)
    with main_hidden():
        proc.start()
    try:
        while True:
            msg = _next(out, proc)
            report.problems.extend(msg[-2] if msg[0] != "error" else [])
            report.notes.extend(msg[-1] if msg[0] != "error" else [])
            if msg[0] == "error":
                raise msg[1]
            if msg[0] == "end":
                return
            _, read, rows, slot, _, _ = msg
            p = None
            if rows is not None:
                n = len(rows.payloads)
                vectors = {k: _slot_view(m.buf, slot, job.batch_size, dims[k], n).copy() for k, m in shared.items()}
                free.put(slot)  # copied out (~1 ms): the slot is the reader's again
                p = with_points(store, rows, vectors, [])
            yield read, p, 0.0
    finally:
        keep.close()
        alive.close()
        if proc.is_alive():
            proc.terminate()
        proc.join(5)
        out.close()
        free.close()
        for m in shared.values():
            m.close()
            m.unlink()


def _next(out: Any, proc: Any) -> Message:
    """The reader's next message; GmvError once it died without sending one."""
    while True:
        try:
            msg: Message = out.get(timeout=0.5)
            return msg
        except queue.Empty:
            if not proc.is_alive():
                try:
                    msg = out.get(timeout=0.5)  # sent just before it ended
                    return msg
                except queue.Empty:
                    raise GmvError(f"the process reading --vectors died (exit code {proc.exitcode}); fix: run again, "
                                   "with less memory in use if it was killed") from None
