"""Bench data: bundled digits, user .npz files, the stratified split and the standardiser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from posneg.data import Standardizer, load_digits, load_npz, stratified_split


def _blobs(n: int = 60, classes: int = 3, dim: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, dim))
    y = np.arange(n) % classes
    return x, y


def test_digits_split_is_stratified_disjoint_and_complete() -> None:
    d = load_digits()
    assert d.image_shape == (8, 8) and d.n_features == 64 and d.n_classes == 10
    assert len(d.x_train) + len(d.x_test) == 1797
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    train_counts = np.bincount(d.y_train)
    test_counts = np.bincount(d.y_test)
    frac = test_counts / (train_counts + test_counts)
    assert np.all(np.abs(frac - 0.25) < 0.01)  # every class held out at the same rate


def test_split_is_deterministic_under_a_seed() -> None:
    y = np.repeat(np.arange(4), 25)
    a = stratified_split(y, seed=3)
    b = stratified_split(y, seed=3)
    c = stratified_split(y, seed=4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])
    train, test = a
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(100))


def test_split_keeps_one_of_each_side_for_tiny_classes() -> None:
    y = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    train, test = stratified_split(y, test_fraction=0.1, seed=0)
    assert set(y[test]) == {0, 1} and set(y[train]) == {0, 1}


def test_standardiser_is_fitted_on_train_only(tmp_path: Path) -> None:
    x, y = _blobs()
    x[:, 2] = 7.0  # a constant feature stays finite
    path = tmp_path / "d.npz"
    np.savez(path, X=x, y=y)
    d = load_npz(path)
    z = d.scaler(torch.as_tensor(d.x_train)).numpy()
    assert np.allclose(z.mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(np.delete(z.std(axis=0), 2), 1.0, atol=1e-4)
    assert np.all(np.isfinite(d.scaler(torch.as_tensor(d.x_test)).numpy()))
    scalar = Standardizer.fit(x, per_feature=False)
    assert scalar.mean.shape == (1,)


def test_npz_labels_are_encoded(tmp_path: Path) -> None:
    x, y = _blobs()
    path = tmp_path / "d.npz"
    np.savez(path, X=x, y=np.array([10, 20, 30])[y])
    d = load_npz(path)
    assert list(d.classes) == [10, 20, 30]
    assert set(d.y_train) == {0, 1, 2} and d.image_shape is None


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"X": np.zeros((20, 3))}, "missing 'y'"),
        ({"y": np.zeros(20, dtype=int)}, "missing 'X'"),
        ({"X": np.zeros(20), "y": np.zeros(20, dtype=int)}, r"X must have shape \(N, F\)"),
        ({"X": np.zeros((20, 3)), "y": np.zeros(19, dtype=int)}, r"y must have shape \(20,\)"),
        ({"X": np.zeros((20, 3)), "y": np.full(20, 0.5)}, "integer class labels"),
        ({"X": np.zeros((5, 3)), "y": np.arange(5) % 2}, "at least 10 samples"),
        ({"X": np.zeros((20, 3)), "y": np.zeros(20, dtype=int)}, "at least 2 classes"),
        ({"X": np.zeros((20, 3)), "y": np.r_[np.zeros(19, dtype=int), 1]}, "class 1 has 1"),
        ({"X": np.full((20, 3), np.nan), "y": np.arange(20) % 2}, "NaN or inf"),
        ({"X": np.array([["a"] * 3] * 20), "y": np.arange(20) % 2}, "real numbers"),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        load_npz(path)


def test_npz_object_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, X=np.array([object()] * 20, dtype=object), y=np.arange(20) % 2)
    with pytest.raises(ValueError, match="cannot read"):
        load_npz(path)


def test_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(ValueError, match="cannot read"):
        load_npz(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_npz(tmp_path / "absent.npz")


def test_bad_test_fraction() -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(np.arange(10) % 2, test_fraction=1.0)


def test_too_many_features_are_refused_before_reading(tmp_path: Path) -> None:
    # issue 22: 10^7 features crashed the bench's allocator; the header is checked first
    from posneg.data.digits import MAX_FEATURES

    path = tmp_path / "wide.npz"
    np.savez_compressed(path, X=np.zeros((1, 10**7), dtype=np.uint8), y=np.zeros(1))
    with pytest.raises(
        ValueError, match=rf"load_npz: .*wide\.npz: X has 10000000 features; at most {MAX_FEATURES}"
    ):
        load_npz(path)
    ok = tmp_path / "ok.npz"
    x, y = _blobs(dim=MAX_FEATURES)
    np.savez(ok, X=x[:12].astype(np.float32), y=y[:12])
    assert load_npz(ok).n_features == MAX_FEATURES


def test_hostile_files_get_one_clear_message(tmp_path: Path) -> None:
    text = tmp_path / "notes.npz"
    text.write_text("just some notes\n")
    with pytest.raises(ValueError, match=r"load_npz: cannot read .*: it is a text file") as info:
        load_npz(text)
    assert "allow_pickle" not in str(info.value)
    with pytest.raises(ValueError, match=r"load_npz: cannot read .*: it is a directory"):
        load_npz(tmp_path)
    with open(tmp_path / "a.npz", "wb") as fh:
        np.save(fh, np.zeros((20, 3)))
    with pytest.raises(ValueError, match=r"load_npz: cannot read .*a\.npz .*single \.npy array"):
        load_npz(tmp_path / "a.npz")
