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

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import cast

import numpy as np

from gmv_store.backends.base import ImageReranker, higher_is_better, score_to_distance
from gmv_store.ids import id_of_point
from gmv_store.store import TRAINING, Store
from gmv_store.vectors import Hit, Query, VectorStore

from .matches import Match
from .recall_lists import capacity, runners_up

TIE_MARGIN = 8  # extra hits asked for, so that a tie at the cut is usually seen whole


def contributor_of(point_id: int) -> str:
    """Training point ids are the first 16 hex digits of the sha256, which are the id."""
    return id_of_point(point_id)


def recall_size(store: Store, k: int, recall: int) -> int:
    """How many candidates the recall stage keeps: N, or k when there is no re-ranking."""
    rr = store.reranker
    return k if rr.rerank_kind() == "none" else max(recall, k)


def hit_order(metric: str) -> Callable[[Hit], tuple[float, int]]:
    """Sort key of the one ranking order: better score first (cosine: higher similarity,
    euclid: smaller distance), then smaller id."""
    if higher_is_better(metric):
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


def search(store: Store, vectors: dict[str, np.ndarray], k: int, recall: int, quality: Sequence[float] | np.ndarray, *,
           images: Sequence[np.ndarray] | None = None, collection: str = TRAINING,
           load_candidate: Callable[[int], np.ndarray] | None = None, exact: bool = False) -> list[Match]:
    """Top-k matches (with credits for the given qualities) for each row of the batch
    `vectors` (named vectors "recall", "rerank"). `exact`: no index, whatever the store has.

    The recall stage keeps a list longer than N — the N recalled candidates and a reserve
    (`recall_lists.capacity`) — so that refresh and forget can later bring the match up to
    date from the stored list; the top-k is chosen among the first N."""
    n = len(vectors["recall"])
    reranker = store.reranker
    metric = store.embedder.metric
    n_recall = recall_size(store, k, recall)
    cap = capacity(n_recall)
    opts = {"exact": True} if exact or collection != TRAINING else store.search_options(cap + 1 + TIE_MARGIN)
    # one more than kept: a list that came back full shows the collection holds more points
    # than the list, without an exact count (a pass over the ids: 0.1 s per batch at 1M)
    lists = ranked(store.vectors, collection,
                   [Query({"recall": vectors["recall"][i]}, using="recall", limit=cap + 1, **opts) for i in range(n)],
                   cap + 1, metric)
    total = store.vectors.count(collection) if any(len(h) <= cap for h in lists) else None
    lists = [h[:cap] for h in lists]  # the first cap of the first cap + 1 in the one order
    first = [h[:n_recall] for h in lists]
    kind, rv = reranker.rerank_kind(), reranker.vector_embedder()
    runners: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    every = [False] * n
    if kind == "vector" and rv is not None:
        # the k closest and the runners-up behind them, which refresh moves up when one of
        # the k leaves the recall set
        kr = k + runners_up(k)
        asked = [i for i in range(n) if first[i]]
        second = ranked(store.vectors, collection,
                        [Query({"rerank": vectors["rerank"][i]}, using="rerank", limit=kr,
                               only_ids=tuple(p for p, _ in first[i]), exact=True) for i in asked], kr, rv.metric)
        by_i = dict(zip(asked, second))
        both = [[(p, reranker.distance_from_score(s, rv.metric)) for p, s in by_i.get(i, [])] for i in range(n)]
        tops, runners = [b[:k] for b in both], [b[k:] for b in both]
        every = [len(b) < kr for b in both]
    elif kind == "pairwise":
        assert images is not None and load_candidate is not None, "a pairwise re-rank needs the images and candidates"
        pairwise = cast(ImageReranker, reranker).pairwise  # rerank_kind() said so
        tops = []
        for i, h in enumerate(first):
            ids = [p for p, _ in h]
            d = pairwise(images[i], [load_candidate(p) for p in ids]) if ids else np.zeros(0)
            tops.append(sorted(((p, float(x)) for p, x in zip(ids, d)), key=lambda t: (t[1], t[0]))[:k])
    else:
        tops = [[(p, score_to_distance(s, metric)) for p, s in h] for h in first]
    return [Match.scored([(contributor_of(p), d) for p, d in t], [p for p, _ in h], [s for _, s in h],
                         total is not None and len(h) >= total, q, runners=r, runners_all=a)
            for t, h, q, r, a in zip(tops, lists, quality, runners, every)]
