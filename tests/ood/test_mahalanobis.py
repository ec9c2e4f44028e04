"""posneg.ood.mahalanobis against naive float64 loops and the official code's behaviour
(pokaxpoka/deep_Mahalanobis_detector, commit f128c35: lib_generation.py sample_estimator and
get_Mahalanobis_score; OOD_Regression_Mahalanobis.py / lib_regression.py), with card tests 1-5."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.covariance import EmpiricalCovariance

from posneg.ood.mahalanobis import (
    Mahalanobis,
    MahalanobisEnsemble,
    fit_gaussian,
    gaussian_scores,
    layer_confidences,
    mahalanobis_score,
    preprocess_input,
    select_epsilon,
)
from posneg.ood.metrics import auroc


def _toy(seed: int = 0, n: int = 90, d: int = 3, c: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    x = torch.randn(n, d, generator=g, dtype=torch.float64) + 3.0 * y.unsqueeze(1).double()
    return x, y


def test_fit_naive_and_sklearn() -> None:
    x, y = _toy()
    means, prec = fit_gaussian(x, y)
    xs, ys = x.numpy(), y.numpy()
    mu = np.stack([xs[ys == c].mean(0) for c in range(3)])
    np.testing.assert_allclose(means.numpy(), mu, atol=1e-12)
    centred = np.concatenate([xs[ys == c] - mu[c] for c in range(3)])  # official stacking
    ref = EmpiricalCovariance(assume_centered=False).fit(centred).precision_
    np.testing.assert_allclose(prec.numpy(), ref, rtol=1e-9, atol=1e-9)


def test_card2_precision_times_covariance() -> None:
    x, y = _toy(1)
    means, prec = fit_gaussian(x, y)
    xc = x - means[y]
    cov = xc.T @ xc / x.shape[0]
    torch.testing.assert_close(prec @ cov, torch.eye(3, dtype=torch.float64), atol=1e-10, rtol=0)


def test_card1_eps0_single_layer_closed_form() -> None:
    x, y = _toy(2)
    means, prec = fit_gaussian(x, y)
    q = torch.randn(5, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    g = gaussian_scores(q, means=means, precision=prec)
    for i in range(5):
        d2 = [float((q[i] - means[c]) @ prec @ (q[i] - means[c])) for c in range(3)]
        assert float(mahalanobis_score(q, means=means, precision=prec)[i]) == pytest.approx(
            0.5 * min(d2)
        )
        for c in range(3):
            assert float(g[i, c]) == pytest.approx(-0.5 * d2[c])
    conf = layer_confidences(lambda t: [t], q, means=[means], precisions=[prec], epsilon=0.0)
    torch.testing.assert_close(conf[:, 0], -mahalanobis_score(q, means=means, precision=prec))


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh()).double()


def test_card3_step_increases_max_g_and_official_sign() -> None:
    net = _net()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64)
    with torch.no_grad():
        means, prec = fit_gaussian(net(x), torch.arange(50) % 2)
    q = torch.randn(8, 4, generator=g, dtype=torch.float64)
    xt = preprocess_input(net, q, means=means, precision=prec, epsilon=1e-3)
    with torch.no_grad():
        before = gaussian_scores(net(q), means=means, precision=prec).amax(1)
        after = gaussian_scores(net(xt), means=means, precision=prec).amax(1)
    assert bool((after > before).all())
    # official: loss = mean(-G_chat), sign via torch.ge(grad, 0) (0 -> +1), x - eps * sign
    qi = q.clone().requires_grad_(True)
    gs = gaussian_scores(net(qi), means=means, precision=prec)
    chat = gs.detach().argmax(1)
    (-gs[torch.arange(8), chat]).mean().backward()
    sign = (qi.grad >= 0).double() * 2 - 1
    torch.testing.assert_close(xt, q - 1e-3 * sign)


def test_zero_gradient_maps_to_plus_one_and_std_divides() -> None:
    """A constant feature map gives a zero gradient: the official sign is +1 (torch.sign: 0)."""
    x = torch.zeros(2, 3, 2, 2)
    means, prec = torch.zeros(1, 1), torch.ones(1, 1)
    feat = lambda t: (t.sum(dim=(1, 2, 3)) * 0).unsqueeze(1)  # noqa: E731
    xt = preprocess_input(
        feat, x, means=means, precision=prec, epsilon=0.1, input_std=(0.5, 1.0, 2.0)
    )
    expect = -0.1 / torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(xt, expect.expand_as(x))


def test_card4_regression_positive_class_is_ood() -> None:
    g = torch.Generator().manual_seed(4)
    conf_in = {0.0: torch.randn(40, 2, generator=g, dtype=torch.float64)}
    conf_out = {0.0: torch.randn(40, 2, generator=g, dtype=torch.float64) - 3.0}  # low confidence
    eps, a, b = select_epsilon(conf_in, conf_out)
    assert eps == 0.0
    assert (a > 0).all()  # confidence weights positive: the OOD logit falls with M
    det = MahalanobisEnsemble(epsilons=(0.0,), validation="ood")
    det.weights_, det.bias_ = torch.as_tensor(a), torch.tensor(b)
    assert float(det.score(conf_out[0.0]).mean()) > float(det.score(conf_in[0.0]).mean())


def test_card5_auroc_grows_with_shift() -> None:
    x, y = _toy(5, n=300)
    det = Mahalanobis().fit(x, y)
    g = torch.Generator().manual_seed(6)
    q_in = x[:100] + 0.1 * torch.randn(100, 3, generator=g, dtype=torch.float64)
    vals = []
    for shift in (0.5, 2.0, 8.0, 30.0):
        q_out = torch.randn(100, 3, generator=g, dtype=torch.float64) + torch.tensor(
            [shift, -shift, shift]
        )
        vals.append(auroc(det.score(q_in), det.score(q_out)))
    assert vals == sorted(vals) and vals[-1] == 1.0


def test_ensemble_round_trip_and_modes() -> None:
    net = _net()
    layers = lambda t: [net[0](t), net(t)]  # noqa: E731
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(80, 4, generator=g, dtype=torch.float64), torch.arange(80) % 2
    with torch.no_grad():
        feats = layers(x)
    det = MahalanobisEnsemble(epsilons=(0.0, 0.01), validation="adversarial").fit(feats, y)
    det.tune(layers, x[:40], x[:40] + 0.5 * torch.randn(40, 4, generator=g, dtype=torch.float64))
    assert float(det.epsilon_) in (0.0, 0.01)
    fresh = MahalanobisEnsemble()
    fresh.load_state_dict(det.state_dict())
    torch.testing.assert_close(fresh.score_inputs(layers, x[40:]), det.score_inputs(layers, x[40:]))
    uni = MahalanobisEnsemble(validation="none").fit(feats, y).tune(layers, x)
    conf = uni.layer_confidences(layers, x, 0.0)
    torch.testing.assert_close(uni.score(conf), -conf.mean(1))


def test_errors() -> None:
    with pytest.raises(ValueError, match="fit_gaussian: labels must cover every class"):
        fit_gaussian(torch.randn(4, 2), torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="MahalanobisEnsemble: validation"):
        MahalanobisEnsemble(validation="test")
    with pytest.raises(ValueError, match="preprocess_input: epsilon"):
        preprocess_input(
            lambda t: t,
            torch.zeros(1, 2),
            means=torch.zeros(1, 2),
            precision=torch.eye(2),
            epsilon=-1.0,
        )
    with pytest.raises(ValueError, match=r"Mahalanobis\.score: call fit"):
        Mahalanobis().score(torch.randn(2, 2))
    with pytest.raises(ValueError, match="needs val_out_x"):
        MahalanobisEnsemble().fit([torch.randn(6, 2)], torch.arange(6) % 2).tune(
            lambda t: [t], torch.randn(6, 2)
        )
