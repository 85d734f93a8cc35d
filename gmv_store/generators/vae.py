"""Conditional β-VAE for MNIST (MLP encoder/decoder, class one-hot fed to both).

Loss: Bernoulli (BCE) reconstruction + β·KL(q(z|x,y) || N(0, I)); β = 3 (with β = 1 the latent
carries the class and samples often ignore the requested label: 47-49% classifier accuracy
after 2 epochs, against 96% with β = 3). Sampling decodes
z ~ N(0, I) with the requested class and returns the decoder's mean image.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .base import NUM_CLASSES, TorchGenerator

if TYPE_CHECKING:
    import torch


def _build(hidden: int, latent: int) -> torch.nn.Module:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class CVAE(nn.Module):
        """MLP encoder/decoder: on CPU this is ~5x cheaper per image than a conv VAE of similar
        quality on MNIST, which lets it train for more epochs inside the time budget."""

        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Sequential(nn.Linear(784 + NUM_CLASSES, hidden), nn.LeakyReLU(0.2),
                                     nn.Linear(hidden, hidden // 2), nn.LeakyReLU(0.2),
                                     nn.Linear(hidden // 2, 2 * latent))
            self.dec = nn.Sequential(nn.Linear(latent + NUM_CLASSES, hidden // 2), nn.LeakyReLU(0.2),
                                     nn.Linear(hidden // 2, hidden), nn.LeakyReLU(0.2),
                                     nn.Linear(hidden, 784))

        def encode(self, x: torch.Tensor, y1h: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (mu, logvar)
            halves: tuple[torch.Tensor, ...] = self.enc(torch.cat([x.flatten(1), y1h], 1)).chunk(2, 1)
            return halves

        def decode(self, z: torch.Tensor, y1h: torch.Tensor) -> torch.Tensor:
            logits: torch.Tensor = self.dec(torch.cat([z, y1h], 1)).view(-1, 1, 28, 28)
            return logits

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            y1h = F.one_hot(y, NUM_CLASSES).float()
            mu, logvar = self.encode(x, y1h)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            return self.decode(z, y1h), mu, logvar

    return CVAE()


class VAEGenerator(TorchGenerator):
    name = "vae"
    FULL = {"hidden": 512, "latent": 16, "beta": 3.0, "epochs": 10, "batch_size": 128, "lr": 2e-3}
    QUICK = {"hidden": 64, "latent": 8, "beta": 3.0, "epochs": 2, "batch_size": 64, "lr": 2e-3}

    def build(self) -> Any:
        return _build(self.hp["hidden"], self.hp["latent"])

    def _train(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> None:
        import torch
        import torch.nn.functional as F

        hp = self.hp
        opt = torch.optim.Adam(self.net.parameters(), lr=hp["lr"])
        steps = hp["epochs"] * ((len(x) + hp["batch_size"] - 1) // hp["batch_size"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=hp["lr"] * 0.05)
        for _ in range(hp["epochs"]):
            order = torch.from_numpy(rng.permutation(len(x)))
            for i in range(0, len(x), hp["batch_size"]):
                idx = order[i:i + hp["batch_size"]]
                xb = x[idx]
                logits, mu, logvar = self.net(xb, y[idx])
                rec = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum") / len(xb)
                kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / len(xb)
                loss = rec + hp["beta"] * kl
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()

    def _sample(self, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        z = torch.randn(len(y), self.hp["latent"], generator=gen)
        return torch.sigmoid(self.net.decode(z, F.one_hot(y, NUM_CLASSES).float()))
