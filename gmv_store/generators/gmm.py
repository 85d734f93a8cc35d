"""Per-class Gaussian mixture in PCA space (numpy + scikit-learn only, no torch).

PCA is fit on all training images (scaled to 0..1); each class gets its own GaussianMixture
over the PCA coordinates. Sampling draws a component, a Gaussian point, maps it back through
the inverse PCA and clips to uint8. Trains in a few seconds on the 60k MNIST images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BadInput
from .base import NUM_CLASSES, Generator, atomic_write, check_images_labels, check_labels, to_uint8


class GMMGenerator(Generator):
    name = "gmm"
    suffix = ".npz"

    def __init__(self, n_pca: int = 50, n_components: int = 10, covariance_type: str = "full",
                 max_iter: int = 100):
        self.n_pca = n_pca
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.max_iter = max_iter
        self.pca_mean: np.ndarray | None = None        # (784,)
        self.pca_components: np.ndarray | None = None  # (d, 784)
        self.weights: np.ndarray | None = None         # (10, K)
        self.means: np.ndarray | None = None           # (10, K, d)
        self.chols: np.ndarray | None = None           # (10, K, d, d) lower Cholesky factors of covariances
        self.fitted: np.ndarray | None = None          # (10,) bool, class seen in training

    @classmethod
    def hparams(cls, quick: bool = False) -> dict:
        if quick:
            return {"n_pca": 20, "n_components": 3, "covariance_type": "full", "max_iter": 50}
        return {"n_pca": 50, "n_components": 10, "covariance_type": "full", "max_iter": 100}

    @classmethod
    def from_hparams(cls, quick: bool = False) -> "GMMGenerator":
        return cls(**cls.hparams(quick))

    def fit(self, images, labels, seed: int = 0) -> "GMMGenerator":
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        images, labels = check_images_labels(images, labels)
        x = images.reshape(len(images), -1).astype(np.float32) / 255.0
        d = min(self.n_pca, x.shape[0] - 1, x.shape[1])
        pca = PCA(n_components=d, svd_solver="randomized", random_state=seed)
        z = pca.fit_transform(x).astype(np.float64)
        k = self.n_components
        self.pca_mean = pca.mean_.astype(np.float32)
        self.pca_components = pca.components_.astype(np.float32)
        self.weights = np.zeros((NUM_CLASSES, k))
        self.means = np.zeros((NUM_CLASSES, k, d))
        self.chols = np.zeros((NUM_CLASSES, k, d, d))
        self.fitted = np.zeros(NUM_CLASSES, dtype=bool)
        for c in range(NUM_CLASSES):
            zc = z[labels == c]
            if len(zc) == 0:
                continue
            kc = max(1, min(k, len(zc) // 2))
            gm = GaussianMixture(n_components=kc, covariance_type=self.covariance_type,
                                 max_iter=self.max_iter, reg_covar=1e-4, random_state=seed + c)
            gm.fit(zc)
            cov = gm.covariances_
            if self.covariance_type == "full":
                full = cov
            elif self.covariance_type == "diag":
                full = np.stack([np.diag(v) for v in cov])
            elif self.covariance_type == "spherical":
                full = np.stack([np.eye(d) * v for v in cov])
            else:  # tied
                full = np.repeat(cov[None], kc, axis=0)
            self.weights[c, :kc] = gm.weights_
            self.means[c, :kc] = gm.means_
            self.chols[c, :kc] = np.linalg.cholesky(full + 1e-9 * np.eye(d))
            self.fitted[c] = True
        return self

    def sample(self, labels, seed: int = 0) -> np.ndarray:
        if self.weights is None:
            raise BadInput("gmm: generator is not trained; fix: call fit() or load_or_train()")
        labels = check_labels(labels)
        missing = sorted(set(labels.tolist()) - set(np.flatnonzero(self.fitted).tolist()))
        if missing:
            raise BadInput(f"gmm: no training images of class {missing}; fix: request only trained classes")
        m = len(labels)
        d = self.means.shape[-1]
        rng = np.random.default_rng(seed)
        u = rng.random(m)
        eps = rng.standard_normal((m, d))
        cdf = np.cumsum(self.weights[labels], axis=1)
        cdf[:, -1] = np.maximum(cdf[:, -1], 1.0)
        comp = np.array([np.searchsorted(cdf[i], u[i], side="right") for i in range(m)], dtype=np.int64)
        comp = np.minimum(comp, self.weights.shape[1] - 1)
        z = self.means[labels, comp] + np.einsum("nij,nj->ni", self.chols[labels, comp], eps)
        x = z.astype(np.float32) @ self.pca_components + self.pca_mean
        return to_uint8(x * 255.0).reshape(m, 28, 28)

    def save(self, path: Path) -> None:
        arrays = dict(pca_mean=self.pca_mean, pca_components=self.pca_components, weights=self.weights,
                      means=self.means, chols=self.chols, fitted=self.fitted,
                      config=np.array([self.n_pca, self.n_components, self.max_iter]),
                      covariance_type=np.array(self.covariance_type))

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(Path(path), write)

    @classmethod
    def load(cls, path: Path) -> "GMMGenerator":
        with np.load(Path(path), allow_pickle=False) as f:
            n_pca, n_components, max_iter = (int(v) for v in f["config"])
            g = cls(n_pca=n_pca, n_components=n_components, covariance_type=str(f["covariance_type"]),
                    max_iter=max_iter)
            for key in ("pca_mean", "pca_components", "weights", "means", "chols", "fitted"):
                setattr(g, key, f[key])
        return g
