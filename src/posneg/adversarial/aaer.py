"""AAER: abnormal adversarial examples regularisation for single-step adversarial training.

Lin, Yu, Liu. Eliminating Catastrophic Overfitting via Abnormal Adversarial Examples
Regularization. NeurIPS 2023.

One training step (the official ``CIFAR10/AAER.py`` loop): a random start ``delta_0``
(``U[-2 eps, 2 eps]`` for N-AAER, ``project=False``; ``U[-eps, eps]`` for RS-AAER,
``project=True``), clipped to the image box; logits ``o_0`` and per-sample losses
``l_before`` at ``x + delta_0`` (detached); one signed-gradient step
``delta = delta_0 + alpha * sign(grad)`` (``alpha`` in units of ``eps``), projected onto
``[-eps, eps]`` only with ``project=True``, clipped to the box; logits ``o`` and losses
``l_after`` at ``x + delta``. Abnormal adversarial examples (AAEs) are those whose loss the
attack step *lowered*, ``A = {i : l_before_i > l_after_i}`` (N its complement), and

    R = lambda1 * |A| / B * ( lambda2 * mean_{i in A}(l_before_i - l_after_i)
                              + lambda3 * max(V_A - V_N, 0) )
    V_S = mean_{i in S} ||o_i - o_0_i||_2^2
    L = mean_i CE(o_i, y_i) + R                      (R = 0 when A or N is empty)

As in the official code, ``l_before``, ``l_after``, ``o_0``, ``|A|`` and ``V_N`` are constants
(detached / ``.item()``), so the ``lambda2`` term adds a constant and only
``lambda3 * V_A`` (through the post-attack logits of the AAEs, while ``V_A > V_N``) carries
gradient. Checked against github.com/tmllab/2023_NeurIPS_AAER, ``CIFAR10/AAER.py`` and
``CIFAR10/utils.py`` (``l2_square``), commit 5ad2591 (2025-02-15), on 2026-12-06. The official
script works on mean/std-normalised inputs with epsilon divided by std; here inputs are in the
box ``clamp`` and epsilon in its units. Its noise tensor is drawn at full batch size and sliced
for a short last batch; here it is drawn at the batch's size. Both forwards run in the
model's current mode (BatchNorm statistics updated twice, as in the official code).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from posneg.adversarial.aaer import AAERLoss
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    >>> x, y = torch.rand(8, 1, 4, 4), torch.randint(3, (8,))
    >>> out = AAERLoss(epsilon=0.3)(model, x, y, generator=torch.Generator().manual_seed(0))
    >>> out.loss.backward()
    >>> out.loss.dim(), int(out.num_abnormal) <= 8
    (0, True)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks

__all__ = ["AAERLoss", "AAEROutput", "aae_mask", "aaer_loss", "aaer_regularizer", "l2_square"]

CITATION = """
@inproceedings{lin2023aaer,
  title     = {Eliminating Catastrophic Overfitting via Abnormal Adversarial Examples
               Regularization},
  author    = {Lin, Runqi and Yu, Chaojian and Liu, Tongliang},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2023},
  note      = {arXiv:2404.08154}
}
"""


class AAEROutput(NamedTuple):
    """One AAER training step: ``loss = ce + regularizer`` (backpropagate ``loss``)."""

    loss: torch.Tensor
    ce: torch.Tensor
    regularizer: torch.Tensor
    num_abnormal: torch.Tensor
    x_adv: torch.Tensor


def l2_square(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Official ``l2_square``: mean over rows of the squared L2 distance, ``(N, C) -> ()``."""
    d = a - b
    return (d * d).sum(1).mean(0)


def aae_mask(loss_before: torch.Tensor, loss_after: torch.Tensor) -> torch.Tensor:
    """Abnormal adversarial examples: the attack step lowered the loss, ``l_before > l_after``."""
    return loss_before > loss_after


def aaer_regularizer(
    *,
    logits_before: torch.Tensor,
    logits_after: torch.Tensor,
    loss_before: torch.Tensor,
    loss_after: torch.Tensor,
    lambda1: float = 1.0,
    lambda2: float = 4.0,
    lambda3: float = 1.5,
) -> torch.Tensor:
    """The AAER term ``R`` (module docstring) from the two forwards of one FGSM step.

    Args:
        logits_before: ``(B, C)`` logits at the random start (treated as constants).
        logits_after: ``(B, C)`` logits at the adversarial example (gradient flows here).
        loss_before, loss_after: ``(B,)`` per-sample cross-entropies (treated as constants).
        lambda1, lambda2, lambda3: the weights (argparse defaults 1, 4, 1.5).

    Returns:
        A scalar; exactly 0 (no gradient) when every or no example is abnormal.
    """
    fn = "aaer_regularizer"
    _checks.check_embeddings(fn, "logits_after", logits_after)
    _checks.check_same_shape(fn, "logits_before", logits_before, "logits_after", logits_after)
    b = logits_after.shape[0]
    for name, t in (("loss_before", loss_before), ("loss_after", loss_after)):
        _checks.check_float(fn, name, t)
        if t.shape != (b,):
            raise ValueError(f"{fn}: {name} must have shape ({b},); got {tuple(t.shape)}")
    l1 = _checks.check_nonnegative(fn, "lambda1", lambda1)
    l2 = _checks.check_nonnegative(fn, "lambda2", lambda2)
    l3 = _checks.check_nonnegative(fn, "lambda3", lambda3)
    lb, la, o0 = loss_before.detach(), loss_after.detach(), logits_before.detach()
    abnormal = aae_mask(lb, la)
    n_ab = int(abnormal.sum())
    zero = logits_after.sum() * 0.0
    if n_ab == 0 or n_ab == b:
        return zero.detach()
    normal = ~abnormal
    v_a = l2_square(o0[abnormal], logits_after[abnormal])
    v_n = float(l2_square(o0[normal], logits_after[normal]).detach())
    ce_gap = (lb - la)[abnormal].sum() / n_ab
    gap = v_a - v_n
    variation = gap if float(gap.detach()) > 0 else zero
    return (l1 * n_ab / b) * (l2 * ce_gap + l3 * variation)


def _box(x: torch.Tensor, clamp: tuple[float, float] | None) -> torch.Tensor:
    return x if clamp is None else x.clamp(clamp[0], clamp[1])


def aaer_loss(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    alpha: float = 1.0,
    project: bool = False,
    lambda1: float = 1.0,
    lambda2: float = 4.0,
    lambda3: float = 1.5,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> AAEROutput:
    """One AAER training objective: FGSM example from a random start, CE on it, plus ``R``.

    ``lambda1 = 0`` gives plain single-step adversarial training with the same attack
    (N-FGSM with ``project=False``, FGSM-RS with ``project=True`` and ``alpha=1.25``).

    Args:
        model: ``x -> logits (B, C)``, in training mode (caller's choice).
        x: inputs ``(B, ...)`` in the box ``clamp``; y: int64 labels ``(B,)``.
        epsilon: L-inf radius (> 0), in input units.
        alpha: step size as a multiple of ``epsilon`` (official default 1.0; RS-AAER 1.25).
        project: clip the perturbation to ``[-eps, eps]`` (RS-AAER, ``--clamp 1``) with a
            ``U[-eps, eps]`` start; ``False`` (N-AAER, default) starts at ``U[-2 eps, 2 eps]``.
        lambda1, lambda2, lambda3: AAER weights.
        clamp: the image box (``None``: no box).
        random_start: the official ``--delta-init random`` (default); ``False`` is its
            ``zero`` (classic FGSM from ``x``: ``l_before`` is then the clean loss).
        generator: draws the random start (``None``: global RNG).

    Returns:
        :class:`AAEROutput` (loss, ce, regularizer, num_abnormal, x_adv).
    """
    fn = "aaer_loss"
    if not callable(model):
        raise TypeError(f"{fn}: model must be callable; got {type(model).__name__}")
    _checks.check_float(fn, "x", x)
    y = _checks.check_labels(fn, "y", y, x.shape[0], x.device)
    eps = _checks.check_positive(fn, "epsilon", epsilon)
    step = _checks.check_positive(fn, "alpha", alpha) * eps
    proj = _checks.check_bool(fn, "project", project)
    start = _checks.check_bool(fn, "random_start", random_start)
    _checks.check_generator(fn, generator, x.device)
    x = x.detach()
    x0 = x.clone()
    if start:
        radius = eps if proj else 2.0 * eps
        u = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
        x0 = _box(x + (2.0 * u - 1.0) * radius, clamp)
    x0 = x0.detach().requires_grad_(True)
    with torch.enable_grad():
        out0 = model(x0)
        loss0 = F.cross_entropy(out0, y, reduction="none")
        (grad,) = torch.autograd.grad(loss0.mean(), x0)
    delta = x0.detach() - x + step * grad.sign()
    if proj:
        delta = delta.clamp(-eps, eps)
    x_adv = _box(x + delta, clamp).detach()
    out = model(x_adv)
    loss_after = F.cross_entropy(out, y, reduction="none")
    ce = loss_after.mean()
    reg = aaer_regularizer(
        logits_before=out0.detach(),
        logits_after=out,
        loss_before=loss0.detach(),
        loss_after=loss_after.detach(),
        lambda1=lambda1,
        lambda2=lambda2,
        lambda3=lambda3,
    )
    n_ab = aae_mask(loss0.detach(), loss_after.detach()).sum()
    return AAEROutput(loss=ce + reg, ce=ce, regularizer=reg, num_abnormal=n_ab, x_adv=x_adv)


class AAERLoss(nn.Module):
    """Stateless module form of :func:`aaer_loss`; ``forward(model, x, y, generator=None)``."""

    def __init__(
        self,
        *,
        epsilon: float,
        alpha: float = 1.0,
        project: bool = False,
        lambda1: float = 1.0,
        lambda2: float = 4.0,
        lambda3: float = 1.5,
        clamp: tuple[float, float] | None = (0.0, 1.0),
        random_start: bool = True,
    ) -> None:
        super().__init__()
        fn = "AAERLoss"
        self.random_start = _checks.check_bool(fn, "random_start", random_start)
        self.epsilon = _checks.check_positive(fn, "epsilon", epsilon)
        self.alpha = _checks.check_positive(fn, "alpha", alpha)
        self.project = _checks.check_bool(fn, "project", project)
        self.lambda1 = _checks.check_nonnegative(fn, "lambda1", lambda1)
        self.lambda2 = _checks.check_nonnegative(fn, "lambda2", lambda2)
        self.lambda3 = _checks.check_nonnegative(fn, "lambda3", lambda3)
        self.clamp = clamp

    def forward(
        self,
        model: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> AAEROutput:
        return aaer_loss(
            model,
            x,
            y,
            epsilon=self.epsilon,
            alpha=self.alpha,
            project=self.project,
            lambda1=self.lambda1,
            lambda2=self.lambda2,
            lambda3=self.lambda3,
            clamp=self.clamp,
            random_start=self.random_start,
            generator=generator,
        )

    def extra_repr(self) -> str:
        return (
            f"epsilon={self.epsilon}, alpha={self.alpha}, project={self.project}, "
            f"lambda1={self.lambda1}, lambda2={self.lambda2}, lambda3={self.lambda3}, "
            f"random_start={self.random_start}"
        )
