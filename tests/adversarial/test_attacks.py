"""FGSM / PGD against naive float64 loops on a linear model (closed-form input gradient)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from posneg.adversarial.attacks import FGSM, PGD, fgsm, pgd

D, C, N = 6, 4, 5


def _linear(seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(D, C).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(C, D, generator=g, dtype=torch.float64))
        lin.bias.copy_(torch.randn(C, generator=g, dtype=torch.float64))
    return lin


def _data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(N, D, generator=g, dtype=torch.float64)
    y = torch.randint(C, (N,), generator=g)
    return x, y


def _grad(w: list[list[float]], b: list[float], x: list[float], y: int) -> list[float]:
    """d CE / dx = W^T (softmax(Wx + b) - e_y), written out element by element."""
    z = [sum(w[c][d] * x[d] for d in range(D)) + b[c] for c in range(C)]
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    p = [v / s - (1.0 if c == y else 0.0) for c, v in enumerate(e)]
    return [sum(w[c][d] * p[c] for c in range(C)) for d in range(D)]


def _sign(v: float) -> float:
    return 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)


def _naive_pgd(
    model: nn.Linear,
    x: torch.Tensor,
    y: torch.Tensor,
    start: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    norm: str,
) -> torch.Tensor:
    w, b = model.weight.tolist(), model.bias.tolist()
    out = []
    for i in range(N):
        x0 = x[i].tolist()
        a = [min(1.0, max(0.0, v)) for v in start[i].tolist()]
        for _ in range(steps):
            g = _grad(w, b, a, int(y[i]))
            if norm == "linf":
                a = [a[d] + alpha * _sign(g[d]) for d in range(D)]
                dl = [min(eps, max(-eps, a[d] - x0[d])) for d in range(D)]
            else:
                gn = math.sqrt(sum(v * v for v in g)) + 1e-10
                a = [a[d] + alpha * g[d] / gn for d in range(D)]
                dl = [a[d] - x0[d] for d in range(D)]
                dn = math.sqrt(sum(v * v for v in dl))
                f = min(1.0, eps / dn)
                dl = [v * f for v in dl]
            a = [min(1.0, max(0.0, x0[d] + dl[d])) for d in range(D)]
        out.append(a)
    return torch.tensor(out, dtype=torch.float64)


def test_fgsm_matches_naive_loop() -> None:
    model, (x, y) = _linear(), _data()
    w, b = model.weight.tolist(), model.bias.tolist()
    want = []
    for i in range(N):
        g = _grad(w, b, x[i].tolist(), int(y[i]))
        want.append([min(1.0, max(0.0, x[i, d].item() + 0.1 * _sign(g[d]))) for d in range(D)])
    got = fgsm(model, x, y, epsilon=0.1)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_without_random_start_matches_naive_loop(norm: str) -> None:
    model, (x, y) = _linear(), _data()
    eps, alpha = (0.1, 0.03) if norm == "linf" else (0.3, 0.1)
    got = pgd(model, x, y, epsilon=eps, step_size=alpha, steps=7, norm=norm, random_start=False)
    want = _naive_pgd(model, x, y, x, eps, alpha, 7, norm)  # type: ignore[arg-type]
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_random_start_draws_from_generator(norm: str) -> None:
    """Replay the documented start draws from a same-seeded generator, then the naive loop."""
    model, (x, y) = _linear(), _data()
    eps, alpha = 0.2, 0.05
    got = pgd(
        model,
        x,
        y,
        epsilon=eps,
        step_size=alpha,
        steps=3,
        norm=norm,
        generator=torch.Generator().manual_seed(3),
    )
    g = torch.Generator().manual_seed(3)
    if norm == "linf":
        start = x + (2 * torch.rand(x.shape, generator=g, dtype=torch.float64) - 1) * eps
    else:
        z = torch.randn(x.shape, generator=g, dtype=torch.float64)
        r = torch.rand((N, 1), generator=g, dtype=torch.float64)
        start = x + z / z.norm(dim=1, keepdim=True) * r * eps
    want = _naive_pgd(model, x, y, start, eps, alpha, 3, norm)  # type: ignore[arg-type]
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_perturbation_within_ball_and_box(norm: str) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(10, 1, 4, 4, generator=g)
    y = torch.randint(3, (10,), generator=g)
    adv = pgd(model, x, y, epsilon=0.25, step_size=0.1, steps=5, norm=norm, generator=g)
    d = (adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert bool((size <= 0.25 + 1e-5).all())
    assert bool((adv >= 0).all()) and bool((adv <= 1).all())
    box = pgd(model, x, y, epsilon=0.5, step_size=0.1, steps=3, clamp=(0.2, 0.8), generator=g)
    assert float(box.min()) >= 0.2 - 1e-6 and float(box.max()) <= 0.8 + 1e-6
    f = fgsm(model, x, y, epsilon=0.3)
    assert float((f - x).abs().max()) <= 0.3 + 1e-6


def test_epsilon_zero_returns_x_and_attack_raises_loss() -> None:
    model, (x, y) = _linear(), _data()
    torch.testing.assert_close(fgsm(model, x, y, epsilon=0.0), x)
    torch.testing.assert_close(pgd(model, x, y, epsilon=0.0, step_size=0.1, steps=3), x)
    ce = nn.functional.cross_entropy
    adv = pgd(model, x, y, epsilon=0.1, step_size=0.02, steps=10, random_start=False, clamp=None)
    with torch.no_grad():
        assert float(ce(model(adv), y)) > float(ce(model(x), y))


def test_generator_leaves_global_rng_and_model_grads_alone() -> None:
    model, (x, y) = _linear(), _data()
    state = torch.get_rng_state()
    a = pgd(
        model,
        x,
        y,
        epsilon=0.1,
        step_size=0.02,
        steps=2,
        generator=torch.Generator().manual_seed(5),
    )
    b = pgd(
        model,
        x,
        y,
        epsilon=0.1,
        step_size=0.02,
        steps=2,
        generator=torch.Generator().manual_seed(5),
    )
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not a.requires_grad
    assert model.weight.grad is None


def test_batch_invariance() -> None:
    model, (x, y) = _linear(), _data()
    full = pgd(model, x, y, epsilon=0.1, step_size=0.03, steps=4, random_start=False)
    part = pgd(model, x[:2], y[:2], epsilon=0.1, step_size=0.03, steps=4, random_start=False)
    torch.testing.assert_close(full[:2], part)


def test_modules_call_the_functions() -> None:
    model, (x, y) = _linear(), _data()
    torch.testing.assert_close(FGSM(epsilon=0.1)(model, x, y), fgsm(model, x, y, epsilon=0.1))
    m = PGD(epsilon=0.1, step_size=0.03, steps=2, norm="l2", random_start=False)
    want = pgd(model, x, y, epsilon=0.1, step_size=0.03, steps=2, norm="l2", random_start=False)
    torch.testing.assert_close(m(model, x, y), want)
    assert "norm='l2'" in repr(m)


def test_errors_name_function_and_argument() -> None:
    model, (x, y) = _linear(), _data()
    with pytest.raises(ValueError, match="fgsm: epsilon"):
        fgsm(model, x, y, epsilon=-1.0)
    with pytest.raises(ValueError, match="pgd: norm"):
        pgd(model, x, y, epsilon=0.1, step_size=0.1, steps=1, norm="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pgd: step_size"):
        pgd(model, x, y, epsilon=0.1, step_size=0.0, steps=1)
    with pytest.raises(TypeError, match="pgd: steps"):
        pgd(model, x, y, epsilon=0.1, step_size=0.1, steps=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fgsm: y"):
        fgsm(model, x, y[:2], epsilon=0.1)
    with pytest.raises(TypeError, match="fgsm: x"):
        fgsm(model, x.long(), y, epsilon=0.1)
    with pytest.raises(ValueError, match="pgd: clamp"):
        pgd(model, x, y, epsilon=0.1, step_size=0.1, steps=1, clamp=(1.0, 0.0))
    with pytest.raises(TypeError, match="pgd: generator"):
        pgd(model, x, y, epsilon=0.1, step_size=0.1, steps=1, generator=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="PGD: epsilon"):
        PGD(epsilon=-0.1, step_size=0.1, steps=1)
