"""The 1-D side of `posneg bench mixing`: MNIST-1D as a bench data set and a small 1-D CNN.

- :class:`SequenceData`: a train/test split of labelled sequences (N, C, L), float32, with the
  same fields as :class:`~posneg.data.images.ImageData` (``image_shape`` is ``(C, L)``).
- :func:`load_mnist1d`: MNIST-1D (Greydanus, "Scaling down deep learning", 2020, arXiv
  2011.14439) from :mod:`posneg.data.mnist1d`, its own fixed 4000 / 1000 split, as (N, 1, 40).
- :class:`SmallCNN1d`: three 1-D conv blocks and a linear head.
- :data:`SEQUENCE_TECHNIQUES`: which techniques of the bench apply to sequences, and why the
  others do not (:func:`not_for_sequences`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from posneg.data.images import ImageData

__all__ = [
    "DATASETS",
    "MNIST1D_EPOCHS",
    "SEQUENCE_TECHNIQUES",
    "SequenceData",
    "SmallCNN1d",
    "load_mnist1d",
    "not_for_sequences",
    "sequence_data",
]

#: The values of ``--dataset``: the upsampled 8x8 digits (images) and MNIST-1D (sequences).
DATASETS: tuple[str, ...] = ("digits", "mnist1d")

#: Epochs per run on MNIST-1D when ``--epochs`` is not given (4000 samples, batch 64: 63 steps
#: an epoch, 1260 steps; the CNN reaches about 98% test accuracy without mixing).
MNIST1D_EPOCHS = 20

#: The techniques that take (B, C, L) sequences: MixUp blends any shape; CutMix cuts a segment
#: of ``floor((1 - lam) L)`` steps (its 1-D form); FMix draws 1-D Fourier masks (the FMix paper's
#: sequence experiments); ResizeMix pastes the whole partner, linearly resized to ``tau L`` steps.
SEQUENCE_TECHNIQUES: tuple[str, ...] = ("none", "mixup", "cutmix", "fmix", "resizemix")

_WHY_NOT: dict[str, str] = {
    "randaugment": "RandAugment's operations are 2-D image operations",
    "corruptions": "MedMNIST-C's corruptions are 2-D image corruptions",
}


def not_for_sequences(key: str) -> str | None:
    """Why technique ``key`` does not apply to sequences, or ``None`` when it does."""
    if key in SEQUENCE_TECHNIQUES:
        return None
    return _WHY_NOT.get(key, f"{key} takes images only")


class SequenceData(ImageData):
    """A train/test split of labelled sequences: :class:`~posneg.data.images.ImageData`'s fields
    with ``x_train``, ``x_test`` of shape (N, C, L) float32 and ``image_shape`` = (C, L). A type of
    its own so that the bench picks the 1-D model and report for it."""


def sequence_data(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    note: str,
) -> SequenceData:
    """A :class:`SequenceData` of (N, L) or (N, C, L) arrays with integer labels 0..K-1."""
    xs = [np.asarray(x, dtype=np.float32) for x in (x_train, x_test)]
    xs = [x[:, None, :] if x.ndim == 2 else x for x in xs]
    ys = [np.asarray(y, dtype=np.int64) for y in (y_train, y_test)]
    std = float(xs[0].std())
    return SequenceData(
        name=name,
        x_train=xs[0],
        y_train=ys[0],
        x_test=xs[1],
        y_test=ys[1],
        classes=np.unique(np.concatenate(ys)),
        mean=float(xs[0].mean()),
        std=std if std > 1e-8 else 1.0,
        note=note,
    )


def load_mnist1d() -> SequenceData:
    """MNIST-1D's published train/test split (4000 / 1000 sequences of length 40, 10 classes).

    Generated offline and cached by :mod:`posneg.data.mnist1d` (the ``mnist1d`` package's
    ``make_dataset`` with its published default arguments).
    """
    from posneg.data import mnist1d

    d = mnist1d.load_mnist1d()
    return sequence_data(
        "MNIST-1D",
        d.x_train,
        d.y_train,
        d.x_test,
        d.y_test,
        note="mnist1d.data.make_dataset, published defaults (its own 4000 / 1000 split)",
    )


class SmallCNN1d(nn.Module):
    """Three 1-D conv blocks (32, 64, 64 channels) and a linear head.

    ``Conv(C->32, 5) BN ReLU MaxPool(2) - Conv(32->64, 3) BN ReLU MaxPool(2) - Conv(64->64, 3) BN
    ReLU - global average pool - Linear(64->K)``, fed ``(x - mean) / std`` with one scalar
    mean/std (the train values'). The 1-D counterpart of the bench's ``SmallCNN``; MNIST-1D's
    paper uses a CNN of three strided 1-D convolutions.

    Args:
        in_channels: C.
        n_classes: K.
        mean, std: the input scaling.

    Example:
        >>> SmallCNN1d(1, 10, mean=0.0, std=1.0)(torch.rand(2, 1, 40)).shape
        torch.Size([2, 10])
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, in_channels: int, n_classes: int, *, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

        def block(cin: int, cout: int, k: int) -> list[nn.Module]:
            return [
                nn.Conv1d(cin, cout, k, padding=k // 2, bias=False),
                nn.BatchNorm1d(cout),
                nn.ReLU(),
            ]

        self.features = nn.Sequential(
            *block(in_channels, 32, 5),
            nn.MaxPool1d(2, ceil_mode=True),
            *block(32, 64, 3),
            nn.MaxPool1d(2, ceil_mode=True),
            *block(64, 64, 3),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of sequences (B, C, L)."""
        return self.head(self.features((x - self.mean) / self.std))
