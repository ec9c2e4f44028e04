"""DCL and DCLW: formula loops, pytorch-metric-learning identity, properties, errors."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.losses import NTXentLoss as PMLNTXentLoss
from pytorch_metric_learning.reducers import DoNothingReducer

from posneg.losses import DCLLoss, DCLWLoss, dcl, dclw, nt_xent

F64 = torch.float64


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([r / math.sqrt(float((r * r).sum())) for r in x])


def _dot(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(sum(float(a) * float(b) for a, b in zip(u, v, strict=True)))


def naive_dcl_rows(
    z1: torch.Tensor,
    z2: torch.Tensor,
    t: float,
    sigma: float | None = None,
    normalize: bool = True,
) -> list[float]:
    """Yeh et al.: L_i^(k) = -w_i s(z_i^k, z_i^k')/t + log sum_{l, j!=i} exp(s(z_i^k, z_j^l)/t).

    Double loop over anchors (both views) and over the 2B - 2 negatives; w_i = 1 for DCL and
    w_i = 2 - exp(s_ii/sigma) / mean_j exp(s_jj/sigma) for DCLW.
    """
    if normalize:
        z1, z2 = _unit(z1), _unit(z2)
    b = z1.shape[0]
    views = [z1, z2]
    s_pos = [_dot(z1[i], z2[i]) for i in range(b)]
    if sigma is None:
        w = [1.0] * b
    else:
        mean_e = sum(math.exp(s / sigma) for s in s_pos) / b
        w = [2.0 - math.exp(s / sigma) / mean_e for s in s_pos]
    out = []
    for k in range(2):
        anchor_view, other_view = views[k], views[1 - k]
        for i in range(b):
            denom = 0.0
            for view in views:
                for j in range(b):
                    if j != i:
                        denom += math.exp(_dot(anchor_view[i], view[j]) / t)
            out.append(-w[i] * _dot(anchor_view[i], other_view[i]) / t + math.log(denom))
    return out


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# ------------------------------------------------------------------------------------------
# 1. formula
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_dcl_brute_force_b4(normalize: bool) -> None:
    z1, z2 = _randn(4, 3, seed=1), _randn(4, 3, seed=2)
    if not normalize:
        z1, z2 = 0.4 * z1, 0.4 * z2
    expected = _t(naive_dcl_rows(z1, z2, 0.1, normalize=normalize))
    got = dcl(z1, z2, normalize=normalize, reduction="none")
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(dcl(z1, z2, normalize=normalize), expected.mean())
    torch.testing.assert_close(dcl(z1, z2, normalize=normalize, reduction="sum"), expected.sum())


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_dclw_brute_force_b4(sigma: float) -> None:
    z1, z2 = _randn(4, 5, seed=3), _randn(4, 5, seed=4)
    expected = _t(naive_dcl_rows(z1, z2, 0.2, sigma=sigma))
    got = dclw(z1, z2, temperature=0.2, sigma=sigma, reduction="none")
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(dclw(z1, z2, temperature=0.2, sigma=sigma), expected.mean())


# ------------------------------------------------------------------------------------------
# 2. reference: L_DCL = L_NTXent + log(1 - exp(-L_NTXent)) per anchor, with PML's NT-Xent
# ------------------------------------------------------------------------------------------


def test_dcl_from_pml_ntxent_per_anchor() -> None:
    # exp(-L_NTXent) is the softmax probability of the positive, so removing the positive from
    # the denominator gives L_NTXent + log(1 - exp(-L_NTXent)) anchor by anchor.
    b = 8
    z1, z2 = _randn(b, 6, seed=5), _randn(b, 6, seed=6)
    emb, labels = torch.cat([z1, z2]), torch.cat([torch.arange(b), torch.arange(b)])
    out = PMLNTXentLoss(temperature=0.1, reducer=DoNothingReducer())(emb, labels)["loss"]
    l_nt = torch.empty(2 * b, dtype=F64)
    l_nt[out["indices"][0]] = out["losses"]
    expected = l_nt + torch.log(-torch.expm1(-l_nt))
    torch.testing.assert_close(dcl(z1, z2, reduction="none"), expected)


# ------------------------------------------------------------------------------------------
# 3. properties
# ------------------------------------------------------------------------------------------


def test_dcl_below_infonce_by_exact_gap() -> None:
    b, t = 6, 0.3
    z1, z2 = _randn(b, 4, seed=7), _randn(b, 4, seed=8)
    l_dcl = dcl(z1, z2, temperature=t, reduction="none")
    l_nt = nt_xent(z1, z2, temperature=t, reduction="none")
    assert bool((l_dcl <= l_nt).all())
    z = _unit(torch.cat([z1, z2]))
    gap = []
    for r in range(2 * b):
        p = (r + b) % (2 * b)
        neg = sum(math.exp(_dot(z[r], z[c]) / t) for c in range(2 * b) if c not in (r, p))
        gap.append(math.log(1 + math.exp(_dot(z[r], z[p]) / t) / neg))
    torch.testing.assert_close(l_nt - l_dcl, _t(gap))


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_dcl_positive_gradient_is_minus_one_over_t(t: float) -> None:
    # normalize=False: s_pos of anchor i (view 1) is z1_i.z2_i and z2_i appears nowhere else in
    # L_i, so dL_i/dz2_i = (dL_i/ds_pos) z1_i. DCL gives exactly -z1_i/t; NT-Xent gives
    # -(1 - p_pos) z1_i / t (the negative-positive coupling DCL removes).
    z1, z2 = _randn(5, 3, seed=9), _randn(5, 3, seed=10).requires_grad_()
    i = 2
    dcl(z1, z2, temperature=t, normalize=False, reduction="none")[i].backward()
    assert z2.grad is not None
    torch.testing.assert_close(z2.grad[i], -z1[i] / t, rtol=0, atol=1e-12)
    z2b = z2.detach().clone().requires_grad_()
    l_nt = nt_xent(z1, z2b, temperature=t, normalize=False, reduction="none")[i]
    l_nt.backward()
    assert z2b.grad is not None
    p_pos = math.exp(-float(l_nt.detach()))
    torch.testing.assert_close(z2b.grad[i], -(1 - p_pos) * z1[i] / t)


def test_dcl_can_be_negative_closed_form() -> None:
    b, t = 4, 0.1
    eye = torch.eye(b, dtype=F64)
    expected = math.log(2 * b - 2) - 1 / t
    assert expected < 0
    torch.testing.assert_close(
        dcl(eye, eye, temperature=t, reduction="none"), torch.full((2 * b,), expected, dtype=F64)
    )


def test_dclw_large_sigma_equals_dcl() -> None:
    z1, z2 = _randn(6, 4, seed=11), _randn(6, 4, seed=12)
    torch.testing.assert_close(
        dclw(z1, z2, sigma=1e12, reduction="none"), dcl(z1, z2, reduction="none")
    )


def test_dclw_equal_positive_similarities_give_unit_weights() -> None:
    # Every positive pair identical up to the sample -> all s_ii equal -> w == 1 for any sigma.
    z1 = _randn(5, 4, seed=13)
    for sigma in (0.05, 0.5, 3.0):
        torch.testing.assert_close(dclw(z1, z1, sigma=sigma), dcl(z1, z1))


def test_dclw_weights_average_one_and_favour_hard_positives() -> None:
    from posneg.losses.dcl import _weights

    z1, z2 = _unit(_randn(7, 3, seed=14)), _unit(_randn(7, 3, seed=15))
    w = _weights(torch.cat([z1, z2]), 7, 0.5)
    torch.testing.assert_close(w.mean(), torch.tensor(1.0, dtype=F64))
    s = (z1 * z2).sum(1)
    assert int(w.argmax()) == int(s.argmin())
    assert int(w.argmin()) == int(s.argmax())


def test_dclw_detach_weights_same_value_different_gradient() -> None:
    z1, z2 = _randn(5, 4, seed=16), _randn(5, 4, seed=17)
    grads = []
    for detach in (False, True):
        a = z1.clone().requires_grad_()
        loss = dclw(a, z2, detach_weights=detach)
        loss.backward()
        assert a.grad is not None
        grads.append((loss.detach(), a.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    assert not torch.allclose(grads[0][1], grads[1][1])


def test_dclw_detached_gradient_is_weighted_dcl_gradient() -> None:
    # With detached weights, dL_i/dz2_i = -w_i z1_i / t (normalize=False).
    z1, z2 = _randn(5, 3, seed=18), _randn(5, 3, seed=19).requires_grad_()
    from posneg.losses.dcl import _weights

    w = _weights(torch.cat([z1, z2.detach()]), 5, 0.5)
    dclw(z1, z2, normalize=False, detach_weights=True, reduction="none")[1].backward()
    assert z2.grad is not None
    torch.testing.assert_close(z2.grad[1], -w[1] * z1[1] / 0.1)


def _values_and_grads(
    f: Callable[..., torch.Tensor], *xs: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    leaves = [x.clone().requires_grad_() for x in xs]
    out = f(*leaves)
    (out * torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype)).sum().backward()
    return out.detach(), [leaf.grad for leaf in leaves if leaf.grad is not None]


@pytest.mark.parametrize("loss", [dcl, dclw])
@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked(loss: Callable[..., torch.Tensor], chunk: int) -> None:
    z1, z2 = _randn(7, 4, seed=20), _randn(7, 4, seed=21)
    ref_v, ref_g = _values_and_grads(lambda a, b: loss(a, b, reduction="none"), z1, z2)
    v, g = _values_and_grads(lambda a, b: loss(a, b, reduction="none", chunk_size=chunk), z1, z2)
    torch.testing.assert_close(v, ref_v)
    assert len(g) == 2
    for g1, g2 in zip(g, ref_g, strict=True):
        torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype: torch.dtype) -> None:
    z1, z2 = _randn(6, 8, seed=22, dtype=dtype), _randn(6, 8, seed=23, dtype=dtype)
    for f in (dcl, dclw):
        out = f(z1, z2)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, f(z1.float(), z2.float()))


def test_modules_match_functions_and_repr_pickle() -> None:
    z1, z2 = _randn(5, 4, seed=24), _randn(5, 4, seed=25)
    m = DCLLoss(temperature=0.2, reduction="none")
    torch.testing.assert_close(m(z1, z2), dcl(z1, z2, temperature=0.2, reduction="none"))
    assert "temperature=0.2" in repr(m)
    w = DCLWLoss(sigma=0.7, detach_weights=True, chunk_size=3)
    torch.testing.assert_close(w(z1, z2), dclw(z1, z2, sigma=0.7, detach_weights=True))
    assert "sigma=0.7" in repr(w) and "detach_weights=True" in repr(w)
    torch.testing.assert_close(pickle.loads(pickle.dumps(w))(z1, z2), w(z1, z2))


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(2, 5),
    d=st.integers(1, 4),
    chunk=st.one_of(st.none(), st.integers(1, 10)),
    seed=st.integers(0, 2**16),
)
def test_shapes_hypothesis(b: int, d: int, chunk: int | None, seed: int) -> None:
    z1, z2 = _randn(b, d, seed=seed), _randn(b, d, seed=seed + 1)
    got = dcl(z1, z2, reduction="none", chunk_size=chunk)
    assert got.shape == (2 * b,)
    torch.testing.assert_close(got, _t(naive_dcl_rows(z1, z2, 0.1)))
    gw = dclw(z1, z2, reduction="none", chunk_size=chunk)
    torch.testing.assert_close(gw, _t(naive_dcl_rows(z1, z2, 0.1, sigma=0.5)))


# ------------------------------------------------------------------------------------------
# 4. errors
# ------------------------------------------------------------------------------------------


def test_errors_tensors() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(TypeError, match=r"dcl: z1 must be a torch.Tensor; got ndarray"):
        dcl(x.numpy(), x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"dclw: z2 must be a floating-point tensor"):
        dclw(x, torch.ones(4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"dcl: z1 must have shape \(B, D\); got \(2, 4, 3\)"):
        dcl(torch.randn(2, 4, 3), x)
    with pytest.raises(ValueError, match=r"dcl: z2 must have shape \(B, D\) matching z1 \(4, 3\)"):
        dcl(x, torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"dclw: z2 must have shape \(B, D\) matching z1"):
        dclw(x, torch.randn(4, 5))
    with pytest.raises(TypeError, match=r"dcl: z2 has dtype torch.float16 but z1 has"):
        dcl(x, x.half())
    with pytest.raises(ValueError, match=r"dcl: z2 is on meta but z1 is on cpu"):
        dcl(x, torch.empty(4, 3, device="meta"))
    with pytest.raises(ValueError, match=r"dclw: z1 must have at least 2 rows \(B >= 2\)"):
        dclw(torch.randn(1, 3), torch.randn(1, 3))


def test_errors_hyperparameters() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"dcl: temperature must be > 0; got 0.0"):
        dcl(x, x, temperature=0.0)
    with pytest.raises(ValueError, match=r"dclw: temperature must be > 0"):
        dclw(x, x, temperature=-0.1)
    with pytest.raises(ValueError, match=r"dclw: sigma must be > 0; got 0"):
        dclw(x, x, sigma=0)
    with pytest.raises(ValueError, match=r"dclw: sigma must be finite"):
        dclw(x, x, sigma=float("inf"))
    with pytest.raises(TypeError, match=r"dclw: detach_weights must be a bool"):
        dclw(x, x, detach_weights="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dcl: reduction must be one of"):
        dcl(x, x, reduction="batchmean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dcl: chunk_size must be >= 1"):
        dcl(x, x, chunk_size=0)
    with pytest.raises(TypeError, match=r"dcl: normalize must be a bool"):
        dcl(x, x, normalize=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"DCLLoss: temperature must be > 0"):
        DCLLoss(temperature=0)
    with pytest.raises(ValueError, match=r"DCLWLoss: sigma must be > 0"):
        DCLWLoss(sigma=-1.0)
    with pytest.raises(TypeError, match=r"DCLWLoss: detach_weights must be a bool"):
        DCLWLoss(detach_weights=1)  # type: ignore[arg-type]
