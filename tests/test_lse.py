"""posneg._lse: the row log-sum-exp autograd behind the InfoNCE family.

Four groups: the Function against a naive float64 log-sum-exp (values, gradients, gradcheck,
double backward); every objective switched to it against a naive float64 loop of its formula
(values and gradients, through both backward routes: the uniform-gradient one of "mean"/"sum"
and the recomputing one of "none" with arbitrary row weights); memory (nothing of size B x M is
saved for backward); errors.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from posneg._lse import row_logsumexp, row_logsumexp_scales
from posneg._types import Reduction
from posneg.losses.dcl import dcl, dclw
from posneg.losses.hcl import hcl, hcl_cross_modal
from posneg.losses.info_nce import info_nce, nt_xent
from posneg.losses.supcon import supcon

F64 = torch.float64


def _randn(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64)


def _naive_lse(
    q: torch.Tensor, k: torch.Tensor, c: float, offsets: tuple[int, ...]
) -> torch.Tensor:
    """Row by row, column by column: log sum_{j not excluded} exp(c <q_i, k_j>)."""
    m = k.shape[0]
    out = []
    for i in range(q.shape[0]):
        excluded = {(i + o) % m for o in offsets}
        terms = [c * (q[i] * k[j]).sum() for j in range(m) if j not in excluded]
        out.append(torch.logsumexp(torch.stack(terms), dim=0) if terms else q.new_tensor(-math.inf))
    return torch.stack(out)


# --------------------------------------------------------------------------------------------
# the Function
# --------------------------------------------------------------------------------------------

CASES = [((), (1.0,)), ((0,), (2.5,)), ((0, 3), (1.5, 0.5)), ((0,), (1.0, 0.0)), ((1,), (-0.7,))]


@pytest.mark.parametrize(("offsets", "scales"), CASES)
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_values_and_gradients_equal_the_naive_float64_loop(
    offsets: tuple[int, ...], scales: tuple[float, ...], chunk_size: int | None
) -> None:
    q = _randn(7, 3, seed=0).requires_grad_(True)
    k = _randn(6, 3, seed=1).requires_grad_(True)
    out = row_logsumexp_scales(q, k, scales=scales, exclude_offsets=offsets, chunk_size=chunk_size)
    ref = torch.stack([_naive_lse(q, k, c, offsets) for c in scales])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grad = _randn(len(scales), 7, seed=2)  # not all ones, with a zero and negative entries
    grad[0, 2] = 0.0
    got = torch.autograd.grad(out, (q, k), grad)
    want = torch.autograd.grad(ref, (q, k), grad)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("offsets", "scales"), CASES)
def test_gradcheck_float64(offsets: tuple[int, ...], scales: tuple[float, ...]) -> None:
    q = _randn(5, 3, seed=3).requires_grad_(True)
    k = _randn(6, 3, seed=4).requires_grad_(True)
    w = _randn(len(scales), 5, seed=5)  # grad_lse not all ones: weight the outputs

    def f(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        out = row_logsumexp_scales(q, k, scales=scales, exclude_offsets=offsets, chunk_size=2)
        return out * w

    assert torch.autograd.gradcheck(f, (q, k))
    assert torch.autograd.gradgradcheck(f, (q, k))


@pytest.mark.parametrize("offsets", [(), (0,), (0, 3)])
def test_gradcheck_self_similarity(offsets: tuple[int, ...]) -> None:
    """q is k (NT-Xent's z against z): both gradients reach the one tensor."""
    z = _randn(6, 3, seed=6).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: row_logsumexp(z, z, scale=2.0, exclude_offsets=offsets, chunk_size=4), (z,)
    )
    assert torch.autograd.gradcheck(
        lambda z: row_logsumexp(z, z, scale=2.0, exclude_offsets=offsets, uniform_grad=True), (z,)
    )


@pytest.mark.parametrize("offsets", [(), (0,), (0, 3)])
def test_uniform_grad_hint_changes_nothing(offsets: tuple[int, ...]) -> None:
    """The hint's forward-formed gradient equals the recomputed one, uniform or not."""
    q = _randn(7, 4, seed=7).requires_grad_(True)
    k = _randn(6, 4, seed=8).requires_grad_(True)
    ref = _naive_lse(q, k, 3.0, offsets)
    for grad in (torch.full((7,), 0.25, dtype=F64), _randn(7, seed=9)):
        out = row_logsumexp(q, k, scale=3.0, exclude_offsets=offsets, uniform_grad=True)
        got = torch.autograd.grad(out, (q, k), grad)
        want = torch.autograd.grad(ref, (q, k), grad, retain_graph=True)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_every_column_excluded_gives_minus_inf_and_no_gradient() -> None:
    q = _randn(3, 2, seed=10).requires_grad_(True)
    k = _randn(2, 2, seed=11).requires_grad_(True)
    out = row_logsumexp(q, k, exclude_offsets=(0, 1))
    assert torch.isneginf(out).all()
    dq, dk = torch.autograd.grad(out.sum(), (q, k))
    assert (dq == 0).all() and (dk == 0).all()


def test_scale_zero_is_log_of_the_candidate_count() -> None:
    q, k = _randn(4, 3, seed=12), _randn(9, 3, seed=13)
    out = row_logsumexp_scales(q, k, scales=(0.0,), exclude_offsets=(0, 2))
    torch.testing.assert_close(out[0], torch.full((4,), math.log(7), dtype=F64))


def test_large_scores_do_not_overflow() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]]) * 100.0
    out = row_logsumexp(q, q, scale=50.0)
    ref = torch.logsumexp(50.0 * q @ q.T, dim=1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_run_in_float32(dtype: torch.dtype) -> None:
    q = _randn(5, 4, seed=14).to(dtype)
    out = row_logsumexp(q, q, scale=2.0, exclude_offsets=(0,))
    assert out.dtype == torch.float32
    ref = _naive_lse(q.double(), q.double(), 2.0, (0,))
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# memory: nothing of size B x M is kept for backward
# --------------------------------------------------------------------------------------------


def test_the_function_saves_no_score_sized_tensor() -> None:
    b, m, d = 64, 48, 4
    q = _randn(b, d, seed=15).requires_grad_(True)
    k = _randn(m, d, seed=16).requires_grad_(True)
    for uniform in (False, True):
        out = row_logsumexp(q, k, scale=2.0, exclude_offsets=(0,), uniform_grad=uniform)
        node: Any = out.grad_fn
        saved = node.next_functions[0][0].saved_tensors  # the _RowLSE node under the [0]
        assert len(saved) == (5 if uniform else 3)
        assert max(t.numel() for t in saved) <= max(b, m) * d
    # keep the output alive: the node saves it, and torch < 2.7 frees a saved output with it
    out2 = row_logsumexp_scales(q, k, scales=(1.5, 0.5))
    node = out2.grad_fn
    assert len(node.saved_tensors) == 3
    assert max(t.numel() for t in node.saved_tensors) <= max(b, m) * d


def _saved_sizes(fn: object) -> list[int]:
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()  # type: ignore[operator]
    return sizes


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_the_objectives_save_no_score_sized_tensor(reduction: Reduction) -> None:
    """Every tensor any node of the loss's graph saves is O(B * D), never (2B) x (2B)."""
    b, d = 40, 4
    z1 = _randn(b, d, seed=17).requires_grad_(True)
    z2 = _randn(b, d, seed=18).requires_grad_(True)
    y = torch.arange(2 * b) % 7
    losses = [
        lambda: nt_xent(z1, z2, reduction=reduction),
        lambda: info_nce(z1, z2, symmetric=True, reduction=reduction),
        lambda: dcl(z1, z2, reduction=reduction),
        lambda: dclw(z1, z2, reduction=reduction),
        lambda: hcl(z1, z2, reduction=reduction),
        lambda: hcl(z1, z2, estimator="easy", reduction=reduction),
        lambda: hcl_cross_modal(z1, z2, reduction=reduction),
        lambda: supcon(torch.cat([z1, z2]), y, reduction=reduction),
    ]
    for loss in losses:
        sizes = _saved_sizes(loss)
        assert sizes and max(sizes) <= 2 * b * d, max(sizes)


# --------------------------------------------------------------------------------------------
# the objectives switched to the Function, against naive float64 loops of their formulas
# --------------------------------------------------------------------------------------------


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def _naive_two_view(z1: torch.Tensor, z2: torch.Tensor, t: float, row) -> torch.Tensor:  # type: ignore[no-untyped-def]
    z = _unit(torch.cat([z1, z2]))
    n = z1.shape[0]
    out = []
    for r in range(2 * n):
        p = (r + n) % (2 * n)
        s = [(z[r] * z[c]).sum() / t for c in range(2 * n)]
        negs = torch.stack([s[c] for c in range(2 * n) if c not in (r, p)])
        out.append(row(r, s[p], negs, torch.stack([s[c] for c in range(2 * n) if c != r])))
    return torch.stack(out)


def _naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    return _naive_two_view(z1, z2, t, lambda r, pos, negs, all_: torch.logsumexp(all_, 0) - pos)


def _naive_dcl(
    z1: torch.Tensor, z2: torch.Tensor, t: float, w: torch.Tensor | None
) -> torch.Tensor:
    n = z1.shape[0]
    return _naive_two_view(
        z1,
        z2,
        t,
        lambda r, pos, negs, all_: (
            torch.logsumexp(negs, 0) - (1.0 if w is None else w[r % n]) * pos
        ),
    )


def _naive_hcl_row(pos, negs, t, beta, tau_plus, n_prior):  # type: ignore[no-untyped-def]
    """HCL's estimator as joshr17/HCL image/main.py writes it (exp, no shift)."""
    neg = torch.exp(negs)
    imp = torch.exp(beta * negs)
    reweight = (imp * neg).sum() / imp.mean()
    ng = (-tau_plus * n_prior * torch.exp(pos) + reweight) / (1.0 - tau_plus)
    ng = torch.clamp(ng, min=n_prior * math.exp(-1.0 / t))
    return -torch.log(torch.exp(pos) / (torch.exp(pos) + ng))


def _naive_info_nce(q, k, negs, t):  # type: ignore[no-untyped-def]
    q, k = _unit(q), _unit(k)
    cands = k if negs is None else torch.cat([k, _unit(negs)])
    out = []
    for i in range(q.shape[0]):
        s = torch.stack([(q[i] * c).sum() / t for c in cands])
        out.append(torch.logsumexp(s, 0) - s[i])
    return torch.stack(out)


def _naive_supcon(z: torch.Tensor, y: torch.Tensor, t: float) -> torch.Tensor:
    z = _unit(z)
    out = []
    for i in range(z.shape[0]):
        s = [(z[i] * z[a]).sum() / t for a in range(z.shape[0])]
        denom = torch.logsumexp(torch.stack([s[a] for a in range(z.shape[0]) if a != i]), 0)
        pos = [s[p] for p in range(z.shape[0]) if p != i and y[p] == y[i]]
        out.append(denom - torch.stack(pos).mean() if pos else z.new_tensor(float("nan")))
    return torch.stack(out)


def _check(loss_fn, naive_fn, leaves: list[torch.Tensor], reduction: str) -> None:  # type: ignore[no-untyped-def]
    """Values and gradients of loss_fn(reduction) against naive_fn() per row (float64)."""
    rows = naive_fn()
    valid = ~rows.isnan()
    got = loss_fn(reduction)
    if reduction == "none":
        w = _randn(rows.shape[0], seed=99)  # arbitrary row weights: the recomputing backward
        torch.testing.assert_close(got[valid], rows[valid], rtol=1e-10, atol=1e-10)
        got, want = (got[valid] * w[valid]).sum(), (rows[valid] * w[valid]).sum()
    else:
        want = rows[valid].mean()
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for a, b in zip(
        torch.autograd.grad(got, leaves), torch.autograd.grad(want, leaves), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_objectives_equal_naive_float64_loops(reduction: str) -> None:
    b, d = 5, 3
    z1 = _randn(b, d, seed=20).requires_grad_(True)
    z2 = _randn(b, d, seed=21).requires_grad_(True)
    negs = _randn(4, d, seed=22).requires_grad_(True)
    leaves = [z1, z2]
    cs = 3  # chunk_size: several tiles

    _check(
        lambda r: nt_xent(z1, z2, temperature=0.5, reduction=r, chunk_size=cs),
        lambda: _naive_nt_xent(z1, z2, 0.5),
        leaves,
        reduction,
    )
    _check(
        lambda r: info_nce(z1, z2, negatives=negs, temperature=0.2, reduction=r, chunk_size=cs),
        lambda: _naive_info_nce(z1, z2, negs, 0.2),
        [z1, z2, negs],
        reduction,
    )
    _check(
        lambda r: info_nce(z1, z2, temperature=0.2, symmetric=True, reduction=r),
        lambda: 0.5 * (_naive_info_nce(z1, z2, None, 0.2) + _naive_info_nce(z2, z1, None, 0.2)),
        leaves,
        reduction,
    )
    _check(
        lambda r: dcl(z1, z2, temperature=0.1, reduction=r, chunk_size=cs),
        lambda: _naive_dcl(z1, z2, 0.1, None),
        leaves,
        reduction,
    )

    def dclw_naive() -> torch.Tensor:
        s = (_unit(z1) * _unit(z2)).sum(1)
        return _naive_dcl(z1, z2, 0.1, 2.0 - b * torch.softmax(s / 0.5, dim=0))

    _check(
        lambda r: dclw(z1, z2, temperature=0.1, sigma=0.5, reduction=r, chunk_size=cs),
        dclw_naive,
        leaves,
        reduction,
    )
    for beta, tau_plus in ((1.0, 0.1), (0.5, 0.0), (0.0, 0.2)):
        _check(
            lambda r, beta=beta, tau_plus=tau_plus: hcl(
                z1, z2, temperature=0.5, beta=beta, tau_plus=tau_plus, reduction=r, chunk_size=cs
            ),
            lambda beta=beta, tau_plus=tau_plus: _naive_two_view(
                z1,
                z2,
                0.5,
                lambda r, pos, negs, all_: _naive_hcl_row(
                    pos, negs, 0.5, beta, tau_plus, 2 * b - 2
                ),
            ),
            leaves,
            reduction,
        )
    _check(
        lambda r: hcl(z1, z2, temperature=0.5, estimator="easy", reduction=r),
        lambda: _naive_nt_xent(z1, z2, 0.5),
        leaves,
        reduction,
    )

    def cross_naive() -> torch.Tensor:
        a, c = _unit(z1), _unit(z2)
        out = []
        for x, y in ((a, c), (c, a)):
            rows = []
            for i in range(b):
                s = torch.stack([(x[i] * y[j]).sum() / 0.1 for j in range(b)])
                negs_i = torch.cat([s[:i], s[i + 1 :]])
                rows.append(_naive_hcl_row(s[i], negs_i, 0.1, 1.0, 0.1, b - 1))
            out.append(torch.stack(rows))
        return 0.5 * (out[0] + out[1])

    _check(
        lambda r: hcl_cross_modal(z1, z2, temperature=0.1, reduction=r, chunk_size=2),
        cross_naive,
        leaves,
        reduction,
    )
    z = torch.cat([z1, z2])
    for y in (
        torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 0]),
        torch.tensor([0, 0, 1, 1, 2, 3, 4, 5, 6, 7]),
    ):
        _check(
            lambda r, y=y: supcon(z, y, temperature=0.1, reduction=r, chunk_size=cs),
            lambda y=y: _naive_supcon(z, y, 0.1),
            leaves,
            reduction,
        )


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_errors() -> None:
    q, k = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(TypeError, match=r"row_logsumexp: q must be a torch\.Tensor"):
        row_logsumexp([[1.0]], k)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="row_logsumexp: k must be a floating-point tensor"):
        row_logsumexp(q, torch.ones(5, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="row_logsumexp: k has dtype"):
        row_logsumexp(q, k.double())
    with pytest.raises(ValueError, match=r"row_logsumexp: q must have shape \(B, D\)"):
        row_logsumexp(torch.randn(4), k)
    with pytest.raises(ValueError, match="row_logsumexp: k must have"):
        row_logsumexp(q, torch.randn(5, 2))
    with pytest.raises(ValueError, match="row_logsumexp: scale must be finite"):
        row_logsumexp(q, k, scale=float("inf"))
    with pytest.raises(TypeError, match="row_logsumexp: scale must be a real number"):
        row_logsumexp(q, k, scale=True)
    with pytest.raises(TypeError, match="row_logsumexp: exclude_offsets must be a tuple of ints"):
        row_logsumexp(q, k, exclude_offsets=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"row_logsumexp: exclude_offsets\[\] must be an int"):
        row_logsumexp(q, k, exclude_offsets=(0.5,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="row_logsumexp: chunk_size must be"):
        row_logsumexp(q, k, chunk_size=0)
    with pytest.raises(TypeError, match="row_logsumexp: uniform_grad must be a bool"):
        row_logsumexp(q, k, uniform_grad=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="row_logsumexp_scales: scales must hold at least one"):
        row_logsumexp_scales(q, k, scales=())
    with pytest.raises(TypeError, match="row_logsumexp_scales: scales must be a tuple"):
        row_logsumexp_scales(q, k, scales=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"row_logsumexp_scales: scales\[\] must be finite"):
        row_logsumexp_scales(q, k, scales=(1.0, float("nan")))


# --------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU): the dispatched path (Triton where usable) against float64
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("offsets", [(), (0,), (0, 96)])
def test_cuda_matches_cpu_float64(offsets: tuple[int, ...]) -> None:
    q64, k64 = _unit(_randn(192, 32, seed=30)), _unit(_randn(192, 32, seed=31))
    q = q64.float().cuda().requires_grad_(True)
    k = k64.float().cuda().requires_grad_(True)
    g = _randn(192, seed=32)
    out = row_logsumexp(q, k, scale=10.0, exclude_offsets=offsets)
    dq, dk = torch.autograd.grad(out, (q, k), g.float().cuda())
    q64.requires_grad_(True)
    k64.requires_grad_(True)
    ref = row_logsumexp(q64, k64, scale=10.0, exclude_offsets=offsets)
    rq, rk = torch.autograd.grad(ref, (q64, k64), g)
    torch.testing.assert_close(out.double().cpu(), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dq.double().cpu(), rq, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(dk.double().cpu(), rk, rtol=1e-3, atol=1e-4)


def test_kernel_branch_keeps_a_float32_lse_for_half_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Triton branch (stood in by the torch reference of the same pair) returns float32 lse
    for bfloat16 inputs, like the torch path, and its gradients match the torch path's."""
    from posneg import _lse
    from posneg._kernels import reference

    class _Stand:
        row_lse_forward = staticmethod(reference.row_lse_forward_torch)
        row_lse_backward = staticmethod(reference.row_lse_backward_torch)

    g = torch.Generator().manual_seed(0)
    q0 = torch.randn(9, 5, generator=g).bfloat16()
    k0 = torch.randn(9, 5, generator=g).bfloat16()
    w = torch.randn(9, generator=g)

    def run(stand: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        monkeypatch.setattr(
            _lse, "_kernels", (lambda q, k, n: _Stand) if stand else (lambda q, k, n: None)
        )
        q, k = q0.clone().requires_grad_(), k0.clone().requires_grad_()
        out = row_logsumexp(q, k, scale=3.0, exclude_offsets=(0,))
        (out * w).sum().backward()
        assert q.grad is not None and k.grad is not None
        return out, q.grad, k.grad

    out_k, dq_k, dk_k = run(True)
    out_t, dq_t, dk_t = run(False)
    assert out_k.dtype == out_t.dtype == torch.float32
    torch.testing.assert_close(out_k, out_t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dq_k.float(), dq_t.float(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(dk_k.float(), dk_t.float(), atol=2e-2, rtol=2e-2)
