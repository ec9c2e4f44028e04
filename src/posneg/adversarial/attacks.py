"""Gradient attacks on any classifier: FGSM and PGD (L-inf and L2).

FGSM (Goodfellow, Shlens, Szegedy, ICLR 2015, arXiv 1412.6572) takes one signed-gradient step,

    x_adv = clamp(x + epsilon * sign(grad_x L(f(x), y)))

and PGD (Madry, Makelov, Schmidt, Tsipras, Vladu, ICLR 2018, arXiv 1706.06083) iterates a step
and a projection back onto the epsilon-ball around ``x``:

    x_0     = clamp(x + delta_0)                   (random start) or x
    linf:   x_{t+1} = clamp(x + P_inf(x_t + step_size * sign(g_t) - x))
            P_inf(d) = clip(d, -epsilon, epsilon)
    l2:     x_{t+1} = clamp(x + P_2(x_t + step_size * g_t / (||g_t||_2 + 1e-10) - x))
            P_2(d)   = d * min(1, epsilon / ||d||_2)     (per sample)

with ``g_t = grad_x L(f(x_t), y)`` and ``clamp`` the valid input box (``[0, 1]`` by default,
``None`` for none). The random start follows the widely used torchattacks implementation
(github.com/Harry24k/adversarial-attacks-pytorch, ``torchattacks/attacks/pgd.py`` and
``pgdl2.py``, v3.5.1): L-inf ``delta_0 ~ U(-epsilon, epsilon)`` per element; L2
``delta_0 = epsilon * r * z / ||z||_2`` with ``z ~ N(0, I)`` and ``r ~ U(0, 1)`` per sample
(a random direction at a uniform radius -- not uniform in the ball), both then clamped. The
loss is summed over the batch (so a sample's perturbation does not depend on its batch-mates;
the sign and the L2-normalised gradient make this equal to torchattacks' mean up to the 1e-10).

Gradients are taken with :func:`torch.autograd.grad` with respect to the input only, so the
model's parameters' ``.grad`` is never touched. Putting the model in eval mode is the caller's
job. Randomness (the PGD random start) only through ``generator``: with one given, the global RNG
is left untouched; ``None`` uses torch's global RNG.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from posneg.adversarial.attacks import fgsm, pgd
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    >>> x_adv = fgsm(model, x, y, epsilon=0.1)
    >>> bool(((x_adv - x).abs() <= 0.1 + 1e-6).all())
    True
    >>> g = torch.Generator().manual_seed(0)
    >>> x_adv = pgd(model, x, y, epsilon=0.1, step_size=0.02, steps=5, generator=g)
    >>> x_adv.shape
    torch.Size([5, 1, 2, 2])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks

__all__ = ["FGSM", "PGD", "fgsm", "pgd"]

CITATION = """
@inproceedings{goodfellow2015fgsm,
  title     = {Explaining and Harnessing Adversarial Examples},
  author    = {Goodfellow, Ian J. and Shlens, Jonathon and Szegedy, Christian},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2015},
  note      = {arXiv:1412.6572}
}
@inproceedings{madry2018pgd,
  title     = {Towards Deep Learning Models Resistant to Adversarial Attacks},
  author    = {Madry, Aleksander and Makelov, Aleksandar and Schmidt, Ludwig and
               Tsipras, Dimitris and Vladu, Adrian},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2018},
  note      = {arXiv:1706.06083}
}
"""

Norm = Literal["linf", "l2"]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_NORMS = ("linf", "l2")
_L2_EPS = 1e-10


def _check_inputs(fn: str, model: Any, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not callable(model):
        raise TypeError(f"{fn}: model must be callable (an nn.Module); got {type(model).__name__}")
    _checks.check_float(fn, "x", x)
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"{fn}: x must have shape (N, ...) with N >= 1; got {tuple(x.shape)}")
    _checks.check_finite(fn, "x", x)
    y = _checks.check_labels(fn, "y", y, x.shape[0], x.device)
    return x, y


def _check_clamp(fn: str, clamp: Any) -> tuple[float, float] | None:
    if clamp is None:
        return None
    if not isinstance(clamp, tuple | list) or len(clamp) != 2:
        raise TypeError(f"{fn}: clamp must be a (low, high) pair or None; got {clamp!r}")
    low = _checks.check_real(fn, "clamp[0]", clamp[0])
    high = _checks.check_real(fn, "clamp[1]", clamp[1])
    if not low < high:
        raise ValueError(f"{fn}: clamp must have low < high; got {clamp!r}")
    return low, high


def _check_loss_fn(fn: str, loss_fn: Any) -> LossFn:
    if loss_fn is None:
        return _sum_cross_entropy
    if not callable(loss_fn):
        raise TypeError(f"{fn}: loss_fn must be callable or None; got {type(loss_fn).__name__}")
    return loss_fn


def _sum_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y, reduction="sum")


def _box(x: torch.Tensor, clamp: tuple[float, float] | None) -> torch.Tensor:
    return x if clamp is None else x.clamp(clamp[0], clamp[1])


def _input_grad(
    fn: str, model: Any, x_adv: torch.Tensor, y: torch.Tensor, loss_fn: LossFn
) -> torch.Tensor:
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(model(x_adv), y)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"{fn}: loss_fn must return a scalar tensor")
        (grad,) = torch.autograd.grad(loss.sum(), x_adv)
    return grad


def _l2_norms(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norms shaped to broadcast against ``t`` (N, 1, ..., 1)."""
    view = (t.shape[0],) + (1,) * (t.dim() - 1)
    return t.flatten(1).norm(p=2, dim=1).view(view)


def fgsm(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    loss_fn: LossFn | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Fast gradient sign method: ``clamp(x + epsilon * sign(grad_x L(model(x), y)))``.

    Args:
        model: any callable ``x -> logits (N, C)``; eval mode is the caller's job.
        x: inputs ``(N, ...)``, floating point.
        y: int64 labels ``(N,)`` on ``x``'s device.
        epsilon: L-inf radius (>= 0); 0 returns a copy of ``x``.
        loss_fn: ``loss_fn(logits, y) -> scalar``; default cross-entropy summed over the batch.
        clamp: the valid input box ``(low, high)``, or ``None``.

    Returns:
        Detached adversarial inputs of ``x``'s shape and dtype.
    """
    fn = "fgsm"
    x, y = _check_inputs(fn, model, x, y)
    eps = _checks.check_nonnegative(fn, "epsilon", epsilon)
    box = _check_clamp(fn, clamp)
    loss = _check_loss_fn(fn, loss_fn)
    if eps == 0.0:
        return x.detach().clone()
    grad = _input_grad(fn, model, x, y, loss)
    return _box(x.detach() + eps * grad.sign(), box).detach()


def pgd(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    step_size: float,
    steps: int,
    norm: Norm = "linf",
    random_start: bool = True,
    generator: torch.Generator | None = None,
    loss_fn: LossFn | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Projected gradient descent (ascent on the loss) in an L-inf or L2 ball around ``x``.

    Args:
        model: any callable ``x -> logits (N, C)``; eval mode is the caller's job.
        x: inputs ``(N, ...)``, floating point.
        y: int64 labels ``(N,)`` on ``x``'s device.
        epsilon: ball radius (>= 0); 0 returns a copy of ``x``.
        step_size: step length per iteration (> 0).
        steps: number of iterations (>= 0; 0 returns the (random) start).
        norm: ``"linf"`` (signed steps, clip) or ``"l2"`` (normalised steps, rescale).
        random_start: start from a random point of the ball (see the module docstring).
        generator: draws the random start; ``None`` uses the global RNG.
        loss_fn: ``loss_fn(logits, y) -> scalar``; default cross-entropy summed over the batch.
        clamp: the valid input box ``(low, high)``, or ``None``.

    Returns:
        Detached adversarial inputs of ``x``'s shape and dtype, within ``epsilon`` of ``x``.
    """
    fn = "pgd"
    x, y = _check_inputs(fn, model, x, y)
    eps = _checks.check_nonnegative(fn, "epsilon", epsilon)
    alpha = _checks.check_positive(fn, "step_size", step_size)
    n_steps = _checks.check_int(fn, "steps", steps, min_value=0)
    kind = _checks.check_choice(fn, "norm", norm, _NORMS)
    start = _checks.check_bool(fn, "random_start", random_start)
    _checks.check_generator(fn, generator, x.device)
    box = _check_clamp(fn, clamp)
    loss = _check_loss_fn(fn, loss_fn)
    if eps == 0.0:
        return x.detach().clone()
    x0 = x.detach()
    adv = x0.clone()
    if start:
        if kind == "linf":
            u = torch.rand(x0.shape, dtype=x0.dtype, device=x0.device, generator=generator)
            adv = _box(x0 + (2.0 * u - 1.0) * eps, box)
        else:
            z = torch.randn(x0.shape, dtype=x0.dtype, device=x0.device, generator=generator)
            r = torch.rand(
                (x0.shape[0],) + (1,) * (x0.dim() - 1),
                dtype=x0.dtype,
                device=x0.device,
                generator=generator,
            )
            adv = _box(x0 + z * (r / _l2_norms(z)) * eps, box)
    for _ in range(n_steps):
        grad = _input_grad(fn, model, adv, y, loss)
        if kind == "linf":
            adv = adv + alpha * grad.sign()
            delta = (adv - x0).clamp(-eps, eps)
        else:
            adv = adv + alpha * grad / (_l2_norms(grad) + _L2_EPS)
            delta = adv - x0
            delta = delta * (eps / _l2_norms(delta)).clamp(max=1.0)
        adv = _box(x0 + delta, box).detach()
    return adv.detach()


class FGSM(nn.Module):
    """Stateless module form of :func:`fgsm`: ``FGSM(epsilon=8/255)(model, x, y)``."""

    def __init__(
        self,
        *,
        epsilon: float,
        clamp: tuple[float, float] | None = (0.0, 1.0),
        loss_fn: LossFn | None = None,
    ) -> None:
        super().__init__()
        self.epsilon = _checks.check_nonnegative("FGSM", "epsilon", epsilon)
        self.clamp = _check_clamp("FGSM", clamp)
        self.loss_fn = None if loss_fn is None else _check_loss_fn("FGSM", loss_fn)

    def forward(self, model: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fgsm(model, x, y, epsilon=self.epsilon, loss_fn=self.loss_fn, clamp=self.clamp)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, clamp={self.clamp}"


class PGD(nn.Module):
    """Stateless module form of :func:`pgd`: ``PGD(epsilon=8/255, step_size=2/255, steps=10)``."""

    def __init__(
        self,
        *,
        epsilon: float,
        step_size: float,
        steps: int,
        norm: Norm = "linf",
        random_start: bool = True,
        clamp: tuple[float, float] | None = (0.0, 1.0),
        loss_fn: LossFn | None = None,
    ) -> None:
        super().__init__()
        self.epsilon = _checks.check_nonnegative("PGD", "epsilon", epsilon)
        self.step_size = _checks.check_positive("PGD", "step_size", step_size)
        self.steps = _checks.check_int("PGD", "steps", steps, min_value=0)
        _checks.check_choice("PGD", "norm", norm, _NORMS)
        self.norm: Norm = norm
        self.random_start = _checks.check_bool("PGD", "random_start", random_start)
        self.clamp = _check_clamp("PGD", clamp)
        self.loss_fn = None if loss_fn is None else _check_loss_fn("PGD", loss_fn)

    def forward(
        self,
        model: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return pgd(
            model,
            x,
            y,
            epsilon=self.epsilon,
            step_size=self.step_size,
            steps=self.steps,
            norm=self.norm,
            random_start=self.random_start,
            generator=generator,
            loss_fn=self.loss_fn,
            clamp=self.clamp,
        )

    def extra_repr(self) -> str:
        return (
            f"epsilon={self.epsilon}, step_size={self.step_size}, steps={self.steps}, "
            f"norm={self.norm!r}, random_start={self.random_start}, clamp={self.clamp}"
        )
