"""Invariance-constrained augmentation runners for `posneg bench policies`.

- ``invariance``: primal-dual with MH (``mh_steps = 2``), the official default;
- ``invariance_uniform``: the paper's "uniform" ablation (``mh_steps = 1``: no MH move, still
  gamma-weighted).

Scaled to the bench budget (the notes say so): the official dual step ``eta = 1e-4`` over
200 CIFAR epochs (about 78k steps) sums to ``eta * steps ~ 7.8``; here ``eta = 7.8 / steps`` so that
gamma can move as far within ``ctx.epochs``. The margin is ``eps = 0.5`` (cross-entropy units;
the official 0.8 / 1.3 are for CIFAR-10 / -100). The classifier's optimiser is the protocol's
Adam (the official code uses SGD with grad-clip 5).
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from posneg.augment.invariance import InvarianceSampler
from posneg.bench._policies_madaug import build_model, fit, score
from posneg.bench._policy_context import PolicyContext, PolicyResult, PolicyRunner

__all__ = ["MARGIN", "RUNNERS"]

#: The constraint level used by the runners.
MARGIN = 0.5


def _invariance(mh_steps: int) -> PolicyRunner:
    def runner(ctx: PolicyContext, gen: torch.Generator) -> PolicyResult:
        start = time.perf_counter()
        model = build_model(ctx)
        total = ctx.epochs * math.ceil(
            ctx.train_x.shape[0] / min(ctx.batch_size, ctx.train_x.shape[0])
        )
        sampler = InvarianceSampler(
            kind=ctx.kind, mh_steps=mh_steps, lr=7.8 / max(1, total), margin=MARGIN
        )
        gammas: list[float] = []

        def loss(
            m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, step: int, epoch: int
        ) -> torch.Tensor:
            x_aug = sampler.sample(m, xb, yb, generator=gen)
            primal, aug = sampler.loss(m(xb), m(x_aug), yb)
            # the official dual step follows the primal step; the loop steps after this returns,
            # and the dual step only reads the detached batch value, so the order is the same
            gammas.append(sampler.update(aug))
            return primal

        curve = fit(ctx, gen, model, loss)
        acc, ece = score(model, ctx)
        counts = sampler.op_counts_.tolist()
        note = (
            f"mh_steps={mh_steps}, eps={MARGIN}, eta={sampler.lr:.2g}; final gamma "
            f"{gammas[-1] if gammas else 0.0:.3f}, max {max(gammas, default=0.0):.3f}; "
            f"op counts {counts}"
        )
        return PolicyResult(acc, ece, time.perf_counter() - start, curve, note)

    return runner


#: Primal-dual MH (2 steps) and the uniform ablation (1 step).
RUNNERS: dict[str, PolicyRunner] = {
    "invariance": _invariance(2),
    "invariance_uniform": _invariance(1),
}
