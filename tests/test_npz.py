"""posneg._npz: sizes declared by a user .npz are checked before reading; bad files are named.

Issue 22: a header declaring a huge shape made numpy allocate it (373 GiB), a deflate bomb
inflated to 5.9 GB, a ``.npy`` or a text file renamed ``.npz`` gave misleading messages (numpy's
invites ``allow_pickle=True``), a directory gave an OS error.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from posneg import _npz


def _npy_bytes(shape: tuple[int, ...], dtype: str, payload: bytes) -> bytes:
    """An .npy member whose header declares ``shape`` but holds only ``payload``."""
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def _forged(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)
    return path


def test_a_huge_declared_shape_is_refused_before_any_allocation(tmp_path: Path) -> None:
    # 10^8 x 1000 float32 would be 373 GiB; the member holds 8 bytes
    p = _forged(
        tmp_path / "huge.npz",
        {
            "X": _npy_bytes((10**8, 1000), "<f4", b"\0" * 8),
            "y": _npy_bytes((2,), "<i8", b"\0" * 16),
        },
    )
    with pytest.raises(
        ValueError, match=r"load: cannot read .*huge\.npz as \.npz: array 'X'"
    ) as info:
        _npz.read_npz(p, ("X", "y"), fn="load")
    msg = str(info.value)
    assert "shape (100000000, 1000) of float32 (400000000000 bytes)" in msg
    assert f"the limit is {_npz.MAX_NPZ_BYTES} bytes" in msg


def test_declared_sizes_over_the_limit_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "big.npz"
    np.savez(p, X=np.zeros((100, 100)), y=np.zeros(100))
    with pytest.raises(ValueError, match=r"load: cannot read .*big\.npz.* the limit is 50000"):
        _npz.read_npz(p, ("X", "y"), fn="load", max_bytes=50_000)
    assert _npz.read_npz(p, ("X", "y"), fn="load", max_bytes=100_000)["X"].shape == (100, 100)


def test_a_deflate_bomb_is_refused_from_the_zip_directory(tmp_path: Path) -> None:
    # 8 MB of zeros compress to a few KB; the limit applies to the inflated size
    p = tmp_path / "bomb.npz"
    np.savez_compressed(p, X=np.zeros((1000, 1000)), y=np.zeros(1000))
    assert p.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"member 'X\.npy' would inflate to 8000128 bytes"):
        _npz.read_npz(p, ("X", "y"), fn="load", max_bytes=1_000_000)


def test_an_unused_member_over_the_limit_is_refused_too(tmp_path: Path) -> None:
    p = tmp_path / "extra.npz"
    np.savez_compressed(p, X=np.zeros(2), y=np.zeros(2), junk=np.zeros(200_000))
    with pytest.raises(ValueError, match=r"member 'junk\.npy' would inflate"):
        _npz.read_npz(p, ("X", "y"), fn="load", max_bytes=1_000_000)


def test_zero_size_items_cannot_declare_unbounded_shapes(tmp_path: Path) -> None:
    p = _forged(
        tmp_path / "void.npz",
        {"X": _npy_bytes((10**15,), "|V0", b""), "y": _npy_bytes((1,), "<i8", b"\0" * 8)},
    )
    with pytest.raises(ValueError, match=r"array 'X' declares shape \(1000000000000000,\)"):
        _npz.read_npz(p, ("X", "y"), fn="load")


def test_a_truncated_member_is_named(tmp_path: Path) -> None:
    p = _forged(
        tmp_path / "short.npz",
        {"X": _npy_bytes((10, 10), "<f8", b"\0" * 80), "y": _npy_bytes((1,), "<i8", b"\0" * 8)},
    )
    with pytest.raises(ValueError, match=r"holds 80 bytes of data: truncated or corrupt"):
        _npz.read_npz(p, ("X", "y"), fn="load")


def test_a_bad_header_is_named(tmp_path: Path) -> None:
    p = _forged(
        tmp_path / "hdr.npz",
        {"X": b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}   \n", "y": b"nothing"},
    )
    with pytest.raises(
        ValueError, match=r"load: cannot read .* array 'X' has no valid \.npy header"
    ):
        _npz.read_npz(p, ("X", "y"), fn="load")


def test_the_check_callback_sees_headers_before_any_data_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, X=np.ones((3, 2), dtype=np.float32), y=np.arange(3))
    seen: dict[str, _npz.ArrayHeader] = {}

    def read_array(*args: object, **kwargs: object) -> None:
        raise AssertionError("data read before the check")

    def check(headers: object) -> None:
        seen.update(headers)  # type: ignore[call-overload]
        raise ValueError("load: refused by the caller")

    monkeypatch.setattr(np.lib.format, "read_array", read_array)
    with pytest.raises(ValueError, match="refused by the caller"):
        _npz.read_npz(p, ("X", "y"), fn="load", check=check)
    assert seen["X"] == _npz.ArrayHeader((3, 2), np.dtype(np.float32), 24)
    assert seen["y"].shape == (3,)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"", "an empty file"),
        (b"X,y\n1,2\n", "a text file (starting 'X,y')"),
        (pickle.dumps({"X": 1}), "a Python pickle (never loaded)"),
        (b"\x1f\x8b\x08\x00rest", "a gzip file"),
        (b"\x00\x01\x02\xff\xfe", "binary data (first bytes 00 01 02 ff fe)"),
    ],
)
def test_files_that_are_not_npz_are_named(tmp_path: Path, content: bytes, what: str) -> None:
    p = tmp_path / "f.npz"
    p.write_bytes(content)
    with pytest.raises(ValueError) as info:
        _npz.read_npz(p, ("X", "y"), fn="load")
    msg = str(info.value)
    assert msg.startswith(f"load: cannot read {p} as .npz: it is {what}")
    assert "not an .npz (zip) archive" in msg
    assert "allow_pickle" not in msg and "unsafe" not in msg


def test_a_npy_renamed_npz_and_a_directory_are_named(tmp_path: Path) -> None:
    p = tmp_path / "a.npz"
    with open(p, "wb") as fh:
        np.save(fh, np.ones(3))
    with pytest.raises(ValueError, match=r"it is a single \.npy array, not an \.npz"):
        _npz.read_npz(p, ("X", "y"), fn="load")
    with pytest.raises(ValueError, match=r"load: cannot read .* as \.npz: it is a directory"):
        _npz.read_npz(tmp_path, ("X", "y"), fn="load")


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    p = tmp_path / "obj.npz"
    np.savez(p, X=np.array([{"a": 1}], dtype=object), y=np.arange(1))
    with pytest.raises(ValueError, match=r"array 'X' holds Python objects \(dtype object\)"):
        _npz.read_npz(p, ("X", "y"), fn="load")


def test_fortran_order_and_format_2_arrays_read_back(tmp_path: Path) -> None:
    x = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    p = tmp_path / "f.npz"
    np.savez(p, X=x, y=np.arange(3))
    np.testing.assert_array_equal(_npz.read_npz(p, ("X", "y"), fn="load")["X"], x)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.arange(4), version=(2, 0))
    q = _forged(tmp_path / "v2.npz", {"X": buf.getvalue(), "y": buf.getvalue()})
    np.testing.assert_array_equal(_npz.read_npz(q, ("X", "y"), fn="load")["y"], np.arange(4))
