"""MhERGAN stand-in: MH-GAN's acceptance rule and chain, the calibrated D ensemble, errors.

Reference: ``uber-research/metropolis-hastings-gans`` at dd3f969, ``mhgan/mh.py``
(``accept_prob_MH``, ``accept_prob_MH_disc``, ``_mh_sample``, ``test_accept_prob_MH_disc``) and
``mhgan/classification.py`` (the ``Beta1`` calibrator: scikit-learn ``LogisticRegression()`` on
``logit(D)``). The transcriptions below restate what that code computes, in torch/float.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.linear_model import LogisticRegression

from posneg.synthetic.mhergan import (
    MHERGANSelector,
    ensemble_probability,
    fit_logistic_calibration,
    mh_accept_prob,
    mh_select,
)

F64 = torch.float64


def _accept_prob_mh(p_last, p_new, q_last_from_new, q_new_from_last):  # type: ignore[no-untyped-def]
    """mh.py ``accept_prob_MH``: min(1, p(x') q(x) / (p(x) q(x')))."""
    return np.minimum(1.0, (p_new * q_last_from_new) / (p_last * q_new_from_last))


def _official_chain(d_score: list[float], u: list[float]) -> int:
    """mh.py ``_mh_sample`` with init_picked = 0 (the real start), start = 1, and the uniform
    draws given: returns the picked round (0 = the real start)."""
    d_last, picked = d_score[0], 0
    for ii, d_new in enumerate(d_score[1:], 1):
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.fmin(1.0, ((1.0 / d_last) - 1.0) / ((1.0 / d_new) - 1.0))
        if u[ii - 1] <= alpha:
            d_last, picked = d_new, ii
    return picked


def test_alpha_equals_the_generic_mh_ratio() -> None:
    """As ``test_accept_prob_MH_disc``: D = p_real / (p_real + p_gan) turns the discriminator
    ratio into the MH ratio with target p_real and independence proposal p_gan."""
    rng = np.random.default_rng(0)
    p_real_last, p_real_new, p_gan_last, p_gan_new = np.abs(rng.standard_normal((4, 50)))
    expected = _accept_prob_mh(p_real_last, p_real_new, p_gan_last, p_gan_new)
    d_last = torch.tensor(p_real_last / (p_real_last + p_gan_last))
    d_new = torch.tensor(p_real_new / (p_real_new + p_gan_new))
    assert np.allclose(mh_accept_prob(d_last, d_new).numpy(), expected, rtol=1e-12)


def test_nan_gives_one_as_numpy_fmin() -> None:
    one = torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    alpha = mh_accept_prob(one, torch.tensor([1.0, 0.0, 0.5], dtype=F64))
    assert alpha.tolist() == [1.0, 1.0, 0.0]


def test_chain_matches_the_official_loop() -> None:
    g = torch.Generator().manual_seed(3)
    d_start = torch.rand(40, generator=g, dtype=F64)
    d_prop = torch.rand(40, 12, generator=g, dtype=F64)
    sel = mh_select(d_start, d_prop, generator=torch.Generator().manual_seed(7))
    u = torch.rand(40, 12, generator=torch.Generator().manual_seed(7), dtype=F64)
    for i in range(40):
        scores = [float(d_start[i]), *d_prop[i].tolist()]
        assert int(sel.choice[i]) == _official_chain(scores, u[i].tolist()) - 1


def test_half_discriminator_accepts_every_proposal() -> None:
    sel = mh_select(torch.full((5,), 0.5), torch.full((5, 7), 0.5))
    assert sel.choice.tolist() == [6] * 5 and sel.accepted.tolist() == [7] * 5


def test_exact_ratio_chain_samples_the_target() -> None:
    """1-D toy: target N(1, 1), generator N(0, 1.5^2), the exact D. The chain outputs (start kept
    where nothing was accepted) follow the target; the raw proposals do not."""
    g = torch.Generator().manual_seed(0)
    n, k = 4000, 30

    def d_of(x: torch.Tensor) -> torch.Tensor:
        lp = -0.5 * (x - 1) ** 2
        lq = -0.5 * (x / 1.5) ** 2 - math.log(1.5)
        return torch.sigmoid(lp - lq)

    start = 1 + torch.randn(n, generator=g, dtype=F64)
    props = 1.5 * torch.randn(n, k, generator=g, dtype=F64)
    sel = mh_select(d_of(start), d_of(props), generator=g)
    picked = props.gather(1, sel.choice.clamp(min=0)[:, None])[:, 0]
    out = torch.where(sel.choice >= 0, picked, start)
    assert stats.kstest(out.numpy(), stats.norm(loc=1).cdf).pvalue > 0.01
    assert stats.kstest(props[:, 0].numpy(), stats.norm(loc=1).cdf).pvalue < 1e-6


def test_calibration_equals_sklearn_logistic_regression() -> None:
    """MH-GAN's Beta1 calibrator: LogisticRegression() (C = 1, lbfgs) on the logit."""
    g = torch.Generator().manual_seed(1)
    real = 0.8 * torch.randn(3, 200, generator=g, dtype=F64) + 1.0
    fake = 1.3 * torch.randn(3, 150, generator=g, dtype=F64) - 0.5
    a, b = fit_logistic_calibration(real, fake)
    s = torch.cat([real.mean(0), fake.mean(0)]).numpy()[:, None]
    y = np.r_[np.ones(200), np.zeros(150)]
    ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=1000).fit(s, y)
    assert a == pytest.approx(float(ref.coef_[0, 0]), rel=1e-5)
    assert b == pytest.approx(float(ref.intercept_[0]), rel=1e-5, abs=1e-7)


def test_single_member_ensemble_is_sigmoid_of_its_logit() -> None:
    x = torch.randn(1, 10, generator=torch.Generator().manual_seed(2), dtype=F64)
    assert torch.equal(ensemble_probability(x), torch.sigmoid(x[0]))
    two = torch.stack([x[0], -x[0]])
    assert torch.allclose(ensemble_probability(two), torch.full((10,), 0.5, dtype=F64))


def test_selector_fits_calibration_and_round_trips_its_state() -> None:
    g = torch.Generator().manual_seed(4)
    sel = MHERGANSelector().fit(
        torch.randn(3, 80, generator=g) + 1, torch.randn(3, 80, generator=g) - 1
    )
    assert float(sel.scale_) > 0
    other = MHERGANSelector()
    other.load_state_dict(sel.state_dict())
    start, props = torch.randn(3, 6, generator=g), torch.randn(3, 6, 9, generator=g)
    a = sel(start, props, generator=torch.Generator().manual_seed(0))
    b = other(start, props, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.choice, b.choice)
    raw = MHERGANSelector(calibrate=False).fit(start, start)
    assert float(raw.scale_) == 1.0 and float(raw.bias_) == 0.0


def test_errors() -> None:
    with pytest.raises(ValueError, match="mh_accept_prob: d_current must hold probabilities"):
        mh_accept_prob(torch.tensor([2.0]), torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"mh_select: d_start must have shape \(N,\)"):
        mh_select(torch.full((3,), 0.5), torch.full((2, 4), 0.5))
    with pytest.raises(TypeError, match=r"mh_select: generator must be a torch\.Generator"):
        mh_select(torch.full((3,), 0.5), torch.full((3, 4), 0.5), generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fit_logistic_calibration: c must be > 0"):
        fit_logistic_calibration(torch.zeros(2, 3), torch.zeros(2, 3), c=0.0)
    with pytest.raises(ValueError, match="fit_logistic_calibration: real_logits and fake_logits"):
        fit_logistic_calibration(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="ensemble_probability: logits must have shape"):
        ensemble_probability(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="MHERGANSelector: c must be > 0"):
        MHERGANSelector(c=-1.0)
