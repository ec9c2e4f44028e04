"""Multi-sample dropout section of `posneg bench pruning`: MNIST-1D MLP, M in {1, 2, 8}.

MLP 40-256-256 (ReLU) on MNIST-1D's published 4000 / 1000 split, dropout p before the last
linear layer, which is the shared head of :class:`posneg.layers.multisample_dropout.
MultiSampleDropout`; Adam (lr 1e-3, the same for every M, as the paper advises), batch 128.
After every epoch the train-set cross-entropy is measured in eval mode (dropout off, the same
quantity for every M); reported: the first epoch where it is <= ``target_loss`` (``nan`` if
never), the final test error, the mean wall-clock seconds of one training epoch.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posneg.bench import _harness as harness
from posneg.layers.multisample_dropout import MultiSampleDropout


class _MLP(nn.Module):
    def __init__(self, d_in: int, n_classes: int, num_samples: int, p: float) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d_in, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.msd = MultiSampleDropout(nn.Linear(256, n_classes), num_samples=num_samples, p=p)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.msd(self.trunk(x), generator=generator)


def load() -> tuple[torch.Tensor, ...]:
    """MNIST-1D as float32 tensors (x_train, y_train, x_test, y_test)."""
    from posneg.data import mnist1d

    d = mnist1d.load_mnist1d()
    return (
        torch.as_tensor(d.x_train, dtype=torch.float32),
        torch.as_tensor(d.y_train, dtype=torch.int64),
        torch.as_tensor(d.x_test, dtype=torch.float32),
        torch.as_tensor(d.y_test, dtype=torch.int64),
    )


def run_one(
    data: tuple[torch.Tensor, ...],
    *,
    num_samples: int,
    seed: int,
    epochs: int,
    p: float,
    target_loss: float,
    device: torch.device,
    tick: Any = None,
) -> dict[str, Any]:
    """Train one MLP with M = ``num_samples``; return epochs-to-target, test error, epoch time."""
    x, y, xt, yt = (t.to(device) for t in data)
    with harness.seeded(device, seed):
        model = _MLP(x.shape[1], int(y.max()) + 1, num_samples, p).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator(device=device).manual_seed(seed)
    reached, times, curve = math.nan, [], []
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=g, device=device)
        for i in range(0, len(x), 128):
            idx = order[i : i + 128]
            opt.zero_grad()
            model.msd.loss(model(x[idx], generator=g), y[idx]).backward()
            opt.step()
        times.append(time.perf_counter() - start)
        model.eval()
        with torch.no_grad():
            train_loss = float(F.cross_entropy(model(x), y))
        curve.append(train_loss)
        if math.isnan(reached) and train_loss <= target_loss:
            reached = float(epoch)
        if tick is not None:
            tick()
    with torch.no_grad():
        err = float((model(xt).argmax(1) != yt).float().mean())
    return {
        "M": num_samples,
        "seed": seed,
        "epochs_to_target": reached,
        "test_error": err,
        "epoch_seconds": sum(times) / len(times),
        "final_train_loss": curve[-1],
        "train_loss_curve": curve,
    }
