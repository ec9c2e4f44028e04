"""The coreset part of `posneg bench selection`: weighted coresets of augmented digits.

One run trains an MLP on scikit-learn's 8x8 digits for ``epochs`` epochs with one of:

- ``full``: the clean train split plus an augmented copy of all of it (weight 1);
- ``coreset@s``: the official ``train.sh`` protocol (``--subset_main_dataset``): every
  ``reselect`` epochs (from epoch 0) a per-class facility-location coreset of ``s N`` points
  is chosen on the gradient proxy of the clean data (:class:`posneg.selection.coresets.
  CoresetSelector`, model in eval mode); each epoch trains on the coreset with its weights plus
  an augmented copy of it with weight 1; loss ``mean_batch(w_i CE_i)``;
- ``random@s``: the same with a random subset of the same size (weights 1), redrawn on the
  same schedule.

The augmentation is the card's CPU check: a random shift of up to 1 pixel (zero fill) plus
Gaussian noise of sigma 0.1 (pixels in [0, 1]). Test accuracy and the cumulative wall time
(selection included, evaluation excluded) are recorded after every epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posneg.selection.coresets import CoresetSelector, random_subset

__all__ = ["DigitsSplit", "augment", "load_split", "train_run"]


@dataclass(frozen=True)
class DigitsSplit:
    x_train: torch.Tensor  # (N, 1, 8, 8) in [0, 1]
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_split(split_seed: int) -> DigitsSplit:
    from posneg.data import load_digits

    d = load_digits(seed=split_seed)

    def img(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(-1, 1, 8, 8)

    return DigitsSplit(
        img(d.x_train),
        torch.as_tensor(d.y_train, dtype=torch.int64),
        img(d.x_test),
        torch.as_tensor(d.y_test, dtype=torch.int64),
    )


def augment(x: torch.Tensor, g: torch.Generator, *, noise: float = 0.1) -> torch.Tensor:
    """Random shift by -1..1 pixel per axis (zero fill) plus N(0, noise^2) pixel noise."""
    n = x.shape[0]
    shifts = torch.randint(-1, 2, (n, 2), generator=g)
    pad = F.pad(x, (1, 1, 1, 1))
    out = torch.empty_like(x)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            out[sel] = pad[sel][:, :, 1 + dy : 9 + dy, 1 + dx : 9 + dx]
    return out + noise * torch.randn(x.shape, generator=g)


def _mlp(seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    model.train()
    return acc


def train_run(
    data: DigitsSplit,
    *,
    method: str,
    fraction: float,
    seed: int,
    epochs: int,
    reselect: int,
    batch_size: int = 64,
    lr: float = 1e-3,
) -> dict[str, Any]:
    """One run: ``method`` in ``full``, ``coreset``, ``random``; returns per-epoch curves."""
    g = torch.Generator().manual_seed(seed)
    model = _mlp(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = data.x_train, data.y_train
    n = x.shape[0]
    selector = CoresetSelector(num_classes=10, fraction=fraction)
    idx, w = torch.arange(n), torch.ones(n)
    accs: list[float] = []
    times: list[float] = []
    sizes: list[int] = []
    elapsed = 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        if method != "full" and epoch % reselect == 0:
            if method == "coreset":
                model.eval()
                with torch.no_grad():
                    cs = selector(model(x), y)
                model.train()
            else:
                cs = random_subset(n, int(fraction * n), generator=g)
            idx, w = cs.indices, cs.weights.float()
        xs, ys = x[idx], y[idx]
        xb = torch.cat([xs, augment(xs, g)])
        yb = torch.cat([ys, ys])
        wb = torch.cat([w, torch.ones(len(idx))])
        perm = torch.randperm(len(yb), generator=g)
        for s in range(0, len(perm), batch_size):
            b = perm[s : s + batch_size]
            loss = (wb[b] * F.cross_entropy(model(xb[b]), yb[b], reduction="none")).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        elapsed += time.perf_counter() - t0
        times.append(elapsed)
        sizes.append(len(yb))
        accs.append(_accuracy(model, data.x_test, data.y_test))
    return {"acc": accs, "time": times, "examples_per_epoch": sizes}
