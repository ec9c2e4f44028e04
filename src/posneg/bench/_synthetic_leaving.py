"""The Leaving Reality section of `posneg bench synthetic`: effective robustness on shifted digits.

Bansal and Grover, arXiv 2302.02503 (:mod:`posneg.synthetic.leaving_reality`). The card's small
CPU check: classifiers on ``n`` real digits per class against the same classifiers on real ∪
generated (one generated image per real one, same label, through
:class:`LeavingRealityAugmentation`), evaluated on the held-out digits (ID) and on shifted copies
of them: rotation by ±20° (random sign per image), blur (3x3 box) and stroke thickening (3x3
grey dilation); the shifted accuracy is the mean over the three. Effective robustness is taken
against a logit-axis line fitted over real-only models of varied capacity and training length
(linear and MLP heads, 3-40 epochs).

What stands in for what: the generator is the stand-in class-conditional DDPM (its pool of
samples shared with the other sections); the paper's text prompt is drawn from the 80 CLIP
templates exactly as the library does, but the stand-in is conditioned on the class only and
ignores it (a text-to-image model would read it).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posneg.bench._report import fmt
from posneg.bench._synthetic_context import SyntheticContext
from posneg.bench._synthetic_groups import accuracy, fit, mlp, pool
from posneg.synthetic.leaving_reality import (
    LeavingRealityAugmentation,
    effective_robustness,
)

__all__ = ["SECTIONS", "claims", "shifted"]

#: (real per class, pool per class, epochs of the compared models)
SETTINGS = {"default": (30, 40, 30), "demo": (3, 4, 1)}
#: the reference family: (hidden width, 0 = linear; epochs)
REFERENCE = {
    "default": ((0, 5), (0, 15), (0, 40), (32, 3), (32, 10), (64, 30)),
    "demo": ((0, 1), (32, 1)),
}
NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def shifted(x: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
    """The three shifts of ``(N, 1, 8, 8)`` digits in ``[0, 1]``: rotate, blur, thicken."""
    n = len(x)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    a = sign * math.radians(20.0)
    cos, sin = torch.cos(a), torch.sin(a)
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1),
                         torch.stack([sin, cos, torch.zeros(n)], 1)], 1)  # fmt: skip
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    rot = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    return {"rotate": rot, "blur": blur, "thicken": thick}


def _accs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, shifts: dict[str, torch.Tensor]
) -> tuple[float, float]:
    return accuracy(model, x, y), sum(accuracy(model, s, y) for s in shifts.values()) / len(shifts)


def leaving_section(ctx: SyntheticContext, g: torch.Generator) -> dict[str, Any]:
    """ID / shifted accuracy and ER of real-only and real ∪ generated models on one seed."""
    per_class, per_pool, epochs = SETTINGS[ctx.preset]
    idx = torch.cat([
        torch.nonzero(ctx.train_y == c).flatten()[
            torch.randperm(int((ctx.train_y == c).sum()), generator=g)[:per_class]
        ]
        for c in range(ctx.num_classes)
    ])  # fmt: skip
    xr, yr = (ctx.train_x[idx] + 1) / 2, ctx.train_y[idx]
    tx, ty = (ctx.test_x + 1) / 2, ctx.test_y
    shifts = shifted(tx, g)
    px, py = pool(ctx, per_pool)
    used = torch.zeros(len(py), dtype=torch.bool)

    def generate(*, images: torch.Tensor, labels: torch.Tensor, prompts: list[str],
                 generator: torch.Generator | None) -> torch.Tensor:  # fmt: skip
        out = torch.empty_like(images)
        for i, c in enumerate(labels.tolist()):  # a fresh pool image of the class per request
            j = int(torch.nonzero((py == c) & ~used).flatten()[0])
            used[j] = True
            out[i] = px[j]
        return out

    aug = LeavingRealityAugmentation(ratio=1.0, class_names=NAMES)
    data = aug(xr, yr, generate=generate, generator=g)
    ref = []
    for width, ep in REFERENCE[ctx.preset]:
        m = fit(mlp(64, 10, width, seed=ctx.seed), xr, yr, epochs=ep, g=g)
        ref.append(_accs(m, tx, ty, shifts))
    ref_id, ref_shift = [a for a, _ in ref], [b for _, b in ref]
    metrics: dict[str, Any] = {}
    for name, (x, y) in (("real", (xr, yr)), ("real_gen", (data.images, data.labels))):
        m = fit(mlp(64, 10, 64, seed=ctx.seed), x, y, epochs=epochs, g=g)
        acc_id, acc_shift = _accs(m, tx, ty, shifts)
        er = effective_robustness(acc_id=acc_id, acc_shift=acc_shift, ref_id=ref_id,
                                  ref_shift=ref_shift)  # fmt: skip
        metrics[f"{name}_id_acc"] = acc_id
        metrics[f"{name}_shift_acc"] = acc_shift
        metrics[f"{name}_er"] = float(er[0])
    metrics["reference_models"] = float(len(ref))
    metrics["setting"] = (
        f"{per_class} real digits per class + 1 generated per real; MLP 64-64-10, {epochs} "
        f"epochs; shifts rotate ±20°, blur, thicken; e.g. prompt {data.prompts[0]!r} (ignored "
        "by the class-conditional stand-in)"
    )
    metrics["_images"] = torch.cat([data.images[data.generated][:8], shifts["rotate"][:8]]) * 2 - 1
    metrics["_grid_rows"] = 2
    return metrics


def claims(agg: dict[str, tuple[float, float]]) -> list[str]:
    """Real + generated models lie above the real-only line (ER > 0) and beat real-only."""
    if "leaving/real_gen_er" not in agg:
        return []
    er, er0 = agg["leaving/real_gen_er"], agg["leaving/real_er"]
    sh, sh0 = agg["leaving/real_gen_shift_acc"], agg["leaving/real_shift_acc"]
    ok = er[0] > 0 and er[0] > er0[0]
    return [
        "Leaving Reality claim (real + generated training raises effective robustness under "
        f"shift): ER real+generated {fmt(*er)} vs real-only {fmt(*er0)} (logit line over "
        f"real-only models); shifted accuracy {fmt(*sh)} vs {fmt(*sh0)}: "
        f"{'as claimed' if ok else 'NOT as claimed'}."
    ]


SECTIONS = {"leaving": leaving_section}
