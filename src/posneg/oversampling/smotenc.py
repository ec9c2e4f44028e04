"""SMOTE-NC: SMOTE for data with both continuous and categorical (nominal) columns.

Chawla, Bowyer, Hall, Kegelmeyer. *SMOTE: Synthetic Minority Over-sampling Technique.* JAIR 2002,
section 6.1 (SMOTE-NC), arXiv 1106.1813. Semantics follow imbalanced-learn's
``imblearn.over_sampling.SMOTENC``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from posneg.oversampling import _io
from posneg.oversampling._base import OverSampler
from posneg.oversampling._neighbors import kneighbors
from posneg.oversampling._strategy import SamplingStrategy, check_strategy_value, resolve_strategy
from posneg.oversampling.smote import CITATION as _SMOTE_CITATION

__all__ = ["SMOTENC"]

CITATION = _SMOTE_CITATION

_PARAMS = (
    "categorical_features",
    "sampling_strategy",
    "random_state",
    "k_neighbors",
    "knn",
    "n_probe",
)
_FITTED = (
    "feature_names_in_",
    "sampling_strategy_",
    "categorical_features_",
    "continuous_features_",
    "median_std_",
    "n_features_in_",
)


def _column_indices(
    fn: str, spec: Any, n_features: int, names: np.ndarray | None = None
) -> np.ndarray:
    """Categorical column indices from a list of ints, of column names (a DataFrame with string
    column names), or a boolean mask of length D."""
    arr = np.asarray(spec.cpu() if isinstance(spec, torch.Tensor) else spec)
    if arr.ndim == 1 and arr.size and arr.dtype.kind in "OUS":
        if names is None:
            raise TypeError(
                f"{fn}: categorical_features given as column names ({spec!r}) needs X as a "
                "DataFrame with string column names; pass column indices otherwise"
            )
        where = {str(n): i for i, n in enumerate(names)}
        missing = [v for v in arr.tolist() if v not in where]
        if missing:
            raise ValueError(
                f"{fn}: categorical_features names columns {missing} that X does not have "
                f"(columns: {list(names)})"
            )
        arr = np.asarray([where[v] for v in arr.tolist()], dtype=np.int64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{fn}: categorical_features must be a non-empty list of column indices or a "
            f"boolean mask of length D; got {spec!r}"
        )
    if arr.dtype == np.bool_:
        if arr.shape[0] != n_features:
            raise ValueError(
                f"{fn}: categorical_features as a boolean mask must have length D={n_features}; "
                f"got {arr.shape[0]}"
            )
        return np.flatnonzero(arr).astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"{fn}: categorical_features must hold int column indices or bools; got {arr.dtype}"
        )
    idx = np.where(arr < 0, arr + n_features, arr)
    if (idx < 0).any() or (idx >= n_features).any():
        raise ValueError(
            f"{fn}: categorical_features indices must be in [0, {n_features}); got {spec!r}"
        )
    return np.unique(idx).astype(np.int64)


def _factorize(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of an object column (sorted when comparable, else in order of first
    appearance) and each cell's code."""
    try:
        values, codes = np.unique(column, return_inverse=True)
        return values.astype(object), codes.reshape(-1).astype(np.int64)
    except TypeError:  # values of types that do not compare (e.g. str and float)
        index: dict[Any, int] = {}
        codes = np.fromiter((index.setdefault(v, len(index)) for v in column), np.int64)
        table = np.empty(len(index), dtype=object)
        table[:] = list(index)
        return table, codes


def _copy_into(rows: torch.Tensor) -> Callable[[torch.Tensor], None]:
    def fill(out: torch.Tensor) -> None:
        out.copy_(rows)

    return fill


class SMOTENC(OverSampler):
    """SMOTE for mixed data: continuous columns interpolated, categorical columns voted.

    Chawla, Bowyer, Hall, Kegelmeyer. *SMOTE.* JAIR 2002, section 6.1 (SMOTE-NC).

    For a class ``c`` to grow, let ``Med`` be the median over continuous columns of their
    standard deviations within class ``c`` (population std, ``ddof=0``). The distance between two
    rows is Euclidean on the continuous columns plus ``Med^2`` for every categorical column on
    which they differ: ``d(a, b)^2 = sum_cont (a - b)^2 + Med^2 * #{categorical mismatches}``.
    (Implemented, as in imbalanced-learn, by one-hot encoding each categorical column scaled by
    ``Med / sqrt(2)`` and searching Euclidean neighbours on the result.) Each new sample draws a
    base row and one of its ``k`` nearest rows of class ``c`` as SMOTE does; its continuous
    columns are ``x_i + u * (x_j - x_i)``, ``u ~ U[0, 1)``, and each categorical column takes the
    value most frequent among the base row's ``k`` neighbours, ties broken uniformly at random
    (imbalanced-learn's rule), so it is always a value present among the neighbours.

    Categorical columns hold codes in a floating array, or any values (strings, pandas
    categoricals) in an object array or DataFrame, which then comes back as one (values are
    compared for equality only and copied unchanged into new rows).

    Args:
        categorical_features: indices of the categorical columns (negative allowed), their
            names (for a DataFrame with string column names) or a boolean mask of length D;
            at least one column must be categorical and one continuous.
        sampling_strategy: as in :class:`~posneg.oversampling.SMOTE`.
        random_state: as in :class:`~posneg.oversampling.SMOTE` (int seed, numpy or torch
            generator; ``generator=`` in :meth:`fit_resample` takes precedence).
        k_neighbors: neighbours per sample, ``>= 1``.
        knn: ``"exact"`` (default), ``"approx"`` or ``"faiss"`` (see SMOTE).
        n_probe: lists searched per query with ``knn="approx"``.

    Fitted attributes:
        sampling_strategy_: dict class -> samples generated.
        categorical_features_, continuous_features_: sorted column indices (numpy int64).
        median_std_: dict class -> ``Med`` of that class (float).
        n_features_in_: D.
        feature_names_in_: the column names, when fitted on a DataFrame with string names.

    The constructor only stores its arguments; :meth:`fit_resample` checks them. Inputs,
    outputs, ``random_state``, feature names and gradients (continuous columns) as in
    :class:`~posneg.oversampling.SMOTE`.

    Raises:
        ValueError: as SMOTE; also for column indices out of range, a mask of another length,
            or no continuous / no categorical column.
        TypeError: as SMOTE; categorical_features of another type.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> cont = torch.randn(60, 2, generator=g)
        >>> cat = torch.randint(3, (60, 1), generator=g).double()
        >>> X = torch.cat([cont.double(), cat], 1)
        >>> y = torch.tensor([0] * 45 + [1] * 15)
        >>> X_res, y_res = SMOTENC([2], k_neighbors=3).fit_resample(X, y, generator=g)
        >>> set(X_res[:, 2].tolist()) <= {0.0, 1.0, 2.0}
        True
    """

    _PARAMS = _PARAMS
    _FITTED = _FITTED

    def __init__(
        self,
        categorical_features: Sequence[int]
        | Sequence[bool]
        | Sequence[str]
        | np.ndarray
        | torch.Tensor,
        *,
        sampling_strategy: SamplingStrategy = "auto",
        random_state: Any = None,
        k_neighbors: int = 5,
        knn: str = "exact",
        n_probe: int | None = None,
    ) -> None:
        self.categorical_features = categorical_features
        self.sampling_strategy = sampling_strategy
        self.random_state = random_state
        self.k_neighbors = k_neighbors
        self.knn = knn
        self.n_probe = n_probe

    def _check_params(self, fn: str) -> None:
        spec = self.categorical_features
        if isinstance(spec, (str, bytes)) or not hasattr(spec, "__len__"):
            raise TypeError(
                f"{fn}: categorical_features must be a list of column indices or a boolean "
                f"mask; got {type(spec).__name__}"
            )
        check_strategy_value(fn, self.sampling_strategy)
        _io.check_int_param(fn, "k_neighbors", self.k_neighbors, 1)
        _io.check_knn(fn, self.knn, self.n_probe)

    def __sklearn_tags__(self) -> Any:
        """As the other samplers' (see ``OverSampler``), and strings are accepted."""
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        return tags

    def _resample(self, X: Any, y: Any, generator: torch.Generator | None) -> tuple[Any, Any]:
        if isinstance(X, np.ndarray) and X.dtype.kind in "OUS":
            return self._resample_mixed(X, y, generator)
        fn = "SMOTENC"
        prep = _io.prepare(fn, X, y, generator)
        d = prep.X.shape[1]
        cat_idx = _column_indices(
            fn, self.categorical_features, d, getattr(self, "feature_names_in_", None)
        )
        cont_idx = np.setdiff1d(np.arange(d), cat_idx)
        if cont_idx.size == 0:
            raise ValueError(
                f"{fn}: every column is categorical; SMOTE-NC needs continuous columns too "
                "(imbalanced-learn's SMOTEN handles purely categorical data)"
            )
        targets = resolve_strategy(fn, self.sampling_strategy, prep.counts, prep.y)
        _io.check_k_vs_classes(fn, "k_neighbors", int(self.k_neighbors), prep.counts, targets)
        dev = prep.X.device
        cat_t = torch.from_numpy(cat_idx).to(dev)
        cont_t = torch.from_numpy(cont_idx).to(dev)
        parts: list[_io.Part] = []
        median_std: dict[Any, float] = {}
        for code, cls in enumerate(prep.classes):
            n_new = targets.get(cls, 0)
            if n_new == 0:
                continue
            idx = torch.nonzero(prep.codes == code).squeeze(1)
            X_class = prep.X.index_select(0, idx)
            cont = X_class.index_select(1, cont_t)
            cats = X_class.index_select(1, cat_t).detach()  # discrete: no gradient
            std = cont.detach().to(torch.float64).std(0, correction=0)
            med = float(torch.quantile(std, 0.5))  # numpy's median: mean of the middle two
            median_std[cls] = med
            # each categorical column as codes 0..n_values-1, with its table of values
            codes_list, values_list = [], []
            for col in range(cats.shape[1]):
                vals, inv = torch.unique(cats[:, col], return_inverse=True)
                codes_list.append(inv)
                values_list.append(vals)
            work = torch.float64 if prep.X.dtype == torch.float64 else torch.float32
            onehots = [
                torch.nn.functional.one_hot(c, v.shape[0]).to(work) * (med / math.sqrt(2.0))
                for c, v in zip(codes_list, values_list, strict=True)
            ]
            encoded = torch.cat([cont.detach().to(work), *onehots], dim=1)
            nn = kneighbors(
                encoded,
                int(self.k_neighbors),
                method=self.knn,
                generator=generator,
                n_probe=self.n_probe,
            )
            new = self._generate(
                X_class, cont_t, cat_t, nn, codes_list, values_list, n_new, generator
            )
            parts.append(_io.Part(cls, n_new, _copy_into(new)))
        self.sampling_strategy_ = targets
        self.categorical_features_ = cat_idx
        self.continuous_features_ = cont_idx
        self.median_std_ = median_std
        self.n_features_in_ = int(d)
        return _io.finish(fn, prep, parts)

    def _resample_mixed(
        self, X: np.ndarray, y: Any, generator: torch.Generator | None
    ) -> tuple[Any, Any]:
        """Object or string arrays (a DataFrame with string or categorical columns): the
        categorical columns are coded ``0..n-1``, resampled as codes, and decoded; the
        continuous columns must hold numbers. Returns an object array."""
        fn = "SMOTENC"
        if X.ndim != 2:
            raise ValueError(f"{fn}: X must have shape (N, D); got {X.shape}")
        d = X.shape[1]
        cat_idx = _column_indices(
            fn, self.categorical_features, d, getattr(self, "feature_names_in_", None)
        )
        cont_idx = np.setdiff1d(np.arange(d), cat_idx)
        work = np.empty(X.shape, dtype=np.float64)
        try:
            work[:, cont_idx] = X[:, cont_idx].astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{fn}: the continuous columns {cont_idx.tolist()} must hold numbers (the "
                f"others are categorical_features={self.categorical_features!r}); {exc}"
            ) from exc
        tables = []
        for col in cat_idx:
            values, codes = _factorize(X[:, col])
            work[:, col] = codes
            tables.append(values)
        X_res, y_res = self._resample(work, y, generator)
        out = X_res.astype(object)
        for col, values in zip(cat_idx, tables, strict=True):
            out[:, col] = values[X_res[:, col].astype(np.int64)]
        return out, y_res

    @staticmethod
    def _generate(
        X_class: torch.Tensor,
        cont_t: torch.Tensor,
        cat_t: torch.Tensor,
        nn: torch.Tensor,
        codes_list: list[torch.Tensor],
        values_list: list[torch.Tensor],
        n_samples: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        n, k = nn.shape
        dev = X_class.device
        rows = torch.randint(n, (n_samples,), device=dev, generator=generator)
        cols = torch.randint(k, (n_samples,), device=dev, generator=generator)
        steps = _io.draw_steps(n_samples, X_class, generator)
        cont = X_class.index_select(1, cont_t)
        new_cont = _io.interpolate(cont[rows], cont[nn[rows, cols]], steps)
        out = torch.empty((n_samples, X_class.shape[1]), dtype=X_class.dtype, device=dev)
        out[:, cont_t] = new_cont
        neigh = nn[rows]  # (n_samples, k): the base rows' neighbours
        for j, (codes, values) in enumerate(zip(codes_list, values_list, strict=True)):
            n_values = values.shape[0]
            votes = torch.zeros((n_samples, n_values), dtype=torch.float32, device=dev)
            votes.scatter_add_(1, codes[neigh], torch.ones(neigh.shape, device=dev))
            # ties among the most frequent values broken uniformly at random
            jitter = torch.rand(
                (n_samples, n_values), dtype=torch.float32, device=dev, generator=generator
            )
            winner = (votes + 0.5 * jitter).argmax(1)
            out[:, cat_t[j]] = values[winner].to(X_class.dtype)
        return out
