"""The paper's reference numbers printed beside ours (docs/method.md)."""
from __future__ import annotations

# Table 7 (MNIST, CLIP recall): generator x re-rank -> rho % at k = 30 / 50 / 100.
PAPER_TABLE7 = {
    ("gan", "none"): (96.27, 96.26, 95.86), ("gan", "l2"): (97.73, 97.58, 96.03),
    ("gan", "lpips"): (97.77, 97.72, 97.38), ("gan", "dreamsim"): (97.43, 97.44, 97.40),
    ("diffusion", "none"): (92.40, 91.82, 91.26), ("diffusion", "l2"): (92.90, 92.66, 91.88),
    ("diffusion", "dreamsim"): (93.90, 93.44, 92.55),
}
PAPER_KS = (30, 50, 100)
# Table 9: beta-VAE on MNIST with CLIP recall, one number per re-rank (k not stated in method.md).
PAPER_TABLE9_VAE = {"none": 86.41, "l2": 87.76, "lpips": 88.78, "dreamsim": 88.78}
# Our learned-embedding re-rank is compared with the paper's learned perceptual distance.
PAPER_RERANK_FOR = {"none": "none", "l2": "l2", "embedding": "dreamsim"}


def paper_rho(generator: str, rerank: str, k: int) -> tuple[float, str] | None:
    """The paper's rho % for our generator and re-rank at k, with where it comes from, or None.
    Table 9 states no k: its number stands for every k (the source says so)."""
    pr = PAPER_RERANK_FOR.get(rerank)
    if pr is not None and (generator, pr) in PAPER_TABLE7 and k in PAPER_KS:
        return PAPER_TABLE7[(generator, pr)][PAPER_KS.index(k)], f"T7 {generator}, {pr}"
    if generator == "vae" and pr in PAPER_TABLE9_VAE:
        return PAPER_TABLE9_VAE[pr], f"T9 β-VAE, {pr}, k not stated"
    return None
