"""`posneg bench detection` section "cqdino": tail-class recall with and without CQ-DINO selection.

A classification-head stand-in, not a detector (the bench's detector was not available when this
section was written): each sample is a pair of ``load_digits`` images side by side (8 x 16), its
class the pair ``10 a + b`` (100 real classes), with a long-tailed training distribution
(``n_c`` from 100 down to 2, a geometric ramp over a random class order) and a balanced test set
from held-out digit images. The label space adds never-positive categories (default 900, so
``C = 1000``), as in a vast-vocabulary detector where most categories are absent from most
images. A small CNN (two 3x3 convolutions) gives a 64-d feature; the classification head is
:func:`posneg.detection.cq_dino.contrastive_logits` between the feature and ``C`` learnable
category queries (bias initialised to ``-log 99``), trained with the sigmoid focal loss
(alpha 0.25, gamma 2; summed over the classes it runs on, averaged over the batch).

- ``full``: focal loss over all ``C`` categories; prediction = arg max over all ``C``.
- ``cqdino``: a selector (linear on the same feature) trained with the selection ASL
  (:func:`posneg.detection.cq_dino.asymmetric_loss`, gamma- 7, gamma+ 0, clip 0.05; summed over
  categories, averaged over the batch); focal loss only over the top ``K`` selected categories
  (:func:`posneg.detection.cq_dino.select_top_k`), ground truth *not* forced in (a missed class is
  background); prediction = arg max of the classification logits among the ``K`` selected (the
  selection score is not multiplied in, as released).

Metrics per seed: recall (= accuracy) over the rarest third of the real classes (``tail``), the
most frequent third (``head``), all real classes (``mean``), the selector's recall@K, and the
share of the focal-loss gradient that reaches the positive class
(:func:`posneg.detection.cq_dino.gradient_share`) on a training batch after training.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posneg.bench._harness import seeded
from posneg.detection.cq_dino import (
    CONTRASTIVE_BIAS_INIT,
    asymmetric_loss,
    contrastive_logits,
    gradient_share,
    select_top_k,
)

__all__ = ["SECTIONS", "cqdino_section", "run_cqdino"]

REAL = 100


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.from_numpy(d.images.astype(np.float32) / 16.0), torch.from_numpy(d.target).long()


def _digit_features(
    images: torch.Tensor, digits: torch.Tensor, train: torch.Tensor, steps: int, seed: int
) -> torch.Tensor:
    """A small CNN trained as a 10-way digit classifier on ``train``; 32-d features of all."""
    with seeded(torch.device("cpu"), seed):
        body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(128, 32),
            nn.ReLU(),
        )
        head = nn.Linear(32, 10)
    opt = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    x = images[:, None]
    for _ in range(steps):
        idx = train[torch.randint(len(train), (128,), generator=g)]
        loss = F.cross_entropy(head(body(x[idx])), digits[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return body(x)


def _pairs(
    feats: torch.Tensor,
    digits: torch.Tensor,
    pool: torch.Tensor,
    counts: list[int],
    g: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``counts[c]`` pairs of class ``c = 10 a + b``: the concatenated features of two crops."""
    pools = [pool[digits[pool] == d] for d in range(10)]
    xs, ys = [], []
    for c, n in enumerate(counts):
        if n == 0:
            continue
        a, b = pools[c // 10], pools[c % 10]
        ia = a[torch.randint(len(a), (n,), generator=g)]
        ib = b[torch.randint(len(b), (n,), generator=g)]
        xs.append(torch.cat([feats[ia], feats[ib]], dim=1))
        ys.append(torch.full((n,), c, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


class _Head(nn.Module):
    """An MLP embedding of the pair feature, ``C`` category queries and a selector."""

    def __init__(self, num_categories: int, dim: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(64, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.categories = nn.Parameter(torch.randn(num_categories, dim) * dim**-0.5)
        self.bias = nn.Parameter(torch.tensor(CONTRASTIVE_BIAS_INIT))
        self.selector = nn.Linear(dim, num_categories)
        nn.init.constant_(self.selector.bias, CONTRASTIVE_BIAS_INIT)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        # one "image" whose B object queries meet all C category queries: (1, B, C)
        cls = contrastive_logits(queries=f[None], categories=self.categories[None], bias=self.bias)[
            0
        ]
        return cls, self.selector(f)


def _focal(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(z)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    pt = p * y + (1 - p) * (1 - y)
    return (0.25 * y + 0.75 * (1 - y)) * (1 - pt) ** 2 * ce


def _candidates(sel: torch.Tensor, k: int) -> torch.Tensor:
    cand = torch.zeros_like(sel, dtype=torch.bool)
    cand.scatter_(1, select_top_k(logits=sel.detach(), k=k), True)
    return cand


def _train(
    mode: str, data: tuple[torch.Tensor, torch.Tensor], cfg: dict[str, Any], seed: int
) -> _Head:
    x, y = data
    c = cfg["num_categories"]
    with seeded(torch.device("cpu"), seed):
        net = _Head(c)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(cfg["steps"]):
        idx = torch.randint(len(y), (cfg["batch"],), generator=g)
        cls, sel = net(x[idx])
        target = F.one_hot(y[idx], c).float()
        fl = _focal(cls, target)
        if mode == "cqdino":
            fl = fl * _candidates(sel, cfg["k"])
            loss = fl.sum() / len(idx) + asymmetric_loss(logits=sel, targets=target) / len(idx)
        else:
            loss = fl.sum() / len(idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def _evaluate(
    net: _Head, mode: str, data: tuple[torch.Tensor, torch.Tensor], k: int
) -> tuple[torch.Tensor, float]:
    x, y = data
    with torch.no_grad():
        cls, sel = net(x)
    recall_at_k = float("nan")
    if mode == "cqdino":
        cand = _candidates(sel, k)
        recall_at_k = float(cand.gather(1, y[:, None]).float().mean())
        cls = cls.masked_fill(~cand, float("-inf"))
    hit = (cls.argmax(1) == y).float()
    per_class = torch.stack([hit[y == c].mean() for c in range(REAL)])
    return per_class, recall_at_k


def _grad_share(net: _Head, mode: str, data: tuple[torch.Tensor, torch.Tensor], k: int) -> float:
    x, y = data
    with torch.no_grad():
        cls, sel = net(x[:256])
    target = F.one_hot(y[:256], cls.shape[1]).float()
    cand = _candidates(sel, k) if mode == "cqdino" else None
    return gradient_share(logits=cls, targets=target, candidates=cand).share


PRESETS: dict[str, dict[str, Any]] = {
    "demo": {
        "cnn_steps": 30,
        "steps": 100,
        "batch": 128,
        "n_max": 20,
        "extra": 100,
        "k": 10,
        "lr": 3e-3,
    },
    "default": {
        "cnn_steps": 120,
        "steps": 600,
        "batch": 256,
        "n_max": 100,
        "extra": 900,
        "k": 10,
        "lr": 3e-3,
    },
}


def run_cqdino(*, preset: str, seed: int, **override: Any) -> dict[str, Any]:
    """Both methods on one seed's data; returns the section's metrics."""
    cfg = dict(PRESETS[preset], **override)
    cfg["num_categories"] = REAL + cfg["extra"]
    g = torch.Generator().manual_seed(seed)
    images, digits = _digits()
    perm = torch.randperm(len(digits), generator=g)
    train_pool, test_pool = perm[: len(perm) // 2], perm[len(perm) // 2 :]
    feats = _digit_features(images, digits, train_pool, cfg["cnn_steps"], seed)
    order = torch.randperm(REAL, generator=g).tolist()
    ramp = np.geomspace(cfg["n_max"], 2, REAL)
    counts = [0] * REAL
    for rank, c in enumerate(order):
        counts[c] = max(2, round(float(ramp[rank])))
    train = _pairs(feats, digits, train_pool, counts, g)
    test = _pairs(feats, digits, test_pool, [10] * REAL, g)
    tail, head = order[-REAL // 3 :], order[: REAL // 3]
    out: dict[str, Any] = {}
    for mode in ("full", "cqdino"):
        net = _train(mode, train, cfg, seed)
        per_class, recall_at_k = _evaluate(net, mode, test, cfg["k"])
        out[f"{mode}_tail_recall"] = float(per_class[tail].mean())
        out[f"{mode}_head_recall"] = float(per_class[head].mean())
        out[f"{mode}_mean_recall"] = float(per_class.mean())
        out[f"{mode}_pos_grad_share"] = _grad_share(net, mode, train, cfg["k"])
        if mode == "cqdino":
            out["cqdino_selector_recall_at_k"] = recall_at_k
    out["_num_categories"] = cfg["num_categories"]
    out["_k"] = cfg["k"]
    out["_steps"] = cfg["steps"]
    return out


def cqdino_section(ctx: Any, generator: torch.Generator) -> dict[str, Any]:
    """The "cqdino" section: uses only ``ctx.preset`` (the stand-in brings its own data)."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    preset = "demo" if getattr(ctx, "preset", "default") == "demo" else "default"
    return run_cqdino(preset=preset, seed=seed)


SECTIONS: dict[str, Callable[[Any, torch.Generator], dict[str, Any]]] = {"cqdino": cqdino_section}
