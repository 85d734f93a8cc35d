"""Generated images in: discover -> decode -> embed -> recall -> re-rank -> quality ->
credits -> values."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from gmv_store.errors import BadInput, GmvError
from gmv_store.progress import Progress
from gmv_store.store import TRAINING, Store
from gmv_store.valuation import credits
from ingest.decode import batched, decode_items, unique_new
from ingest.discover import Discovery, Problem, discover, load_source

from .recall import Match, contributor_of, match
from .write import Scored, write_generated

DEFAULT_K = 50


@dataclass
class ValueReport:
    set_name: str
    valued: int = 0
    already_valued: int = 0
    ignored_files: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=lambda: {"embed": 0.0, "quality": 0.0, "search": 0.0, "write": 0.0})
    generated_ids: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.problems)


def ensure_set(store: Store, set_name: str, k: int, recall: int) -> None:
    if not set_name or not set_name.strip():
        raise BadInput("--set: a set name is required, e.g. --set gan-2026-11")
    if k < 1:
        raise BadInput(f"--k {k}: must be at least 1")
    if recall < k:
        raise BadInput(f"--recall {recall}: must be at least --k ({k})")
    row = store.ledger.execute("SELECT k, recall FROM generated_sets WHERE set_name = ?", [set_name]).fetchone()
    if row is None:
        store.ledger.execute("INSERT INTO generated_sets VALUES (?, ?, ?, current_timestamp)", [set_name, k, recall])
    elif tuple(row) != (k, recall):
        raise BadInput(
            f"set '{set_name}' was valued with --k {row[0]} --recall {row[1]}; values within a set must share them; "
            f"fix: pass --k {row[0]} --recall {row[1]} or choose another --set"
        )


def set_params(store: Store, set_name: str) -> tuple[int, int] | None:
    row = store.ledger.execute("SELECT k, recall FROM generated_sets WHERE set_name = ?", [set_name]).fetchone()
    return (row[0], row[1]) if row else None


def candidate_loader(store: Store):
    def load(pid: str) -> np.ndarray:
        row = store.ledger.execute(
            "SELECT source FROM training_images WHERE contributor_id = ?", [contributor_of(pid)]
        ).fetchone()
        if row is None:
            raise GmvError(f"training point {pid} has no ledger row; fix: run `gmv verify`")
        return load_source(row[0])

    return load


def check_quality(q: np.ndarray, n: int, name: str) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (n,) or not np.isfinite(q).all() or (q <= 0).any():
        raise GmvError(f"quality backend '{name}' returned invalid scores {q[:5]}...; scores must be finite and > 0")
    return q


def score_batch(store: Store, batch, k: int, recall: int, timings: dict) -> tuple[list[Scored], dict]:
    """Embed, match and credit a batch of decoded generated images (no writes)."""
    pixels = [d.pixels for d in batch]
    t = time.perf_counter()
    vectors = store.embed(pixels)
    timings["embed"] += time.perf_counter() - t
    t = time.perf_counter()
    q = check_quality(store.quality.score(pixels), len(batch), store.quality.name)
    timings["quality"] += time.perf_counter() - t
    t = time.perf_counter()
    matches = match(store, vectors, k, recall, images=pixels, load_candidate=candidate_loader(store))
    timings["search"] += time.perf_counter() - t
    scored = [to_scored(d.short_id, d.sha256, d.source, d.label, float(qj), m) for d, qj, m in zip(batch, q, matches)]
    return scored, vectors


def to_scored(generated_id, sha256, source, label, quality: float, m: Match) -> Scored:
    return Scored(generated_id, sha256, source, label, quality, [contributor_of(p) for p in m.ids], m.distances,
                  credits(m.distances, quality).tolist(), [r for _, _, r in m.top], m.recall_scores)


def value(store: Store, paths: list[str], set_name: str, *, k: int = DEFAULT_K, recall: int | None = None,
          label_from: str | None = None, label: str | None = None, meta: dict | None = None,
          batch_size: int = 64, progress: bool = False) -> ValueReport:
    """Value generated images into `set_name`. An image already in the set is not counted twice."""
    t0 = time.perf_counter()
    recall = recall if recall is not None else 10 * k
    report = ValueReport(set_name)
    if store.vectors.count(TRAINING) == 0:
        raise GmvError("the store has no training images; fix: run `gmv ingest PATH...` first")
    ensure_set(store, set_name, k, recall)
    found = Discovery()
    bar = Progress(f"value {set_name}", enabled=progress)
    for batch in batched(decode_items(discover(paths, label_from=label_from, label=label, found=found), report.problems), batch_size):
        known = {r[0] for r in store.ledger.execute(
            "SELECT sha256 FROM generated_images WHERE set_name = ? AND sha256 IN (SELECT unnest(?))",
            [set_name, [d.sha256 for d in batch]]).fetchall()}
        new = unique_new(batch, known)
        report.already_valued += len(batch) - len(new)
        if new:
            scored, vectors = score_batch(store, new, k, recall, report.timings)
            t = time.perf_counter()
            write_generated(store, set_name, scored, vectors, meta or {})
            report.timings["write"] += time.perf_counter() - t
            report.valued += len(new)
            report.generated_ids.extend(s.generated_id for s in scored)
        bar.update(len(batch))
        store.maybe_snapshot()
    bar.close()
    report.problems[:0] = found.problems
    report.ignored_files = found.ignored
    report.seconds = time.perf_counter() - t0
    return report
