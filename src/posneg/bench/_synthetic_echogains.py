"""The EchoGAINS section of `posneg bench synthetic`: Dice on geometry-shifted sector images.

Van De Vyver et al., arXiv 2502.20100 (:mod:`posneg.synthetic.echogains`). The card's small CPU
check: digits drawn inside a fan-shaped sector (:mod:`posneg.bench._synthetic_seg`), label =
the stroke. A small segmentation net is trained on (a) the internal-geometry originals,
(b) originals + EchoGAINS-transformed frames with their black gaps, (c) originals + the same
frames with the gaps inpainted by RePaint; all three are tested on external frames rendered
with other sector widths, depths, rotations and digit sizes. Direction claimed: (c) > (a), (b).

What stands in for what: the paper's 256x256 CAMUS DDPM (4000 steps, respaced to 250) is the
bench's TinyUNet (:mod:`posneg.bench._ddpm`, trained here on internal-geometry sector frames,
used unconditionally, cached like the bench's digit DDPM) sampled over 10 respaced steps with
RePaint jumps of 5 and 2 samples per jump point (official 250 steps, jumps 10 and 10); nnU-Net
is a 4-layer conv net (:class:`~posneg.bench._synthetic_seg.SegNet`); one augmentation per
frame (official 5); the transform ranges are the official ones scaled from 256 px to 16 px
(depth 0-8 rows, rotation +-20 deg, width 0.6-1.4, translation radius 0-3 px, dilation border
2 px).
"""

from __future__ import annotations

from typing import Any

import torch

from posneg.bench._report import fmt
from posneg.bench._synthetic_context import SyntheticContext
from posneg.bench._synthetic_seg import dice, render, train_segnet
from posneg.synthetic.echogains import EchoGAINSAugment, repaint

__all__ = ["SECTIONS", "claims"]

#: (train frames, augmentations per frame, seg-net steps, DDPM steps, RePaint steps, test frames)
SETTINGS = {"default": (200, 1, 150, 800, 10, 300), "demo": (24, 1, 3, 0, 3, 24)}
METHODS = ("originals", "transformed", "echogains")
_DDPM: dict[tuple[int, int], Any] = {}


def augmenter() -> EchoGAINSAugment:
    """The official transforms, ranges scaled from 256 px to the 16 px canvas."""
    return EchoGAINSAugment(
        depth_range=(0, 8),
        rotation_range=(-20, 20),
        width_range=(0.6, 1.4),
        radius_range=(0, 3),
        border=2,
    )


def _ddpm(ctx: SyntheticContext, steps: int) -> Any:
    """The TinyUNet trained on internal-geometry sector frames (seed 0, cached on disk)."""
    from posneg.bench._ddpm import DDPMConfig, pretrained_ddpm

    key = (steps, 0)
    if key not in _DDPM:
        digits = (ctx.train_x + 1) / 2
        frames, _ = render(digits, external=False, generator=torch.Generator().manual_seed(0))
        x = 2 * frames[:, None] - 1
        cfg = DDPMConfig(steps=steps, batch=64, seed=0)
        model, _ = pretrained_ddpm(x, torch.zeros(len(x), dtype=torch.long), cfg, cache=steps > 0)
        for p in model.parameters():
            p.requires_grad_(False)
        _DDPM.clear()
        _DDPM[key] = model
    return _DDPM[key]


def echogains_section(ctx: SyntheticContext, g: torch.Generator) -> dict[str, Any]:
    """Dice of the three training sets on external-geometry frames, one seed."""
    from posneg.bench._ddpm import NULL_CLASS, make_scheduler

    n_train, n_aug, seg_steps, ddpm_steps, rp_steps, n_test = SETTINGS[ctx.preset]
    digits, test_digits = (ctx.train_x + 1) / 2, (ctx.test_x + 1) / 2
    pick = torch.randperm(len(digits), generator=g)[:n_train]
    x, y = render(digits[pick], external=False, generator=g)
    xt, yt = render(test_digits[:n_test], external=True, generator=g)
    xi, yi = render(test_digits[:n_test], external=False, generator=g)
    prep = augmenter()(x.repeat(n_aug, 1, 1), y.repeat(n_aug, 1, 1), generator=g)
    model = _ddpm(ctx, ddpm_steps)
    sched = make_scheduler(1000)
    sched.set_timesteps(rp_steps)

    def denoiser(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        labels = torch.full((len(z),), NULL_CLASS, dtype=torch.long)
        return model(z, t, class_labels=labels).sample

    filled = repaint(
        denoiser, sched, 2 * prep.image[:, None] - 1, prep.keep,
        jump_length=5, jump_n_sample=2, generator=g,
    )  # fmt: skip
    filled = ((filled[:, 0] + 1) / 2).clamp(0, 1)
    sets = {
        "originals": (x, y),
        "transformed": (torch.cat([x, prep.image]), torch.cat([y, prep.label])),
        "echogains": (torch.cat([x, filled]), torch.cat([y, prep.label])),
    }
    out: dict[str, Any] = {}
    for name in METHODS:
        xs, ys = sets[name]
        net = train_segnet(xs, ys, steps=seg_steps, seed=ctx.seed, g=g)
        out[f"{name}_external_dice"] = dice(net, xt, yt)
        out[f"{name}_internal_dice"] = dice(net, xi, yi)
    out["inpainted_fraction"] = float((~prep.keep).float().mean())
    k = min(8, len(filled))
    out["_images"] = torch.cat([prep.image[:k], filled[:k]])[:, None] * 2 - 1
    return out


def claims(agg: dict[str, tuple[float, float]]) -> list[str]:
    """EchoGAINS (inpainted) > transformed with gaps and > originals on external Dice."""
    key = "echogains/{}_external_dice"
    if key.format("echogains") not in agg:
        return []
    d = {m: agg[key.format(m)] for m in METHODS}
    ok = d["echogains"][0] > d["transformed"][0] and d["echogains"][0] > d["originals"][0]
    text = ", ".join(f"{m} {fmt(*d[m])}" for m in METHODS)
    return [
        f"EchoGAINS claim (segmentation on geometry-shifted frames: inpainted transforms beat "
        f"transforms with black gaps and the originals alone), external Dice on digits in a "
        f"sector: {text}: {'as claimed' if ok else 'NOT as claimed'}.",
    ]


SECTIONS = {"echogains": echogains_section}
