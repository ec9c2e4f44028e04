"""SMOTE and the exact/approximate neighbour search, against imbalanced-learn and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.neighbors import NearestNeighbors

from posneg.oversampling import SMOTE
from posneg.oversampling._neighbors import kneighbors
from posneg.oversampling.smote import smote_samples

imblearn_over = pytest.importorskip("imblearn.over_sampling")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _data(seed: int = 0, counts: tuple[int, ...] = (120, 40, 25), d: int = 4) -> tuple:
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.standard_normal((n, d)) + i for i, n in enumerate(counts)])
    y = np.concatenate([np.full(n, i) for i, n in enumerate(counts)])
    return X, y


def _sk_neighbors(X: np.ndarray, k: int) -> np.ndarray:
    return NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)[:, 1:]


def _solve_segments(
    points: np.ndarray, base: np.ndarray, nn: np.ndarray, tol: float = 1e-7
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each point: the (i, j in nn[i]) segment it lies on, its gap, and the residual."""
    i_idx = np.repeat(np.arange(base.shape[0]), nn.shape[1])
    j_idx = nn.reshape(-1)
    a, d = base[i_idx], base[j_idx] - base[i_idx]  # segments a + t d
    rel = points[:, None, :] - a[None]  # (P, S, D)
    t = (rel * d[None]).sum(-1) / (d * d).sum(-1)[None]
    resid = np.linalg.norm(rel - t[..., None] * d[None], axis=-1)
    resid = np.where((t >= -tol) & (t <= 1 + tol), resid, np.inf)
    # a point on a segment shared by mutual neighbours fits (i, j) and (j, i): take the first
    # fitting segment in a fixed order, which does not depend on the gap
    fits = resid < 1e-9
    best = np.where(fits.any(1), fits.argmax(1), resid.argmin(1))
    rows = np.arange(points.shape[0])
    return i_idx[best], t[rows, best], resid[rows, best]


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# 1. formula
# ---------------------------------------------------------------------------------------------


def test_smote_samples_matches_naive_loop() -> None:
    """x_new = x_i + u (x_j - x_i), replaying the draws (row, neighbour column, gap) in float64."""
    X = torch.randn(30, 3, generator=_g(1), dtype=torch.float64)
    nn = torch.from_numpy(_sk_neighbors(X.numpy(), 4))
    out = smote_samples(X, nn, 50, generator=_g(7))
    g = _g(7)
    rows = torch.randint(30, (50,), generator=g)
    cols = torch.randint(4, (50,), generator=g)
    gaps = torch.rand(50, dtype=torch.float64, generator=g)
    expected = torch.empty(50, 3, dtype=torch.float64)
    for s in range(50):
        i, j = int(rows[s]), int(nn[rows[s], cols[s]])
        for f in range(3):
            expected[s, f] = X[i, f] + float(gaps[s]) * (X[j, f] - X[i, f])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_exact_neighbours_match_naive_float64_loop() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 5))
    ours = kneighbors(torch.from_numpy(X), 4, tile=32).numpy()
    for i in range(0, 300, 37):
        dist = [(float(((X[i] - X[j]) ** 2).sum()), j) for j in range(300) if j != i]
        assert [j for _, j in sorted(dist)[:4]] == ours[i].tolist()


# ---------------------------------------------------------------------------------------------
# 2. reference: imbalanced-learn and scikit-learn
# ---------------------------------------------------------------------------------------------

STRATEGIES = [
    "auto",
    "minority",
    "not majority",
    "not minority",
    "all",
    {1: 90, 2: 60},
    {2: 25},
    lambda y: {1: 50},
]


@pytest.mark.parametrize(
    "strategy", STRATEGIES, ids=lambda s: "callable" if callable(s) else str(s)
)
def test_class_counts_equal_imblearn(strategy: object) -> None:
    X, y = _data()
    ours = SMOTE(sampling_strategy=strategy, k_neighbors=3)
    X_res, y_res = ours.fit_resample(X, y, generator=_g())
    ref = imblearn_over.SMOTE(sampling_strategy=strategy, k_neighbors=3, random_state=0)
    X_ref, y_ref = ref.fit_resample(X, y)
    assert X_res.shape == X_ref.shape
    np.testing.assert_array_equal(y_res, y_ref)  # same order: originals, then class by class
    assert dict(ours.sampling_strategy_) == dict(ref.sampling_strategy_)


@pytest.mark.parametrize("ratio", [0.3, 0.75, 1.0])
def test_float_ratio_counts_equal_imblearn(ratio: float) -> None:
    X, y = _data(counts=(100, 20))
    labels = np.where(y == 0, "major", "minor")
    _, y_res = SMOTE(sampling_strategy=ratio).fit_resample(X, labels, generator=_g())
    _, y_ref = imblearn_over.SMOTE(sampling_strategy=ratio, random_state=0).fit_resample(X, labels)
    np.testing.assert_array_equal(y_res, y_ref)


@pytest.mark.parametrize(
    ("n", "d", "k", "tile", "dtype"),
    [
        (700, 6, 5, 64, torch.float64),  # several panels, symmetric tiles
        (1500, 32, 3, 128, torch.float32),
        (400, 2, 7, None, torch.float64),  # brute-force path
    ],
)
def test_exact_neighbour_sets_equal_sklearn(
    n: int, d: int, k: int, tile: int | None, dtype: torch.dtype
) -> None:
    rng = np.random.default_rng(n)
    X = (rng.standard_normal((n, d)) * 3 + 50).astype(np.float64)  # far from the origin
    ref = _sk_neighbors(X, k)
    ours = kneighbors(torch.from_numpy(X).to(dtype), k, tile=tile).numpy()
    if dtype == torch.float32:  # sklearn upcasts float32 data to float64, as we do
        ref = _sk_neighbors(X.astype(np.float32).astype(np.float64), k)
    assert all(set(a) == set(b) for a, b in zip(ours, ref, strict=True))
    np.testing.assert_array_equal(ours, ref)  # also the same order (no ties)


def test_exact_query_subset_equals_sklearn() -> None:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((900, 8))
    query = rng.choice(900, 250, replace=False)
    ref = NearestNeighbors(n_neighbors=6).fit(X).kneighbors(X[query], return_distance=False)[:, 1:]
    ours = kneighbors(torch.from_numpy(X), 5, query=torch.from_numpy(query), tile=64).numpy()
    np.testing.assert_array_equal(ours, ref)


def test_synthetic_points_lie_on_segments_to_sklearn_neighbours() -> None:
    X, y = _data(seed=2, counts=(150, 40), d=5)
    X_res, y_res = SMOTE(k_neighbors=4).fit_resample(X, y, generator=_g(3))
    minority = X[y == 1]
    synth = X_res[len(X) :]
    assert (y_res[len(X) :] == 1).all()
    _, gaps, resid = _solve_segments(synth, minority, _sk_neighbors(minority, 4))
    assert resid.max() < 1e-9
    assert gaps.min() >= 0 and gaps.max() < 1


def test_gaps_are_uniform_ks() -> None:
    X = np.random.default_rng(4).standard_normal((40, 6))
    nn = _sk_neighbors(X, 3)
    pts = smote_samples(torch.from_numpy(X), torch.from_numpy(nn), 2000, generator=_g(11))
    _, gaps, resid = _solve_segments(pts.numpy(), X, nn)
    assert resid.max() < 1e-9
    assert stats.kstest(gaps, "uniform").pvalue > 1e-3


def test_faiss_neighbours_equal_sklearn() -> None:
    pytest.importorskip("faiss")
    X = np.random.default_rng(6).standard_normal((500, 8)).astype(np.float32)
    ours = kneighbors(torch.from_numpy(X), 4, method="faiss").numpy()
    ref = _sk_neighbors(X.astype(np.float64), 4)
    assert np.mean([set(a) == set(b) for a, b in zip(ours, ref, strict=True)]) > 0.99


# ---------------------------------------------------------------------------------------------
# 3. properties
# ---------------------------------------------------------------------------------------------


def test_numpy_in_numpy_out_originals_first() -> None:
    X, y = _data()
    X32 = X.astype(np.float32)
    X_res, y_res = SMOTE().fit_resample(X32, y.astype(np.int32), generator=_g())
    assert isinstance(X_res, np.ndarray) and X_res.dtype == np.float32
    assert y_res.dtype == np.int32
    np.testing.assert_array_equal(X_res[: len(X)], X32)
    np.testing.assert_array_equal(y_res[: len(X)], y)
    # synthetic rows grouped by class in sorted order
    np.testing.assert_array_equal(y_res[len(X) :], np.repeat([1, 2], [80, 95]))


def test_string_labels() -> None:
    X, y = _data(counts=(60, 15))
    labels = np.array(["cat", "dog"])[y]
    _, y_res = SMOTE(k_neighbors=3).fit_resample(X, labels, generator=_g())
    assert y_res.dtype == labels.dtype and (y_res == "dog").sum() == 60


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_tensor_in_tensor_out(dtype: torch.dtype) -> None:
    X, y = _data()
    Xt, yt = torch.from_numpy(X).to(dtype), torch.from_numpy(y).to(torch.int32)
    X_res, y_res = SMOTE().fit_resample(Xt, yt, generator=_g())
    assert isinstance(X_res, torch.Tensor) and X_res.dtype == dtype and y_res.dtype == torch.int32
    assert torch.isfinite(X_res.float()).all()
    assert torch.equal(X_res[: len(X)], Xt)
    assert torch.bincount(y_res.long()).tolist() == [120, 120, 120]


def test_determinism_and_seeds() -> None:
    X, y = _data()
    a = SMOTE().fit_resample(X, y, generator=_g(5))[0]
    b = SMOTE().fit_resample(X, y, generator=_g(5))[0]
    c = SMOTE().fit_resample(X, y, generator=_g(6))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_global_rng_untouched_with_generator_and_used_without() -> None:
    X, y = _data()
    before = torch.get_rng_state()
    SMOTE(knn="approx").fit_resample(X, y, generator=_g())
    assert torch.equal(before, torch.get_rng_state())
    torch.manual_seed(3)
    a = SMOTE().fit_resample(X, y)[0]
    torch.manual_seed(3)
    b = SMOTE().fit_resample(X, y)[0]
    np.testing.assert_array_equal(a, b)


def test_gradients_flow_to_x() -> None:
    X, y = _data(counts=(30, 10))
    Xt = torch.from_numpy(X).requires_grad_(True)
    X_res, _ = SMOTE(k_neighbors=3).fit_resample(Xt, torch.from_numpy(y), generator=_g())
    X_res.sum().backward()
    assert Xt.grad is not None and torch.isfinite(Xt.grad).all()
    # every output row is a convex combination of input rows: each adds D to the total gradient
    assert abs(float(Xt.grad.sum()) - (40 + 20) * 4) < 1e-9


def test_ties_and_duplicates_give_a_valid_knn_set() -> None:
    """Integer data: many equal distances. Any tie order is valid: the distances must match."""
    rng = np.random.default_rng(8)
    X = rng.integers(0, 3, (600, 4)).astype(np.float64)
    ours = kneighbors(torch.from_numpy(X), 5, tile=32).numpy()
    d_ref = NearestNeighbors(n_neighbors=6).fit(X).kneighbors(X)[0][:, 1:]
    d_ours = np.sqrt(((X[ours] - X[:, None]) ** 2).sum(-1))
    np.testing.assert_allclose(np.sort(d_ours, 1), d_ref, atol=1e-12)
    assert not (ours == np.arange(600)[:, None]).any()


def test_uncertified_rows_are_redone_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A far outlier inflates the float32 rounding bound, so some rows of tight clusters cannot
    be certified by the filter: they are searched again (wider, then brute force) and the
    result still equals scikit-learn's."""
    import posneg._knn as nb

    rng = np.random.default_rng(9)
    X = rng.standard_normal((1200, 6)) * 1e-3 + rng.integers(0, 4, (1200, 1))
    X[0] = 1e4
    calls: list[int] = []
    refine = nb._refine

    def spy(*args: object, **kwargs: object) -> object:
        out = refine(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(int(out[1].numel()))
        return out

    monkeypatch.setattr(nb, "_refine", spy)
    ours = kneighbors(torch.from_numpy(X), 4, tile=64).numpy()
    assert calls[0] > 0  # the first pass left rows uncertified
    np.testing.assert_array_equal(np.sort(ours, 1), np.sort(_sk_neighbors(X, 4), 1))


def test_approx_recall_on_clustered_data() -> None:
    g = _g(0)
    centres = torch.randn(20, 8, generator=g) * 4
    X = centres[torch.randint(20, (5000,), generator=g)] + torch.randn(5000, 8, generator=g)
    exact = kneighbors(X, 5)
    approx = kneighbors(X, 5, method="approx", n_lists=50, n_probe=4, generator=_g(1))
    recall = (approx.unsqueeze(2) == exact.unsqueeze(1)).any(2).float().mean()
    assert recall > 0.95
    assert not (approx == torch.arange(5000).unsqueeze(1)).any()


@settings(max_examples=20, deadline=None)
@given(
    n_major=st.integers(8, 40),
    n_minor=st.integers(4, 12),
    d=st.integers(1, 5),
    k=st.integers(1, 3),
)
def test_hypothesis_shapes(n_major: int, n_minor: int, d: int, k: int) -> None:
    rng = np.random.default_rng(n_major * 100 + n_minor)
    X = rng.standard_normal((n_major + n_minor, d))
    y = np.array([0] * n_major + [1] * n_minor)
    if n_minor >= n_major:
        return
    X_res, y_res = SMOTE(k_neighbors=k).fit_resample(X, y, generator=_g())
    assert (y_res[len(X) :] == 1).all()
    assert X_res.shape == (2 * n_major, d)
    synth = X_res[len(X) :]
    minority = X[y == 1]
    # inside the bounding box of the minority class
    assert (synth >= minority.min(0) - 1e-12).all() and (synth <= minority.max(0) + 1e-12).all()


def test_fitted_state_round_trip_and_params() -> None:
    X, y = _data()
    s = SMOTE(k_neighbors=4, sampling_strategy="minority")
    s.fit_resample(X, y, generator=_g())
    t = SMOTE()
    t.load_state_dict(s.state_dict())
    assert t.sampling_strategy_ == s.sampling_strategy_ and t.k_neighbors == 4
    assert s.get_params()["k_neighbors"] == 4
    assert s.set_params(k_neighbors=2).k_neighbors == 2
    assert "k_neighbors=2" in repr(s)


def test_sklearn_clone_and_imblearn_pipeline() -> None:
    from sklearn.base import clone

    s = clone(SMOTE(k_neighbors=3))
    assert isinstance(s, SMOTE) and s.k_neighbors == 3


# ---------------------------------------------------------------------------------------------
# 4. errors
# ---------------------------------------------------------------------------------------------


def test_k_neighbors_too_large_names_class_and_size() -> None:
    X, y = _data(counts=(50, 5))
    with pytest.raises(ValueError, match=r"k_neighbors=5 needs more than 5 .* class 1 has 5"):
        SMOTE(k_neighbors=5).fit_resample(X, y)


def test_k_neighbors_message() -> None:
    X, y = _data(counts=(50, 5))
    with pytest.raises(ValueError, match="class 1 has 5"):
        SMOTE(k_neighbors=5).fit_resample(torch.from_numpy(X), torch.from_numpy(y))


@pytest.mark.parametrize(
    ("X", "y", "err", "match"),
    [
        (np.zeros((4, 2)), np.zeros(4, dtype=int), ValueError, "at least 2 classes"),
        (
            np.array([[np.nan, 0.0], [1, 1], [2, 2], [3, 3]]),
            np.array([0, 0, 1, 1]),
            ValueError,
            "NaN or inf",
        ),
        (
            np.array([[np.inf, 0.0], [1, 1], [2, 2], [3, 3]]),
            np.array([0, 0, 1, 1]),
            ValueError,
            "NaN or inf",
        ),
        (np.zeros((4, 2)), np.array([0, 1, 0]), ValueError, r"y must have shape \(4,\)"),
        (np.zeros(4), np.array([0, 1, 0, 1]), ValueError, r"X must have shape \(N, D\)"),
        (np.zeros((4, 2), dtype=int), np.array([0, 1, 0, 1]), TypeError, "floating-point"),
    ],
)
def test_input_errors(X: np.ndarray, y: np.ndarray, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        SMOTE(k_neighbors=1).fit_resample(X, y)


def test_tensor_input_errors() -> None:
    X = torch.randn(6, 2)
    with pytest.raises(TypeError, match=r"y must be a torch\.Tensor"):
        SMOTE().fit_resample(X, np.zeros(6))
    with pytest.raises(TypeError, match=r"X must be a torch\.Tensor"):
        SMOTE().fit_resample(X.numpy(), torch.zeros(6))
    with pytest.raises(TypeError, match="y must be an integer tensor"):
        SMOTE().fit_resample(X, torch.zeros(6))
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        SMOTE(k_neighbors=1).fit_resample(X, torch.tensor([0, 0, 0, 0, 1, 1]), generator=3)


@pytest.mark.parametrize(
    ("strategy", "err", "match"),
    [
        ("majority", ValueError, "sampling_strategy must be one of"),
        ("bogus", ValueError, "sampling_strategy must be one of"),
        (0.0, ValueError, r"in \(0, 1\]"),
        (1.5, ValueError, r"in \(0, 1\]"),
        (True, TypeError, "got bool"),
        ([1, 2], TypeError, "sampling_strategy must be a str"),
    ],
)
def test_strategy_errors_at_fit(strategy: object, err: type, match: str) -> None:
    sampler = SMOTE(sampling_strategy=strategy)  # type: ignore[arg-type]  # stored only
    X, y = _data()
    with pytest.raises(err, match=match):
        sampler.fit_resample(X, y)


@pytest.mark.parametrize(
    ("strategy", "match"),
    [
        ({7: 100}, "names class.* 7 .*not in y"),
        ({1: 10}, r"fewer samples than class 1 has \(40\)"),
        ({1: -1}, "must be >= 0"),
        (0.5, "needs a binary target"),
        (lambda y: {9: 3}, "not in y"),
    ],
)
def test_strategy_errors_with_data(strategy: object, match: str) -> None:
    X, y = _data()
    with pytest.raises(ValueError, match=match):
        SMOTE(sampling_strategy=strategy).fit_resample(X, y)  # type: ignore[arg-type]


def test_ratio_that_would_remove_samples() -> None:
    X, y = _data(counts=(100, 40))
    with pytest.raises(ValueError, match="would remove samples"):
        SMOTE(sampling_strategy=0.3).fit_resample(X, y)
    with pytest.raises(ValueError, match="would remove samples"):
        SMOTE(sampling_strategy=0.4).fit_resample(X, y)  # int(100 * 0.4) - 40 = 0: none added


def test_callable_returning_non_dict_and_bad_counts() -> None:
    X, y = _data()
    with pytest.raises(TypeError, match="must return a dict"):
        SMOTE(sampling_strategy=lambda y: [1]).fit_resample(X, y)
    with pytest.raises(TypeError, match="must be an int"):
        SMOTE(sampling_strategy={1: 50.5}).fit_resample(X, y)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"k_neighbors": 0}, ValueError, "k_neighbors must be >= 1"),
        ({"k_neighbors": 2.5}, TypeError, "k_neighbors must be an int"),
        ({"knn": "ball_tree"}, ValueError, "knn must be one of"),
        ({"n_probe": 0}, ValueError, "n_probe must be >= 1"),
    ],
)
def test_hyperparameter_errors(kwargs: dict, err: type, match: str) -> None:
    sampler = SMOTE(**kwargs)  # scikit-learn's rule: the constructor only stores
    X, y = _data()
    with pytest.raises(err, match=f"SMOTE: {match}"):
        sampler.fit_resample(X, y)
    # set_params stores too, and the next fit reports it
    sampler = SMOTE().set_params(**kwargs)
    with pytest.raises(err, match=match):
        sampler.fit_resample(X, y)


def test_set_params_unknown() -> None:
    with pytest.raises(ValueError, match="unknown parameters"):
        SMOTE().set_params(bogus=0)


def test_kneighbors_unknown_method() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        kneighbors(torch.randn(10, 2), 2, method="kd")
