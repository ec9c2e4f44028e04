"""AdAutoMix runners of `posneg bench policies`: ``adautomix`` and ``adautomix_coop``.

The classifier ``q`` is ``ctx.make_model()``; its EMA copy is the teacher ``k`` (frozen, BN in
training mode as in the code). The generator reads the teacher's first stage (``features[:4]``
of the bench CNNs: conv-BN-ReLU-pool, 8x8 maps for 32x32 digits, 20 steps for MNIST-1D) and its
masks are upsampled to the input size. One Adam optimiser over ``q`` and the generator (the code
uses one SGD), one backward of ``L_q + L_G`` per step. ``adautomix`` alternates adversarial and
cooperative generator steps as the code does; ``adautomix_coop`` takes the cooperative ``+L_k``
step every time (AutoMix-like, the card's CPU comparison). Stand-ins: one classifier head for the
code's ``head_one``/``head_mix`` pair; EMA momentum cosine from 0.99 to 0.9999 (the code's 0.999
to 0.999999 over 200k steps would leave the teacher at its initialisation over a few hundred).
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from posneg.bench._policies_fixed import build_model, score, train
from posneg.bench._policy_context import PolicyContext, PolicyResult, PolicyRunner
from posneg.mixing.adautomix import AdAutoMix, adautomix_momentum, ema_update

__all__ = ["RUNNERS"]

BASE_MOMENTUM, END_MOMENTUM = 0.99, 0.9999


def _stage(model: nn.Module) -> nn.Module:
    feats = getattr(model, "features", None)
    if not isinstance(feats, nn.Sequential) or len(feats) < 4:
        raise TypeError("AdAutoMix runner: the model needs a `features` nn.Sequential stage")
    return feats[:4]


def _channels(stage: nn.Module) -> int:
    for m in stage.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            return m.out_channels
    raise TypeError("AdAutoMix runner: no convolution in the first stage")


def _runner(*, cooperative_only: bool) -> PolicyRunner:
    def run(ctx: PolicyContext, gen: torch.Generator) -> PolicyResult:
        start = time.perf_counter()
        q = build_model(ctx)
        k = copy.deepcopy(q)
        for p in k.parameters():
            p.requires_grad_(False)
        stage = _stage(k)
        init = torch.Generator().manual_seed(ctx.seed + 7919)
        step_mod = AdAutoMix(_channels(stage), generator=init).to(ctx.device)
        n = ctx.train_x.shape[0]
        total = max(1, ctx.epochs * -(-n // min(ctx.batch_size, n)))

        def loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, s: int) -> torch.Tensor:
            k.train()
            out = step_mod(
                xb,
                yb,
                classifier=m,
                teacher=k,
                teacher_features=stage,
                adversarial=(not cooperative_only) and s % 2 == 0,
                num_classes=ctx.num_classes,
                generator=gen,
            )
            return out.total

        def after(s: int) -> None:
            ema_update(
                k, q, momentum=adautomix_momentum(s / total, base=BASE_MOMENTUM, end=END_MOMENTUM)
            )

        curve = train(ctx, gen, q, loss, extra=step_mod.parameters(), after_step=after)
        acc, ece = score(q, ctx)
        note = "cooperative +L_k every step" if cooperative_only else "adversarial/cooperative"
        return PolicyResult(acc, ece, time.perf_counter() - start, curve, note)

    return run


#: AdAutoMix (the code's alternation) and its cooperative-only ablation.
RUNNERS: dict[str, PolicyRunner] = {
    "adautomix": _runner(cooperative_only=False),
    "adautomix_coop": _runner(cooperative_only=True),
}
