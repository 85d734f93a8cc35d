"""A small CNN trained on real MNIST, used to check that generated samples show their class.

    from gmv_store.generators.classifier import load_or_train_classifier, accuracy_on
    clf = load_or_train_classifier(images, labels, cache_dir)        # cached like the generators
    clf.accuracy_on(fake_images, conditioning_labels)                # fraction labelled as asked
    accuracy_on(fake_images, conditioning_labels)                    # same, with mnist:train default

torch is imported inside functions only.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInput
from .base import atomic_write, check_images_labels, check_labels, data_sha256

CACHE_VERSION = 1


def _net() -> Any:  # a torch.nn.Sequential
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),          # 14x14
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),         # 7x7
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(128, 10),
    )


def _to_tensor(images: np.ndarray) -> Any:  # a torch.Tensor
    import torch

    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).div_(255.0).unsqueeze(1)


class MnistClassifier:
    def __init__(self, epochs: int = 3, batch_size: int = 128, lr: float = 1e-3):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.net: Any = None  # the torch network once trained or loaded
        self.train_seconds: float | None = None

    @staticmethod
    def hparams(quick: bool = False) -> dict[str, Any]:
        return {"epochs": 2 if quick else 3, "batch_size": 128, "lr": 1e-3}

    def fit(self, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> MnistClassifier:
        import torch
        import torch.nn.functional as F

        images, labels = check_images_labels(images, labels)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.net = _net()
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        x, y = _to_tensor(images), torch.from_numpy(labels)
        t0 = time.perf_counter()
        self.net.train()
        for _ in range(self.epochs):
            order = torch.from_numpy(rng.permutation(len(x)))
            for i in range(0, len(x), self.batch_size):
                idx = order[i:i + self.batch_size]
                loss = F.cross_entropy(self.net(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
                opt.step()
        self.net.eval()
        self.train_seconds = time.perf_counter() - t0
        return self

    def _trained(self) -> Any:
        if self.net is None:
            raise BadInput("classifier: not trained; fix: call fit() or load_or_train_classifier()")
        return self.net

    def predict(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        import torch

        net = self._trained()
        images = np.asarray(images)
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                out.append(net(_to_tensor(images[i:i + batch_size])).argmax(1).numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def accuracy_on(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of images the classifier labels as the given (conditioning) class."""
        labels = check_labels(labels)
        if len(labels) == 0:
            return float("nan")
        return float((self.predict(images) == labels).mean())

    def save(self, path: Path) -> None:
        import torch

        blob = {"hparams": {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr},
                "train_seconds": self.train_seconds, "state_dict": self._trained().state_dict()}
        atomic_write(Path(path), lambda tmp: torch.save(blob, tmp))

    @classmethod
    def load(cls, path: Path) -> MnistClassifier:
        import torch

        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
        clf = cls(**blob["hparams"])
        clf.net = _net()
        clf.net.load_state_dict(blob["state_dict"])
        clf.net.eval()
        clf.train_seconds = blob.get("train_seconds")
        return clf


def classifier_cache_path(images: np.ndarray, labels: np.ndarray, cache_dir: Path, seed: int = 0,
                          quick: bool = False) -> Path:
    payload = {"name": "classifier", "seed": int(seed), "quick": bool(quick), "data": data_sha256(images, labels),
               "hparams": MnistClassifier.hparams(quick), "version": CACHE_VERSION}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return Path(cache_dir) / f"classifier-{'quick-' if quick else ''}s{int(seed)}-{key[:20]}.pt"


def load_or_train_classifier(images: np.ndarray, labels: np.ndarray, cache_dir: Path | str | None = None, seed: int = 0,
                             quick: bool = False) -> MnistClassifier:
    from . import default_cache_dir

    images, labels = check_images_labels(images, labels)
    path = classifier_cache_path(images, labels, Path(cache_dir) if cache_dir is not None else default_cache_dir(),
                                 seed=seed, quick=quick)
    if path.is_file():
        try:
            return MnistClassifier.load(path)
        except Exception:  # unreadable cache: retrain and overwrite
            pass
    clf = MnistClassifier(**MnistClassifier.hparams(quick)).fit(images, labels, seed=seed)
    clf.save(path)
    return clf


def mnist_classifier(cache_dir: Path | str | None = None, seed: int = 0) -> MnistClassifier:
    """The reference classifier: trained on mnist:train (cached)."""
    from ..datasets import load_mnist

    x, y = load_mnist("train")
    return load_or_train_classifier(x, y, cache_dir, seed=seed)


def accuracy_on(generated_images: np.ndarray, conditioning_labels: np.ndarray,
                cache_dir: Path | str | None = None) -> float:
    """Fraction of generated images the reference MNIST classifier labels as their conditioning class."""
    return mnist_classifier(cache_dir).accuracy_on(generated_images, conditioning_labels)
