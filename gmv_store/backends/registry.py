"""Backends by (kind, name). Modules register their classes with `@register`; heavy
libraries (torch, open_clip, ...) are imported inside the backends, never here."""
from __future__ import annotations

import importlib
from typing import Any

from ..errors import UnknownBackend
from .base import Backend

KINDS = ("embedder", "rerank", "quality")
_REGISTRY: dict[str, dict[str, type[Backend]]] = {k: {} for k in KINDS}
# Modules whose import registers backends; each must import without torch.
_MODULES = (
    "gmv_store.backends.pixels",
    "gmv_store.backends.effnet",
    "gmv_store.backends.clip",
    "gmv_store.backends.dreamsim_backend",
    "gmv_store.backends.lpips_backend",
    "gmv_store.backends.embedding_rerank",
    "gmv_store.backends.iqa",
)
_loaded = False


def register(cls: type[Backend]) -> type[Backend]:
    _REGISTRY[cls.kind][cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _MODULES:
            importlib.import_module(mod)


def available(kind: str) -> dict[str, type[Backend]]:
    _load()
    return dict(sorted(_REGISTRY[kind].items()))


def backend_class(kind: str, name: str) -> type[Backend]:
    options = available(kind)
    if name not in options:
        raise UnknownBackend(
            f"unknown {kind} '{name}'; choose one of: {', '.join(options)} (see `gmv backends`)"
        )
    return options[name]


def create(kind: str, name: str, params: dict[str, Any] | None = None) -> Backend:
    return backend_class(kind, name)(**(params or {}))
