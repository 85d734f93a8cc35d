"""The small interface every class-conditional MNIST generator implements.

Images are uint8 (n, 28, 28); labels are integers in 0..9. `sample(labels, seed)` returns one
image per requested label, deterministic given the seed.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BadInput

if TYPE_CHECKING:
    import torch

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)


def check_images_labels(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise BadInput(f"generator: images must have shape (n, 28, 28), got {images.shape}; fix: pass MNIST-shaped images")
    if images.dtype != np.uint8:
        raise BadInput(f"generator: images must be uint8, got {images.dtype}; fix: convert to uint8 in 0..255")
    labels = check_labels(labels)
    if len(labels) != len(images):
        raise BadInput(f"generator: {len(images)} images but {len(labels)} labels; fix: pass one label per image")
    if len(images) == 0:
        raise BadInput("generator: no training images; fix: pass at least one image per class")
    return images, labels


def check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise BadInput(f"generator: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}; fix: pass ints 0..9")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise BadInput(f"generator: labels must lie in 0..9, got {labels.min()}..{labels.max()}; fix: pass MNIST class ids")
    return labels.astype(np.int64)


def data_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """Content hash of a training set (images bytes + labels bytes, both canonicalised)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file next to `path`, then rename it over `path`.

    An interrupted write leaves no (corrupt) file at `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float images in 0..255 scale -> uint8 (clipped, rounded)."""
    images: np.ndarray = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return images


class Generator:
    """Class-conditional image generator. Subclasses set `name` and `suffix` (cache file ending)."""

    name: str = ""
    suffix: str = ".bin"

    @classmethod
    def hparams(cls, quick: bool = False) -> dict[str, Any]:
        """Hyper-parameters that define the trained model (part of the cache key)."""
        return {}

    @classmethod
    def from_hparams(cls, quick: bool = False) -> Generator:
        return cls(**cls.hparams(quick))

    def fit(self, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> Generator:
        raise NotImplementedError

    def sample(self, labels: np.ndarray, seed: int = 0) -> np.ndarray:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, path: Path) -> Generator:
        raise NotImplementedError


class TorchGenerator(Generator):
    """Shared plumbing for the torch generators (torch is imported inside methods only).

    Subclasses define `FULL` and `QUICK` hyper-parameter dicts, `build()` (returns the
    nn.Module kept in `self.net`), `_train(x, y)` (x float (n,1,28,28) in 0..1, y int64) and
    `_sample(y, gen)` (returns float images in 0..1, shape (m,1,28,28)).
    """

    suffix = ".pt"
    FULL: dict[str, Any] = {}
    QUICK: dict[str, Any] = {}

    def __init__(self, **hp: Any) -> None:
        self.hp = {**self.FULL, **hp}
        self.net: Any = None  # the torch nn.Module once trained or loaded
        self.train_seconds: float | None = None

    @classmethod
    def hparams(cls, quick: bool = False) -> dict[str, Any]:
        return dict(cls.QUICK if quick else cls.FULL)

    @classmethod
    def from_hparams(cls, quick: bool = False) -> TorchGenerator:
        return cls(**cls.hparams(quick))

    def build(self) -> Any:
        """A new, untrained torch nn.Module."""
        raise NotImplementedError

    def _train(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _sample(self, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def fit(self, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> TorchGenerator:
        import time

        import torch

        images, labels = check_images_labels(images, labels)
        torch.manual_seed(seed)
        self.net = self.build()
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        y = torch.from_numpy(labels)
        t0 = time.perf_counter()
        self.net.train()
        self._train(x, y, np.random.default_rng(seed))
        self.net.eval()
        self.train_seconds = time.perf_counter() - t0
        return self

    def sample(self, labels: np.ndarray, seed: int = 0, batch_size: int = 500) -> np.ndarray:
        import torch

        if self.net is None:
            raise BadInput(f"{self.name}: generator is not trained; fix: call fit() or load_or_train()")
        labels = check_labels(labels)
        gen = torch.Generator().manual_seed(int(seed))
        out: list[np.ndarray] = []
        self.net.eval()
        with torch.inference_mode():
            for i in range(0, len(labels), batch_size):
                y = torch.from_numpy(labels[i:i + batch_size])
                out.append(self._sample(y, gen).reshape(-1, 28, 28).clamp(0, 1).mul(255.0).numpy())
        if not out:
            return np.zeros((0, 28, 28), dtype=np.uint8)
        return to_uint8(np.concatenate(out))

    def save(self, path: Path) -> None:
        import torch

        blob = {"name": self.name, "hparams": self.hp, "train_seconds": self.train_seconds,
                "state_dict": self.net.state_dict()}
        atomic_write(Path(path), lambda tmp: torch.save(blob, tmp))

    @classmethod
    def load(cls, path: Path) -> TorchGenerator:
        import torch

        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
        if blob.get("name") != cls.name:
            raise BadInput(f"{path}: holds a '{blob.get('name')}' model, not '{cls.name}'; fix: delete the cache file")
        g = cls(**blob["hparams"])
        g.net = g.build()
        g.net.load_state_dict(blob["state_dict"])
        g.net.eval()
        g.train_seconds = blob.get("train_seconds")
        return g
