"""Backends by (kind, name): one registry per kind, each backend declared as "module:Class".

A backend's module is imported on its first lookup; heavy libraries (torch, open_clip, ...)
are imported inside the backends when they run, never here, so listing and checking names
stays cheap and works without torch.
"""
from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import Backend

KINDS = ("embedder", "rerank", "quality")
_HINT = " (see `gmv backends`)"
EMBEDDERS: Registry[type[Backend]] = Registry("embedder", hint=_HINT)
RERANKERS: Registry[type[Backend]] = Registry("rerank", hint=_HINT)
QUALITY: Registry[type[Backend]] = Registry("quality", hint=_HINT)
REGISTRIES = dict(zip(KINDS, (EMBEDDERS, RERANKERS, QUALITY)))

# In alphabetical order within a kind: the order `gmv backends` and error messages list them.
EMBEDDERS.declare("clip", "gmv_store.backends.clip:ClipEmbedder")
EMBEDDERS.declare("dreamsim", "gmv_store.backends.dreamsim_backend:DreamSimEmbedder")
EMBEDDERS.declare("effnet-lite0", "gmv_store.backends.effnet:EffNetLite0Embedder")
EMBEDDERS.declare("pixels", "gmv_store.backends.pixels:PixelsEmbedder")
EMBEDDERS.declare("precomputed", "gmv_store.backends.precomputed:PrecomputedEmbedder")
RERANKERS.declare("dreamsim", "gmv_store.backends.dreamsim_backend:DreamSimReranker")
RERANKERS.declare("embedding", "gmv_store.backends.embedding_rerank:EmbeddingReranker")
RERANKERS.declare("l2", "gmv_store.backends.pixels:L2Reranker")
RERANKERS.declare("lpips", "gmv_store.backends.lpips_backend:LPIPSReranker")
RERANKERS.declare("none", "gmv_store.backends.pixels:NoRerank")
QUALITY.declare("brisque", "gmv_store.backends.brisque:BrisqueQuality")
QUALITY.declare("maniqa", "gmv_store.backends.maniqa:ManiqaQuality")
QUALITY.declare("niqe", "gmv_store.backends.niqe:NiqeQuality")
QUALITY.declare("none", "gmv_store.backends.pixels:NoQuality")
QUALITY.declare("piqe", "gmv_store.backends.piqe:PiqeQuality")


def available(kind: str) -> dict[str, type[Backend]]:
    """name -> class of every backend of `kind` (imports their modules, not torch)."""
    return dict(REGISTRIES[kind].items())


def backend_class(kind: str, name: str) -> type[Backend]:
    return REGISTRIES[kind].get(name)


def create(kind: str, name: str, params: dict[str, Any] | None = None) -> Backend:
    return backend_class(kind, name)(**(params or {}))
