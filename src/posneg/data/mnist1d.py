"""MNIST-1D (Greydanus & Kobak, 2020): 4000 train / 1000 test sequences of length 40, 10 classes.

:func:`load_mnist1d` generates the published default data set offline with the ``mnist1d``
package (``mnist1d.data.make_dataset(get_dataset_args())``: seed 42, 5000 samples, split 0.8)
and caches the arrays under the user's cache folder (``$XDG_CACHE_HOME/posneg/mnist1d`` or
``~/.cache/posneg/mnist1d``), so only the first call needs the package. ``make_dataset`` seeds
NumPy's and Python's global random generators; both states are saved and restored around it.

The cache file is ``<recipe-hash>.npz``: the hash of the generator and its arguments (what the
content depends on; the random stream is NumPy's legacy ``RandomState``, fixed across
versions). The file also stores the SHA-256 of its arrays, checked on every read; a mismatch (a
damaged file) regenerates it. Writes are atomic.

The paper (its Table 1) reports logistic regression ~32%, MLP ~68%, CNN ~94% test accuracy.
The sequences are already standardised by the generator (mean 0, std 1 over the whole set);
:attr:`~posneg.data.Dataset.scaler` is a scalar standardiser fitted on the train split (about
the identity), scalar so that a shift keeps a step's meaning.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from posneg._io import atomic_write_bytes
from posneg._npz import read_npz
from posneg.data.digits import Dataset, Standardizer

__all__ = ["MNIST1D_ARGS", "MNIST1D_RAW_STD", "default_cache_dir", "load_mnist1d"]

#: The published default arguments of ``mnist1d.data.get_dataset_args()`` (without its URL):
#: checked against the installed package before generating.
MNIST1D_ARGS: dict[str, Any] = {
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": [36, 60],
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
    "seed": 42,
}

#: Standard deviation of the generated sequences before the generator standardised them (its
#: ``t`` axis is divided by it): the factor that turns the package's transform magnitudes into
#: the standardised units of the stored data.
MNIST1D_RAW_STD = 0.15467803420593054

_NAMES = ("x_train", "y_train", "x_test", "y_test")
_FN = "load_mnist1d"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/posneg/mnist1d``, else ``~/.cache/posneg/mnist1d``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "posneg" / "mnist1d"


def _recipe_hash() -> str:
    recipe = json.dumps({"generator": "mnist1d.data.make_dataset", "args": MNIST1D_ARGS})
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in _NAMES:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _generate() -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset`` with the defaults; global RNG states are restored."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        msg = f"{_FN}: generating MNIST-1D needs the mnist1d package: pip install mnist1d"
        raise ImportError(msg) from None
    args = get_dataset_args()
    found = {k: v for k, v in vars(args).items() if k != "url"}
    if found != MNIST1D_ARGS:
        raise RuntimeError(
            f"{_FN}: the installed mnist1d's default arguments {found} differ from the "
            f"published ones {MNIST1D_ARGS}"
        )
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        made = make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    return {
        "x_train": np.asarray(made["x"], dtype=np.float32),
        "y_train": np.asarray(made["y"], dtype=np.int64),
        "x_test": np.asarray(made["x_test"], dtype=np.float32),
        "y_test": np.asarray(made["y_test"], dtype=np.int64),
    }


def _read(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or ``None`` when the file is damaged (bad archive or digest)."""
    try:
        got = read_npz(path, (*_NAMES, "digest"), fn=_FN)
    except (ValueError, OSError):
        return None
    arrays = {n: got[n] for n in _NAMES}
    stored = got["digest"]
    if stored.dtype.kind != "U" or stored.shape != () or str(stored) != _digest(arrays):
        return None
    return arrays


def load_mnist1d(*, cache_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """The MNIST-1D default data set: 4000 train / 1000 test sequences (40 steps), 10 classes.

    The first call generates it with the ``mnist1d`` package (a few seconds) and caches it;
    later calls read the cache (no ``mnist1d`` import).

    Args:
        cache_dir: where the ``.npz`` cache lives (default :func:`default_cache_dir`).

    Returns:
        A :class:`~posneg.data.Dataset` named ``mnist1d``: ``x_*`` float32 (N, 40), ``y_*``
        int64 labels 0..9, ``image_shape`` ``None`` and a scalar standardiser fitted on train.

    Raises:
        ImportError: no cache yet and ``mnist1d`` is not installed (says what to install).

    Example:
        >>> data = load_mnist1d()  # doctest: +SKIP
        >>> data.x_train.shape, data.x_test.shape, data.n_classes  # doctest: +SKIP
        ((4000, 40), (1000, 40), 10)
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{_recipe_hash()}.npz"
    arrays = _read(path) if path.is_file() else None
    if arrays is None:
        arrays = _generate()
        buf = io.BytesIO()
        np.savez(
            buf,
            x_train=arrays["x_train"],
            y_train=arrays["y_train"],
            x_test=arrays["x_test"],
            y_test=arrays["y_test"],
            digest=np.array(_digest(arrays)),
        )
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    return Dataset(
        name="mnist1d",
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        classes=np.arange(10),
        image_shape=None,
        scaler=Standardizer.fit(arrays["x_train"], per_feature=False),
    )
