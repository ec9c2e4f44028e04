"""Image data sets: upsampled digits, user .npz images, their split, scaling and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from posneg.data import load_digits
from posneg.data.images import ImageData, load_image_digits, load_image_npz


def test_digits_are_upsampled_with_the_shared_split() -> None:
    data = load_image_digits(size=16)
    flat = load_digits()
    assert data.x_train.shape == (len(flat.x_train), 1, 16, 16)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    assert np.array_equal(data.y_test, flat.y_test)
    assert data.n_classes == 10 and data.image_shape == (1, 16, 16)
    assert data.mean == pytest.approx(float(data.x_train.mean()))


def test_digits_at_8x8_are_the_originals() -> None:
    data = load_image_digits(size=8)
    flat = load_digits()
    assert np.allclose(data.x_train.reshape(len(data.x_train), -1), flat.x_train, atol=1e-6)


def test_npz_float_images_are_scaled(tmp_path: Path) -> None:
    path = tmp_path / "f.npz"
    rng = np.random.default_rng(0)
    np.savez(path, X=rng.normal(size=(20, 3, 8, 8)) * 50, y=np.arange(20) % 2)
    data = load_image_npz(path)
    both = np.concatenate([data.x_train, data.x_test])
    assert data.image_shape == (3, 8, 8)
    assert both.min() == pytest.approx(0.0) and both.max() == pytest.approx(1.0)
    assert data.note.startswith("pixels min-max scaled")


def test_npz_uint8_and_unit_floats(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(12, 9, 9), dtype=np.uint8)
    np.savez(tmp_path / "u.npz", X=x, y=np.arange(12) % 3)
    data = load_image_npz(tmp_path / "u.npz", seed=3)
    assert data.note == "uint8 pixels / 255" and data.image_shape == (1, 9, 9)
    both = np.concatenate([data.x_train, data.x_test])
    assert np.allclose(np.sort(both.ravel()), np.sort(x.ravel() / 255.0), atol=1e-6)
    np.savez(tmp_path / "f.npz", X=x / 255.0, y=(np.arange(12) % 3).astype(np.float64))
    kept = load_image_npz(tmp_path / "f.npz")
    assert kept.note == "float pixels in [0, 1], kept"
    assert kept.y_train.dtype == np.int64


def test_summary_is_json_ready(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", X=np.zeros((10, 8, 8)), y=np.arange(10) % 2)
    summary = load_image_npz(tmp_path / "s.npz").summary()
    assert summary["image_shape"] == [1, 8, 8]
    assert summary["n_train"] + summary["n_test"] == 10 and summary["n_classes"] == 2
    assert isinstance(load_image_npz(tmp_path / "s.npz"), ImageData)


@pytest.mark.parametrize(
    ("arrays", "fragment"),
    [
        ({"X": np.zeros((20, 8, 8))}, "missing 'y'"),
        ({"X": np.zeros((20, 64)), "y": np.arange(20) % 2}, "(N, C, H, W)"),
        ({"X": np.zeros((20, 4, 4)), "y": np.arange(20) % 2}, "at least 8x8"),
        ({"X": np.zeros((20, 8, 8)), "y": np.arange(19) % 2}, "y must have shape (20,)"),
        ({"X": np.zeros((20, 8, 8)), "y": np.full(20, 0.5)}, "integer class labels"),
        ({"X": np.zeros((5, 8, 8)), "y": np.arange(5) % 2}, "at least 10 samples"),
        ({"X": np.full((20, 8, 8), np.nan), "y": np.arange(20) % 2}, "NaN or inf"),
        ({"X": np.zeros((20, 8, 8)), "y": np.zeros(20)}, "at least 2 classes"),
        ({"X": np.zeros((20, 8, 8), dtype=complex), "y": np.arange(20) % 2}, "real numbers"),
    ],
)
def test_bad_npz(tmp_path: Path, arrays: dict[str, np.ndarray], fragment: str) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="load_image_npz") as info:
        load_image_npz(bad)
    assert fragment in str(info.value)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="load_image_npz: no such file"):
        load_image_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="load_image_npz: cannot read"):
        load_image_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"single \.npy array"):
        load_image_npz(tmp_path / "one.npy")
    np.savez(tmp_path / "obj.npz", X=np.array([None] * 12, dtype=object), y=np.arange(12) % 2)
    with pytest.raises(ValueError, match="load_image_npz: cannot read"):
        load_image_npz(tmp_path / "obj.npz")


def test_huge_images_are_refused_before_reading(tmp_path: Path) -> None:
    from posneg.data.images import MAX_IMAGE_VALUES

    big = tmp_path / "big.npz"
    np.savez_compressed(big, X=np.zeros((1, 2049, 2048), dtype=np.uint8), y=np.zeros(1))
    with pytest.raises(
        ValueError, match=rf"load_image_npz: .*big\.npz: each image .* at most {MAX_IMAGE_VALUES}"
    ):
        load_image_npz(big)
    flat = tmp_path / "flat.npz"
    np.savez(flat, X=np.zeros((20, 64)), y=np.arange(20) % 2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(N, H, W\); got \(20, 64\)"):
        load_image_npz(flat)


def test_a_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"load_image_npz: cannot read .*: it is a directory"):
        load_image_npz(tmp_path)
