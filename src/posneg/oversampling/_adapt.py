"""The array types scikit-learn and imbalanced-learn users pass, in and back out.

The samplers work on numpy arrays and torch tensors. This module turns what an imbalanced-learn
user passes into those and the results back into what was passed, so a DataFrame comes back a
DataFrame with its column names and dtypes, a list a list, a sparse matrix a sparse matrix of the
same type, a pandas Series a Series with its name and dtype:

- ``X``: numpy array, torch tensor (unchanged), list / tuple / other array-like (numpy inside,
  a list back for a list), pandas DataFrame (dense, or with only sparse columns), scipy sparse
  matrix or array of any format. Sparse inputs are densified (``N x D`` in memory) for the
  neighbour search and returned sparse, in the input's type.
- ``y``: 1-D labels (numpy, list, pandas Series, torch tensor), a column ``(N, 1)`` (numpy
  back as 1-D, as imbalanced-learn returns it; a one-column DataFrame back as one), or a one-hot
  (one-vs-all) ``(N, C)`` indicator matrix, resampled as the labels ``argmax`` and returned
  one-hot with the same ``C`` columns and dtype. Continuous targets (floats that are not whole
  numbers) and multilabel/multioutput targets are errors.

pandas and scipy are never imported here: a DataFrame or sparse matrix is recognised by its
type's module, and their own methods (and the module of the type) build the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def _module_of(obj: Any) -> str:
    return type(obj).__module__ or ""


def is_dataframe(obj: Any) -> bool:
    """A pandas DataFrame (recognised without importing pandas)."""
    return _module_of(obj).startswith("pandas") and hasattr(obj, "columns") and obj.ndim == 2


def is_series(obj: Any) -> bool:
    """A pandas Series (recognised without importing pandas)."""
    return _module_of(obj).startswith("pandas") and hasattr(obj, "name") and obj.ndim == 1


def is_sparse(obj: Any) -> bool:
    """A scipy sparse matrix or array (recognised without importing scipy)."""
    return _module_of(obj).startswith("scipy.sparse") and hasattr(obj, "toarray")


def _all_sparse_columns(df: Any) -> bool:
    return len(df.columns) > 0 and all(type(dt).__name__ == "SparseDtype" for dt in list(df.dtypes))


def feature_names(X: Any) -> np.ndarray | None:
    """Column names of a DataFrame whose names are all strings (scikit-learn's rule), else None."""
    if not is_dataframe(X):
        return None
    names = list(X.columns)
    if names and all(isinstance(n, str) for n in names):
        return np.asarray(names, dtype=object)
    return None


@dataclass
class Adapted:
    """Inputs as numpy/tensors, and how to give the results back in the caller's types.

    Attributes:
        X: numpy array or tensor ``(N, D)``.
        y: 1-D labels (numpy array or tensor).
        restore_X: turns the resampled numpy/tensor ``X`` into the caller's type.
        restore_y: turns the resampled 1-D labels into the caller's type.
    """

    X: Any
    y: Any
    restore_X: Callable[[Any], Any]
    restore_y: Callable[[Any], Any]


def _identity(a: Any) -> Any:
    return a


def _adapt_X(fn: str, X: Any) -> tuple[Any, Callable[[Any], Any]]:
    if isinstance(X, (torch.Tensor, np.ndarray)):
        return X, _identity
    if is_sparse(X):
        kind = type(X)
        return np.asarray(X.toarray()), lambda a: kind(a)
    if is_dataframe(X):
        columns = X.columns
        dtypes = list(X.dtypes)
        frame_type = type(X)
        if _all_sparse_columns(X):
            dense = np.asarray(X.sparse.to_dense().to_numpy())
            sparse_dtypes = dtypes

            def restore_sparse(a: Any) -> Any:
                out = frame_type(a, columns=columns)
                return out.astype(dict(zip(out.columns, sparse_dtypes, strict=True)))

            return dense, restore_sparse
        arr = X.to_numpy()

        def restore_frame(a: Any) -> Any:
            out = frame_type(a, columns=columns)
            if columns.is_unique and [str(d) for d in out.dtypes] != [str(d) for d in dtypes]:
                out = out.astype(dict(zip(columns, dtypes, strict=True)))
            return out

        return arr, restore_frame
    if isinstance(X, (list, tuple)):
        return np.asarray(X), lambda a: a.tolist()
    try:
        return np.asarray(X), _identity
    except Exception as exc:
        raise TypeError(
            f"{fn}: X must be an array-like (numpy array, list, DataFrame, sparse matrix) or a "
            f"torch.Tensor; got {type(X).__name__}"
        ) from exc


def _check_label_values(fn: str, ya: np.ndarray) -> None:
    """Reject continuous targets (floats that are not whole numbers, NaN)."""
    if ya.dtype.kind == "f" and ya.size:
        if not bool(np.isfinite(ya).all()) or bool((ya != np.floor(ya)).any()):
            raise ValueError(
                f"{fn}: Unknown label type: continuous; y must hold class labels (ints, strings "
                "or whole-number floats), not continuous values"
            )
    if ya.dtype.kind == "c":
        raise ValueError(f"{fn}: Unknown label type: complex; y must hold class labels")


def _one_hot_labels(fn: str, ya: np.ndarray) -> np.ndarray:
    """``argmax`` labels of a one-hot (one-vs-all) ``(N, C)`` target; others rejected."""
    numeric = ya.dtype.kind in "biuf"
    if numeric and ya.shape[1] >= 2:
        binary = bool(np.isin(ya, (0, 1)).all())
        if binary and bool((ya.sum(axis=1) == 1).all()):
            return np.asarray(ya.argmax(axis=1))
    raise ValueError(
        f"{fn}: y of shape {ya.shape} is a multilabel or multioutput target; Multilabel and "
        "multioutput targets are not supported. Pass labels (N,), a column (N, 1) or a one-hot "
        "(one-vs-all) matrix (N, C) with exactly one 1 per row"
    )


def _adapt_y(fn: str, y: Any) -> tuple[Any, Callable[[Any], Any]]:
    if isinstance(y, torch.Tensor):
        return y, _identity
    if is_series(y):
        name, dtype, series_type = y.name, y.dtype, type(y)
        ya = np.asarray(y.to_numpy())
        _check_label_values(fn, ya)
        return ya, lambda a: series_type(a, name=name, dtype=dtype)
    if is_dataframe(y):
        columns, dtypes, frame_type = y.columns, list(y.dtypes), type(y)
        ya = np.asarray(y.to_numpy())
        if ya.shape[1] == 1:
            _check_label_values(fn, ya[:, 0])

            def restore_column(a: Any) -> Any:
                return frame_type({columns[0]: a}).astype({columns[0]: dtypes[0]})

            return ya[:, 0], restore_column
        labels = _one_hot_labels(fn, ya)
        n_cols = ya.shape[1]

        def restore_onehot_frame(a: Any) -> Any:
            out = frame_type(np.eye(n_cols, dtype=np.int64)[a], columns=columns)
            return out.astype(dict(zip(columns, dtypes, strict=True)))

        return labels, restore_onehot_frame
    as_list = isinstance(y, (list, tuple))
    ya = np.asarray(y)
    back: Callable[[Any], Any] = (lambda a: a.tolist()) if as_list else _identity
    if ya.ndim == 2 and ya.shape[1] == 1:
        _check_label_values(fn, ya[:, 0])
        return ya[:, 0], back
    if ya.ndim == 2 and ya.shape[1] >= 2:
        labels = _one_hot_labels(fn, ya)
        eye = np.eye(ya.shape[1], dtype=ya.dtype)
        return labels, (lambda a: eye[a].tolist()) if as_list else (lambda a: eye[a])
    if ya.ndim == 1:
        _check_label_values(fn, ya)
    return ya, back


def adapt(fn: str, X: Any, y: Any) -> Adapted:
    """Convert ``X`` and ``y`` to numpy/tensors; keep how to convert the results back.

    Raises:
        ValueError: continuous, multilabel or multioutput ``y``.
        TypeError: ``X`` that no array can be made of.
    """
    X_in, restore_X = _adapt_X(fn, X)
    y_in, restore_y = _adapt_y(fn, y)
    return Adapted(X_in, y_in, restore_X, restore_y)
