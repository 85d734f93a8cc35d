"""CLIP image embeddings through open_clip: any built-in architecture and pretrained tag.

Weights, in order: `weights=FILE` -> `$GMV_WEIGHTS_DIR/open_clip/<arch>/<tag>/` (a folder
holding open_clip_model.safetensors, open_clip_pytorch_model.bin or the release file) ->
the Hugging Face cache (or ~/.cache/clip for URL-only tags) -> download when online.
The file found is passed to open_clip as `pretrained=FILE`, with the tag's preprocessing
(mean/std, interpolation, resize mode) and QuickGELU setting, so it behaves exactly like
`pretrained=<tag>`. `weights="random"` builds a seeded random model (tests only).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..errors import BadInput
from .base import Embedder
from .runtime import TorchBackendMixin, cached_model, quiet, require, to_device
from .weights import ResolvedWeights, WeightsSpec, hf_cached

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

    import numpy as np

DEFAULT_ARCH = "ViT-B-32"
DEFAULT_TAG = "laion2b_s34b_b79k"
CHECKPOINT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")


def _open_clip() -> ModuleType:
    return require("open_clip", "open_clip_torch")


def _checkpoint_in(p: Path) -> Path | None:
    if p.is_file():
        return p
    if p.is_dir():
        for name in CHECKPOINT_NAMES:
            if (p / name).is_file():
                return p / name
        others = sorted(list(p.glob("*.safetensors")) + list(p.glob("*.bin")) + list(p.glob("*.pt")))
        return others[0] if others else None
    return None


class ClipEmbedder(TorchBackendMixin, ResolvedWeights, Embedder):
    name = "clip"
    description = (
        "open_clip image embedding (any architecture / pretrained tag; default "
        f"{DEFAULT_ARCH} {DEFAULT_TAG}); cosine"
    )
    defaults = {"arch": DEFAULT_ARCH, "tag": DEFAULT_TAG, "weights": "", "device": "auto", "batch_size": 64}
    metric = "cosine"
    random_weights = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        owner = "embedder 'clip'"
        self._check_runtime(owner)
        oc = _open_clip()
        arch, tag, weights = self.params["arch"], self.params["tag"], self.params["weights"]
        if oc.get_model_config(arch) is None:
            raise BadInput(f"{owner}: arch={arch!r} is not an open_clip architecture; choose one of: "
                           f"{', '.join(oc.list_models())}")
        tags = oc.list_pretrained_tags_by_model(arch)
        if not weights and tag not in tags:
            raise BadInput(f"{owner}: tag={tag!r} has no weights for {arch}; choose one of: "
                           f"{', '.join(tags) or '(none: pass weights=FILE)'}")
        self._pcfg = dict(oc.get_pretrained_cfg(arch, tag)) if tag else {}

    @property
    def dim(self) -> int:
        return int(_open_clip().get_model_config(self.params["arch"])["embed_dim"])

    # ------------------------------------------------------------------ weights
    def weights_spec(self) -> WeightsSpec:
        arch, tag, cfg = self.params["arch"], self.params["tag"], self._pcfg
        cache, host = [], None
        hub = cfg.get("hf_hub", "")
        if hub:
            repo, fname = os.path.split(hub)  # 'org/repo/' -> default file names
            names = [fname] if fname else list(CHECKPOINT_NAMES[:2])
            if fname.endswith((".bin", ".pth")):
                names.insert(0, fname[:-4] + ".safetensors")
            cache += [p for p in (hf_cached(repo, n) for n in names) if p is not None]
            host = "huggingface.co"
        url = cfg.get("url", "")
        if url:
            cache.append(Path.home() / ".cache" / "clip" / os.path.basename(url))
            host = host or urlparse(url).hostname
        source = f"hf.co/{hub.split('/')[0]}/{hub.split('/')[1]}" if hub else url

        def download() -> str:
            path: str = _open_clip().download_pretrained(cfg)
            return path

        return WeightsSpec(
            owner=f"embedder 'clip' ({arch}, {tag})",
            filename=f"open_clip/{arch}/{tag}",
            expected=f"{CHECKPOINT_NAMES[0]} (or {CHECKPOINT_NAMES[1]}) from {source}",
            cache=cache,
            download=download if cfg else None,
            host=host,
            alternative="--profile offline (embedder effnet-lite0)",
            present=lambda p: _checkpoint_in(p) is not None,
        )

    def _to_load(self, found: Path) -> Path:
        return _checkpoint_in(found)  # type: ignore[return-value]  # `present` checked it

    # ------------------------------------------------------------------ model
    def _model(self) -> Any:
        path, device = self.weights_path(), self.device
        arch, cfg = self.params["arch"], self._pcfg
        key = ("clip", arch, self.params["tag"], *self.weights_key(), device)

        def build() -> Any:
            oc = _open_clip()
            t = require("torch")
            kwargs = {}
            for src, dst in (("mean", "image_mean"), ("std", "image_std"),
                             ("interpolation", "image_interpolation"), ("resize_mode", "image_resize_mode")):
                if cfg.get(src) is not None:
                    kwargs[dst] = cfg[src]
            if path is None:
                t.manual_seed(0)
            with quiet():
                model, _, preprocess = oc.create_model_and_transforms(
                    arch,
                    pretrained=str(path) if path else None,
                    force_quick_gelu=bool(cfg.get("quick_gelu", False)),
                    pretrained_text=False,
                    device=device,
                    **kwargs,
                )
            model.eval()
            return model, preprocess

        return cached_model(key, build)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from ..images import to_pil, to_rgb

        t = require("torch")
        (model, preprocess), device = self._model(), self.device

        def forward(batch: Sequence[np.ndarray]) -> np.ndarray:
            x = to_device(t.stack([preprocess(to_pil(to_rgb(px))) for px in batch]), device)
            f = model.encode_image(x).float()
            vectors: np.ndarray = t.nn.functional.normalize(f, dim=1).cpu().numpy()
            return vectors

        return self._embed_batched(forward, images)
