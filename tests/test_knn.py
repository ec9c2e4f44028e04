"""posneg._knn: the one exact top-k core (running merge, inner product, certified squared L2)."""

from __future__ import annotations

import builtins
import threading

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from posneg import _knn
from posneg.oversampling._neighbors import kneighbors


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference_topk(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best k per row by (value desc, position asc), by a plain Python sort."""
    vals, pos = [], []
    for row in values.tolist():
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))[:k]
        vals.append([row[j] for j in order] + [-np.inf] * (k - len(order)))
        pos.append(order + [-1] * (k - len(order)))
    return torch.tensor(vals, dtype=values.dtype), torch.tensor(pos)


# ---------------------------------------------------------------------------------------------
# 1. formula: the running top-k against a full sort
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("in_order", [True, False])
@pytest.mark.parametrize("ties", [False, True])
def test_running_topk_equals_full_sort(dtype: torch.dtype, in_order: bool, ties: bool) -> None:
    g = _g(1)
    rows, cols, group, k = 37, 8 * 24, 8, 9
    if ties:  # few distinct values: many ties, also across blocks
        values = torch.randint(0, 4, (rows, cols), generator=g).to(dtype)
    else:
        values = torch.randn(rows, cols, generator=g, dtype=dtype)
    top = _knn.RunningTopK(rows, k, dtype, values.device, group=group, in_order=in_order)
    starts = list(range(0, cols, 3 * group))
    if not in_order:
        starts = [starts[i] for i in torch.randperm(len(starts), generator=g).tolist()]
    for s in starts:
        top.push(values[:, s : s + 3 * group].contiguous(), 3 * group, s)
    got_v, got_p = top.result()
    ref_v, ref_p = _reference_topk(values, k)
    assert torch.equal(got_v, ref_v)
    assert torch.equal(got_p, ref_p)


def test_running_topk_fewer_than_k_and_partial_width() -> None:
    values = torch.tensor([[3.0, 1.0, 2.0, 9.0], [0.0, 0.0, 5.0, 9.0]])
    top = _knn.RunningTopK(2, 5, torch.float32, values.device, group=2)
    top.push(values, 3, 10)  # the last column is padding
    v, p = top.result()
    assert v.tolist() == [[3.0, 2.0, 1.0, -np.inf, -np.inf], [5.0, 0.0, 0.0, -np.inf, -np.inf]]
    assert p.tolist() == [[10, 12, 11, -1, -1], [12, 10, 11, -1, -1]]


def test_topk_ip_equals_sorted_scores_with_ties() -> None:
    g = _g(2)
    data = torch.randint(-2, 3, (300, 6), generator=g).double()
    q = torch.randint(-2, 3, (50, 6), generator=g).double()
    for compute in (torch.float32, torch.float64):
        scores, pos = _knn.topk_ip(
            q, data, 20, query_chunk=16, doc_chunk=64, compute=compute, group=16
        )
        ref_v, ref_p = _reference_topk(q @ data.T, 20)
        assert torch.equal(pos, ref_p)
        assert torch.equal(scores, ref_v.float())


# ---------------------------------------------------------------------------------------------
# 2. reference: scikit-learn and faiss
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tile", [None, 64])
def test_knn_l2_equals_sklearn(tile: int | None) -> None:
    x = np.random.default_rng(3).standard_normal((2500, 7))
    ref = NearestNeighbors(n_neighbors=5).fit(x).kneighbors(x, return_distance=False)[:, 1:]
    ours = _knn.knn_l2(torch.from_numpy(x), 4, tile=tile).numpy()
    np.testing.assert_array_equal(ours, ref)


def test_knn_faiss_flat_and_ivf() -> None:
    pytest.importorskip("faiss")
    g = _g(4)
    centres = torch.randn(20, 8, generator=g) * 4
    x = centres[torch.randint(20, (5000,), generator=g)] + torch.randn(5000, 8, generator=g)
    exact = _knn.knn_l2(x, 5)
    flat = _knn.knn_faiss(x, 5)
    same = (flat.unsqueeze(2) == exact.unsqueeze(1)).any(2).float().mean()
    assert same > 0.999
    ivf = _knn.knn_faiss(x, 5, n_lists=50, n_probe=4)
    recall = (ivf.unsqueeze(2) == exact.unsqueeze(1)).any(2).float().mean()
    assert recall > 0.95
    assert not (ivf == torch.arange(5000).unsqueeze(1)).any()
    assert ivf.dtype == torch.int64 and ivf.shape == (5000, 5)


def test_knn_faiss_rows_short_of_k_are_searched_exactly() -> None:
    pytest.importorskip("faiss")
    x = torch.randn(400, 4, generator=_g(5))
    # one list probed out of 100 over 400 rows: many lists hold fewer than k + 1 rows
    found = _knn.knn_faiss(x, 10, n_lists=100, n_probe=1)
    assert (found >= 0).all()
    assert not (found == torch.arange(400).unsqueeze(1)).any()
    assert all(len(set(r)) == 10 for r in found.tolist())


# ---------------------------------------------------------------------------------------------
# 3. properties
# ---------------------------------------------------------------------------------------------


def test_knn_l2_ties_do_not_depend_on_thread_count() -> None:
    """Integer data (many equal distances): the same output with 1 and 2 threads."""
    x = torch.from_numpy(np.random.default_rng(6).integers(0, 4, (3000, 4)).astype(np.float64))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _knn.knn_l2(x, 5, tile=256)
        torch.set_num_threads(2)
        two = _knn.knn_l2(x, 5, tile=256)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    d = ((x[one] - x.unsqueeze(1)) ** 2).sum(-1)
    ref = NearestNeighbors(n_neighbors=6).fit(x.numpy()).kneighbors(x.numpy())[0][:, 1:] ** 2
    np.testing.assert_allclose(d.numpy(), ref, atol=1e-9)


def test_approx_small_data_is_exact_and_draws_nothing() -> None:
    x = torch.randn(1000, 5, generator=_g(7))
    g = _g(8)
    state = g.get_state()
    approx = kneighbors(x, 4, method="approx", generator=g)
    assert torch.equal(approx, kneighbors(x, 4))
    assert torch.equal(g.get_state(), state)


def test_approx_large_data_uses_faiss_ivf(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("faiss")
    seen: dict[str, object] = {}
    real = _knn.knn_faiss

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        seen.update(kwargs)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_knn, "knn_faiss", spy)
    x = torch.randn(5000, 6, generator=_g(9))
    g = _g(10)
    state = g.get_state()
    found = kneighbors(x, 3, method="approx", n_probe=8, generator=g)
    assert seen["n_lists"] == 71 and seen["n_probe"] == 8
    assert found.shape == (5000, 3)
    assert torch.equal(g.get_state(), state)


# ---------------------------------------------------------------------------------------------
# 4. errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["approx", "faiss"])
def test_missing_faiss_names_the_extra(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name == "faiss":
            raise ImportError("no faiss")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake_import)
    x = torch.randn(5000, 4, generator=_g(11))
    with pytest.raises(ImportError, match=rf"knn='{method}' needs faiss.*posneg\[faiss\]"):
        kneighbors(x, 3, method=method)


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="kneighbors: method must be one of"):
        kneighbors(torch.randn(10, 2), 3, method="ivf")


# ---------------------------------------------------------------------------------------------
# global torch state: the worker pool never changes torch's thread count (issue 22)
# ---------------------------------------------------------------------------------------------


def _count_in_new_thread() -> int:
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def test_workers_keep_a_users_set_num_threads() -> None:
    """A count the user sets during a search survives it (it used to be overwritten)."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        seen: list[int] = []
        with _knn.workers(torch.device("cpu")) as run:
            torch.set_num_threads(3)  # the user's own call, in the middle of the search
            run(lambda _: seen.append(torch.get_num_threads()), list(range(8)))
        assert torch.get_num_threads() == 3
        assert _count_in_new_thread() == 3
        if _knn._omp_one_thread() is not None:
            assert seen == [1] * 8  # each worker of the pool runs one OpenMP thread
    finally:
        torch.set_num_threads(before)


def test_a_thread_started_during_a_search_keeps_its_count() -> None:
    """Threads started meanwhile used to inherit 1 and keep it (a matmul loop at half speed)."""
    before = torch.get_num_threads()
    ask, told = threading.Event(), threading.Event()
    counts: list[int] = []

    def bystander() -> None:
        counts.append(torch.get_num_threads())
        ask.wait(30)
        counts.append(torch.get_num_threads())
        told.set()

    try:
        torch.set_num_threads(2)
        with _knn.workers(torch.device("cpu")) as run:
            t = threading.Thread(target=bystander)
            t.start()
            run(lambda _: None, list(range(4)))
        ask.set()
        told.wait(30)
        t.join()
        assert counts == [2, 2]
        assert torch.get_num_threads() == 2 and _count_in_new_thread() == 2
    finally:
        torch.set_num_threads(before)


def test_knn_l2_leaves_the_thread_count_and_matches_a_serial_run() -> None:
    x = torch.randn(3000, 6, generator=_g(8), dtype=torch.float64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        got = _knn.knn_l2(x, 4, tile=256)
        assert torch.get_num_threads() == 2 and _count_in_new_thread() == 2
        torch.set_num_threads(1)  # serial path
        assert torch.equal(got, _knn.knn_l2(x, 4, tile=256))
    finally:
        torch.set_num_threads(before)
