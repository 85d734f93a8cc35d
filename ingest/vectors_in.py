"""Training rows whose vectors come with the data (`gmv ingest --vectors`): read -> dedupe ->
write, through the same `write_all` (ingest/overlap.py; journaled as `Store.adding`) as
images, or, for many rows without images, read and prepared in a second process
(ingest/vectors_reader.py) and written by `write_staged`. The recall vector is never computed; the rows' images, where they name them, give identity,
size and thumbnails, and the re-rank vector when none is given (`complete`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmv_store.backends.named import batch_vectors
from gmv_store.config import describe_backend
from gmv_store.errors import GmvError
from gmv_store.ledger.training import has_generated, training_point_ids
from gmv_store.progress import Progress
from gmv_store.sources import Decoded, InputOptions
from gmv_store.sources.vectors import Expect, VectorOptions, check_model, identity_modes, parts, read_vector_batches
from gmv_store.store import TRAINING, Store

from . import vectors_reader
from .overlap import write_all, write_staged
from .pipeline import IngestReport
from .vectors_reader import ReaderJob, fill_rerank, read_in_process
from .write import SEQ

VECTOR_BATCH = 2048  # rows per journaled write: larger batches amortise the ledger's and engine's per-call costs


@dataclass
class VectorIngestReport(IngestReport):
    without_images: int = 0  # rows identified by --id-column (no image)


def expect(store: Store) -> Expect:
    """What the store's collections take, and which model names a vector file may state."""
    spec, emb = store.config.embedder, store.embedder
    names: tuple[str, ...] | None
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
    if has_generated(store.ledger):
        raise GmvError(f"rows without images or --rerank-vectors cannot be re-ranked by '{store.config.rerank.name}', "
                       "and this store's sets were re-ranked that way; fix: name the rows' images (image_path, "
                       "--images), pass --rerank-vectors, or ingest them into a new store")
    store.fall_back_to_recall_distance()
    notes.append(f"rows without images or re-rank vectors: re-rank '{store.config.rerank.name}' falls back to the "
                 "recall distance in this store (see `gmv status`)")


def complete(store: Store, batch: list[Decoded]) -> list[Decoded]:
    """Every stored named vector of each row (`fill_rerank` with the store's re-rank model)."""
    rv = store.stored_reranker.vector_embedder()
    return fill_rerank(batch, rv.dim if rv is not None else None, rv.embed if rv is not None else None,
                       store.config.rerank_fallback, store.config.rerank.name)


def input_rows(vo: VectorOptions) -> int:
    """The rows of the input's tables (their Parquet footers): unreadable ones count 0 here
    and are reported when read."""
    from gmv_store.sources.base import file_stamp
    from gmv_store.sources.parquet import _open

    total = 0
    for part in parts(Path(vo.path), vo):
        try:
            total += int(_open(*file_stamp(part.table.absolute()))[2])
        except (GmvError, OSError, ValueError):
            pass
    return total


def ingest_vectors(store: Store, vo: VectorOptions, *, owner: str | None = None, options: InputOptions | None = None,
                   meta: dict[str, Any] | None = None, owner_column: str | None = None, batch_size: int = VECTOR_BATCH,
                   progress: bool = False) -> VectorIngestReport:
    """Add training rows with their given vectors. Re-ingesting the same content (or id)
    adds nothing; bad files and rows are reported and skipped, the good ones stored."""
    t0 = time.perf_counter()
    report = VectorIngestReport()
    check_model(vo, expect(store))  # before anything changes
    rerank_fallback(store, vo, options, report.notes)
    bar = Progress("ingest --vectors", enabled=progress)
    store.vectors.ensure_payload_index(TRAINING, SEQ)
    ids_only = identity_modes(vo, options) == {"id"}
    if ids_only and input_rows(vo) >= vectors_reader.READER_PROCESS_ROWS:
        # rows without images, many: read and prepared in a second process (ingest/vectors_reader.py)
        job = ReaderJob(vo, options or InputOptions(), expect(store), batch_size, str(store.root), owner, meta or {},
                        owner_column, store.config.rerank_fallback, store.config.rerank.name,
                        training_point_ids(store.ledger))
        written = write_staged(store, read_in_process(store, job, report))
    else:
        # reading and dedupe run on a second thread where rows have images to read (overlapping
        # the engine's upsert), the ledger's commits on a third (ingest/overlap.py); rows without
        # images (ids only) are read and prepared holding the GIL: no thread for that
        batches = read_vector_batches(vo, options, expect(store), batch_size, report)
        written = write_all(store, batches, lambda new: (batch_vectors(complete(store, new), store.embed), new), owner,
                            meta or {}, owner_column, prepare_ahead=not ids_only)
    for w in written:
        report.duplicates += w.read - w.added
        report.added += w.added
        report.without_images += w.without_images
        report.write_seconds += w.write_seconds
        bar.update(w.read)
        store.maybe_snapshot()
    bar.close()
    report.seconds = time.perf_counter() - t0
    return report
