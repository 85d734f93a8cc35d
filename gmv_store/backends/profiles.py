"""Named backend sets chosen with `gmv init --profile NAME`.

(The model profiles `offline` and `paper` are filled in by the model-backends work; `basic`
needs no torch and is the default.)
"""
from __future__ import annotations

from ..errors import UnknownBackend

PROFILES: dict[str, dict] = {
    "basic": {
        "description": "weight-free, no torch: pixel recall, pixel l2 re-rank, no quality calibration",
        "embedder": {"name": "pixels", "params": {}},
        "rerank": {"name": "l2", "params": {}},
        "quality": {"name": "none", "params": {}},
    },
}


def get_profile(name: str) -> dict:
    if name not in PROFILES:
        raise UnknownBackend(f"unknown profile '{name}'; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]
