"""Weight-free backends: pixel vectors for recall and pixel-space l2 re-ranking, no quality."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import BadInput
from ..images import resize_batch
from .base import Embedder, Quality, Reranker

_COLORS = ("gray", "rgb")


def _check_pixel_params(owner: str, params: dict[str, Any]) -> None:
    size = params["size"]
    if not isinstance(size, int) or not 4 <= size <= 512:
        raise BadInput(f"{owner}: size={size!r} must be an integer in 4..512")
    if params["color"] not in _COLORS:
        raise BadInput(f"{owner}: color={params['color']!r} must be one of {', '.join(_COLORS)}")


def pixel_matrix(images: Sequence[np.ndarray], size: int, color: str) -> np.ndarray:
    """(n, size*size*channels) float32 in [0, 1]."""
    return resize_batch(images, size, color).reshape(len(images), -1)


class PixelsEmbedder(Embedder):
    """Resized pixels, mean-centred and unit-normalised (cosine = pixel correlation)."""

    name = "pixels"
    description = "resized pixel vector, mean-centred, unit norm; cosine"
    defaults = {"size": 16, "color": "gray"}
    metric = "cosine"
    light = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        _check_pixel_params("embedder 'pixels'", self.params)

    @property
    def dim(self) -> int:
        dim: int = self.params["size"] ** 2 * (1 if self.params["color"] == "gray" else 3)
        return dim

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = pixel_matrix(images, self.params["size"], self.params["color"])
        x = x - x.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        # A flat image has no direction; leave it as zeros rather than dividing by 0.
        vectors: np.ndarray = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
        return vectors


class PixelL2Vector(Embedder):
    """Pixels scaled by 1/sqrt(D): Qdrant's euclidean distance between two such vectors is
    the root-mean-square pixel difference, in [0, 1] whatever the size."""

    name = "l2-pixels"
    defaults = {"size": 32, "color": "gray"}
    metric = "euclid"
    light = True

    @property
    def dim(self) -> int:
        dim: int = self.params["size"] ** 2 * (1 if self.params["color"] == "gray" else 3)
        return dim

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = pixel_matrix(images, self.params["size"], self.params["color"])
        vectors: np.ndarray = x / np.float32(np.sqrt(x.shape[1]))
        return vectors


class L2Reranker(Reranker):
    name = "l2"
    description = "root-mean-square pixel difference after resizing; computed inside Qdrant"
    defaults = {"size": 32, "color": "gray"}
    light = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        _check_pixel_params("rerank 'l2'", self.params)
        self._vector = PixelL2Vector(**self.params)

    def vector_embedder(self) -> PixelL2Vector:
        return self._vector


class NoRerank(Reranker):
    name = "none"
    description = "keep the recall order; d = the recall distance (1 - cosine, or euclidean)"
    defaults = {}
    light = True

    def vector_embedder(self) -> None:
        return None


class NoQuality(Quality):
    name = "none"
    description = "q = 1 for every generated image (no quality calibration)"
    defaults = {}

    def score(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.ones(len(images), dtype=np.float64)
