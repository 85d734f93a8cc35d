"""Step 1-2 of valuation: recall N candidates by the recall vector in Qdrant and keep the
k closest by the re-rank distance (inside Qdrant when the distance has a stored vector,
locally from the images otherwise)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from gmv_store.backends.base import ImageReranker, score_to_distance
from gmv_store.store import TRAINING, Store
from gmv_store.vectors import Query

Match = list[tuple[str, float]]  # [(point id, distance d_ij)], closest first


def contributor_of(point_id: str) -> str:
    """Point ids are UUIDs made from the sha256, whose first 16 hex digits are the id."""
    return point_id.replace("-", "")[:16]


def _ordered(pairs: Match, k: int) -> Match:
    # Ties broken by id so a recompute reproduces the same top-k.
    return sorted(pairs, key=lambda p: (p[1], p[0]))[:k]


def match(store: Store, vectors: dict[str, np.ndarray], k: int, recall: int, *,
          images: Sequence[np.ndarray] | None = None, collection: str = TRAINING,
          exclude_ids: Sequence[str] = (), load_candidate: Callable[[str], np.ndarray] | None = None) -> list[Match]:
    """Top-k (point id, distance) for each row of the batch `vectors`."""
    n = len(vectors["recall"])
    reranker = store.reranker
    emb_metric = store.embedder.metric
    excl = tuple(exclude_ids)
    if reranker.vector_embedder() is not None:
        metric = reranker.vector_embedder().metric
        qs = [Query({"recall": vectors["recall"][i], "rerank": vectors["rerank"][i]}, using="rerank", limit=k,
                    prefetch_using="recall", prefetch_limit=max(recall, k), exclude_ids=excl) for i in range(n)]
        hits = store.vectors.query(collection, qs)
        return [_ordered([(pid, reranker.distance_from_score(s, metric)) for pid, s in h], k) for h in hits]
    if isinstance(reranker, ImageReranker):
        qs = [Query({"recall": vectors["recall"][i]}, using="recall", limit=max(recall, k), exclude_ids=excl) for i in range(n)]
        hits = store.vectors.query(collection, qs)
        out = []
        for i, h in enumerate(hits):
            ids = [pid for pid, _ in h]
            if not ids:
                out.append([])
                continue
            d = reranker.pairwise(images[i], [load_candidate(pid) for pid in ids])
            out.append(_ordered(list(zip(ids, map(float, d))), k))
        return out
    qs = [Query({"recall": vectors["recall"][i]}, using="recall", limit=k, exclude_ids=excl) for i in range(n)]
    hits = store.vectors.query(collection, qs)
    return [_ordered([(pid, score_to_distance(s, emb_metric)) for pid, s in h], k) for h in hits]
