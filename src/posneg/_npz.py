"""Arrays from user ``.npz`` files, read without pickle: :func:`read_npz`, :func:`integer_labels`.

Nothing in a file is trusted. Before any array data is read, :func:`read_npz` reads the zip
directory and the ``.npy`` header of every named array and checks them against a limit:

- each zip member's uncompressed size (as the zip directory declares it: decompression never
  yields more, so a deflate bomb is refused before it inflates) is at most ``max_bytes``;
- each array's declared size (shape x item size, from its header) fits in its member, and the
  named arrays together declare at most ``max_bytes`` (default :data:`MAX_NPZ_BYTES`, 2 GiB);
- headers are parsed as literals (numpy's own header reader), object dtypes are refused, and
  nothing is ever unpickled.

A file that is not an ``.npz`` is named for what it is: a directory, an empty file, a single
``.npy`` array, a pickle, text, or other binary content. Every problem raises ``ValueError``
(``FileNotFoundError`` for a missing file) whose message starts with the caller's name and
names the file.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Default limit on the bytes an ``.npz`` may declare (per member and for the named arrays).
MAX_NPZ_BYTES = 2 * 1024**3

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_HEADER_LIMIT = 10_000  # numpy's own default for max_header_size


@dataclass(frozen=True)
class ArrayHeader:
    """What an ``.npy`` header inside an ``.npz`` declares, read before the data.

    Attributes:
        shape: the declared shape.
        dtype: the declared dtype.
        nbytes: shape x item size.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def _describe(path: str) -> str:
    """What a file that is not a zip archive looks like, from its first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "an empty file"
    if head.startswith(_NPY_MAGIC):
        return "a single .npy array"
    if head[:1] == b"\x80" or head.startswith((b"(dp", b"(lp", b"ccopy_reg")):
        return "a Python pickle (never loaded)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        text = head[: err.start].decode("utf-8") if err.start > len(head) - 4 else ""
        if not text:
            return f"binary data (first bytes {head[:8].hex(' ')})"
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        first = text.splitlines()[0] if text.splitlines() else ""
        return f"a text file (starting {first[:40]!r})"
    return f"binary data (first bytes {head[:8].hex(' ')})"


def _headers(
    zf: zipfile.ZipFile, path: str, names: Sequence[str], fn: str, max_bytes: int
) -> dict[str, ArrayHeader]:
    """Check the zip directory and read the headers of the named arrays."""
    bad = f"{fn}: cannot read {path} as .npz"
    for info in zf.infolist():
        if info.file_size > max_bytes:
            raise ValueError(
                f"{bad}: member {info.filename!r} would inflate to {info.file_size} bytes "
                f"(from {info.compress_size} compressed); the limit is {max_bytes} bytes"
            )
    out: dict[str, ArrayHeader] = {}
    total = 0
    for name in names:
        info = zf.getinfo(name + ".npy")
        with zf.open(info) as fh:
            try:
                version = np.lib.format.read_magic(fh)
                if version not in ((1, 0), (2, 0), (3, 0)):
                    raise ValueError(f"unsupported .npy format version {version}")
                if version == (1, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_1_0(
                        fh, max_header_size=_HEADER_LIMIT
                    )
                else:
                    shape, _fortran, dtype = np.lib.format.read_array_header_2_0(
                        fh, max_header_size=_HEADER_LIMIT
                    )
            except (ValueError, EOFError) as exc:
                raise ValueError(f"{bad}: array {name!r} has no valid .npy header: {exc}") from None
            offset = fh.tell()
        if dtype.hasobject:
            raise ValueError(
                f"{bad}: array {name!r} holds Python objects (dtype {dtype}), which would "
                "need pickle; save numeric arrays"
            )
        count = 1
        for dim in shape:
            count *= int(dim)
        nbytes = count * dtype.itemsize
        # items of size 0 still cost an element each once converted: count them as 1 byte
        if count * max(dtype.itemsize, 1) > max_bytes:
            raise ValueError(
                f"{bad}: array {name!r} declares shape {tuple(shape)} of {dtype} "
                f"({count * max(dtype.itemsize, 1)} bytes); the limit is {max_bytes} bytes"
            )
        available = info.file_size - offset
        if nbytes > available:
            raise ValueError(
                f"{bad}: array {name!r} declares shape {tuple(shape)} of {dtype} "
                f"({nbytes} bytes) but its member holds {max(available, 0)} bytes of data: "
                "truncated or corrupt"
            )
        total += nbytes
        if total > max_bytes:
            raise ValueError(
                f"{bad}: arrays {', '.join(repr(n) for n in names)} declare "
                f"{total}+ bytes (array {name!r}: shape {tuple(shape)} of {dtype}); the limit "
                f"is {max_bytes} bytes"
            )
        out[name] = ArrayHeader(tuple(int(d) for d in shape), dtype, nbytes)
    return out


def read_npz(
    path: str | os.PathLike[str],
    names: Sequence[str],
    *,
    fn: str,
    layout: str = "",
    max_bytes: int = MAX_NPZ_BYTES,
    check: Callable[[Mapping[str, ArrayHeader]], None] | None = None,
) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` file, checked before reading, never unpickled.

    Args:
        path: the file.
        names: arrays that must be present (``("X", "y")``).
        fn: the caller's name, first word of every message.
        layout: how the arrays should look, quoted in the message when one is missing
            (``"'X' (N, F) and 'y' (N,)"``).
        max_bytes: the most bytes any zip member may inflate to, and the named arrays may
            declare together (default :data:`MAX_NPZ_BYTES`, 2 GiB).
        check: called with the declared :class:`ArrayHeader` of each named array before any
            array data is read (the caller's shape checks); it raises to refuse the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a directory, a file that is not an ``.npz`` (the message says what it looks
            like: a single ``.npy`` array, a pickle, text...), a missing array, object arrays,
            a header that cannot be parsed, declared sizes over ``max_bytes`` or larger than the
            stored data, or a corrupt archive.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{fn}: no such file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{fn}: cannot read {path} as .npz: it is a directory")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic not in _ZIP_MAGICS or not zipfile.is_zipfile(path):
            what = _describe(path)
            raise ValueError(
                f"{fn}: cannot read {path} as .npz: it is {what}, not an .npz (zip) archive; save "
                f"the arrays {' and '.join(repr(k) for k in names)} with numpy.savez"
            )
        with zipfile.ZipFile(path) as zf:
            found = [m[:-4] for m in zf.namelist() if m.endswith(".npy")]
            missing = [k for k in names if k not in found]
            if missing:
                want = layout or " and ".join(repr(k) for k in names)
                raise ValueError(
                    f"{fn}: {path} must hold arrays {want}; missing "
                    f"{', '.join(repr(m) for m in missing)}; found: {', '.join(found) or 'nothing'}"
                )
            headers = _headers(zf, path, names, fn, max_bytes)
            if check is not None:
                check(headers)
            out = {}
            for name in names:
                with zf.open(name + ".npy") as fh:
                    arr = np.lib.format.read_array(
                        fh, allow_pickle=False, max_header_size=_HEADER_LIMIT
                    )
                out[name] = np.asarray(arr)
            return out
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{fn}: cannot read {path} as .npz: {exc}") from None
    except ValueError as exc:
        if str(exc).startswith(fn):
            raise
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
