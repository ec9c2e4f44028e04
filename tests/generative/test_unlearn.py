"""Adapt-then-Unlearn (Tiwary et al., TMLR 2025): EWC adaptation and parameter-space repulsion.

Official code: atriguha/Adapt_Unlearn at 163a35465415e32fa82b1012a9200b379a6cbb98:
``Negative_Adaptation/EWC_ADAPT_MNIST/model.py`` (``estimate_fisher``, ``consolidate``,
``ewc_loss``) and ``Unlearning/Unlearning_MNIST/train_different_losses.py``
(``calc_difference_param_new``, ``calc_scaling_fact``, the loss branches of ``train``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from posneg.generative.unlearn import (
    CITATION,
    EWCPenalty,
    RepulsionLoss,
    consolidate,
    digit_scale,
    estimate_fisher,
    ewc_loss,
    fisher_diagonal,
    repulsion_distance,
    repulsion_loss,
)


def _rand_dict(g: torch.Generator, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    return {
        "a.weight": torch.randn(3, 4, generator=g, dtype=dtype),
        "a.bias": torch.randn(3, generator=g, dtype=dtype),
        "b.weight": torch.randn(2, 3, generator=g, dtype=dtype),
    }


# ---------------------------------------------------------------- formulas vs naive loops


def test_repulsion_distance_matches_a_naive_loop() -> None:
    g = torch.Generator().manual_seed(0)
    theta = _rand_dict(g)
    adapted = [_rand_dict(g) for _ in range(3)]
    total = 0.0
    for name, t in theta.items():
        n = t.numel()
        for a in adapted:
            s = 0.0
            for x, y in zip(a[name].flatten().tolist(), t.flatten().tolist(), strict=True):
                s += (x - y) ** 2
            total += s / n
    naive = total / len(theta) * len(adapted) / 2
    got = repulsion_distance(params=theta, adapted=adapted)
    assert float(got) == pytest.approx(naive, rel=1e-12)
    over = repulsion_distance(params=theta, adapted=adapted, k_scale="over")
    assert float(over) == pytest.approx(total / len(theta) / (2 * len(adapted)), rel=1e-12)


def test_ewc_loss_matches_a_naive_loop_and_its_gradient_is_lam_f_delta() -> None:
    g = torch.Generator().manual_seed(1)
    theta = {k: v.requires_grad_() for k, v in _rand_dict(g).items()}
    means = _rand_dict(g)
    fisher = {k: v.abs() for k, v in _rand_dict(g).items()}
    lam = 7.0
    naive = 0.0
    for k in fisher:
        for p, m, f in zip(
            theta[k].flatten().tolist(),
            means[k].flatten().tolist(),
            fisher[k].flatten().tolist(),
            strict=True,
        ):
            naive += f * (p - m) ** 2
    loss = ewc_loss(params=theta, means=means, fisher=fisher, lam=lam)
    assert float(loss.detach()) == pytest.approx(lam / 2 * naive, rel=1e-12)
    loss.backward()
    for k in theta:
        torch.testing.assert_close(theta[k].grad, lam * fisher[k] * (theta[k] - means[k]))


# ---------------------------------------------------------------- transcriptions of the code


def _code_calc_difference(list_of_models: list[nn.Module], initial_model: nn.Module) -> float:
    """``calc_difference_param_new``, line by line (models instead of checkpoint paths)."""
    mse = nn.MSELoss()
    parameter_difference: dict[str, torch.Tensor] = {}
    for fine_tuned_model in list_of_models:
        for initial_param, fine_tuned_param in zip(
            initial_model.named_parameters(), fine_tuned_model.named_parameters(), strict=True
        ):
            initial_param_name, initial_weight = initial_param
            fine_tuned_name, fine_tuned_weight = fine_tuned_param
            if initial_param_name == fine_tuned_name:
                op = mse(fine_tuned_weight, initial_weight)
                try:
                    parameter_difference[initial_param_name] += op
                except KeyError:
                    parameter_difference[initial_param_name] = op
    val = 0.0
    for itr in parameter_difference:
        value = parameter_difference[itr]
        value = value / len(parameter_difference)
        avg_value = value / 2 * len(list_of_models)
        val += avg_value
    return float(val.detach()) if isinstance(val, torch.Tensor) else val


def _mlp(seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).double()


def _pd(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in m.named_parameters()}


@pytest.mark.parametrize("k", [1, 2, 5])
def test_distance_equals_the_released_code_with_k_times(k: int) -> None:
    initial = _mlp(0)
    models = [_mlp(10 + i) for i in range(k)]
    code = _code_calc_difference(models, initial)
    params = _pd(initial)
    adapted = [_pd(m) for m in models]
    assert float(repulsion_distance(params=params, adapted=adapted).detach()) == pytest.approx(code)


def test_k_scale_times_and_over_differ_by_k_squared_and_agree_for_one_model() -> None:
    """The code's ``value/2*len(ckpt_gens)`` is (value/2)*K, not value/(2K) (the card's note 1)."""
    params = _pd(_mlp(0))
    one = [_pd(_mlp(1))]
    assert float(repulsion_distance(params=params, adapted=one, k_scale="over")) == pytest.approx(
        float(repulsion_distance(params=params, adapted=one, k_scale="times"))
    )
    three = [_pd(_mlp(i)) for i in (1, 2, 3)]
    times = float(repulsion_distance(params=params, adapted=three, k_scale="times"))
    over = float(repulsion_distance(params=params, adapted=three, k_scale="over"))
    assert times == pytest.approx(9 * over)


def _code_scaling_fact(num: float) -> int:
    fact = 0
    while num > 0:
        num = num // 10
        fact += 1
    return fact


@pytest.mark.parametrize("d", [0.0, 1e-6, 0.5, 5.3, 9.99, 10.0, 99.9, 123.4, 1e5])
def test_digit_scale_is_calc_scaling_fact(d: float) -> None:
    assert digit_scale(d) == _code_scaling_fact(d)
    assert digit_scale(torch.tensor(d)) == _code_scaling_fact(d)


def test_digit_scale_is_one_below_ten() -> None:
    assert [digit_scale(v) for v in (0.001, 0.5, 9.5, 10.0, 250.0)] == [1, 1, 1, 2, 3]


@pytest.mark.parametrize("kind", ["l2", "exp", "reci"])
@pytest.mark.parametrize("scaled", [False, True])
def test_repulsion_loss_matches_the_code_branches(kind: str, scaled: bool) -> None:
    gamma = 1.2
    for val in (0.03, 2.5, 37.0):
        d = torch.tensor(val, dtype=torch.float64)
        val_factor = 10 ** _code_scaling_fact(val) if scaled else 1 / gamma
        if kind == "reci":
            want = 1 / (val * val_factor)
        elif kind == "exp":
            want = 100 * math.exp(-(val / val_factor))
        else:
            want = -(val / val_factor)
        got = repulsion_loss(distance=d, gamma=gamma, kind=kind, scale_by_digits=scaled)  # type: ignore[arg-type]
        assert float(got) == pytest.approx(want, rel=1e-12)


def test_estimate_fisher_is_mean_squared_per_sample_gradient_of_d() -> None:
    """Linear G(z) = W z, D(x) = v . x: dD/dW = v z^T, so F_W = v^2 (mean_i z_i^2)^T."""
    g = torch.Generator().manual_seed(2)
    gen = nn.Linear(3, 4, bias=False).double()
    disc = nn.Linear(4, 1, bias=False).double()
    z = torch.randn(6, 3, generator=g, dtype=torch.float64)
    fisher = estimate_fisher(g_model=gen, d_model=disc, latents=z)
    v = disc.weight.detach()[0]
    expected = (v**2)[:, None] * (z**2).mean(0)[None, :]
    torch.testing.assert_close(fisher["weight"], expected)
    assert not fisher["weight"].requires_grad


# ---------------------------------------------------------------- properties (the card's tests)


def test_distance_is_zero_at_every_adapted_model_and_quadratic_along_the_line() -> None:
    g = torch.Generator().manual_seed(3)
    anchor = _rand_dict(g)
    assert float(repulsion_distance(params=anchor, adapted=[anchor, anchor])) == 0.0
    u = _rand_dict(g)
    d1 = repulsion_distance(params={k: anchor[k] + u[k] for k in u}, adapted=[anchor])
    for t in (0.5, 2.0, 3.0):
        dt = repulsion_distance(params={k: anchor[k] + t * u[k] for k in u}, adapted=[anchor])
        assert float(dt) == pytest.approx(t**2 * float(d1), rel=1e-12)


def test_ewc_term_and_gradient_vanish_at_theta0() -> None:
    g = torch.Generator().manual_seed(4)
    theta0 = _rand_dict(g)
    fisher = {k: v.abs() for k, v in _rand_dict(g).items()}
    params = {k: v.clone().requires_grad_() for k, v in theta0.items()}
    means, f = consolidate(params=params, fisher=fisher)
    loss = ewc_loss(params=params, means=means, fisher=f, lam=5e8)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert all(float(p.grad.abs().max()) == 0.0 for p in params.values())


@pytest.mark.parametrize("kind", ["l2", "exp", "reci"])
def test_gamma_zero_reduces_stage_2_to_fine_tuning(kind: str) -> None:
    g = torch.Generator().manual_seed(5)
    theta = {k: v.requires_grad_() for k, v in _rand_dict(g).items()}
    rep = RepulsionLoss(gamma=0.0, kind=kind)  # type: ignore[arg-type]
    out = rep(theta, [_rand_dict(g)])
    out.backward()
    assert all(p.grad is None or float(p.grad.abs().max()) == 0.0 for p in theta.values())


def test_repulsion_gradient_pushes_away_from_the_adapted_model() -> None:
    theta = {"w": torch.zeros(3, dtype=torch.float64, requires_grad=True)}
    adapted = [{"w": torch.ones(3, dtype=torch.float64)}]
    for kind in ("l2", "exp", "reci"):
        theta["w"].grad = None
        RepulsionLoss(gamma=1.0, kind=kind)(theta, adapted).backward()  # type: ignore[arg-type]
        # descent direction -grad points from the adapted model (1) towards/past theta (0)
        assert bool((theta["w"].grad > 0).all()), kind


def test_fisher_is_nonnegative_with_parameter_shapes_and_names_select() -> None:
    gen = _mlp(0)
    disc = nn.Linear(2, 1).double()
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    fisher = estimate_fisher(g_model=gen, d_model=disc, latents=z)
    assert set(fisher) == {n for n, _ in gen.named_parameters()}
    for n, p in gen.named_parameters():
        assert fisher[n].shape == p.shape
        assert bool((fisher[n] >= 0).all())
    only = estimate_fisher(g_model=gen, d_model=disc, latents=z, names=["0.weight"])
    assert set(only) == {"0.weight"}
    torch.testing.assert_close(only["0.weight"], fisher["0.weight"])


def test_fisher_diagonal_and_consolidate_copy() -> None:
    grads = {"w": torch.tensor([[1.0, -2.0], [3.0, 0.0]])}
    f = fisher_diagonal(per_sample_grads=grads)
    torch.testing.assert_close(f["w"], torch.tensor([5.0, 2.0]))
    p = {"w": torch.zeros(2, requires_grad=True)}
    means, ff = consolidate(params=p, fisher=f)
    assert not means["w"].requires_grad
    with torch.no_grad():
        p["w"].add_(1.0)
    assert float(means["w"].abs().sum()) == 0.0  # a copy, not the live parameter
    assert ff["w"] is not f["w"]


def test_modules_repr_and_citation() -> None:
    assert "lam=5e+08" in repr(EWCPenalty())
    r = repr(RepulsionLoss(gamma=0.8, kind="exp", k_scale="over"))
    assert "gamma=0.8" in r and "kind='exp'" in r and "k_scale='over'" in r
    assert "2025" in CITATION and "2309.14054" in CITATION


# ---------------------------------------------------------------- errors


def test_error_messages_name_the_function_and_argument() -> None:
    t = {"w": torch.zeros(2)}
    with pytest.raises(ValueError, match="repulsion_loss: kind"):
        repulsion_loss(distance=torch.tensor(1.0), kind="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="repulsion_loss: gamma"):
        repulsion_loss(distance=torch.tensor(1.0), gamma=-1.0)
    with pytest.raises(TypeError, match="repulsion_loss: distance"):
        repulsion_loss(distance=torch.ones(2))
    with pytest.raises(ValueError, match="repulsion_distance: k_scale"):
        repulsion_distance(params=t, adapted=[t], k_scale="mean")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="repulsion_distance: adapted"):
        repulsion_distance(params=t, adapted=[])
    with pytest.raises(ValueError, match=r"repulsion_distance: adapted\[0\]\['w'\] has shape"):
        repulsion_distance(params=t, adapted=[{"w": torch.zeros(3)}])
    with pytest.raises(ValueError, match="repulsion_distance: adapted\\[0\\] has no entry 'w'"):
        repulsion_distance(params=t, adapted=[{"v": torch.zeros(2)}])
    with pytest.raises(ValueError, match="ewc_loss: lam"):
        ewc_loss(params=t, means=t, fisher=t, lam=-1.0)
    with pytest.raises(TypeError, match="ewc_loss: params"):
        ewc_loss(params={}, means=t, fisher=t)
    with pytest.raises(ValueError, match="estimate_fisher: names"):
        estimate_fisher(
            g_model=_mlp(0),
            d_model=nn.Linear(2, 1).double(),
            latents=torch.zeros(2, 4, dtype=torch.float64),
            names=["nope"],
        )
    with pytest.raises(ValueError, match="RepulsionLoss: kind"):
        RepulsionLoss(kind="huber")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="EWCPenalty: lam"):
        EWCPenalty(lam=-2.0)
    with pytest.raises(ValueError, match="digit_scale: distance"):
        digit_scale(float("nan"))
