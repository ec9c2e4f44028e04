"""EPS-AD: the official score loop (ZSHsh98/EPS-AD @ cceb45d, eval_epsad.py
``detection_test_ensattack`` with --perb_image --single_vector_norm_flag; score_sde/models/utils.py
``get_score_fn``; utils_MMD.py ``MMDu``/``h1_mean_var_gram``/``MMD_batch``) re-run as naive
float64 loops, analytic Gaussian scores, limit cases and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from posneg.ood.eps_ad import (
    EPSAD,
    DeepKernel,
    deep_kernel,
    expected_perturbation_score,
    median_bandwidth,
    mmd2_and_variance,
    mmd_scores,
    noise_prediction_score,
    train_deep_kernel,
    vp_marginal,
)

F64 = torch.float64


def _a_sigma(t: float) -> tuple[float, float]:
    log_a = -0.25 * t * t * (20.0 - 0.1) - 0.5 * t * 0.1
    return math.exp(log_a), math.sqrt(1 - math.exp(2 * log_a))


def _gaussian_score(mu: float, s: float):  # type: ignore[no-untyped-def]
    """Score of p_t for data x' ~ N(mu, s² I): −(x_t − a mu)/(a² s² + σ²)."""

    def score(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, sig = vp_marginal(t)
        a = a.reshape(-1, *([1] * (x_t.dim() - 1)))
        sig = sig.reshape(-1, *([1] * (x_t.dim() - 1)))
        return -(x_t - a * mu) / (a * a * s * s + sig * sig)

    return score


def test_vp_marginal_matches_official_sigma_range() -> None:
    _, s1 = vp_marginal(torch.tensor([0.001], dtype=F64))
    _, s20 = vp_marginal(torch.tensor([0.020], dtype=F64))
    assert s1.item() == pytest.approx(0.0105, abs=1e-4)  # card: CIFAR σ from 0.0105 to 0.077
    assert s20.item() == pytest.approx(0.077, abs=5e-4)


def test_eps_matches_official_loop() -> None:
    x = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    score = _gaussian_score(0.2, 0.5)
    got = expected_perturbation_score(
        score, x, diffuse_t=4, generator=torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(5)
    xs = (2 * x - 1).flatten().tolist()
    total = [0.0] * len(xs)
    for k in range(1, 5):
        t = k / 1000
        a, sig = _a_sigma(t)
        z = torch.randn(x.shape, generator=g, dtype=F64).flatten().tolist()  # randn_like per t
        for i, v in enumerate(xs):
            xt = a * v + sig * z[i]
            total[i] += -(xt - a * 0.2) / (a * a * 0.25 + sig * sig)
    want = [v / 4 for v in total]
    assert got.flatten().tolist() == pytest.approx(want, rel=1e-10)


def test_eps_over_many_draws_matches_analytic_average() -> None:
    x = torch.full((4000, 1, 1, 1), 0.7, dtype=F64)
    eps = expected_perturbation_score(
        _gaussian_score(0.0, 0.3), x, diffuse_t=3, generator=torch.Generator().manual_seed(1)
    )
    xp = 2 * 0.7 - 1
    want = (
        sum(
            -_a_sigma(k / 1000)[0]
            * xp
            / (_a_sigma(k / 1000)[0] ** 2 * 0.09 + _a_sigma(k / 1000)[1] ** 2)
            for k in (1, 2, 3)
        )
        / 3
    )
    assert eps.mean().item() == pytest.approx(want, rel=0.02)


def test_single_level_is_the_score_at_t_0001() -> None:
    x = torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    score = _gaussian_score(0.1, 0.4)
    got = expected_perturbation_score(
        score, x, diffuse_t=1, generator=torch.Generator().manual_seed(3)
    )
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    a, sig = _a_sigma(0.001)
    t = torch.full((2,), 0.001, dtype=F64)
    assert torch.allclose(got, score(a * (2 * x - 1) + sig * z, t))
    clean = expected_perturbation_score(score, x, diffuse_t=1, perturb=False)
    assert torch.allclose(clean, score(2 * x - 1, t))


def test_noise_prediction_wrapper_is_get_score_fn() -> None:
    seen = {}

    def eps_model(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen["labels"] = labels
        return torch.ones_like(x)

    s = noise_prediction_score(eps_model)(
        torch.zeros(2, 1, 2, 2, dtype=F64), torch.tensor([0.01, 0.02], dtype=F64)
    )
    assert seen["labels"].tolist() == pytest.approx([9.99, 19.98])
    assert s[0].flatten().tolist() == pytest.approx([-1 / _a_sigma(0.01)[1]] * 4)


def _naive_kernel(a, b, fa, fb, sigma, sigma0, eps) -> float:  # type: ignore[no-untyped-def]
    d = sum((u - v) ** 2 for u, v in zip(a, b, strict=True))
    df = sum((u - v) ** 2 for u, v in zip(fa, fb, strict=True))
    return (1 - eps) * math.exp(-df / sigma0 - d / sigma) + eps * math.exp(-d / sigma)


def test_mmd_scores_equal_bruteforce_biased_mmd() -> None:
    g = torch.Generator().manual_seed(4)
    ref, test = torch.randn(6, 3, generator=g, dtype=F64), torch.randn(4, 3, generator=g, dtype=F64)
    feat = nn.Linear(3, 2).double()
    with torch.no_grad():
        feat.weight.copy_(torch.randn(2, 3, generator=g, dtype=F64))
        feat.bias.zero_()
    sig, sig0, eps = 3.0, 0.7, 0.2

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return deep_kernel(
            a, b, sigma=sig, x_feat=feat(a), y_feat=feat(b), sigma0=sig0, epsilon=eps
        )

    with torch.no_grad():
        got = mmd_scores(ref, test, kernel=k, chunk_size=3)
        fr, ft = feat(ref).tolist(), feat(test).tolist()
    r = ref.tolist()
    for j, y in enumerate(test.tolist()):
        pts, fs = [*r, y], [*fr, ft[j]]
        n = len(r)
        kxx = (
            sum(
                _naive_kernel(pts[a], pts[b], fs[a], fs[b], sig, sig0, eps)
                for a in range(n)
                for b in range(n)
            )
            / n**2
        )
        kxy = sum(_naive_kernel(pts[a], y, fs[a], ft[j], sig, sig0, eps) for a in range(n)) / n
        assert got[j].item() == pytest.approx(kxx - 2 * kxy + 1.0, rel=1e-10)
    # ranks like −mean_r k(r, y)
    with torch.no_grad():
        dens = k(ref, test).mean(0)
    assert torch.equal(got.argsort(), (-dens).argsort())


def test_mmd2_unbiased_and_variance_match_loops() -> None:
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(5, 2, generator=g, dtype=F64), torch.randn(5, 2, generator=g, dtype=F64) + 1
    k = lambda a, b: deep_kernel(a, b, sigma=2.0)  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    mmd2, var = mmd2_and_variance(kxx, kyy, kxy)
    n = 5
    xx = sum(kxx[i, j].item() for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(kyy[i, j].item() for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(kxy[i, j].item() for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    assert mmd2.item() == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    h = [
        [
            kxx[i, j].item() + kyy[i, j].item() - kxy[i, j].item() - kxy[j, i].item()
            for j in range(n)
        ]
        for i in range(n)
    ]
    v1 = sum((sum(row) / n) ** 2 for row in h) / n
    v2 = sum(map(sum, h)) / n**2
    assert var.item() == pytest.approx(4 * (v1 - v2**2), rel=1e-10)
    assert var.item() >= 0


def test_mmd2_near_zero_same_distribution_positive_under_shift() -> None:
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(300, 2, generator=g, dtype=F64), torch.randn(300, 2, generator=g, dtype=F64)
    k = lambda a, b: deep_kernel(a, b, sigma=2.0)  # noqa: E731
    same = mmd2_and_variance(k(x, x), k(y, y), k(x, y))[0].item()
    shifted = mmd2_and_variance(k(x, x), k(y + 1.5, y + 1.5), k(x, y + 1.5))[0].item()
    assert abs(same) < 0.01 < shifted


def test_epsilon_one_is_gaussian_kernel() -> None:
    g = torch.Generator().manual_seed(8)
    a, b = torch.randn(3, 4, generator=g, dtype=F64), torch.randn(2, 4, generator=g, dtype=F64)
    fa, fb = torch.randn(3, 2, generator=g, dtype=F64), torch.randn(2, 2, generator=g, dtype=F64)
    full = deep_kernel(a, b, sigma=3.0, x_feat=fa, y_feat=fb, sigma0=0.5, epsilon=1.0)
    assert torch.allclose(full, deep_kernel(a, b, sigma=3.0))
    assert torch.allclose(full, torch.exp(-(torch.cdist(a, b) ** 2) / 3.0))


def test_deep_kernel_training_raises_test_power() -> None:
    g = torch.Generator().manual_seed(9)
    nat = torch.randn(64, 4, generator=g)
    adv = torch.randn(64, 4, generator=g)
    adv[:, 0] += 1.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        kern = DeepKernel(
            nn.Sequential(nn.Linear(4, 8), nn.Softplus(), nn.Linear(8, 4)), sigma=8.0, sigma0=1.0
        )

    def power() -> float:
        with torch.no_grad():
            m, v = mmd2_and_variance(kern(nat, nat), kern(adv, adv), kern(nat, adv))
        return (m / torch.sqrt(v.clamp_min(0) + 1e-8)).item()

    before = power()
    train_deep_kernel(
        kern,
        nat,
        adv,
        epochs=30,
        batch_size=32,
        lr=1e-2,
        generator=torch.Generator().manual_seed(0),
    )
    assert power() > before
    assert torch.sigmoid(kern.eps_param).item() < 1


def test_detector_scores_shifted_inputs_higher_and_round_trips() -> None:
    g = torch.Generator().manual_seed(10)
    ref = 0.3 + 0.05 * torch.randn(64, 1, 3, 3, generator=g)
    clean = 0.3 + 0.05 * torch.randn(32, 1, 3, 3, generator=g)
    shifted = clean + 0.3
    det = EPSAD(_gaussian_score(2 * 0.3 - 1, 0.1), diffuse_t=5)
    assert "diffuse_t=5" in repr(det)
    det.fit(ref, generator=torch.Generator().manual_seed(0))
    s_clean = det.score(clean, generator=torch.Generator().manual_seed(1))
    s_shift = det.score(shifted, generator=torch.Generator().manual_seed(1))
    assert s_shift.min() > s_clean.max()
    fresh = EPSAD(_gaussian_score(2 * 0.3 - 1, 0.1), diffuse_t=5)
    fresh.load_state_dict(det.state_dict())
    assert fresh.bandwidth_ == det.bandwidth_ == pytest.approx(median_bandwidth(det.reference_))
    again = fresh.score(clean, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, s_clean)


def test_errors_name_function_and_argument() -> None:
    score = _gaussian_score(0.0, 1.0)
    with pytest.raises(ValueError, match="expected_perturbation_score: diffuse_t"):
        expected_perturbation_score(score, torch.rand(2, 1, 2, 2), diffuse_t=0)
    with pytest.raises(TypeError, match="score_model"):
        expected_perturbation_score(3, torch.rand(2, 1, 2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score_model must return"):
        expected_perturbation_score(lambda x, t: x[:1], torch.rand(2, 1, 2, 2))
    with pytest.raises(ValueError, match=r"EPSAD\.score"):
        EPSAD(score).score(torch.rand(2, 1, 2, 2))
    with pytest.raises(ValueError, match="EPSAD: bandwidth"):
        EPSAD(score, bandwidth="mean")
    with pytest.raises(ValueError, match="deep_kernel: x_feat"):
        deep_kernel(torch.zeros(2, 2), torch.zeros(2, 2), sigma=1.0, epsilon=0.5)
    with pytest.raises(ValueError, match="train_deep_kernel"):
        train_deep_kernel(
            DeepKernel(nn.Identity(), sigma=1.0), torch.zeros(4, 2), torch.zeros(5, 2)
        )
