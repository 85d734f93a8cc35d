"""`embedding` re-ranker: any registered embedder as a cosine re-rank distance.

d_ij = 1 - cosine(e(x_i), e(x̂_j)) with e the chosen embedder; the vector is stored at
ingest as the named vector "rerank", so re-ranking costs one forward per generated image.
Useful to recall with a cheap embedder and re-rank with a better one (the paper's Table 9
shows the re-rank distance matters more than the recall embedding).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import BadInput
from .base import Embedder, Reranker
from .registry import create


class CosineView(Embedder):
    """An embedder's vectors, unit-normalised and compared by cosine whatever its metric."""

    name = "embedding-view"
    metric = "cosine"
    defaults: ClassVar[dict[str, Any]] = {"embedder": "", "params": {}}

    def __init__(self, inner: Embedder):
        super().__init__(embedder=inner.name, params=inner.fingerprint()["params"])
        self.inner = inner

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = np.asarray(self.inner.embed(images), dtype=np.float32)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        out: np.ndarray = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
        return out

    def weights_sha256(self) -> str | None:
        return self.inner.weights_sha256()

    def fingerprint(self) -> dict[str, Any]:
        return {"name": f"embedding:{self.inner.name}", "params": self.inner.fingerprint()["params"],
                "weights_sha256": self.inner.weights_sha256()}


class EmbeddingReranker(Reranker):
    name = "embedding"
    description = (
        "1 - cosine of any registered embedder's vectors (params: embedder=NAME, "
        "params={...} or a JSON string), stored per image at ingest"
    )
    defaults: ClassVar[dict[str, Any]] = {"embedder": "effnet-lite0", "params": {}}

    def __init__(self, **params: Any):
        super().__init__(**params)
        inner_params = self.params["params"]
        if isinstance(inner_params, str):  # from a command line: params='{"arch": "ViT-B-16"}'
            try:
                inner_params = json.loads(inner_params or "{}")
            except ValueError as e:
                raise BadInput(f"rerank 'embedding': params={inner_params!r} is not JSON ({e})") from None
        if not isinstance(inner_params, dict):
            raise BadInput("rerank 'embedding': params must be an object of the embedder's parameters")
        name = self.params["embedder"]
        inner = create("embedder", name, inner_params)
        self._vector = CosineView(inner)
        # record the inner embedder's full parameters (defaults filled, runtime ones dropped)
        self.params["params"] = inner.fingerprint()["params"]

    def vector_embedder(self) -> CosineView:
        return self._vector

    def weights_sha256(self) -> str | None:
        return self._vector.weights_sha256()

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "params": {"embedder": self.params["embedder"], "params": self.params["params"]},
                "weights_sha256": self.weights_sha256()}
