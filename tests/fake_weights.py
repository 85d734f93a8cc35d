"""Weights files with seeded random values, written in the exact layout a library loads,
for the tests and the benchmark (benchmarks/backends.py): same architecture, same loading
path, same cost as the real weights, which cannot be downloaded on an offline machine."""
from __future__ import annotations

from pathlib import Path


def write_dreamsim_cache(folder: Path, lora_rank: int = 16) -> Path:
    """DreamSim's cache folder for type open_clip_vitb32, as its release zip unpacks: the
    ViT checkpoint (`{'state_dict': ..., 'proj'}`) and a LoRA adapter folder saved by peft."""
    import torch
    from dreamsim.config import dreamsim_args
    from dreamsim.feature_extraction.vision_transformer import vit_base
    from dreamsim.model import PerceptualModel
    from peft import LoraConfig, get_peft_model

    from gmv_store.backends.runtime import quiet

    torch.manual_seed(0)
    vit = vit_base(patch_size=32)
    vit.pos_drop = torch.nn.LayerNorm(768)
    sd = {k: v.half() for k, v in vit.state_dict().items()}  # half: a smaller file, same loading path
    sd["proj"] = torch.randn(768, 512) * 0.03
    torch.save({"state_dict": sd}, folder / "open_clip_vitb32_pretrain.pth.tar")
    with quiet(stderr=True):
        pm = PerceptualModel(**dreamsim_args["model_config"]["open_clip_vitb32"], device="cpu",
                             load_dir=str(folder), normalize_embeds=True)
    lora = LoraConfig(r=lora_rank, lora_alpha=0.5, lora_dropout=0.0, bias="none", target_modules=["qkv"])
    get_peft_model(pm, lora).save_pretrained(str(folder / "open_clip_vitb32_single_lora"))
    return folder


def write_maniqa_checkpoint(path: Path, dataset: str = "koniq") -> Path:
    """A MANIQA checkpoint in pyiqa's `pretrained_model_path` layout: {'params': state_dict}."""
    import torch

    from gmv_store.backends.maniqa import build_maniqa
    from gmv_store.backends.runtime import quiet

    torch.manual_seed(0)
    with quiet():
        net = build_maniqa(dataset, 1)
    torch.save({"params": {k: v.half() for k, v in net.state_dict().items()}}, path)
    return path
