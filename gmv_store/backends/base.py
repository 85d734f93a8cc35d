"""One small interface per pluggable stage. Backends are chosen by name from the registry.

Images reach every backend as a list of uint8 arrays of shape (H, W, C), C = 1 (grayscale)
or 3 (RGB), already decoded and validated by `gmv_store.images`. Each backend owns its
preprocessing (resize, colour, normalisation).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from ..errors import BadInput


class Backend:
    """A named stage with validated parameters.

    Subclasses declare `name`, `kind` and `defaults` (parameter -> default value). Unknown
    parameters are an error, never silently dropped.
    """

    kind: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    # No model, no weights, numpy on the CPU: cheap to build again in each decoding worker,
    # so ingest embeds there, beside the decoding, instead of in the process that writes.
    light: ClassVar[bool] = False

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise BadInput(
                f"{self.kind} '{self.name}': unknown parameter(s) {', '.join(unknown)}; valid: {valid}"
            )
        merged = dict(self.defaults)
        merged.update({k: v for k, v in params.items() if v is not None})
        self.params: dict[str, Any] = merged

    def weights_sha256(self) -> str | None:
        """Checksum of the weights in use, recorded in the store; None for weight-free backends."""
        return None

    def fingerprint(self) -> dict[str, Any]:
        """What the store records so that vectors from different weights never mix."""
        return {"name": self.name, "params": self.params, "weights_sha256": self.weights_sha256()}


class Embedder(Backend):
    """Maps images to fixed-size vectors compared by `metric` inside Qdrant."""

    kind: ClassVar[str] = "embedder"
    # "cosine", "euclid" or "dot"; a class value, except `precomputed` sets it per instance
    metric: str = "cosine"

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """list of (H, W, C) uint8 -> (n, dim) float32."""
        raise NotImplementedError


RerankKind = Literal["vector", "pairwise", "none"]


class Reranker(Backend):
    """The fine distance d_ij between a generated image and its recalled candidates.

    A reranker whose distance is a function of one vector per image returns that embedder
    from `vector_embedder()`: the vector is stored at ingest as the named vector "rerank",
    so re-ranking needs one forward per generated image and runs inside Qdrant
    (prefetch on "recall", re-score on "rerank"). `none` returns None and keeps the recall
    order and distance.
    """

    kind: ClassVar[str] = "rerank"

    def vector_embedder(self) -> Embedder | None:
        raise NotImplementedError

    def rerank_kind(self) -> RerankKind:
        """How d_ij is found, the one place the pipelines ask: "vector" (a stored re-rank
        vector, compared inside Qdrant), "pairwise" (from the images: an ImageReranker) or
        "none" (the recall order and distance are kept)."""
        return "none" if self.vector_embedder() is None else "vector"

    def distance_from_score(self, score: float, metric: str) -> float:
        """Turn a Qdrant score of the re-rank (or recall, for `none`) vector into d_ij >= 0."""
        return score_to_distance(score, metric)


class Quality(Backend):
    """No-reference quality q_j > 0 of generated images (higher is better)."""

    kind: ClassVar[str] = "quality"

    def prepare(self) -> None:
        """Import and load what scoring needs, ahead of the first batch (safe in a thread)."""

    def score(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """list of (H, W, C) uint8 -> (n,) float64, every value > 0."""
        raise NotImplementedError


def score_to_distance(score: float, metric: str) -> float:
    """Qdrant returns cosine *similarity* and euclidean *distance* as the score.

    1 - cosine is not clamped at 0: for near-identical vectors float rounding can put the
    similarity a hair above 1, and clamping would tie candidates whose scores differ, so the
    order by distance would no longer be the order by score (every ranking path relies on
    the two being one order)."""
    if metric == "cosine":
        return 1.0 - float(score)
    if metric == "euclid":
        return float(score)
    if metric == "dot":  # higher is better; d may be negative, which the credits' softmax allows
        return -float(score)
    raise ValueError(f"unknown metric {metric!r}")


def higher_is_better(metric: str) -> bool:
    """Qdrant scores: cosine and dot are similarities, euclid a distance."""
    return metric in ("cosine", "dot")


class ImageReranker(Reranker):
    """A re-rank distance computed from the images themselves (no stored vector).

    The valuation pipeline recalls N candidates by the recall vector, loads their pixels
    from their recorded sources and calls `pairwise` once per generated image.
    """

    def vector_embedder(self) -> Embedder | None:
        return None

    def rerank_kind(self) -> RerankKind:
        return "pairwise"

    def pairwise(self, generated: np.ndarray, candidates: Sequence[np.ndarray]) -> np.ndarray:
        """one (H, W, C) uint8 image, N candidate images -> (N,) float64 distances >= 0."""
        raise NotImplementedError
