"""The backends a store records, made again and checked to be the ones its vectors came from."""
from __future__ import annotations

from typing import Any, Literal, overload

from ..config import BackendSpec, StoreConfig, describe_backend
from ..errors import StoreMismatch
from . import registry
from .base import Backend, Embedder, Quality, Reranker


@overload
def make_backend(kind: Literal["embedder"], spec: BackendSpec, device: str | None = None) -> Embedder: ...
@overload
def make_backend(kind: Literal["rerank"], spec: BackendSpec, device: str | None = None) -> Reranker: ...
@overload
def make_backend(kind: Literal["quality"], spec: BackendSpec, device: str | None = None) -> Quality: ...
@overload  # a kind known only at run time (the web's warm-up loops over the three): the caller knows
def make_backend(kind: str, spec: BackendSpec, device: str | None = None) -> Any: ...
def make_backend(kind: str, spec: BackendSpec, device: str | None = None) -> Backend:
    """The backend a store records, checked to load the same weights its vectors were made
    with (StoreMismatch otherwise); `device` where the backend takes one."""
    params = dict(spec.params)
    if device and "device" in registry.backend_class(kind, spec.name).defaults:
        params["device"] = device
    backend = registry.create(kind, spec.name, params)
    have = BackendSpec(**backend.fingerprint())
    if have != spec:
        raise StoreMismatch(
            f"{kind} '{spec.name}' now loads weights {have.weights_sha256} but the store's vectors were made "
            f"with {spec.weights_sha256}; fix: restore those weights or use a new store"
        )
    return backend


def backend_summary(config: StoreConfig) -> str:
    return (
        f"embedder {describe_backend(config.embedder)}, rerank {describe_backend(config.rerank)}, "
        f"quality {describe_backend(config.quality)}"
    )
