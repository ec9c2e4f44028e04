"""ExactIndex against a float64 brute force (ties included), FaissIndex against ExactIndex."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.mining.index import GROUP, ExactIndex, FaissIndex, Index, default_nlist


def brute_topk(
    queries: torch.Tensor, corpus: torch.Tensor, k: int, ids: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Naive float64 top-k: full score rows sorted by (score desc, id asc), -1/-inf padded."""
    scores = (queries.double() @ corpus.double().T).numpy()
    n = scores.shape[1]
    idv = np.arange(n) if ids is None else ids.numpy()
    order = np.lexsort((np.broadcast_to(idv, scores.shape), -scores), axis=1)[:, :k]
    out_s = torch.full((scores.shape[0], k), -math.inf, dtype=torch.float64)
    out_i = torch.full((scores.shape[0], k), -1, dtype=torch.int64)
    kk = min(k, n)
    out_s[:, :kk] = torch.from_numpy(np.take_along_axis(scores, order, axis=1))
    out_i[:, :kk] = torch.from_numpy(idv[order]).to(torch.int64)
    return out_s, out_i


def int_embeddings(n: int, d: int, seed: int, low: int = -2, high: int = 3) -> torch.Tensor:
    """Small integer-valued embeddings: products are exact in every float dtype, ties abound."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (n, d), generator=g).float()


# ---------------------------------------------------------------------------------------------
# formula: equality with the brute force
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "d", "nq", "k", "qc", "dc"),
    [
        (300, 6, 17, 10, None, None),
        (300, 6, 17, 10, 4, GROUP),  # many blocks, partial last block
        (1000, 5, 9, 100, 3, 2 * GROUP),  # k above the first block's group count
        (70, 3, 5, 150, 2, GROUP),  # k > ntotal: -1 / -inf pads
        (5, 2, 3, 5, 1, 1),  # k == ntotal, tiny chunk rounded up to one group
    ],
)
def test_exact_equals_brute_force_with_ties(
    n: int, d: int, nq: int, k: int, qc: int | None, dc: int | None
) -> None:
    x = int_embeddings(n, d, seed=n)
    q = int_embeddings(nq, d, seed=n + 1)
    index = ExactIndex(query_chunk=qc, doc_chunk=dc)
    index.add(x)
    scores, ids = index.search(q, k)
    ref_s, ref_i = brute_topk(q, x, k)
    assert scores.dtype == torch.float32 and ids.dtype == torch.int64
    assert scores.shape == ids.shape == (nq, k)
    assert torch.equal(ids, ref_i)
    assert torch.equal(scores.double(), ref_s)


def test_float64_random_equals_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 16, generator=g, dtype=torch.float64)
    q = torch.randn(20, 16, generator=g, dtype=torch.float64)
    index = ExactIndex(query_chunk=7, doc_chunk=128)
    index.add(x)
    scores, ids = index.search(q, 33)
    ref_s, ref_i = brute_topk(q, x, 33)
    assert torch.equal(ids, ref_i)
    torch.testing.assert_close(scores.double(), ref_s, rtol=1e-6, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 200),
    d=st.integers(1, 6),
    nq=st.integers(1, 12),
    k=st.integers(1, 220),
    qc=st.integers(1, 8),
    dc=st.sampled_from([GROUP, 2 * GROUP, 5 * GROUP]),
    seed=st.integers(0, 10_000),
)
def test_exact_hypothesis(n: int, d: int, nq: int, k: int, qc: int, dc: int, seed: int) -> None:
    x = int_embeddings(n, d, seed, low=-1, high=2)
    q = int_embeddings(nq, d, seed + 1, low=-1, high=2)
    index = ExactIndex(query_chunk=qc, doc_chunk=dc)
    index.add(x)
    scores, ids = index.search(q, k)
    ref_s, ref_i = brute_topk(q, x, k)
    assert torch.equal(ids, ref_i)
    assert torch.equal(scores.double(), ref_s)


def test_small_chunks_equal_one_chunk() -> None:
    """Memory knob: tiny query and doc chunks give the answers of a single block."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1200, 16, generator=g)
    x[1000:1010] = x[7]  # exact ties across blocks
    q = torch.randn(30, 16, generator=g)
    big = ExactIndex(query_chunk=30, doc_chunk=2048)
    small = ExactIndex(query_chunk=7, doc_chunk=GROUP)
    big.add(x)
    small.add(x)
    s1, i1 = big.search(q, 40)
    s2, i2 = small.search(q, 40)
    assert torch.equal(i1, i2)
    # float32 products may round differently with the block shape (another GEMM kernel)
    torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32_on_cpu(dtype: torch.dtype) -> None:
    x = int_embeddings(150, 4, seed=1)
    q = int_embeddings(6, 4, seed=2)
    ref = ExactIndex()
    ref.add(x)
    half = ExactIndex()
    half.add(x.to(dtype))
    s_ref, i_ref = ref.search(q, 20)
    s, i = half.search(q.to(dtype), 20)
    assert s.dtype == torch.float32
    assert torch.equal(i, i_ref) and torch.equal(s, s_ref)


def test_cosine_normalises() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(100, 8, generator=g, dtype=torch.float64) * torch.rand(100, 1, generator=g)
    q = torch.randn(4, 8, generator=g, dtype=torch.float64) * 7.0
    index = ExactIndex(metric="cosine")
    index.add(x)
    scores, ids = index.search(q, 10)
    xn = x / x.norm(dim=1, keepdim=True)
    qn = q / q.norm(dim=1, keepdim=True)
    ref_s, ref_i = brute_topk(qn, xn, 10)
    assert torch.equal(ids, ref_i)
    torch.testing.assert_close(scores.double(), ref_s, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# properties: ids, repeated add
# ---------------------------------------------------------------------------------------------


def test_add_twice_appends_ids() -> None:
    x = int_embeddings(120, 4, seed=8)
    a, b = ExactIndex(doc_chunk=GROUP), ExactIndex()
    a.add(x[:50])
    a.add(x[50:])
    b.add(x)
    q = int_embeddings(5, 4, seed=9)
    assert a.ntotal == 120
    sa, ia = a.search(q, 30)
    sb, ib = b.search(q, 30)
    assert torch.equal(ia, ib) and torch.equal(sa, sb)


def test_custom_ids_break_ties_by_id() -> None:
    x = int_embeddings(80, 3, seed=4, low=0, high=2)
    ids = torch.randperm(80, generator=torch.Generator().manual_seed(1)) * 10 + 5
    index = ExactIndex(doc_chunk=GROUP)
    index.add(x[:30], ids[:30])
    index.add(x[30:], ids[30:])
    index.add(x[:2])  # default ids continue after the largest id held
    q = int_embeddings(6, 3, seed=6)
    all_x = torch.cat([x, x[:2]])
    top = int(ids.max())
    all_ids = torch.cat([ids, torch.tensor([top + 1, top + 2])])
    scores, got = index.search(q, 90)
    ref_s, ref_i = brute_topk(q, all_x, 90, ids=all_ids)
    assert torch.equal(got, ref_i)
    assert torch.equal(scores.double(), ref_s)


def test_protocol_and_repr() -> None:
    index = ExactIndex(metric="cosine")
    assert isinstance(index, Index)
    assert index.ntotal == 0 and index.dim is None
    index.add(torch.ones(3, 2))
    assert "ntotal=3" in repr(index) and index.dim == 2
    index.reset()
    assert index.ntotal == 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    x = int_embeddings(5000, 16, seed=2)
    q = int_embeddings(300, 16, seed=3)
    cpu = ExactIndex()
    cpu.add(x)
    s_ref, i_ref = cpu.search(q, 50)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        gpu = ExactIndex()
        gpu.add(x.to("cuda", dtype))
        s, i = gpu.search(q.to("cuda", dtype), 50)
        assert s.device.type == "cuda" and s.dtype == torch.float32
        assert torch.equal(i.cpu(), i_ref) and torch.equal(s.cpu(), s_ref)


# ---------------------------------------------------------------------------------------------
# faiss
# ---------------------------------------------------------------------------------------------

faiss = pytest.importorskip("faiss")


def _gauss(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_faiss_flat_equals_exact() -> None:
    x, q = _gauss(3000, 24, 0), _gauss(40, 24, 1)
    exact, flat = ExactIndex(), FaissIndex(kind="flat")
    exact.add(x)
    flat.add(x)
    se, ie = exact.search(q, 25)
    sf, i_f = flat.search(q, 25)
    torch.testing.assert_close(sf, se, rtol=1e-5, atol=1e-5)
    # ids equal wherever the score is not (numerically) tied with a neighbour
    gap = torch.full_like(se, math.inf)
    gap[:, 1:] = (se[:, :-1] - se[:, 1:]).abs()
    gap[:, :-1] = torch.minimum(gap[:, :-1], (se[:, :-1] - se[:, 1:]).abs())
    clear = gap > 1e-4
    assert clear.float().mean() > 0.9
    assert torch.equal(ie[clear], i_f[clear])


def test_faiss_ivf_full_probe_equals_flat() -> None:
    x, q = _gauss(4000, 16, 2), _gauss(30, 16, 3)
    flat, ivf = FaissIndex(kind="flat"), FaissIndex(kind="ivf", nlist=20, nprobe=20)
    flat.add(x)
    ivf.add(x)
    s1, i1 = flat.search(q, 15)
    s2, i2 = ivf.search(q, 15)
    assert torch.equal(i1, i2)
    torch.testing.assert_close(s1, s2)
    assert ivf.nlist == 20 and "ivf" in repr(ivf)


def test_faiss_ivf_default_nlist_and_partial_probe() -> None:
    x, q = _gauss(2000, 8, 4), _gauss(10, 8, 5)
    ivf = FaissIndex(kind="ivf", nprobe=1)
    ivf.add(x)
    assert ivf.nlist == default_nlist(2000) == 45
    scores, ids = ivf.search(q, 10)
    assert scores.shape == (10, 10) and bool((ids >= -1).all())
    assert default_nlist(10) == 1 and default_nlist(1_000_000) == 1000


def test_faiss_pads_ids_and_cosine() -> None:
    x = _gauss(5, 4, 6)
    index = FaissIndex(metric="cosine")
    index.add(x, torch.tensor([10, 11, 12, 13, 14]))
    scores, ids = index.search(_gauss(2, 4, 7), 8)
    assert torch.equal(ids[:, 5:], torch.full((2, 3), -1))
    assert bool(torch.isinf(scores[:, 5:]).all()) and bool((scores[:, 5:] < 0).all())
    assert set(ids[:, :5].flatten().tolist()) == {10, 11, 12, 13, 14}
    assert bool((scores[:, :5].abs() <= 1 + 1e-5).all())
    exact = ExactIndex(metric="cosine")
    exact.add(x, torch.tensor([10, 11, 12, 13, 14]))
    se, ie = exact.search(_gauss(2, 4, 7), 8)
    assert torch.equal(ie, ids)
    torch.testing.assert_close(se, scores)


def test_faiss_add_twice_appends_ids() -> None:
    x = torch.nn.functional.normalize(_gauss(100, 4, 8), dim=1)
    index = FaissIndex()
    index.add(x[:40])
    index.add(x[40:])
    _, ids = index.search(x[60:61], 1)
    assert ids.item() == 60 and index.ntotal == 100
    assert isinstance(index, Index)
    assert index.faiss_index is not None


def test_faiss_import_error_names_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name == "faiss":
            raise ImportError("no faiss")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        FaissIndex()


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_exact_errors() -> None:
    with pytest.raises(ValueError, match="ExactIndex: metric must be one of"):
        ExactIndex(metric="l2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query_chunk must be >= 1"):
        ExactIndex(query_chunk=0)
    with pytest.raises(TypeError, match="doc_chunk must be an int"):
        ExactIndex(doc_chunk=2.0)  # type: ignore[arg-type]
    index = ExactIndex()
    with pytest.raises(ValueError, match=r"ExactIndex\.search: the index is empty"):
        index.search(torch.ones(1, 2), 1)
    with pytest.raises(TypeError, match="embeddings must be a floating-point tensor"):
        index.add(torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="embeddings must have shape"):
        index.add(torch.ones(3))
    with pytest.raises(ValueError, match="NaN or inf"):
        index.add(torch.tensor([[math.nan, 1.0]]))
    index.add(torch.ones(3, 2))
    with pytest.raises(ValueError, match="embeddings must have dimension D=2"):
        index.add(torch.ones(3, 4))
    with pytest.raises(TypeError, match=r"embeddings has dtype torch\.float64"):
        index.add(torch.ones(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="ids must be unique"):
        index.add(torch.ones(2, 2), torch.tensor([7, 7]))
    with pytest.raises(ValueError, match="ids must be unique"):
        index.add(torch.ones(1, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match="ids must be >= 0"):
        index.add(torch.ones(1, 2), torch.tensor([-3]))
    with pytest.raises(ValueError, match=r"ids must have shape \(2,\)"):
        index.add(torch.ones(2, 2), torch.tensor([8]))
    with pytest.raises(TypeError, match="ids must be an integer tensor"):
        index.add(torch.ones(1, 2), torch.tensor([8.0]))
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(torch.ones(1, 2), 0)
    with pytest.raises(TypeError, match="k must be an int"):
        index.search(torch.ones(1, 2), 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queries must have dimension D=2"):
        index.search(torch.ones(1, 3), 1)
    with pytest.raises(ValueError, match=r"queries must have shape \(Q, D\)"):
        index.search(torch.ones(2), 1)
    with pytest.raises(TypeError, match=r"queries has dtype torch\.float64"):
        index.search(torch.ones(1, 2, dtype=torch.float64), 1)
    with pytest.raises(ValueError, match="queries contains NaN"):
        index.search(torch.tensor([[math.inf, 0.0]]), 1)


def test_faiss_errors() -> None:
    with pytest.raises(ValueError, match="FaissIndex: kind must be one of"):
        FaissIndex(kind="hnsw")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        FaissIndex(nprobe=0)
    index = FaissIndex(kind="ivf", nlist=50)
    with pytest.raises(ValueError, match=r"FaissIndex\.search: the index is empty"):
        index.search(torch.ones(1, 2), 1)
    with pytest.raises(ValueError, match="nlist=50 needs at least 50 rows"):
        index.add(torch.randn(10, 2))
    flat = FaissIndex()
    flat.add(torch.randn(10, 2))
    with pytest.raises(ValueError, match="embeddings must have dimension D=2"):
        flat.add(torch.randn(3, 5))
    with pytest.raises(ValueError, match="queries must have dimension D=2"):
        flat.search(torch.randn(3, 5), 1)
    with pytest.raises(ValueError, match="ids must be unique"):
        flat.add(torch.randn(1, 2), torch.tensor([3]))
    assert np.isfinite(flat.search(torch.randn(1, 2), 3)[0].numpy()).all()


# ---------------------------------------------------------------------------------------------
# hostile sizes and ids (issue 22)
# ---------------------------------------------------------------------------------------------


def test_huge_k_is_refused_not_allocated() -> None:
    """k=10**12 used to pad a (Q, 10^12) result: 20 TB. Beyond ntotal, Q * k is bounded."""
    from posneg.mining.index import MAX_PADDED

    index = ExactIndex()
    index.add(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)))
    q = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=r"ExactIndex.search: k=1000000000000 exceeds the 5 rows"):
        index.search(q, k=10**12)
    # padding below the bound keeps the documented contract: id -1, score -inf
    k = MAX_PADDED // 3
    _, ids = index.search(q[:1], k=8)
    assert ids[0, 5:].tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match=rf"at most {MAX_PADDED}\); pass k <= ntotal \(5\)"):
        index.search(q, k=k + 1)
    # k <= ntotal is never refused by the bound
    assert index.search(q, k=np.int64(5))[1].shape == (3, 5)


def test_default_ids_never_overflow_int64() -> None:
    top = 2**63 - 1
    index = ExactIndex()
    index.add(torch.eye(2), ids=torch.tensor([5, top]))
    _, ids = index.search(torch.eye(2), k=3)
    assert ids.tolist() == [[5, top, -1], [top, 5, -1]]
    with pytest.raises(ValueError, match=r"ExactIndex.add: ids=None would number the new rows"):
        index.add(torch.ones(1, 2))
    assert index.ntotal == 2  # unchanged
    index.add(torch.ones(1, 2), ids=torch.tensor([6]))
    assert index.ntotal == 3
    near = ExactIndex()
    near.add(torch.eye(2), ids=torch.tensor([top - 2, top - 1]))
    near.add(torch.ones(1, 2))  # exactly top: still representable
    assert near.search(torch.ones(1, 2), k=1)[1].tolist() == [[top]]
