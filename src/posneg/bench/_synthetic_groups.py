"""Shared pieces of the From Fake to Real, Leaving Reality and ASPIRE sections (bench synthetic).

- :func:`pool`: class-conditional samples of the stand-in DDPM (the context's
  :class:`~posneg.bench._synthetic_context.DigitSampler`, with at most :data:`POOL_STEPS`
  DDIM steps to fit the CPU budget), ``per_class`` per digit, drawn once per seed and shared by
  the three sections (cached for the last seed only). Images ``(N, 1, 8, 8)`` in ``[0, 1]``.
- :func:`with_border`: the spurious attribute of :mod:`posneg.bench._spurious` (a one-pixel
  border of intensity 0.75 = bright = 1 or 0.25 = dark = 0 around the 8x8 digit, 10x10);
  it is what a group prompt ("a digit ... with a bright frame") would ask the generator for:
  the stand-in DDPM is class-conditional only, so the attribute is pasted on its samples.
- :func:`mlp` / :func:`fit`: the small classifier every section trains (seeded init, Adam,
  mini-batches from the section's generator).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posneg.bench._synthetic_context import DigitSampler, SyntheticContext

__all__ = ["BRIGHT", "DARK", "accuracy", "fit", "mlp", "pool", "with_border"]

BRIGHT, DARK = 0.75, 0.25
POOL_STEPS = 10
_CACHE: dict[tuple[int, str, int, int, bool], tuple[torch.Tensor, torch.Tensor]] = {}


def pool(ctx: SyntheticContext, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` DDPM samples of every digit for this seed: images in ``[0, 1]``, labels."""
    steps = min(ctx.sampler.steps, POOL_STEPS)
    key = (ctx.seed, ctx.preset, per_class, steps, ctx.trained)
    if key not in _CACHE:
        _CACHE.clear()
        sampler = DigitSampler(
            ctx.ddpm, ctx.scheduler, steps=steps, guidance=ctx.sampler.guidance,
            null_class=ctx.null_class,
        )  # fmt: skip
        labels = torch.arange(ctx.num_classes).repeat_interleave(per_class)
        g = torch.Generator().manual_seed(10_000 + ctx.seed)
        x = sampler.sample(labels, generator=g)
        _CACHE[key] = ((x + 1) / 2, labels)
    return _CACHE[key]


def with_border(x: torch.Tensor, attribute: torch.Tensor) -> torch.Tensor:
    """``(N, 1, 8, 8)`` digits in ``[0, 1]`` -> ``(N, 1, 10, 10)`` with a bright/dark border."""
    level = torch.where(attribute.bool(), BRIGHT, DARK).to(x.dtype)
    out = level[:, None, None, None].expand(-1, 1, 10, 10).clone()
    out[:, :, 1:9, 1:9] = x
    return out


def mlp(in_features: int, classes: int, width: int = 64, *, seed: int) -> nn.Module:
    """A two-layer MLP, initialised from ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if width == 0:
            return nn.Sequential(nn.Flatten(), nn.Linear(in_features, classes))
        return nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, classes)
        )


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    g: torch.Generator,
    lr: float = 3e-3,
    batch: int = 64,
) -> nn.Module:
    """Adam cross-entropy, shuffled mini-batches; returns the model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    model.train()
    for _ in range(epochs):
        for part in torch.randperm(len(y), generator=g).split(batch):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[part]), y[part]).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy."""
    return float((model(x).argmax(1) == y).float().mean())
