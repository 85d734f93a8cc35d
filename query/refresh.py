"""Keep stored scores equal to a from-scratch valuation when the training set changes.

A generated image j's stored top-k comes from two stages: the N best candidates by the
recall vector, then the k closest of those by the re-rank distance. A change to the
training set can only alter it when
  * a new image x enters j's recall set (its recall score beats j's stored floor, or fewer
    than N were recalled) AND either x is at least as close as j's k-th contributor, or
    the candidates x pushes out of the recall set include one of j's top-k (known from the
    stored recall ranks); or
  * a removed image was in j's recall set (then a new candidate moves in; j is re-scored).
Which j those are is found by searching the stored generated vectors in Qdrant with the
changed training images' vectors (no re-embedding). Those j go to `refresh_queue`;
draining it re-scores each one from scratch against the current training set and updates
the values by difference, one ledger transaction per chunk, so an interrupted refresh
resumes where it stopped and nothing is counted twice.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from gmv_store.backends.base import ImageReranker
from gmv_store.ledger import insert_columns, transaction
from gmv_store.progress import Progress
from gmv_store.store import GENERATED, TRAINING, Store
from gmv_store.vectors import Query, iter_chunks

from .recall import match, recall_size
from .write import Scored, add_sums, insert_credits

CHUNK = 256


@dataclass
class RefreshReport:
    queued: int = 0            # generated images whose top-k could have changed
    rescored: int = 0          # re-scored from scratch
    changed: int = 0           # whose top-k or distances actually changed
    total_generated: int = 0
    sets: int = 0
    seconds: float = 0.0
    timings: dict = field(default_factory=lambda: {"find": 0.0, "rescore": 0.0})

    def summary(self) -> str:
        return (f"re-scored {self.rescored:,} of {self.total_generated:,} generated images in {self.sets} "
                f"set{'s' if self.sets != 1 else ''} ({self.changed:,} changed)")


def _gen_state(store: Store) -> dict[str, dict]:
    """Per generated point: set, id, k, N, floor, n_recalled, k-th distance, worst recall rank."""
    rows = store.ledger.execute(
        """
        SELECT g.point_id, g.set_name, g.generated_id, s.k, s.recall, g.recall_floor, g.n_recalled,
               coalesce(c.kth, 'Infinity'::DOUBLE), coalesce(c.worst, 0), coalesce(c.n, 0)
        FROM generated_images g JOIN generated_sets s USING (set_name)
        LEFT JOIN (SELECT set_name, generated_id, max(distance) AS kth, max(recall_rank) AS worst, count(*) AS n
                   FROM credits GROUP BY ALL) c USING (set_name, generated_id)
        """
    ).fetchall()
    out = {}
    for pid, set_name, gid, k, recall, floor, n_rec, kth, worst, n in rows:
        out[pid] = {"set_name": set_name, "generated_id": gid, "k": k, "N": recall_size(store, k, recall),
                    "floor": floor, "n_recalled": n_rec, "kth": kth if n >= k else float("inf"), "worst": worst}
    return out


def _better_or_equal(score: float, floor: float | None, metric: str) -> bool:
    if floor is None:
        return True
    return score >= floor - 1e-6 if metric == "cosine" else score <= floor + 1e-6


def _in_recall_sets(store: Store, x_recall: np.ndarray, state: dict[str, dict]) -> list[list[tuple[str, float]]]:
    """For each training vector: the generated points whose recall set it is (or would be) in."""
    metric = store.embedder.metric
    full = [pid for pid, st in state.items() if st["n_recalled"] >= st["N"] and st["floor"] is not None]
    open_ = [pid for pid, st in state.items() if pid not in set(full)]
    if full:
        floors = [state[p]["floor"] for p in full]
        loosest = min(floors) if metric == "cosine" else max(floors)
        thr = loosest - 1e-6 if metric == "cosine" else loosest + 1e-6
    out = []
    qs = [Query({"recall": v}, using="recall", limit=len(state), score_threshold=thr) for v in x_recall] if full else []
    hits = store.vectors.query(GENERATED, qs) if qs else [[] for _ in x_recall]
    for h in hits:
        row = [(p, s) for p, s in h if p in state and _better_or_equal(s, state[p]["floor"], metric)
               and state[p]["n_recalled"] >= state[p]["N"]]
        out.append(row)
    if open_:
        # recall sets that are not full take every new image
        for row in out:
            row.extend((p, float("nan")) for p in open_)
    return out


def _pair_distance(store: Store, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Re-rank distance between rows of a and b (same shape), as Qdrant computes it."""
    rv = store.reranker.vector_embedder()
    if rv.metric == "cosine":
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        score = np.einsum("ij,ij->i", a, b) / np.maximum(na * nb, 1e-12)
    else:
        score = np.linalg.norm(a - b, axis=1)
    return np.array([store.reranker.distance_from_score(float(s), rv.metric) for s in score])


def queue_for_new_training(store: Store, point_ids: list[str]) -> int:
    """Find generated images a batch of new training images can change; queue them."""
    state = _gen_state(store)
    if not state or not point_ids:
        return 0
    x_recall = store.vectors.vectors(TRAINING, point_ids, "recall")
    pairs = _in_recall_sets(store, x_recall, state)
    entering: dict[str, list[int]] = defaultdict(list)
    for xi, row in enumerate(pairs):
        for p, _ in row:
            entering[p].append(xi)
    affected = set()
    rv = store.reranker.vector_embedder()
    exact_rerank = rv is not None
    if exact_rerank and entering:
        x_rr = store.vectors.vectors(TRAINING, point_ids, "rerank")
        gids = list(entering)
        g_rr = dict(zip(gids, store.vectors.vectors(GENERATED, gids, "rerank")))
    for p, xs in entering.items():
        st = state[p]
        evicted = max(0, st["n_recalled"] + len(xs) - st["N"])
        if evicted and st["worst"] > st["n_recalled"] - evicted:
            affected.add(p)  # a top-k member may fall out of the recall set
            continue
        if not exact_rerank and not isinstance(store.reranker, ImageReranker):
            affected.add(p)  # no re-ranking: entering the recall set is entering the top-k
            continue
        if isinstance(store.reranker, ImageReranker):
            affected.add(p)  # distance needs the images: re-score
            continue
        d = _pair_distance(store, x_rr[xs], np.repeat(g_rr[p][None, :], len(xs), axis=0))
        if (d <= st["kth"] + 1e-6).any():
            affected.add(p)
    _enqueue(store, [state[p] for p in affected], "ingest")
    return len(affected)


def queue_for_removed_training(store: Store, point_ids: list[str], contributor_ids: list[str]) -> int:
    """Generated images whose recall set holds any of the images about to be removed."""
    state = _gen_state(store)
    if not state or not point_ids:
        return 0
    affected = set()
    x_recall = store.vectors.vectors(TRAINING, point_ids, "recall")
    for row in _in_recall_sets(store, x_recall, state):
        affected.update(p for p, _ in row if state[p]["n_recalled"] >= state[p]["N"])
    credited = store.ledger.execute(
        "SELECT DISTINCT g.point_id FROM credits c JOIN generated_images g USING (set_name, generated_id) "
        "WHERE c.contributor_id IN (SELECT unnest(?))", [contributor_ids]).fetchall()
    affected.update(r[0] for r in credited)
    # recall sets that were not full held every training image
    affected.update(p for p, st in state.items() if st["n_recalled"] < st["N"])
    _enqueue(store, [state[p] for p in affected if p in state], "forget")
    return len(affected)


def _enqueue(store: Store, states: list[dict], reason: str) -> None:
    if states:
        insert_columns(store.ledger, "refresh_queue", {
            "set_name": [s["set_name"] for s in states], "generated_id": [s["generated_id"] for s in states],
            "reason": [reason] * len(states), "queued_at": [np.datetime64("now").astype(object)] * len(states),
        }, conflict="ON CONFLICT DO NOTHING")


def refresh_due(con) -> tuple[int, int]:
    """(training images not yet matched, generated images queued for re-scoring)."""
    return (con.execute("SELECT count(*) FROM pending_refresh").fetchone()[0],
            con.execute("SELECT count(*) FROM refresh_queue").fetchone()[0])


def rescore(store: Store, rows: list[tuple]) -> list[Scored]:
    """Re-run matching for stored generated images from their stored vectors (no re-embedding).
    rows: (set_name, generated_id, point_id, sha256, source, label, quality, k, recall)."""
    from .pipeline import candidate_loader, to_scored

    fresh: dict[tuple, Scored] = {}
    by_params = defaultdict(list)
    for r in rows:
        by_params[(r[7], r[8])].append(r)
    for (k, recall), group in by_params.items():
        pids = [r[2] for r in group]
        vecs = {"recall": store.vectors.vectors(GENERATED, pids, "recall")}
        if store.reranker.vector_embedder() is not None:
            vecs["rerank"] = store.vectors.vectors(GENERATED, pids, "rerank")
        images = None
        if isinstance(store.reranker, ImageReranker):
            from ingest.discover import load_source

            images = [load_source(r[4]) for r in group]
        matches = match(store, vecs, k, recall, images=images, load_candidate=candidate_loader(store))
        for r, m in zip(group, matches):
            fresh[(r[0], r[1])] = to_scored(r[1], r[3], r[4], r[5], r[6], m)
    return [fresh[(r[0], r[1])] for r in rows]


def stored_scored(con, set_name: str, generated_ids: list[str]) -> dict[str, Scored]:
    rows = con.execute(
        "SELECT generated_id, contributor_id, distance, credit, recall_rank FROM credits "
        "WHERE set_name = ? AND generated_id IN (SELECT unnest(?)) ORDER BY generated_id, rank",
        [set_name, generated_ids]).fetchall()
    out: dict[str, Scored] = {}
    for gid, cid, d, c, rr in rows:
        s = out.setdefault(gid, Scored(gid, "", "", None, 0.0, [], [], [], [], None, 0))
        s.contributors.append(cid)
        s.distances.append(d)
        s.credits.append(c)
        s.recall_ranks.append(rr)
    return out


def same_scores(a: Scored | None, b: Scored, tol: float = 1e-6) -> bool:
    if a is None:
        return not b.contributors
    return (a.contributors == b.contributors
            and np.allclose(a.distances, b.distances, atol=tol, rtol=0)
            and np.allclose(a.credits, b.credits, atol=1e-9, rtol=0))


def drain_queue(store: Store, report: RefreshReport, progress: bool = False) -> None:
    con = store.ledger
    bar = Progress("refresh", total=report.queued or None, enabled=progress)
    while True:
        rows = con.execute(
            """SELECT q.set_name, q.generated_id, g.point_id, g.sha256, g.source, g.label, g.quality, s.k, s.recall
               FROM refresh_queue q JOIN generated_images g USING (set_name, generated_id)
               JOIN generated_sets s USING (set_name) ORDER BY q.set_name, q.generated_id LIMIT ?""", [CHUNK]).fetchall()
        if not rows:
            con.execute("DELETE FROM refresh_queue")  # entries of generated images removed meanwhile
            break
        fresh = rescore(store, rows)
        by_set = defaultdict(list)
        for r, s in zip(rows, fresh):
            by_set[r[0]].append((s, r))
        with transaction(con):
            for set_name, items in by_set.items():
                old = stored_scored(con, set_name, [s.generated_id for s, _ in items])
                changed = [s for s, _ in items if not same_scores(old.get(s.generated_id), s)]
                changed_ids = {s.generated_id for s in changed}
                if changed:
                    ids = [s.generated_id for s in changed]
                    add_sums(con, set_name, [old[i] for i in ids if i in old], sign=-1)
                    con.execute("DELETE FROM credits WHERE set_name = ? AND generated_id IN (SELECT unnest(?))",
                                [set_name, ids])
                    insert_credits(con, set_name, changed)
                    add_sums(con, set_name, changed)
                    report.changed += len(changed)
                # floors and ranks change even when the top-k does not
                for s, _ in items:
                    con.execute("UPDATE generated_images SET recall_floor = ?, n_recalled = ? "
                                "WHERE set_name = ? AND generated_id = ?",
                                [s.recall_floor, s.n_recalled, set_name, s.generated_id])
                unchanged = [s for s, _ in items if s.generated_id not in changed_ids]
                for s in unchanged:
                    con.execute("UPDATE credits SET recall_rank = r.rr FROM (SELECT unnest(?) AS cid, unnest(?) AS rr) r "
                                "WHERE set_name = ? AND generated_id = ? AND contributor_id = r.cid",
                                [s.contributors, s.recall_ranks, set_name, s.generated_id])
                con.execute("DELETE FROM refresh_queue WHERE set_name = ? AND generated_id IN (SELECT unnest(?))",
                            [set_name, [s.generated_id for s, _ in items]])
        report.rescored += len(rows)
        bar.update(len(rows))
        store.maybe_snapshot()
    bar.close()


def refresh(store: Store, progress: bool = False) -> RefreshReport:
    """Match pending training images against generated images, then drain the queue."""
    t0 = time.perf_counter()
    con = store.ledger
    report = RefreshReport()
    pending = con.execute("SELECT point_id FROM pending_refresh ORDER BY contributor_id").fetchall()
    if pending:
        t = time.perf_counter()
        pids = [r[0] for r in pending]
        with transaction(con):
            for chunk in iter_chunks(pids, 2048):
                queue_for_new_training(store, list(chunk))
            con.execute("DELETE FROM pending_refresh")
        report.timings["find"] = time.perf_counter() - t
    report.queued = con.execute("SELECT count(*) FROM refresh_queue").fetchone()[0]
    t = time.perf_counter()
    drain_queue(store, report, progress=progress)
    report.timings["rescore"] = time.perf_counter() - t
    report.total_generated, report.sets = con.execute(
        "SELECT count(*), count(DISTINCT set_name) FROM generated_images").fetchone()
    report.seconds = time.perf_counter() - t0
    return report
