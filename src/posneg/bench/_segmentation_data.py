"""Frames, simulated observers and the tiny models of `posneg bench segmentation`.

Positive frames: scikit-learn's 8x8 digits (pixels / 16) upsampled bilinearly to ``size`` x
``size``; the object mask is ``pixel > 8/16`` (the card's check). Every frame, positive or
negative, gets a cluttered background: white noise plus smoothed noise blobs (a stand-in for
speckle and tissue texture). Negative frames hold the background alone.

Three observers draw each positive frame's mask with an observer-specific habit (observer 0
dilates by 1 px most of the time, observer 1 keeps the mask, observer 2 erodes by 1 px), and
each misses a frame (draws nothing) with probability ``p_miss``. On negative frames an observer
marks a spurious square with probability ``p_false`` (observers that disagree on empty frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Per observer: probabilities of (dilate, keep, erode) by one pixel.
OBSERVER_HABITS: tuple[tuple[float, float, float], ...] = (
    (0.7, 0.3, 0.0),
    (0.15, 0.7, 0.15),
    (0.0, 0.3, 0.7),
)


@dataclass(frozen=True)
class Frames:
    """A set of frames with their observer masks.

    Attributes:
        x: (N, 1, S, S) float32 frames.
        observers: (N, K, S, S) float32 binary observer masks.
        truth: (N, S, S) float32 true object masks (empty on negative frames).
        has_object: (N,) bool, whether a digit was drawn.
    """

    x: torch.Tensor
    observers: torch.Tensor
    truth: torch.Tensor
    has_object: torch.Tensor


def _digits(size: int) -> tuple[torch.Tensor, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(np.asarray(bunch.data, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, np.asarray(bunch.target)


def _dilate(m: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(m, 3, stride=1, padding=1)


def _erode(m: torch.Tensor) -> torch.Tensor:
    return -F.max_pool2d(-m, 3, stride=1, padding=1)


def _background(
    n: int, size: int, noise: float, clutter: float, g: torch.Generator
) -> torch.Tensor:
    white = noise * torch.randn(n, 1, size, size, generator=g)
    coarse = torch.randn(n, 1, size // 4, size // 4, generator=g)
    blobs = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return white + clutter * blobs.clamp_min(0.0)


def make_frames(
    digits: torch.Tensor,
    n_negative: int,
    *,
    noise: float,
    clutter: float,
    p_miss: float,
    p_false: float,
    generator: torch.Generator,
) -> Frames:
    """Frames of ``digits`` (M, 1, S, S) plus ``n_negative`` background-only frames, shuffled."""
    g = generator
    m, size = digits.shape[0], digits.shape[-1]
    n = m + n_negative
    content = torch.cat([digits, torch.zeros(n_negative, 1, size, size)])
    amp = 0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=g)
    x = amp * content + _background(n, size, noise, clutter, g)
    truth = (content > 0.5).float()  # (N, 1, S, S)
    has = torch.arange(n) < m
    obs = []
    for habit in OBSERVER_HABITS:
        op = torch.multinomial(torch.tensor(habit), n, replacement=True, generator=g)
        mk = torch.where((op == 0)[:, None, None, None], _dilate(truth), truth)
        mk = torch.where((op == 2)[:, None, None, None], _erode(truth), mk)
        miss = torch.rand(n, generator=g) < p_miss
        mk = torch.where(miss[:, None, None, None], torch.zeros_like(mk), mk)
        spurious = (torch.rand(n, generator=g) < p_false) & ~has
        r0 = torch.randint(0, size - 4, (n,), generator=g)
        c0 = torch.randint(0, size - 4, (n,), generator=g)
        rows = torch.arange(size)[None, :, None]
        cols = torch.arange(size)[None, None, :]
        square = (
            (rows >= r0[:, None, None])
            & (rows < r0[:, None, None] + 4)
            & (cols >= c0[:, None, None])
            & (cols < c0[:, None, None] + 4)
        )
        mk = torch.where((spurious[:, None, None] & square)[:, None], torch.ones_like(mk), mk)
        obs.append(mk[:, 0])
    perm = torch.randperm(n, generator=g)
    return Frames(
        x=x[perm].float(),
        observers=torch.stack(obs, dim=1)[perm],
        truth=truth[perm, 0],
        has_object=has[perm],
    )


def split_digits(size: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train / test digit images (a random split under ``seed``)."""
    x, _ = _digits(size)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = round(test_fraction * len(x))
    return x[perm[n_test:]], x[perm[:n_test]]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class TinyUNet(nn.Module):
    """A two-level U-Net (widths c, 2c, 4c) ending in a sigmoid, as the official U-Net does."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        c = width
        self.enc1, self.enc2, self.mid = _block(1, c), _block(c, 2 * c), _block(2 * c, 4 * c)
        self.dec2, self.dec1 = _block(6 * c, 2 * c), _block(3 * c, c)
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) frames -> (B, 1, S, S) probabilities (S divisible by 4)."""
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        mid = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(mid, scale_factor=2.0), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], dim=1))
        return torch.sigmoid(self.head(d1))


class PreScreen(nn.Module):
    """A small CNN frame classifier (conv-pool-conv-pool-global max-linear) giving logits."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        c = width
        self.features = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(4 * c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) -> (B,) logits."""
        h = self.features(x)
        pooled = torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3))], dim=1)
        return self.head(pooled)[:, 0]


def largest_component(masks: np.ndarray) -> np.ndarray:
    """Keep the largest 8-connected component of each (N, S, S) binary mask (the code's test
    post-processing ``KeepLargestComponent``)."""
    from scipy import ndimage

    out = np.zeros_like(masks)
    for i, m in enumerate(masks):
        lab, k = ndimage.label(m, structure=np.ones((3, 3)))
        if k:
            sizes = np.bincount(lab.ravel())[1:]
            out[i] = lab == (1 + int(np.argmax(sizes)))
    return out
