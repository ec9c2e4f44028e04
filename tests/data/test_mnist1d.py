"""MNIST-1D loading (generation by the ``mnist1d`` package, cache) and its sequence views."""

# ruff: noqa: NPY002  (the global NumPy state is what these tests check)
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from posneg.data import Dataset, load_mnist1d
from posneg.data import mnist1d as m1d
from posneg.data.views import augment_sequences, gaussian_smooth, sequence_view_fn

pytest.importorskip("mnist1d")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mnist1d")
    load_mnist1d(cache_dir=folder)
    return folder


def test_shapes_labels_and_split(cache: Path) -> None:
    data = load_mnist1d(cache_dir=cache)
    assert isinstance(data, Dataset) and data.name == "mnist1d"
    assert data.x_train.shape == (4000, 40) and data.x_test.shape == (1000, 40)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert set(np.unique(data.y_train)) == set(range(10)) == set(np.unique(data.y_test))
    assert data.n_classes == 10 and data.image_shape is None
    whole = np.concatenate([data.x_train, data.x_test])
    assert abs(whole.mean()) < 1e-3 and abs(whole.std() - 1) < 1e-3  # the generator standardises


def test_same_arrays_as_the_package_defaults(cache: Path) -> None:
    """Transcription check: the cache holds ``make_dataset(get_dataset_args())`` (mnist1d 0.0.2)."""
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()
    made = make_dataset(get_dataset_args())
    np.random.set_state(state)
    data = load_mnist1d(cache_dir=cache)
    np.testing.assert_array_equal(data.x_train, made["x"].astype(np.float32))
    np.testing.assert_array_equal(data.y_test, made["y_test"])
    # the raw std constant is the generator's own (its t axis is divided by it)
    assert (5 / 6) / made["t"][-1] == pytest.approx(m1d.MNIST1D_RAW_STD, rel=1e-12)
    assert {k: v for k, v in vars(get_dataset_args()).items() if k != "url"} == m1d.MNIST1D_ARGS


def test_global_rng_states_restored(tmp_path: Path) -> None:
    np.random.seed(123)
    random.seed(7)
    np_before, py_before = np.random.get_state(), random.getstate()
    load_mnist1d(cache_dir=tmp_path)  # generates (empty cache)
    np_after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(np_before, np_after, strict=True))
    assert random.getstate() == py_before
    assert np.random.rand() == np.random.RandomState(123).rand()


def test_cache_hit_needs_no_generation(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = list(cache.glob("*.npz"))
    assert len(files) == 1 and len(files[0].stem) == 16
    first = load_mnist1d(cache_dir=cache)

    def boom() -> None:
        raise AssertionError("regenerated")

    monkeypatch.setattr(m1d, "_generate", boom)
    again = load_mnist1d(cache_dir=cache)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_train, again.y_train)


def test_damaged_cache_is_regenerated(cache: Path, tmp_path: Path) -> None:
    good = next(cache.glob("*.npz"))
    bad = tmp_path / good.name
    bad.write_bytes(b"not a zip")
    data = load_mnist1d(cache_dir=tmp_path)
    assert data.x_train.shape == (4000, 40)
    assert bad.read_bytes() == good.read_bytes()


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert m1d.default_cache_dir() == tmp_path / "posneg" / "mnist1d"


def test_missing_package_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match=r"load_mnist1d: .*pip install mnist1d"):
        load_mnist1d(cache_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 5, 40])
def test_gaussian_smooth_matches_scipy(n: int) -> None:
    """Formula check against ``scipy.ndimage.gaussian_filter`` (what MNIST-1D's noise uses)."""
    from scipy.ndimage import gaussian_filter

    x = np.random.default_rng(0).standard_normal((4, n))
    got = gaussian_smooth(torch.as_tensor(x), 2.0).numpy()
    want = np.stack([gaussian_filter(row, 2) for row in x])
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_gaussian_smooth_refuses_bad_sigma() -> None:
    with pytest.raises(ValueError, match="gaussian_smooth: sigma must be > 0; got 0"):
        gaussian_smooth(torch.zeros(2, 5), 0)


def _naive_view(
    x: np.ndarray,
    u: float,
    k: int,
    noise: np.ndarray,
    eps: np.ndarray,
    v: float,
    scale: float,
    shear: float,
    corr: float,
    iid: float,
) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    n = len(x)
    y = x * (1 + scale * (u - 0.5))
    y = np.array([y[(t - k) % n] for t in range(n)])
    y = y + corr * gaussian_filter(noise, 2) + iid * eps
    return y - shear * (v - 0.5) * np.linspace(-0.5, 0.5, n)


def test_augment_sequences_formula() -> None:
    """Replays the generator's draws through a naive float64 loop per sample."""
    x = torch.randn(6, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    kw: dict[str, Any] = {
        "scale": 0.4,
        "max_shift": 5,
        "shear": 2.0,
        "corr_noise": 0.7,
        "iid_noise": 0.1,
    }
    got = augment_sequences(x, **kw, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    u = torch.rand(6, 1, dtype=torch.float64, generator=g)
    k = torch.randint(-5, 6, (6, 1), generator=g)
    noise = torch.randn(6, 40, dtype=torch.float64, generator=g)
    eps = torch.randn(6, 40, dtype=torch.float64, generator=g)
    v = torch.rand(6, 1, dtype=torch.float64, generator=g)
    for i in range(6):
        want = _naive_view(
            x[i].numpy(),
            float(u[i]),
            int(k[i]),
            noise[i].numpy(),
            eps[i].numpy(),
            float(v[i]),
            0.4,
            2.0,
            0.7,
            0.1,
        )
        np.testing.assert_allclose(got[i].numpy(), want, atol=1e-12)


def test_views_are_per_sample_and_follow_the_generator() -> None:
    x = torch.randn(1, 40).repeat(8, 1)  # eight copies of one sequence
    a = augment_sequences(x, generator=torch.Generator().manual_seed(0))
    b = augment_sequences(x, generator=torch.Generator().manual_seed(0))
    c = augment_sequences(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a}) == 8  # each copy gets its own draw
    assert a.shape == x.shape and a.dtype == x.dtype


def test_zero_strength_view_is_identity() -> None:
    x = torch.randn(4, 40)
    kw: dict[str, Any] = {
        "scale": 0.0,
        "max_shift": 0,
        "shear": 0.0,
        "corr_noise": 0.0,
        "iid_noise": 0.0,
    }
    assert torch.equal(augment_sequences(x, **kw, generator=torch.Generator()), x)


def test_shift_is_a_circular_roll() -> None:
    x = torch.arange(40.0)[None].repeat(5, 1)
    kw: dict[str, Any] = {
        "scale": 0.0,
        "max_shift": 3,
        "shear": 0.0,
        "corr_noise": 0.0,
        "iid_noise": 0.0,
    }
    out = augment_sequences(x, **kw, generator=torch.Generator().manual_seed(0))
    for row in out:
        k = int(-row[0].item()) % 40
        assert k <= 3 or k >= 37
        assert torch.equal(row, torch.roll(x[0], shifts=k))  # out[t] = x[t - k]


def test_augment_sequences_errors() -> None:
    with pytest.raises(
        ValueError, match=r"augment_sequences: x must be \(B, L\); got shape \(40,\)"
    ):
        augment_sequences(torch.zeros(40))
    with pytest.raises(ValueError, match="augment_sequences: max_shift must be >= 0; got -1"):
        augment_sequences(torch.zeros(2, 40), max_shift=-1)


def test_sequence_view_fn_standardises(cache: Path) -> None:
    data = load_mnist1d(cache_dir=cache)
    view = sequence_view_fn(data)
    x = torch.as_tensor(data.x_train[:16])
    out = view(x, torch.Generator().manual_seed(0))
    assert out.shape == (16, 40) and torch.isfinite(out).all()
