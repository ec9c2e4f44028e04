"""NegToMe section of `posneg bench generative`: same-class batches pushed apart in attention.

The paper's claim (Singh et al., arXiv 2412.01339): merging each image's self-attention output
tokens away from their matches in the batch's first image (the reference) raises the diversity
of a batch generated from one prompt without losing quality or prompt fidelity.

Here, for every digit class ``c``, the shared stand-in DDPM samples a batch of ``n`` images of
``c`` with classifier-free guidance (scale :data:`SCALE`, DDIM), from the same starting noise,
with NegToMe off and on. :class:`~posneg.generative.negtome.NegToMeAttnProcessor` is installed
with :func:`~posneg.generative.negtome.apply_negtome` on the denoiser's diffusers ``Attention``
layer and acts exactly as in the official SDXL pipeline: on the self-attention output (after
``to_out``, the residual and the rescale), for scheduler timesteps ``800 <= t <= 1000`` (the
first 20% of the steps, whatever their count), separately on the unconditional and the
conditional half of the CFG batch (and, since all ten classes run in one batch, separately on
each class's group: ``cfg_chunks = 2 * 10``; each group's frame 0 is its reference), threshold
0.7, the code's matching axis. Two adaptations to the 8x8 stand-in, stated because they differ
from SDXL: the only self-attention layer is the 4x4 = 16-token bottleneck (``mid_attn``), so
``blocks = ("mid_attn",)`` and ``min_attn_dim = 4`` (SDXL: ``up_blocks`` at H, W >= 32).

The strength α is swept over :data:`ALPHAS` (0.9 is the paper's default) and one run uses the
paper's matching axis. Measured per class batch, then averaged over classes: judge-feature
diversity (mean pairwise Euclidean distance, 1 - mean pairwise cosine, mean distance to the
reference frame 0, and the Vendi score ``exp(-Σ λ log λ)`` of the cosine kernel ``K / n``, from
1 to n), the judge's class accuracy and its mean P(c). Direction on the card: diversity up at
about equal accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from posneg.bench._ddpm import ddim_sample
from posneg.bench._generative_context import GenerativeContext
from posneg.generative.negtome import NegToMe, apply_negtome, set_negtome_timestep

__all__ = ["ALPHAS", "SECTIONS", "claims", "diversity", "negtome_section"]

SCALE = 3.0
THRESHOLD = 0.7
ALPHAS: tuple[float, ...] = (0.5, 0.9, 1.5)
T_START, T_END = 1000.0, 800.0
#: Guidance scales of the NegToMe-off controls: lower guidance is the usual way to buy diversity
#: with accuracy, so NegToMe is also compared with them at the nearest accuracy.
CONTROL_SCALES: tuple[float, ...] = (2.0, 1.0)
#: (run name, alpha, match axis, CFG scale); alpha None = NegToMe off.
RUNS: tuple[tuple[str, float | None, str, float], ...] = (
    ("off", None, "code", SCALE),
    *((f"a={a:g}", a, "code", SCALE) for a in ALPHAS),
    ("a=0.9/paper_axis", 0.9, "paper", SCALE),
    *((f"off/scale={s:g}", None, "code", s) for s in CONTROL_SCALES),
)


def diversity(features: torch.Tensor) -> dict[str, float]:
    """Diversity of one batch of features ``(n, F)``, ``n >= 2``.

    Returns:
        ``pairwise``: mean Euclidean distance over the ``n(n-1)`` ordered pairs ``i != j``;
        ``one_minus_cos``: 1 - mean pairwise cosine; ``to_ref``: mean distance of rows 1..n-1 to
        row 0; ``vendi``: ``exp(-Σ λ log λ)`` over the eigenvalues of ``K / n``, ``K`` the
        cosine-similarity matrix (1 when all rows are parallel, n when orthogonal).
    """
    f = features.double()
    n = f.shape[0]
    if n < 2:
        raise ValueError(f"diversity: features needs at least 2 rows; got {n}")
    off = ~torch.eye(n, dtype=torch.bool)
    d = torch.cdist(f, f)
    fn = F.normalize(f, dim=1)
    k = fn @ fn.T
    lam = torch.linalg.eigvalsh(k / n).clamp_min(0)
    lam = lam[lam > 1e-12]
    return {
        "pairwise": float(d[off].mean()),
        "one_minus_cos": float(1 - k[off].mean()),
        "to_ref": float(d[0, 1:].mean()),
        "vendi": float(torch.exp(-(lam * lam.log()).sum())),
    }


def _sample(
    ctx: GenerativeContext, n: int, seed: int, alpha: float | None, axis: str, scale: float
) -> torch.Tensor:
    """``(10 * n, 1, 8, 8)``: n images per class, class-major; the same noise for every run."""
    classes = torch.arange(ctx.num_classes).repeat_interleave(n)
    labels = torch.cat([torch.full_like(classes, ctx.null_class), classes])
    model: Any = ctx.ddpm
    procs = []
    saved = _processors(model)
    if alpha is not None:
        merger = NegToMe(alpha=alpha, threshold=THRESHOLD, match_axis=axis)  # type: ignore[arg-type]
        procs = apply_negtome(
            model,
            merger,
            t_start=T_START,
            t_end=T_END,
            blocks=("mid_attn",),
            min_attn_dim=4,
            cfg_chunks=2 * ctx.num_classes,
        )

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = model(torch.cat([x, x]), torch.cat([t, t]), class_labels=labels).sample
        eu, ec = out.chunk(2)
        return eu + scale * (ec - eu)

    try:
        return ddim_sample(
            eps_fn,
            len(classes),
            scheduler=ctx.scheduler,
            steps=ctx.sample_steps,
            generator=torch.Generator().manual_seed(seed),
            before_step=(lambda t: set_negtome_timestep(procs, t)) if procs else None,
        )
    finally:
        for module, proc in saved:
            module.set_processor(proc)


def _processors(model: Any) -> list[tuple[Any, Any]]:
    """The model's diffusers ``Attention`` layers with their current processors."""
    from diffusers.models.attention_processor import Attention

    return [(m, m.processor) for m in model.modules() if isinstance(m, Attention)]


def negtome_section(ctx: GenerativeContext, generator: torch.Generator) -> dict[str, Any]:
    """Diversity, class accuracy and P(class) of same-class batches, NegToMe off / on."""
    n = int(str(ctx.extra.get("negtome_batch", 4 if ctx.preset == "demo" else 8)))
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
    judge: Any = ctx.judge
    out: dict[str, Any] = {}
    grid: list[torch.Tensor] = []
    for name, alpha, axis, scale in RUNS:
        x = _sample(ctx, n, seed, alpha, axis, scale)
        with torch.no_grad():
            feats = judge.features(x)
            probs = judge(x).softmax(dim=1)
        classes = torch.arange(ctx.num_classes).repeat_interleave(n)
        per: dict[str, list[float]] = {}
        for c in range(ctx.num_classes):
            for key, value in diversity(feats[classes == c]).items():
                per.setdefault(key, []).append(value)
        for key, values in per.items():
            out[f"{name}/{key}"] = sum(values) / len(values)
        out[f"{name}/acc"] = float((probs.argmax(1) == classes).float().mean())
        out[f"{name}/p_class"] = float(probs[torch.arange(len(classes)), classes].mean())
        if name in ("off", "a=0.9"):
            grid.append(x[classes < 3])  # classes 0-2, n each: one row per run
    out["_images"] = torch.cat(grid)
    out["_grid_rows"] = len(grid)
    return out


def claims(agg: dict[str, tuple[float, float]]) -> list[str]:
    """One line per NegToMe run: Vendi diversity, pairwise distance and accuracy vs off, and vs
    the lower-guidance control whose accuracy is nearest."""

    def get(name: str) -> tuple[tuple[float, float], ...] | None:
        vals = tuple(agg.get(f"negtome/{name}/{k}") for k in ("vendi", "pairwise", "acc"))
        return None if any(v is None for v in vals) else vals  # type: ignore[return-value]

    off = get("off")
    if off is None:
        return []
    controls = [(name, get(name)) for name, alpha, _, s in RUNS if alpha is None and s != SCALE]
    lines = []
    for name, alpha, _, _ in RUNS:
        run = get(name)
        if alpha is None or run is None:
            continue
        (v, d, a), (ov, od, oa) = run, off
        up = v[0] > ov[0] and d[0] > od[0]
        verdict = (
            "holds"
            if up and abs(a[0] - oa[0]) <= 0.02
            else "diversity up, accuracy lower"
            if up and a[0] < oa[0]
            else "diversity up"
            if up
            else "does not hold"
        )
        line = (
            f"NegToMe ({name}) raises same-class diversity at equal accuracy: {verdict}; "
            f"Vendi {v[0]:.3f}±{v[1]:.3f} vs {ov[0]:.3f}±{ov[1]:.3f} off, pairwise "
            f"{d[0]:.2f}±{d[1]:.2f} vs {od[0]:.2f}±{od[1]:.2f}, accuracy "
            f"{a[0]:.3f}±{a[1]:.3f} vs {oa[0]:.3f}±{oa[1]:.3f} ('equal': within 0.02)"
        )
        known = [(c, vals) for c, vals in controls if vals is not None]
        if known:
            c, (cv, _, ca) = min(known, key=lambda kv: abs(kv[1][2][0] - a[0]))
            better = "higher" if v[0] > cv[0] else "not higher"
            line += (
                f"; against lower guidance at the nearest accuracy ({c}: accuracy "
                f"{ca[0]:.3f}, Vendi {cv[0]:.3f}±{cv[1]:.3f}) its Vendi is {better}"
            )
        lines.append(line + ".")
    return lines


SECTIONS: dict[str, Callable[[GenerativeContext, torch.Generator], dict[str, Any]]] = {
    "negtome": negtome_section,
}
