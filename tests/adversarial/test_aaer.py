"""AAER: the card's tests, a naive float64 transcription of the official loop, errors.

Official code: github.com/tmllab/2023_NeurIPS_AAER, CIFAR10/AAER.py and CIFAR10/utils.py,
commit 5ad2591.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from posneg.adversarial.aaer import AAERLoss, aae_mask, aaer_loss, aaer_regularizer, l2_square


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 4)).double()


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(24, 1, 4, 4, generator=g, dtype=torch.float64), torch.randint(
        4, (24,), generator=g
    )


def test_l2_square_and_mask() -> None:
    a, b = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert float(l2_square(a, b)) == pytest.approx((5.0 + 25.0) / 2)
    lb, la = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 1.0, 3.0])
    assert aae_mask(lb, la).tolist() == [False, True, False]


def test_regularizer_matches_naive_loop() -> None:
    g = torch.Generator().manual_seed(1)
    o0 = torch.randn(10, 3, generator=g, dtype=torch.float64)
    o = torch.randn(10, 3, generator=g, dtype=torch.float64) * 3
    lb = torch.rand(10, generator=g, dtype=torch.float64)
    la = torch.rand(10, generator=g, dtype=torch.float64)
    got = aaer_regularizer(
        logits_before=o0,
        logits_after=o,
        loss_before=lb,
        loss_after=la,
        lambda1=1.0,
        lambda2=4.0,
        lambda3=1.5,
    )
    ab = [i for i in range(10) if lb[i] > la[i]]
    nm = [i for i in range(10) if not lb[i] > la[i]]
    sq = [sum((o[i, c] - o0[i, c]).item() ** 2 for c in range(3)) for i in range(10)]
    va, vn = sum(sq[i] for i in ab) / len(ab), sum(sq[i] for i in nm) / len(nm)
    ce = sum((lb[i] - la[i]).item() for i in ab) / len(ab)
    want = len(ab) / 10 * (4.0 * ce + 1.5 * max(va - vn, 0.0))
    assert float(got) == pytest.approx(want, rel=1e-12)


def test_regularizer_is_zero_when_a_set_is_empty() -> None:
    o = torch.randn(5, 3, requires_grad=True)
    lb = torch.zeros(5)
    for la in (torch.ones(5), -torch.ones(5)):  # no AAE / all AAE
        r = aaer_regularizer(
            logits_before=o.detach(), logits_after=o * 2, loss_before=lb, loss_after=la
        )
        assert float(r) == 0.0 and not r.requires_grad


def test_only_lambda3_term_has_gradient() -> None:
    """lambda3 = 0: dR/dlogits = 0 (the lambda2 term is a constant, as in the official code)."""
    g = torch.Generator().manual_seed(2)
    o0 = torch.randn(8, 3, generator=g)
    o = (torch.randn(8, 3, generator=g) * 5).requires_grad_(True)
    lb, la = torch.rand(8, generator=g), torch.rand(8, generator=g)
    r = aaer_regularizer(
        logits_before=o0, logits_after=o, loss_before=lb, loss_after=la, lambda3=0.0
    )
    (grad,) = torch.autograd.grad(r, o, allow_unused=True) if r.requires_grad else (None,)
    assert grad is None or float(grad.abs().max()) == 0.0
    assert float(r.detach()) > 0  # the constant lambda2 term is still there


def test_lambda3_zero_gives_plain_fgsm_gradients() -> None:
    model, (x, y) = _net(), _data()

    def grads(l3: float, l1: float) -> list[torch.Tensor]:
        model.zero_grad()
        out = aaer_loss(
            model,
            x,
            y,
            epsilon=0.3,
            lambda1=l1,
            lambda3=l3,
            generator=torch.Generator().manual_seed(0),
        )
        out.loss.backward()
        return [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]

    for a, b in zip(grads(0.0, 1.0), grads(1.5, 0.0), strict=True):
        torch.testing.assert_close(a, b)


def test_step_matches_official_loop_transcription() -> None:
    """Random start, one signed step, box, two forwards, AAE split -- as CIFAR10/AAER.py."""
    model, (x, y) = _net(), _data()
    eps, alpha = 0.2, 1.0
    out = aaer_loss(
        model, x, y, epsilon=eps, alpha=alpha, generator=torch.Generator().manual_seed(4)
    )
    g = torch.Generator().manual_seed(4)
    delta = (torch.rand(x.shape, generator=g, dtype=torch.float64) * 2 - 1) * 2 * eps
    delta = torch.max(torch.min(delta, 1 - x), 0 - x).requires_grad_(True)
    o_before = model(x + delta)
    l_before = nn.CrossEntropyLoss(reduction="none")(o_before, y)
    l_before.mean().backward()
    d = delta.detach() + alpha * eps * delta.grad.sign()  # type: ignore[union-attr]
    d = torch.max(torch.min(d, 1 - x), 0 - x)
    o = model((x + d).clamp(0, 1))
    l_after = nn.CrossEntropyLoss(reduction="none")(o, y)
    torch.testing.assert_close(out.x_adv, (x + d).clamp(0, 1))
    ab = l_before.detach() > l_after.detach()
    assert int(out.num_abnormal) == int(ab.sum())
    want = aaer_regularizer(
        logits_before=o_before.detach(),
        logits_after=o,
        loss_before=l_before.detach(),
        loss_after=l_after.detach(),
    )
    torch.testing.assert_close(out.regularizer, want)
    torch.testing.assert_close(out.ce, l_after.mean())


def test_project_keeps_within_epsilon_and_no_projection_reaches_3eps() -> None:
    model, (x, y) = _net(), _data()
    g = torch.Generator().manual_seed(0)
    rs = aaer_loss(model, x, y, epsilon=0.1, alpha=1.25, project=True, generator=g)
    assert float((rs.x_adv - x).abs().max()) <= 0.1 + 1e-12
    n = aaer_loss(model, x, y, epsilon=0.1, project=False, generator=g)
    assert float((n.x_adv - x).abs().max()) > 0.1
    assert float((n.x_adv - x).abs().max()) <= 0.3 + 1e-12


def test_zero_start_is_fgsm_from_x() -> None:
    """--delta-init zero: l_before is the clean loss and x_adv is FGSM of x (projected)."""
    from posneg.adversarial.attacks import fgsm

    model, (x, y) = _net(), _data()
    out = aaer_loss(model, x, y, epsilon=0.1, project=True, random_start=False)
    torch.testing.assert_close(out.x_adv, fgsm(model, x, y, epsilon=0.1))


def test_module_and_global_rng() -> None:
    model, (x, y) = _net(), _data()
    state = torch.get_rng_state()
    a = AAERLoss(epsilon=0.2)(model, x, y, generator=torch.Generator().manual_seed(1))
    b = aaer_loss(model, x, y, epsilon=0.2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(a.loss, b.loss)
    assert "lambda3=1.5" in repr(AAERLoss(epsilon=0.2))


def test_errors() -> None:
    model, (x, y) = _net(), _data()
    with pytest.raises(ValueError, match="aaer_loss: epsilon"):
        aaer_loss(model, x, y, epsilon=0.0)
    with pytest.raises(ValueError, match="AAERLoss: lambda2"):
        AAERLoss(epsilon=0.1, lambda2=-1.0)
    o = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="aaer_regularizer: loss_after"):
        aaer_regularizer(
            logits_before=o, logits_after=o, loss_before=torch.zeros(4), loss_after=torch.zeros(3)
        )
