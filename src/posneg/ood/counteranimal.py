"""The CounterAnimal protocol (Wang et al., 2024): accuracy on common vs counter spurious groups.

Each test image belongs to a class and to a group: **common** (the class's usual spurious
attribute, e.g. an ice bear on snow) or **counter** (a plausible but unusual one, on grass). For
any classifier's predictions the protocol reports:

- :func:`group_accuracy`: pooled accuracy per group, the drop ``acc_common - acc_counter``, the
  per-class accuracies per group and the class-averaged drop (the paper does not say which of
  pooled or class-averaged it reports, so both are returned; they differ when groups differ in
  size).
- :func:`effective_robustness`: fit ``f(ref_counter) = a f(ref_common) + b`` by least squares over
  reference models (one model family), with ``f`` = logit, probit or identity (Taori et al.,
  2020, use probit; the paper's axis scaling is unverified, so it is a parameter); then
  ``ER = acc_counter - f^-1(a f(acc_common) + b)``: positive = more robust than the family's
  trend predicts. Accuracies are clipped to ``[1e-6, 1 - 1e-6]`` before logit/probit.
- :func:`split_by_attribute`: common/counter groups from a spurious attribute and the attribute
  value each class usually carries.
- :func:`curate_counter_split`: the paper's curation, per class the (common, counter) pair of
  attribute values that maximises a curator model's accuracy drop (the curator's family is
  penalised by construction: evaluate it on a held-out half).

No code of the paper was found; the protocol is transcribed from its text (arXiv 2403.11497 v1).

Example:
    >>> import torch
    >>> y = torch.tensor([0, 0, 1, 1])
    >>> pred = torch.tensor([0, 1, 1, 1])
    >>> group = torch.tensor([False, True, False, True])  # True = counter
    >>> group_accuracy(y_true=y, y_pred=pred, counter=group).drop
    0.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from posneg import _checks

__all__ = [
    "GroupAccuracy",
    "curate_counter_split",
    "effective_robustness",
    "fit_reference_line",
    "group_accuracy",
    "split_by_attribute",
]

CITATION = """
@article{wang2024counteranimal,
  title   = {Do {CLIPs} Always Generalize Better than {ImageNet} Models?},
  author  = {Wang, Qizhou and Lin, Yong and Chen, Yongqiang and Schmidt, Ludwig and Han, Bo and
             Zhang, Tong},
  journal = {arXiv preprint arXiv:2403.11497},
  year    = {2024}
}
"""

CLIP_EPS = 1e-6
_SCALES = ("logit", "probit", "linear")


@dataclass(frozen=True)
class GroupAccuracy:
    """Accuracies of one classifier on a common/counter split.

    Attributes:
        acc_common: pooled accuracy over the common group.
        acc_counter: pooled accuracy over the counter group.
        drop: ``acc_common - acc_counter`` (pooled).
        per_class: ``(C, 2)`` float64 accuracy per (class, group), columns (common, counter);
            NaN where a class has no image in the group.
        class_avg_common: mean over classes of the common column (NaN entries skipped).
        class_avg_counter: likewise for the counter column.
        class_avg_drop: mean over classes having both groups of their per-class drop.
    """

    acc_common: float
    acc_counter: float
    drop: float
    per_class: torch.Tensor
    class_avg_common: float
    class_avg_counter: float
    class_avg_drop: float


def _predictions(fn: str, y_pred: Any, label_mask: Any) -> torch.Tensor:
    _checks.check_tensor(fn, "y_pred", y_pred)
    if y_pred.dim() == 2:
        logits = y_pred
        if label_mask is not None:
            m = _checks.check_tensor(fn, "label_mask", label_mask)
            if m.dtype != torch.bool or m.shape != (logits.shape[1],):
                raise ValueError(f"{fn}: label_mask must be a bool (C,) tensor over the logits")
            logits = logits.masked_fill(~m.to(logits.device), float("-inf"))
        return logits.argmax(dim=1)
    if label_mask is not None:
        raise ValueError(f"{fn}: label_mask needs y_pred as (N, C) logits")
    if y_pred.dim() != 1 or y_pred.is_floating_point():
        raise ValueError(f"{fn}: y_pred must be (N,) integer labels or (N, C) logits")
    return y_pred


def group_accuracy(
    *,
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    counter: torch.Tensor,
    num_classes: int | None = None,
    label_mask: torch.Tensor | None = None,
) -> GroupAccuracy:
    """Pooled and per-class accuracies of the common and counter groups, and their drops.

    Args:
        y_true: ``(N,)`` integer labels.
        y_pred: ``(N,)`` predicted labels or ``(N, C)`` logits (argmax taken).
        counter: ``(N,)`` bool, True = counter group, False = common group; both non-empty.
        num_classes: rows of ``per_class`` (default ``max label + 1``).
        label_mask: ``(C,)`` bool label space for logits (e.g. "1 vs 20"); keep it fixed across
            models, the drop depends on it.
    """
    fn = "group_accuracy"
    y = _checks.check_tensor(fn, "y_true", y_true)
    pred = _predictions(fn, y_pred, label_mask)
    g = _checks.check_tensor(fn, "counter", counter)
    if y.dim() != 1 or y.is_floating_point() or y.numel() == 0:
        raise ValueError(f"{fn}: y_true must be a non-empty (N,) integer tensor")
    if pred.shape != y.shape or g.shape != y.shape:
        raise ValueError(f"{fn}: y_true, y_pred and counter must have the same length N")
    if g.dtype != torch.bool:
        raise TypeError(f"{fn}: counter must be a bool tensor; got {g.dtype}")
    if bool(g.all()) or not bool(g.any()):
        raise ValueError(f"{fn}: both the common and the counter group must be non-empty")
    y, pred, g = y.cpu().long(), pred.cpu().long(), g.cpu()
    if int(y.min()) < 0:
        raise ValueError(f"{fn}: y_true must be >= 0")
    c = (
        int(y.max()) + 1
        if num_classes is None
        else _checks.check_int(fn, "num_classes", num_classes, min_value=1)
    )
    if int(y.max()) >= c:
        raise ValueError(f"{fn}: y_true has label {int(y.max())} >= num_classes {c}")
    hit = (pred == y).double()
    col = g.long()
    cell = y * 2 + col
    total = torch.bincount(cell, minlength=2 * c).double().reshape(c, 2)
    right = torch.bincount(cell, weights=hit, minlength=2 * c).reshape(c, 2)
    per_class = right / total  # 0/0 -> NaN where a group is empty
    common, count = float(hit[~g].mean()), float(hit[g].mean())
    both = ~per_class.isnan().any(dim=1)
    return GroupAccuracy(
        acc_common=common,
        acc_counter=count,
        drop=common - count,
        per_class=per_class,
        class_avg_common=float(per_class[:, 0].nanmean()),
        class_avg_counter=float(per_class[:, 1].nanmean()),
        class_avg_drop=float((per_class[both, 0] - per_class[both, 1]).mean())
        if bool(both.any())
        else math.nan,
    )


def _forward(x: torch.Tensor, scale: str) -> torch.Tensor:
    if scale == "linear":
        return x
    x = x.clamp(CLIP_EPS, 1.0 - CLIP_EPS)
    if scale == "logit":
        return torch.log(x) - torch.log1p(-x)
    return math.sqrt(2.0) * torch.erfinv(2.0 * x - 1.0)


def _inverse(z: torch.Tensor, scale: str) -> torch.Tensor:
    if scale == "linear":
        return z
    if scale == "logit":
        return torch.sigmoid(z)
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def _accuracies(fn: str, name: str, x: Any) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    if t.numel() == 0 or not bool(((t >= 0) & (t <= 1)).all()):
        raise ValueError(f"{fn}: {name} must be non-empty accuracies in [0, 1]")
    return t


def fit_reference_line(
    *, ref_common: Any, ref_counter: Any, scale: str = "logit"
) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``f(ref_counter) = a f(ref_common) + b`` over reference models.

    Args:
        ref_common: accuracies on the common group of ``M >= 2`` reference models.
        ref_counter: their counter-group accuracies.
        scale: ``"logit"``, ``"probit"`` or ``"linear"`` (identity).
    """
    fn = "fit_reference_line"
    scale = _checks.check_choice(fn, "scale", scale, _SCALES)
    x = _forward(_accuracies(fn, "ref_common", ref_common), scale)
    y = _forward(_accuracies(fn, "ref_counter", ref_counter), scale)
    if x.shape != y.shape or x.numel() < 2:
        raise ValueError(f"{fn}: ref_common and ref_counter need the same length M >= 2")
    xc = x - x.mean()
    var = float((xc * xc).sum())
    if var == 0.0:
        raise ValueError(f"{fn}: ref_common must not be constant (the slope is undefined)")
    a = float((xc * (y - y.mean())).sum()) / var
    return a, float(y.mean()) - a * float(x.mean())


def effective_robustness(
    *,
    acc_common: Any,
    acc_counter: Any,
    ref_common: Any,
    ref_counter: Any,
    scale: str = "logit",
) -> torch.Tensor:
    """``ER = acc_counter - f^-1(a f(acc_common) + b)`` against the reference models' line.

    Args:
        acc_common: common-group accuracies of the evaluated models (scalar or ``(K,)``).
        acc_counter: their counter-group accuracies.
        ref_common: common-group accuracies of the reference family (``M >= 2``).
        ref_counter: their counter-group accuracies.
        scale: axis scaling of the fit, see :func:`fit_reference_line`.

    Returns:
        ``(K,)`` float64; 0 on the line, > 0 above it (more robust than predicted).
    """
    fn = "effective_robustness"
    a, b = fit_reference_line(ref_common=ref_common, ref_counter=ref_counter, scale=scale)
    x = _accuracies(fn, "acc_common", acc_common)
    y = _accuracies(fn, "acc_counter", acc_counter)
    if x.shape != y.shape:
        raise ValueError(f"{fn}: acc_common and acc_counter must have the same length")
    return y - _inverse(a * _forward(x, scale) + b, scale)


def split_by_attribute(
    *, labels: torch.Tensor, attribute: torch.Tensor, usual: torch.Tensor
) -> torch.Tensor:
    """Counter-group mask: ``attribute[n] != usual[labels[n]]``.

    Args:
        labels: ``(N,)`` class labels in ``[0, C)``.
        attribute: ``(N,)`` integer spurious attribute of each image (background, border, ...).
        usual: ``(C,)`` the attribute value each class usually carries (its common group).

    Returns:
        ``(N,)`` bool, True = counter.
    """
    fn = "split_by_attribute"
    y = _checks.check_tensor(fn, "labels", labels)
    attr = _checks.check_tensor(fn, "attribute", attribute)
    u = _checks.check_tensor(fn, "usual", usual)
    if y.dim() != 1 or attr.shape != y.shape or u.dim() != 1:
        raise ValueError(f"{fn}: labels and attribute must be (N,) and usual (C,)")
    if y.is_floating_point() or attr.is_floating_point() or u.is_floating_point():
        raise TypeError(f"{fn}: labels, attribute and usual must be integer tensors")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= u.shape[0]):
        raise ValueError(f"{fn}: labels must lie in [0, {u.shape[0]}) (the length of usual)")
    return attr != u.to(attr.device)[y.to(attr.device)]


def curate_counter_split(
    *, correct: torch.Tensor, labels: torch.Tensor, attribute: torch.Tensor, min_group: int = 1
) -> tuple[torch.Tensor, dict[int, tuple[int, int]]]:
    """Per class, the (common, counter) attribute pair maximising the curator's accuracy drop.

    Among a class's attribute values with at least ``min_group`` images, every ordered pair
    ``(u, v)`` is scored ``acc(u) - acc(v)`` with the curator's ``correct`` flags; the maximum
    wins, ties broken by the smallest ``(u, v)``. Classes with fewer than two such values are
    left out.

    Returns:
        ``group`` ``(N,)`` int64: 0 = common, 1 = counter, -1 = not in the chosen pair; and
        ``{class: (common_value, counter_value)}``.
    """
    fn = "curate_counter_split"
    ok = _checks.check_tensor(fn, "correct", correct)
    y = _checks.check_tensor(fn, "labels", labels)
    attr = _checks.check_tensor(fn, "attribute", attribute)
    k = _checks.check_int(fn, "min_group", min_group, min_value=1)
    if ok.dtype != torch.bool or y.dim() != 1 or ok.shape != y.shape or attr.shape != y.shape:
        raise ValueError(f"{fn}: correct (bool), labels and attribute must all be (N,)")
    ok, y, attr = ok.cpu(), y.cpu(), attr.cpu()
    group = torch.full(y.shape, -1, dtype=torch.int64)
    pairs: dict[int, tuple[int, int]] = {}
    for c in sorted(int(v) for v in torch.unique(y)):
        in_c = y == c
        accs = {}
        for v in sorted(int(a) for a in torch.unique(attr[in_c])):
            sel = in_c & (attr == v)
            if int(sel.sum()) >= k:
                accs[v] = float(ok[sel].double().mean())
        best: tuple[float, int, int] | None = None
        for u in accs:
            for v in accs:
                if u != v and (best is None or accs[u] - accs[v] > best[0]):
                    best = (accs[u] - accs[v], u, v)
        if best is None:
            continue
        pairs[c] = (best[1], best[2])
        group[in_c & (attr == best[1])] = 0
        group[in_c & (attr == best[2])] = 1
    return group, pairs
