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

from gmv_store.valuation import credits

from .recall import contributor_of, match, recall_size
from .write import Scored, add_sums, insert_credits, pack_scores, unpack_scores

CHUNK = 256


@dataclass
class RefreshReport:
    merged: int = 0            # brought up to date without a search (exact merge)
    merged_changed: int = 0
    queued: int = 0            # generated images queued for a full re-score
    rescored: int = 0          # re-scored from scratch
    changed: int = 0           # whose top-k or distances actually changed
    total_generated: int = 0
    sets: int = 0
    seconds: float = 0.0
    timings: dict = field(default_factory=lambda: {"find": 0.0, "rescore": 0.0})

    def summary(self) -> str:
        return (f"re-scored {self.rescored + self.merged:,} of {self.total_generated:,} generated images in "
                f"{self.sets} set{'s' if self.sets != 1 else ''} ({self.changed + self.merged_changed:,} changed; "
                f"{self.merged:,} by merging the new images, {self.rescored:,} by a new search)")


def _gen_state(store: Store) -> dict:
    """Per generated point: set, id, quality, k, N, recall floor, n recalled, k-th distance."""
    rows = store.ledger.execute(
        """
        SELECT g.point_id, g.set_name, g.generated_id, g.quality, s.k, s.recall, g.recall_floor, g.n_recalled,
               coalesce(c.kth, 'Infinity'::DOUBLE), coalesce(c.n, 0)
        FROM generated_images g JOIN generated_sets s USING (set_name)
        LEFT JOIN (SELECT set_name, generated_id, max(distance) AS kth, count(*) AS n
                   FROM credits GROUP BY ALL) c USING (set_name, generated_id)
        """
    ).fetchall()
    out = {}
    for pid, set_name, gid, q, k, recall, floor, n_rec, kth, n in rows:
        out[pid] = {"set_name": set_name, "generated_id": gid, "quality": q, "k": k, "N": recall_size(store, k, recall),
                    "floor": floor, "n_recalled": n_rec, "kth": kth if n >= k else float("inf")}
    return out


def _better(a: float, b: float, metric: str) -> bool:
    """Is recall score a strictly better than b (cosine: higher; euclid: lower)?"""
    return a > b if metric == "cosine" else a < b


def _in_recall_sets(store: Store, x_recall: np.ndarray, state: dict) -> list[list]:
    """For each training vector, the generated points whose recall set it is in, or would
    enter: score at least as good as the point's floor (within float tolerance), or a
    recall set that is not full. One Qdrant search per vector over the generated
    collection, bounded by the loosest floor."""
    metric = store.embedder.metric
    full = {pid for pid, st in state.items() if st["n_recalled"] >= st["N"] and st["floor"] is not None}
    open_ = [pid for pid in state if pid not in full]
    out: list[list] = [[] for _ in x_recall]
    if full:
        floors = [state[p]["floor"] for p in full]
        thr = min(floors) - 1e-5 if metric == "cosine" else max(floors) + 1e-5
        hits = store.vectors.query(GENERATED, [Query({"recall": v}, using="recall", limit=len(state), score_threshold=thr)
                                               for v in x_recall])
        tol = 1e-5 if metric == "cosine" else -1e-5
        for row, h in zip(out, hits):
            row.extend(p for p, sc in h if p in full and not _better(state[p]["floor"] - tol, sc, metric)
                       or (p in full and sc == state[p]["floor"]))
    for row in out:
        row.extend(open_)  # recall sets that are not full take every new image
    return out


def _scores(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Qdrant scores between rows of a and b: cosine similarity or euclidean distance."""
    if metric == "cosine":
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        return np.einsum("ij,ij->i", a, b) / np.maximum(na * nb, 1e-12)
    return np.linalg.norm(a - b, axis=1)


def queue_for_new_training(store: Store, point_ids: list[int]) -> tuple[int, int, int]:
    """Bring generated images up to date with a batch of new training images.

    For each generated image j that some new images enter the recall set of, the new recall
    set is known exactly from j's stored recall scores and the new images' scores. If none
    of j's top-k drops out of it, the new top-k is the old one merged with the entering
    images that are closer than the k-th (nothing else can move in): applied here, without
    a search. Otherwise j is queued for a full re-score. Returns (merged, queued)."""
    state = _gen_state(store)
    if not state or not point_ids:
        return 0, 0, 0
    metric = store.embedder.metric
    x_recall = store.vectors.vectors(TRAINING, point_ids, "recall")
    entering: dict[str, list[int]] = defaultdict(list)
    for xi, row in enumerate(_in_recall_sets(store, x_recall, state)):
        for p in row:
            entering[p].append(xi)
    if not entering:
        return 0, 0, 0
    rr = store.reranker
    rv = rr.vector_embedder()
    if rv is None:
        # `none` (the recall set is the top-k) and image re-rankers: re-score what changed
        _enqueue(store, [state[p] for p in entering], "ingest")
        return 0, 0, len(entering)
    gids = list(entering)
    g_recall = dict(zip(gids, store.vectors.vectors(GENERATED, gids, "recall")))
    g_rerank = dict(zip(gids, store.vectors.vectors(GENERATED, gids, "rerank")))
    x_rerank = store.vectors.vectors(TRAINING, point_ids, "rerank")
    by_set: dict[str, list[str]] = defaultdict(list)
    for p in gids:
        by_set[state[p]["set_name"]].append(p)
    queued, merged, changed = [], 0, 0
    con = store.ledger
    for set_name, pids in by_set.items():
        old = stored_scored(con, set_name, [state[p]["generated_id"] for p in pids], with_recall=True)
        updates = []
        for p in pids:
            st, xs = state[p], entering[p]
            o = old[st["generated_id"]]
            sx = _scores(x_recall[xs], np.repeat(g_recall[p][None, :], len(xs), axis=0), metric)
            cosine = metric == "cosine"
            new_scores = np.sort(np.concatenate([o.recall_scores, sx]))
            new_scores = (new_scores[::-1] if cosine else new_scores)[: st["N"]]
            cut = new_scores[-1] if len(new_scores) >= st["N"] else None
            members = [o.recall_scores[r - 1] for r in o.recall_ranks]
            if cut is not None and any(not _better(m, cut, metric) for m in members):
                queued.append(st)  # a top-k member may leave the recall set (ties count): re-score
                continue
            keep = [i for i, v in enumerate(sx) if cut is None or not _better(cut, v, metric)]
            d = _pair_distance(store, x_rerank[[xs[i] for i in keep]],
                               np.repeat(g_rerank[p][None, :], len(keep), axis=0)) if keep else np.array([])
            cand = list(zip(o.contributors, o.distances, members))
            cand += [(contributor_of(point_ids[xs[i]]), float(di), float(sx[i])) for i, di in zip(keep, d)
                     if di <= st["kth"] + 1e-9]
            top = sorted(cand, key=lambda c: (c[1], c[0]))[: st["k"]]
            ranks = _ranks(new_scores, [c[2] for c in top], cosine)
            dist = [c[1] for c in top]
            updates.append(Scored(st["generated_id"], "", "", None, st["quality"], [c[0] for c in top], dist,
                                  credits(dist, st["quality"]).tolist(), ranks, new_scores))
        changed += _write_rescored(con, set_name, updates, old)
        merged += len(updates)
    _enqueue(store, queued, "ingest")
    return merged, changed, len(queued)


def _ranks(scores: list[float], values: list[float], descending: bool) -> list[int]:
    """1-based positions of `values` in a sorted score list (first equal entry)."""
    arr, v = np.asarray(scores), np.asarray(values)
    pos = np.searchsorted(-arr, -v, "left") if descending else np.searchsorted(arr, v, "left")
    return (pos + 1).tolist()


def _pair_distance(store: Store, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Re-rank distance between rows of a and b, as Qdrant scores it."""
    rv = store.reranker.vector_embedder()
    return np.array([store.reranker.distance_from_score(float(sc), rv.metric) for sc in _scores(a, b, rv.metric)])


def queue_for_removed_training(store: Store, point_ids: list[int], contributor_ids: list[str]) -> int:
    """Generated images whose recall set holds any of the images about to be removed."""
    state = _gen_state(store)
    if not state or not point_ids:
        return 0
    affected = set()
    x_recall = store.vectors.vectors(TRAINING, point_ids, "recall")
    for row in _in_recall_sets(store, x_recall, state):
        affected.update(row)
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


def stored_scored(con, set_name: str, generated_ids: list[str], with_recall: bool = False) -> dict[str, Scored]:
    rows = con.execute(
        "SELECT generated_id, contributor_id, distance, credit, recall_rank FROM credits "
        "WHERE set_name = ? AND generated_id IN (SELECT unnest(?)) ORDER BY generated_id, rank",
        [set_name, generated_ids]).fetchall()
    out: dict[str, Scored] = {}
    for gid, cid, d, c, rr in rows:
        s = out.setdefault(gid, Scored(gid, "", "", None, 0.0, [], [], [], [], []))
        s.contributors.append(cid)
        s.distances.append(d)
        s.credits.append(c)
        s.recall_ranks.append(rr)
    if with_recall:
        for gid, scores in con.execute(
                "SELECT generated_id, recall_scores FROM generated_images WHERE set_name = ? "
                "AND generated_id IN (SELECT unnest(?))", [set_name, generated_ids]).fetchall():
            out.setdefault(gid, Scored(gid, "", "", None, 0.0, [], [], [], [], [])).recall_scores = unpack_scores(scores)
    return out


def same_scores(a: Scored | None, b: Scored, tol: float = 1e-6) -> bool:
    """Same top-k, distances and credits up to float32 rounding (distances computed by Qdrant
    and by numpy from the same stored vectors differ in the 8th digit)."""
    if a is None:
        return not b.contributors
    return (a.contributors == b.contributors
            and np.allclose(a.distances, b.distances, atol=tol, rtol=0)
            and np.allclose(a.credits, b.credits, atol=10 * tol * max(1.0, b.quality), rtol=0))


def _write_rescored(con, set_name: str, fresh: list[Scored], old: dict[str, Scored]) -> int:
    """Replace the stored matches of generated images by fresh ones (inside the caller's
    transaction). Values move by difference, only where the top-k changed; returns how many
    changed."""
    if not fresh:
        return 0
    gids = [s.generated_id for s in fresh]
    changed = [s for s in fresh if not same_scores(old.get(s.generated_id), s)]
    changed_ids = {s.generated_id for s in changed}
    for s in fresh:
        if s.generated_id not in changed_ids and s.generated_id in old:
            # equal up to rounding: keep the stored numbers, so the running sums stay exact
            s.distances, s.credits = old[s.generated_id].distances, old[s.generated_id].credits
    add_sums(con, set_name, [old[s.generated_id] for s in changed if s.generated_id in old], sign=-1)
    add_sums(con, set_name, changed)
    # credit rows (recall ranks change even when the top-k does not) and recall sets, at once
    con.execute("DELETE FROM credits WHERE set_name = ? AND generated_id IN (SELECT unnest(?))", [set_name, gids])
    insert_credits(con, set_name, fresh)
    con.execute(
        "UPDATE generated_images g SET recall_floor = u.f, n_recalled = u.n, recall_scores = u.sc "
        "FROM (SELECT unnest(?) AS gid, unnest(?) AS f, unnest(?) AS n, unnest(?::BLOB[]) AS sc) u "
        "WHERE g.set_name = ? AND g.generated_id = u.gid",
        [gids, [s.recall_floor for s in fresh], [s.n_recalled for s in fresh], [pack_scores(s.recall_scores) for s in fresh], set_name])
    return len(changed)


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
                gids = [s.generated_id for s, _ in items]
                report.changed += _write_rescored(con, set_name, [s for s, _ in items], stored_scored(con, set_name, gids))
                con.execute("DELETE FROM refresh_queue WHERE set_name = ? AND generated_id IN (SELECT unnest(?))",
                            [set_name, gids])
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
                merged, changed, _ = queue_for_new_training(store, list(chunk))
                report.merged += merged
                report.merged_changed += changed
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
