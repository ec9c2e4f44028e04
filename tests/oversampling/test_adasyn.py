"""ADASYN against imbalanced-learn: per-sample counts, class counts, segments, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from posneg.oversampling import ADASYN

imblearn_over = pytest.importorskip("imblearn.over_sampling")
imblearn_adasyn = pytest.importorskip("imblearn.over_sampling._adasyn")


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.vstack(
        [
            rng.standard_normal((200, 3)),
            rng.standard_normal((50, 3)) + 1.0,
            rng.standard_normal((30, 3)) - 1.0,
        ]
    )
    return X, np.repeat([0, 1, 2], [200, 50, 30])


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _RepeatSpy:
    """Stands in for numpy inside imbalanced-learn's ADASYN module and records ``np.repeat``'s
    counts: the per-sample numbers of synthetic samples imbalanced-learn generates."""

    def __init__(self) -> None:
        self.counts: list[np.ndarray] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    def repeat(self, a: Any, repeats: Any, *args: Any, **kwargs: Any) -> Any:
        self.counts.append(np.asarray(repeats).copy())
        return np.repeat(a, repeats, *args, **kwargs)


def _imblearn_counts(
    monkeypatch: pytest.MonkeyPatch, X: np.ndarray, y: np.ndarray, **kwargs: Any
) -> tuple[list[np.ndarray], np.ndarray]:
    spy = _RepeatSpy()
    monkeypatch.setattr(imblearn_adasyn, "np", spy)
    _, y_ref = imblearn_over.ADASYN(random_state=0, **kwargs).fit_resample(X, y)
    monkeypatch.undo()
    return spy.counts, y_ref


# 1. formula ------------------------------------------------------------------------------------


def test_counts_follow_the_formula() -> None:
    """g_i = rint(r_i / sum_j r_j * G), r_i = #foreign among the K nearest (naive float64 loop)."""
    X, y = _data()
    s = ADASYN(n_neighbors=4)
    s.fit_resample(X, y, generator=_g())
    for cls in (1, 2):
        rows = np.flatnonzero(y == cls)
        r = []
        for i in rows:
            d = ((X - X[i]) ** 2).sum(1)
            d[i] = np.inf
            r.append((y[np.argsort(d)[:4]] != cls).sum() / 4)
        r_arr = np.array(r)
        expected = np.rint(r_arr / r_arr.sum() * (200 - len(rows))).astype(int)
        np.testing.assert_array_equal(s.generated_per_sample_[cls], expected)


# 2. reference ----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["auto", "minority", "not minority", {2: 80}])
def test_per_sample_and_class_counts_equal_imblearn(
    monkeypatch: pytest.MonkeyPatch, strategy: object
) -> None:
    X, y = _data()
    ours = ADASYN(n_neighbors=5, sampling_strategy=strategy)
    _, y_res = ours.fit_resample(X, y, generator=_g())
    ref_counts, y_ref = _imblearn_counts(
        monkeypatch, X, y, n_neighbors=5, sampling_strategy=strategy
    )
    np.testing.assert_array_equal(y_res, y_ref)
    assert len(ref_counts) == len(ours.generated_per_sample_)
    for cls, ref in zip(sorted(ours.generated_per_sample_), ref_counts, strict=True):
        np.testing.assert_array_equal(ours.generated_per_sample_[cls], ref)


def test_points_on_segments_from_their_base_row() -> None:
    """Synthetic rows come grouped by base row in row order, each on a segment from that row to
    one of its K nearest same-class rows."""
    X, y = _data(1)
    s = ADASYN(n_neighbors=3, sampling_strategy={1: 120})
    X_res, _ = s.fit_resample(X, y, generator=_g(2))
    rows = np.flatnonzero(y == 1)
    nn = NearestNeighbors(n_neighbors=4).fit(X[rows]).kneighbors(X[rows])[1][:, 1:]
    base = np.repeat(np.arange(len(rows)), s.generated_per_sample_[1])
    for p, i in zip(X_res[len(X) :], base, strict=True):
        fits = []
        for j in nn[i]:
            d = X[rows[j]] - X[rows[i]]
            t = (p - X[rows[i]]) @ d / (d @ d)
            fits.append(np.linalg.norm(p - X[rows[i]] - t * d) < 1e-9 and 0 <= t < 1)
        assert any(fits)


# 3. properties ---------------------------------------------------------------------------------


def test_tensor_path_and_determinism() -> None:
    X, y = _data()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    before = torch.get_rng_state()
    a = ADASYN().fit_resample(Xt, yt, generator=_g(3))
    b = ADASYN().fit_resample(Xt, yt, generator=_g(3))
    c = ADASYN().fit_resample(Xt, yt, generator=_g(4))
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert isinstance(a[0], torch.Tensor) and a[0].dtype == torch.float64


def test_harder_rows_get_more_samples() -> None:
    """A minority row deep inside the majority gets the largest count."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.standard_normal((100, 2)), rng.standard_normal((10, 2)) * 0.1 + 4])
    X[-1] = 0.0  # one minority row in the middle of the majority
    y = np.repeat([0, 1], [100, 10])
    s = ADASYN(n_neighbors=5)
    s.fit_resample(X, y, generator=_g())
    assert s.generated_per_sample_[1].argmax() == 9


def test_state_dict_and_repr() -> None:
    X, y = _data()
    s = ADASYN(n_neighbors=4)
    s.fit_resample(X, y, generator=_g())
    t = ADASYN()
    t.load_state_dict(s.state_dict())
    assert t.n_neighbors == 4 and set(t.generated_per_sample_) == {1, 2}
    assert "n_neighbors=4" in repr(s)


# 4. errors -------------------------------------------------------------------------------------


def test_no_foreign_neighbour_is_an_error() -> None:
    rng = np.random.default_rng(0)
    X = np.vstack([rng.standard_normal((40, 2)), rng.standard_normal((10, 2)) + 100])
    y = np.repeat([0, 1], [40, 10])
    with pytest.raises(ValueError, match="no sample of class 1 has a neighbour from another"):
        ADASYN(n_neighbors=3).fit_resample(X, y)


def test_rounding_to_zero_is_an_error() -> None:
    X, y = _data()
    with pytest.raises(ValueError, match="leaves no sample to generate"):
        ADASYN(sampling_strategy={2: 31}).fit_resample(X, y)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"n_neighbors": 0}, ValueError, "n_neighbors must be >= 1"),
        ({"n_neighbors": "5"}, TypeError, "n_neighbors must be an int"),
        ({"knn": "exactly"}, ValueError, "knn must be one of"),
    ],
)
def test_hyperparameter_errors(kwargs: dict, err: type, match: str) -> None:
    sampler = ADASYN(**kwargs)  # the constructor only stores; fit_resample checks
    X, y = _data()
    with pytest.raises(err, match=f"ADASYN: {match}"):
        sampler.fit_resample(X, y)


def test_class_too_small() -> None:
    X, y = _data()
    with pytest.raises(ValueError, match=r"n_neighbors=30 needs more than 30 .* class 2 has 30"):
        ADASYN(n_neighbors=30).fit_resample(X, y)
