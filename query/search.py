"""The two-stage search of valuation: recall N candidates by the recall vector in Qdrant, then
keep the k closest by the re-rank distance — inside Qdrant (a search restricted to the
candidates' ids) when the distance has a stored vector, from the images otherwise.

One order, used by every path that ranks (valuation, refresh, verify): better score first,
then smaller id. Qdrant breaks ties its own way, so each search asks for a few more than it
keeps and, when a tie reaches past what came back, asks again for more; the cut is then
made in this order. Scores come from Qdrant on every path, so two paths never disagree by
float rounding.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from gmv_store.backends.base import ImageReranker, score_to_distance
from gmv_store.store import TRAINING, Store
from gmv_store.vectors import Hit, Query, VectorStore

from .matches import Match

TIE_MARGIN = 8  # extra hits asked for, so that a tie at the cut is usually seen whole


def contributor_of(point_id: int) -> str:
    """Training point ids are the first 16 hex digits of the sha256, which are the id."""
    return f"{point_id:016x}"


def recall_size(store: Store, k: int, recall: int) -> int:
    """How many candidates the recall stage keeps: N, or k when there is no re-ranking."""
    rr = store.reranker
    return max(recall, k) if (rr.vector_embedder() is not None or isinstance(rr, ImageReranker)) else k


def hit_order(metric: str) -> Callable[[Hit], tuple]:
    """Sort key of the one ranking order: better score first (cosine: higher similarity,
    euclid: smaller distance), then smaller id."""
    if metric == "cosine":
        return lambda h: (-h[1], h[0])
    return lambda h: (h[1], h[0])


def ranked(vectors: VectorStore, collection: str, queries: Sequence[Query], n: int, metric: str) -> list[list[Hit]]:
    """The first n hits of each query in `hit_order`, ties at the n-th place resolved by id."""
    if not queries:
        return []
    order = hit_order(metric)
    limit = n + TIE_MARGIN
    res = vectors.query(collection, [replace(q, limit=limit) for q in queries])
    out = []
    for q, hits in zip(queries, res):
        lim = limit
        while len(hits) >= lim and len(hits) > n and hits[n - 1][1] == hits[-1][1]:
            lim *= 2  # the tie at the cut may reach past what came back
            hits = vectors.query(collection, [replace(q, limit=lim)])[0]
        if len({s for _, s in hits}) < len(hits):
            hits = sorted(hits, key=order)  # Qdrant's order is the one order unless scores tie
        out.append(hits[:n])
    return out


def recall_ranks(hits: Sequence[Hit]) -> dict[int, int]:
    """Each hit's recall rank: 1 + how many hits have a strictly better score (ties share a
    rank, so the rank does not depend on how a tie was ordered)."""
    if len({s for _, s in hits}) == len(hits):  # no ties: the rank is the place
        return {pid: i for i, (pid, _) in enumerate(hits, start=1)}
    out, rank, prev = {}, 0, None
    for i, (pid, s) in enumerate(hits, start=1):
        if s != prev:
            rank, prev = i, s
        out[pid] = rank
    return out


def search(store: Store, vectors: dict[str, np.ndarray], k: int, recall: int, quality: Sequence[float], *,
           images: Sequence[np.ndarray] | None = None, collection: str = TRAINING,
           load_candidate: Callable[[int], np.ndarray] | None = None, exact: bool = False) -> list[Match]:
    """Top-k matches (with credits for the given qualities) for each row of the batch
    `vectors` (named vectors "recall", "rerank"). `exact`: no index, whatever the store has."""
    n = len(vectors["recall"])
    reranker = store.reranker
    metric = store.embedder.metric
    n_recall = recall_size(store, k, recall)
    opts = {"exact": True} if exact or collection != TRAINING else store.search_options(n_recall + TIE_MARGIN)
    first = ranked(store.vectors, collection,
                   [Query({"recall": vectors["recall"][i]}, using="recall", limit=n_recall, **opts) for i in range(n)],
                   n_recall, metric)
    rank_of = [recall_ranks(h) for h in first]
    rv = reranker.vector_embedder()
    if rv is not None:
        asked = [i for i in range(n) if rank_of[i]]
        second = ranked(store.vectors, collection,
                        [Query({"rerank": vectors["rerank"][i]}, using="rerank", limit=k, only_ids=tuple(rank_of[i]),
                               exact=True) for i in asked], k, rv.metric)
        by_i = dict(zip(asked, second))
        tops = [[(p, reranker.distance_from_score(s, rv.metric), rank_of[i][p]) for p, s in by_i.get(i, [])]
                for i in range(n)]
    elif isinstance(reranker, ImageReranker):
        tops = []
        for i, h in enumerate(first):
            ids = [p for p, _ in h]
            d = reranker.pairwise(images[i], [load_candidate(p) for p in ids]) if ids else []
            tops.append(sorted(((p, float(x), rank_of[i][p]) for p, x in zip(ids, d)), key=lambda t: (t[1], t[0]))[:k])
    else:
        tops = [[(p, score_to_distance(s, metric), rank_of[i][p]) for p, s in h] for i, h in enumerate(first)]
    return [Match.scored([(contributor_of(p), d, r) for p, d, r in t], [s for _, s in h], q)
            for t, h, q in zip(tops, first, quality)]
