"""The small-size paths SMOTE's exact neighbour search takes (issue 16, section 5).

Up to ``_knn._BRUTE_MAX_ROWS`` rows (default tile, CPU) the search is a float64 brute force
whose per-row selection goes through group minima (:func:`posneg._knn._smallest_k`); above, the
certified float32 filter. Both must give scikit-learn's neighbours (data without ties) and
each other's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from posneg import _knn
from posneg.oversampling import SMOTE
from posneg.oversampling._neighbors import kneighbors


def test_brute_range_equals_sklearn() -> None:
    n = 3000  # above the former 2048-row brute-force limit, below _BRUTE_MAX_ROWS
    assert 2048 < n <= _knn._BRUTE_MAX_ROWS
    x = np.random.default_rng(11).standard_normal((n, 9))
    ref = NearestNeighbors(n_neighbors=6).fit(x).kneighbors(x, return_distance=False)[:, 1:]
    ours = _knn.knn_l2(torch.from_numpy(x), 5).numpy()
    np.testing.assert_array_equal(ours, ref)


def test_brute_and_filter_agree() -> None:
    x = torch.from_numpy(np.random.default_rng(12).standard_normal((4000, 16)))
    brute = kneighbors(x, 5)  # default tile: brute force at this size
    certified = _knn.knn_l2(x, 5, tile=512)  # explicit tile: the float32 filter
    assert torch.equal(brute, certified)


@pytest.mark.parametrize("n", [50, 1000, 1037])
def test_smallest_k_equals_a_full_sort(n: int) -> None:
    """Continuous values: exactly argsort's first k (the tail of n mod 16 columns included)."""
    g = torch.Generator().manual_seed(n)
    dist = torch.rand(40, n, generator=g, dtype=torch.float64)
    got = _knn._smallest_k(dist.clone(), 5)
    ref = torch.argsort(dist, dim=1)[:, :5]
    assert torch.equal(got, ref)


def test_smallest_k_with_ties_returns_the_k_smallest_values_lowest_position_first() -> None:
    g = torch.Generator().manual_seed(3)
    dist = torch.randint(0, 6, (64, 800), generator=g).to(torch.float64)
    got = _knn._smallest_k(dist.clone(), 5)
    vals = torch.gather(dist, 1, got)
    ref = torch.sort(dist, dim=1).values[:, :5]
    assert torch.equal(vals, ref)
    assert got.unique(dim=1).shape == got.shape or all(len(set(r)) == 5 for r in got.tolist())
    # equal values among the chosen: ascending position
    same = vals[:, 1:] == vals[:, :-1]
    assert bool((got[:, 1:][same] > got[:, :-1][same]).all())


def test_smote_small_input_matches_imblearn_neighbour_sets() -> None:
    """End to end at a brute-force size: every synthetic row lies on a segment between a
    minority row and one of its 5 nearest minority neighbours (scikit-learn's)."""
    rng = np.random.default_rng(5)
    n_min = 3000
    X = np.vstack([rng.standard_normal((4 * n_min, 6)), rng.standard_normal((n_min, 6)) + 0.5])
    y = np.r_[np.zeros(4 * n_min, dtype=np.int64), np.ones(n_min, dtype=np.int64)]
    X_res, y_res = SMOTE(k_neighbors=5, random_state=0).fit_resample(X, y)
    assert np.bincount(y_res).tolist() == [4 * n_min, 4 * n_min]
    minority = X[y == 1]
    nn = NearestNeighbors(n_neighbors=6).fit(minority).kneighbors(minority, return_distance=False)
    new = X_res[len(X) :][:100]
    a = np.repeat(minority, 5, axis=0)  # every (row, neighbour) segment
    seg = minority[nn[:, 1:].reshape(-1)] - a
    for p in new:
        u = np.clip(((p - a) * seg).sum(1) / (seg * seg).sum(1), 0.0, 1.0)
        off = np.abs(a + u[:, None] * seg - p).max(1)
        assert off.min() < 1e-9


def test_one_thread_does_not_resolve_the_openmp_setter(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> None:
        raise AssertionError("resolved with one thread")

    monkeypatch.setattr(_knn, "_omp_one_thread", boom)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with _knn.workers(torch.device("cpu")) as run:
            seen: list[int] = []
            run(seen.append, [1, 2, 3])
    finally:
        torch.set_num_threads(threads)
    assert seen == [1, 2, 3]


def test_unit_roundoff_falls_back_to_tf32_when_the_flags_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _knn._unit_roundoff(torch.device("cpu")) == 2.0**-24

    def mixed_api() -> str:
        raise RuntimeError("mix of the legacy and new APIs")

    monkeypatch.setattr(torch, "get_float32_matmul_precision", mixed_api)
    assert _knn._unit_roundoff(torch.device("cuda")) == 2.0**-11
