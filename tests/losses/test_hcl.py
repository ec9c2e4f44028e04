"""HCL and cross-modal HCL: formula loops, pytorch-metric-learning, properties, errors."""

from __future__ import annotations

import itertools
import math
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.losses import NTXentLoss as PMLNTXentLoss

from posneg.losses import CrossModalHCLLoss, HCLLoss, hcl, hcl_cross_modal, info_nce, nt_xent
from posneg.losses.hcl import NumNegatives

F64 = torch.float64


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([r / math.sqrt(float((r * r).sum())) for r in x])


def _dot(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(sum(float(a) * float(b) for a, b in zip(u, v, strict=True)))


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def naive_hcl_anchor(
    s_pos: float, s_negs: list[float], t: float, beta: float, tau_plus: float, n_prior: int
) -> float:
    """One anchor of Robinson et al. (with the official code's estimator and clamp).

    q_beta importance weights imp_j = exp(beta s_j / t) over the K listed negatives;
    E_q[exp(s/t)] = sum imp_j exp(s_j/t) / sum imp_j; reweighted sum = K * E_q;
    Ng = max((K E_q - tau_plus N pos) / (1 - tau_plus), N exp(-1/t)); L = -log(pos/(pos+Ng)).
    """
    k = len(s_negs)
    pos = math.exp(s_pos / t)
    imp = [math.exp(beta * s / t) for s in s_negs]
    e_q = sum(w * math.exp(s / t) for w, s in zip(imp, s_negs, strict=True)) / sum(imp)
    ng = (k * e_q - tau_plus * n_prior * pos) / (1 - tau_plus)
    ng = max(ng, n_prior * math.exp(-1 / t))
    return -math.log(pos / (pos + ng))


def naive_debiased_anchor(s_pos: float, s_negs: list[float], t: float, tau_plus: float) -> float:
    """Chuang et al. 2020 debiased contrastive loss (M = 1 positive), N = len(s_negs)."""
    n = len(s_negs)
    pos = math.exp(s_pos / t)
    ng = (-tau_plus * n * pos + sum(math.exp(s / t) for s in s_negs)) / (1 - tau_plus)
    ng = max(ng, n * math.exp(-1 / t))
    return -math.log(pos / (pos + ng))


def _two_view_sims(z1: torch.Tensor, z2: torch.Tensor) -> list[tuple[float, list[float]]]:
    """Per anchor of cat([z1, z2]) (normalised): (s_pos, [s over the 2B - 2 negatives])."""
    z = _unit(torch.cat([z1, z2]))
    n2 = z.shape[0]
    b = n2 // 2
    out = []
    for r in range(n2):
        p = (r + b) % n2
        out.append((_dot(z[r], z[p]), [_dot(z[r], z[c]) for c in range(n2) if c not in (r, p)]))
    return out


def naive_hcl_rows(
    z1: torch.Tensor, z2: torch.Tensor, t: float, beta: float, tau_plus: float
) -> list[float]:
    n_prior = 2 * z1.shape[0] - 2
    return [
        naive_hcl_anchor(sp, sn, t, beta, tau_plus, n_prior) for sp, sn in _two_view_sims(z1, z2)
    ]


def naive_cross_rows(
    a: torch.Tensor, b: torch.Tensor, t: float, beta: float, tau_plus: float, n_prior: int
) -> list[float]:
    """Per sample i: average of anchor a_i vs {b_j} and anchor b_i vs {a_j} (B - 1 negatives)."""
    a, b = _unit(a), _unit(b)
    n = a.shape[0]
    out = []
    for i in range(n):
        both = []
        for x, y in ((a, b), (b, a)):
            s_negs = [_dot(x[i], y[j]) for j in range(n) if j != i]
            both.append(naive_hcl_anchor(_dot(x[i], y[i]), s_negs, t, beta, tau_plus, n_prior))
        out.append(0.5 * (both[0] + both[1]))
    return out


# ------------------------------------------------------------------------------------------
# 1. formula
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("beta", "tau_plus", "t"), [(1.0, 0.1, 0.5), (2.5, 0.3, 0.2), (0.5, 0.0, 1.0)]
)
def test_hcl_matches_loop(beta: float, tau_plus: float, t: float) -> None:
    z1, z2 = _randn(4, 5, seed=1), _randn(4, 5, seed=2)
    expected = _t(naive_hcl_rows(z1, z2, t, beta, tau_plus))
    kw: dict[str, Any] = {"temperature": t, "beta": beta, "tau_plus": tau_plus}
    torch.testing.assert_close(hcl(z1, z2, reduction="none", **kw), expected)
    torch.testing.assert_close(hcl(z1, z2, **kw), expected.mean())
    torch.testing.assert_close(hcl(z1, z2, reduction="sum", **kw), expected.sum())


def test_hcl_beta_zero_is_debiased_contrastive_loss() -> None:
    z1, z2 = _randn(5, 3, seed=3), _randn(5, 3, seed=4)
    for tau_plus in (0.05, 0.2):
        expected = _t(
            [naive_debiased_anchor(sp, sn, 0.5, tau_plus) for sp, sn in _two_view_sims(z1, z2)]
        )
        got = hcl(z1, z2, beta=0.0, tau_plus=tau_plus, reduction="none")
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("num_negatives", ["corrected", "faithful"])
@pytest.mark.parametrize(("beta", "tau_plus"), [(1.0, 0.1), (3.0, 0.25)])
def test_cross_modal_matches_loop(
    num_negatives: NumNegatives, beta: float, tau_plus: float
) -> None:
    a, b = _randn(5, 4, seed=5), _randn(5, 4, seed=6)
    n_prior = 4 if num_negatives == "corrected" else 8
    expected = _t(naive_cross_rows(a, b, 0.1, beta, tau_plus, n_prior))
    got = hcl_cross_modal(
        a, b, beta=beta, tau_plus=tau_plus, num_negatives=num_negatives, reduction="none"
    )
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(
        hcl_cross_modal(a, b, beta=beta, tau_plus=tau_plus, num_negatives=num_negatives),
        expected.mean(),
    )


# ------------------------------------------------------------------------------------------
# 2. reference: beta = 0, tau_plus = 0 is pytorch-metric-learning's NT-Xent
# ------------------------------------------------------------------------------------------


def test_hcl_beta0_tau0_equals_pml_ntxent_value_and_gradient() -> None:
    base1, base2 = _randn(12, 16, seed=7), _randn(12, 16, seed=8)
    a1, a2 = base1.clone().requires_grad_(), base2.clone().requires_grad_()
    ours = hcl(a1, a2, temperature=0.2, beta=0.0, tau_plus=0.0)
    ours.backward()
    b1, b2 = base1.clone().requires_grad_(), base2.clone().requires_grad_()
    labels = torch.cat([torch.arange(12), torch.arange(12)])
    ref = PMLNTXentLoss(temperature=0.2)(torch.cat([b1, b2]), labels)
    ref.backward()
    torch.testing.assert_close(ours, ref)
    assert a1.grad is not None and b1.grad is not None
    torch.testing.assert_close(a1.grad, b1.grad)
    torch.testing.assert_close(a2.grad, b2.grad)


# ------------------------------------------------------------------------------------------
# 3. properties
# ------------------------------------------------------------------------------------------


def test_hcl_beta0_tau0_is_nt_xent_exactly() -> None:
    # Random unit vectors: the negative sum exceeds N exp(-1/t) (all-at-minus-one is the only
    # way to reach it), so the clamp is inactive.
    z1, z2 = _randn(6, 4, seed=9), _randn(6, 4, seed=10)
    for t in (0.1, 0.5):
        torch.testing.assert_close(
            hcl(z1, z2, temperature=t, beta=0.0, tau_plus=0.0, reduction="none"),
            nt_xent(z1, z2, temperature=t, reduction="none"),
        )


def test_hcl_easy_estimator_is_nt_xent() -> None:
    z1, z2 = _randn(5, 4, seed=11), _randn(5, 4, seed=12)
    torch.testing.assert_close(
        hcl(z1, z2, beta=3.0, tau_plus=0.4, estimator="easy", reduction="none"),
        nt_xent(z1, z2, reduction="none"),
    )


def test_hcl_clamp_closed_form_and_no_negative_gradient() -> None:
    # z1 = z2 = one-hot rows, t = 0.5: pos = e^2, every negative similarity 0 (rw = N), and
    # tau_plus = 0.9 drives the estimate below zero, so Ng is clamped to N e^{-2}.
    b, t = 4, 0.5
    n = 2 * b - 2
    eye = torch.eye(b, dtype=F64)
    z1 = eye.clone().requires_grad_()
    out = hcl(z1, eye, temperature=t, beta=1.0, tau_plus=0.9, normalize=False, reduction="none")
    expected = math.log(math.exp(1 / t) + n * math.exp(-1 / t)) - 1 / t
    torch.testing.assert_close(out, torch.full((2 * b,), expected, dtype=F64))
    # Clamped: the loss of anchor 0 no longer depends on its negatives.
    out[0].backward()
    assert z1.grad is not None
    torch.testing.assert_close(z1.grad[1:], torch.zeros(b - 1, b, dtype=F64))


def test_larger_beta_concentrates_gradient_on_hardest_negative() -> None:
    # normalize=False with unit rows: dL_0/dz_j = (dL_0/da_j) z_0 / t for every negative j of
    # anchor 0, so da_j can be read off the gradient. Share of the repelling gradient carried by
    # the most similar negative must grow with beta; at beta = 0 it is softmax(a)_hardest.
    b, t = 6, 0.5
    z1, z2 = _unit(_randn(b, 4, seed=13)), _unit(_randn(b, 4, seed=14))
    z = torch.cat([z1, z2])
    negs = [j for j in range(2 * b) if j not in (0, b)]
    sims = (z @ z[0])[negs]
    shares = []
    for beta in (0.0, 1.0, 3.0, 10.0):
        a, c = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        hcl(a, c, temperature=t, beta=beta, tau_plus=0.1, normalize=False, reduction="none")[
            0
        ].backward()
        assert a.grad is not None and c.grad is not None
        g = (t * torch.cat([a.grad, c.grad]) @ z[0])[negs]
        shares.append(float(g[sims.argmax()] / g.clamp(min=0).sum()))
    soft = torch.softmax(sims / t, dim=0)
    assert shares[0] == pytest.approx(float(soft.max()))
    assert all(x < y for x, y in itertools.pairwise(shares)), shares
    assert shares[-1] > 0.9


def test_cross_modal_symmetric_under_modality_swap() -> None:
    a, b = _randn(6, 5, seed=15), _randn(6, 5, seed=16)
    for nn in ("corrected", "faithful"):
        torch.testing.assert_close(
            hcl_cross_modal(a, b, num_negatives=nn, reduction="none"),
            hcl_cross_modal(b, a, num_negatives=nn, reduction="none"),
        )


def test_cross_modal_beta0_tau0_is_symmetric_info_nce() -> None:
    a, b = _randn(7, 5, seed=17), _randn(7, 5, seed=18)
    for nn in ("corrected", "faithful"):
        for red in ("none", "mean", "sum"):
            torch.testing.assert_close(
                hcl_cross_modal(
                    a, b, temperature=0.1, beta=0.0, tau_plus=0.0, num_negatives=nn, reduction=red
                ),
                info_nce(a, b, temperature=0.1, symmetric=True, reduction=red),
            )


def test_cross_modal_easy_is_cmc() -> None:
    a, b = _randn(5, 3, seed=19), _randn(5, 3, seed=20)
    torch.testing.assert_close(
        hcl_cross_modal(a, b, beta=2.0, tau_plus=0.5, estimator="easy", reduction="none"),
        info_nce(a, b, temperature=0.1, symmetric=True, reduction="none"),
    )


def test_cross_modal_n_choice_matters_only_with_debiasing() -> None:
    a, b = _randn(6, 4, seed=21), _randn(6, 4, seed=22)
    kw: dict[str, Any] = {"temperature": 0.5, "beta": 1.0}
    torch.testing.assert_close(
        hcl_cross_modal(a, b, tau_plus=0.0, num_negatives="corrected", **kw),
        hcl_cross_modal(a, b, tau_plus=0.0, num_negatives="faithful", **kw),
    )
    corrected = hcl_cross_modal(a, b, tau_plus=0.2, num_negatives="corrected", **kw)
    faithful = hcl_cross_modal(a, b, tau_plus=0.2, num_negatives="faithful", **kw)
    assert not torch.allclose(corrected, faithful)


def _values_and_grads(
    f: Callable[..., torch.Tensor], *xs: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    leaves = [x.clone().requires_grad_() for x in xs]
    out = f(*leaves)
    (out * torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype)).sum().backward()
    return out.detach(), [leaf.grad for leaf in leaves if leaf.grad is not None]


@pytest.mark.parametrize("loss", [hcl, hcl_cross_modal])
@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked(loss: Callable[..., torch.Tensor], chunk: int) -> None:
    z1, z2 = _randn(7, 4, seed=23), _randn(7, 4, seed=24)
    ref_v, ref_g = _values_and_grads(lambda a, b: loss(a, b, reduction="none"), z1, z2)
    v, g = _values_and_grads(lambda a, b: loss(a, b, reduction="none", chunk_size=chunk), z1, z2)
    torch.testing.assert_close(v, ref_v)
    assert len(g) == 2
    for g1, g2 in zip(g, ref_g, strict=True):
        torch.testing.assert_close(g1, g2)


def test_hcl_extreme_scores_stay_finite() -> None:
    # normalize=False with large norms: every sum runs as a shifted log-sum-exp.
    z1, z2 = (
        30.0 * _randn(5, 3, seed=25, dtype=torch.float32),
        30.0 * _randn(5, 3, seed=26, dtype=torch.float32),
    )
    for f in (hcl, hcl_cross_modal):
        out = f(z1, z2, temperature=0.05, beta=2.0, normalize=False, reduction="none")
        assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype: torch.dtype) -> None:
    z1, z2 = _randn(6, 8, seed=27, dtype=dtype), _randn(6, 8, seed=28, dtype=dtype)
    for f in (hcl, hcl_cross_modal):
        out = f(z1, z2)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, f(z1.float(), z2.float()))


def test_modules_match_functions_and_repr_pickle() -> None:
    z1, z2 = _randn(5, 4, seed=29), _randn(5, 4, seed=30)
    m = HCLLoss(beta=2.0, tau_plus=0.2, reduction="sum")
    torch.testing.assert_close(m(z1, z2), hcl(z1, z2, beta=2.0, tau_plus=0.2, reduction="sum"))
    assert "beta=2.0" in repr(m) and "tau_plus=0.2" in repr(m)
    c = CrossModalHCLLoss(num_negatives="faithful", chunk_size=2)
    torch.testing.assert_close(c(z1, z2), hcl_cross_modal(z1, z2, num_negatives="faithful"))
    assert "num_negatives='faithful'" in repr(c) and "estimator='hard'" in repr(c)
    torch.testing.assert_close(pickle.loads(pickle.dumps(c))(z1, z2), c(z1, z2))


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(2, 5),
    d=st.integers(1, 4),
    beta=st.floats(0.0, 4.0),
    tau_plus=st.floats(0.0, 0.5),
    chunk=st.one_of(st.none(), st.integers(1, 10)),
    seed=st.integers(0, 2**16),
)
def test_shapes_hypothesis(
    b: int, d: int, beta: float, tau_plus: float, chunk: int | None, seed: int
) -> None:
    z1, z2 = _randn(b, d, seed=seed), _randn(b, d, seed=seed + 1)
    got = hcl(z1, z2, beta=beta, tau_plus=tau_plus, reduction="none", chunk_size=chunk)
    assert got.shape == (2 * b,)
    torch.testing.assert_close(got, _t(naive_hcl_rows(z1, z2, 0.5, beta, tau_plus)))
    cm = hcl_cross_modal(z1, z2, beta=beta, tau_plus=tau_plus, reduction="none", chunk_size=chunk)
    assert cm.shape == (b,)
    torch.testing.assert_close(cm, _t(naive_cross_rows(z1, z2, 0.1, beta, tau_plus, b - 1)))


# ------------------------------------------------------------------------------------------
# 4. errors
# ------------------------------------------------------------------------------------------


def test_errors_tensors() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(TypeError, match=r"hcl: z1 must be a torch.Tensor; got float"):
        hcl(1.0, x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"hcl: z2 must be a floating-point tensor"):
        hcl(x, torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"hcl: z1 must have shape \(B, D\); got \(\)"):
        hcl(torch.tensor(1.0), x)
    with pytest.raises(ValueError, match=r"hcl: z2 must have shape \(B, D\) matching z1"):
        hcl(x, torch.randn(6, 3))
    with pytest.raises(ValueError, match=r"hcl_cross_modal: b must have shape \(B, D\) matching a"):
        hcl_cross_modal(x, torch.randn(4, 7))
    with pytest.raises(TypeError, match=r"hcl_cross_modal: b has dtype torch.float64 but a has"):
        hcl_cross_modal(x, x.double())
    with pytest.raises(ValueError, match=r"hcl_cross_modal: b is on meta but a is on cpu"):
        hcl_cross_modal(x, torch.empty(4, 3, device="meta"))
    with pytest.raises(ValueError, match=r"hcl: z1 must have at least 2 rows \(B >= 2\)"):
        hcl(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"hcl_cross_modal: a must have at least 2 rows"):
        hcl_cross_modal(torch.randn(1, 3), torch.randn(1, 3))


def test_errors_hyperparameters() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"hcl: temperature must be > 0; got 0"):
        hcl(x, x, temperature=0)
    with pytest.raises(ValueError, match=r"hcl_cross_modal: temperature must be > 0"):
        hcl_cross_modal(x, x, temperature=-2.0)
    with pytest.raises(ValueError, match=r"hcl: tau_plus must be in \[0.0, 1.0\); got 1.0"):
        hcl(x, x, tau_plus=1.0)
    with pytest.raises(ValueError, match=r"hcl_cross_modal: tau_plus must be in \[0.0, 1.0\)"):
        hcl_cross_modal(x, x, tau_plus=-0.1)
    with pytest.raises(ValueError, match=r"hcl: beta must be >= 0; got -1.0"):
        hcl(x, x, beta=-1.0)
    with pytest.raises(ValueError, match=r"hcl: estimator must be one of 'hard', 'easy'"):
        hcl(x, x, estimator="medium")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"num_negatives must be one of 'corrected', 'faithful'"):
        hcl_cross_modal(x, x, num_negatives="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"hcl: reduction must be one of"):
        hcl(x, x, reduction="mean ")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"hcl_cross_modal: chunk_size must be >= 1"):
        hcl_cross_modal(x, x, chunk_size=0)
    with pytest.raises(TypeError, match=r"hcl: beta must be a real number; got NoneType"):
        hcl(x, x, beta=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"HCLLoss: tau_plus must be in \[0.0, 1.0\)"):
        HCLLoss(tau_plus=2.0)
    with pytest.raises(ValueError, match=r"CrossModalHCLLoss: num_negatives must be one of"):
        CrossModalHCLLoss(num_negatives="B")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"CrossModalHCLLoss: beta must be >= 0"):
        CrossModalHCLLoss(beta=-0.5)


# --- official code transcribed: HCL criterion, HAR MM_HNL, the --anneal schedule ---------------


def official_hcl_criterion(
    out_1: torch.Tensor,
    out_2: torch.Tensor,
    tau_plus: float,
    beta: float,
    temperature: float,
    estimator: str = "hard",
) -> torch.Tensor:
    """Transcription of joshr17/HCL ``image/main.py::criterion`` (commit
    7b4647fac271c78a2a9d619fe3f2929ecfaf33df), float64; ``out_*`` already normalised."""
    b = out_1.shape[0]
    out = torch.cat([out_1, out_2], dim=0)
    neg = torch.exp(out @ out.T / temperature)
    mask = torch.ones((b, 2 * b), dtype=torch.bool)
    for i in range(b):
        mask[i, i] = False
        mask[i, i + b] = False
    mask = torch.cat((mask, mask), 0)
    neg = neg.masked_select(mask).view(2 * b, -1)
    pos = torch.exp((out_1 * out_2).sum(dim=-1) / temperature)
    pos = torch.cat([pos, pos], dim=0)
    if estimator == "hard":
        n = b * 2 - 2
        imp = (beta * neg.log()).exp()
        reweight_neg = (imp * neg).sum(dim=-1) / imp.mean(dim=-1)
        ng = (-tau_plus * n * pos + reweight_neg) / (1 - tau_plus)
        ng = torch.clamp(ng, min=n * math.e ** (-1 / temperature))
    else:
        ng = neg.sum(dim=-1)
    return (-torch.log(pos / (pos + ng))).mean()


def official_mm_hnl(
    features_1: torch.Tensor,
    features_2: torch.Tensor,
    *,
    temperature: float,
    tau_plus: float,
    beta: float,
    estimator: str = "hard",
    squeeze_positive: bool = False,
) -> torch.Tensor:
    """Transcription of hyeong96/Multimodal-Contrastive-Learning-HAR-with-HNS
    ``models/cmchnl.py::MM_HNL.get_CMCHNL_loss`` (commit
    bf2d088db4d50053f4770622939f5a4dea769105), float64.

    As written, ``pos`` is (2B, 1) and ``Ng`` (2B,), so the loss broadcasts to (2B, 2B) before
    the mean; ``squeeze_positive=True`` is the same code with ``pos`` squeezed to (2B,).
    """
    b = features_1.shape[0]
    f1 = torch.nn.functional.normalize(features_1, dim=1)
    f2 = torch.nn.functional.normalize(features_2, dim=1)
    sim = torch.exp(f1 @ f2.T / temperature)
    mask = torch.eye(b, dtype=torch.bool)
    pos = torch.cat([sim[mask].view(b, -1), sim[mask].view(b, -1)], dim=0)  # (2B, 1)
    if squeeze_positive:
        pos = pos.squeeze(1)
    neg = torch.cat([sim[~mask].view(b, -1), sim.T[~mask].view(b, -1)])  # (2B, B - 1)
    if estimator == "hard":
        n = b * 2 - 2
        imp = (beta * neg.log()).exp()
        reweight_neg = (imp * neg).sum(dim=-1) / imp.mean(dim=-1)
        ng = (-tau_plus * n * pos + reweight_neg) / (1 - tau_plus)
        ng = torch.clamp(ng, min=n * math.e ** (-1 / temperature))
    else:
        ng = neg.sum(dim=-1)
    return (-torch.log(pos / (pos + ng))).mean()


def _unit_pair(seed: int, b: int = 6, d: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(b, d, generator=g, dtype=torch.float64)
    z2 = z1 + 0.8 * torch.randn(b, d, generator=g, dtype=torch.float64)
    return (
        torch.nn.functional.normalize(z1, dim=1),
        torch.nn.functional.normalize(z2, dim=1),
    )


@pytest.mark.parametrize("estimator", ["hard", "easy"])
@pytest.mark.parametrize(("beta", "tau_plus"), [(1.0, 0.1), (0.5, 0.0), (2.0, 0.3)])
def test_hcl_equals_official_criterion(estimator: str, beta: float, tau_plus: float) -> None:
    z1, z2 = _unit_pair(0)
    expected = official_hcl_criterion(z1, z2, tau_plus, beta, 0.5, estimator)
    got = hcl(z1, z2, temperature=0.5, beta=beta, tau_plus=tau_plus, estimator=estimator)  # type: ignore[arg-type]
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("estimator", ["hard", "easy"])
@pytest.mark.parametrize("seed", [1, 2])
def test_cross_modal_faithful_is_official_with_positive_squeezed(estimator: str, seed: int) -> None:
    a, b = _unit_pair(seed)
    kw = {"temperature": 0.1, "tau_plus": 0.1, "beta": 1.0}
    squeezed = official_mm_hnl(a, b, estimator=estimator, squeeze_positive=True, **kw)
    ours = hcl_cross_modal(a, b, num_negatives="faithful", estimator=estimator, **kw)  # type: ignore[arg-type]
    torch.testing.assert_close(ours, squeezed)


def test_cross_modal_official_as_written_broadcasts_to_all_pairs() -> None:
    """The code as written averages -log(pos_i / (pos_i + Ng_j)) over all (i, j): posneg's
    per-anchor loss is its diagonal, a deliberate difference."""
    a, b = _unit_pair(3)
    kw = {"temperature": 0.1, "tau_plus": 0.1, "beta": 1.0}
    written = official_mm_hnl(a, b, **kw)
    ours = hcl_cross_modal(a, b, num_negatives="faithful", **kw)
    assert not torch.isclose(written, ours, rtol=1e-3)
    # the broadcast form, rebuilt from posneg's pieces: every positive against every Ng
    zb = 6
    sim = torch.exp(a @ b.T / 0.1)
    pos = torch.cat([sim.diagonal(), sim.diagonal()])
    mask = torch.eye(zb, dtype=torch.bool)
    neg = torch.cat([sim[~mask].view(zb, -1), sim.T[~mask].view(zb, -1)])
    n = 2 * zb - 2
    rw = (neg**2).sum(-1) / neg.mean(-1)  # beta = 1
    ng = ((-0.1 * n * pos[:, None] + rw[None, :]) / 0.9).clamp(min=n * math.exp(-10.0))
    torch.testing.assert_close(written, (-torch.log(pos[:, None] / (pos[:, None] + ng))).mean())
    # with pos equal for every anchor the broadcast changes nothing: a check of the transcription
    same = torch.nn.functional.normalize(torch.ones(4, 3, dtype=torch.float64), dim=1)
    other = same.clone()
    torch.testing.assert_close(
        official_mm_hnl(same, other, **kw),
        official_mm_hnl(same, other, squeeze_positive=True, **kw),
    )


def _official_anneal(epochs: int, beta: float, n_steps: int = 9) -> list[float]:
    """joshr17/HCL ``image/main.py`` (commit 7b4647f...): the beta each 1-based epoch trains
    with under ``--anneal down``; stops where the official ``next(betas)`` would raise."""
    import numpy as np

    betas = iter(np.linspace(beta, 0, n_steps))
    used = []
    for epoch in range(1, epochs + 1):
        used.append(float(beta))
        if epoch % int(epochs / n_steps) == 0:
            try:
                beta = next(betas)
            except StopIteration:  # the official loop crashes here (after its last epoch)
                break
    return used


@pytest.mark.parametrize(
    ("epochs", "beta"), [(400, 1.0), (100, 0.5), (18, 2.0), (9, 1.0), (27, 1.0)]
)
def test_beta_schedule_equals_official_anneal(epochs: int, beta: float) -> None:
    from posneg.losses.hcl import hcl_beta_schedule

    official = _official_anneal(epochs, beta)
    ours = [hcl_beta_schedule(e, epochs=epochs, beta=beta) for e in range(epochs)]
    assert len(official) == epochs
    for a, b in zip(ours, official, strict=True):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def test_beta_schedule_properties_and_deliberate_differences() -> None:
    from posneg.losses.hcl import hcl_beta_schedule

    values = [hcl_beta_schedule(e, epochs=400, beta=1.0) for e in range(400)]
    assert values[0] == 1.0 and values[87] == 1.0 and values[88] == 0.875
    assert values[395] == 0.125 and values[396] == 0.0 and values[-1] == 0.0
    assert all(x >= y for x, y in itertools.pairwise(values))  # monotone down
    # 10 epochs: every = 1; the official iterator runs out after the 9th update, here beta
    # stays at 0 (the official loop raises StopIteration after training its last epoch)
    assert [hcl_beta_schedule(e, epochs=10) for e in range(10)][-1] == 0.0
    assert _official_anneal(10, 1.0) == [hcl_beta_schedule(e, epochs=10) for e in range(10)]


def test_beta_schedule_errors() -> None:
    from posneg.losses.hcl import hcl_beta_schedule

    with pytest.raises(ValueError, match="hcl_beta_schedule: epochs must be >= 9"):
        hcl_beta_schedule(0, epochs=8)
    with pytest.raises(ValueError, match=r"hcl_beta_schedule: epoch must be < epochs=20"):
        hcl_beta_schedule(20, epochs=20)
    with pytest.raises(ValueError, match="hcl_beta_schedule: epoch must be >= 0"):
        hcl_beta_schedule(-1, epochs=20)
    with pytest.raises(ValueError, match="hcl_beta_schedule: beta must be >= 0"):
        hcl_beta_schedule(0, epochs=20, beta=-1.0)
    with pytest.raises(ValueError, match="hcl_beta_schedule: steps must be >= 2"):
        hcl_beta_schedule(0, epochs=20, steps=1)
    with pytest.raises(TypeError, match="hcl_beta_schedule: epoch must be an int"):
        hcl_beta_schedule(1.0, epochs=20)  # type: ignore[arg-type]
