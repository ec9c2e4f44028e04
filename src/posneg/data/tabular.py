"""Imbalanced binary tabular tasks for the imbalance bench (no download).

- :func:`load_breast_cancer_imbalanced`: scikit-learn's Wisconsin breast cancer (569 samples,
  30 features); the positive class is *malignant*, subsampled to ``minority_fraction`` of the
  training split.
- :func:`load_digits_one_vs_rest`: scikit-learn's 8x8 digits (1797 samples, 64 pixels) as one
  digit against the rest, the digit subsampled to ``minority_fraction`` of the training split.
- :func:`load_npz_imbalanced`: a user's ``.npz`` (``X`` (N, F), ``y`` (N,)), read without pickle;
  the rarest class is the positive one, the others are negative; no subsampling.
- :func:`random_oversample`: the plain rebalancing baseline, minority samples duplicated
  uniformly with replacement up to the majority count.

Every task is split first, stratified, into train and test (:func:`posneg.data.stratified_split`),
and only then is the minority subsampled, in the training split alone: the test split is
untouched and keeps the data set's natural class ratio. Features are standardised per feature
with statistics of the (subsampled) training split. Everything is deterministic under ``seed``
(draws come from ``torch.Generator``\\ s seeded with it).
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass

import numpy as np
import torch

from posneg.data.digits import Standardizer, load_npz, stratified_split

__all__ = [
    "ImbalancedSplit",
    "load_breast_cancer_imbalanced",
    "load_digits_one_vs_rest",
    "load_npz_imbalanced",
    "random_oversample",
    "subsample_class",
]

#: Fewest minority samples a subsampled training split keeps (SMOTE's k = 5 needs 6).
MIN_MINORITY = 6


@dataclass(frozen=True)
class ImbalancedSplit:
    """A binary task with an untouched test split; label 1 is the minority (positive) class.

    Attributes:
        name: ``breast_cancer``, ``digits`` or the user file's path.
        x_train: (N_train, F) float32 standardised features.
        y_train: (N_train,) int64 labels in {0, 1}.
        x_test: (N_test, F) float32, standardised with the train statistics.
        y_test: (N_test,) int64 labels in {0, 1}.
        positive: what label 1 means (``malignant``, ``digit 8``, ``class 3``).
        seed: the seed the split and the subsample were drawn with.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    positive: str
    seed: int

    @property
    def n_features(self) -> int:
        """F, the number of features."""
        return int(self.x_train.shape[1])

    def counts(self) -> dict[str, list[int]]:
        """``{"train": [n_negative, n_positive], "test": [...]}``."""
        return {
            "train": np.bincount(self.y_train, minlength=2).tolist(),
            "test": np.bincount(self.y_test, minlength=2).tolist(),
        }


def _check_fraction(fn: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a real number; got {type(value).__name__}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{fn}: {name} must be in (0, 1); got {value!r}")
    return float(value)


def _check_seed(fn: str, seed: object) -> int:
    """An int >= 0 (Python or numpy integer, never a bool), returned as a Python ``int``."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{fn}: seed must be an int >= 0; got {seed!r}")
    return int(seed)


def subsample_class(
    y: np.ndarray, cls: int, fraction: float, *, seed: int = 0, min_count: int = MIN_MINORITY
) -> np.ndarray:
    """Indices that keep every sample of the other classes and a random subset of ``cls``.

    The subset is sized so that ``cls`` makes up ``fraction`` of the result,
    ``round(fraction / (1 - fraction) * n_other)``, at least ``min_count`` and at most all of
    ``cls``; which samples stay is drawn by a ``torch.Generator`` seeded with ``seed``.

    Returns:
        Sorted int64 indices into ``y``.
    """
    fn = "subsample_class"
    fraction = _check_fraction(fn, "fraction", fraction)
    y = np.asarray(y)
    members = np.flatnonzero(y == cls)
    others = np.flatnonzero(y != cls)
    want = round(fraction / (1.0 - fraction) * len(others))
    keep = min(len(members), max(want, min_count))
    gen = torch.Generator().manual_seed(int(seed))
    chosen = members[torch.randperm(len(members), generator=gen).numpy()[:keep]]
    return np.sort(np.concatenate([others, chosen])).astype(np.int64)


def random_oversample(
    x: np.ndarray, y: np.ndarray, *, generator: torch.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Duplicate samples of every non-majority class up to the majority count.

    The duplicates are drawn uniformly with replacement (imbalanced-learn's
    ``RandomOverSampler``), class by class in sorted label order, and appended after the
    originals.

    Args:
        x: (N, ...) samples.
        y: (N,) labels.
        generator: the draws' generator (torch's global one when ``None``).

    Returns:
        ``(x, y)`` resampled: the originals first, then the duplicates.

    Raises:
        ValueError: ``x`` and ``y`` of different lengths, or ``y`` not one-dimensional.
    """
    if np.ndim(y) != 1 or len(x) != len(y):
        raise ValueError(
            f"random_oversample: y must be (N,) with N = len(x) = {len(x)}; got shape {np.shape(y)}"
        )
    classes, counts = np.unique(y, return_counts=True)
    top = int(counts.max())
    xs, ys = [x], [y]
    for c, n in zip(classes, counts, strict=True):
        if n == top:
            continue
        idx = np.flatnonzero(y == c)
        pick = torch.randint(len(idx), (top - int(n),), generator=generator).numpy()
        xs.append(x[idx[pick]])
        ys.append(y[idx[pick]])
    return np.concatenate(xs), np.concatenate(ys)


def _finish(
    name: str,
    x: np.ndarray,
    y01: np.ndarray,
    positive: str,
    *,
    minority_fraction: float | None,
    test_fraction: float,
    seed: int,
) -> ImbalancedSplit:
    train_idx, test_idx = stratified_split(y01, test_fraction=test_fraction, seed=seed)
    if minority_fraction is not None:
        # a seed stream apart from the split's, so that the subsample is not tied to its order
        sub = subsample_class(y01[train_idx], 1, minority_fraction, seed=seed + 1_000_003)
        train_idx = train_idx[sub]
    x_train, x_test = x[train_idx], x[test_idx]
    scaler = Standardizer.fit(x_train, per_feature=True)
    xt = scaler(torch.as_tensor(x_train, dtype=torch.float32)).numpy()
    xs = scaler(torch.as_tensor(x_test, dtype=torch.float32)).numpy()
    return ImbalancedSplit(
        name=name,
        x_train=xt.astype(np.float32),
        y_train=y01[train_idx].astype(np.int64),
        x_test=xs.astype(np.float32),
        y_test=y01[test_idx].astype(np.int64),
        positive=positive,
        seed=seed,
    )


def load_breast_cancer_imbalanced(
    *, minority_fraction: float = 0.05, test_fraction: float = 0.3, seed: int = 0
) -> ImbalancedSplit:
    """Breast cancer, malignant (label 1) subsampled to ``minority_fraction`` of training.

    scikit-learn's copy codes malignant as 0 and benign as 1; here malignant is relabelled 1, the
    positive minority class. The 569 samples (212 malignant) are split stratified; the test split
    keeps the natural 37% malignant, the training split keeps all benign samples and about
    ``minority_fraction`` malignant ones (13 of 263 at the defaults).

    Args:
        minority_fraction: share of malignant samples in the training split, in (0, 1).
        test_fraction: share of each class held out, in (0, 1).
        seed: split and subsample seed (>= 0).

    Returns:
        An :class:`ImbalancedSplit` with 30 standardised features.

    Raises:
        ValueError: a fraction outside (0, 1) or a negative seed.
    """
    fn = "load_breast_cancer_imbalanced"
    minority_fraction = _check_fraction(fn, "minority_fraction", minority_fraction)
    test_fraction = _check_fraction(fn, "test_fraction", test_fraction)
    seed = _check_seed(fn, seed)
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = np.asarray(bunch.data, dtype=np.float64)
    y01 = (np.asarray(bunch.target) == 0).astype(np.int64)  # 0 = malignant in scikit-learn
    return _finish(
        "breast_cancer",
        x,
        y01,
        "malignant",
        minority_fraction=minority_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )


def load_digits_one_vs_rest(
    *, digit: int = 8, minority_fraction: float = 0.05, test_fraction: float = 0.3, seed: int = 0
) -> ImbalancedSplit:
    """8x8 digits as ``digit`` (label 1) against the nine others, the digit made rare.

    About 10% of the 1797 images show any one digit; the training split keeps every other digit
    and subsamples ``digit`` to ``minority_fraction`` of it (about 60 of 1195 at the defaults),
    while the test split keeps the natural ratio. Pixels are divided by 16, then standardised
    per pixel with training statistics.

    Args:
        digit: the rare positive digit, 0-9 (default 8, often confused with 1, 3, 5 and 9).
        minority_fraction: share of ``digit`` in the training split, in (0, 1).
        test_fraction: share of each class held out, in (0, 1).
        seed: split and subsample seed (>= 0).

    Returns:
        An :class:`ImbalancedSplit` with 64 standardised features.

    Raises:
        ValueError: a digit outside 0-9, a fraction outside (0, 1), a negative seed.
    """
    fn = "load_digits_one_vs_rest"
    if isinstance(digit, bool) or not isinstance(digit, numbers.Integral) or not 0 <= digit <= 9:
        raise ValueError(f"{fn}: digit must be an int in 0-9; got {digit!r}")
    digit = int(digit)
    minority_fraction = _check_fraction(fn, "minority_fraction", minority_fraction)
    test_fraction = _check_fraction(fn, "test_fraction", test_fraction)
    seed = _check_seed(fn, seed)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y01 = (np.asarray(bunch.target) == digit).astype(np.int64)
    return _finish(
        "digits",
        x,
        y01,
        f"digit {digit}",
        minority_fraction=minority_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )


def load_npz_imbalanced(
    path: str | os.PathLike[str], *, test_fraction: float = 0.3, seed: int = 0
) -> ImbalancedSplit:
    """A user's ``.npz`` (``X`` (N, F), ``y`` (N,)) as the rarest class against the rest.

    The file is read by :func:`posneg.data.load_npz` (``allow_pickle=False``, validated). The
    positive class is the least frequent label (ties: the larger label value); every other label
    is negative. The data's own imbalance is kept: nothing is subsampled.

    Args:
        path: the ``.npz`` file.
        test_fraction: share of each class held out, in (0, 1).
        seed: split seed (>= 0).

    Returns:
        An :class:`ImbalancedSplit` with per-feature standardised features.

    Raises:
        ValueError: an unreadable file, missing arrays, wrong shapes or dtypes, NaN/inf,
            fewer than 10 samples or 2 classes, a class with fewer than 2 samples.
        FileNotFoundError: no such file.
    """
    fn = "load_npz_imbalanced"
    test_fraction = _check_fraction(fn, "test_fraction", test_fraction)
    seed = _check_seed(fn, seed)
    data = load_npz(path, test_fraction=0.5, seed=seed)  # validation and label coding only
    codes = np.concatenate([data.y_train, data.y_test])
    x = np.concatenate([data.x_train, data.x_test]).astype(np.float64)
    counts = np.bincount(codes, minlength=data.n_classes)
    rarest = max(range(len(counts)), key=lambda c: (-counts[c], c))
    y01 = (codes == rarest).astype(np.int64)
    return _finish(
        os.fspath(path),
        x,
        y01,
        f"class {data.classes[rarest].item()!r}",
        minority_fraction=None,
        test_fraction=test_fraction,
        seed=seed,
    )
