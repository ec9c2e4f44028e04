"""Perp-Neg section of `posneg bench generative`: keep the digit, steer off an overlapping one.

For each pair (main class c, negative class c') -- 3 vs 8 and 1 vs 7, which share strokes -- the
stand-in DDPM samples with standard CFG on c (no negative), the composable negative CFG
``eps_u + s·(Δ_c − w·Δ_c')`` and Perp-Neg ``eps_u + s·(Δ_c − w·perp(Δ_c', Δ_c))`` (per image, the
2-D rule), at each negative weight w. The judge reports P(c) (the concept kept) and P(c') (the
negative suppressed), averaged over the samples. Card direction: Perp-Neg keeps P(c) higher at
similar P(c') suppression, more so at large w.
"""

from __future__ import annotations

from typing import Any

import torch

from posneg.bench._ddpm import ddim_sample
from posneg.bench._generative_context import GenerativeContext
from posneg.generative.perp_neg import guidance

PAIRS: tuple[tuple[int, int], ...] = ((3, 8), (1, 7))
SCALE = 3.0
WEIGHTS: tuple[float, ...] = (1.0, 2.0)


def _sample(
    ctx: GenerativeContext, c: int, neg: int, method: str, w: float, n: int, seed: int
) -> torch.Tensor:
    labels = torch.tensor([ctx.null_class, c, neg]).repeat_interleave(n)

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = ctx.ddpm(torch.cat([x] * 3), torch.cat([t] * 3), class_labels=labels).sample
        eu, ep, en = out.chunk(3)
        return guidance(eu, ep, en[None], method=method, guidance_scale=SCALE, neg_weights=w)  # type: ignore[arg-type]

    gen = torch.Generator().manual_seed(seed)  # same starting noise for every method
    return ddim_sample(eps_fn, n, scheduler=ctx.scheduler, steps=ctx.sample_steps, generator=gen)


def perp_neg_section(ctx: GenerativeContext, generator: torch.Generator) -> dict[str, Any]:
    """P(main) and P(negative) under CFG, composable negative CFG and Perp-Neg, per pair and w."""
    n = int(str(ctx.extra.get("samples", 8 if ctx.preset == "demo" else 64)))
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
    out: dict[str, Any] = {}
    grid: list[torch.Tensor] = []
    for c, neg in PAIRS:
        runs = [("cfg", 0.0)] + [(m, w) for w in WEIGHTS for m in ("composable", "perp_neg")]
        for method, w in runs:
            x = _sample(ctx, c, neg, method, w, n, seed)
            with torch.no_grad():
                p = ctx.judge(x).softmax(dim=1)
            tag = f"{c}vs{neg}/{method}" + ("" if method == "cfg" else f"/w={w:g}")
            out[f"{tag}/p_main"] = float(p[:, c].mean())
            out[f"{tag}/p_neg"] = float(p[:, neg].mean())
            if w in (0.0, WEIGHTS[-1]):
                grid.append(x[:8])
    out["_images"] = torch.cat(grid)
    out["_grid_rows"] = len(grid)
    return out


def claims(agg: dict[str, tuple[float, float]]) -> list[str]:
    """One line per (pair, w): Perp-Neg vs composable negative CFG on P(main) and P(neg)."""
    lines = []
    for c, neg in PAIRS:
        for w in WEIGHTS:
            pm = agg.get(f"perp_neg/{c}vs{neg}/perp_neg/w={w:g}/p_main")
            cm = agg.get(f"perp_neg/{c}vs{neg}/composable/w={w:g}/p_main")
            pn = agg.get(f"perp_neg/{c}vs{neg}/perp_neg/w={w:g}/p_neg")
            cn = agg.get(f"perp_neg/{c}vs{neg}/composable/w={w:g}/p_neg")
            if pm is None or cm is None or pn is None or cn is None:
                continue
            keeps = "holds" if pm[0] > cm[0] else "does not hold"
            lines.append(
                f"Perp-Neg keeps digit {c} better than negative CFG (w={w:g}, negative {neg}): "
                f"{keeps}; P({c}) {pm[0]:.3f}±{pm[1]:.3f} vs {cm[0]:.3f}±{cm[1]:.3f}, "
                f"P({neg}) {pn[0]:.3f}±{pn[1]:.3f} vs {cn[0]:.3f}±{cn[1]:.3f} "
                "(equal suppression only where the P(neg) values are close)."
            )
    return lines


SECTIONS = {"perp_neg": perp_neg_section}
