"""Feature Transformation against a naive float64 loop from the paper, the card's properties,
errors. No installed package implements it (PEERS.md), so there is no reference group; the
λ = μ = 1 case is checked against plain MoCo logits instead."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.negatives import (
    FeatureTransform,
    FeatureTransformParams,
    apply_feature_transform,
    feature_transform,
    feature_transform_logits,
    sample_feature_transform_params,
)

f64 = torch.float64


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=f64), dim=-1)


def moco_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, t: float) -> torch.Tensor:
    return torch.cat([(q * k).sum(dim=1, keepdim=True), q @ queue.T], dim=1) / t


def coef(c: torch.Tensor, r: int, d: int) -> float:
    return float(c) if c.dim() == 0 else float(c[r, d])


def naive_logits(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, p: FeatureTransformParams, t: float
) -> torch.Tensor:
    """Entry by entry: q̂ = λq + (1-λ)k, k̂ = λk + (1-λ)q, Q̂ = μQ + (1-μ)Q[π]; [q̂·k̂, q̂·Q̂]/t."""
    b_size, dim = q.shape
    qh = [
        [
            coef(p.pos_coef, b, d) * float(q[b, d]) + (1 - coef(p.pos_coef, b, d)) * float(k[b, d])
            for d in range(dim)
        ]
        for b in range(b_size)
    ]
    kh = [
        [
            coef(p.pos_coef, b, d) * float(k[b, d]) + (1 - coef(p.pos_coef, b, d)) * float(q[b, d])
            for d in range(dim)
        ]
        for b in range(b_size)
    ]
    perm = p.perm.tolist()
    Qh = [
        [
            coef(p.neg_coef, r, d) * float(queue[r, d])
            + (1 - coef(p.neg_coef, r, d)) * float(queue[perm[r], d])
            for d in range(dim)
        ]
        for r in range(queue.shape[0])
    ]
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    rows = [[dot(qh[b], kh[b])] + [dot(qh[b], n) for n in Qh] for b in range(b_size)]
    return torch.tensor(rows, dtype=f64) / t


# ----------------------------------------------------------------------------- 1. formula
@pytest.mark.parametrize("dim_mask", ["none", "pos", "neg", "both"])
@pytest.mark.parametrize("extrapolate", [True, False])
def test_logits_match_naive_loop(dim_mask: str, extrapolate: bool) -> None:
    q, k, queue = unit(5, 4, seed=1), unit(5, 4, seed=2), unit(9, 4, seed=3)
    p = sample_feature_transform_params(
        5,
        9,
        4,
        dim_mask=dim_mask,
        extrapolate=extrapolate,
        dtype=f64,  # type: ignore[arg-type]
        generator=torch.Generator().manual_seed(0),
    )
    got = feature_transform_logits(q, k, queue, p, temperature=0.2, normalize=False)
    torch.testing.assert_close(got, naive_logits(q, k, queue, p, 0.2), rtol=1e-12, atol=1e-12)


def test_loss_is_cross_entropy_with_label_zero() -> None:
    q, k, queue = (torch.randn(n, 6, dtype=f64) for n in (4, 4, 10))
    p = sample_feature_transform_params(
        4, 10, 6, dtype=f64, generator=torch.Generator().manual_seed(1)
    )
    logits = naive_logits(
        F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1), p, 0.1
    )
    per_row = torch.tensor(
        [math.log(sum(math.exp(v) for v in r)) - r[0] for r in logits.tolist()], dtype=f64
    )
    got = feature_transform(q, k, queue, temperature=0.1, reduction="none", params=p)
    torch.testing.assert_close(got, per_row, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        feature_transform(q, k, queue, temperature=0.1, params=p), per_row.mean()
    )
    torch.testing.assert_close(
        feature_transform(q, k, queue, temperature=0.1, reduction="sum", params=p), per_row.sum()
    )


# ----------------------------------------------------------------------------- 3. properties
@settings(max_examples=30, deadline=None)
@given(lam=st.floats(1.0, 2.0), seed=st.integers(0, 1000), dim=st.integers(2, 16))
def test_extrapolated_positive_similarity(lam: float, seed: int, dim: int) -> None:
    q, k = unit(3, dim, seed=seed), unit(3, dim, seed=seed + 1)
    p = FeatureTransformParams(
        torch.tensor(lam, dtype=f64), torch.tensor(1.0, dtype=f64), torch.arange(4)
    )
    out = apply_feature_transform(q, k, unit(4, dim, seed=seed + 2), p, normalize=False)
    c = (q * k).sum(1)
    got = (out.query * out.key).sum(1)
    torch.testing.assert_close(got, c + 2 * lam * (1 - lam) * (1 - c), rtol=1e-10, atol=1e-10)
    assert bool((got <= c + 1e-12).all())  # a harder positive
    assert bool((out.query.norm(dim=1) >= 1 - 1e-12).all())  # no re-normalisation: |q̂| >= 1


@pytest.mark.parametrize("normalize", [False, True])
def test_identity_coefficients_reproduce_moco_logits_exactly(normalize: bool) -> None:
    q, k, queue = torch.randn(6, 8), torch.randn(6, 8), torch.randn(20, 8)
    perm = torch.randperm(20)
    p = FeatureTransformParams(torch.tensor(1.0), torch.tensor(1.0), perm)
    got = feature_transform_logits(q, k, queue, p, temperature=0.2, normalize=normalize)
    if normalize:
        q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    assert torch.equal(got, moco_logits(q, k, queue, 0.2))
    # per-entry coefficients equal to 1 too
    ones = FeatureTransformParams(torch.ones(6, 8), torch.ones(20, 8), perm)
    assert torch.equal(
        feature_transform_logits(q, k, queue, ones, normalize=False), moco_logits(q, k, queue, 0.2)
    )


def test_negative_mixing_keeps_norms_at_most_one() -> None:
    queue = unit(200, 16, seed=0)
    p = sample_feature_transform_params(
        8, 200, 16, dtype=f64, generator=torch.Generator().manual_seed(0)
    )
    out = apply_feature_transform(
        unit(8, 16, seed=1), unit(8, 16, seed=2), queue, p, normalize=False
    )
    norms = out.queue.norm(dim=1)
    assert bool((norms <= 1 + 1e-12).all())
    assert bool((norms < 1 - 1e-6).any())  # mixing did happen


def test_per_entry_negative_mixing_can_exceed_norm_one() -> None:
    # Documented: with dim_mask "neg"/"both" the norm bound is lost (here |Q̂_0| = sqrt(2)).
    queue = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=f64)
    p = FeatureTransformParams(
        torch.tensor(1.0, dtype=f64),
        torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=f64),
        torch.tensor([1, 0]),
    )
    out = apply_feature_transform(unit(1, 2), unit(1, 2, seed=1), queue, p, normalize=False)
    torch.testing.assert_close(out.queue[0].norm(), torch.tensor(math.sqrt(2), dtype=f64))


def test_gradient_reaches_key_side_only_through_query() -> None:
    g = torch.Generator().manual_seed(0)
    q0, k0, qu0 = (torch.randn(n, 5, generator=g, dtype=f64) for n in (4, 4, 12))
    p = sample_feature_transform_params(4, 12, 5, dim_mask="both", dtype=f64, generator=g)
    q, k, qu = (t.clone().requires_grad_() for t in (q0, k0, qu0))
    feature_transform(q, k, qu, params=p, normalize=False).backward()
    assert k.grad is None and qu.grad is None  # detached, as the official code does

    rq = q0.clone().requires_grad_()
    lam, mu = p.pos_coef, p.neg_coef
    qh = lam * rq + (1 - lam) * k0
    kh = lam * k0 + (1 - lam) * rq  # gradient flows through q inside k̂
    Qh = mu * qu0 + (1 - mu) * qu0[p.perm]
    logits = torch.cat([(qh * kh).sum(1, keepdim=True), qh @ Qh.T], 1) / 0.2
    (torch.logsumexp(logits, 1) - logits[:, 0]).mean().backward()
    torch.testing.assert_close(q.grad, rq.grad)


def test_gradcheck_wrt_query() -> None:
    g = torch.Generator().manual_seed(2)
    q = torch.randn(3, 4, generator=g, dtype=f64, requires_grad=True)
    k, qu = torch.randn(3, 4, generator=g, dtype=f64), torch.randn(7, 4, generator=g, dtype=f64)
    p = sample_feature_transform_params(3, 7, 4, dim_mask="pos", dtype=f64, generator=g)
    assert torch.autograd.gradcheck(lambda a: feature_transform(a, k, qu, params=p), (q,))


@pytest.mark.parametrize("dim_mask", ["none", "pos", "neg", "both"])
def test_sampler_shapes_and_ranges(dim_mask: str) -> None:
    p = sample_feature_transform_params(
        60,
        70,
        50,
        dim_mask=dim_mask,
        generator=torch.Generator().manual_seed(0),  # type: ignore[arg-type]
    )
    assert p.pos_coef.shape == ((60, 50) if dim_mask in ("pos", "both") else ())
    assert p.neg_coef.shape == ((70, 50) if dim_mask in ("neg", "both") else ())
    assert 1 <= float(p.pos_coef.min()) and float(p.pos_coef.max()) <= 2
    assert 0 <= float(p.neg_coef.min()) and float(p.neg_coef.max()) <= 1
    assert torch.equal(p.perm.sort().values, torch.arange(70))


def test_sampler_moments_match_beta() -> None:
    # Beta(a, a) has mean 1/2 and variance 1 / (4 (2a + 1)); 5000 draws each.
    p = sample_feature_transform_params(
        100,
        100,
        50,
        pos_alpha=2.0,
        neg_alpha=1.6,
        dim_mask="both",
        dtype=f64,
        generator=torch.Generator().manual_seed(0),
    )
    for c, a, shift in ((p.pos_coef, 2.0, 1.0), (p.neg_coef, 1.6, 0.0)):
        x = c - shift
        assert abs(float(x.mean()) - 0.5) < 0.01
        assert abs(float(x.var()) - 1 / (4 * (2 * a + 1))) < 0.005


def test_mix_targets_and_interpolation() -> None:
    pos = sample_feature_transform_params(4, 10, 3, mix_target="pos")
    assert float(pos.neg_coef) == 1.0 and torch.equal(pos.perm, torch.arange(10))
    neg = sample_feature_transform_params(4, 10, 3, mix_target="neg")
    assert float(neg.pos_coef) == 1.0
    inter = sample_feature_transform_params(
        4, 10, 3, extrapolate=False, generator=torch.Generator().manual_seed(0)
    )
    assert 0 <= float(inter.pos_coef) <= 1


def test_postmix_norm_normalises_positives_only() -> None:
    q, k, queue = unit(4, 6), unit(4, 6, seed=1), unit(10, 6, seed=2)
    p = sample_feature_transform_params(
        4, 10, 6, dtype=f64, generator=torch.Generator().manual_seed(3)
    )
    out = apply_feature_transform(q, k, queue, p, postmix_norm=True)
    torch.testing.assert_close(out.query.norm(dim=1), torch.ones(4, dtype=f64))
    torch.testing.assert_close(out.key.norm(dim=1), torch.ones(4, dtype=f64))
    plain = apply_feature_transform(q, k, queue, p)
    assert torch.equal(out.queue, plain.queue)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 6),
    k_rows=st.integers(0, 12),
    d=st.integers(1, 6),
    dim_mask=st.sampled_from(["none", "pos", "neg", "both"]),
)
def test_shapes(b: int, k_rows: int, d: int, dim_mask: str) -> None:
    q, k, queue = torch.randn(b, d), torch.randn(b, d), torch.randn(k_rows, d)
    logits = feature_transform_logits(
        q, k, queue, sample_feature_transform_params(b, k_rows, d, dim_mask=dim_mask)
    )  # type: ignore[arg-type]
    assert logits.shape == (b, 1 + k_rows)
    assert bool(torch.isfinite(logits).all())
    loss = FeatureTransform(dim_mask=dim_mask, reduction="none")(q, k, queue)  # type: ignore[arg-type]
    assert loss.shape == (b,)


def test_same_generator_same_output_and_global_rng_untouched() -> None:
    q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(32, 8)
    state = torch.get_rng_state()
    a = feature_transform(q, k, queue, dim_mask="both", generator=torch.Generator().manual_seed(5))
    b = feature_transform(q, k, queue, dim_mask="both", generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    module = FeatureTransform(dim_mask="both")
    assert torch.equal(module(q, k, queue, generator=torch.Generator().manual_seed(5)), a)
    params = sample_feature_transform_params(
        4, 32, 8, dim_mask="both", generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(module(q, k, queue, params=params), a)  # replay


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype: torch.dtype) -> None:
    q, k, queue = (torch.randn(n, 8).to(dtype) for n in (4, 4, 16))
    loss = FeatureTransform()(q, k, queue)
    logits = feature_transform_logits(q, k, queue, sample_feature_transform_params(4, 16, 8))
    assert loss.dtype == torch.float32 and logits.dtype == torch.float32
    assert bool(torch.isfinite(loss)) and bool(torch.isfinite(logits).all())


def test_module_repr_and_pickle() -> None:
    m = FeatureTransform(1.5, 1.2, dim_mask="pos", temperature=0.1)
    assert "pos_alpha=1.5, neg_alpha=1.2, dim_mask='pos'" in repr(m)
    m2 = pickle.loads(pickle.dumps(m))
    assert (m2.pos_alpha, m2.neg_alpha, m2.dim_mask, m2.temperature) == (1.5, 1.2, "pos", 0.1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_given_params() -> None:
    q, k, queue = torch.randn(8, 16), torch.randn(8, 16), torch.randn(64, 16)
    p = sample_feature_transform_params(8, 64, 16, dim_mask="both")
    gp = FeatureTransformParams(p.pos_coef.cuda(), p.neg_coef.cuda(), p.perm.cuda())
    torch.testing.assert_close(
        feature_transform_logits(q.cuda(), k.cuda(), queue.cuda(), gp).cpu(),
        feature_transform_logits(q, k, queue, p),
        rtol=1e-4,
        atol=1e-4,
    )


# ----------------------------------------------------------------------------- 4. errors
def test_sampler_errors() -> None:
    fn = "sample_feature_transform_params"
    with pytest.raises(ValueError, match=f"{fn}: batch must be >= 1; got 0"):
        sample_feature_transform_params(0, 4, 2)
    with pytest.raises(ValueError, match=f"{fn}: queue_size must be >= 0; got -1"):
        sample_feature_transform_params(2, -1, 2)
    with pytest.raises(ValueError, match=f"{fn}: dim must be >= 1; got 0"):
        sample_feature_transform_params(2, 4, 0)
    with pytest.raises(ValueError, match=f"{fn}: pos_alpha must be > 0; got 0"):
        sample_feature_transform_params(2, 4, 2, pos_alpha=0)
    with pytest.raises(ValueError, match=f"{fn}: neg_alpha must be finite; got nan"):
        sample_feature_transform_params(2, 4, 2, neg_alpha=float("nan"))
    with pytest.raises(TypeError, match=f"{fn}: pos_alpha must be a real number; got str"):
        sample_feature_transform_params(2, 4, 2, pos_alpha="2")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=f"{fn}: dim_mask must be one of 'none', 'pos', 'neg', 'both'; got 'all'"
    ):
        sample_feature_transform_params(2, 4, 2, dim_mask="all")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=f"{fn}: mix_target must be one of 'pos', 'neg', 'posneg'; got 'x'"
    ):
        sample_feature_transform_params(2, 4, 2, mix_target="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=f"{fn}: extrapolate must be a bool; got int"):
        sample_feature_transform_params(2, 4, 2, extrapolate=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=f"{fn}: dtype must be a floating torch.dtype"):
        sample_feature_transform_params(2, 4, 2, dtype=torch.int32)
    with pytest.raises(TypeError, match=f"{fn}: generator must be a torch.Generator or None"):
        sample_feature_transform_params(2, 4, 2, generator=1)  # type: ignore[arg-type]


def test_logits_errors() -> None:
    fn = "feature_transform_logits"
    q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(16, 8)
    p = sample_feature_transform_params(4, 16, 8)
    with pytest.raises(TypeError, match=f"{fn}: query must be a torch.Tensor; got list"):
        feature_transform_logits([1.0], k, queue, p)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=f"{fn}: query must be a floating-point tensor"):
        feature_transform_logits(q.long(), k, queue, p)
    with pytest.raises(ValueError, match=rf"{fn}: query must have shape \(B, D\); got \(2, 2, 2\)"):
        feature_transform_logits(torch.randn(2, 2, 2), k, queue, p)
    with pytest.raises(
        ValueError, match=r"key must have shape \(B, D\) matching query \(4, 8\); got \(3, 8\)"
    ):
        feature_transform_logits(q, k[:3], queue, p)
    with pytest.raises(TypeError, match=r"key has dtype torch.float64 but query has torch.float32"):
        feature_transform_logits(q, k.double(), queue, p)
    with pytest.raises(ValueError, match=r"key is on meta but query is on cpu"):
        feature_transform_logits(q, k.to("meta"), queue, p)
    with pytest.raises(ValueError, match=r"queue must have shape \(K, D\); got \(1, 16, 8\)"):
        feature_transform_logits(q, k, queue[None], p)
    with pytest.raises(
        ValueError, match=r"queue must have dimension D=8 like query; got \(16, 4\)"
    ):
        feature_transform_logits(q, k, queue[:, :4], p)
    with pytest.raises(
        TypeError, match=r"queue has dtype torch.float64 but query has torch.float32"
    ):
        feature_transform_logits(q, k, queue.double(), p)
    with pytest.raises(ValueError, match=r"queue is on meta but query is on cpu"):
        feature_transform_logits(q, k, queue.to("meta"), p)
    with pytest.raises(ValueError, match=f"{fn}: temperature must be > 0; got -1"):
        feature_transform_logits(q, k, queue, p, temperature=-1)
    with pytest.raises(
        TypeError, match=f"{fn}: params must be a FeatureTransformParams; got tuple"
    ):
        feature_transform_logits(q, k, queue, (1, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"params.pos_coef must have shape \(\) or \(4, 8\); got \(3, 8\)"
    ):
        feature_transform_logits(
            q, k, queue, FeatureTransformParams(torch.ones(3, 8), p.neg_coef, p.perm)
        )
    with pytest.raises(
        ValueError, match=r"params.neg_coef must have shape \(\) or \(16, 8\); got \(8,\)"
    ):
        feature_transform_logits(
            q, k, queue, FeatureTransformParams(p.pos_coef, torch.ones(8), p.perm)
        )
    with pytest.raises(
        ValueError,
        match=r"params.perm must have shape \(16,\) \(one index per queue row\); got \(15,\)",
    ):
        feature_transform_logits(
            q, k, queue, FeatureTransformParams(p.pos_coef, p.neg_coef, p.perm[:15])
        )
    with pytest.raises(ValueError, match=r"params.pos_coef is on cpu but query is on meta"):
        feature_transform_logits(q.to("meta"), k.to("meta"), queue.to("meta"), p)


def test_functional_and_module_errors() -> None:
    q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(16, 8)
    with pytest.raises(ValueError, match=r"feature_transform: reduction must be one of"):
        feature_transform(q, k, queue, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"feature_transform: generator must be a torch.Generator"):
        feature_transform(q, k, queue, generator=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"feature_transform: key must have shape"):
        feature_transform(q, k[:2], queue)
    with pytest.raises(ValueError, match=r"FeatureTransform: neg_alpha must be > 0; got -1"):
        FeatureTransform(neg_alpha=-1)
    with pytest.raises(ValueError, match=r"FeatureTransform: dim_mask must be one of"):
        FeatureTransform(dim_mask="dims")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"FeatureTransform: postmix_norm must be a bool; got str"):
        FeatureTransform(postmix_norm="yes")  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"FeatureTransform: normalize must be a bool; got NoneType"
    ):
        FeatureTransform(normalize=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"FeatureTransform: temperature must be > 0; got 0.0"):
        FeatureTransform(temperature=0.0)
    with pytest.raises(ValueError, match=r"FeatureTransform: reduction must be one of"):
        FeatureTransform(reduction="max")  # type: ignore[arg-type]
