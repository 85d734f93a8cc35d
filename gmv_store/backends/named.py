"""The named vectors a store keeps per image — "recall", and "rerank" when the re-ranker has
a vector — computed here or, for light models, in the decoding workers."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import registry
from .base import Embedder, Reranker

if TYPE_CHECKING:
    from ..sources.items import Decoded


def embed_named(embedder: Embedder, reranker: Reranker, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Every stored named vector for a batch of images: one forward per model."""
    out = {"recall": embedder.embed(images)}
    rv = reranker.vector_embedder()
    if rv is not None:
        # the same model for both stages (e.g. dreamsim + dreamsim): one forward, not two
        same = rv.fingerprint() == embedder.fingerprint() and type(rv) is type(embedder)
        out["rerank"] = out["recall"] if same else rv.embed(images)
    return out


def batch_vectors(batch: Sequence[Decoded], embed: Callable[[list[np.ndarray]], dict[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
    """The named vectors of a batch of decoded images: those its decoding workers computed
    (`Decoded.vectors`), else `embed(pixels)` here (the first items are decoded here)."""
    have = [d.vectors for d in batch if d.vectors is not None]
    if len(have) == len(batch):
        return {name: _matrix([v[name] for v in have]) for name in have[0]}
    return embed([d.pixels for d in batch])


def _matrix(rows: list[np.ndarray]) -> np.ndarray:
    """The rows (all one shape) as one matrix: one concatenation in C, where `np.stack`
    expands each row in Python (2.6x slower for 2,048 rows of 768)."""
    shapes = {r.shape for r in rows}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        return np.stack(rows)  # says what is wrong with them
    out: np.ndarray = np.concatenate(rows).reshape(len(rows), -1)
    return out


_BUILT: dict[str, tuple[Embedder, Reranker]] = {}  # per worker process: backends built once


@dataclass(frozen=True)
class WorkerEmbedding:
    """`embed_named` in another process: it pickles as names and parameters, and builds the
    backends there on first use."""

    embedder: tuple[str, dict[str, Any]]
    rerank: tuple[str, dict[str, Any]]

    def __call__(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        key = json.dumps([self.embedder, self.rerank], sort_keys=True, default=str)
        if key not in _BUILT:
            _BUILT[key] = (registry.create("embedder", *self.embedder), registry.create("rerank", *self.rerank))
        return embed_named(*_BUILT[key], images)


def worker_embedding(embedder: Embedder, reranker: Reranker) -> WorkerEmbedding | None:
    """A picklable embedding for decoding workers when every model involved is light (no
    weights, numpy on the CPU); None otherwise: a torch model stays in one process, batched
    (and on the GPU when there is one)."""
    rv = reranker.vector_embedder()
    if not (embedder.light and reranker.light and (rv is None or rv.light)):
        return None
    return WorkerEmbedding((embedder.name, dict(embedder.params)), (reranker.name, dict(reranker.params)))
