"""Focal loss: cross-entropy scaled by ``(1 - p_t)^gamma`` so that easy examples count less.

Lin, Goyal, Girshick, He, Dollar. *Focal Loss for Dense Object Detection.* ICCV 2017,
arXiv 1708.02002.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype
from posneg._types import Reduction

__all__ = ["FocalLoss", "focal"]

CITATION = """
@inproceedings{lin2017focal,
  title     = {Focal Loss for Dense Object Detection},
  author    = {Lin, Tsung-Yi and Goyal, Priya and Girshick, Ross and He, Kaiming and
               Doll{\\'a}r, Piotr},
  booktitle = {Proceedings of the IEEE International Conference on Computer Vision (ICCV)},
  pages     = {2980--2988},
  year      = {2017},
  note      = {arXiv:1708.02002}
}
"""

Alpha = float | Sequence[float] | torch.Tensor | None


def _check_gamma(fn: str, gamma: Any) -> float:
    return _checks.check_nonnegative(fn, "gamma", gamma)


def _check_alpha(fn: str, alpha: Any) -> None:
    """None, a real in [0, 1] (binary), or a 1-D sequence/tensor of finite weights >= 0."""
    if alpha is None:
        return
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):  # numpy scalars too
        _checks.check_range(fn, "alpha", alpha, 0.0, 1.0)
        return
    if isinstance(alpha, torch.Tensor):
        if alpha.dtype == torch.bool or alpha.is_complex():
            raise TypeError(f"{fn}: alpha must be a real tensor; got {alpha.dtype}")
        vals = alpha.detach().double().cpu()
        if vals.dim() != 1 or vals.numel() < 2:
            raise ValueError(
                f"{fn}: alpha as a tensor must have shape (C,) with C >= 2; got {tuple(vals.shape)}"
            )
    elif isinstance(alpha, Sequence) and not isinstance(alpha, str):
        if len(alpha) < 2:
            raise ValueError(f"{fn}: alpha as a sequence needs one weight per class (C >= 2)")
        for a in alpha:
            _checks.check_real(fn, "alpha[c]", a)
        vals = torch.tensor([float(a) for a in alpha], dtype=torch.float64)
    else:
        raise TypeError(
            f"{fn}: alpha must be None, a float in [0, 1] (binary) or a sequence of C class "
            f"weights (multi-class); got {type(alpha).__name__}"
        )
    if not bool(torch.isfinite(vals).all()) or bool((vals < 0).any()):
        raise ValueError(f"{fn}: alpha class weights must be finite and >= 0; got {vals.tolist()}")


def _check_ignore_index(fn: str, ignore_index: Any) -> int | None:
    """None or an int (Python or numpy integer, never a bool), returned as a Python ``int``."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(
            f"{fn}: ignore_index must be an int or None; got {type(ignore_index).__name__}"
        )
    return int(ignore_index)


def _modulating(one_minus_pt: torch.Tensor, gamma: float) -> torch.Tensor:
    """``(1 - p_t)^gamma`` exact at ``p_t = 1`` with a finite (zero) gradient there."""
    if gamma == 0:
        return torch.ones_like(one_minus_pt)
    live = one_minus_pt > 0
    safe = torch.where(live, one_minus_pt, torch.ones_like(one_minus_pt))
    return torch.where(live, safe.pow(gamma), torch.zeros_like(one_minus_pt))


def focal(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: Alpha = None,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Focal loss for multi-class logits or binary (sigmoid) logits.

    Lin, Goyal, Girshick, He, Dollar. *Focal Loss for Dense Object Detection.* ICCV 2017,
    arXiv 1708.02002.

    With ``p_t`` the probability the model gives the true class::

        FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)

    - **Multi-class** (``input`` of shape ``(*S, C)``, integer ``target`` of shape ``S``, for
      example ``(N, C)`` and ``(N,)``): ``p_t = softmax(input)[target]``; ``alpha`` is ``None``
      (all 1) or ``C`` class weights and ``alpha_t = alpha[target]``.
    - **Binary** (``target`` of ``input``'s shape, values in [0, 1]): ``p = sigmoid(input)``,
      ``p_t = p y + (1 - p)(1 - y)``, ``log p_t`` is the binary cross-entropy with logits and
      ``alpha_t = alpha y + (1 - alpha)(1 - y)`` for a scalar ``alpha`` in [0, 1] (the paper's
      alpha-balanced form; its detection setting is ``gamma=2, alpha=0.25``).

    ``gamma = 0`` gives (weighted) cross-entropy. Defaults: ``gamma = 2`` (the paper's best) and
    ``alpha = None``: the paper's ``alpha = 0.25`` *down*-weights the rare positives of dense
    detection, which is not what a user of an imbalance loss usually expects, so it is opt-in.

    Reductions follow the matching ``torch.nn.functional`` loss, so that ``gamma = 0`` reproduces
    it exactly: multi-class ``"mean"`` divides by ``sum alpha_t`` over the kept entries (the
    weighted mean of ``F.cross_entropy(weight=alpha)``; by their count when ``alpha`` is None);
    binary ``"mean"`` divides by the number of kept elements (as
    ``F.binary_cross_entropy_with_logits`` and torchvision's ``sigmoid_focal_loss`` do). The
    paper instead normalises by the number of anchors assigned to objects; divide a ``"sum"``
    yourself for that.

    Args:
        input: logits, ``(*S, C)`` multi-class or ``S`` binary.
        target: integer class indices of shape ``S`` (multi-class) or 0/1 targets of ``input``'s
            shape (binary; float, int or bool).
        gamma: focusing parameter, >= 0.
        alpha: ``None``; binary: a float in [0, 1]; multi-class: ``C`` weights >= 0 (sequence
            or tensor).
        ignore_index: entries whose target equals it contribute nothing (and do not count in
            the mean).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape ``S``, ignored entries 0).

    Returns:
        The loss, float32 for half inputs, else ``input``'s dtype. A mean over zero kept
        entries is 0 (the graph stays connected).

    Raises:
        TypeError: non-float ``input``, non-integer multi-class ``target``, bad ``alpha`` type.
        ValueError: shapes that fit neither layout, class indices out of range, binary targets
            outside [0, 1], a scalar ``alpha`` with multi-class input or ``C`` weights with
            binary input, a wrong number of weights, NaN/inf logits.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        >>> target = torch.tensor([0, 2])
        >>> ce = torch.nn.functional.cross_entropy(logits, target)
        >>> bool(torch.isclose(focal(logits, target, gamma=0.0), ce))
        True
        >>> bool(focal(logits, target, gamma=2.0) < ce)
        True
    """
    fn = "focal"
    g = _check_gamma(fn, gamma)
    _check_alpha(fn, alpha)
    ignore_index = _check_ignore_index(fn, ignore_index)
    reduction = _checks.check_reduction(fn, reduction)
    _checks.check_float(fn, "input", input)
    _checks.check_tensor(fn, "target", target)
    _checks.check_same_device(fn, "target", target, "input", input)
    if target.is_complex():
        raise TypeError(f"{fn}: target must be a real tensor; got {target.dtype}")
    if tuple(target.shape) == tuple(input.shape):
        multiclass = False
    elif input.dim() >= 1 and tuple(target.shape) == tuple(input.shape[:-1]):
        multiclass = True
        if input.shape[-1] < 2:
            raise ValueError(
                f"{fn}: multi-class input must have C >= 2 classes in its last dimension; got "
                f"{tuple(input.shape)} (for binary input give target the shape of input)"
            )
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise TypeError(
                f"{fn}: multi-class target must hold integer class indices; got {target.dtype}"
            )
    else:
        raise ValueError(
            f"{fn}: target must have shape {tuple(input.shape)} (binary) or "
            f"{tuple(input.shape[:-1])} (multi-class, input (*S, C)); got {tuple(target.shape)}"
        )
    _checks.check_finite(fn, "input", input)
    keep = None if ignore_index is None else target != ignore_index  # None: all entries count
    dtype = compute_dtype(input)
    x = input.to(dtype)
    if multiclass:
        n_classes = int(input.shape[-1])
        bad = (target < 0) | (target >= n_classes)
        if keep is not None:
            bad = bad & keep
        if bool(bad.any()):
            kept = target if keep is None else target[keep]
            raise ValueError(
                f"{fn}: target class indices must be in [0, {n_classes - 1}] (or ignore_index); "
                f"got values in [{int(kept.min())}, {int(kept.max())}]"
            )
        if alpha is not None and not isinstance(alpha, (torch.Tensor, Sequence)):
            raise ValueError(
                f"{fn}: a scalar alpha is the binary alpha-balanced form; give C = {n_classes} "
                "class weights for multi-class input"
            )
        safe_t = (target if keep is None else torch.where(keep, target, 0)).long()
        logp_t = torch.log_softmax(x, dim=-1).gather(-1, safe_t.unsqueeze(-1)).squeeze(-1)
        one_minus_pt = -torch.expm1(logp_t)
        ce = -logp_t
        weight: torch.Tensor | None = None
        if alpha is not None:
            w = torch.as_tensor(alpha, dtype=dtype, device=input.device)
            if w.shape != (n_classes,):
                raise ValueError(
                    f"{fn}: alpha must hold one weight per class ({n_classes}); "
                    f"got {tuple(w.shape)}"
                )
            weight = w[safe_t]
    else:
        if isinstance(alpha, (torch.Tensor, Sequence)):
            raise ValueError(
                f"{fn}: binary input takes a scalar alpha in [0, 1] (the weight of positives); "
                "got class weights"
            )
        y = target.to(dtype)
        bad = (y < 0) | (y > 1)
        if keep is not None:
            bad = bad & keep
        if bool(bad.any()):
            kept_y = y if keep is None else y[keep]
            raise ValueError(
                f"{fn}: binary target values must be in [0, 1]; got values in "
                f"[{float(kept_y.min())}, {float(kept_y.max())}]"
            )
        if keep is not None:
            y = torch.where(keep, y, 0.0)
        ce = nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
        one_minus_pt = torch.sigmoid(x) * (1.0 - y) + torch.sigmoid(-x) * y
        weight = None
        if alpha is not None:
            a = float(alpha)
            weight = a * y + (1.0 - a) * (1.0 - y)
    per = _modulating(one_minus_pt, g) * ce
    if weight is not None:
        per = weight * per
    if keep is not None:
        per = torch.where(keep, per, 0.0)
    if reduction == "none":
        return per
    total = per.sum()
    if reduction == "sum":
        return total
    if multiclass and weight is not None:
        norm = (weight if keep is None else torch.where(keep, weight, 0.0)).sum()
    else:
        norm = torch.tensor(
            float(per.numel() if keep is None else int(keep.sum())), dtype=dtype, device=x.device
        )
    # 0 / 0 (nothing kept, or every kept weight 0) returns 0 with the graph connected
    return total / torch.where(norm > 0, norm, 1.0)


class FocalLoss(nn.Module):
    """Module form of :func:`focal` (stateless; hyperparameters validated here).

    Args:
        gamma: focusing parameter (paper: 2).
        alpha: ``None``, a binary positive-class weight in [0, 1] (paper: 0.25) or ``C`` class
            weights (stored as a buffer so that ``.to(device)`` moves it).
        ignore_index: targets equal to it are ignored.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example:
        >>> import torch
        >>> loss_fn = FocalLoss(gamma=2.0, alpha=0.25)
        >>> loss = loss_fn(torch.randn(6, requires_grad=True), torch.tensor([0, 1, 0, 0, 1, 0]))
        >>> loss.backward()
    """

    alpha_weights: torch.Tensor | None

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: Alpha = None,
        ignore_index: int | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        fn = "FocalLoss"
        self.gamma = _check_gamma(fn, gamma)
        _check_alpha(fn, alpha)
        ignore_index = _check_ignore_index(fn, ignore_index)
        self.reduction = _checks.check_reduction(fn, reduction)
        self.ignore_index = ignore_index
        self.alpha: float | None = None
        if alpha is None or isinstance(alpha, (float, numbers.Real)):  # float: for mypy
            self.alpha = None if alpha is None else float(alpha)
            self.register_buffer("alpha_weights", None)
        else:
            if isinstance(alpha, torch.Tensor):
                w = alpha.detach().clone().to(torch.float64)
            else:
                w = torch.tensor([float(a) for a in alpha], dtype=torch.float64)
            self.register_buffer("alpha_weights", w)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``input`` against ``target`` (shapes as in :func:`focal`)."""
        alpha: Alpha = self.alpha
        if self.alpha_weights is not None:
            alpha = self.alpha_weights
        return focal(
            input,
            target,
            gamma=self.gamma,
            alpha=alpha,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        a = self.alpha if self.alpha_weights is None else self.alpha_weights.tolist()
        return (
            f"gamma={self.gamma}, alpha={a}, ignore_index={self.ignore_index}, "
            f"reduction={self.reduction!r}"
        )
