"""Class-conditional MNIST generators, trained on CPU, seeded, cached on disk.

    from gmv_store.generators import GENERATORS, load_or_train
    gen = load_or_train("gmm", images, labels, cache_dir, seed=0, quick=False)
    fake = gen.sample(np.repeat(np.arange(10), 10), seed=1)   # uint8 (100, 28, 28)

`gmm` needs only numpy + scikit-learn; `vae` and `gan` need torch and import it
only when asked for. A trained model is cached under `cache_dir` by a key made of the name,
seed, quick flag, sha256 of the training data and the hyper-parameters; a matching cache file
is loaded instead of retraining.

No diffusion model: a small class-conditional DDPM (U-Net, 116k parameters, CFG) trained for
1,500 steps of 64 images (~20 min on the 2 shared CPU cores) still drew unreadable digits
(24% classifier accuracy), so it does not fit the CPU budget.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..errors import BadInput
from ..registry import Registry
from .base import Generator, check_images_labels, data_sha256

# Each module is imported on first use, so torch stays optional for `gmm`.
_GENERATORS: Registry[type[Generator]] = Registry("generator", error=BadInput)
_GENERATORS.declare("gmm", "gmv_store.generators.gmm:GMMGenerator")
_GENERATORS.declare("vae", "gmv_store.generators.vae:VAEGenerator")
_GENERATORS.declare("gan", "gmv_store.generators.gan:GANGenerator")
GENERATORS: tuple[str, ...] = tuple(_GENERATORS.names())
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("GMV_CACHE", Path.home() / ".cache" / "gmv-store")) / "generators"


def generator_class(name: str) -> type[Generator]:
    """BadInput for an unknown name; MissingDependency when its package (torch) is missing."""
    return _GENERATORS.get(name)


def cache_key(name: str, images: np.ndarray, labels: np.ndarray, seed: int = 0, quick: bool = False) -> str:
    cls = generator_class(name)
    payload = {"name": name, "seed": int(seed), "quick": bool(quick), "data": data_sha256(images, labels),
               "hparams": cls.hparams(quick), "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(name: str, images: np.ndarray, labels: np.ndarray, cache_dir: Path, seed: int = 0,
               quick: bool = False) -> Path:
    cls = generator_class(name)
    key = cache_key(name, images, labels, seed=seed, quick=quick)
    return Path(cache_dir) / f"{name}-{'quick-' if quick else ''}s{int(seed)}-{key[:20]}{cls.suffix}"


def load_or_train(name: str, images: np.ndarray, labels: np.ndarray, cache_dir: Path | str | None = None,
                  seed: int = 0, quick: bool = False) -> Generator:
    """Load the cached generator for (name, seed, quick, data, hparams) or train and cache it."""
    images, labels = check_images_labels(images, labels)
    cls = generator_class(name)
    path = cache_path(name, images, labels, Path(cache_dir) if cache_dir is not None else default_cache_dir(),
                      seed=seed, quick=quick)
    if path.is_file():
        try:
            return cls.load(path)
        except Exception:  # unreadable cache (older format, damaged disk): retrain and overwrite
            pass
    gen = cls.from_hparams(quick).fit(images, labels, seed=seed)
    gen.save(path)
    return gen


__all__ = ["GENERATORS", "Generator", "load_or_train", "generator_class", "cache_key", "cache_path",
           "default_cache_dir"]
