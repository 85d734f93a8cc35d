"""Small class-conditional DCGAN for MNIST.

Generator: [z, one-hot(y)] -> fc -> 7x7 -> two stride-2 transposed convs -> 28x28 (tanh).
Discriminator: two stride-2 convs -> features h; score = w·h + embed(y)·h (projection
discriminator, a strong class conditioning). Non-saturating GAN loss, Adam(2e-4, β1=0.5).
Samples come from a short exponential moving average of the generator weights (decay 0.99,
~the last 100 steps). A long average (0.999) lagged behind after 4 epochs: 82% classifier
accuracy against 91% for the raw generator.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .base import NUM_CLASSES, TorchGenerator

if TYPE_CHECKING:
    import torch


def _build(nz: int, ch: int) -> torch.nn.ModuleDict:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class G(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Sequential(nn.Linear(nz + NUM_CLASSES, 2 * ch * 49), nn.BatchNorm1d(2 * ch * 49), nn.ReLU())
            self.net = nn.Sequential(
                nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1), nn.BatchNorm2d(ch), nn.ReLU(),   # 14x14
                nn.ConvTranspose2d(ch, 1, 4, 2, 1), nn.Tanh())                            # 28x28

        def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            h = self.fc(torch.cat([z, F.one_hot(y, NUM_CLASSES).float()], 1)).view(-1, 2 * ch, 7, 7)
            images: torch.Tensor = self.net(h)
            return images

    class D(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(1, ch, 4, 2, 1), nn.LeakyReLU(0.2),                              # 14x14
                nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.BatchNorm2d(2 * ch), nn.LeakyReLU(0.2),  # 7x7
                nn.Flatten(), nn.Linear(2 * ch * 49, 256), nn.LeakyReLU(0.2))
            self.out = nn.Linear(256, 1)
            self.embed = nn.Embedding(NUM_CLASSES, 256)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            h = self.net(x)
            score: torch.Tensor = self.out(h).squeeze(1) + (self.embed(y) * h).sum(1)
            return score

    g = G()
    return nn.ModuleDict({"G": g, "D": D(), "G_ema": G()})


class GANGenerator(TorchGenerator):
    name = "gan"
    FULL = {"nz": 64, "ch": 32, "epochs": 5, "batch_size": 128, "lr": 2e-4, "ema": 0.99}
    QUICK = {"nz": 16, "ch": 8, "epochs": 2, "batch_size": 64, "lr": 1e-3, "ema": 0.9}

    def build(self) -> Any:
        return _build(self.hp["nz"], self.hp["ch"])

    def _train(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> None:
        import torch
        import torch.nn.functional as F

        hp = self.hp
        G, D, G_ema = self.net["G"], self.net["D"], self.net["G_ema"]
        G_ema.load_state_dict(G.state_dict())
        G_ema.requires_grad_(False)
        opt_g = torch.optim.Adam(G.parameters(), lr=hp["lr"], betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=hp["lr"], betas=(0.5, 0.999))
        x = x * 2 - 1  # tanh range
        bs = hp["batch_size"]
        step = 0
        for _ in range(hp["epochs"]):
            order = torch.from_numpy(rng.permutation(len(x)))
            for i in range(0, len(x) - bs + 1 if len(x) >= bs else 1, bs):
                idx = order[i:i + bs]
                xr, yr = x[idx], y[idx]
                n = len(idx)
                z = torch.randn(n, hp["nz"])
                yf = yr  # fake samples use the real label distribution
                fake = G(z, yf)
                # discriminator step
                d_loss = F.softplus(-D(xr, yr)).mean() + F.softplus(D(fake.detach(), yf)).mean()
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
                opt_d.step()
                # generator step (non-saturating)
                g_loss = F.softplus(-D(fake, yf)).mean()
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
                opt_g.step()
                step += 1
                decay = min(hp["ema"], (1 + step) / (10 + step))  # warm-up: short runs still average
                with torch.no_grad():
                    for pe, p in zip(G_ema.parameters(), G.parameters()):
                        pe.lerp_(p, 1 - decay)
                    for be, b in zip(G_ema.buffers(), G.buffers()):
                        be.copy_(b)

    def _sample(self, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        import torch

        z = torch.randn(len(y), self.hp["nz"], generator=gen)
        images: torch.Tensor = (self.net["G_ema"](z, y) + 1) / 2
        return images
