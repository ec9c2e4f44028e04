"""The GDA section of `posneg bench synthetic`: train/test gap against the synthetic ratio.

Zheng, Wu, Li, "Toward Understanding Generative Data Augmentation", NeurIPS 2023. The card's
small CPU check on the 8x8 digits: ``m_S`` real images per class (a few, then more), plus
``m_G = gamma * m_S`` per class drawn from the stand-in class-conditional DDPM
(:class:`posneg.bench._synthetic_context.DigitSampler`; trained on the bench's whole train
split, so, unlike the paper's generator fitted on ``S`` alone, it has seen more real digits
than the ``m_S`` the classifier gets: said in the report). The learner is a multinomial
logistic regression on the 64 pixels (full batch, uniform weight on every sample of
``S~ = S u S_G``, like the bGMM learner's average over ``S~``); the gap is
``|err(S~) - err(test)|`` (against the error on the *augmented* set, as in the paper).

Beside it, the bGMM prediction (:func:`posneg.synthetic.gda.bgmm_generalization_gap`) at the
same real size ``m = 10 * m_S``, the same gammas and ``d = 64`` (the pixel count), with the
official Gaussian naive Bayes generator fitted on ``S``. The claim checked is the direction:
at small ``m_S`` the gap shrinks as gamma grows, and the benefit fades at larger ``m_S``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from posneg.bench._report import fmt
from posneg.bench._synthetic_context import SyntheticContext
from posneg.synthetic.gda import bgmm_generalization_gap

__all__ = ["SECTIONS", "claims"]

SETTINGS = {"default": ((5, 20), (0.0, 1.0, 2.0)), "demo": ((3,), (0.0, 1.0))}
BGMM = {"default": (50, 500), "demo": (4, 100)}  # repeats, test size


def _fit_logreg(x: torch.Tensor, y: torch.Tensor, steps: int) -> torch.Tensor:
    """Multinomial logistic regression (weights with a bias column), Adam, tiny L2."""
    xb = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    w = torch.zeros(xb.shape[1], 10, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(steps):
        loss = F.cross_entropy(xb @ w, y) + 1e-4 * (w[:-1] ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return w.detach()


def _err(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    logits = torch.cat([x, torch.ones(len(x), 1)], dim=1) @ w
    return float((logits.argmax(1) != y).float().mean())


def _real_subset(ctx: SyntheticContext, per_class: int, g: torch.Generator) -> torch.Tensor:
    idx = []
    for c in range(ctx.num_classes):
        members = torch.nonzero(ctx.train_y == c).flatten()
        idx.append(members[torch.randperm(len(members), generator=g)[:per_class]])
    return torch.cat(idx)


def gda_section(ctx: SyntheticContext, g: torch.Generator) -> dict[str, Any]:
    """Measured gap and test error per (m_S, gamma), and the bGMM prediction beside it."""
    sizes, gammas = SETTINGS[ctx.preset]
    steps = 40 if ctx.preset == "demo" else 150
    # one pool of generated digits per seed, class-balanced, for the largest m_S * gamma
    need = int(max(sizes) * max(gammas))
    labels = torch.arange(ctx.num_classes).repeat_interleave(need)
    pool = ctx.sampler.sample(labels, generator=g).flatten(1) if need else torch.empty(0, 64)
    test_x, test_y = ctx.test_x.flatten(1), ctx.test_y
    out: dict[str, Any] = {}
    for m_s in sizes:
        real = _real_subset(ctx, m_s, g)
        xr, yr = ctx.train_x[real].flatten(1), ctx.train_y[real]
        for gamma in gammas:
            n_g = int(gamma * m_s)
            pick = torch.cat(
                [torch.arange(c * need, c * need + n_g) for c in range(ctx.num_classes)]
            )
            xs = torch.cat([xr, pool[pick]])
            ys = torch.cat([yr, labels[pick]])
            w = _fit_logreg(xs, ys, steps)
            test_err = _err(w, test_x, test_y)
            key = f"m{m_s}_gamma{gamma:g}"
            out[f"{key}/test_err"] = test_err
            out[f"{key}/gap"] = abs(_err(w, xs, ys) - test_err)
        repeats, test_size = BGMM[ctx.preset]
        pred = bgmm_generalization_gap(
            m=10 * m_s,
            d=64,
            gammas=gammas,
            repeats=repeats,
            test_size=test_size,
            generator=torch.Generator().manual_seed(ctx.seed),
        ).zero_one.mean(1)
        for gamma, p in zip(gammas, pred.tolist(), strict=True):
            out[f"m{m_s}_gamma{gamma:g}/bgmm_gap"] = p
    out["setting"] = (
        f"m_S per class {list(sizes)}, gamma {list(gammas)}, logistic regression {steps} Adam "
        f"steps; bGMM d=64, m=10*m_S, {BGMM[ctx.preset][0]} repeats; generated digits from the "
        "stand-in DDPM trained on the whole train split"
    )
    if need:
        out["_images"] = pool.reshape(-1, 1, 8, 8)[:: need // 4 or 1][:40]
        out["_grid_rows"] = 4
    return out


def claims(agg: dict[str, tuple[float, float]]) -> list[str]:
    """The GDA direction: the gap falls with gamma at small m_S, less (or not) at large m_S."""
    keys = [k for k in agg if k.startswith("gda/") and k.endswith("/gap")]
    if not keys:
        return []
    sizes = sorted({int(k.split("/")[1].split("_")[0][1:]) for k in keys})
    gammas = sorted({float(k.split("/")[1].split("_gamma")[1]) for k in keys})
    lo, hi = gammas[0], gammas[-1]
    lines = []
    for kind, suffix in (("measured digits", "gap"), ("bGMM prediction", "bgmm_gap")):
        parts = []
        drops = []
        for m in sizes:
            a = agg[f"gda/m{m}_gamma{lo:g}/{suffix}"]
            b = agg[f"gda/m{m}_gamma{hi:g}/{suffix}"]
            drops.append(a[0] - b[0])
            parts.append(f"m_S={m}: {fmt(*a)} -> {fmt(*b)}")
        shrinks = drops[0] > 0
        fades = len(drops) < 2 or drops[-1] < drops[0]
        verdict = "as claimed" if shrinks and fades else "NOT as claimed"
        lines.append(
            f"GDA claim (gap shrinks with gamma at small m_S, the benefit fades as m_S grows), "
            f"{kind}, gamma {lo:g} -> {hi:g}: " + "; ".join(parts) + f": {verdict}."
        )
    return lines


SECTIONS = {"gda": gda_section}
