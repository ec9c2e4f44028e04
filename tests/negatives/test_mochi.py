"""MoCHi against a naive float64 loop from the paper, the card's properties, errors.

No installed package implements MoCHi (PEERS.md: only research code), so there is no reference
group; the s = s' = 0 case is checked against plain MoCo logits instead.
"""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.negatives import (
    MoCHi,
    MoCHiParams,
    mochi,
    mochi_logits,
    mochi_synthetic,
    sample_mochi_params,
)

f64 = torch.float64


def unit(*shape: int, seed: int = 0, dtype: torch.dtype = f64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


def moco_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, t: float) -> torch.Tensor:
    """Plain MoCo: [q·k, q·Q] / t (the ops MoCo's code uses)."""
    return torch.cat([(q * k).sum(dim=1, keepdim=True), q @ queue.T], dim=1) / t


def naive_mochi_logits(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, p: MoCHiParams, t: float
) -> torch.Tensor:
    """Row by row from the paper: sort the queue by q·n, keep the N hardest, mix, normalise."""
    rows = []
    for b in range(q.shape[0]):
        qb = q[b]
        scores = [float(qb @ n) for n in queue]
        hard = sorted(range(len(scores)), key=lambda r: -scores[r])[: p.num_hard]
        row = [float(qb @ k[b]), *scores]
        for m in range(p.num_mix):
            ni, nj = queue[hard[int(p.mix_first[b, m])]], queue[hard[int(p.mix_second[b, m])]]
            a = float(p.alpha[b, m])
            h = a * ni + (1 - a) * nj
            h = h / math.sqrt(float(h @ h))
            row.append(float(qb @ h))
        for m in range(p.num_query_mix):
            nj = queue[hard[int(p.query_mix_index[b, m])]]
            beta = float(p.beta[b, m])
            h = beta * qb + (1 - beta) * nj
            h = h / math.sqrt(float(h @ h))
            row.append(float(qb @ h))
        rows.append(row)
    return torch.tensor(rows, dtype=f64) / t


# ----------------------------------------------------------------------------- 1. formula
@pytest.mark.parametrize(("n_hard", "s", "s2"), [(5, 4, 3), (2, 6, 0), (7, 0, 5), (12, 3, 2)])
def test_logits_match_naive_loop(n_hard: int, s: int, s2: int) -> None:
    q, k, queue = unit(6, 5, seed=1), unit(6, 5, seed=2), unit(12, 5, seed=3)
    p = sample_mochi_params(6, n_hard, s, s2, dtype=f64, generator=torch.Generator().manual_seed(4))
    got = mochi_logits(q, k, queue, p, temperature=0.2, normalize=False)
    assert got.shape == (6, 1 + 12 + s + s2)
    torch.testing.assert_close(got, naive_mochi_logits(q, k, queue, p, 0.2), rtol=1e-12, atol=1e-12)


def test_loss_is_cross_entropy_with_label_zero() -> None:
    q, k, queue = (
        torch.randn(5, 4, dtype=f64),
        torch.randn(5, 4, dtype=f64),
        torch.randn(9, 4, dtype=f64),
    )
    p = sample_mochi_params(5, 4, 3, 2, dtype=f64, generator=torch.Generator().manual_seed(0))
    logits = naive_mochi_logits(
        F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1), p, 0.1
    )
    per_row = torch.tensor(
        [-math.log(math.exp(r[0]) / sum(math.exp(v) for v in r)) for r in logits.tolist()],
        dtype=f64,
    )
    got = mochi(q, k, queue, temperature=0.1, reduction="none", params=p)
    torch.testing.assert_close(got, per_row, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mochi(q, k, queue, temperature=0.1, params=p), per_row.mean())
    torch.testing.assert_close(
        mochi(q, k, queue, temperature=0.1, reduction="sum", params=p), per_row.sum()
    )


# ----------------------------------------------------------------------------- 3. properties
@pytest.mark.parametrize("normalize", [False, True])
def test_no_mixing_equals_moco_logits_exactly(normalize: bool) -> None:
    q, k, queue = torch.randn(8, 16), torch.randn(8, 16), torch.randn(40, 16)
    p = sample_mochi_params(8, 10, 0, 0)
    got = mochi_logits(q, k, queue, p, temperature=0.07, normalize=normalize)
    if normalize:
        q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    assert torch.equal(got, moco_logits(q, k, queue, 0.07))


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 6),
    d=st.integers(1, 6),
    k_rows=st.integers(2, 20),
    data=st.data(),
)
def test_shapes_and_moco_prefix(b: int, d: int, k_rows: int, data: st.DataObject) -> None:
    n_hard = data.draw(st.integers(2, k_rows))
    s, s2 = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 5))
    q, k, queue = (
        torch.randn(b, d, dtype=f64),
        torch.randn(b, d, dtype=f64),
        torch.randn(k_rows, d, dtype=f64),
    )
    p = sample_mochi_params(b, n_hard, s, s2, dtype=f64)
    got = mochi_logits(q, k, queue, p, normalize=False)
    assert got.shape == (b, 1 + k_rows + s + s2)
    # The MoCo columns are untouched by mixing.
    assert torch.equal(got[:, : 1 + k_rows], moco_logits(q, k, queue, 0.2))
    assert bool(torch.isfinite(got).all())


def test_synthetic_vectors_have_unit_norm_and_are_detached() -> None:
    q = torch.randn(6, 8, dtype=f64, requires_grad=True)
    queue = torch.randn(30, 8, dtype=f64, requires_grad=True)
    p = sample_mochi_params(6, 10, 7, 5, dtype=f64)
    syn = mochi_synthetic(q, queue, p)
    for v in (syn.mixed, syn.query_mixed):
        torch.testing.assert_close(v.norm(dim=-1), torch.ones(v.shape[:2], dtype=f64))
        assert not v.requires_grad
    assert syn.hard_indices.shape == (6, 10)


def test_hard_set_is_the_topk_of_each_query() -> None:
    q, queue = unit(5, 6, seed=0), unit(25, 6, seed=1)
    p = sample_mochi_params(5, 7, 1, 1)
    syn = mochi_synthetic(q, queue, p, normalize=False)
    scores = q @ queue.T
    for b in range(5):
        expected = sorted(range(25), key=lambda r: -float(scores[b, r]))[:7]
        assert syn.hard_indices[b].tolist() == expected


def test_query_mixes_are_harder_than_the_queue() -> None:
    q, queue = unit(64, 16, seed=0), unit(512, 16, seed=1)
    n_hard = 32
    p = sample_mochi_params(
        64, n_hard, 16, 16, dtype=f64, generator=torch.Generator().manual_seed(2)
    )
    syn = mochi_synthetic(q, queue, p)
    qh2 = torch.einsum("bd,bsd->bs", q, syn.query_mixed)
    scores = q @ queue.T
    nth_largest = scores.topk(n_hard, dim=1).values[:, -1]
    assert qh2.mean() > scores.mean()
    assert qh2.mean(dim=1).mean() >= nth_largest.mean()
    # Per sample: q·h' >= q·n_j whenever beta + (1 - beta) q·n_j >= 0 (normalising shrinks).
    n_j = queue[syn.hard_indices.gather(1, p.query_mix_index)]
    qn = torch.einsum("bd,bsd->bs", q, n_j)
    ok = p.beta + (1 - p.beta) * qn >= 0
    assert bool((qh2[ok] >= qn[ok] - 1e-12).all())


def test_type1_mixes_lie_within_the_hard_range() -> None:
    q, queue = unit(32, 8, seed=0), unit(256, 8, seed=1)
    p = sample_mochi_params(32, 16, 24, 0, dtype=f64, generator=torch.Generator().manual_seed(3))
    syn = mochi_synthetic(q, queue, p)
    qh = torch.einsum("bd,bsd->bs", q, syn.mixed)
    hard_scores = (q @ queue.T).gather(1, syn.hard_indices)
    low = hard_scores.min(dim=1, keepdim=True).values
    assert bool((qh >= low - 1e-12).all())  # hard scores are positive here, so no sign issue
    assert bool((low > 0).all())
    assert bool((qh <= 1 + 1e-12).all())
    # Roughly within the hard range: the average mix sits between the hard set's min and max.
    assert qh.mean() <= hard_scores.max(dim=1).values.mean()


def test_each_query_mixes_its_own_hard_negatives() -> None:
    # Query b = e_b; the queue holds N rows near e_b for every b, so query b's hard set is block b.
    # A flattened [B*N, D] gather without the b*N offset would give every query block 0.
    b_size, n_hard = 6, 4
    eye = torch.eye(b_size, dtype=f64)
    noise = 0.05 * torch.randn(
        b_size, n_hard, b_size, generator=torch.Generator().manual_seed(0), dtype=f64
    )
    queue = F.normalize((eye[:, None, :] + noise).reshape(b_size * n_hard, b_size), dim=1)
    p = sample_mochi_params(
        b_size, n_hard, 5, 5, dtype=f64, generator=torch.Generator().manual_seed(1)
    )
    syn = mochi_synthetic(eye, queue, p)
    block = syn.hard_indices // n_hard
    assert torch.equal(block, torch.arange(b_size)[:, None].expand(-1, n_hard))
    assert torch.equal(syn.mixed.argmax(dim=-1), torch.arange(b_size)[:, None].expand(-1, 5))
    assert torch.equal(syn.query_mixed.argmax(dim=-1), torch.arange(b_size)[:, None].expand(-1, 5))


def test_params_per_query_distinct_pairs_and_ranges() -> None:
    p = sample_mochi_params(400, 3, 50, 50, generator=torch.Generator().manual_seed(0))
    assert bool((p.mix_first != p.mix_second).all())
    for idx in (p.mix_first, p.mix_second, p.query_mix_index):
        assert idx.dtype == torch.int64 and int(idx.min()) >= 0 and int(idx.max()) < 3
    pairs = {
        (int(i), int(j)) for i, j in zip(p.mix_first.flatten(), p.mix_second.flatten(), strict=True)
    }
    assert pairs == {(i, j) for i in range(3) for j in range(3) if i != j}
    assert 0 <= float(p.alpha.min()) and float(p.alpha.max()) < 1
    assert 0 <= float(p.beta.min()) and float(p.beta.max()) < 0.5
    # Per query, not per batch: different queries draw different indices.
    assert not bool((p.mix_first == p.mix_first[:1]).all())


def test_mixing_makes_the_task_harder() -> None:
    q, k, queue = (
        torch.randn(8, 6, dtype=f64),
        torch.randn(8, 6, dtype=f64),
        torch.randn(20, 6, dtype=f64),
    )
    p = sample_mochi_params(8, 5, 4, 4, dtype=f64)
    plain = mochi(q, k, queue, params=sample_mochi_params(8, 5, 0, 0), reduction="none")
    mixed = mochi(q, k, queue, params=p, reduction="none")
    assert bool((mixed > plain).all())


def test_same_generator_same_output_and_global_rng_untouched() -> None:
    q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(32, 8)
    state = torch.get_rng_state()
    a = mochi(
        q,
        k,
        queue,
        num_hard=8,
        num_mix=4,
        num_query_mix=4,
        generator=torch.Generator().manual_seed(7),
    )
    b = mochi(
        q,
        k,
        queue,
        num_hard=8,
        num_mix=4,
        num_query_mix=4,
        generator=torch.Generator().manual_seed(7),
    )
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    module = MoCHi(8, 4, 4)
    c = module(q, k, queue, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, c)
    params = sample_mochi_params(4, 8, 4, 4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(module(q, k, queue, params=params), a)  # replay


def test_gradients_synthetic_vectors_detached() -> None:
    """Autograd matches the naive construction with h, h' built from detached q and queue."""
    g = torch.Generator().manual_seed(0)
    q0, k0, qu0 = (torch.randn(n, 5, generator=g, dtype=f64) for n in (4, 4, 15))
    p = sample_mochi_params(4, 6, 3, 3, dtype=f64, generator=g)
    q, k, qu = (t.clone().requires_grad_() for t in (q0, k0, qu0))
    mochi(q, k, qu, params=p, normalize=False).backward()

    rq, rk, rqu = (t.clone().requires_grad_() for t in (q0, k0, qu0))
    syn = mochi_synthetic(q0, qu0, p, normalize=False)  # detached vectors
    logits = (
        torch.cat(
            [
                (rq * rk).sum(1, keepdim=True),
                rq @ rqu.T,
                torch.einsum("bd,bsd->bs", rq, syn.mixed),
                torch.einsum("bd,bsd->bs", rq, syn.query_mixed),
            ],
            dim=1,
        )
        / 0.2
    )
    (torch.logsumexp(logits, 1) - logits[:, 0]).mean().backward()
    for a, b in ((q, rq), (k, rk), (qu, rqu)):
        torch.testing.assert_close(a.grad, b.grad)


def test_gradcheck_type1_only() -> None:
    # With s' = 0 the synthetic vectors do not depend on q (the hard set is piecewise constant);
    # they do depend on the queue, detached on purpose, so the queue is held fixed here.
    g = torch.Generator().manual_seed(1)
    q, k = (torch.randn(3, 4, generator=g, dtype=f64, requires_grad=True) for _ in range(2))
    qu = torch.randn(10, 4, generator=g, dtype=f64)
    p = sample_mochi_params(3, 4, 3, 0, dtype=f64, generator=g)
    assert torch.autograd.gradcheck(lambda a, b: mochi(a, b, qu, params=p), (q, k))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype: torch.dtype) -> None:
    q, k, queue = (torch.randn(n, 8).to(dtype) for n in (4, 4, 32))
    logits = mochi_logits(q, k, queue, sample_mochi_params(4, 8, 3, 3))
    loss = mochi(q, k, queue, num_hard=8, num_mix=3, num_query_mix=3)
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32
    assert bool(torch.isfinite(logits).all()) and bool(torch.isfinite(loss))


def test_empty_queue_without_mixing() -> None:
    q, k = torch.randn(3, 4), torch.randn(3, 4)
    loss = mochi(q, k, torch.empty(0, 4), num_hard=1, num_mix=0, num_query_mix=0, reduction="none")
    assert torch.equal(loss, torch.zeros(3))


def test_module_repr_and_pickle() -> None:
    m = MoCHi(16, 8, 4, temperature=0.1, reduction="sum")
    assert "num_hard=16, num_mix=8, num_query_mix=4, temperature=0.1" in repr(m)
    m2 = pickle.loads(pickle.dumps(m))
    assert (m2.num_hard, m2.num_mix, m2.num_query_mix, m2.reduction) == (16, 8, 4, "sum")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_given_params() -> None:
    q, k, queue = torch.randn(8, 16), torch.randn(8, 16), torch.randn(64, 16)
    p = sample_mochi_params(8, 16, 8, 4)
    gp = MoCHiParams(
        p.num_hard,
        *(t.cuda() for t in (p.mix_first, p.mix_second, p.alpha, p.query_mix_index, p.beta)),
    )
    cpu = mochi_logits(q, k, queue, p)
    gpu = mochi_logits(q.cuda(), k.cuda(), queue.cuda(), gp)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- 4. errors
def test_sampler_errors() -> None:
    with pytest.raises(ValueError, match=r"sample_mochi_params: batch must be >= 1; got 0"):
        sample_mochi_params(0, 4, 1, 1)
    with pytest.raises(ValueError, match=r"sample_mochi_params: num_hard must be >= 1; got 0"):
        sample_mochi_params(2, 0, 0, 1)
    with pytest.raises(ValueError, match=r"num_mix must be >= 0; got -1"):
        sample_mochi_params(2, 4, -1, 1)
    with pytest.raises(ValueError, match=r"num_query_mix must be >= 0; got -2"):
        sample_mochi_params(2, 4, 1, -2)
    with pytest.raises(TypeError, match=r"sample_mochi_params: num_mix must be an int; got float"):
        sample_mochi_params(2, 4, 1.0, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"num_hard must be >= 2 when num_mix > 0"):
        sample_mochi_params(2, 1, 1, 1)
    with pytest.raises(TypeError, match=r"dtype must be a floating torch.dtype"):
        sample_mochi_params(2, 4, 1, 1, dtype=torch.int64)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None; got int"):
        sample_mochi_params(2, 4, 1, 1, generator=0)  # type: ignore[arg-type]


def test_logits_errors() -> None:
    q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(16, 8)
    p = sample_mochi_params(4, 8, 2, 2)
    with pytest.raises(TypeError, match=r"mochi_logits: query must be a torch.Tensor"):
        mochi_logits(q.tolist(), k, queue, p)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"mochi_logits: query must have shape \(B, D\); got \(8,\)"
    ):
        mochi_logits(q[0], k, queue, p)
    with pytest.raises(
        ValueError, match=r"key must have shape \(B, D\) matching query \(4, 8\); got \(4, 7\)"
    ):
        mochi_logits(q, k[:, :7], queue, p)
    with pytest.raises(TypeError, match=r"key has dtype torch.float64 but query has torch.float32"):
        mochi_logits(q, k.double(), queue, p)
    with pytest.raises(ValueError, match=r"key is on meta but query is on cpu"):
        mochi_logits(q, k.to("meta"), queue, p)
    with pytest.raises(ValueError, match=r"queue must have shape \(K, D\); got \(16,\)"):
        mochi_logits(q, k, queue[:, 0], p)
    with pytest.raises(
        ValueError, match=r"queue must have dimension D=8 like query; got \(16, 5\)"
    ):
        mochi_logits(q, k, queue[:, :5], p)
    with pytest.raises(
        TypeError, match=r"queue has dtype torch.float16 but query has torch.float32"
    ):
        mochi_logits(q, k, queue.half(), p)
    with pytest.raises(ValueError, match=r"queue is on meta but query is on cpu"):
        mochi_logits(q, k, queue.to("meta"), p)
    with pytest.raises(TypeError, match=r"queue must be a floating-point tensor"):
        mochi_logits(q, k, queue.long(), p)
    with pytest.raises(ValueError, match=r"temperature must be > 0; got 0"):
        mochi_logits(q, k, queue, p, temperature=0)
    with pytest.raises(TypeError, match=r"params must be a MoCHiParams; got dict"):
        mochi_logits(q, k, queue, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"params were drawn for batch 3 but query has 4 rows"):
        mochi_logits(q, k, queue, sample_mochi_params(3, 8, 2, 2))
    with pytest.raises(
        ValueError, match=r"num_hard must be <= the number of queue rows K=16; got num_hard=17"
    ):
        mochi_logits(q, k, queue, sample_mochi_params(4, 17, 2, 2))
    bad = MoCHiParams(8, p.mix_first + 8, p.mix_second, p.alpha, p.query_mix_index, p.beta)
    with pytest.raises(ValueError, match=r"params.mix_first must index the hard set, in \[0, 8\)"):
        mochi_logits(q, k, queue, bad)
    with pytest.raises(ValueError, match=r"params are on cpu but query is on meta"):
        mochi_logits(q.to("meta"), k.to("meta"), queue.to("meta"), p)


def test_functional_and_module_errors() -> None:
    q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(16, 8)
    with pytest.raises(
        ValueError, match=r"mochi: reduction must be one of 'mean', 'sum', 'none'; got 'max'"
    ):
        mochi(q, k, queue, reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"mochi: num_hard must be >= 2 when num_mix > 0"):
        mochi(q, k, queue, num_hard=1, num_mix=2, num_query_mix=0)
    with pytest.raises(
        TypeError, match=r"mochi: generator must be a torch.Generator or None; got str"
    ):
        mochi(q, k, queue, num_hard=4, generator="seed")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"mochi_logits: num_hard must be <= the number of queue rows K=16"
    ):
        mochi(q, k, queue)  # the defaults (1024, 512, 256) need a larger queue
    with pytest.raises(ValueError, match=r"MoCHi: num_mix must be >= 0; got -1"):
        MoCHi(8, -1, 0)
    with pytest.raises(ValueError, match=r"MoCHi: temperature must be > 0; got -0.1"):
        MoCHi(8, 1, 1, temperature=-0.1)
    with pytest.raises(TypeError, match=r"MoCHi: normalize must be a bool; got int"):
        MoCHi(8, 1, 1, normalize=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"MoCHi: reduction must be one of"):
        MoCHi(8, 1, 1, reduction="avg")  # type: ignore[arg-type]
