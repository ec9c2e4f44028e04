"""The ASPIRE section of `posneg bench synthetic`: worst-group accuracy with ASPIRE's edits.

Ghosh et al., arXiv 2308.10103 (:mod:`posneg.synthetic.aspire`). The card's small CPU check:
digits 3 vs 8 (the bench's split) with the border of :mod:`posneg.bench._synthetic_groups`,
bright for 3 and dark for 8 in 97% of the training images (a fair coin at test: four groups);
besides, a 2x2 corner patch sits on a random 30% of all images (a feature the label does not
predict). A third of the training images is held out for DFR.

What stands in for what:

- the language step (captioning + GPT-4) is a fixed candidate list: "bright frame", "bright
  frames", "dark frame" (backgrounds; they occur where the border has that level), "corner
  patch" (an object; where the patch is) and "tint" (every image);
- the editors: a background is turned into the alternative one (the border recoloured to the
  other level, InstructPix2Pix's "turn the background of {bg} into {alt}"); the patch and the
  tint are inpainted / recoloured away (mean fill of the patch; the stroke scaled by 0.9);
- the personalised generator (textual inversion of Stable Diffusion on the kept edited images,
  then 100 images per class): the stand-in DDPM's digits of the class (the shared pool) given
  the border level of a randomly chosen kept edited image of that class, i.e. the look the
  personalisation would have learnt.

Recipes (one MLP on the 10x10 images): ERM on the training part; ERM + ASPIRE (the same data ∪
the generated images); DFR + ASPIRE (ERM's last layer retrained on the held-out part ∪ the
generated images).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from posneg.bench._report import fmt
from posneg.bench._synthetic_context import SyntheticContext
from posneg.bench._synthetic_groups import BRIGHT, DARK, fit, mlp, pool, with_border
from posneg.synthetic.aspire import ASPIRESelector, flip_test
from posneg.synthetic.fake_to_real import group_stats

__all__ = ["SECTIONS", "claims"]

#: (pool per class, epochs)
SETTINGS = {"default": (40, 30), "demo": (4, 1)}
AGREE, PATCH = 0.97, 0.3
FEATURES = ("bright frame", "bright frames", "dark frame", "corner patch", "tint")
METHODS = ("erm", "erm_aspire", "dfr_aspire")


def _border(x: torch.Tensor) -> torch.Tensor:
    edge = torch.cat([x[:, 0, 0, :], x[:, 0, -1, :]], 1)
    return edge.mean(1)


def _occurs(x: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    bright = _border(x) > 0.5
    every = torch.ones_like(bright)
    return torch.stack([bright, bright, ~bright, patch, every], 1)


def _edit(x: torch.Tensor, feature: str) -> torch.Tensor:
    out = x.clone()
    if feature.endswith(("frame", "frames")):
        level = torch.where(_border(x) > 0.5, DARK, BRIGHT)[:, None]
        inner = out[:, :, 1:9, 1:9].clone()
        out[:] = level[:, :, None, None]
        out[:, :, 1:9, 1:9] = inner
    elif feature == "corner patch":
        out[:, :, 1:3, 1:3] = x[:, :, 1:9, 1:9].mean((1, 2, 3))[:, None, None, None]
    else:
        out[:, :, 1:9, 1:9] *= 0.9
    return out


def _split(ctx: SyntheticContext, g: torch.Generator) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for split, x, digit, p in (
        ("train", ctx.train_x, ctx.train_y, AGREE),
        ("test", ctx.test_x, ctx.test_y, 0.5),
    ):
        keep = (digit == 3) | (digit == 8)
        x, y = (x[keep] + 1) / 2, (digit[keep] == 8).long()
        b = torch.where(torch.rand(len(y), generator=g) < p, 1 - y, y)  # 1 = bright
        xb = with_border(x, b)
        patch = torch.rand(len(y), generator=g) < PATCH
        xb[patch, :, 1:3, 1:3] = 1.0
        out[f"{split}_x"], out[f"{split}_y"], out[f"{split}_b"] = xb, y, b
        out[f"{split}_patch"] = patch
    return out


def aspire_section(ctx: SyntheticContext, g: torch.Generator) -> dict[str, Any]:
    """Worst-group / balanced accuracy of ERM, ERM + ASPIRE, DFR + ASPIRE on one seed."""
    per_pool, epochs = SETTINGS[ctx.preset]
    d = _split(ctx, g)
    n = len(d["train_y"])
    perm = torch.randperm(n, generator=g)
    tr, ho = perm[: 2 * n // 3], perm[2 * n // 3 :]
    x, y = d["train_x"][tr], d["train_y"][tr]
    erm = fit(mlp(100, 2, seed=ctx.seed), x, y, epochs=epochs, g=g)
    with torch.no_grad():
        res = flip_test(erm, x, y, features=FEATURES,
                        occurs=_occurs(x, d["train_patch"][tr]), edit=_edit)  # fmt: skip
    sel = ASPIRESelector()(res, y, features=FEATURES, num_classes=2, generator=g)
    px, pdigit = pool(ctx, per_pool)
    gen_x, gen_y = [], []
    for c, digit in ((0, 3), (1, 8)):
        kept = sel.images[sel.labels == c]
        digits = px[pdigit == digit]
        if len(kept) == 0:
            continue
        look = _border(kept)[torch.randint(len(kept), (len(digits),), generator=g)]
        gen_x.append(with_border(digits, torch.zeros(len(digits))))
        gen_x[-1][:, :, [0, -1], :] = look[:, None, None, None]
        gen_x[-1][:, :, :, [0, -1]] = look[:, None, None, None]
        gen_y.append(torch.full((len(digits),), c))
    gx = torch.cat(gen_x) if gen_x else x[:0]
    gy = torch.cat(gen_y) if gen_y else y[:0]
    models: dict[str, nn.Module] = {"erm": erm}
    models["erm_aspire"] = fit(
        mlp(100, 2, seed=ctx.seed), torch.cat([x, gx]), torch.cat([y, gy]), epochs=epochs, g=g
    )
    dfr = mlp(100, 2, seed=ctx.seed)
    dfr.load_state_dict(erm.state_dict())
    for p in list(dfr.parameters())[:-2]:
        p.requires_grad_(False)
    head = torch.cat([d["train_x"][ho], gx]), torch.cat([d["train_y"][ho], gy])
    models["dfr_aspire"] = fit(dfr, *head, epochs=epochs, g=g)
    metrics: dict[str, Any] = {}
    for name in METHODS:
        with torch.no_grad():
            s = group_stats(y_true=d["test_y"], y_pred=models[name](d["test_x"]),
                            bias=d["test_b"], num_biases=2)  # fmt: skip
        metrics[f"{name}_worst_group"] = s.worst
        metrics[f"{name}_balanced"] = s.balanced
    flips = res.flipped.sum(0)
    for j, feat in enumerate(FEATURES):
        metrics[f"flips_{feat.replace(' ', '_')}"] = float(flips[j])
    metrics["kept_edited"] = float(len(sel.labels))
    metrics["generated"] = float(len(gy))
    top = sel.ranking.get(0, [])
    metrics["setting"] = (
        f"3 vs 8, border agrees {AGREE:.0%}, corner patch on {PATCH:.0%}; MLP 100-64-2, {epochs} "
        f"epochs; class 3's top group: {[FEATURES[i] for i in top[0][0]] if top else 'none'}"
    )
    metrics["_images"] = torch.cat([sel.images[:8], gx[:8]]) * 2 - 1
    metrics["_grid_rows"] = 2
    return metrics


def claims(agg: dict[str, tuple[float, float]]) -> list[str]:
    """ASPIRE raises worst-group accuracy over ERM; the flip test spares the unused patch."""
    if "aspire/erm_worst_group" not in agg:
        return []
    wg = {m: agg[f"aspire/{m}_worst_group"] for m in METHODS}
    ok = wg["erm_aspire"][0] > wg["erm"][0] and wg["dfr_aspire"][0] > wg["erm"][0]
    text = ", ".join(f"{m.replace('_', ' + ').upper()} {fmt(*wg[m])}" for m in METHODS)
    frame = agg["aspire/flips_bright_frame"]
    patch = agg["aspire/flips_corner_patch"]
    return [
        f"ASPIRE claim (its edits raise worst-group accuracy), digits 3 vs 8 with a border at "
        f"{AGREE:.0%}: {text}: {'as claimed' if ok else 'NOT as claimed'}.",
        f"ASPIRE flip test: flips per seed for 'bright frame' {fmt(*frame)}, for the unused "
        f"'corner patch' {fmt(*patch)}.",
    ]


SECTIONS = {"aspire": aspire_section}
