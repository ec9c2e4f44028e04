"""`posneg bench ood` runner of UniCon-HA: a small encoder trained on the ID digits as inliers.

The whole in-distribution training split (digits 0-5) is the inlier class (one-class, no labels);
virtual outliers are its 90°/180°/270° rotations (1 : 3 per batch). A three-stage CNN (8×8 →
4×4 → 2×2) with one projection head per stage is trained from scratch with the hierarchical
UniCLR loss at stages 2 and 3 (the paper's best ablation aggregates the last three of four
stages) with view strengths 0.5 and 1.0, soft aggregation at the last stage, τ = τ_w = 0.5,
λ = 1. Library choices (the paper's supplement with the strengths is unavailable, and it trains
a ResNet-18 with SGD for 2048 epochs): Adam lr 1e-3, ``TRAIN_STEPS`` steps of 32 inliers, the
digit-sized :func:`posneg.ood.unicon_ha.augment`, no test-time-augmentation ensemble.
Score: ``−max cos`` of the L2-normalised last-stage features to the training inliers.
"""

from __future__ import annotations

import torch
from torch import nn

from posneg.bench._ood_context import OODContext, Runner
from posneg.ood.unicon_ha import (
    UniConHAScorer,
    augment,
    hierarchical_loss,
    with_rotation_outliers,
)

__all__ = ["RUNNERS", "STRENGTHS", "TRAIN_STEPS", "StagedEncoder", "train_unicon_ha"]

TRAIN_STEPS = 200
BATCH = 32
STRENGTHS = (0.5, 1.0)  # stages 2 and 3, increasing


class StagedEncoder(nn.Module):
    """Three conv stages; ``stages(x)`` returns the pooled outputs of every stage."""

    def __init__(self, width: int = 16, proj: int = 32) -> None:
        super().__init__()
        self.s1 = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.s2 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.s3 = nn.Sequential(
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),
            nn.BatchNorm2d(4 * width),
            nn.ReLU(),
        )
        self.heads = nn.ModuleList(
            [
                nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, proj))
                for c in (2 * width, 4 * width)
            ]
        )

    def stages(self, x: torch.Tensor, upto: int = 2) -> list[torch.Tensor]:
        """Pooled outputs of stages 2 and 3 (only the first ``upto`` of them)."""
        h = self.s2(self.s1(x))
        out = [h.mean(dim=(2, 3))]
        if upto > 1:
            out.append(self.s3(h).mean(dim=(2, 3)))
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)[-1]


def train_unicon_ha(
    x: torch.Tensor,
    *,
    seed: int,
    steps: int = TRAIN_STEPS,
    unilateral: bool = True,
    soft_aggregation: bool = True,
) -> StagedEncoder:
    """Train :class:`StagedEncoder` with the hierarchical UniCLR loss; seeded.

    ``unilateral=False`` treats every view as its own instance (SimCLR on inliers ∪ rotations,
    the ablation's baseline); ``soft_aggregation=False`` drops the weights (plain UniCLR).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = StagedEncoder().to(x.device)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
    data = x.detach().float()
    enc.train()
    for _ in range(steps):
        idx = torch.randint(0, data.shape[0], (min(BATCH, data.shape[0]),), generator=g)
        batch, is_inlier = with_rotation_outliers(data[idx.to(data.device)])
        z1s, z2s = [], []
        for s, strength in enumerate(STRENGTHS):
            v1 = augment(batch, strength=strength, generator=g)
            v2 = augment(batch, strength=strength, generator=g)
            both = enc.stages(torch.cat([v1, v2]), upto=s + 1)[s]
            z = enc.heads[s](both)
            z1s.append(z[: batch.shape[0]])
            z2s.append(z[batch.shape[0] :])
        flags = is_inlier if unilateral else torch.zeros_like(is_inlier)
        loss = hierarchical_loss(z1s, z2s, flags, soft_aggregation=soft_aggregation and unilateral)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return enc.eval()


def _unicon(ctx: OODContext, generator: torch.Generator) -> dict[str, torch.Tensor]:
    enc = train_unicon_ha(ctx.train_x, seed=ctx.seed, steps=TRAIN_STEPS)
    with torch.no_grad():
        scorer = UniConHAScorer().fit(enc.features(ctx.train_x.float()))
        return {k: scorer.score(enc.features(x.float())) for k, x in ctx.eval_sets.items()}


RUNNERS: dict[str, Runner] = {"unicon_ha": _unicon}
