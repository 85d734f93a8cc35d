"""LPIPS re-rank distance, as stored vectors for small images or pairwise from pixels.

LPIPS(a, b) = sum over layers l of mean over positions (h, w) of sum over channels c of
w_lc * (f_a - f_b)^2, with f the channel-normalised trunk features and w_lc >= 0 the
learned linear weights (shipped inside the lpips wheel). Hence with
v_l = sqrt(w_l / (H_l W_l)) * f_l flattened and concatenated over layers,
||v_a - v_b||^2 = LPIPS(a, b) exactly: a vector per image, stored at ingest.

Trade-off (docs/backends.md): the vector has sum_l C_l H_l W_l entries. For AlexNet that is
5,760 at 32 px, 31,872 at 64 px, 484,992 at 224 px. `mode=auto` stores vectors while they
fit `max_dim` (65,536 floats = 256 KiB per image) and re-ranks inside Qdrant; above it
LPIPS is computed pairwise for the N recalled candidates from their stored pixels (one
forward per candidate per query).

Trunk weights (torchvision ImageNet files), in order: `trunk=FILE` ->
`$GMV_WEIGHTS_DIR/<file>` -> `$TORCH_HOME/hub/checkpoints/<file>` -> download when online.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import BadInput
from .base import Embedder, ImageReranker, Reranker
from .runtime import TorchBackendMixin, cached_model, check_choice, quiet, require, run_batched, to_float_batch
from .weights import ResolvedWeights, WeightsSpec, sha256_file, torch_hub_dir, torch_hub_file

NETS = ("alex", "vgg", "squeeze")
TRUNK_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
TRUNK_URL = "https://download.pytorch.org/models/"
MODES = ("auto", "vector", "pairwise")
DEFAULT_MAX_DIM = 65536


def _head_file(net: str, version: str = "0.1") -> Path:
    import lpips

    return Path(lpips.__file__).parent / "weights" / f"v{version}" / f"{net}.pth"


def _load_trunk(model: Any, net: str, path: Path) -> None:  # model: an lpips.LPIPS
    """Load a torchvision `features` state dict into lpips' sliced trunk (the slices hold the
    same modules as torchvision's `features`, under their original indices)."""
    t = require("torch")
    sd = t.load(str(path), map_location="cpu", weights_only=True)
    by_index: dict[str, Any] = {}
    for sl in model.net.children():
        for idx, mod in sl.named_children():
            by_index[idx] = mod
    loaded = 0
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] != "features" or parts[1] not in by_index:
            continue  # classifier layers are not part of the trunk
        target = by_index[parts[1]]
        sub = ".".join(parts[2:])
        target.load_state_dict({sub: value}, strict=False)
        loaded += 1
    want = sum(1 for sl in model.net.children() for _ in sl.state_dict())
    if loaded != want:
        raise BadInput(f"rerank 'lpips': {path} holds {loaded} trunk tensors for '{net}', expected {want}; "
                       f"fix: use torchvision's {TRUNK_FILES[net]}")


class _LPIPSParams(TorchBackendMixin, ResolvedWeights):
    defaults: ClassVar[dict[str, Any]] = {"net": "alex", "size": 64, "mode": "auto", "max_dim": DEFAULT_MAX_DIM, "trunk": "",
                "device": "auto", "batch_size": 64}
    weights_param = "trunk"  # the linear heads ship in the lpips wheel: only the trunk is looked up
    random_weights = True

    def _setup(self, owner: str) -> None:
        self._owner = owner
        self._check_runtime(owner)
        check_choice(owner, "net", self.params["net"], NETS)
        check_choice(owner, "mode", self.params["mode"], MODES)
        size = self.params["size"]
        if not isinstance(size, int) or not 32 <= size <= 1024:
            raise BadInput(f"{owner}: size={size!r} must be an integer in 32..1024 (images are resized to it)")
        if not isinstance(self.params["max_dim"], int) or self.params["max_dim"] < 1:
            raise BadInput(f"{owner}: max_dim={self.params['max_dim']!r} must be a positive integer")

    def weights_spec(self) -> WeightsSpec:
        net = self.params["net"]
        fname = TRUNK_FILES[net]

        def download() -> Path:
            require("torch").hub.load_state_dict_from_url(TRUNK_URL + fname, progress=False, check_hash=True)
            return torch_hub_dir() / "checkpoints" / fname

        return torch_hub_file(f"{self._owner} (net {net})", "checkpoints", fname, download, "download.pytorch.org",
                              "--rerank l2, or embedding with embedder effnet-lite0")

    def weights_sha256(self) -> str | None:
        path = self.weights_path()
        if path is None:
            return None
        # the trunk file and the linear heads shipped in the lpips wheel, as one checksum
        require("lpips")
        both = f"{sha256_file(path)}:{sha256_file(_head_file(self.params['net']))}"
        return hashlib.sha256(both.encode()).hexdigest()

    def _model(self) -> Any:
        path, device, net = self.weights_path(), self.device, self.params["net"]
        key = ("lpips", net, *self.weights_key(), device)

        def build() -> Any:
            lpips = require("lpips")
            with quiet():
                model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
            if path is not None:
                _load_trunk(model, net, path)
            return model.eval().to(device)

        return cached_model(key, build)

    def features(self, x: Any) -> list[Any]:  # torch tensors in and out
        """[0, 1] images (n, 3, s, s) -> list of (n, C_l, H_l, W_l) scaled feature maps whose
        squared l2 distance, summed over layers, is LPIPS."""
        t = require("torch")
        model = self._model()
        outs = model.net.forward(model.scaling_layer(2 * x - 1))
        feats: list[Any] = []
        for kk, f in enumerate(outs):
            f = f / (t.sqrt(t.sum(f ** 2, dim=1, keepdim=True)) + 1e-10)  # lpips.normalize_tensor
            w = model.lins[kk].model[-1].weight.view(1, -1, 1, 1).clamp(min=0)
            feats.append(f * t.sqrt(w / (f.shape[2] * f.shape[3])))
        return feats

    def vector_dim(self) -> int:
        """Entries of the per-image vector at this size (shapes only: random trunk)."""
        t = require("torch")
        lpips = require("lpips")
        key = ("lpips-dim", self.params["net"], self.params["size"])

        def build() -> int:
            with quiet():
                m = lpips.LPIPS(net=self.params["net"], pretrained=False, pnet_rand=True, verbose=False)
            with t.inference_mode():
                outs = m.net.forward(t.zeros(1, 3, self.params["size"], self.params["size"]))
            return int(sum(o[0].numel() for o in outs))

        return cached_model(key, build)

    def resolved_mode(self) -> str:
        if self.params["mode"] != "auto":
            mode: str = self.params["mode"]
            return mode
        return "vector" if self.vector_dim() <= self.params["max_dim"] else "pairwise"


class LPIPSVector(_LPIPSParams, Embedder):
    """Per-image LPIPS vector: Qdrant's euclidean distance squared is LPIPS."""

    name = "lpips-vector"
    metric = "euclid"
    defaults = _LPIPSParams.defaults

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._setup("rerank 'lpips'")

    @property
    def dim(self) -> int:
        return self.vector_dim()

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        t = require("torch")
        size, device = self.params["size"], self.device
        self._model()

        def forward(batch: Sequence[np.ndarray]) -> np.ndarray:
            x = to_float_batch(batch, size, mode="squash", resample="bilinear").to(device)
            vectors: np.ndarray = t.cat([f.flatten(1) for f in self.features(x)], dim=1).float().cpu().numpy()
            return vectors

        return self._embed_batched(forward, images, "lpips")


class LPIPSReranker(_LPIPSParams, Reranker):
    """`create` returns the vector form or the pairwise form, by `mode` (auto: by size)."""

    name = "lpips"
    description = (
        "LPIPS (nets: alex, vgg, squeeze) on images resized to size x size; stored per image "
        "when the vector has <= max_dim entries (mode auto), else pairwise from pixels"
    )
    defaults = _LPIPSParams.defaults

    def __new__(cls, **params: Any) -> LPIPSReranker:
        if cls is LPIPSReranker:
            probe = _Probe(**params)
            probe._setup("rerank 'lpips'")
            cls = _LPIPSVectorReranker if probe.resolved_mode() == "vector" else _LPIPSPairwiseReranker
        return object.__new__(cls)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._setup("rerank 'lpips'")
        # record the resolved mode, so that a store re-opens with the same one
        self.params["mode"] = self.resolved_mode()


class _Probe(_LPIPSParams, Reranker):
    name = "lpips"
    defaults = _LPIPSParams.defaults


class _LPIPSVectorReranker(LPIPSReranker):
    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._vector = LPIPSVector(**{**self.params})

    def vector_embedder(self) -> Embedder | None:
        return self._vector

    def distance_from_score(self, score: float, metric: str) -> float:
        """Qdrant's euclidean distance is sqrt(LPIPS)."""
        return float(score) ** 2


class _LPIPSPairwiseReranker(LPIPSReranker, ImageReranker):
    def vector_embedder(self) -> Embedder | None:
        return None

    def pairwise(self, generated: np.ndarray, candidates: Sequence[np.ndarray]) -> np.ndarray:
        t = require("torch")
        size, device = self.params["size"], self.device
        if not len(candidates):
            return np.zeros(0, dtype=np.float64)
        with t.inference_mode():
            g = self.features(to_float_batch([generated], size, mode="squash", resample="bilinear").to(device))

        def forward(batch: Sequence[np.ndarray]) -> np.ndarray:
            x = to_float_batch(batch, size, mode="squash", resample="bilinear").to(device)
            d: Any = sum(((f - gf) ** 2).sum(dim=(1, 2, 3)) for f, gf in zip(self.features(x), g))
            distances: np.ndarray = d.double().cpu().numpy()
            return distances

        return run_batched(forward, list(candidates), self.params["batch_size"], "lpips pairs").astype(np.float64)
