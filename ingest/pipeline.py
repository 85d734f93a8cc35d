"""Training images in: discover -> decode -> dedupe -> embed -> write (vectors + ledger).

Ingest only adds: generated images valued earlier are brought up to date by
`query.refresh.refresh`, which the caller runs next (the CLI and API do, unless asked not to).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gmv_store.backends.named import batch_vectors
from gmv_store.progress import Progress
from gmv_store.sources import InputOptions, InputReport, read_batches
from gmv_store.store import TRAINING, Store

from .overlap import write_all
from .write import SEQ


@dataclass
class IngestReport(InputReport):
    added: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    write_seconds: float = 0.0
    index: Any = None    # the IndexReport, when the caller brought the index up to date
    refresh: Any = None  # the RefreshReport, when the caller ran one after ingesting


def ingest(store: Store, paths: list[str], *, owner: str | None = None, options: InputOptions | None = None,
           meta: dict[str, Any] | None = None, batch_size: int = 512, progress: bool = False, workers: int = 0,
           owner_column: str | None = None, ray: Any = None) -> IngestReport:
    """Add training images to the store. Re-ingesting known content adds nothing.
    `owner_column`: each image's owner from that key of its own metadata (a Parquet column,
    a WebDataset .json key), `owner` where an image has none.
    `workers` >= 1 decodes in that many processes (same results, in the same order); `ray`
    (RaySettings) decodes and embeds on a Ray cluster instead (gmv_store.distributed)."""
    t0 = time.perf_counter()
    report = IngestReport()
    bar = Progress("ingest", enabled=progress)
    # refresh picks the points waiting for it by a range on their write time: an index kept
    # from the start costs little per upsert, built later it costs a pass over every point
    store.vectors.ensure_payload_index(TRAINING, SEQ)
    # light models embed in the decoding workers: this process is left the writes
    if ray is not None:
        from gmv_store.distributed import store_batches

        batches = store_batches(store, paths, options, batch_size, report, ray)
    else:
        embed = store.worker_embedding() if workers >= 1 else None
        batches = read_batches(paths, options, batch_size, report, workers=workers, embed=embed)
    # dedupe, embedding (where the workers did not) and the points' conversion run on a
    # second thread, overlapping the writes (ingest/overlap.py)
    for w in write_all(store, batches, lambda new: (batch_vectors(new, store.embed), new), owner, meta or {},
                       owner_column):
        report.duplicates += w.read - w.added
        report.added += w.added
        report.embed_seconds += w.embed_seconds
        report.write_seconds += w.write_seconds
        bar.update(w.read)
        store.maybe_snapshot()
    bar.close()
    report.seconds = time.perf_counter() - t0
    return report
