"""Focal loss: formula loops, torch cross-entropy at gamma = 0, properties, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from posneg.losses import FocalLoss, focal

F64 = torch.float64


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _randint(high: int, *shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(high, shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------
# naive loops written from the equation FL(p_t) = -alpha_t (1 - p_t)^gamma log p_t
# ------------------------------------------------------------------------------------------


def naive_multiclass(
    z: torch.Tensor, t: torch.Tensor, gamma: float, alpha: list[float] | None, ignore: int | None
) -> tuple[list[float], float]:
    """Per-row losses (0 for ignored rows) and the weighted mean sum / sum alpha_t."""
    per, wsum = [], 0.0
    for i in range(z.shape[0]):
        if ignore is not None and int(t[i]) == ignore:
            per.append(0.0)
            continue
        row = z[i].tolist()
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        log_pt = row[int(t[i])] - lse
        a = 1.0 if alpha is None else alpha[int(t[i])]
        per.append(-a * (1.0 - math.exp(log_pt)) ** gamma * log_pt)
        wsum += a
    return per, sum(per) / wsum


def naive_binary(
    z: torch.Tensor, y: torch.Tensor, gamma: float, alpha: float | None
) -> list[float]:
    out = []
    for zi, yi in zip(z.tolist(), y.tolist(), strict=True):
        p = 1.0 / (1.0 + math.exp(-zi))
        pt = p if yi == 1 else 1.0 - p
        a = 1.0 if alpha is None else (alpha if yi == 1 else 1.0 - alpha)
        out.append(-a * (1.0 - pt) ** gamma * math.log(pt))
    return out


# ------------------------------------------------------------------------------------------
# formula
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [None, [0.2, 1.0, 3.0, 0.5]])
@pytest.mark.parametrize("ignore", [None, 2])
def test_multiclass_matches_loop(
    gamma: float, alpha: list[float] | None, ignore: int | None
) -> None:
    z = _randn(12, 4) * 2
    t = _randint(4, 12, seed=1)
    per, mean = naive_multiclass(z, t, gamma, alpha, ignore)
    kw = {"gamma": gamma, "alpha": alpha, "ignore_index": ignore}
    torch.testing.assert_close(
        focal(z, t, reduction="none", **kw), torch.tensor(per, dtype=F64), rtol=1e-10, atol=1e-12
    )
    assert float(focal(z, t, **kw)) == pytest.approx(mean, rel=1e-10)
    assert float(focal(z, t, reduction="sum", **kw)) == pytest.approx(sum(per), rel=1e-10)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.9])
def test_binary_matches_loop(gamma: float, alpha: float | None) -> None:
    z = _randn(15) * 3
    y = (_randn(15, seed=2) > 0.4).to(F64)
    per = naive_binary(z, y, gamma, alpha)
    got = focal(z, y, gamma=gamma, alpha=alpha, reduction="none")
    torch.testing.assert_close(got, torch.tensor(per, dtype=F64), rtol=1e-10, atol=1e-12)
    assert float(focal(z, y, gamma=gamma, alpha=alpha)) == pytest.approx(sum(per) / 15, rel=1e-10)


# ------------------------------------------------------------------------------------------
# reference: torch's cross-entropies at gamma = 0 (and torchvision when installed)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [None, 1])
def test_gamma_zero_equals_weighted_cross_entropy(
    reduction: str, weighted: bool, ignore: int | None
) -> None:
    z = _randn(20, 5)
    t = _randint(5, 20, seed=3)
    w = torch.tensor([0.5, 2.0, 1.0, 0.1, 3.0], dtype=F64) if weighted else None
    ref = F.cross_entropy(
        z, t, weight=w, ignore_index=-100 if ignore is None else ignore, reduction=reduction
    )
    got = focal(z, t, gamma=0.0, alpha=w, ignore_index=ignore, reduction=reduction)  # type: ignore[arg-type]
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_gamma_zero_equals_cross_entropy_for_token_tagging_layout() -> None:
    z = _randn(3, 7, 4)  # (B, T, C), classes last
    t = _randint(4, 3, 7, seed=4)
    ref = F.cross_entropy(z.permute(0, 2, 1), t, reduction="none")  # torch wants (B, C, T)
    torch.testing.assert_close(focal(z, t, gamma=0.0, reduction="none"), ref)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_binary_gamma_zero_equals_bce(reduction: str, alpha: float | None) -> None:
    z = _randn(30)
    y = (_randn(30, seed=5) > 0).to(F64)
    w = None if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    ref = F.binary_cross_entropy_with_logits(z, y, weight=w, reduction=reduction)
    got = focal(z, y, gamma=0.0, alpha=alpha, reduction=reduction)  # type: ignore[arg-type]
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_binary_matches_torchvision_when_installed() -> None:
    ops = pytest.importorskip("torchvision.ops")
    z = _randn(25) * 2
    y = (_randn(25, seed=6) > 0).to(F64)
    for alpha in (0.25, -1):
        ref = ops.sigmoid_focal_loss(z, y, alpha=alpha, gamma=2.0, reduction="mean")
        got = focal(z, y, gamma=2.0, alpha=None if alpha < 0 else alpha)
        torch.testing.assert_close(got, ref)


# ------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------


def test_focal_never_exceeds_cross_entropy_and_falls_with_gamma() -> None:
    z = _randn(40, 3) * 2
    t = _randint(3, 40, seed=7)
    ce = F.cross_entropy(z, t, reduction="none")
    prev = ce
    for gamma in (0.5, 1.0, 2.0, 5.0):
        cur = focal(z, t, gamma=gamma, reduction="none")
        assert bool((cur <= prev + 1e-15).all())
        prev = cur


def test_easy_examples_are_down_weighted_more_than_hard_ones() -> None:
    z = torch.tensor([[4.0, 0.0], [0.2, 0.0]], dtype=F64)  # easy and hard, both class 0
    t = torch.tensor([0, 0])
    ratio = focal(z, t, gamma=2.0, reduction="none") / F.cross_entropy(z, t, reduction="none")
    assert float(ratio[0]) < float(ratio[1]) < 1.0


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_saturated_logits_keep_gradients_finite(gamma: float) -> None:
    z = torch.tensor([[200.0, -200.0], [0.0, 1.0]], requires_grad=True)
    t = torch.tensor([0, 1])
    (g,) = torch.autograd.grad(focal(z, t, gamma=gamma), z)
    assert bool(torch.isfinite(g).all())
    zb = torch.tensor([120.0, -120.0, 0.5], requires_grad=True)
    (gb,) = torch.autograd.grad(focal(zb, torch.tensor([1.0, 0.0, 1.0]), gamma=gamma), zb)
    assert bool(torch.isfinite(gb).all())


def test_everything_ignored_gives_zero_with_graph() -> None:
    z = _randn(3, 2).requires_grad_(True)
    loss = focal(z, torch.full((3,), -1), ignore_index=-1)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert z.grad is not None and float(z.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype: torch.dtype) -> None:
    z = _randn(6, 3).to(dtype)
    t = _randint(3, 6)
    out = focal(z, t)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out))
    torch.testing.assert_close(out, focal(z.float(), t))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 12),
    c=st.integers(2, 6),
    gamma=st.floats(0.0, 4.0),
    seed=st.integers(0, 1000),
)
def test_multiclass_shapes_and_bounds(n: int, c: int, gamma: float, seed: int) -> None:
    z = _randn(n, c, seed=seed) * 3
    t = _randint(c, n, seed=seed + 1)
    none = focal(z, t, gamma=gamma, reduction="none")
    assert none.shape == (n,)
    ce = F.cross_entropy(z, t, reduction="none")
    assert bool((none >= 0).all()) and bool((none <= ce + 1e-12).all())
    torch.testing.assert_close(focal(z, t, gamma=gamma), none.mean())


def test_module_matches_function_moves_weights_and_repr() -> None:
    z = _randn(8, 3)
    t = _randint(3, 8)
    mod = FocalLoss(gamma=1.5, alpha=[0.2, 0.3, 0.5], ignore_index=2, reduction="sum")
    ref = focal(z, t, gamma=1.5, alpha=[0.2, 0.3, 0.5], ignore_index=2, reduction="sum")
    torch.testing.assert_close(mod(z, t), ref)
    assert mod.alpha_weights is not None and mod.alpha_weights.dtype == F64
    text = repr(mod)
    for part in ("gamma=1.5", "alpha=[0.2, 0.3, 0.5]", "ignore_index=2", "reduction='sum'"):
        assert part in text
    binary = FocalLoss(alpha=0.25)
    y = (_randn(8, seed=9) > 0).to(F64)
    torch.testing.assert_close(binary(z[:, 0], y), focal(z[:, 0], y, alpha=0.25))
    assert "alpha=0.25" in repr(binary)


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"gamma": -1.0}, ValueError, "focal: gamma must be >= 0"),
        ({"gamma": float("nan")}, ValueError, "focal: gamma must be finite"),
        ({"alpha": 1.5}, ValueError, r"focal: alpha must be in \[0.0, 1.0\]"),
        ({"alpha": "x"}, TypeError, "focal: alpha must be None, a float"),
        ({"alpha": [1.0]}, ValueError, "focal: alpha as a sequence needs one weight per class"),
        ({"alpha": [1.0, -2.0, 1.0]}, ValueError, "focal: alpha class weights must be finite"),
        ({"alpha": torch.ones(2, 2)}, ValueError, r"focal: alpha as a tensor must have shape"),
        ({"alpha": [1.0, 2.0]}, ValueError, r"focal: alpha must hold one weight per class \(3\)"),
        ({"alpha": 0.25}, ValueError, "focal: a scalar alpha is the binary alpha-balanced form"),
        ({"ignore_index": "x"}, TypeError, "focal: ignore_index must be an int or None"),
        ({"reduction": "avg"}, ValueError, "focal: reduction must be one of"),
    ],
)
def test_bad_hyperparameters(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        focal(_randn(4, 3), torch.tensor([0, 1, 2, 0]), **kwargs)


def test_bad_tensors() -> None:
    z = _randn(4, 3)
    with pytest.raises(TypeError, match="focal: input must be a floating-point tensor"):
        focal(torch.ones(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"focal: target must have shape \(4, 3\) \(binary\)"):
        focal(z, torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="focal: multi-class target must hold integer class"):
        focal(z, torch.zeros(4))
    with pytest.raises(ValueError, match="focal: multi-class input must have C >= 2"):
        focal(_randn(4, 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"focal: target class indices must be in \[0, 2\]"):
        focal(z, torch.tensor([0, 1, 5, 0]))
    with pytest.raises(ValueError, match=r"focal: binary target values must be in \[0, 1\]"):
        focal(_randn(3), torch.tensor([0.0, 3.0, 1.0]))
    with pytest.raises(ValueError, match="focal: binary input takes a scalar alpha"):
        focal(_randn(3), torch.ones(3), alpha=[0.5, 0.5])
    with pytest.raises(ValueError, match="focal: input contains NaN or inf"):
        focal(torch.tensor([[0.0, float("inf")]]), torch.tensor([0]))
    with pytest.raises(TypeError, match="focal: target must be a real tensor"):
        focal(_randn(2), torch.ones(2, dtype=torch.complex64))


def test_module_validates_in_init() -> None:
    with pytest.raises(ValueError, match="FocalLoss: gamma must be >= 0"):
        FocalLoss(gamma=-0.5)
    with pytest.raises(ValueError, match=r"FocalLoss: alpha must be in \[0.0, 1.0\]"):
        FocalLoss(alpha=2.0)
    with pytest.raises(ValueError, match="FocalLoss: reduction must be one of"):
        FocalLoss(reduction="x")  # type: ignore[arg-type]
