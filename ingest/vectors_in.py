"""Training rows whose vectors come with the data (`gmv ingest --vectors`): read -> dedupe ->
write, through the same `write_training` (journaled by `Store.adding`) as images. The
recall vector is never computed; the rows' images, where they name them, give identity,
size and thumbnails, and the re-rank vector when none is given (`complete`).
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from gmv_store.backends.named import batch_vectors
from gmv_store.config import describe_backend, write_config
from gmv_store.errors import GmvError
from gmv_store.progress import Progress
from gmv_store.sources import Decoded, InputOptions, unique_new
from gmv_store.sources.vectors import Expect, VectorOptions, check_model, identity_modes, read_vector_batches
from gmv_store.store import TRAINING, Store

from .pipeline import IngestReport, known_hashes
from .write import SEQ, write_training

VECTOR_BATCH = 2048  # rows per journaled write: larger batches amortise the ledger's and engine's per-call costs


@dataclass
class VectorIngestReport(IngestReport):
    without_images: int = 0  # rows identified by --id-column (no image)


def expect(store: Store) -> Expect:
    """What the store's collections take, and which model names a vector file may state."""
    spec, emb = store.config.embedder, store.embedder
    if spec.name == "precomputed":
        names = (spec.params["name"],) if spec.params.get("name") else None
    else:
        text = [str(v) for k, v in sorted(spec.params.items()) if isinstance(v, str) and v and k != "device"]
        names = tuple(dict.fromkeys(n for n in (spec.name, describe_backend(spec), *text, "/".join(text)) if n))
    rv = store.stored_reranker.vector_embedder()
    return Expect(emb.dim, emb.metric, rv.dim if rv is not None else None, names,
                  check_norm=spec.name != "precomputed" and emb.metric == "cosine")


def rerank_fallback(store: Store, vo: VectorOptions, options: InputOptions | None, notes: list[str]) -> None:
    """Rows with neither images nor re-rank vectors cannot be re-ranked: the store then
    re-ranks by the recall distance, for every set (recorded in store.json; said in status
    and by value). Refused once sets exist, whose stored matches were re-ranked."""
    if (store.config.rerank_fallback or store.reranker.name == "none" or vo.rerank_vectors
            or "id" not in identity_modes(vo, options)):
        return
    if store.ledger.execute("SELECT EXISTS (SELECT 1 FROM generated_images)").fetchone()[0]:
        raise GmvError(f"rows without images or --rerank-vectors cannot be re-ranked by '{store.config.rerank.name}', "
                       "and this store's sets were re-ranked that way; fix: name the rows' images (image_path, "
                       "--images), pass --rerank-vectors, or ingest them into a new store")
    store.config = store.config.model_copy(update={"rerank_fallback": True})
    write_config(store.root, store.config)
    store.__dict__.pop("reranker", None)
    notes.append(f"rows without images or re-rank vectors: re-rank '{store.config.rerank.name}' falls back to the "
                 "recall distance in this store (see `gmv status`)")


def complete(store: Store, batch: list[Decoded]) -> list[Decoded]:
    """Every stored named vector of each row: a re-rank vector not given is computed from
    the row's image by the re-rank model, and for a row without an image (whose store
    re-ranks by the recall distance, so it is never searched) is a fixed placeholder."""
    rv = store.stored_reranker.vector_embedder()
    if rv is None:
        return batch
    todo = [d for d in batch if "rerank" not in d.vectors]
    pictured = [d for d in todo if d.pixels.size]
    if pictured:
        for d, v in zip(pictured, rv.embed([d.pixels for d in pictured])):
            d.vectors["rerank"] = v
    if len(pictured) < len(todo):
        if not store.config.rerank_fallback:
            raise GmvError("rows without images need --rerank-vectors in this store (it re-ranks with "
                           f"'{store.config.rerank.name}'); fix: pass --rerank-vectors or name the images")
        placeholder = np.zeros(rv.dim, np.float32)
        placeholder[0] = 1.0  # a unit vector: valid under every metric, never searched
        for d in todo:
            if not d.pixels.size:
                d.vectors["rerank"] = placeholder
    return batch


def prefetched(batches: Iterator[list[Decoded]], depth: int = 2) -> Iterator[list[Decoded]]:
    """The batches, read `depth` ahead in a thread: the engine's upsert and DuckDB release
    the GIL, so reading the next rows (Parquet, numpy, ids) overlaps the writes (measured in
    benchmarks/precomputed.py). The same batches in the same order; the reader's errors are
    raised here; problems it finds are appended to the report by that thread alone."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def put(x) -> bool:
        while not stop.is_set():  # the consumer may have stopped: never block on a full queue
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def read() -> None:
        try:
            for b in batches:
                if not put(b):
                    return
            put(done)
        except BaseException as e:  # handed to the consumer, which raises it
            put(e)

    t = threading.Thread(target=read, name="gmv-vectors-reader", daemon=True)
    t.start()
    try:
        while (b := q.get()) is not done:
            if isinstance(b, BaseException):
                raise b
            yield b
    finally:
        stop.set()
        t.join()
        batches.close()


def ingest_vectors(store: Store, vo: VectorOptions, *, owner: str | None = None, options: InputOptions | None = None,
                   meta: dict | None = None, owner_column: str | None = None, batch_size: int = VECTOR_BATCH, progress: bool = False) -> VectorIngestReport:
    """Add training rows with their given vectors. Re-ingesting the same content (or id)
    adds nothing; bad files and rows are reported and skipped, the good ones stored."""
    t0 = time.perf_counter()
    report = VectorIngestReport()
    check_model(vo, expect(store))  # before anything changes
    rerank_fallback(store, vo, options, report.notes)
    bar = Progress("ingest --vectors", enabled=progress)
    store.vectors.ensure_payload_index(TRAINING, SEQ)
    for batch in prefetched(read_vector_batches(vo, options, expect(store), batch_size, report)):
        new = unique_new(batch, known_hashes(store, batch))
        report.duplicates += len(batch) - len(new)
        if new:
            t = time.perf_counter()
            write_training(store, new, batch_vectors(complete(store, new), store.embed), owner, meta or {},
                           owner_column=owner_column)
            report.write_seconds += time.perf_counter() - t
        report.added += len(new)
        report.without_images += sum(1 for d in new if not d.pixels.size)
        bar.update(len(batch))
        store.maybe_snapshot()
    bar.close()
    report.seconds = time.perf_counter() - t0
    return report
