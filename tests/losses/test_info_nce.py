"""InfoNCE and NT-Xent: formula loops, pytorch-metric-learning, properties, errors."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.losses import NTXentLoss as PMLNTXentLoss
from pytorch_metric_learning.reducers import DoNothingReducer

from posneg.losses import InfoNCELoss, NTXentLoss, info_nce, nt_xent

F64 = torch.float64


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([r / math.sqrt(float((r * r).sum())) for r in x])


def _dot(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(sum(float(a) * float(b) for a, b in zip(u, v, strict=True)))


# ------------------------------------------------------------------------------------------
# naive loops written from the equations
# ------------------------------------------------------------------------------------------


def naive_info_nce_rows(
    q: torch.Tensor, k: torch.Tensor, negs: torch.Tensor | None, t: float, normalize: bool = True
) -> list[float]:
    """L_i = -q_i.k_i/t + log(sum_j exp(q_i.k_j/t) + sum_m exp(q_i.n_m/t))."""
    if normalize:
        q, k = _unit(q), _unit(k)
        negs = _unit(negs) if negs is not None and len(negs) else negs
    out = []
    for i in range(q.shape[0]):
        denom = sum(math.exp(_dot(q[i], k[j]) / t) for j in range(k.shape[0]))
        if negs is not None:
            denom += sum(math.exp(_dot(q[i], negs[m]) / t) for m in range(negs.shape[0]))
        out.append(-_dot(q[i], k[i]) / t + math.log(denom))
    return out


def naive_nt_xent_rows(z1: torch.Tensor, z2: torch.Tensor, t: float) -> list[float]:
    """L_r = -s(r, p(r))/t + log sum_{c != r} exp(s(r, c)/t) over z = [z1; z2]."""
    z = _unit(torch.cat([z1, z2]))
    n2 = z.shape[0]
    b = n2 // 2
    out = []
    for r in range(n2):
        p = (r + b) % n2
        denom = sum(math.exp(_dot(z[r], z[c]) / t) for c in range(n2) if c != r)
        out.append(-_dot(z[r], z[p]) / t + math.log(denom))
    return out


# ------------------------------------------------------------------------------------------
# 1. formula
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [0, 3])
@pytest.mark.parametrize("normalize", [True, False])
def test_info_nce_matches_loop(m: int, normalize: bool) -> None:
    q, k, negs = _randn(5, 4, seed=1), _randn(5, 4, seed=2), _randn(m, 4, seed=3)
    if not normalize:
        q, k, negs = 0.3 * q, 0.3 * k, 0.3 * negs
    expected = torch.tensor(naive_info_nce_rows(q, k, negs, 0.2, normalize), dtype=F64)
    got = info_nce(q, k, negatives=negs, temperature=0.2, normalize=normalize, reduction="none")
    torch.testing.assert_close(got, expected)
    mean = info_nce(q, k, negatives=negs, temperature=0.2, normalize=normalize)
    total = info_nce(q, k, negatives=negs, temperature=0.2, normalize=normalize, reduction="sum")
    torch.testing.assert_close(mean, expected.mean())
    torch.testing.assert_close(total, expected.sum())


def test_info_nce_without_negatives_equals_loop() -> None:
    q, k = _randn(6, 3, seed=4), _randn(6, 3, seed=5)
    expected = torch.tensor(naive_info_nce_rows(q, k, None, 0.07), dtype=F64)
    torch.testing.assert_close(info_nce(q, k, reduction="none"), expected)


def test_info_nce_symmetric_is_naive_average() -> None:
    q, k = _randn(5, 4, seed=6), _randn(5, 4, seed=7)
    fwd = torch.tensor(naive_info_nce_rows(q, k, None, 0.1), dtype=F64)
    bwd = torch.tensor(naive_info_nce_rows(k, q, None, 0.1), dtype=F64)
    got = info_nce(q, k, temperature=0.1, symmetric=True, reduction="none")
    torch.testing.assert_close(got, 0.5 * (fwd + bwd))
    torch.testing.assert_close(
        info_nce(q, k, temperature=0.1, symmetric=True), 0.5 * (fwd.mean() + bwd.mean())
    )


def test_info_nce_symmetric_negatives_join_query_direction_only() -> None:
    q, k, negs = _randn(4, 3, seed=8), _randn(4, 3, seed=9), _randn(6, 3, seed=10)
    fwd = torch.tensor(naive_info_nce_rows(q, k, negs, 0.3), dtype=F64)
    bwd = torch.tensor(naive_info_nce_rows(k, q, None, 0.3), dtype=F64)
    got = info_nce(q, k, negatives=negs, temperature=0.3, symmetric=True, reduction="none")
    torch.testing.assert_close(got, 0.5 * (fwd + bwd))


def test_nt_xent_matches_loop() -> None:
    z1, z2 = _randn(4, 5, seed=11), _randn(4, 5, seed=12)
    expected = torch.tensor(naive_nt_xent_rows(z1, z2, 0.5), dtype=F64)
    torch.testing.assert_close(nt_xent(z1, z2, reduction="none"), expected)
    torch.testing.assert_close(nt_xent(z1, z2), expected.mean())
    torch.testing.assert_close(nt_xent(z1, z2, reduction="sum"), expected.sum())


# ------------------------------------------------------------------------------------------
# 2. reference: pytorch-metric-learning NTXentLoss
# ------------------------------------------------------------------------------------------


def _pml_inputs(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b = z1.shape[0]
    return torch.cat([z1, z2]), torch.cat([torch.arange(b), torch.arange(b)])


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("t", [0.07, 0.5])
def test_nt_xent_equals_pml_value_and_gradient(dtype: torch.dtype, t: float) -> None:
    # PML reduces by the mean over its positive pairs: (i, i+B) and (i+B, i), i.e. 2B anchors.
    base1, base2 = _randn(16, 32, seed=13, dtype=dtype), _randn(16, 32, seed=14, dtype=dtype)
    a1, a2 = base1.clone().requires_grad_(), base2.clone().requires_grad_()
    ours = nt_xent(a1, a2, temperature=t)
    ours.backward()
    b1, b2 = base1.clone().requires_grad_(), base2.clone().requires_grad_()
    emb, labels = _pml_inputs(b1, b2)
    ref = PMLNTXentLoss(temperature=t)(emb, labels)
    ref.backward()
    tol: dict[str, Any] = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}
    torch.testing.assert_close(ours, ref, **tol)
    assert a1.grad is not None and b1.grad is not None
    torch.testing.assert_close(a1.grad, b1.grad, **tol)
    torch.testing.assert_close(a2.grad, b2.grad, **tol)


@pytest.mark.parametrize("m", [0, 5])
def test_info_nce_equals_pml_with_reference_embeddings(m: int) -> None:
    # PML scores queries (labels arange(B)) against ref_emb = [keys; negatives] whose labels are
    # arange(B) for the keys and unused labels for the extra negatives: exactly InfoNCE.
    b = 6
    base_q, base_k, negs = _randn(b, 8, seed=40), _randn(b, 8, seed=41), _randn(m, 8, seed=42)
    q1, k1 = base_q.clone().requires_grad_(), base_k.clone().requires_grad_()
    info_nce(q1, k1, negatives=negs, temperature=0.1).backward()
    q2, k2 = base_q.clone().requires_grad_(), base_k.clone().requires_grad_()
    ref_labels = torch.cat([torch.arange(b), b + torch.arange(m)])
    ref = PMLNTXentLoss(temperature=0.1)(
        q2, torch.arange(b), ref_emb=torch.cat([k2, negs]), ref_labels=ref_labels
    )
    ref.backward()
    torch.testing.assert_close(info_nce(base_q, base_k, negatives=negs, temperature=0.1), ref)
    assert q1.grad is not None and q2.grad is not None
    assert k1.grad is not None and k2.grad is not None
    torch.testing.assert_close(q1.grad, q2.grad)
    torch.testing.assert_close(k1.grad, k2.grad)


def test_nt_xent_per_anchor_equals_pml_per_pair() -> None:
    z1, z2 = _randn(6, 8, seed=15), _randn(6, 8, seed=16)
    emb, labels = _pml_inputs(z1, z2)
    out = PMLNTXentLoss(temperature=0.2, reducer=DoNothingReducer())(emb, labels)["loss"]
    anchors, _ = out["indices"]
    expected = torch.empty(12, dtype=F64)
    expected[anchors] = out["losses"]
    torch.testing.assert_close(nt_xent(z1, z2, temperature=0.2, reduction="none"), expected)


# ------------------------------------------------------------------------------------------
# 3. properties
# ------------------------------------------------------------------------------------------


def test_info_nce_orthonormal_closed_form() -> None:
    b, t = 5, 0.25
    eye = torch.eye(b, dtype=F64)
    expected = math.log(1 + (b - 1) * math.exp(-1 / t))
    got = info_nce(eye, eye, temperature=t, reduction="none")
    torch.testing.assert_close(got, torch.full((b,), expected, dtype=F64))


def test_nt_xent_orthonormal_closed_form() -> None:
    b, t = 4, 0.5
    eye = torch.eye(b, dtype=F64)
    expected = math.log(math.exp(1 / t) + 2 * b - 2) - 1 / t
    torch.testing.assert_close(
        nt_xent(eye, eye, temperature=t, reduction="none"),
        torch.full((2 * b,), expected, dtype=F64),
    )


def test_nt_xent_view_swap_permutes_anchors() -> None:
    z1, z2 = _randn(5, 3, seed=17), _randn(5, 3, seed=18)
    a = nt_xent(z1, z2, reduction="none")
    b = nt_xent(z2, z1, reduction="none")
    torch.testing.assert_close(a, torch.cat([b[5:], b[:5]]))


def test_info_nce_empty_negatives_equals_none() -> None:
    q, k = _randn(4, 3, seed=19), _randn(4, 3, seed=20)
    torch.testing.assert_close(
        info_nce(q, k, negatives=torch.empty(0, 3, dtype=F64)), info_nce(q, k)
    )


def test_info_nce_single_query_with_negatives() -> None:
    q, k, negs = _randn(1, 3, seed=21), _randn(1, 3, seed=22), _randn(4, 3, seed=23)
    expected = torch.tensor(naive_info_nce_rows(q, k, negs, 0.1), dtype=F64)
    torch.testing.assert_close(
        info_nce(q, k, negatives=negs, temperature=0.1, reduction="none"), expected
    )


def _values_and_grads(
    f: Callable[..., torch.Tensor], *xs: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    leaves = [x.clone().requires_grad_() for x in xs]
    out = f(*leaves)
    (out * torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype)).sum().backward()
    return out.detach(), [leaf.grad for leaf in leaves if leaf.grad is not None]


CHUNK_CASES: dict[str, Callable[..., torch.Tensor]] = {
    "plain": lambda q, k, n, c: info_nce(q, k, temperature=0.2, reduction="none", chunk_size=c),
    "negatives": lambda q, k, n, c: info_nce(q, k, negatives=n, reduction="none", chunk_size=c),
    "symmetric": lambda q, k, n, c: info_nce(
        q, k, negatives=n, symmetric=True, reduction="none", chunk_size=c
    ),
    "nt_xent": lambda q, k, n, c: nt_xent(q, k, reduction="none", chunk_size=c),
}


@pytest.mark.parametrize("case", sorted(CHUNK_CASES))
@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked(case: str, chunk: int) -> None:
    q, k, negs = _randn(7, 4, seed=24), _randn(7, 4, seed=25), _randn(5, 4, seed=26)
    f = CHUNK_CASES[case]
    ref_v, ref_g = _values_and_grads(lambda a, b, n: f(a, b, n, None), q, k, negs)
    v, g = _values_and_grads(lambda a, b, n: f(a, b, n, chunk), q, k, negs)
    torch.testing.assert_close(v, ref_v)
    assert len(g) == len(ref_g) >= 2
    for g1, g2 in zip(g, ref_g, strict=True):
        torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype: torch.dtype) -> None:
    z1, z2 = _randn(6, 8, seed=27, dtype=dtype), _randn(6, 8, seed=28, dtype=dtype)
    for f in (nt_xent, lambda a, b: info_nce(a, b, symmetric=True)):
        out = f(z1, z2)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, f(z1.float(), z2.float()))


def test_float64_stays_float64() -> None:
    z = _randn(3, 2)
    assert nt_xent(z, z).dtype == F64
    assert info_nce(z, z).dtype == F64


def test_modules_match_functions_and_repr_pickle() -> None:
    q, k, negs = _randn(5, 4, seed=29), _randn(5, 4, seed=30), _randn(3, 4, seed=31)
    m = InfoNCELoss(temperature=0.2, reduction="sum", chunk_size=2)
    torch.testing.assert_close(
        m(q, k, negs), info_nce(q, k, negatives=negs, temperature=0.2, reduction="sum")
    )
    assert "temperature=0.2" in repr(m) and "reduction='sum'" in repr(m)
    n = NTXentLoss(temperature=0.3, reduction="none")
    torch.testing.assert_close(n(q, k), nt_xent(q, k, temperature=0.3, reduction="none"))
    assert "temperature=0.3" in repr(n)
    m2 = pickle.loads(pickle.dumps(m))
    torch.testing.assert_close(m2(q, k, negs), m(q, k, negs))
    assert len(list(m.parameters())) == 0


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(2, 6),
    d=st.integers(1, 5),
    m=st.integers(0, 4),
    chunk=st.one_of(st.none(), st.integers(1, 7)),
    seed=st.integers(0, 2**16),
)
def test_shapes_hypothesis(b: int, d: int, m: int, chunk: int | None, seed: int) -> None:
    q, k, negs = _randn(b, d, seed=seed), _randn(b, d, seed=seed + 1), _randn(m, d, seed=seed + 2)
    got = info_nce(q, k, negatives=negs, temperature=0.3, reduction="none", chunk_size=chunk)
    assert got.shape == (b,)
    expected = torch.tensor(naive_info_nce_rows(q, k, negs, 0.3), dtype=F64)
    torch.testing.assert_close(got, expected)
    nt = nt_xent(q, k, reduction="none", chunk_size=chunk)
    assert nt.shape == (2 * b,)
    torch.testing.assert_close(nt, torch.tensor(naive_nt_xent_rows(q, k, 0.5), dtype=F64))


# ------------------------------------------------------------------------------------------
# 4. errors
# ------------------------------------------------------------------------------------------


def test_errors_tensors() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(TypeError, match=r"nt_xent: z1 must be a torch.Tensor; got list"):
        nt_xent([[1.0]], x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"nt_xent: z2 must be a floating-point tensor"):
        nt_xent(x, torch.ones(4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"nt_xent: z1 must have shape \(B, D\); got \(4,\)"):
        nt_xent(torch.randn(4), x)
    with pytest.raises(ValueError, match=r"z2 must have shape \(B, D\) matching z1 \(4, 3\)"):
        nt_xent(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"z2 must have shape \(B, D\) matching z1 \(4, 3\)"):
        nt_xent(x, torch.randn(4, 2))
    with pytest.raises(TypeError, match=r"nt_xent: z2 has dtype torch.float64 but z1 has"):
        nt_xent(x, x.double())
    with pytest.raises(ValueError, match=r"nt_xent: z1 must have at least 2 rows \(B >= 2\)"):
        nt_xent(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"info_nce: key must have shape \(B, D\) matching"):
        info_nce(x, torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"info_nce: query must have at least 2 rows"):
        info_nce(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"at least 2 rows \(B >= 2\) when symmetric=True"):
        info_nce(torch.randn(1, 3), torch.randn(1, 3), negatives=x, symmetric=True)
    with pytest.raises(ValueError, match=r"info_nce: negatives must have shape \(M, D\)"):
        info_nce(x, x, negatives=torch.randn(3))
    with pytest.raises(ValueError, match=r"info_nce: negatives must have dimension D=3"):
        info_nce(x, x, negatives=torch.randn(2, 4))
    with pytest.raises(TypeError, match=r"info_nce: negatives has dtype torch.float64"):
        info_nce(x, x, negatives=torch.randn(2, 3, dtype=F64))
    with pytest.raises(TypeError, match=r"info_nce: negatives must be a floating-point"):
        info_nce(x, x, negatives=torch.ones(2, 3, dtype=torch.int32))


def test_errors_device() -> None:
    x = torch.randn(4, 3)
    meta = torch.empty(4, 3, device="meta")
    with pytest.raises(ValueError, match=r"nt_xent: z2 is on meta but z1 is on cpu"):
        nt_xent(x, meta)
    with pytest.raises(ValueError, match=r"info_nce: negatives is on meta but query is on cpu"):
        info_nce(x, x, negatives=meta)


def test_errors_hyperparameters() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"nt_xent: temperature must be > 0; got 0"):
        nt_xent(x, x, temperature=0)
    with pytest.raises(ValueError, match=r"info_nce: temperature must be > 0; got -1.0"):
        info_nce(x, x, temperature=-1.0)
    with pytest.raises(ValueError, match=r"temperature must be finite"):
        nt_xent(x, x, temperature=float("nan"))
    with pytest.raises(TypeError, match=r"temperature must be a real number; got str"):
        nt_xent(x, x, temperature="0.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"nt_xent: reduction must be one of"):
        nt_xent(x, x, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"nt_xent: chunk_size must be >= 1; got 0"):
        nt_xent(x, x, chunk_size=0)
    with pytest.raises(TypeError, match=r"info_nce: chunk_size must be an int; got float"):
        info_nce(x, x, chunk_size=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"info_nce: normalize must be a bool; got int"):
        info_nce(x, x, normalize=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"info_nce: symmetric must be a bool; got str"):
        info_nce(x, x, symmetric="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"InfoNCELoss: temperature must be > 0"):
        InfoNCELoss(temperature=0.0)
    with pytest.raises(TypeError, match=r"InfoNCELoss: symmetric must be a bool"):
        InfoNCELoss(symmetric=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"NTXentLoss: reduction must be one of"):
        NTXentLoss(reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"NTXentLoss: chunk_size must be >= 1"):
        NTXentLoss(chunk_size=-3)
