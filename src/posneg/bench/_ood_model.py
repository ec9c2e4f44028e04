"""The in-distribution classifier of `posneg bench ood` (a :class:`LayeredClassifier`).

A small CNN on 8x8 single-channel images in [0, 1] (no input normalisation, so the
Mahalanobis step is in pixel units with ``input_std = 1``): conv 16 (3x3) - ReLU [probe 1,
mean-pooled] - conv 32 (3x3) - ReLU - max-pool 2 [probe 2, mean-pooled] - linear 64 - ReLU
[probe 3, the penultimate] - linear to the classes. Trained with Adam and cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from posneg.bench import _harness as harness

__all__ = ["MODEL", "MODEL_1D", "OODNet", "OODNet1d", "train_classifier"]

MODEL = "CNN conv16-conv32-pool-fc64-fc (ReLU), probes: conv16, conv32, fc64; Adam"
MODEL_1D = "1-D CNN conv16/k5-conv32/k3-pool-fc64-fc (ReLU), probes: conv16, conv32, fc64; Adam"


class OODNet(nn.Module):
    """Small CNN with three probed layers (16, 32 and 64 features)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.conv1(x))
        h2 = F.max_pool2d(F.relu(self.conv2(h1)), 2)
        h3 = F.relu(self.fc1(h2.flatten(1)))
        return h1, h2, h3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self._trunk(x)[2])

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[(N, 16), (N, 32), (N, 64)]``: the two conv maps mean-pooled, then the penultimate."""
        h1, h2, h3 = self._trunk(x)
        return [h1.mean(dim=(2, 3)), h2.mean(dim=(2, 3)), h3]


class OODNet1d(nn.Module):
    """The 1-D twin of :class:`OODNet` for ``(N, 1, 40)`` MNIST-1D sequences."""

    def __init__(self, num_classes: int, length: int = 40) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv1d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * (length // 2), 64)
        self.fc2 = nn.Linear(64, num_classes)

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.conv1(x))
        h2 = F.max_pool1d(F.relu(self.conv2(h1)), 2)
        h3 = F.relu(self.fc1(h2.flatten(1)))
        return h1, h2, h3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self._trunk(x)[2])

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[(N, 16), (N, 32), (N, 64)]``: the two conv maps mean-pooled, then the penultimate."""
        h1, h2, h3 = self._trunk(x)
        return [h1.mean(dim=2), h2.mean(dim=2), h3]


def train_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    num_classes: int,
    seed: int,
    epochs: int,
    device: torch.device,
    tick: Callable[[], None] = lambda: None,
    lr: float = 3e-3,
    batch_size: int = 64,
) -> nn.Module:
    """Train :class:`OODNet` (:class:`OODNet1d` for ``(N, 1, L)`` inputs), initialised and
    shuffled from ``seed`` only; returns it in eval mode."""
    with harness.seeded(device, seed):
        net: nn.Module
        net = OODNet1d(num_classes, x.shape[-1]) if x.dim() == 3 else OODNet(num_classes)
        model = net.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator(device=device).manual_seed(seed)
    x, y = x.to(device), y.to(device)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(x.shape[0], device=device, generator=gen)
        for i in range(0, x.shape[0], batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        tick()
    return model.eval()
