"""The backends a store records, made again and checked to be the ones its vectors came from."""
from __future__ import annotations

from ..config import BackendSpec, StoreConfig, describe_backend
from ..errors import StoreMismatch
from . import registry


def make_backend(kind: str, spec: BackendSpec, device: str | None = None):
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
