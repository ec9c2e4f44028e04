"""MADAug runners for `posneg bench policies` (and the training loop the pol2 runners share).

- ``madaug``: the policy trained by the bi-level step (``bi_epochs = 0``) every ``search_freq``
  steps, on a validation batch of 16 from ``ctx.val_x``; the tanh curriculum.
- ``madaug_released``: the released script's behaviour (``bi_epochs`` past the budget): the
  randomly initialised policy, never trained, with the curriculum.
- ``uniform_ops``: a RandAugment/TrivialAugment-like fixed policy on the same op space (2 distinct
  ops uniform, magnitude ~ U(0, 1), every sample): the fixed baseline that also runs on sequences.

Scaled to the bench budget (say so in the notes): the curriculum's time constant is
``40 * epochs / 240`` (the same fraction of training as 40 of the official 240 epochs); the
inner step is plain SGD at ``ctx.lr`` (the official code unrolls its SGD); exploit T = 3.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from posneg.augment.madaug import (
    MADAugPolicy,
    apply_ops,
    bilevel_validation_loss,
    curriculum_split,
    ops_for,
)
from posneg.bench._classifier import expected_calibration_error, predict
from posneg.bench._policy_context import PolicyContext, PolicyResult, PolicyRunner

__all__ = ["RUNNERS", "build_model", "fit", "score"]

#: ``loss(model, xb, yb, step, epoch) -> scalar``.
StepLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, int, int], torch.Tensor]


def build_model(ctx: PolicyContext) -> nn.Module:
    """``ctx.make_model()`` initialised under ``ctx.seed`` without moving the global RNG."""
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(ctx.seed)
        model = ctx.make_model()
    return model.to(ctx.device)


def score(model: nn.Module, ctx: PolicyContext) -> tuple[float, float]:
    """Test accuracy and 15-bin ECE."""
    model.eval()
    probs = predict(model, ctx.test_x.to(ctx.device))
    y = ctx.test_y.to(ctx.device)
    return float((probs.argmax(1) == y).double().mean()), expected_calibration_error(probs, y)


def fit(
    ctx: PolicyContext, gen: torch.Generator, model: nn.Module, loss_fn: StepLoss
) -> tuple[float, ...]:
    """The protocol's loop: Adam (``ctx.lr``, wd 1e-4), cosine decay to 0, one permutation per
    epoch from ``gen``; returns the per-epoch test accuracy."""
    opt = torch.optim.Adam(model.parameters(), lr=ctx.lr, weight_decay=1e-4)
    x, y = ctx.train_x.to(ctx.device), ctx.train_y.to(ctx.device)
    n = x.shape[0]
    bs = min(ctx.batch_size, n)
    per_epoch = math.ceil(n / bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, ctx.epochs * per_epoch))
    curve: list[float] = []
    step = 0
    for epoch in range(ctx.epochs):
        perm = torch.randperm(n, device=ctx.device, generator=gen)
        for i in range(per_epoch):
            idx = perm[i * bs : (i + 1) * bs]
            if idx.numel() < 2:
                continue
            model.train()
            loss = loss_fn(model, x[idx], y[idx], step, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        curve.append(score(model, ctx)[0])
    return tuple(curve)


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    feats = getattr(model, "features", None)
    if not callable(feats):
        raise TypeError("madaug runner: the model needs a `features` module (penultimate features)")
    return feats(x)


def _feature_dim(ctx: PolicyContext, model: nn.Module) -> int:
    model.eval()
    with torch.no_grad():
        return int(_features(model, ctx.train_x[:2].to(ctx.device)).shape[1])


def _madaug(*, train_policy: bool) -> PolicyRunner:
    def runner(ctx: PolicyContext, gen: torch.Generator) -> PolicyResult:
        start = time.perf_counter()
        model = build_model(ctx)
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(ctx.seed + 1)
            policy = MADAugPolicy(_feature_dim(ctx, model), kind=ctx.kind, temperature=3.0).to(
                ctx.device
            )
        h_opt = torch.optim.Adam(policy.parameters(), lr=1e-3, weight_decay=1e-3)
        vx, vy = ctx.val_x.to(ctx.device), ctx.val_y.to(ctx.device)
        scale = 40.0 * ctx.epochs / 240.0
        search_freq = 3
        snapshot = [copy.deepcopy(model)]

        def loss(
            m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, step: int, epoch: int
        ) -> torch.Tensor:
            if train_policy and step % search_freq == 0:
                m.eval()  # as the official predict_aug_params
                with torch.no_grad():
                    feats = _features(m, xb)
                vidx = torch.randint(vx.shape[0], (16,), generator=gen, device=ctx.device)
                x_bar = policy.explore(xb, feats, generator=gen)
                val = bilevel_validation_loss(m, x_bar, yb, vx[vidx], vy[vidx], inner_lr=ctx.lr)
                h_opt.zero_grad(set_to_none=True)
                policy_grads = torch.autograd.grad(val, list(policy.parameters()))
                for p, g in zip(policy.parameters(), policy_grads, strict=True):
                    p.grad = g
                h_opt.step()
                snapshot[0] = copy.deepcopy(m)
            k = int(curriculum_split(epoch, scale=scale) * xb.shape[0])
            if k > 0:
                snap = snapshot[0].eval()
                with torch.no_grad():
                    feats = _features(snap, xb[:k])
                xb = torch.cat([policy(xb[:k], feats, generator=gen), xb[k:]])
            m.train()
            return F.cross_entropy(m(xb), yb)

        curve = fit(ctx, gen, model, loss)
        acc, ece = score(model, ctx)
        how = "trained every 3 steps" if train_policy else "untrained (released)"
        note = f"curriculum tanh(e/{scale:.2g}); policy {how}"
        return PolicyResult(acc, ece, time.perf_counter() - start, curve, note)

    return runner


def _uniform_ops(ctx: PolicyContext, gen: torch.Generator) -> PolicyResult:
    start = time.perf_counter()
    model = build_model(ctx)
    k_all = len(ops_for(ctx.train_x[:1]))

    def loss(
        m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, step: int, epoch: int
    ) -> torch.Tensor:
        b = xb.shape[0]
        ops = torch.rand(b, k_all, generator=gen, device=xb.device).argsort(1)[:, :2].T
        mags = torch.rand(2, b, generator=gen, device=xb.device)
        signs = torch.randint(2, (2, b), generator=gen, device=xb.device).float() * 2 - 1
        for n in range(2):
            xb = apply_ops(xb, ops[n], mags[n], signs[n])
        return F.cross_entropy(m(xb), yb)

    curve = fit(ctx, gen, model, loss)
    acc, ece = score(model, ctx)
    return PolicyResult(acc, ece, time.perf_counter() - start, curve, "2 distinct ops, m ~ U(0, 1)")


#: MADAug as trained here, as released, and the uniform fixed policy on the same ops.
RUNNERS: dict[str, PolicyRunner] = {
    "madaug": _madaug(train_policy=True),
    "madaug_released": _madaug(train_policy=False),
    "uniform_ops": _uniform_ops,
}
