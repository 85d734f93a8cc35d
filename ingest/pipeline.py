"""Training images in: discover -> decode -> dedupe -> embed -> write (vectors + ledger)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from gmv_store.errors import BadInput
from gmv_store.progress import Progress
from gmv_store.store import Store

from .decode import batched, decode_items, unique_new
from .discover import Discovery, Problem, discover
from .write import write_training


@dataclass
class IngestReport:
    added: int = 0
    duplicates: int = 0
    ignored_files: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    write_seconds: float = 0.0
    refresh: object = None  # RefreshReport when a refresh ran

    @property
    def skipped(self) -> int:
        return len(self.problems)


def parse_meta(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    meta = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput(f"--meta {pair!r}: expected key=value")
        meta[key] = value
    return meta


def known_hashes(store: Store, batch) -> set[str]:
    rows = store.ledger.execute(
        "SELECT sha256 FROM training_images WHERE sha256 IN (SELECT unnest(?))", [[d.sha256 for d in batch]]
    ).fetchall()
    return {r[0] for r in rows}


def ingest(store: Store, paths: list[str], *, owner: str | None = None, label_from: str | None = None,
           label: str | None = None, meta: dict | None = None, batch_size: int = 512,
           progress: bool = False, refresh: bool = True) -> IngestReport:
    """Add training images to the store. Re-ingesting known content adds nothing.

    With `refresh` (default), generated images whose top-k the new images change are
    re-scored afterwards; otherwise they wait for `query.refresh.refresh`."""
    t0 = time.perf_counter()
    report = IngestReport()
    found = Discovery()
    items = discover(paths, label_from=label_from, label=label, found=found)
    bar = Progress("ingest", enabled=progress)
    for batch in batched(decode_items(items, report.problems), batch_size):
        new = unique_new(batch, known_hashes(store, batch))
        report.duplicates += len(batch) - len(new)
        if new:
            t = time.perf_counter()
            vectors = store.embed([d.pixels for d in new])
            report.embed_seconds += time.perf_counter() - t
            t = time.perf_counter()
            write_training(store, new, vectors, owner, meta or {})
            report.write_seconds += time.perf_counter() - t
        report.added += len(new)
        bar.update(len(batch))
        store.maybe_snapshot()
    bar.close()
    if refresh:
        from query.refresh import refresh as run_refresh

        report.refresh = run_refresh(store, progress=progress)
    report.problems[:0] = found.problems
    report.ignored_files = found.ignored
    report.seconds = time.perf_counter() - t0
    return report
