"""Bench section "augcond": few-shot digit classifiers on images from augmented conditioning.

The paper's claim (Chen, Zhang, Romero-Soriano, arXiv 2502.04475): conditioning an image
generator on *augmented* real images of a class (same-class mixup/cutmix, embedding dropout)
gives synthetic training sets that beat text-only and plain image conditioning, with large gains
in extreme few-shot regimes. The card's small check, run here:

- the stand-in "foundation" generator is a DDPM (:class:`~posneg.bench._generative_ant.TinyEps`)
  conditioned on the class and on a PCA-16 embedding of a conditioning image of that class
  (condition dropout 0.1), trained on one half of the training digits (the pretraining split),
  1500 steps (the split depends on the seed, so this generator is trained per seed and cannot
  be cached across seeds);
- from the other half, k-shot support sets (k = 1, 5 per class) are drawn;
- three synthetic sets of equal size per class: (a) class-only (embedding dropped), (b) the
  embedding of a support image, (c) :class:`~posneg.generative.augmented_conditioning.
  AugmentedConditioning` of the support images (pixel mixup/cutmix within the class, then
  embedding dropout p = 0.1);
- a softmax classifier on the support + synthetic images; accuracy on the held-out digits, and
  the intra-class diversity (mean pairwise pixel distance) of each synthetic set.

With 1 shot, a class has one support image, so mixup/cutmix with a same-class partner is the
identity and only the embedding dropout acts: the 1-shot contrast (c) vs (b) isolates dropout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from posneg.bench._generative_ant import TinyEps, extra_int, sample_ddpm, train_ddpm
from posneg.bench._generative_context import GenerativeContext
from posneg.generative.augmented_conditioning import AugmentedConditioning

__all__ = ["SECTIONS", "run_augcond"]

EMB = 16
VARIANTS = ("class_only", "image", "augmented")


def _pca(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.flatten(1).double()
    mean = flat.mean(0)
    _, _, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    return mean.float(), vh[:dim].T.float()


def _classifier(
    x: torch.Tensor, y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, seed: int
) -> float:
    """Softmax regression on pixels (Adam, full batch, 300 steps, weight decay 1e-3)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = nn.Linear(64, 10)
    opt = torch.optim.Adam(clf.parameters(), lr=0.05, weight_decay=1e-3)
    for _ in range(300):
        loss = nn.functional.cross_entropy(clf(x.flatten(1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((clf(test_x.flatten(1)).argmax(1) == test_y).float().mean())


def _diversity(x: torch.Tensor, y: torch.Tensor) -> float:
    vals = []
    for c in torch.unique(y):
        xc = x[y == c].flatten(1)
        if len(xc) > 1:
            d = torch.cdist(xc, xc)
            vals.append(float(d.sum() / (len(xc) * (len(xc) - 1))))
    return sum(vals) / len(vals)


def _support(y: torch.Tensor, shots: int, generator: torch.Generator) -> torch.Tensor:
    picks = []
    for c in range(10):
        idx = torch.nonzero(y == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=generator)[:shots]])
    return torch.cat(picks)


def run_augcond(ctx: GenerativeContext, generator: torch.Generator) -> dict[str, Any]:
    """One seed: accuracy and diversity of the three synthetic sets at 1 and 5 shots."""
    demo = ctx.preset == "demo"
    steps = extra_int(ctx, "augcond_steps", 60 if demo else 1500)
    per_class = extra_int(ctx, "augcond_per_class", 4 if demo else 30)
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(ctx.train_x), generator=g)
    half = len(perm) // 2
    pre, few = perm[:half], perm[half:]
    px, py = ctx.train_x[pre], ctx.train_y[pre]
    mean, comps = _pca(px, EMB)

    def embed(x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - mean) @ comps

    # conditioning image of each pretraining digit: another digit of its class (in-class pairs)
    partner = torch.empty(len(py), dtype=torch.long)
    for c in range(10):
        idx = torch.nonzero(py == c).flatten()
        partner[idx] = idx[torch.randperm(len(idx), generator=g)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyEps(ctx.num_classes, cond_dim=EMB)
    train_ddpm(model, px, py, steps=steps, generator=g, cond=embed(px[partner]), cond_drop=0.1)
    model.eval()

    aug = AugmentedConditioning(modes=("mixup", "cutmix"), alpha=1.0)
    drop = AugmentedConditioning(modes=("dropout",), p_drop=0.1)
    fx, fy = ctx.train_x[few], ctx.train_y[few]
    out: dict[str, Any] = {}
    for shots in (1, 5):
        s = _support(fy, shots, g)
        sx, sy = fx[s], fy[s]
        labels = torch.arange(10).repeat_interleave(per_class)
        # each synthetic image is conditioned on a support image of its class, drawn uniformly
        rows = torch.stack([s_idx for s_idx in _cycle_support(sy, labels, g)])
        cond_x, cond_y = sx[rows], sy[rows]
        conds = {
            "class_only": torch.zeros(len(labels), EMB),
            "image": embed(cond_x),
            "augmented": drop(embed(aug(cond_x, cond_y, generator=g)), cond_y, generator=g),
        }
        for name in VARIANTS:
            gen_x = sample_ddpm(
                model, labels, generator=torch.Generator().manual_seed(seed + 7), cond=conds[name]
            )
            acc = _classifier(
                torch.cat([sx, gen_x]), torch.cat([sy, labels]), ctx.test_x, ctx.test_y, seed
            )
            out[f"acc_{shots}shot_{name}"] = acc
            out[f"div_{shots}shot_{name}"] = _diversity(gen_x, labels)
            if shots == 5 and name == "augmented":
                out["_images"] = gen_x[:: max(1, per_class // 2)][:20]
        out[f"acc_{shots}shot_real_only"] = _classifier(sx, sy, ctx.test_x, ctx.test_y, seed)
    return out


def _cycle_support(
    sy: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
) -> list[torch.Tensor]:
    """For each wanted label, the index of a uniformly drawn support image of that class."""
    u = torch.rand(len(labels), generator=generator)
    picks = []
    for i, c in enumerate(labels.tolist()):
        idx = torch.nonzero(sy == c).flatten()
        picks.append(idx[int(u[i] * len(idx)) % len(idx)])
    return picks


SECTIONS: dict[str, Callable[[GenerativeContext, torch.Generator], dict[str, Any]]] = {
    "augcond": run_augcond,
}
