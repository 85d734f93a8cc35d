"""Generated images in: discover -> decode -> embed -> quality -> search (recall, re-rank) ->
credits -> ledger rows and values (journaled with their vectors)."""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from gmv_store.backends.named import batch_vectors
from gmv_store.errors import BadInput, GmvError, param
from gmv_store.ledger.credits import has_training, training_source, valued_sha256
from gmv_store.ledger.origins import origin_groups, record_origins
from gmv_store.ledger.records import SetRow, generated_payload
from gmv_store.ledger.sets import get_set, insert_set
from gmv_store.options import DEFAULT_K
from gmv_store.progress import Progress
from gmv_store.sources import Decoded, InputOptions, InputReport, read_batches, unique_new
from gmv_store.sources.checked import load_checked
from gmv_store.sources.location import to_record
from gmv_store.store import GENERATED, Store
from gmv_store.vectors import point_id

from .matches import GeneratedRow, Match, insert_generated
from .recall_lists import list_bytes
from .search import contributor_of, search


@dataclass(kw_only=True)
class ValueReport(InputReport):
    set_name: str
    valued: int = 0
    already_valued: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=lambda: {"embed": 0.0, "quality": 0.0, "search": 0.0, "write": 0.0})
    generated_ids: list[str] = field(default_factory=list, repr=False)  # all of them: too long to print


def check_name(name: str, what: str = param("set_name", cli="--set")) -> str:
    """Set names are shown in tables, paths of the web UI and SQL: printable, one line."""
    if not name or not name.strip():
        raise BadInput(f"{what}: a name is required, e.g. {what} gan-2026-11")
    if any(ord(c) < 32 or ord(c) == 127 for c in name) or len(name) > 200:
        raise BadInput(f"{what} {name!r}: names must be one printable line of at most 200 characters")
    return name


def generated_point_id(set_name: str, sha256: str) -> int:
    """One point per (set, content): the same image valued in two sets is two points."""
    return point_id(hashlib.sha256(f"{set_name}\0{sha256}".encode()).hexdigest())


def ensure_set(store: Store, set_name: str, k: int, recall: int, exact: bool = False) -> bool:
    """Check the set's k, N and search against the ones it was made with; False when the set
    is new (it is made with its first images, so that a run that values none makes none)."""
    check_name(set_name)
    if k < 1:
        raise BadInput(f"{param('k')} {k}: must be at least 1")
    if recall < k:
        raise BadInput(f"{param('recall')} {recall}: must be at least {param('k')} ({k})")
    row = get_set(store.ledger, set_name)
    if row is None:
        return False
    if (row.k, row.recall, row.exact) != (k, recall, exact):
        was = (param("k", cli=f"--k {row.k}", value=row.k) + " " + param("recall", cli=f"--recall {row.recall}", value=row.recall)
               + (" " + param("exact", cli="--exact", value="True") if row.exact else ""))
        raise BadInput(
            f"set '{set_name}' was valued with {was}; values within a set must share them; "
            f"fix: pass {was} or choose another {param('set_name', cli='--set')}"
        )
    return True


def candidate_loader(store: Store) -> Callable[[int], np.ndarray]:
    """Pixels of a training point from its recorded source (for image re-rankers)."""
    def load(pid: int) -> np.ndarray:
        row = training_source(store.ledger, contributor_of(pid))
        if row is None:
            raise GmvError(f"training point {pid} has no ledger row; fix: run `gmv verify`")
        return load_checked(row[0], row[1], store.root)  # never another image than the one stored

    return load


def require_training(store: Store) -> None:
    if not has_training(store.ledger):
        raise GmvError("the store has no training images; fix: run `gmv ingest PATH...` first")


def check_quality(scores: np.ndarray | Sequence[float | None], n: int, name: str) -> np.ndarray:
    """Quality scores as float64, if every one is finite and > 0."""
    q = np.asarray(scores, dtype=np.float64)
    if q.shape != (n,) or not np.isfinite(q).all() or (q <= 0).any():
        raise GmvError(f"quality backend '{name}' returned invalid scores {q[:5]}...; scores must be finite and > 0")
    return q


def score_batch(store: Store, batch: list[Decoded], k: int, recall: int, timings: dict[str, float],
                exact: bool = False) -> tuple[list[Match], np.ndarray, dict[str, np.ndarray]]:
    """Embed, score quality and match a batch of decoded generated images (no writes).
    Returns (matches, qualities, vectors)."""
    pixels = [d.pixels for d in batch]
    t = time.perf_counter()
    vectors = batch_vectors(batch, store.embed)  # made by the workers with --ray
    timings["embed"] += time.perf_counter() - t
    t = time.perf_counter()
    scores = ([d.quality for d in batch] if all(d.quality is not None for d in batch)
              else store.quality.score(pixels))
    q = check_quality(scores, len(batch), store.config.quality.name)
    timings["quality"] += time.perf_counter() - t
    t = time.perf_counter()
    matches = search(store, vectors, k, recall, q, images=pixels, load_candidate=candidate_loader(store), exact=exact)
    timings["search"] += time.perf_counter() - t
    return matches, q, vectors


def input_batches(store: Store, paths: Sequence[str], options: InputOptions | None, batch_size: int,
                  report: InputReport, ray: Any = None) -> Iterator[list[Decoded]]:
    """Decoded generated images in batches: here, or with `ray` on a Ray cluster that also
    embeds them and scores their quality."""
    if ray is None:
        return read_batches(list(paths), options, batch_size, report)
    from gmv_store.distributed import store_batches

    return store_batches(store, list(paths), options, batch_size, report, ray, with_quality=True)


def write_generated(store: Store, the_set: SetRow, batch: list[Decoded], matches: list[Match], quality: np.ndarray,
                    vectors: dict[str, np.ndarray], meta: dict[str, Any], new_set: bool = False) -> None:
    """Rows, vectors and first matches of newly valued images of `the_set` (its k, N and
    search as the caller checked them); `new_set`: the set is made now, in the same
    transaction as its first rows."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    set_name, k, recall, exact = the_set.set_name, the_set.k, the_set.recall, the_set.exact
    rows = [GeneratedRow(set_name, d.short_id, generated_point_id(set_name, d.sha256), d.sha256,
                         to_record(d.source, store.root), d.label,
                         float(qj), k, recall, exact) for d, qj in zip(batch, quality)]
    payloads = [generated_payload(r.set_name, r.generated_id, r.sha256, r.source, r.label, r.quality, meta, now, k,
                                  recall, exact) for r in rows]
    with store.adding("value", GENERATED, [r.point_id for r in rows], vectors, payloads, {"set_name": set_name},
                      ledger_rows=len(rows) + 2 * sum(len(m.contributors) for m in matches),
                      blob_bytes=sum(list_bytes(len(m.recall_ids)) for m in matches)) as con:
        if new_set:
            insert_set(con, the_set)
        insert_generated(con, rows, matches, json.dumps(meta), now)
        record_origins(con, GENERATED, origin_groups([r.point_id for r in rows], batch))  # given vectors: gmv repair re-reads them


def warm_up_quality(store: Store) -> None:
    """Import and load the quality metric in the background while inputs are read and
    embedded (torch and pyiqa take ~6 s to import). It overlaps only what releases the GIL
    (decoding, ledger queries; Qdrant's searches hold it). A failure here is left for the
    first `score` to raise, with its one-line fix."""
    _ = store.embedder  # made first, as the valuation uses them: a missing backend is named in that order
    quality = store.quality

    def prepare() -> None:
        try:
            quality.prepare()
        except Exception:
            pass

    threading.Thread(target=prepare, daemon=True, name="gmv-quality-warm-up").start()


def value(store: Store, paths: list[str], set_name: str, *, k: int = DEFAULT_K, recall: int | None = None,
          options: InputOptions | None = None, meta: dict[str, Any] | None = None, batch_size: int = 256,
          exact: bool = False, progress: bool = False,
          batches: Callable[[ValueReport], Iterable[list[Decoded]]] | None = None, ray: Any = None) -> ValueReport:
    """Value generated images into `set_name`. An image already in the set is not counted
    twice. `exact`: search exactly, not through the index (fixed per set, like k and N).
    `batches(report)`: the decoded batches, when not read from `paths` (`query.given`);
    `ray` (RaySettings): decode, embed and score quality on a Ray cluster; search and
    writes stay here."""
    t0 = time.perf_counter()
    recall = recall if recall is not None else 10 * k
    report = ValueReport(set_name=set_name)
    require_training(store)
    exists = ensure_set(store, set_name, k, recall, exact)
    the_set = SetRow(set_name, k, recall, exact)  # passed down: what ensure_set checked, not read back
    if store.config.rerank_fallback:
        report.notes.append(f"set '{set_name}': re-ranked by the recall distance (training rows without images)")
    if ray is None:  # with --ray the workers score quality
        warm_up_quality(store)
    bar = Progress(f"value {set_name}", enabled=progress)
    for batch in (batches(report) if batches else input_batches(store, paths, options, batch_size, report, ray)):
        known = valued_sha256(store.ledger, set_name, [d.sha256 for d in batch])
        new = unique_new(batch, known)
        report.already_valued += len(batch) - len(new)
        if new:
            matches, q, vectors = score_batch(store, new, k, recall, report.timings, exact=exact)
            t = time.perf_counter()
            write_generated(store, the_set, new, matches, q, vectors, meta or {}, new_set=not exists)
            exists = True
            report.timings["write"] += time.perf_counter() - t
            report.valued += len(new)
            report.generated_ids.extend(d.short_id for d in new)
        bar.update(len(batch))
        store.maybe_snapshot()
    bar.close()
    report.seconds = time.perf_counter() - t0
    return report
