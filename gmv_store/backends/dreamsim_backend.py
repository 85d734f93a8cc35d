"""DreamSim: the paper's best re-rank distance, stored as one vector per image.

DreamSim's distance is 1 - cosine similarity of its (mean-centred, unit-norm) image
embedding, so the `dreamsim` re-ranker hands the pipeline that embedder: the vector is
stored at ingest as the named vector "rerank" and a generated image costs one DreamSim
forward, not one per (generated, candidate) pair. The same embedding can serve recall
(`--embedder dreamsim`).

Weights: DreamSim's checkpoint layout is a folder (what the release zip unpacks to, plus
the torch-hub code and checkpoint for DINO-based types). Resolution order: `cache_dir=DIR`
-> `$GMV_WEIGHTS_DIR/dreamsim` -> `~/.cache/gmv-store/dreamsim`, then `./models`
(dreamsim's own default) -> download into `~/.cache/gmv-store/dreamsim` when online.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from .base import Embedder, Reranker
from .runtime import TorchBackendMixin, cached_model, check_choice, quiet, require, to_device, to_float_batch
from .weights import ResolvedWeights, WeightsSpec, gmv_cache_dir, sha256_files

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

# Files each DreamSim type loads from its cache folder (dreamsim.model.download_weights),
# plus what torch.hub.load fetches into the same folder for the DINO backbones.
REQUIRED = {
    "ensemble": ["dino_vitb16_pretrain.pth", "open_clip_vitb16_pretrain.pth.tar",
                 "clip_vitb16_pretrain.pth.tar", "ensemble_lora"],
    "dino_vitb16": ["dino_vitb16_pretrain.pth", "dino_vitb16_single_lora"],
    "dinov2_vitb14": ["dinov2_vitb14_pretrain.pth", "dinov2_vitb14_single_lora"],
    "open_clip_vitb32": ["open_clip_vitb32_pretrain.pth.tar", "open_clip_vitb32_single_lora"],
    "clip_vitb32": ["clip_vitb32_pretrain.pth.tar", "clip_vitb32_single_lora"],
    "synclr_vitb16": ["synclr_vit_b_16.pth", "synclr_vitb16_single_lora"],
}
HUB_FILES = {
    "ensemble": ["facebookresearch_dino_main", "checkpoints/dino_vitbase16_pretrain.pth"],
    "dino_vitb16": ["facebookresearch_dino_main", "checkpoints/dino_vitbase16_pretrain.pth"],
    "dinov2_vitb14": ["facebookresearch_dinov2_main", "checkpoints/dinov2_vitb14_pretrain.pth"],
}
DIMS = {"ensemble": 1792, "dino_vitb16": 768, "dinov2_vitb14": 768, "open_clip_vitb32": 512,
        "clip_vitb32": 512, "synclr_vitb16": 768}
TYPES = tuple(REQUIRED)
IMG_SIZE = 224


def required_files(dreamsim_type: str) -> list[str]:
    return REQUIRED[dreamsim_type] + HUB_FILES.get(dreamsim_type, [])


def _missing(folder: Path, dreamsim_type: str) -> str | None:
    for rel in required_files(dreamsim_type):
        p = folder / rel
        if rel.endswith("_lora"):
            if not (p / "adapter_config.json").is_file():
                return str(p / "adapter_config.json")
        elif not p.exists():
            return str(p)
    return None


def _download(folder: Path, dreamsim_type: str) -> Path:
    t = require("torch")
    from dreamsim.model import download_weights

    folder.mkdir(parents=True, exist_ok=True)
    download_weights(cache_dir=str(folder), dreamsim_type=dreamsim_type)
    hub = HUB_FILES.get(dreamsim_type)
    if hub:
        saved = t.hub.get_dir()
        try:
            t.hub.set_dir(str(folder))
            repo = "facebookresearch/dinov2" if "dinov2" in dreamsim_type else "facebookresearch/dino:main"
            t.hub.load(repo, "dinov2_vitb14" if "dinov2" in dreamsim_type else "dino_vitb16")
        finally:
            t.hub.set_dir(saved)
    return folder


class _DreamSimParams(TorchBackendMixin):
    defaults: ClassVar[dict[str, Any]] = {"type": "ensemble", "cache_dir": "", "device": "auto", "batch_size": 16}

    def _setup(self, owner: str) -> None:
        self._owner = owner
        self._check_runtime(owner)
        check_choice(owner, "type", self.params["type"], TYPES)


class DreamSimEmbedder(_DreamSimParams, ResolvedWeights, Embedder):
    name = "dreamsim"
    description = (
        "DreamSim image embedding (types: " + ", ".join(TYPES) + "); 1 - cosine is the DreamSim "
        "distance; cosine"
    )
    defaults = _DreamSimParams.defaults
    metric = "cosine"
    weights_param = "cache_dir"  # a folder: DreamSim's checkpoint layout

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._setup("embedder 'dreamsim'")
        self._alternative = "--embedder effnet-lite0 (see docs/backends.md)"

    @property
    def dim(self) -> int:
        return DIMS[self.params["type"]]

    def weights_spec(self) -> WeightsSpec:
        kind = self.params["type"]
        own = gmv_cache_dir() / "dreamsim"
        return WeightsSpec(
            owner=f"{self._owner} (type {kind})",
            filename="dreamsim",
            cache=[own, Path("models")],
            download=lambda: _download(own, kind),
            host="github.com",
            expected=f"the unzipped DreamSim '{kind}' release ({REQUIRED[kind][0]}, ...)",
            alternative=self._alternative,
            present=lambda p: p.is_dir() and _missing(p, kind) is None,
            missing_part=lambda p: _missing(p, kind) or str(p),
        )

    def weights_sha256(self) -> str | None:
        kind = self.params["type"]
        hub_checkpoints = [f for f in HUB_FILES.get(kind, []) if f.startswith("checkpoints/")]
        path = self.weights_path()  # None only with random weights, which DreamSim has not
        return sha256_files(path, REQUIRED[kind] + hub_checkpoints) if path else None

    def _model(self) -> Any:
        # weights_path() is never None here (DreamSim has no random weights)
        folder, device, kind = cast(Path, self.weights_path()), self.device, self.params["type"]
        key = ("dreamsim", kind, str(folder.resolve()), self.weights_sha256(), device)

        def build() -> Any:
            t = require("torch")
            require("peft")
            dreamsim = require("dreamsim").dreamsim
            saved = t.hub.get_dir()  # dreamsim calls torch.hub.set_dir(cache_dir): undo it
            try:
                with quiet(stderr=True):
                    model, _ = dreamsim(pretrained=True, device=device, cache_dir=str(folder),
                                        normalize_embeds=True, dreamsim_type=kind)
            finally:
                t.hub.set_dir(saved)
            return model.eval()

        return cached_model(key, build)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        t = require("torch")
        model, device = self._model(), self.device

        def forward(batch: Sequence[np.ndarray]) -> np.ndarray:
            x = to_device(to_float_batch(batch, IMG_SIZE, mode="squash"), device)
            e = model.embed(x).float().reshape(len(batch), -1)
            vectors: np.ndarray = t.nn.functional.normalize(e, dim=1).cpu().numpy()
            return vectors

        return self._embed_batched(forward, images)


class DreamSimReranker(_DreamSimParams, Reranker):
    name = "dreamsim"
    description = (
        "DreamSim distance (1 - cosine of the DreamSim embedding), stored per image at ingest; "
        "types: " + ", ".join(TYPES)
    )
    defaults = _DreamSimParams.defaults

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._setup("rerank 'dreamsim'")
        self._vector = DreamSimEmbedder(**self.params)
        # errors about the weights name the stage the user chose
        self._vector._owner = self._owner
        self._vector._alternative = "--rerank l2, or embedding with embedder effnet-lite0 (see docs/backends.md)"

    def vector_embedder(self) -> DreamSimEmbedder:
        return self._vector

    def weights_sha256(self) -> str | None:
        return self._vector.weights_sha256()
