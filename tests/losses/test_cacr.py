"""CACR (Zheng et al., TMLR 2023): formula, card special cases, properties, errors.

No installed package implements CACR; the reference is the naive loop below, written from the
equations of the official small-scale code (``our_loss1`` / ``our_loss2``) as the card states them.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.losses.cacr import CACRLoss, cacr


def naive_cacr(
    views: torch.Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    t_pos: float = 1.0,
    t_neg: float = 0.9,
    tau_plus: float = 0.0,
    detach_weights: bool = False,
    normalize: bool = True,
) -> torch.Tensor:
    """Per-image CACR loss (B,), one scalar at a time in float64 (autograd-capable)."""
    z = views.to(torch.float64)
    if normalize:
        z = z / z.norm(dim=-1, keepdim=True)
    n_views, batch = z.shape[0], z.shape[1]

    def d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b) ** 2).sum()

    def weights(logits: list[torch.Tensor]) -> list[torch.Tensor]:
        ls = [lg.detach() if detach_weights else lg for lg in logits]
        m = max(float(lg.detach()) for lg in ls)  # a constant shift: no gradient
        e = [torch.exp(lg - m) for lg in ls]
        s = sum(e)
        return [x / s for x in e]

    per_image = []
    pairs = [(x, y) for x in range(n_views) for y in range(x + 1, n_views)]
    for i in range(batch):
        att = torch.zeros((), dtype=torch.float64)
        for v in range(n_views):
            ds = [d(z[v, i], z[k, i]) for k in range(n_views) if k != v]
            ws = weights([t_pos * di for di in ds])
            att = att + sum(w * alpha * di for w, di in zip(ws, ds, strict=True))
        att = att / n_views
        rep = torch.zeros((), dtype=torch.float64)
        for x, y in pairs:
            ds = [d(z[x, i], z[y, j]) for j in range(batch) if j != i]
            ws = weights([-t_neg * dj for dj in ds])
            term = sum(w * (-beta) * dj for w, dj in zip(ws, ds, strict=True))
            if tau_plus > 0:
                term = (-tau_plus * d(z[x, i], z[y, i]) + term) / (1 - tau_plus)
            rep = rep + term
        per_image.append(att + rep / len(pairs))
    return torch.stack(per_image)


def _views(v: int, b: int, d: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(v, b, d, generator=g, dtype=dtype)


# --- 1. formula ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("v", "hyper"),
    [
        (2, {}),
        (3, {"alpha": 0.5, "beta": 2.0, "t_pos": 0.8, "t_neg": 2.0}),
        (5, {"t_pos": 1.0, "t_neg": 0.9}),
        (4, {"t_neg": 2.0, "tau_plus": 0.1}),
    ],
)
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_matches_naive_formula(v: int, hyper: dict[str, float], chunk_size: int | None) -> None:
    views = _views(v, 6, 4, seed=v)
    expected = naive_cacr(views, **hyper)
    got = cacr(views, reduction="none", chunk_size=chunk_size, **hyper)  # type: ignore[arg-type]
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(cacr(views, **hyper), expected.mean())  # type: ignore[arg-type]
    torch.testing.assert_close(cacr(views, reduction="sum", **hyper), expected.sum())  # type: ignore[arg-type]


def test_matches_naive_without_normalisation() -> None:
    views = 0.4 * _views(3, 5, 3, seed=11)
    expected = naive_cacr(views, normalize=False, t_neg=2.0)
    torch.testing.assert_close(cacr(views, normalize=False, t_neg=2.0, reduction="none"), expected)


@pytest.mark.parametrize("detach", [False, True])
def test_gradients_match_naive_with_and_without_detached_weights(detach: bool) -> None:
    views = _views(3, 5, 4, seed=12)
    a = views.clone().requires_grad_(True)
    b = views.clone().requires_grad_(True)
    cacr(a, detach_weights=detach, t_neg=2.0, chunk_size=2).backward()
    naive_cacr(b, detach_weights=detach, t_neg=2.0).mean().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_detaching_changes_gradient_not_value() -> None:
    views = _views(3, 6, 4, seed=13)
    a = views.clone().requires_grad_(True)
    b = views.clone().requires_grad_(True)
    la, lb = cacr(a, detach_weights=False), cacr(b, detach_weights=True)
    torch.testing.assert_close(la, lb)
    la.backward()
    lb.backward()
    assert a.grad is not None and b.grad is not None
    assert not torch.allclose(a.grad, b.grad)


# --- 3. properties: the card's special cases and invariants ----------------------------------


@pytest.mark.parametrize("v", [2, 3, 5])
def test_zero_temperatures_give_uniform_means(v: int) -> None:
    # card test 1: t+ = t- = 0 (the code's choice='none') is mean pos cost - mean neg cost
    views = _views(v, 7, 5, seed=20 + v)
    z = views / views.norm(dim=-1, keepdim=True)
    pos = [((z[a] - z[b]) ** 2).sum(-1) for a in range(v) for b in range(v) if a != b]
    mean_pos = torch.cat(pos).mean()
    off = ~torch.eye(7, dtype=torch.bool)
    neg = [torch.cdist(z[x], z[y])[off] ** 2 for x in range(v) for y in range(x + 1, v)]
    mean_neg = torch.cat(neg).mean()
    got = cacr(views, t_pos=0.0, t_neg=0.0)
    torch.testing.assert_close(got, mean_pos - mean_neg)


def test_single_positive_view_has_unit_attraction_weights() -> None:
    # card test 2: M = 1 (two views): the attraction is alpha * ||z1_i - z2_i||^2 whatever t_pos
    views = _views(2, 6, 4, seed=30)
    z = views / views.norm(dim=-1, keepdim=True)
    dist = ((z[0] - z[1]) ** 2).sum(-1)
    for t_pos in (0.0, 1.0, 50.0):
        got = cacr(views, alpha=0.7, beta=0.0, t_pos=t_pos, reduction="none")
        torch.testing.assert_close(got, 0.7 * dist)


def test_large_negative_temperature_picks_nearest_negative() -> None:
    # card test 3: t- -> infinity concentrates the repulsion on the nearest negative
    views = _views(2, 8, 4, seed=31)
    z = views / views.norm(dim=-1, keepdim=True)
    dist = torch.cdist(z[0], z[1]) ** 2
    dist.fill_diagonal_(float("inf"))
    expected = -1.5 * dist.min(dim=1).values
    got = cacr(views, alpha=0.0, beta=1.5, t_neg=1e5, reduction="none")
    torch.testing.assert_close(got, expected)
    # a moderate t- lies between the uniform mean (-beta * mean d) and -beta * min d
    mid = cacr(views, alpha=0.0, beta=1.5, t_neg=2.0, reduction="none")
    uniform = cacr(views, alpha=0.0, beta=1.5, t_neg=0.0, reduction="none")
    assert bool((uniform < mid).all()) and bool((mid < expected).all())


def test_large_positive_temperature_picks_farthest_positive() -> None:
    views = _views(4, 5, 3, seed=32)
    z = views / views.norm(dim=-1, keepdim=True)
    d = torch.stack(
        [torch.stack([((z[a] - z[b]) ** 2).sum(-1) for b in range(4)]) for a in range(4)]
    )
    far = d.max(dim=1).values.mean(dim=0)  # (B,): mean over anchor views of the farthest view
    got = cacr(views, beta=0.0, t_pos=1e5, reduction="none")
    torch.testing.assert_close(got, far)


@settings(max_examples=20, deadline=None)
@given(
    v=st.integers(2, 4),
    b=st.integers(2, 7),
    d=st.integers(1, 4),
    chunk=st.integers(1, 8),
    seed=st.integers(0, 10_000),
)
def test_hypothesis_chunks_permutation_scale(v: int, b: int, d: int, chunk: int, seed: int) -> None:
    views = _views(v, b, d, seed=seed)
    full = cacr(views, reduction="none", t_neg=2.0)
    assert full.shape == (b,)
    torch.testing.assert_close(cacr(views, reduction="none", t_neg=2.0, chunk_size=chunk), full)
    perm = torch.randperm(b, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(cacr(views[:, perm], reduction="none", t_neg=2.0), full[perm])
    torch.testing.assert_close(cacr(2.5 * views, reduction="none", t_neg=2.0), full)


def test_identical_views_have_zero_attraction() -> None:
    base = _views(1, 6, 4, seed=40)
    views = base.expand(3, 6, 4)
    got = cacr(views, beta=0.0, reduction="none")
    torch.testing.assert_close(got, torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)


def test_half_inputs_compute_in_float32() -> None:
    views = _views(3, 6, 8, seed=41, dtype=torch.float32)
    for dt in (torch.float16, torch.bfloat16):
        out = cacr(views.to(dt))
        assert out.dtype == torch.float32 and torch.isfinite(out)
        torch.testing.assert_close(out, cacr(views.to(dt).float()))


def test_module_matches_function_and_pickles() -> None:
    views = _views(3, 5, 4, seed=42)
    m = CACRLoss(alpha=0.5, beta=2.0, t_pos=0.8, t_neg=0.7, tau_plus=0.05, detach_weights=True)
    ref = cacr(views, alpha=0.5, beta=2.0, t_pos=0.8, t_neg=0.7, tau_plus=0.05)
    torch.testing.assert_close(m(views), ref)
    torch.testing.assert_close(pickle.loads(pickle.dumps(m))(views), ref)
    r = repr(m)
    assert "t_neg=0.7" in r and "detach_weights=True" in r and "tau_plus=0.05" in r


# --- 4. errors -------------------------------------------------------------------------------


def test_errors_views() -> None:
    with pytest.raises(TypeError, match=r"cacr: views must be a torch\.Tensor"):
        cacr([[[1.0]]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cacr: views must be a floating-point tensor"):
        cacr(torch.ones(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"cacr: views must have shape \(V, B, D\); got \(3, 4\)"):
        cacr(torch.ones(3, 4))
    with pytest.raises(ValueError, match="cacr: views must hold V >= 2 views"):
        cacr(torch.ones(1, 3, 4))
    with pytest.raises(ValueError, match="cacr: views must hold B >= 2 images"):
        cacr(torch.ones(2, 1, 4))
    with pytest.raises(ValueError, match="cacr: views must have D >= 1"):
        cacr(torch.ones(2, 3, 0))
    bad = torch.randn(2, 3, 4)
    bad[1, 2, 0] = float("inf")
    with pytest.raises(ValueError, match="cacr: views contains NaN or inf"):
        cacr(bad)


@pytest.mark.parametrize("name", ["alpha", "beta", "t_pos", "t_neg"])
def test_errors_nonnegative_hyperparameters(name: str) -> None:
    views = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=f"cacr: {name} must be >= 0"):
        cacr(views, **{name: -0.1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=f"cacr: {name} must be a real number"):
        cacr(views, **{name: "1"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"CACRLoss: {name} must be >= 0"):
        CACRLoss(**{name: -1.0})  # type: ignore[arg-type]


def test_errors_other_hyperparameters() -> None:
    views = torch.randn(2, 3, 4)
    for tp in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"cacr: tau_plus must be in \[0.0, 1.0\)"):
            cacr(views, tau_plus=tp)
    with pytest.raises(ValueError, match="cacr: t_neg must be finite"):
        cacr(views, t_neg=float("inf"))
    with pytest.raises(ValueError, match="cacr: reduction must be one of"):
        cacr(views, reduction="mean_pairs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cacr: chunk_size must be >= 1"):
        cacr(views, chunk_size=-2)
    with pytest.raises(TypeError, match="cacr: normalize must be a bool"):
        cacr(views, normalize=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cacr: detach_weights must be a bool"):
        cacr(views, detach_weights=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"CACRLoss: tau_plus must be in \[0.0, 1.0\)"):
        CACRLoss(tau_plus=1.0)
    with pytest.raises(ValueError, match="CACRLoss: reduction must be one of"):
        CACRLoss(reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="CACRLoss: chunk_size must be >= 1"):
        CACRLoss(chunk_size=0)
    with pytest.raises(TypeError, match="CACRLoss: detach_weights must be a bool"):
        CACRLoss(detach_weights=1)  # type: ignore[arg-type]
