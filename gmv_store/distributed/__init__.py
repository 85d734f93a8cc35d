"""Compute past one machine: the input stage and the model forwards as Ray Data stages
(`--ray ADDRESS`), results streamed back to the one writer. docs/scale-out.md.

    from gmv_store.distributed import RaySettings, ray_batches
    for batch in ray_batches(paths, options, 512, report, RaySettings("local"), specs):
        ...  # lists of Decoded with .vectors (and .quality) filled, in input order

Nothing here imports ray at module import time (settings.py never does): the core installs
without it, and only a command given --ray pays for it.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .settings import ClusterError, RaySettings, ray_settings

if TYPE_CHECKING:
    from ..sources.items import Decoded, InputOptions, InputReport
    from ..store import Store

__all__ = ["ClusterError", "RaySettings", "ray_batches", "ray_settings", "store_batches"]


def ray_batches(*args: Any, **kwargs: Any) -> Iterator[list[Decoded]]:
    """See `pipeline.ray_batches` (imported on first use: it imports ray)."""
    from .pipeline import ray_batches as run

    return run(*args, **kwargs)


def store_batches(store: Store, paths: list[str], options: InputOptions | None, batch_size: int, report: InputReport,
                  settings: RaySettings, with_quality: bool = False) -> Iterator[list[Decoded]]:
    """`ray_batches` with a store's recorded backends (the weights its vectors were made with)
    and its `device`, as the pipelines call it."""
    specs = {"embedder": store.config.embedder, "rerank": store.config.rerank, "quality": store.config.quality}
    return ray_batches(paths, options, batch_size, report, settings, specs, with_quality, device=store.device)
