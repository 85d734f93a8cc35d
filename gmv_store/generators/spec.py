"""How to retrain the generator of a set: its kind, hyper-parameters, seed and training data.

A set valued from images a project generator drew (the demo's, the recipe's) carries the spec
in each generated image's metadata under `generator`, so it travels with the images into the
ledger and the vector payloads (`gmv repair` rebuilds it from those):

    meta = {"generator": generator_spec("gmm", images, labels, seed=0, owners=["mnist"])}
    value(store, paths, "demo-gmm-k50", meta=meta)

The training data is named by a selector over the store's training images (`owners`, or
every image when None) and pinned by a hash of their contributor ids, so a retraining can
prove it uses exactly the images the generator saw (the counterfactual checks refuse a store
whose images under the selector differ).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..images import content_sha256
from . import generator_class
from .base import Generator, check_images_labels

SPEC_KEY = "generator"
SPEC_VERSION = 1


def contributor_ids(images: np.ndarray) -> list[str]:
    """The store's contributor id of each (n, 28, 28) uint8 image: the first 16 hex digits of
    the sha256 of its canonical (H, W, 1) pixels."""
    return [content_sha256(np.ascontiguousarray(img[:, :, None]))[:16] for img in images]


def ids_sha256(ids: Iterable[str]) -> str:
    """Order-free fingerprint of a training set: sha256 over its sorted unique contributor ids."""
    return hashlib.sha256("\n".join(sorted(set(ids))).encode()).hexdigest()


def generator_spec(kind: str, images: np.ndarray, labels: np.ndarray, *, seed: int, quick: bool = False,
                   owners: Sequence[str] | None = None, hparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """The spec of a generator of `kind` fit on (images, labels) with `seed`. `owners`: the store
    owners whose training images are exactly that data (None: every training image)."""
    images, labels = check_images_labels(images, labels)
    cls = generator_class(kind)
    ids = contributor_ids(images)
    return {"version": SPEC_VERSION, "kind": kind, "quick": bool(quick), "seed": int(seed),
            "hparams": dict(hparams if hparams is not None else cls.hparams(quick)),
            "train": {"owners": sorted(owners) if owners is not None else None, "n": len(set(ids)),
                      "ids_sha256": ids_sha256(ids)}}


def generator_meta(kind: str, images: np.ndarray, labels: np.ndarray, *, seed: int, quick: bool = False,
                   owners: Sequence[str] | None = None, hparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """`meta` for `query.value.value`: {"generator": generator_spec(...)}."""
    return {SPEC_KEY: generator_spec(kind, images, labels, seed=seed, quick=quick, owners=owners, hparams=hparams)}


def build_generator(kind: str, hparams: dict[str, Any]) -> Generator:
    """An untrained generator of `kind` with the recorded hyper-parameters (keys that are not
    constructor arguments, such as the GMM's EM revision tag, are dropped)."""
    import inspect

    cls = generator_class(kind)
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return cls(**hparams)
    return cls(**{k: v for k, v in hparams.items() if k in params})
