"""A small MLP GAN on 8x8 digits: the stand-in pretrained GAN of the "unlearn" section.

Generator ``z (16) -> 128 -> 128 -> 64 (tanh)``, discriminator ``64 -> 128 -> 128 -> 1``
(LeakyReLU 0.2), non-saturating GAN loss, Adam(1e-3, betas (0.5, 0.999)). Trained once per
(seed, config, data) and cached under ``~/.cache/posneg/generative/`` (a few seconds on CPU).
:func:`gan_step` is the one training step every stage uses (pretraining, EWC adaptation,
repulsion unlearning), with an optional extra generator loss.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "Z_DIM",
    "Discriminator",
    "Generator",
    "gan_step",
    "make_optimizers",
    "pretrained_gan",
    "sample_images",
]

Z_DIM = 16


class Generator(nn.Module):
    """``(N, Z_DIM)`` latents -> ``(N, 1, 8, 8)`` images in ``[-1, 1]``."""

    def __init__(self, z_dim: int = Z_DIM, hidden: int = 128) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 64),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(-1, 1, 8, 8)


class Discriminator(nn.Module):
    """``(N, 1, 8, 8)`` images -> ``(N, 1)`` logits."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def make_optimizers(
    g: nn.Module, d: nn.Module, lr: float = 1e-3
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    return (
        torch.optim.Adam(g.parameters(), lr=lr, betas=(0.5, 0.999)),
        torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999)),
    )


def gan_step(
    g: Generator,
    d: Discriminator,
    opts: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    real: torch.Tensor,
    *,
    generator: torch.Generator,
    g_extra: Callable[[], torch.Tensor] | None = None,
) -> float:
    """One D step (logistic loss) then one G step (non-saturating + ``g_extra()``); G's loss."""
    opt_g, opt_d = opts
    z = torch.randn(len(real), g.z_dim, generator=generator)
    with torch.no_grad():
        fake = g(z)
    d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    z = torch.randn(len(real), g.z_dim, generator=generator)
    for p in d.parameters():
        p.requires_grad_(False)
    g_loss = F.softplus(-d(g(z))).mean()
    total = g_loss + g_extra() if g_extra is not None else g_loss
    opt_g.zero_grad()
    total.backward()
    opt_g.step()
    for p in d.parameters():
        p.requires_grad_(True)
    return float(g_loss.detach())


def sample_images(g: Generator, n: int, *, generator: torch.Generator) -> torch.Tensor:
    """``n`` samples ``(n, 1, 8, 8)`` without gradients."""
    with torch.no_grad():
        return g(torch.randn(n, g.z_dim, generator=generator))


def _cache_dir() -> Path:
    """``$XDG_CACHE_HOME/posneg/generative``, else ``~/.cache/posneg/generative``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "posneg" / "generative"


def pretrained_gan(
    x: torch.Tensor, *, seed: int, steps: int = 3000, batch: int = 64, cache: bool = True
) -> tuple[Generator, Discriminator]:
    """The GAN trained on ``x`` (``(N, 1, 8, 8)`` in ``[-1, 1]``) for ``steps``, seeded, cached."""
    key = hashlib.sha256(
        json.dumps({"v": 1, "seed": seed, "steps": steps, "batch": batch, "z": Z_DIM}).encode()
        + x.detach().cpu().contiguous().numpy().tobytes()
    ).hexdigest()[:16]
    path = _cache_dir() / f"gan_{key}.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g, d = Generator(), Discriminator()
    if cache and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        g.load_state_dict(state["g"])
        d.load_state_dict(state["d"])
        return g.eval(), d.eval()
    gen = torch.Generator().manual_seed(seed)
    opts = make_optimizers(g, d)
    for _ in range(steps):
        idx = torch.randint(len(x), (batch,), generator=gen)
        gan_step(g, d, opts, x[idx], generator=gen)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"g": g.state_dict(), "d": d.state_dict()}, tmp)
        tmp.replace(path)
    return g.eval(), d.eval()
