"""Targets for batch mixing: class ids or soft/multi-hot labels -> soft targets, and mixing them.

Formats accepted everywhere in :mod:`posneg.mixing`:

- class ids: an integer tensor (B,) with values in ``[0, num_classes)``; ``num_classes`` is then
  required, and the ids become one-hot rows.
- soft or multi-hot labels: a floating (or bool) tensor (B, K), used as given (a bool tensor is
  converted to 0/1 floats).

Label smoothing with ``eps`` maps every row to ``y * (1 - eps) + eps / K`` (before mixing; the
result is the same after, since mixing is linear). Soft targets are in x's dtype when x is
floating, float32 for uint8 x; given soft labels keep their own floating dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from posneg import _checks


def check_num_classes(fn: str, num_classes: object, name: str = "num_classes") -> int | None:
    """None or an int >= 1."""
    if num_classes is None:
        return None
    return _checks.check_int(fn, name, num_classes, min_value=1)


def check_label_smoothing(fn: str, label_smoothing: object) -> float:
    """A real in [0, 1)."""
    return _checks.check_range(fn, "label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)


def target_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of soft targets built from class ids: x's dtype if floating, else float32."""
    return x.dtype if x.is_floating_point() else torch.float32


def _check_ids(fn: str, name: str, ids: torch.Tensor, num_classes: int | None) -> int:
    if num_classes is None:
        raise ValueError(
            f"{fn}: num_classes is required when {name} are class ids (an integer tensor); got None"
        )
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{fn}: {name} must be class ids in [0, {num_classes}); got values in [{lo}, {hi}]"
            )
    return num_classes


def soft_targets(
    fn: str,
    targets: object,
    x: torch.Tensor,
    *,
    num_classes: int | None,
    label_smoothing: float,
) -> torch.Tensor:
    """Validate ``targets`` against the batch of ``x`` and return (B, K) soft targets."""
    t = _checks.check_tensor(fn, "targets", targets)
    b = x.shape[0]
    _checks.check_same_device(fn, "targets", t, "x", x)
    if t.is_complex():
        raise TypeError(f"{fn}: targets must be class ids or soft labels; got {t.dtype}")
    if t.is_floating_point() or t.dtype == torch.bool:
        if t.dim() != 2 or t.shape[0] != b:
            raise ValueError(
                f"{fn}: targets given as soft or multi-hot labels must have shape (B, K) with "
                f"B={b} matching x {tuple(x.shape)}; got {tuple(t.shape)}"
            )
        if num_classes is not None and t.shape[1] != num_classes:
            raise ValueError(
                f"{fn}: targets must have K={num_classes} columns (num_classes); "
                f"got {tuple(t.shape)}"
            )
        y = t if t.is_floating_point() else t.to(target_dtype(x))
    else:
        if t.dim() != 1 or t.shape[0] != b:
            raise ValueError(
                f"{fn}: targets given as class ids must have shape (B,) with B={b} matching "
                f"x {tuple(x.shape)}; got {tuple(t.shape)}"
            )
        k = _check_ids(fn, "targets", t, num_classes)
        y = F.one_hot(t.long(), k).to(target_dtype(x))
    if label_smoothing > 0:
        y = y * (1.0 - label_smoothing) + label_smoothing / y.shape[1]
    return y


def mix_targets(y: torch.Tensor, index: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lam[i] * y[i] + (1 - lam[i]) * y[index[i]]`` for (B, K) soft targets."""
    w = lam.to(device=y.device, dtype=y.dtype).unsqueeze(1)
    return w * y + (1 - w) * y.index_select(0, index)


def soft_masks(
    fn: str,
    masks: torch.Tensor,
    *,
    num_classes: int | None,
    ignore_index: int | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Class maps (B, *spatial) -> one-hot soft maps (B, K, *spatial); soft maps pass through.

    Pixels equal to ``ignore_index`` become all-zero vectors (they carry no class).
    """
    if masks.is_floating_point():
        if num_classes is not None and masks.shape[1] != num_classes:
            raise ValueError(
                f"{fn}: soft masks must have K={num_classes} channels (num_mask_classes); "
                f"got {tuple(masks.shape)}"
            )
        return masks
    if num_classes is None:
        raise ValueError(
            f"{fn}: num_mask_classes is required to turn class-id masks into soft maps; got None"
        )
    valid = masks != ignore_index if ignore_index is not None else None
    ids = masks.long() if valid is None else torch.where(valid, masks.long(), 0)
    _check_ids(fn, "masks", ids, num_classes)
    onehot = F.one_hot(ids, num_classes).to(dtype)
    if valid is not None:
        onehot = onehot * valid.unsqueeze(-1).to(dtype)
    return onehot.movedim(-1, 1)
