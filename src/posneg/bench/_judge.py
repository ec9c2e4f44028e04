"""The data and the judge of `posneg bench generative`: 8x8 digits in [-1, 1], a classifier.

:func:`digit_split` gives scikit-learn's bundled 8x8 digits as ``(N, 1, 8, 8)`` images scaled to
``[-1, 1]``, split 75/25 per class under a fixed seed (the split never changes between seeds, so
the cached DDPM and judge serve every run). :class:`Judge` is a small CNN trained on the train
side only (seeded, a few seconds on CPU); ``judge(x)`` gives logits, ``judge.features(x)`` its
penultimate features (for diversity and Frechet distances).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Judge", "digit_split", "train_judge"]


def digit_split(seed: int = 0, test_fraction: float = 0.25) -> tuple[torch.Tensor, ...]:
    """``(train_x, train_y, test_x, test_y)``: images ``(N, 1, 8, 8)`` in [-1, 1], int64 labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.as_tensor(data.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    y = torch.as_tensor(data.target, dtype=torch.int64)
    g = torch.Generator().manual_seed(seed)
    test = torch.zeros(len(y), dtype=torch.bool)
    for c in range(10):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        test[idx[: max(1, round(test_fraction * len(idx)))]] = True
    return x[~test], y[~test], x[test], y[test]


class Judge(nn.Module):
    """A small CNN digit classifier: two conv layers, a 64-d feature layer, 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 4 * 4, 64)
        self.head = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.c1(x))
        h = F.max_pool2d(F.relu(self.c2(h)), 2)
        return F.relu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_judge(x: torch.Tensor, y: torch.Tensor, *, seed: int = 0, epochs: int = 15) -> Judge:
    """Train :class:`Judge` on ``(x, y)`` with small pixel-noise augmentation; eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Judge()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            b = perm[i : i + 64]
            xb = x[b] + 0.1 * torch.randn(x[b].shape, generator=g)
            loss = F.cross_entropy(model(xb), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()
