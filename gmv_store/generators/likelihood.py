"""log p(x | y) of images under a trained generator: what the counterfactual checks compare.

- `gmm`: exact. The mixture lives in a d-dimensional PCA subspace and its sampler adds nothing
  outside it, so its density in pixel space is degenerate; it is completed as in
  probabilistic PCA: pixels x in [0, 1]^784, z = the PCA coordinates, r = the residual off the
  subspace, and log p(x | y) = log sum_c w_yc N(z; mu_yc, Sigma_yc) + log N(r; 0, s2 I_(784-d))
  with s2 = the training images' mean squared residual per dimension (the PPCA estimate). Every
  term is closed-form, and the numbers of models fit on different data (different subspaces)
  are comparable.
- `vae`: the evidence lower bound (beta = 1, whatever beta trained it): Bernoulli decoder on
  intensities in [0, 1], KL to N(0, I), the expectation over `samples` posterior draws with a
  fixed seed.

In nats per image. Other kinds (the GAN) have no likelihood: BadInput.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import BadInput
from .base import NUM_CLASSES, check_images_labels
from .gmm import GMMGenerator
from .vae import VAEGenerator

KINDS = {"gmm": "exact log-likelihood (mixture in PCA space + isotropic Gaussian off it)",
         "vae": "ELBO (beta = 1, Bernoulli decoder, 16 posterior samples)"}
ELBO_SAMPLES = 16


def likelihood_kind(kind: str) -> str:
    if kind not in KINDS:
        raise BadInput(f"generator '{kind}' has no likelihood to compare (implicit model); "
                       f"fix: use a set from a {' or '.join(KINDS)} generator")
    return KINDS[kind]


def _pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float64) / 255.0


def gmm_residual_variance(gen: GMMGenerator, images: np.ndarray) -> float:
    """Mean squared distance per dimension of the training images from the PCA subspace."""
    g = gen.trained_arrays()
    c = g["pca_components"].astype(np.float64)
    total = 0.0
    for i in range(0, len(images), 5000):  # in chunks: 60,000 float64 images are 376 MB
        x = _pixels(images[i:i + 5000]) - g["pca_mean"]
        r = x - (x @ c.T) @ c
        total += float((r * r).sum())
    s2: float = max(total / (len(images) * (c.shape[1] - c.shape[0])), 1e-12)
    return s2


def gmm_log_likelihood(gen: GMMGenerator, images: np.ndarray, labels: np.ndarray, s2: float) -> np.ndarray:
    from scipy.special import logsumexp

    images, labels = check_images_labels(images, labels)
    g = gen.trained_arrays()
    x = _pixels(images) - g["pca_mean"]
    c = g["pca_components"].astype(np.float64)
    d, big_d = c.shape[0], x.shape[1]
    z = x @ c.T
    r = x - z @ c
    out: np.ndarray = -0.5 * (big_d - d) * np.log(2 * np.pi * s2) - 0.5 * (r * r).sum(1) / s2
    for y in np.unique(labels):
        rows = labels == y
        if not g["fitted"][y]:
            raise BadInput(f"gmm: no training images of class {y}; fix: score only trained classes")
        w = g["weights"][y]
        terms = []
        for j in np.flatnonzero(w > 0):
            L = g["chols"][y, j]
            sol = np.linalg.solve(L, (z[rows] - g["means"][y, j]).T)  # L^-1 (z - mu)
            terms.append(np.log(w[j]) - 0.5 * (sol * sol).sum(0) - np.log(np.diag(L)).sum() - 0.5 * d * np.log(2 * np.pi))
        out[rows] += logsumexp(np.stack(terms), axis=0)
    return out


def vae_elbo(gen: VAEGenerator, images: np.ndarray, labels: np.ndarray, samples: int = ELBO_SAMPLES, seed: int = 0) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    images, labels = check_images_labels(images, labels)
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y1h = F.one_hot(torch.from_numpy(labels), NUM_CLASSES).float()
    g = torch.Generator().manual_seed(int(seed))
    net = gen.net.eval()
    with torch.inference_mode():
        mu, logvar = net.encode(x, y1h)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
        rec = torch.zeros(len(x), dtype=torch.float64)
        for _ in range(samples):
            z = mu + torch.randn(mu.shape, generator=g) * (0.5 * logvar).exp()
            logits = net.decode(z, y1h)
            rec += -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).double()
    elbo: np.ndarray = (rec / samples - kl.double()).numpy()
    return elbo


def fit_and_score(kind: str, hparams: dict[str, Any], seed: int, train_x: np.ndarray, train_y: np.ndarray,
                  gen_x: np.ndarray, gen_y: np.ndarray) -> tuple[np.ndarray, float]:
    """Fit a generator of `kind` on (train_x, train_y) with `seed`; return log p(gen_x | gen_y)
    under it (see the module doc) and the fit's seconds."""
    from .spec import build_generator

    likelihood_kind(kind)
    t = time.perf_counter()
    gen = build_generator(kind, hparams).fit(train_x, train_y, seed=seed)
    seconds = time.perf_counter() - t
    if isinstance(gen, GMMGenerator):
        return gmm_log_likelihood(gen, gen_x, gen_y, gmm_residual_variance(gen, train_x)), seconds
    assert isinstance(gen, VAEGenerator), kind  # likelihood_kind admits these two
    return vae_elbo(gen, gen_x, gen_y), seconds
