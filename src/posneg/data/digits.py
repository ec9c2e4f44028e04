"""Small labelled data sets for the benches: scikit-learn's bundled 8x8 digits or a user ``.npz``.

The digits (1797 images of 8x8 pixels, 10 classes, values 0-16) ship inside scikit-learn, so no
download is ever needed. A user file is an ``.npz`` holding ``X`` (N, F) floats and ``y`` (N,)
integer labels; it is read by :func:`posneg._npz.read_npz` (``allow_pickle=False``), so it can
never run code.

The split into train and test is stratified and deterministic under a seed: each class is
shuffled by a ``torch.Generator`` seeded with ``seed`` and a ``test_fraction`` of it (at least one
sample, and never all of them) goes to the test side. The standardiser is fitted on the train
side only.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from posneg._npz import ArrayHeader, integer_labels, read_npz

__all__ = [
    "Dataset",
    "Standardizer",
    "load_digits",
    "load_npz",
    "stratified_split",
]

#: The fewest samples a user file may hold, and the fewest per class (one train, one test).
MIN_SAMPLES = 10
MIN_PER_CLASS = 2
#: The most features a user file may hold (checked from the file's header before reading).
MAX_FEATURES = 1 << 16


@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / std`` with statistics fitted on the train split.

    Attributes:
        mean: (F,) per-feature means, or a (1,) scalar mean.
        std: matching standard deviations, floored so that constant features stay finite.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, *, per_feature: bool = True) -> Standardizer:
        """Fit on ``x`` (N, F): per-feature statistics, or one scalar pair (``per_feature=False``).

        Images use the scalar form so that an augmentation that moves pixels (a shift) keeps
        their meaning; per-feature statistics would blow up rarely-inked border pixels.
        """
        x = np.asarray(x, dtype=np.float64)
        if per_feature:
            mean, std = x.mean(axis=0), x.std(axis=0)
        else:
            mean, std = np.array([x.mean()]), np.array([x.std()])
        std = np.where(std > 1e-8, std, 1.0)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise a tensor (N, F) on its own device."""
        mean = torch.as_tensor(self.mean, device=x.device, dtype=x.dtype)
        std = torch.as_tensor(self.std, device=x.device, dtype=x.dtype)
        return (x - mean) / std


@dataclass(frozen=True)
class Dataset:
    """A stratified train/test split of one labelled data set (raw features, float32).

    Attributes:
        name: ``digits`` or the user file's path.
        x_train, y_train: (N_train, F) float32 and (N_train,) int64 labels in 0..C-1.
        x_test, y_test: the held-out split.
        classes: the original label values, ``classes[c]`` for label ``c``.
        image_shape: ``(H, W)`` when the features are a flattened image (digits: (8, 8)), else
            ``None``; benches pick image or vector augmentations from it.
        scaler: standardiser fitted on ``x_train``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    image_shape: tuple[int, int] | None
    scaler: Standardizer

    @property
    def n_features(self) -> int:
        """F, the number of features."""
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        """C, the number of classes."""
        return len(self.classes)


def _encode_labels(fn: str, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes, minlength=len(classes))
    if len(classes) < 2:
        raise ValueError(f"{fn}: y must hold at least 2 classes; got {len(classes)}")
    if counts.min() < MIN_PER_CLASS:
        worst = classes[int(counts.argmin())].item()
        raise ValueError(
            f"{fn}: every class needs at least {MIN_PER_CLASS} samples (one train, one test); "
            f"class {worst!r} has {int(counts.min())}"
        )
    return classes, codes.astype(np.int64)


def stratified_split(
    y: np.ndarray, *, test_fraction: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: the sorted train and test indices.

    Each class is shuffled with a ``torch.Generator`` seeded with ``seed``; ``round(n_c *
    test_fraction)`` of its ``n_c`` samples, clipped to ``[1, n_c - 1]``, go to the test side.

    Args:
        y: (N,) integer labels; every class needs at least 2 samples.
        test_fraction: share of each class held out, in (0, 1).
        seed: the split seed (same seed, same split, on every machine).

    Returns:
        ``(train_idx, test_idx)`` int64 arrays, each sorted.

    Raises:
        ValueError: ``test_fraction`` outside (0, 1) or a class with fewer than 2 samples.
    """
    fn = "stratified_split"
    if not (
        isinstance(test_fraction, numbers.Real)
        and not isinstance(test_fraction, bool)
        and 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(f"{fn}: test_fraction must be in (0, 1); got {test_fraction!r}")
    y = np.asarray(y)
    gen = torch.Generator().manual_seed(int(seed))
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < MIN_PER_CLASS:
            raise ValueError(
                f"{fn}: class {c.item()!r} has {len(idx)} sample(s); at least 2 needed"
            )
        perm = idx[torch.randperm(len(idx), generator=gen).numpy()]
        n_test = min(max(round(len(idx) * float(test_fraction)), 1), len(idx) - 1)
        test.append(perm[:n_test])
        train.append(perm[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _build(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    image_shape: tuple[int, int] | None,
    test_fraction: float,
    seed: int,
    fn: str,
) -> Dataset:
    classes, codes = _encode_labels(fn, y)
    train_idx, test_idx = stratified_split(codes, test_fraction=test_fraction, seed=seed)
    x = x.astype(np.float32)
    x_train = x[train_idx]
    scaler = Standardizer.fit(x_train, per_feature=image_shape is None)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=codes[train_idx],
        x_test=x[test_idx],
        y_test=codes[test_idx],
        classes=classes,
        image_shape=image_shape,
        scaler=scaler,
    )


def load_digits(*, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), split and scaled.

    Pixels are divided by 16 (to [0, 1]); the standardiser is one scalar mean/std over all train
    pixels, so that shifted images keep their meaning.

    Args:
        test_fraction: share of each class held out.
        seed: the split seed.

    Returns:
        A :class:`Dataset` with ``image_shape=(8, 8)``.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    return _build(
        "digits",
        x,
        y,
        image_shape=(8, 8),
        test_fraction=test_fraction,
        seed=seed,
        fn="load_digits",
    )


def load_npz(
    path: str | os.PathLike[str], *, test_fraction: float = 0.25, seed: int = 0
) -> Dataset:
    """A user's ``.npz`` with ``X`` (N, F) floats and ``y`` (N,) integer labels, split and scaled.

    The file is read by :func:`posneg._npz.read_npz`: nothing is unpickled, and sizes declared
    in the file are checked before any data is read (at most
    :data:`posneg._npz.MAX_NPZ_BYTES`, 2 GiB, and at most :data:`MAX_FEATURES` features).
    Features are standardised per feature with train statistics; such data gets vector
    augmentations (noise, feature dropout) in the benches, never image ones.

    Args:
        path: the ``.npz`` file.
        test_fraction: share of each class held out.
        seed: the split seed.

    Returns:
        A :class:`Dataset` with ``image_shape=None``.

    Raises:
        ValueError: unreadable file (a directory, not an ``.npz``, declared sizes over the
            limits), a missing array, wrong shapes or dtypes, more than :data:`MAX_FEATURES`
            features, NaN/inf features, fewer than 10 samples, fewer than 2 classes, or a class
            with fewer than 2 samples.
        FileNotFoundError: no such file.
    """
    fn = "load_npz"
    path = os.fspath(path)

    def check(headers: Mapping[str, ArrayHeader]) -> None:
        shape = headers["X"].shape
        if len(shape) != 2 or shape[1] < 1:
            raise ValueError(f"{fn}: X must have shape (N, F); got {shape}")
        if shape[1] > MAX_FEATURES:
            raise ValueError(
                f"{fn}: {path}: X has {shape[1]} features; at most {MAX_FEATURES} are supported "
                "(the benches' networks hold one weight per feature and hidden unit): reduce "
                "the features first (PCA, feature selection)"
            )

    arrays = read_npz(path, ("X", "y"), fn=fn, layout="'X' (N, F) and 'y' (N,)", check=check)
    x, y = arrays["X"], arrays["y"]
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"{fn}: X must have shape (N, F); got {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{fn}: y must have shape ({x.shape[0]},) matching X; got {y.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{fn}: X must hold real numbers; got dtype {x.dtype}")
    y = integer_labels(y, fn=fn)
    if x.shape[0] < MIN_SAMPLES:
        raise ValueError(f"{fn}: X must have at least {MIN_SAMPLES} samples; got {x.shape[0]}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise ValueError(f"{fn}: X contains {bad} NaN or inf value(s)")
    return _build(
        path,
        x,
        y.astype(np.int64),
        image_shape=None,
        test_fraction=test_fraction,
        seed=seed,
        fn=fn,
    )
