"""`precomputed` embedder: a store whose recall vectors come with the data (`gmv ingest
--vectors`), e.g. the CLIP embeddings LAION publishes or clip-retrieval's `inference` writes.

It records the vectors' size, their distance and, as free text, the model that made them;
it embeds nothing: an image given without its vector is refused in one line.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import BadInput
from .base import Embedder

DISTANCES = {"cosine": "cosine", "l2": "euclid", "dot": "dot"}  # the user's word -> the engine's metric


class PrecomputedEmbedder(Embedder):
    name = "precomputed"
    description = ("recall vectors supplied with the data (gmv ingest --vectors); params dim (required), "
                   "distance cosine|l2|dot [cosine], name (free text, e.g. ViT-L-14/laion2b)")
    defaults: ClassVar[dict[str, Any]] = {"dim": None, "distance": "cosine", "name": ""}

    def __init__(self, **params: Any):
        super().__init__(**params)
        dim, distance = self.params["dim"], self.params["distance"]
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 65_536:
            raise BadInput(f"embedder 'precomputed': dim={dim!r}; fix: give the vectors' size, "
                           "e.g. -p embedder.dim=768")
        if distance not in DISTANCES:
            raise BadInput(f"embedder 'precomputed': distance={distance!r}; fix: choose one of {', '.join(DISTANCES)}")
        if not isinstance(self.params["name"], str):
            self.params["name"] = str(self.params["name"])
        self.metric = DISTANCES[distance]

    @property
    def dim(self) -> int:
        return int(self.params["dim"])

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        raise BadInput("this store's recall vectors come with the data (embedder 'precomputed'), so images cannot "
                       "be embedded; fix: pass their vectors with --vectors PATH (docs/precomputed.md)")
