"""The GDA bGMM simulation (posneg.synthetic.gda).

Reference: ``ML-GSAI/Understanding-GDA`` ``main_simulation_bGMM.py`` (``simulation_gamma``,
``get_zero_one_loss``, ``get_NLL_loss``) and ``models/gaussnb.py`` (``GaussianNB``), commit
00719a0. ``_official_simulation`` below transcribes their behaviour with NumPy and scikit-learn's
``make_blobs`` (the official data source), so the Monte-Carlo means of posneg's torch simulation
are compared with an independent run of the official procedure.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from posneg.synthetic.gda import (
    BGMMGapSimulation,
    bgmm_fit,
    bgmm_gap,
    bgmm_generalization_gap,
    bgmm_nll,
    bgmm_sample,
    bgmm_theta,
    bgmm_zero_one_loss,
)


def _data(n=30, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.arange(n) % 2
    return x, y


# --- formula: naive float64 loops -----------------------------------------------------------


def test_fit_matches_the_official_gaussnb_loop():
    x, y = _data(31, 4)
    mus, var = bgmm_fit(x, y)
    xs, ys = x.numpy(), y.numpy()
    for k in (0, 1):
        rows = [xs[i] for i in range(len(ys)) if ys[i] == k]
        mean = [sum(r[j] for r in rows) / len(rows) for j in range(4)]
        assert np.allclose(mus[k].numpy(), mean)
    pooled = np.zeros(4)
    for k in (0, 1):
        rows = xs[ys == k]
        pooled += (len(rows) / len(ys)) * (np.var(rows, axis=0, ddof=1) + 1e-9)
    assert np.allclose(var.numpy(), pooled, rtol=1e-12)


def test_theta_and_losses_match_explicit_loops():
    x, y = _data(25, 3, seed=1)
    theta = bgmm_theta(x, y)
    naive = [0.0, 0.0, 0.0]
    for i in range(25):
        s = 2 * int(y[i]) - 1
        for j in range(3):
            naive[j] += s * float(x[i, j]) / 25
    assert torch.allclose(theta, torch.tensor(naive, dtype=torch.float64))
    wrong = 0
    nll = 0.0
    for i in range(25):
        score = sum(float(theta[j]) * float(x[i, j]) for j in range(3))
        pred = 1 if score >= 0 else 0
        wrong += pred != int(y[i])
        s = 2 * int(y[i]) - 1
        nll += sum((float(x[i, j]) - s * float(theta[j])) ** 2 for j in range(3))
    assert math.isclose(float(bgmm_zero_one_loss(theta, x, y)), wrong / 25)
    assert math.isclose(float(bgmm_nll(theta, x, y, sigma=0.6)), nll / (2 * 0.36 * 25))


def test_sample_splits_classes_like_make_blobs():
    from sklearn.datasets import make_blobs

    mus = torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    for n in (0, 1, 7, 10):
        _, y = bgmm_sample(n, mus, 0.5, generator=torch.Generator().manual_seed(0))
        _, y_ref = make_blobs(n_samples=n, centers=mus.numpy(), random_state=0) if n else (0, [])
        assert y.tolist().count(0) == list(y_ref).count(0)
    x, y = bgmm_sample(
        20000,
        mus,
        torch.tensor([0.5, 2.0], dtype=torch.float64),
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.allclose(
        x[y == 1].std(0), torch.tensor([0.5, 2.0], dtype=torch.float64), rtol=0.05
    )


# --- reference: the official procedure, run independently ------------------------------------


def _official_simulation(m, d, gammas, repeats, test_size, seed, sigma=0.6):
    """``simulation_gamma`` of the official repository, with a seeded NumPy state."""
    from sklearn.datasets import make_blobs

    rs = np.random.RandomState(seed)
    mus = [d * [-1 / np.sqrt(d)], d * [1 / np.sqrt(d)]]
    gaps = np.zeros((len(gammas), repeats))
    for t in range(repeats):
        x_tr, y_tr = make_blobs(
            m, n_features=d, centers=mus, cluster_std=[sigma, sigma], random_state=rs
        )
        x_te, y_te = make_blobs(
            test_size, n_features=d, centers=mus, cluster_std=[sigma, sigma], random_state=rs
        )
        counts = np.array([(y_tr == k).sum() for k in (0, 1)])
        nb_mus = np.stack([x_tr[y_tr == k].mean(0) for k in (0, 1)])
        nb_vars = np.stack([np.var(x_tr[y_tr == k], axis=0, ddof=1) + 1e-9 for k in (0, 1)])
        vars_nb = np.sum(nb_vars * (counts / m).reshape(-1, 1), axis=0).reshape(1, -1)
        for j, gamma in enumerate(gammas):
            aug = int(gamma * m)
            if aug > 0:
                x_new, y_new = make_blobs(
                    aug,
                    n_features=d,
                    centers=[nb_mus[0], nb_mus[1]],
                    cluster_std=[np.sqrt(vars_nb), np.sqrt(vars_nb)],
                    random_state=rs,
                )
                x_aug, y_aug = np.concatenate([x_tr, x_new]), np.concatenate([y_tr, y_new])
            else:
                x_aug, y_aug = x_tr, y_tr
            theta = np.sum(x_aug * (2 * y_aug - 1).reshape(-1, 1), axis=0) / len(y_aug)

            def zero_one(x, y, theta=theta):
                pred = np.sum(theta.reshape(1, -1) * x, axis=1)
                pred = (pred >= 0).astype(int)
                return 1 - np.sum(pred == y) / len(y)

            gaps[j, t] = abs(zero_one(x_aug, y_aug) - zero_one(x_te, y_te))
    return gaps


@pytest.mark.parametrize(("m", "d"), [(10, 1), (10, 5)])
def test_monte_carlo_means_agree_with_the_official_procedure(m, d):
    gammas, repeats = (0, 2, 20), 250
    ours = bgmm_generalization_gap(
        m=m,
        d=d,
        gammas=gammas,
        repeats=repeats,
        test_size=2000,
        generator=torch.Generator().manual_seed(0),
    ).zero_one.numpy()
    ref = _official_simulation(m, d, gammas, repeats, 1000, seed=0)
    for j in range(len(gammas)):
        se = math.sqrt(ours[j].var() / repeats + ref[j].var() / repeats)
        assert abs(ours[j].mean() - ref[j].mean()) < 4.5 * se + 1e-3, (
            j,
            ours[j].mean(),
            ref[j].mean(),
        )


# --- properties ------------------------------------------------------------------------------


def test_gamma_zero_is_plain_learning():
    x, y = _data(20, 2, seed=2)
    xt, yt = _data(200, 2, seed=3)
    zo, nll = bgmm_gap((x, y), (xt, yt), sigma=0.6)
    theta = bgmm_theta(x, y)
    assert zo == (bgmm_zero_one_loss(theta, x, y) - bgmm_zero_one_loss(theta, xt, yt)).abs()
    assert nll == (bgmm_nll(theta, x, y, sigma=0.6) - bgmm_nll(theta, xt, yt, sigma=0.6)).abs()
    empty = (torch.empty(0, 2, dtype=torch.float64), torch.empty(0, dtype=torch.int64))
    assert bgmm_gap((x, y), (xt, yt), sigma=0.6, synthetic=empty) == (zo, nll)


def test_gap_vanishes_with_the_true_generator():
    r = bgmm_generalization_gap(
        m=10,
        d=1,
        gammas=(0, 100),
        repeats=200,
        test_size=2000,
        fit="true",
        generator=torch.Generator().manual_seed(0),
    )
    mean = r.zero_one.mean(1)
    assert mean[1] < 0.35 * mean[0]
    assert mean[1] < 0.02


def test_small_m_gap_shrinks_with_gamma_then_plateaus():
    """The paper's bGMM direction (d=1, m=10): the fitted generator helps a small sample."""
    r = bgmm_generalization_gap(
        m=10,
        d=1,
        gammas=(0, 5, 50),
        repeats=300,
        test_size=2000,
        generator=torch.Generator().manual_seed(1),
    )
    mean = r.zero_one.mean(1)
    assert mean[1] < mean[0]
    assert abs(float(mean[2] - mean[1])) < 0.5 * float(mean[0] - mean[1]) + 0.01


def test_deterministic_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = bgmm_generalization_gap(
        m=8, d=2, gammas=(0, 1), repeats=5, test_size=50, generator=torch.Generator().manual_seed(4)
    )
    b = BGMMGapSimulation(gammas=(0, 1), repeats=5, test_size=50)(
        8, 2, generator=torch.Generator().manual_seed(4)
    )
    assert torch.equal(a.zero_one, b.zero_one) and torch.equal(a.nll, b.nll)
    assert torch.equal(state, torch.get_rng_state())
    assert "repeats=5" in repr(BGMMGapSimulation(repeats=5))


# --- errors ----------------------------------------------------------------------------------


def test_errors():
    x, y = _data(6, 2)
    with pytest.raises(ValueError, match="bgmm_fit: each class needs >= 2 points"):
        bgmm_fit(x[:3], torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="bgmm_theta: labels for x must be 0 or 1"):
        bgmm_theta(x, y + 1)
    with pytest.raises(ValueError, match=r"bgmm_theta: labels for x must have shape \(6,\)"):
        bgmm_theta(x, y[:3])
    with pytest.raises(TypeError, match="bgmm_theta: labels for x must be an integer tensor"):
        bgmm_theta(x, y.double())
    with pytest.raises(ValueError, match="bgmm_nll: sigma must be > 0"):
        bgmm_nll(x[0], x, y, sigma=0.0)
    with pytest.raises(ValueError, match=r"bgmm_sample: mus must have shape \(2, d\)"):
        bgmm_sample(3, torch.zeros(3, 2), 1.0)
    with pytest.raises(ValueError, match="bgmm_generalization_gap: m must be >= 4"):
        bgmm_generalization_gap(m=3, d=1)
    with pytest.raises(ValueError, match=r"bgmm_generalization_gap: gammas\[i\] must be >= 0"):
        bgmm_generalization_gap(m=10, d=1, gammas=(-1,))
    with pytest.raises(ValueError, match="bgmm_generalization_gap: fit must be one of"):
        bgmm_generalization_gap(m=10, d=1, fit="gan")
    with pytest.raises(ValueError, match="BGMMGapSimulation: gammas must not be empty"):
        BGMMGapSimulation(gammas=())
    with pytest.raises(ValueError, match="BGMMGapSimulation: repeats must be >= 1"):
        BGMMGapSimulation(repeats=0)
