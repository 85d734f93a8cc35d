"""Steps 1-2 of valuation: recall N candidates by the recall vector in Qdrant, then keep the
k closest by the re-rank distance — inside Qdrant (a search restricted to the candidates'
ids) when the distance has a stored vector, locally from the images otherwise.

Besides the top-k, each match records what incremental refresh needs to decide, without
re-scoring, whether a change to the training set can alter it: every contributor's rank in
the recall stage, the recall score of the last candidate ("floor") and how many were
recalled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from gmv_store.backends.base import ImageReranker, score_to_distance
from gmv_store.store import TRAINING, Store
from gmv_store.vectors import Query


@dataclass
class Match:
    top: list[tuple[int, float, int]]  # (point id, distance d_ij, recall rank), closest first
    recall_scores: list[float]         # Qdrant recall scores of all recalled candidates, best first

    @property
    def recall_floor(self) -> float | None:
        return self.recall_scores[-1] if self.recall_scores else None

    @property
    def n_recalled(self) -> int:
        return len(self.recall_scores)

    @property
    def ids(self) -> list[int]:
        return [p for p, _, _ in self.top]

    @property
    def distances(self) -> list[float]:
        return [d for _, d, _ in self.top]


def contributor_of(point_id: int) -> str:
    """Training point ids are the first 16 hex digits of the sha256, which are the id."""
    return f"{point_id:016x}"


def recall_size(store: Store, k: int, recall: int) -> int:
    """How many candidates the recall stage keeps: N, or k when there is no re-ranking."""
    rr = store.reranker
    return max(recall, k) if (rr.vector_embedder() is not None or isinstance(rr, ImageReranker)) else k


def _ordered(triples, k: int):
    # Ties broken by id so that a recompute reproduces the same top-k.
    return sorted(triples, key=lambda t: (t[1], t[0]))[:k]


def match(store: Store, vectors: dict[str, np.ndarray], k: int, recall: int, *,
          images: Sequence[np.ndarray] | None = None, collection: str = TRAINING,
          load_candidate: Callable[[str], np.ndarray] | None = None) -> list[Match]:
    """Top-k matches for each row of the batch `vectors` (named vectors "recall", "rerank")."""
    n = len(vectors["recall"])
    reranker = store.reranker
    n_recall = recall_size(store, k, recall)
    first = store.vectors.query(collection, [Query({"recall": vectors["recall"][i]}, using="recall", limit=n_recall)
                                             for i in range(n)])
    rank_of = [{pid: r for r, (pid, _) in enumerate(h, start=1)} for h in first]
    rv = reranker.vector_embedder()
    if rv is not None:
        second = store.vectors.query(collection, [
            Query({"rerank": vectors["rerank"][i]}, using="rerank", limit=k, only_ids=tuple(rank_of[i]))
            for i in range(n) if rank_of[i]])
        it = iter(second)
        tops = []
        for i in range(n):
            hits = next(it) if rank_of[i] else []
            tops.append(_ordered([(p, reranker.distance_from_score(s, rv.metric), rank_of[i][p]) for p, s in hits], k))
    elif isinstance(reranker, ImageReranker):
        tops = []
        for i, h in enumerate(first):
            ids = [p for p, _ in h]
            d = reranker.pairwise(images[i], [load_candidate(p) for p in ids]) if ids else []
            tops.append(_ordered([(p, float(x), rank_of[i][p]) for p, x in zip(ids, d)], k))
    else:
        metric = store.embedder.metric
        tops = [_ordered([(p, score_to_distance(s, metric), r) for r, (p, s) in enumerate(h, start=1)], k)
                for h in first]
    return [Match(t, [sc for _, sc in h]) for t, h in zip(tops, first)]
