"""Self-adjusting Dice loss (DSC) for data-imbalanced classification and tagging.

Li, Sun, Meng, Liang, Wu, Li. *Dice Loss for Data-imbalanced NLP Tasks.* ACL 2020,
arXiv 1911.02855. Released code: ShannonAI/dice_loss_for_NLP (``loss/dice_loss.py``).

Binary, multi-class and token-tagging inputs, the per-instance form the paper writes and the
set-level (batch) form the released code computes, the Milletari squared denominator, and an
ignore mask. The choices where paper and code differ are listed in :func:`dice`.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal, cast

import torch
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype
from posneg._types import Reduction

__all__ = ["DiceForm", "DiceLoss", "dice"]

CITATION = """
@inproceedings{li2020dice,
  title     = {Dice Loss for Data-imbalanced {NLP} Tasks},
  author    = {Li, Xiaoya and Sun, Xiaofei and Meng, Yuxian and Liang, Junjun and Wu, Fei and
               Li, Jiwei},
  booktitle = {Proceedings of the 58th Annual Meeting of the Association for Computational
               Linguistics (ACL)},
  pages     = {465--476},
  year      = {2020},
  note      = {arXiv:1911.02855}
}
"""

DiceForm = Literal["instance", "set"]
_FORMS: tuple[str, ...] = ("instance", "set")


def _check_hparams(fn: str, alpha: Any, gamma: Any, form: Any, square_denominator: Any) -> None:
    _checks.check_nonnegative(fn, "alpha", alpha)
    _checks.check_nonnegative(fn, "gamma", gamma)
    _checks.check_choice(fn, "form", form, _FORMS)
    if not isinstance(square_denominator, bool):
        raise TypeError(
            f"{fn}: square_denominator must be a bool; got {type(square_denominator).__name__}"
        )


def _check_flag(fn: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be a bool; got {type(value).__name__}")


def _check_ignore_index(fn: str, ignore_index: Any) -> int | None:
    """None or an int (Python or numpy integer, never a bool), returned as a Python ``int``."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(
            f"{fn}: ignore_index must be an int or None; got {type(ignore_index).__name__}"
        )
    return int(ignore_index)


def _self_adjust(p: torch.Tensor, one_minus_p: torch.Tensor, alpha: float) -> torch.Tensor:
    """``(1 - p)^alpha * p`` with exact values at p = 1 and finite gradients everywhere.

    At ``1 - p == 0`` the factor is 0 (1 when alpha = 0) and its gradient is taken as 0 there
    (the true derivative is infinite for alpha < 1, and ``inf * 0`` would poison the graph).
    """
    if alpha == 0:
        return p
    live = one_minus_p > 0
    safe = torch.where(live, one_minus_p, torch.ones_like(one_minus_p))
    factor = torch.where(live, safe.pow(alpha), torch.zeros_like(one_minus_p))
    return factor * p


def _binary_targets(fn: str, target: torch.Tensor, keep: torch.Tensor | None) -> None:
    bad = (target < 0) | (target > 1)
    if keep is not None:
        bad = bad & keep
    if bool(bad.any()):
        kept = (target if keep is None else target[keep]).double()
        raise ValueError(
            f"{fn}: binary target values must be in [0, 1] (the paper's y is 0 or 1); got "
            f"values in [{float(kept.min())}, {float(kept.max())}]"
        )


def dice(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = 0.01,
    gamma: float = 1.0,
    form: DiceForm = "instance",
    square_denominator: bool = True,
    mask: torch.Tensor | None = None,
    ignore_index: int | None = None,
    from_logits: bool = True,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Self-adjusting Dice loss (DSC): a soft 1 - F1 with focal-style down-weighting.

    Li, Sun, Meng, Liang, Wu, Li. *Dice Loss for Data-imbalanced NLP Tasks.* ACL 2020,
    arXiv 1911.02855.

    Write ``p`` for the probability of a class (sigmoid of the logit for binary input, softmax
    over the last dimension for multi-class input), ``y`` for its 0/1 target,
    ``q = (1 - p)^alpha * p`` for the self-adjusted probability and ``g = gamma`` for the
    smoothing term. Per instance (``form="instance"``, the paper's equation)::

        DSC_i = 1 - (2 q_i y_i + g) / (q_i + y_i + g)

    and over a whole set (``form="set"``, what the released code computes for binary input)::

        DSC = 1 - (2 sum_i q_i y_i + g) / (sum_i q_i + sum_i y_i + g)

    With ``square_denominator=True`` the denominator is ``q^2 + y^2 + g`` (per instance) or
    ``sum q^2 + sum y^2 + g`` (set), Milletari's V-Net form. Multi-class input runs one-vs-rest
    per class and adds the per-class terms, as the released code does. With ``alpha = 0``,
    ``gamma -> 0``, hard predictions and ``form="set"`` the binary loss is exactly ``1 - F1``.

    Paper versus released code, and the choices made here:

    - The paper states the loss per instance; the code's binary branch sums over every element
      of the batch (set level); its multi-class branch with ``--dice_square`` is per instance,
      and without it mixes a per-instance numerator with a whole-batch denominator (a bug-like
      inconsistency that is *not* reproduced). Both clean forms are offered.
    - The paper writes DSC with a plain denominator, ``gamma = 1`` and the factor
      ``(1 - p)^alpha``, which it introduces as ``(1 - p)`` (``alpha = 1``). The code's defaults are
      ``alpha = 0``, ``smooth = 1e-4``; every published script runs ``alpha = 0.01``,
      ``smooth = 1`` and ``--dice_square``.
    - **Defaults here: the published scripts' configuration for tagging** (``form="instance"``,
      ``alpha = 0.01``, ``gamma = 1``, ``square_denominator=True``), i.e. what produced the
      paper's multi-class tagging numbers, chosen over the equation as printed because the
      printed one is degenerate as a training loss: with ``alpha = 1``, ``q = (1 - p) p`` is
      largest at ``p = 1/2``, so a positive is pushed to ``p = 1/2`` rather than 1 and a
      negative has zero loss at ``p = 1`` as at ``p = 0``; and with the plain denominator a
      confident wrong prediction gets almost no gradient through the sigmoid (the bounded loss
      has no log to undo its saturation). ``alpha=1, square_denominator=False`` gives the
      printed equation; ``form="set", alpha=0.01, square_denominator=True`` the released binary
      (MRC-style NER) setting.
    - The code's optional OHEM negative selection is not implemented.
    - The code applies a mask by multiplying ``p`` and ``y`` by it; here masked entries are
      removed, which gives the same set-level value and excludes them from the mean.

    Args:
        input: logits (or probabilities when ``from_logits=False``). Binary: any shape ``S``
            (``(N,)``, token tagging ``(B, T)``, multi-label ``(N, L)``), one sigmoid per
            element. Multi-class: ``(*S, C)`` with ``C >= 2``, softmax over the last dimension.
        target: binary: shape ``S`` like ``input``, values in [0, 1] (float, int or bool).
            Multi-class: integer class indices of shape ``S`` (``input.shape[:-1]``).
        alpha: exponent of the self-adjusting factor ``(1 - p)^alpha``, >= 0 (0: plain Dice).
        gamma: smoothing added to numerator and denominator, >= 0. With 0 an empty set or a
            per-instance ``p = y = 0`` divides 0 by 0 (NaN); keep it > 0 for training.
        form: ``"instance"`` (per element, the paper) or ``"set"`` (sums over all kept
            elements, the released code's binary branch).
        square_denominator: square ``q`` and ``y`` in the denominator (V-Net Dice).
        mask: optional bool tensor of shape ``S``; ``False`` entries are ignored (padding
            tokens). On ``input``'s device.
        ignore_index: entries whose target equals it are ignored too.
        from_logits: ``input`` holds logits (default) or probabilities in [0, 1].
        reduction: instance form: ``"none"`` returns shape ``S`` (ignored entries 0; for
            multi-class the sum over classes), ``"mean"`` averages over kept entries (0 if none
            is kept), ``"sum"`` adds them. Set form: ``"none"`` returns the per-class terms
            ``(C,)`` (``(1,)`` for binary), ``"mean"`` their mean (``1 - macro F1`` in the
            hard limit), ``"sum"`` their sum (the released code's multi-class value).

    Returns:
        The loss, float32 for half inputs, else ``input``'s dtype; shape per ``reduction``.

    Raises:
        TypeError: non-tensor or non-float ``input``, non-integer multi-class ``target``,
            non-bool ``mask``, bad hyperparameter types.
        ValueError: shapes that fit neither layout, class indices out of range, binary targets
            or probabilities outside [0, 1], NaN/inf input, bad hyperparameter values, devices
            that differ.

    Example:
        >>> import torch
        >>> logits = torch.tensor([3.0, -2.0, -1.0, 0.5])
        >>> target = torch.tensor([1.0, 0.0, 0.0, 1.0])
        >>> loss = dice(logits, target, form="set", alpha=0.0, square_denominator=False)
        >>> bool(0.0 < loss < 1.0)
        True
        >>> tags = torch.randn(2, 5, 4)  # (B, T, C) token tagging
        >>> labels = torch.tensor([[0, 1, 2, 3, -100], [1, 1, 0, -100, -100]])
        >>> dice(tags, labels, ignore_index=-100).shape
        torch.Size([])
    """
    fn = "dice"
    _check_hparams(fn, alpha, gamma, form, square_denominator)
    _check_flag(fn, "from_logits", from_logits)
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
    if not from_logits and input.numel() and bool(((input < 0) | (input > 1)).any()):
        raise ValueError(
            f"{fn}: input must hold probabilities in [0, 1] when from_logits=False; got values "
            f"in [{float(input.min())}, {float(input.max())}]"
        )
    keep: torch.Tensor | None = None  # None: every entry counts (the fast path)
    if mask is not None:
        _checks.check_tensor(fn, "mask", mask)
        if mask.dtype != torch.bool:
            raise TypeError(f"{fn}: mask must be a bool tensor; got {mask.dtype}")
        if tuple(mask.shape) != tuple(target.shape):
            raise ValueError(
                f"{fn}: mask must have the target's shape {tuple(target.shape)}; "
                f"got {tuple(mask.shape)}"
            )
        _checks.check_same_device(fn, "mask", mask, "input", input)
        keep = mask
    if ignore_index is not None:
        not_ignored = target != ignore_index
        keep = not_ignored if keep is None else keep & not_ignored

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
        safe_target = target if keep is None else torch.where(keep, target, 0)
        y = nn.functional.one_hot(safe_target.long(), n_classes).to(dtype)
        p = torch.softmax(x, dim=-1) if from_logits else x
        one_minus_p = 1.0 - p
    else:
        _binary_targets(fn, target, keep)
        y = target.to(dtype).unsqueeze(-1)
        if from_logits:
            p = torch.sigmoid(x).unsqueeze(-1)
            one_minus_p = torch.sigmoid(-x).unsqueeze(-1)
        else:
            p = x.unsqueeze(-1)
            one_minus_p = 1.0 - p
    # every tensor is now (*S, K): K = C classes, or K = 1 for binary input
    q = _self_adjust(p, one_minus_p, float(alpha))
    keep_k = None if keep is None else keep.unsqueeze(-1).expand(q.shape)
    if keep_k is not None:
        q = torch.where(keep_k, q, 0.0)
        y = torch.where(keep_k, y, 0.0)
    g = float(gamma)
    if form == "instance":
        den = (q * q + y * y if square_denominator else q + y) + g
        if keep_k is not None:
            # ignored entries never divide (a 0/0 there would poison the gradient through where)
            den = torch.where(keep_k, den, 1.0)
        per_class = 1.0 - (2.0 * q * y + g) / den
        if keep_k is not None:
            per_class = torch.where(keep_k, per_class, 0.0)
        per_elem = per_class.sum(dim=-1)  # (*S)
        if reduction == "none":
            return per_elem
        total = per_elem.sum()
        if reduction == "sum":
            return total
        count = per_elem.numel() if keep is None else int(keep.sum())
        return total / max(count, 1)
    qf = q.reshape(-1, q.shape[-1])
    yf = y.reshape(-1, y.shape[-1])
    inter = (qf * yf).sum(dim=0)
    if square_denominator:
        den = (qf * qf).sum(dim=0) + (yf * yf).sum(dim=0)
    else:
        den = qf.sum(dim=0) + yf.sum(dim=0)
    per_class = 1.0 - (2.0 * inter + g) / (den + g)  # (K,)
    if reduction == "none":
        return per_class
    if reduction == "sum":
        return per_class.sum()
    return per_class.mean()


class DiceLoss(nn.Module):
    """Module form of :func:`dice` (stateless; hyperparameters validated here).

    Defaults are the released scripts' tagging configuration; see :func:`dice` for why.

    Args:
        alpha: exponent of the self-adjusting factor ``(1 - p)^alpha`` (printed equation: 1;
            released scripts and default: 0.01).
        gamma: smoothing term (paper and scripts: 1).
        form: ``"instance"`` (paper, released multi-class code) or ``"set"`` (released binary
            code).
        square_denominator: V-Net squared denominator (released scripts and default: True).
        ignore_index: targets equal to it are ignored.
        from_logits: inputs are logits (default) or probabilities.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (see :func:`dice`).

    Example:
        >>> import torch
        >>> loss_fn = DiceLoss(form="set")  # the released binary (MRC-NER) setting
        >>> loss = loss_fn(torch.randn(8, requires_grad=True), torch.randint(0, 2, (8,)))
        >>> loss.backward()
    """

    def __init__(
        self,
        *,
        alpha: float = 0.01,
        gamma: float = 1.0,
        form: DiceForm = "instance",
        square_denominator: bool = True,
        ignore_index: int | None = None,
        from_logits: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        fn = "DiceLoss"
        _check_hparams(fn, alpha, gamma, form, square_denominator)
        _check_flag(fn, "from_logits", from_logits)
        ignore_index = _check_ignore_index(fn, ignore_index)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.form = cast(DiceForm, form)
        self.square_denominator = square_denominator
        self.ignore_index = ignore_index
        self.from_logits = from_logits
        self.reduction = _checks.check_reduction(fn, reduction)

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss of ``input`` against ``target`` (shapes as in :func:`dice`)."""
        return dice(
            input,
            target,
            alpha=self.alpha,
            gamma=self.gamma,
            form=self.form,
            square_denominator=self.square_denominator,
            mask=mask,
            ignore_index=self.ignore_index,
            from_logits=self.from_logits,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return (
            f"alpha={self.alpha}, gamma={self.gamma}, form={self.form!r}, "
            f"square_denominator={self.square_denominator}, ignore_index={self.ignore_index}, "
            f"from_logits={self.from_logits}, reduction={self.reduction!r}"
        )
