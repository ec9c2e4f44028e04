"""Arrays from user ``.npz`` files, read without pickle: :func:`read_npz`, :func:`integer_labels`.

Files are read with ``allow_pickle=False``: object arrays are refused and nothing is ever
unpickled. Every problem raises ``ValueError`` (``FileNotFoundError`` for a missing file) whose
message starts with the caller's name.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence

import numpy as np

# ---------------------------------------------------------------------------------------------


def read_npz(
    path: str | os.PathLike[str], names: Sequence[str], *, fn: str, layout: str = ""
) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` file, read with ``allow_pickle=False``.

    Args:
        path: the file.
        names: arrays that must be present (``("X", "y")``).
        fn: the caller's name, first word of every message.
        layout: how the arrays should look, quoted in the message when one is missing
            (``"'X' (N, F) and 'y' (N,)"``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a single ``.npy`` array, a missing array, object arrays (which would need
            pickle), or a file that is not an ``.npz`` at all.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{fn}: no such file: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(
                f"{fn}: {path} is a single .npy array, not an .npz with {' and '.join(names)}"
            )
        with loaded as npz:
            found = list(npz.files)
            missing = [k for k in names if k not in found]
            if missing:
                want = layout or " and ".join(repr(k) for k in names)
                raise ValueError(
                    f"{fn}: {path} must hold arrays {want}; missing "
                    f"{', '.join(repr(m) for m in missing)}; found: {', '.join(found) or 'nothing'}"
                )
            return {k: np.asarray(npz[k]) for k in names}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{fn}: cannot read {path} as .npz: {exc}") from None
    except ValueError as exc:
        if str(exc).startswith(fn):
            raise
        # numpy refuses object arrays without pickle, or the file is not an npz at all
        raise ValueError(f"{fn}: cannot read {path} as .npz: {exc}") from None


def integer_labels(y: np.ndarray, *, fn: str) -> np.ndarray:
    """Class labels as int64: integer or bool arrays, or floats holding whole numbers.

    Raises:
        ValueError: any other dtype, or floats that are not whole finite numbers.
    """
    if np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_):
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == y // 1):
        return y.astype(np.int64)
    raise ValueError(f"{fn}: y must hold integer class labels; got dtype {y.dtype}")
