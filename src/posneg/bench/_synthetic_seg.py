"""Digits in a fan-shaped "sector": the EchoGAINS section's segmentation data and model.

An ultrasound stand-in on a 16x16 canvas: a circular sector with its apex at the top centre
(half-angle ``alpha``, depth ``radius``, axis rotated by ``phi``) filled with speckle-like
texture, and a digit (scikit-learn's 8x8 digits, resampled bilinearly at ``scale``) drawn
brighter inside it along the axis at 55% of the depth. Label 1 = the digit's stroke inside the
sector (digit intensity > 0.4), 0 = everything else. The *internal* geometry is fixed
(``alpha`` 0.6, depth 15, no rotation, scale 1); the *external* test set draws all four per
image (``alpha`` U(0.35, 0.9), depth U(10, 16), ``phi`` U(-0.35, 0.35), scale U(0.8, 1.2)),
the geometry shift EchoGAINS' transforms are meant to cover.

:class:`SegNet` is a small fully convolutional net (3x3 convs, one dilated) with two logits per
pixel; :func:`dice` is the pooled Dice of the stroke class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SIZE", "SegNet", "dice", "render", "train_segnet"]

SIZE = 16


def render(
    digits: torch.Tensor,
    *,
    external: bool,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 1, 8, 8)`` digits in [0, 1] -> images ``(N, 16, 16)`` in [0, 1], labels int64."""
    n = len(digits)
    g = generator

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    if external:
        alpha, radius, phi, scale = u(0.35, 0.9), u(10.0, 16.0), u(-0.35, 0.35), u(0.8, 1.2)
    else:
        alpha, radius = torch.full((n,), 0.6), torch.full((n,), 15.0)
        phi, scale = torch.zeros(n), torch.ones(n)
    r = torch.arange(SIZE, dtype=torch.float32)[None, :, None] + 0.5
    c = torch.arange(SIZE, dtype=torch.float32)[None, None, :] + 0.5 - SIZE / 2
    rho = (r**2 + c**2).sqrt()
    theta = torch.atan2(c, r) - phi[:, None, None]
    sector = (theta.abs() < alpha[:, None, None]) & (rho < radius[:, None, None])
    # the digit: centre on the axis at 0.55 * depth, 8 px * scale wide
    d0 = 0.55 * radius
    cy, cx = d0 * phi.cos(), SIZE / 2 + d0 * phi.sin()
    half = 4.0 * scale
    ys = (r - cy[:, None, None]) / half[:, None, None]  # [-1, 1] across the digit
    xs = (c + SIZE / 2 - cx[:, None, None]) / half[:, None, None]
    grid = torch.stack([xs.expand(n, SIZE, SIZE), ys.expand(n, SIZE, SIZE)], dim=-1)
    ink = F.grid_sample(digits, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ink = ink[:, 0]
    speckle = torch.rand(n, SIZE, SIZE, generator=g)
    image = (0.25 + 0.15 * speckle + 0.55 * ink).clamp(0, 1) * sector
    label = ((ink > 0.4) & sector).long()
    return image, label


class SegNet(nn.Module):
    """``(N, 1, 16, 16)`` -> ``(N, 2, 16, 16)`` logits."""

    def __init__(self, width: int = 12) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_segnet(
    x: torch.Tensor, y: torch.Tensor, *, steps: int, seed: int, g: torch.Generator
) -> SegNet:
    """Adam(3e-3), batches of 32 from ``g``; ``x`` (N, 16, 16) in [0, 1], ``y`` (N, 16, 16)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SegNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(len(y), (32,), generator=g)
        loss = F.cross_entropy(net(x[idx, None]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def dice(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Pooled Dice of label 1 over the whole set."""
    pred = net(x[:, None]).argmax(1) == 1
    truth = y == 1
    inter = (pred & truth).sum()
    return float(2 * inter / (pred.sum() + truth.sum()).clamp(min=1))
