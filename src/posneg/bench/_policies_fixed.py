"""The fixed baselines of `posneg bench policies` and the training loop every runner shares.

``none`` (plain cross-entropy), ``mixup`` and ``cutmix`` (posneg's modules, soft-target
cross-entropy as `posneg bench mixing`) and ``randaugment`` (images only). The loop
(:func:`train`) is Adam with a cosine decay to 0 over ``ctx.epochs`` passes, the bench mixing
recipe; a runner passes its own per-batch loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from posneg.augment.randaugment import RandAugment
from posneg.bench._classifier import expected_calibration_error, predict, soft_cross_entropy
from posneg.bench._policy_context import PolicyContext, PolicyResult, PolicyRunner
from posneg.mixing.cutmix import CutMix
from posneg.mixing.mixup import MixUp

__all__ = ["RUNNERS", "BatchLoss", "build_model", "score", "train"]

#: ``loss(model, xb, yb, step) -> scalar``: one mini-batch's training loss.
BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]


def build_model(ctx: PolicyContext, seed_offset: int = 0) -> nn.Module:
    """``ctx.make_model()`` initialised under the run's seed, leaving the global RNG as it was."""
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(ctx.seed + seed_offset)
        model = ctx.make_model()
    return model.to(ctx.device)


def score(model: nn.Module, ctx: PolicyContext) -> tuple[float, float]:
    """Test accuracy and 15-bin ECE."""
    model.eval()
    probs = predict(model, ctx.test_x.to(ctx.device))
    y = ctx.test_y.to(ctx.device)
    return float((probs.argmax(1) == y).double().mean()), expected_calibration_error(probs, y)


def train(
    ctx: PolicyContext,
    gen: torch.Generator,
    model: nn.Module,
    loss_fn: BatchLoss,
    *,
    epochs: int | None = None,
    extra: Iterable[nn.Parameter] = (),
    after_step: Callable[[int], None] | None = None,
    lr: float | None = None,
    extra_lr: float | None = None,
) -> tuple[float, ...]:
    """Train ``model`` on ``ctx``'s train split; return the per-epoch test accuracy.

    Adam (lr ``ctx.lr``, weight decay 1e-4) on the model's and ``extra`` parameters, cosine decay
    to 0 over all steps (``extra`` at ``extra_lr``, default the same lr); batches from one
    permutation per epoch drawn from ``gen``.
    """
    n_epochs = ctx.epochs if epochs is None else epochs
    base_lr = ctx.lr if lr is None else lr
    groups: list[dict[str, object]] = [{"params": list(model.parameters())}]
    extra_params = list(extra)
    if extra_params:
        groups.append({"params": extra_params, "lr": base_lr if extra_lr is None else extra_lr})
    opt = torch.optim.Adam(groups, lr=base_lr, weight_decay=1e-4)
    x, y = ctx.train_x.to(ctx.device), ctx.train_y.to(ctx.device)
    n = x.shape[0]
    bs = min(ctx.batch_size, n)
    per_epoch = math.ceil(n / bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, n_epochs * per_epoch))
    curve: list[float] = []
    step = 0
    for _ in range(n_epochs):
        model.train()
        perm = torch.randperm(n, device=ctx.device, generator=gen)
        for i in range(per_epoch):
            idx = perm[i * bs : (i + 1) * bs]
            if idx.numel() < 2:
                continue  # mixing and BatchNorm need two samples
            loss = loss_fn(model, x[idx], y[idx], step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if after_step is not None:
                after_step(step)
        curve.append(score(model, ctx)[0])
    return tuple(curve)


def _run(
    ctx: PolicyContext, gen: torch.Generator, loss_fn: BatchLoss, notes: str = ""
) -> PolicyResult:
    start = time.perf_counter()
    model = build_model(ctx)
    curve = train(ctx, gen, model, loss_fn)
    acc, ece = score(model, ctx)
    return PolicyResult(acc, ece, time.perf_counter() - start, curve, notes)


def _none(ctx: PolicyContext, gen: torch.Generator) -> PolicyResult:
    return _run(ctx, gen, lambda m, xb, yb, s: F.cross_entropy(m(xb), yb))


def _mixing(module: nn.Module) -> PolicyRunner:
    def runner(ctx: PolicyContext, gen: torch.Generator) -> PolicyResult:
        def loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, s: int) -> torch.Tensor:
            mixed = module(xb, yb, generator=gen)
            return soft_cross_entropy(m(mixed.x), cast(torch.Tensor, mixed.targets))

        return _run(ctx, gen, loss)

    return runner


def _mixup(ctx: PolicyContext, gen: torch.Generator) -> PolicyResult:
    return _mixing(MixUp(alpha=1.0, num_classes=ctx.num_classes))(ctx, gen)


def _cutmix(ctx: PolicyContext, gen: torch.Generator) -> PolicyResult:
    return _mixing(CutMix(alpha=1.0, num_classes=ctx.num_classes))(ctx, gen)


def _randaugment(ctx: PolicyContext, gen: torch.Generator) -> PolicyResult:
    if ctx.kind != "image":
        nan = float("nan")
        return PolicyResult(nan, nan, 0.0, (), "skipped: RandAugment takes images only")
    aug = RandAugment()

    def loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, s: int) -> torch.Tensor:
        return F.cross_entropy(m(aug(xb, generator=gen)), yb)

    return _run(ctx, gen, loss)


#: The fixed baselines.
RUNNERS: dict[str, PolicyRunner] = {
    "none": _none,
    "mixup": _mixup,
    "cutmix": _cutmix,
    "randaugment": _randaugment,
}
