"""posneg.losses focal / FocalLoss against torchvision.ops.sigmoid_focal_loss and kornia's focal
losses (torchvision 0.29 ``torchvision/ops/focal_loss.py``; kornia 0.9 ``kornia/losses/focal.py``).

- torchvision: the binary (sigmoid) form of the paper, ``alpha_t = alpha y + (1 - alpha)(1 - y)``
  with ``alpha = -1`` for no weighting, ``"mean"`` over all elements: posneg's binary form with
  ``alpha=None`` for ``-1``.
- kornia ``binary_focal_loss_with_logits`` (``(B, C, *)`` logits): the same formula through
  log-sigmoids.
- kornia ``focal_loss`` (multi-class, ``(B, C, *)`` logits, integer targets): the per-pixel loss
  and ``"sum"`` agree with posneg's softmax form; its ``"mean"`` divides by ``C`` times the
  number of pixels (it averages a one-hot map), posneg's by the number of pixels
  (``F.cross_entropy``'s mean): shown in ``test_kornia_multiclass_mean_divides_by_classes``.
"""

from __future__ import annotations

import pytest
import torch
from _peer import peer

from posneg.losses import FocalLoss, focal

tv_ops = peer("torchvision.ops")
kornia_losses = peer("kornia.losses")


def _binary(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64) * 3
    target = (torch.rand(4, 3, 5, 6, generator=g) < 0.3).to(torch.float64)
    return logits, target


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [None, 0.0, 0.25, 0.9])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_binary_equals_torchvision_sigmoid_focal_loss(
    gamma: float, alpha: float | None, reduction: str
) -> None:
    logits, target = _binary()
    want = tv_ops.sigmoid_focal_loss(
        logits, target, alpha=-1.0 if alpha is None else alpha, gamma=gamma, reduction=reduction
    )
    got = FocalLoss(gamma=gamma, alpha=alpha, reduction=reduction)(logits, target)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_binary_soft_targets_equal_torchvision() -> None:
    """Soft targets in [0, 1] (both libraries accept them): same formula."""
    logits, _ = _binary(1)
    target = torch.rand(
        logits.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    want = tv_ops.sigmoid_focal_loss(logits, target, alpha=0.25, gamma=2.0, reduction="none")
    got = focal(logits, target, gamma=2.0, alpha=0.25, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_binary_gradients_equal_torchvision() -> None:
    logits, target = _binary(3)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    tv_ops.sigmoid_focal_loss(a, target, alpha=0.25, gamma=2.0, reduction="mean").backward()
    focal(b, target, gamma=2.0, alpha=0.25, reduction="mean").backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_binary_equals_kornia(gamma: float, alpha: float | None, reduction: str) -> None:
    logits, target = _binary(4)
    want = kornia_losses.binary_focal_loss_with_logits(
        logits, target, alpha=alpha, gamma=gamma, reduction=reduction
    )
    got = focal(logits, target, gamma=gamma, alpha=alpha, reduction=reduction)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def _multiclass(seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64) * 2  # (B, C, H, W)
    target = torch.randint(0, 4, (3, 5, 6), generator=g)
    return logits, target


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_multiclass_per_pixel_and_sum_equal_kornia(gamma: float) -> None:
    """kornia's per-pixel ``"none"`` output is a (B, C, H, W) map nonzero at the target class
    only: summed over C it is posneg's (B, H, W) loss (posneg takes classes last)."""
    logits, target = _multiclass()
    ours = focal(logits.movedim(1, -1), target, gamma=gamma, reduction="none")
    theirs = kornia_losses.focal_loss(logits, target, alpha=None, gamma=gamma, reduction="none")
    torch.testing.assert_close(ours, theirs.sum(dim=1), rtol=1e-10, atol=1e-12)
    got_sum = focal(logits.movedim(1, -1), target, gamma=gamma, reduction="sum")
    want_sum = kornia_losses.focal_loss(logits, target, alpha=None, gamma=gamma, reduction="sum")
    torch.testing.assert_close(got_sum, want_sum, rtol=1e-10, atol=1e-12)


def test_kornia_multiclass_mean_divides_by_classes() -> None:
    """Deliberate difference. kornia's ``"mean"`` averages its (B, C, H, W) map, i.e. divides the
    sum by C times the pixel count; posneg's ``"mean"`` is the mean over pixels (so that
    ``gamma = 0`` is ``F.cross_entropy``). They differ by exactly the factor C."""
    logits, target = _multiclass()
    c = logits.shape[1]
    ours = focal(logits.movedim(1, -1), target, gamma=2.0, reduction="mean")
    theirs = kornia_losses.focal_loss(logits, target, alpha=None, gamma=2.0, reduction="mean")
    torch.testing.assert_close(ours, theirs * c, rtol=1e-10, atol=1e-12)
    ce = torch.nn.functional.cross_entropy(logits, target)
    torch.testing.assert_close(focal(logits.movedim(1, -1), target, gamma=0.0), ce)
