"""Noise-mask runners of `posneg bench policies`: ``noise_mask`` and ``random_mask``.

The card's CPU protocol within the shared epoch budget: ``E - F`` epochs with the policy's mask
(``x * m``; objective ``mean(l) * CE``, one Adam over classifier and policy: the code uses SGD
with the policy at lr/10, here Adam at ``ctx.lr`` and ``ctx.lr / 10``), then ``F = max(1, E // 5)``
epochs of clean fine-tuning (lr / 3, the code's 0.001 after 0.1 scaled to Adam). ``random_mask``
is the same schedule with the mask cells drawn from Beta(1, 1) (uniform, no policy, plain CE):
the card's claim is that the learned policy beats random masking. Grid G = 8 (images, 32x32)
or 10 (MNIST-1D, 40 steps), blur kernel 5, sigma 2.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from posneg.augment.noise_mask import NoiseMaskPolicy, noise_mask_loss, sample_noise_mask
from posneg.bench._policies_fixed import build_model, score, train
from posneg.bench._policy_context import PolicyContext, PolicyResult, PolicyRunner

__all__ = ["RUNNERS"]


def _grid(ctx: PolicyContext) -> int:
    return 8 if ctx.kind == "image" else 10


def _finetune_epochs(ctx: PolicyContext) -> tuple[int, int]:
    ft = max(1, ctx.epochs // 5) if ctx.epochs > 1 else 0
    return ctx.epochs - ft, ft


def _clean(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, s: int) -> torch.Tensor:
    return F.cross_entropy(m(xb), yb)


def _noise_mask(ctx: PolicyContext, gen: torch.Generator) -> PolicyResult:
    start = time.perf_counter()
    model = build_model(ctx)
    ndim = 2 if ctx.kind == "image" else 1
    init = torch.Generator().manual_seed(ctx.seed + 104729)
    policy = NoiseMaskPolicy(ctx.train_x.shape[1], ndim=ndim, grid=_grid(ctx), generator=init).to(
        ctx.device
    )
    pre, ft = _finetune_epochs(ctx)

    def loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, s: int) -> torch.Tensor:
        policy.train()
        draw = policy(xb, generator=gen)
        return noise_mask_loss(m(draw.x), yb, draw.log_prob)

    curve = train(
        ctx, gen, model, loss, epochs=pre, extra=policy.parameters(), extra_lr=ctx.lr / 10
    )
    if ft:
        curve += train(ctx, gen, model, _clean, epochs=ft, lr=ctx.lr / 3)
    acc, ece = score(model, ctx)
    return PolicyResult(acc, ece, time.perf_counter() - start, curve, f"{pre} masked + {ft} clean")


def _random_mask(ctx: PolicyContext, gen: torch.Generator) -> PolicyResult:
    start = time.perf_counter()
    model = build_model(ctx)
    g = _grid(ctx)
    pre, ft = _finetune_epochs(ctx)

    def loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, s: int) -> torch.Tensor:
        cells = g ** (xb.dim() - 2)
        zeros = torch.zeros(xb.shape[0], cells, device=xb.device)
        mask, _ = sample_noise_mask(
            zeros, zeros, size=tuple(xb.shape[2:]), grid=g, kernel_size=5, sigma=2.0, generator=gen
        )
        return F.cross_entropy(m(xb * mask), yb)

    curve = train(ctx, gen, model, loss, epochs=pre)
    if ft:
        curve += train(ctx, gen, model, _clean, epochs=ft, lr=ctx.lr / 3)
    acc, ece = score(model, ctx)
    return PolicyResult(acc, ece, time.perf_counter() - start, curve, f"{pre} masked + {ft} clean")


#: The learned noise-mask policy and the random-mask control.
RUNNERS: dict[str, PolicyRunner] = {"noise_mask": _noise_mask, "random_mask": _random_mask}
