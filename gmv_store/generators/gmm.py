"""Per-class Gaussian mixture in PCA space (numpy + scikit-learn only, no torch).

PCA is fit on all training images (scaled to 0..1); each class gets its own GaussianMixture
over the PCA coordinates. Sampling draws a component, a Gaussian point, maps it back through
the inverse PCA and clips to uint8. Trains in a few seconds on the 60k MNIST images.

EM is a small numpy implementation (k-means++ seeding, Lloyd steps, then full-covariance EM):
scikit-learn's GaussianMixture took ~40-60 s on 60k images on two cores, this takes a few
(classes two at a time).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInput
from .base import NUM_CLASSES, Generator, atomic_write, check_images_labels, check_labels, to_uint8


def _kmeans(z: np.ndarray, k: int, rng: np.random.Generator, iters: int = 10) -> np.ndarray:
    """k-means++ seeding + Lloyd iterations; returns hard assignments (n,)."""
    n = len(z)
    sq = (z * z).sum(1)
    centers = [z[rng.integers(n)]]
    d2 = ((z - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        centers.append(z[rng.choice(n, p=p)])
        d2 = np.minimum(d2, ((z - centers[-1]) ** 2).sum(1))
    c = np.array(centers)
    assign = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        dist = sq[:, None] - 2 * z @ c.T + (c * c).sum(1)[None]
        assign = dist.argmin(1)
        for j in range(k):
            members = z[assign == j]
            if len(members):
                c[j] = members.mean(0)
    return assign


def fit_gmm(z: np.ndarray, k: int, covariance_type: str = "full", max_iter: int = 100,
            rng: np.random.Generator | None = None, reg: float = 1e-4,
            tol: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for a k-component Gaussian mixture. Returns (weights (k,), means (k,d), chols (k,d,d))."""
    from scipy.special import logsumexp

    rng = rng or np.random.default_rng(0)
    n, d = z.shape
    z = np.asarray(z, dtype=np.float64)
    z32 = z.astype(np.float32)  # the n-sized GEMMs run in float32 (2x faster); d x d algebra in float64
    resp = np.zeros((n, k), dtype=np.float32)
    resp[np.arange(n), _kmeans(z, k, rng)] = 1.0

    def m_step(resp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nk = resp.sum(0, dtype=np.float64) + 1e-10
        mu = (resp.T @ z32).astype(np.float64) / nk[:, None]
        chol = np.empty((k, d, d))
        for j in range(k):
            diff = z32 - mu[j].astype(np.float32)
            if covariance_type == "diag":
                var = (resp[:, j:j + 1] * diff * diff).sum(0, dtype=np.float64) / nk[j]
                chol[j] = np.diag(np.sqrt(var + reg))
            else:
                cov = ((resp[:, j:j + 1] * diff).T @ diff).astype(np.float64) / nk[j]
                chol[j] = np.linalg.cholesky((cov + cov.T) / 2 + reg * np.eye(d))
        return nk / n, mu, chol

    w, mu, chol = m_step(resp)
    prev = -np.inf
    for _ in range(max_iter):
        logp = np.empty((n, k))
        # whitened residuals: (z - mu) L^-T, a single GEMM (faster than a triangular solve)
        inv_t = np.linalg.inv(chol).transpose(0, 2, 1).astype(np.float32)
        for j in range(k):
            sol = (z32 - mu[j].astype(np.float32)) @ inv_t[j]
            logp[:, j] = (-0.5 * (sol * sol).sum(1, dtype=np.float64) - np.log(np.diag(chol[j])).sum()
                          - 0.5 * d * np.log(2 * np.pi) + np.log(w[j]))
        norm = logsumexp(logp, axis=1)
        resp = np.exp(logp - norm[:, None]).astype(np.float32)
        w, mu, chol = m_step(resp)
        ll = norm.mean()
        if abs(ll - prev) < tol:
            break
        prev = ll
    return w, mu, chol


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
        self.train_seconds: float | None = None

    @classmethod
    def hparams(cls, quick: bool = False) -> dict[str, Any]:
        # "em" names the EM implementation revision (part of the cache key, not a constructor arg).
        # 10 EM steps, not 30: a third of the fit, and the demo's rho is the same (docs/speed.md)
        if quick:
            return {"n_pca": 20, "n_components": 3, "covariance_type": "full", "max_iter": 20, "em": 2}
        return {"n_pca": 50, "n_components": 10, "covariance_type": "full", "max_iter": 10, "em": 3}

    @classmethod
    def from_hparams(cls, quick: bool = False) -> GMMGenerator:
        hp = cls.hparams(quick)
        hp.pop("em")
        return cls(**hp)


    def fit(self, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> GMMGenerator:
        from threadpoolctl import threadpool_limits

        images, labels = check_images_labels(images, labels)
        # Multi-threaded OpenBLAS is pathologically slow on these small, tall GEMMs
        # (~100x slower on two cores in our measurements); one thread is fastest here.
        t0 = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):
            self._fit(images, labels, seed)
        self.train_seconds = time.perf_counter() - t0
        return self

    def _fit(self, images: np.ndarray, labels: np.ndarray, seed: int) -> GMMGenerator:
        from sklearn.decomposition import PCA

        x = images.reshape(len(images), -1).astype(np.float32) / 255.0
        d = min(self.n_pca, x.shape[0] - 1, x.shape[1])
        pca = PCA(n_components=d, svd_solver="randomized", random_state=seed)
        z = pca.fit_transform(x).astype(np.float64)
        k = self.n_components
        if self.covariance_type not in ("full", "diag"):
            raise BadInput(f"gmm: covariance_type {self.covariance_type!r} unsupported; fix: use 'full' or 'diag'")
        self.pca_mean = pca.mean_.astype(np.float32)
        self.pca_components = pca.components_.astype(np.float32)
        self.weights = np.zeros((NUM_CLASSES, k))
        self.means = np.zeros((NUM_CLASSES, k, d))
        self.chols = np.zeros((NUM_CLASSES, k, d, d))
        self.fitted = np.zeros(NUM_CLASSES, dtype=bool)
        def fit_class(c: int) -> tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
            zc = z[labels == c]
            kc = max(1, min(k, len(zc) // 2))
            return kc, fit_gmm(zc, kc, self.covariance_type, self.max_iter, np.random.default_rng([seed, c]))

        # classes are independent and seeded each by its own generator: two at a time (numpy
        # releases the GIL in its matrix products), the same result as one after another
        present = [c for c in range(NUM_CLASSES) if (labels == c).any()]
        with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            for c, (kc, (w, mu, chol)) in zip(present, pool.map(fit_class, present)):
                self.weights[c, :kc] = w
                self.means[c, :kc] = mu
                self.chols[c, :kc] = chol
                self.fitted[c] = True
        return self

    def trained_arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays by name (BadInput when not trained)."""
        arrays = dict(pca_mean=self.pca_mean, pca_components=self.pca_components, weights=self.weights,
                      means=self.means, chols=self.chols, fitted=self.fitted)
        fitted = {k: v for k, v in arrays.items() if v is not None}
        if len(fitted) < len(arrays):
            raise BadInput("gmm: generator is not trained; fix: call fit() or load_or_train()")
        return fitted

    def sample(self, labels: np.ndarray, seed: int = 0) -> np.ndarray:
        g = self.trained_arrays()
        labels = check_labels(labels)
        missing = sorted(set(labels.tolist()) - set(np.flatnonzero(g["fitted"]).tolist()))
        if missing:
            raise BadInput(f"gmm: no training images of class {missing}; fix: request only trained classes")
        m = len(labels)
        d = g["means"].shape[-1]
        rng = np.random.default_rng(seed)
        u = rng.random(m)
        eps = rng.standard_normal((m, d))
        cdf = np.cumsum(g["weights"][labels], axis=1)
        cdf[:, -1] = np.maximum(cdf[:, -1], 1.0)
        comp = np.array([np.searchsorted(cdf[i], u[i], side="right") for i in range(m)], dtype=np.int64)
        comp = np.minimum(comp, g["weights"].shape[1] - 1)
        z = g["means"][labels, comp] + np.einsum("nij,nj->ni", g["chols"][labels, comp], eps)
        x = z.astype(np.float32) @ g["pca_components"] + g["pca_mean"]
        return to_uint8(x * 255.0).reshape(m, 28, 28)

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = dict(self.trained_arrays(),
                      config=np.array([self.n_pca, self.n_components, self.max_iter]),
                      covariance_type=np.array(self.covariance_type),
                      train_seconds=np.array(np.nan if self.train_seconds is None else self.train_seconds))

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(Path(path), write)

    @classmethod
    def load(cls, path: Path) -> GMMGenerator:
        with np.load(Path(path), allow_pickle=False) as f:
            n_pca, n_components, max_iter = (int(v) for v in f["config"])
            g = cls(n_pca=n_pca, n_components=n_components, covariance_type=str(f["covariance_type"]),
                    max_iter=max_iter)
            for key in ("pca_mean", "pca_components", "weights", "means", "chols", "fitted"):
                setattr(g, key, f[key])
            if "train_seconds" in f:
                g.train_seconds = float(f["train_seconds"])
        return g
