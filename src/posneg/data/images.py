"""Labelled image sets as float32 pixels in [0, 1]: upsampled 8x8 digits or a user ``.npz``.

- :func:`load_image_digits`: scikit-learn's bundled 8x8 digits (no download) as
  (N, 1, size, size) images, upsampled bilinearly (32x32 by default, so that boxes, Fourier masks
  and pasted patches of the mixing techniques are meaningful).
- :func:`load_image_npz`: a user's ``.npz`` with images ``X`` (N, C, H, W) or (N, H, W) and
  labels ``y`` (N,), read by :func:`posneg._npz.read_npz` (``allow_pickle=False``: nothing is
  ever unpickled).

Both split with :func:`posneg.data.stratified_split` (the digits get the same split as
:func:`posneg.data.load_digits` under the same seed) and return an :class:`ImageData` whose
``mean``/``std`` are one scalar pair over the clean train pixels.

Example:
    >>> data = load_image_digits(size=16)
    >>> data.image_shape, data.n_classes
    ((1, 16, 16), 10)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from posneg._npz import ArrayHeader, integer_labels, read_npz
from posneg.data.digits import MIN_SAMPLES, _encode_labels, stratified_split

__all__ = ["ImageData", "load_image_digits", "load_image_npz"]

#: The most values (C x H x W) one image of a user file may hold, checked before reading.
MAX_IMAGE_VALUES = 1 << 22


@dataclass(frozen=True)
class ImageData:
    """A stratified train/test split of a labelled image set, float32 pixels in [0, 1].

    Attributes:
        name: ``digits (8x8 -> 32x32)`` or the user file's path.
        x_train, x_test: (N, C, H, W) float32 in [0, 1].
        y_train, y_test: (N,) int64 labels in 0..K-1.
        classes: the original label values.
        mean, std: one scalar pair over the clean train pixels (a model's input scaling).
        note: how the pixels were scaled.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    mean: float
    std: float
    note: str = ""

    @property
    def n_classes(self) -> int:
        """K, the number of classes."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) for images; (C, L) for sequences (:class:`SequenceData` in the bench)."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    def summary(self) -> dict[str, Any]:
        """Name, note, image shape and sizes, JSON-ready (for a report's configuration)."""
        return {
            "data_name": self.name,
            "data_note": self.note,
            "image_shape": list(self.image_shape),
            "n_train": len(self.x_train),
            "n_test": len(self.x_test),
            "n_classes": self.n_classes,
        }


def split_images(
    name: str, x: np.ndarray, y: np.ndarray, *, test_fraction: float, seed: int, fn: str, note: str
) -> ImageData:
    """Stratified split of images ``x`` (N, C, H, W) in [0, 1] with labels ``y`` (N,).

    Raises:
        ValueError: naming ``fn``: fewer than 2 classes or a class with fewer than 2 samples.
    """
    classes, codes = _encode_labels(fn, y)
    train_idx, test_idx = stratified_split(codes, test_fraction=test_fraction, seed=seed)
    x = x.astype(np.float32)
    x_train = x[train_idx]
    std = float(x_train.std())
    return ImageData(
        name=name,
        x_train=x_train,
        y_train=codes[train_idx],
        x_test=x[test_idx],
        y_test=codes[test_idx],
        classes=classes,
        mean=float(x_train.mean()),
        std=std if std > 1e-8 else 1.0,
        note=note,
    )


def load_image_digits(*, size: int = 32, test_fraction: float = 0.25, seed: int = 0) -> ImageData:
    """scikit-learn's 8x8 digits as (N, 1, size, size) images in [0, 1], bilinear upsampling.

    Args:
        size: side of the upsampled images (8 keeps the originals).
        test_fraction: share of each class held out, in (0, 1).
        seed: the split seed (the split of :func:`posneg.data.load_digits` under that seed).

    Returns:
        An :class:`ImageData` of 1797 images, 10 classes.

    Raises:
        ValueError: ``test_fraction`` outside (0, 1).
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = torch.as_tensor(np.asarray(bunch.data, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp(0.0, 1.0)
    return split_images(
        f"digits (8x8 -> {size}x{size})",
        x.numpy(),
        np.asarray(bunch.target, dtype=np.int64),
        test_fraction=test_fraction,
        seed=seed,
        fn="load_image_digits",
        note=f"pixels / 16, bilinear upsampling to {size}x{size}",
    )


def _unit_pixels(fn: str, x: np.ndarray) -> tuple[np.ndarray, str]:
    """Pixels as float64 in [0, 1] and a note saying how they were scaled."""
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0, "uint8 pixels / 255"
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{fn}: X must hold real numbers; got dtype {x.dtype}")
    xf = x.astype(np.float64)
    if not np.all(np.isfinite(xf)):
        bad = int(np.count_nonzero(~np.isfinite(xf)))
        raise ValueError(f"{fn}: X contains {bad} NaN or inf value(s)")
    lo, hi = float(xf.min()), float(xf.max())
    if lo >= 0.0 and hi <= 1.0:
        return xf, "float pixels in [0, 1], kept"
    xf = (xf - lo) / (hi - lo) if hi > lo else np.zeros_like(xf)
    return xf, f"pixels min-max scaled from [{lo:g}, {hi:g}] to [0, 1]"


def load_image_npz(
    path: str | os.PathLike[str], *, test_fraction: float = 0.25, seed: int = 0
) -> ImageData:
    """A user's ``.npz`` with images ``X`` (N, C, H, W) or (N, H, W) and labels ``y`` (N,).

    Read by :func:`posneg._npz.read_npz`: nothing is unpickled, and sizes declared in the file
    are checked before any data is read (at most :data:`posneg._npz.MAX_NPZ_BYTES`, 2 GiB, and
    at most :data:`MAX_IMAGE_VALUES` values per image). uint8 pixels are divided by 255; float
    pixels already in [0, 1] are kept, others are min-max scaled over the whole array to [0, 1].

    Args:
        path: the ``.npz`` file.
        test_fraction: share of each class held out, in (0, 1).
        seed: the split seed.

    Returns:
        An :class:`ImageData` named by the path.

    Raises:
        ValueError: unreadable file (a directory, not an ``.npz``, declared sizes over the
            limits), missing arrays, wrong shapes or dtypes, images of more than
            :data:`MAX_IMAGE_VALUES` values, NaN/inf pixels, images smaller than 8x8, fewer than
            10 samples or a class with fewer than 2.
        FileNotFoundError: no such file.
    """
    fn = "load_image_npz"
    path = os.fspath(path)

    def check(headers: Mapping[str, ArrayHeader]) -> None:
        shape = headers["X"].shape
        if len(shape) not in (3, 4):
            raise ValueError(f"{fn}: X must have shape (N, C, H, W) or (N, H, W); got {shape}")
        values = math.prod(shape[1:])
        if values > MAX_IMAGE_VALUES:
            raise ValueError(
                f"{fn}: {path}: each image of X {shape} holds {values} values; at most "
                f"{MAX_IMAGE_VALUES} are supported (for example 4 x 1024 x 1024): resize first"
            )

    arrays = read_npz(path, ("X", "y"), fn=fn, layout="'X' (N, C, H, W) and 'y' (N,)", check=check)
    x, y = arrays["X"], arrays["y"]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"{fn}: X must have shape (N, C, H, W) or (N, H, W); got {x.shape}")
    if min(x.shape[2], x.shape[3]) < 8:
        raise ValueError(f"{fn}: images must be at least 8x8; got {x.shape[2]}x{x.shape[3]}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{fn}: y must have shape ({x.shape[0]},) matching X; got {y.shape}")
    y = integer_labels(y, fn=fn)
    if x.shape[0] < MIN_SAMPLES:
        raise ValueError(f"{fn}: X must have at least {MIN_SAMPLES} samples; got {x.shape[0]}")
    xf, note = _unit_pixels(fn, x)
    return split_images(path, xf, y, test_fraction=test_fraction, seed=seed, fn=fn, note=note)
