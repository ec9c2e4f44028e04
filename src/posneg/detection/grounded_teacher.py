"""Grounded Teacher: class-relation context for source-free object detection.

Ashraf, Manna, Purkayastha, Tariq, Bashir. *Context Aware Grounded Teacher for Source Free
Object Detection.* arXiv 2504.15404, 2025. Official code: ``Tajamul21/Grounded_Teacher`` at
commit 678031b (``GT/rcm.py`` class ``RCM``; ``GT/modeling/roi_heads/fast_rcnn.py``
``FastRCNNOutputLayers.losses``; ``GT/engine/trainer.py`` ``run_step_full_semisup``,
``threshold_bbox``, ``add_label``). Each unit below transcribes one of those pieces:

- **Class relation** (``RCM.get_matches``): over the foreground ROIs of a minibatch, the count
  matrix of (ground-truth class, predicted class) pairs, background dropped, row-normalised:
  ``M[g, p] = #{g, p} / #{g, .}`` (:func:`relation_counts`); an EMA on the rows present in the
  batch ``C[r] <- a C[r] + (1 - a) M[r]`` (:func:`update_relation`) whose momentum ``a`` ramps
  from 0.5 to 0.99 cubically (:func:`relation_momentum`).
- **Relation-weighted classification loss** (``losses(..., class_info)`` with
  ``LOG_LOSS = True``): :func:`relation_weight_matrix` turns ``C`` into ``C'`` and
  :func:`relation_loss_weights` gives each ROI ``w = 1 - C'[g, g]`` when it is predicted right
  and ``C'[g, p]`` when predicted as another class ``p``, divided by their mean, 1 for mixed and
  background ROIs, then ``(w + reg) / (1 + reg)``; the loss is ``mean(w * CE(logits, target))``
  (:func:`relation_weighted_cross_entropy`, :class:`RelationWeightedLoss`).
- **Relation-guided mixing** (``RCM.mix_crop_new``): per box of class ``g``, majority classes
  (``C[g, g]`` above the mean diagonal) mix in a crop of a class that is *predicted as* ``g``
  (``C[:, g]``), minority classes one of a class ``g`` is *confused with* (``C[g, :]``), drawn
  in proportion, from a bank of recent crops (:class:`CropBank`); the crop is resized to the
  box and blended ``I <- lam I + (1 - lam) crop`` with ``lam ~ Beta(0.5, 0.5)`` limited to
  ``<= 0.5`` for majority and ``>= 0.5`` for minority bases; soft target
  ``lam onehot(g) + (1 - lam) onehot(m)`` over ``K + 1`` classes, hard label ``g`` (minority)
  or ``m`` (majority) (:func:`sample_relation_mix`, :func:`apply_relation_mix`,
  :class:`RelationGuidedMix`).
- **Expert guidance** (``run_step_full_semisup``): the teacher's and the expert's boxes are each
  thresholded (``score > threshold``) and the student trains on the strong view twice, once with
  each set (:func:`expert_guidance`). As released, ``add_label`` writes into the same batch list,
  so the expert labels **overwrite** the teacher's (both passes see the expert's, the teacher's
  survive only on images past the end of the expert list), and since images without expert boxes
  are dropped from that list, labels can land on the wrong image. ``overwrite=True`` reproduces
  that; the default keeps the two sets apart, as the paper describes.

Where the released code and this module differ (deliberately; each shown in a test):
the "mixed ROI" test of the loss is ``sum(target) != 1`` in the release, which float rounding
decides for ``lam e_g + (1 - lam) e_m``; here a row is mixed when it is not one-hot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from posneg._checks import _shape
from posneg.detection.metrics import Detections

__all__ = [
    "CITATION",
    "CropBank",
    "RelationGuidedMix",
    "RelationMixParams",
    "RelationWeightedLoss",
    "apply_relation_mix",
    "expert_guidance",
    "relation_counts",
    "relation_loss_weights",
    "relation_momentum",
    "relation_weight_matrix",
    "relation_weighted_cross_entropy",
    "sample_relation_mix",
    "update_relation",
]

CITATION = """@article{ashraf2025grounded,
  title   = {Context Aware Grounded Teacher for Source Free Object Detection},
  author  = {Ashraf, Tajamul and Manna, Rajes and Purkayastha, Partha Sarathi and
             Tariq, Tavaheed and Bashir, Janibul},
  journal = {arXiv preprint arXiv:2504.15404},
  year    = {2025}
}"""


def _check_classes(fn: str, name: str, x: torch.Tensor, num_classes: int, bg: bool) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{fn}: {name} must be an integer tensor; got {type(x).__name__}")
    if x.dim() != 1:
        raise ValueError(f"{fn}: {name} must have shape (N,); got {_shape(x)}")
    high = num_classes if bg else num_classes - 1
    if x.numel() and (int(x.min()) < 0 or int(x.max()) > high):
        raise ValueError(f"{fn}: {name} must hold classes in [0, {high}]; got {x.tolist()}")


def _check_relation(fn: str, relation: torch.Tensor) -> int:
    if not isinstance(relation, torch.Tensor) or not relation.is_floating_point():
        raise TypeError(f"{fn}: relation must be a floating tensor (K, K)")
    if relation.dim() != 2 or relation.shape[0] != relation.shape[1] or relation.shape[0] < 1:
        raise ValueError(f"{fn}: relation must have shape (K, K); got {_shape(relation)}")
    return int(relation.shape[0])


# ------------------------------------------------------------------------- class relation


def relation_counts(
    gt_classes: torch.Tensor, pred_classes: torch.Tensor, *, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-normalised (ground truth, prediction) counts of one minibatch (``RCM.get_matches``).

    ``M[g, p] = #{i: gt_i = g, pred_i = p} / #{i: gt_i = g}``, over the ROIs where neither the
    ground truth nor the prediction is background (class ``num_classes``).

    Args:
        gt_classes: ``(N,)`` int64 in ``[0, K]`` (``K`` = background).
        pred_classes: ``(N,)`` int64 in ``[0, K]`` (arg max of the ``K + 1`` scores).
        num_classes: ``K``.

    Returns:
        ``(M, present)``: ``(K, K)`` float32 (rows without a pair are 0) and ``(K,)`` bool rows
        that had at least one pair.

    Example:
        >>> m, present = relation_counts(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 0]),
        ...                              num_classes=2)
        >>> m.tolist(), present.tolist()
        ([[0.5, 0.5], [0.0, 1.0]], [True, True])
    """
    fn = "relation_counts"
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{fn}: num_classes must be an integer >= 1; got {num_classes!r}")
    _check_classes(fn, "gt_classes", gt_classes, num_classes, bg=True)
    _check_classes(fn, "pred_classes", pred_classes, num_classes, bg=True)
    if gt_classes.shape != pred_classes.shape:
        raise ValueError(
            f"{fn}: pred_classes must have shape {_shape(gt_classes)}; got {_shape(pred_classes)}"
        )
    keep = (gt_classes != num_classes) & (pred_classes != num_classes)
    flat = gt_classes[keep].long() * num_classes + pred_classes[keep].long()
    counts = torch.bincount(flat, minlength=num_classes * num_classes).float()
    counts = counts.view(num_classes, num_classes)
    total = counts.sum(dim=1)
    present = total != 0
    m = torch.where(present[:, None], counts / total.clamp(min=1)[:, None], counts)
    return m, present


def relation_momentum(
    iteration: int, *, burn_up: int, alpha: float = 0.99, target: bool = False
) -> float:
    """The EMA momentum of the relation at ``iteration`` (``RCM.get_matches``).

    Source relation: ``a = 0.5 + (alpha - 0.5) (t / (B / 2))^3`` for ``t < B / 2``, then
    ``alpha``. Target relation (fed after burn-up): for ``t < 1.5 B``,
    ``a = 0.5 + (alpha - 0.5) ((t - (B - 1)) / (B / 2))^3``. ``B`` = ``burn_up``.

    Example:
        >>> relation_momentum(0, burn_up=100), relation_momentum(50, burn_up=100)
        (0.5, 0.99)
    """
    if burn_up < 1:
        raise ValueError(f"relation_momentum: burn_up must be >= 1; got {burn_up}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"relation_momentum: alpha must be in [0, 1]; got {alpha}")
    a = alpha
    if iteration < burn_up / 2:
        a = 0.5 + (alpha - 0.5) * (iteration / (burn_up / 2)) ** 3
    if target and iteration < burn_up * 1.5:
        a = 0.5 + (alpha - 0.5) * ((iteration - (burn_up - 1)) / (burn_up / 2)) ** 3
    return float(a)


def update_relation(
    relation: torch.Tensor,
    gt_classes: torch.Tensor,
    pred_classes: torch.Tensor,
    *,
    momentum: float,
) -> torch.Tensor:
    """The relation after one minibatch: ``C[r] <- a C[r] + (1 - a) M[r]`` on present rows.

    Args:
        relation: ``(K, K)`` the running relation ``C`` (rows = ground truth); not modified.
        gt_classes, pred_classes: ``(N,)`` as in :func:`relation_counts`.
        momentum: ``a`` (:func:`relation_momentum`).

    Returns:
        The new ``(K, K)`` relation (a new tensor, ``relation``'s dtype and device).

    Example:
        >>> c = update_relation(torch.zeros(2, 2), torch.tensor([0, 1]), torch.tensor([0, 0]),
        ...                     momentum=0.5)
        >>> c.tolist()
        [[0.5, 0.0], [0.5, 0.0]]
    """
    k = _check_relation("update_relation", relation)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"update_relation: momentum must be in [0, 1]; got {momentum}")
    m, present = relation_counts(gt_classes, pred_classes, num_classes=k)
    m, present = m.to(relation), present.to(relation.device)
    return torch.where(present[:, None], relation * momentum + m * (1 - momentum), relation)


# --------------------------------------------------------------- relation-weighted loss


def relation_weight_matrix(relation: torch.Tensor, *, log_loss: bool = True) -> torch.Tensor:
    """``C'`` of the relation-weighted loss (``FastRCNNOutputLayers.losses``), as released.

    Rows of ``C`` that are all zero become uniform ``1 / K``; zero diagonals become ``1 / K``;
    remaining zeros become ``0.001``. With ``log_loss``, each row whose sum is not above 1 gets
    ``C'[i, j] = sqrt(C[i, j] / C[i, i])`` off the diagonal and
    ``C'[i, i] = 1 - sqrt(1 - C[i, i])`` (rows summing above 1 after the ``0.001`` fill are left
    as they are, as in the release).

    Args:
        relation: ``(K, K)`` the relation ``C``; not modified.
        log_loss: the square-root transform (``LOG_LOSS``, True in the released config).

    Returns:
        ``(K, K)`` ``C'``.
    """
    k = _check_relation("relation_weight_matrix", relation)
    ci = relation.clone()
    empty = ci.sum(dim=1) == 0
    ci[empty] = 1.0 / k
    diag = torch.diagonal(ci)
    diag[diag == 0] = 1.0 / k
    ci[ci == 0] = 0.001
    if log_loss:
        rows = ci.sum(dim=1) <= 1
        d = torch.diagonal(ci).clone()
        off = torch.sqrt(ci / d[:, None])
        new = off.clone()
        torch.diagonal(new).copy_(1 - torch.sqrt(1 - d))
        ci = torch.where(rows[:, None], new, ci)
    return ci


def relation_loss_weights(
    weights: torch.Tensor,
    gt_classes: torch.Tensor,
    pred_classes: torch.Tensor,
    *,
    mixed: torch.Tensor | None = None,
    reg: float = 1.0,
) -> torch.Tensor:
    """Per-ROI weights of the relation-weighted classification loss, as released.

    With ``C' = weights`` (:func:`relation_weight_matrix`), ``K`` its size and background ``K``:
    correct foreground ROIs (``g = p != K``) get ``1 - C'[g, g]``, wrong ones (``g != p``, both
    foreground) ``C'[g, p]``; both divided by their mean (1 if that mean is 0); zeros and NaNs
    become ``1e-5``; ``mixed`` ROIs, background ROIs and ROIs predicted as background get 1; then
    ``w <- (w + reg) / (1 + reg)``.

    Args:
        weights: ``(K, K)`` ``C'``.
        gt_classes, pred_classes: ``(N,)`` int64 in ``[0, K]``.
        mixed: ``(N,)`` bool, ROIs with a soft (mixed) target, or None (none).
        reg: ``LOSS_REG_VAL`` (1.0 released): pulls the weights towards 1.

    Returns:
        ``(N,)`` weights in ``weights``' dtype.
    """
    fn = "relation_loss_weights"
    k = _check_relation(fn, weights)
    _check_classes(fn, "gt_classes", gt_classes, k, bg=True)
    _check_classes(fn, "pred_classes", pred_classes, k, bg=True)
    if gt_classes.shape != pred_classes.shape:
        raise ValueError(
            f"{fn}: pred_classes must have shape {_shape(gt_classes)}; got {_shape(pred_classes)}"
        )
    if mixed is not None and (mixed.dtype != torch.bool or mixed.shape != gt_classes.shape):
        raise ValueError(f"{fn}: mixed must be a bool tensor of shape {_shape(gt_classes)}")
    if reg < 0:
        raise ValueError(f"{fn}: reg must be >= 0; got {reg}")
    g, p = gt_classes.long(), pred_classes.long()
    fg = (g != k) & (p != k)
    correct, wrong = fg & (g == p), fg & (g != p)
    gi, pi = g.clamp(max=k - 1), p.clamp(max=k - 1)
    w = torch.ones(g.shape, dtype=weights.dtype, device=weights.device)
    w = torch.where(correct, 1 - weights[gi, gi], w)
    w = torch.where(wrong, weights[gi, pi], w)
    sel = correct | wrong
    mean = w[sel].mean() if bool(sel.any()) else w.new_tensor(1.0)
    mean = torch.where(mean == 0, torch.ones_like(mean), mean)
    w = torch.where((w == 0) | torch.isnan(w), w.new_tensor(1e-5), w)
    w = torch.where(sel, w / mean, w)
    if mixed is not None:
        w = torch.where(mixed.to(w.device), torch.ones_like(w), w)
    w = (w + reg) / (1 + reg)
    return torch.nan_to_num(w, nan=0.0)


def _soft_targets(
    fn: str, logits: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor | None
) -> torch.Tensor:
    if soft is None:
        return F.one_hot(labels.long(), logits.shape[1]).to(logits.dtype)
    if soft.shape != logits.shape:
        raise ValueError(f"{fn}: soft_targets must have shape {_shape(logits)}; got {_shape(soft)}")
    return soft.to(logits.dtype)


def relation_weighted_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    relation: torch.Tensor,
    *,
    soft_targets: torch.Tensor | None = None,
    log_loss: bool = True,
    reg: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Grounded Teacher's relation-weighted ROI classification loss.

    ``loss_i = w_i * CE(logits_i, t_i)`` with ``t_i`` the soft target (one-hot of ``labels``
    when ``soft_targets`` is None), ``w`` from :func:`relation_loss_weights` with
    ``C' = relation_weight_matrix(relation)``, prediction ``p_i = argmax logits_i`` and mixed
    ROIs the rows of ``soft_targets`` that are not one-hot. The weights carry no gradient.

    Args:
        logits: ``(N, K + 1)`` ROI scores (last column background).
        labels: ``(N,)`` int64 hard classes in ``[0, K]``.
        relation: ``(K, K)`` the class relation ``C``.
        soft_targets: ``(N, K + 1)`` or None.
        log_loss: see :func:`relation_weight_matrix`.
        reg: see :func:`relation_loss_weights`.
        reduction: ``"mean"`` (released), ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or ``(N,)`` for ``"none"``.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
        >>> loss = relation_weighted_cross_entropy(logits, torch.tensor([0, 0]),
        ...                                        torch.tensor([[0.8, 0.2], [0.1, 0.9]]))
        >>> loss.shape
        torch.Size([])
    """
    fn = "relation_weighted_cross_entropy"
    k = _check_relation(fn, relation)
    if logits.dim() != 2 or logits.shape[1] != k + 1:
        raise ValueError(f"{fn}: logits must have shape (N, {k + 1}); got {_shape(logits)}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{fn}: reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")
    _check_classes(fn, "labels", labels, k, bg=True)
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"{fn}: labels must have shape ({logits.shape[0]},); got {_shape(labels)}")
    target = _soft_targets(fn, logits, labels, soft_targets)
    with torch.no_grad():
        mixed = target.max(dim=1).values < 1
        pred = logits.argmax(dim=1)
        wdt = torch.float64 if relation.dtype == torch.float64 else torch.float32
        cw = relation_weight_matrix(relation.detach().to(wdt), log_loss=log_loss)
        w = relation_loss_weights(cw, labels, pred, mixed=mixed, reg=reg).to(logits)
    work = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    ce = -(target.to(work) * torch.log_softmax(work, dim=1)).sum(dim=1)
    loss = ce * w.to(work)  # float32 for half inputs
    if reduction == "none":
        return loss
    return loss.mean() if reduction == "mean" else loss.sum()


class RelationWeightedLoss(nn.Module):
    """Grounded Teacher's relation-weighted classification loss (stateless wrapper).

    See :func:`relation_weighted_cross_entropy`; ``forward(logits, labels, relation,
    soft_targets=None)``.

    Example:
        >>> loss = RelationWeightedLoss()
        >>> out = loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.eye(2) * 0.9)
    """

    def __init__(self, *, log_loss: bool = True, reg: float = 1.0, reduction: str = "mean"):
        super().__init__()
        if not isinstance(log_loss, bool):
            raise TypeError(f"RelationWeightedLoss: log_loss must be a bool; got {log_loss!r}")
        if not isinstance(reg, (int, float)) or reg < 0 or not math.isfinite(reg):
            raise ValueError(f"RelationWeightedLoss: reg must be a finite number >= 0; got {reg}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(
                "RelationWeightedLoss: reduction must be 'mean', 'sum' or 'none'; "
                f"got {reduction!r}"
            )
        self.log_loss, self.reg, self.reduction = log_loss, float(reg), reduction

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        relation: torch.Tensor,
        soft_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return relation_weighted_cross_entropy(
            logits,
            labels,
            relation,
            soft_targets=soft_targets,
            log_loss=self.log_loss,
            reg=self.reg,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"log_loss={self.log_loss}, reg={self.reg}, reduction={self.reduction!r}"


# ------------------------------------------------------------------- relation-guided mixing


class CropBank:
    """The last ``max_save`` crops per class (``RCM.bank`` / ``save_crops``).

    ``add(image, boxes, labels)`` stores ``image[:, y1:y2, x1:x2]`` of each box (coordinates
    truncated to integers, as released); ``crops[c]`` lists class ``c``'s crops, oldest first.
    """

    def __init__(self, num_classes: int, *, max_save: int = 50) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"CropBank: num_classes must be an integer >= 1; got {num_classes!r}")
        if not isinstance(max_save, int) or max_save < 1:
            raise ValueError(f"CropBank: max_save must be an integer >= 1; got {max_save!r}")
        self.num_classes, self.max_save = num_classes, max_save
        self.crops: list[list[torch.Tensor]] = [[] for _ in range(num_classes)]

    def add(self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor) -> None:
        """Store the crops of ``boxes`` ``(n, 4)`` with classes ``labels`` ``(n,)`` of ``image``."""
        if image.dim() != 3 or boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise ValueError(
                f"CropBank.add: image must be (C, H, W) and boxes (n, 4); got "
                f"{_shape(image)} and {_shape(boxes)}"
            )
        _check_classes("CropBank.add", "labels", labels, self.num_classes, bg=False)
        for box, c in zip(boxes.long().tolist(), labels.tolist(), strict=True):
            crop = image[:, box[1] : box[3], box[0] : box[2]]
            if crop.shape[1] and crop.shape[2]:
                self.crops[c].append(crop.clone())
        for c in range(self.num_classes):
            self.crops[c] = self.crops[c][-self.max_save :]

    def sizes(self) -> torch.Tensor:
        """``(K,)`` crops held per class."""
        return torch.tensor([len(c) for c in self.crops], dtype=torch.int64)

    def __repr__(self) -> str:
        return f"CropBank(num_classes={self.num_classes}, max_save={self.max_save})"


class RelationMixParams(NamedTuple):
    """What :func:`sample_relation_mix` drew for the ``n`` boxes of one image.

    Attributes:
        mix: ``(n,)`` bool, the box gets a crop.
        mix_class: ``(n,)`` int64 the crop's class ``m`` (``-1`` where not mixed).
        crop_index: ``(n,)`` int64 index into ``bank.crops[m]`` (``-1`` where not mixed).
        lam: ``(n,)`` float32 the original's share ``lam`` (1 where not mixed).
        minority: ``(n,)`` bool, the box's class was a minority base.
    """

    mix: torch.Tensor
    mix_class: torch.Tensor
    crop_index: torch.Tensor
    lam: torch.Tensor
    minority: torch.Tensor


def sample_relation_mix(
    relation: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    bank: CropBank,
    *,
    mix_ratio: float = 0.5,
    limit_mix: bool = True,
    random_classes: bool = False,
    skip_minority: bool = False,
    generator: torch.Generator | None = None,
) -> RelationMixParams:
    """Draw relation-guided mixing for the boxes of one image (``RCM.mix_crop_new``).

    The image is left alone with probability ``mix_ratio``. Otherwise, per box of class ``g``,
    with ``d`` the mean of ``diag(C)``: a majority base (``C[g, g] > d``) weighs the classes by
    ``v = C[:, g]`` with ``v[g] = 0``, a minority base by ``v = C[g, :]`` (skipped when
    ``skip_minority``, as on the released target stream); skip if ``sum v < 0.1``; draw
    ``m ~ v`` (uniform over ``K`` with ``random_classes``); skip if ``m = g``; skip with
    probability 0.5 or if the bank has no crop of ``m``; pick a crop uniformly; skip if the crop
    is under 0.4x the box in height or width; ``lam ~ Beta(0.5, 0.5)``, with ``limit_mix``
    ``lam <- 1 - lam`` when above 0.5 and then, for minority bases, when below 0.5.
    Beta(0.5, 0.5) is drawn as ``sin^2(pi u / 2)`` (its inverse CDF), so that ``generator``
    decides every draw. All draws are made up front: 1 + 4 per box.

    Args:
        relation: ``(K, K)`` class relation ``C``.
        boxes: ``(n, 4)`` xyxy boxes of the image.
        labels: ``(n,)`` int64 classes in ``[0, K)``.
        bank: the crops to mix in.
        mix_ratio: probability that the whole image is not mixed (``MIX_RATIO``, 0.5).
        limit_mix: ``LIMIT_MIX`` (True released).
        random_classes: ``MIX_RANDOM_CLASSES`` (False released).
        skip_minority: leave minority boxes alone (the release does on target images).
        generator: the random source.

    Returns:
        :class:`RelationMixParams`.
    """
    fn = "sample_relation_mix"
    k = _check_relation(fn, relation)
    if bank.num_classes != k:
        raise ValueError(f"{fn}: bank has {bank.num_classes} classes; relation has {k}")
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{fn}: boxes must have shape (n, 4); got {_shape(boxes)}")
    _check_classes(fn, "labels", labels, k, bg=False)
    if labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"{fn}: labels must have shape ({boxes.shape[0]},); got {_shape(labels)}")
    if not 0.0 <= mix_ratio <= 1.0:
        raise ValueError(f"{fn}: mix_ratio must be in [0, 1]; got {mix_ratio}")
    n = int(labels.shape[0])
    u_img = torch.rand((), generator=generator)
    u = torch.rand(n, 4, generator=generator, dtype=torch.float64)
    c = relation.detach().double().cpu()
    g = labels.long().cpu()
    diag = torch.diagonal(c)
    minority = ~(diag[g] > diag.mean())
    v = torch.where(minority[:, None], c[g], c[:, g].T.clone())
    v[torch.arange(n)[~minority], g[~minority]] = 0.0
    ok = (~(minority & skip_minority)) & (v.sum(dim=1) >= 0.1) & bool(u_img >= mix_ratio)
    if random_classes:
        m = (u[:, 0] * k).long().clamp(max=k - 1)
    else:
        cdf = v.cumsum(dim=1) / v.sum(dim=1, keepdim=True).clamp(min=1e-12)
        m = torch.searchsorted(cdf, u[:, 0:1].contiguous()).squeeze(1).clamp(max=k - 1)
    sizes = bank.sizes()
    ok &= (m != g) & (u[:, 1] >= 0.5) & (sizes[m] > 0)
    idx = (u[:, 2] * sizes[m].double()).long().clamp(max=(sizes[m] - 1).clamp(min=0))
    hw = boxes.detach().long().cpu()
    h: list[float] = (hw[:, 3] - hw[:, 1]).double().tolist()
    w: list[float] = (hw[:, 2] - hw[:, 0]).double().tolist()
    for i in torch.nonzero(ok).flatten().tolist():
        crop = bank.crops[int(m[i])][int(idx[i])]
        if crop.shape[1] / max(h[i], 1e-12) < 0.4 or crop.shape[2] / max(w[i], 1e-12) < 0.4:
            ok[i] = False
    lam = torch.sin(math.pi * u[:, 3] / 2) ** 2
    if limit_mix:
        lam = torch.where(lam > 0.5, 1 - lam, lam)
        lam = torch.where(minority & (lam < 0.5), 1 - lam, lam)
    neg = torch.full_like(m, -1)
    return RelationMixParams(
        mix=ok,
        mix_class=torch.where(ok, m, neg),
        crop_index=torch.where(ok, idx, neg),
        lam=torch.where(ok, lam, torch.ones_like(lam)).float(),
        minority=minority,
    )


def apply_relation_mix(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    params: RelationMixParams,
    bank: CropBank,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blend the drawn crops into their boxes (deterministic given ``params``).

    For each mixed box (integer coordinates, truncated): the crop is resized (bilinear) to the
    box and ``I[box] <- lam I[box] + (1 - lam) crop``; soft target
    ``lam onehot(g) + (1 - lam) onehot(m)`` over ``K + 1`` classes; hard label ``g`` for
    minority bases, ``m`` for majority bases (``KEEP_ASPECT = False``, as configured).

    Args:
        image: ``(C, H, W)`` float image (not modified).
        boxes: ``(n, 4)``; labels: ``(n,)`` int64.
        params: from :func:`sample_relation_mix`.
        bank: the bank ``params`` were drawn from.

    Returns:
        ``(image, hard_labels (n,), soft_targets (n, K + 1))``.
    """
    if image.dim() != 3 or not image.is_floating_point():
        raise ValueError(
            f"apply_relation_mix: image must be a float (C, H, W); got {_shape(image)}"
        )
    k = bank.num_classes
    out = image.clone()
    g = labels.long()
    soft = F.one_hot(g, k + 1).to(image.dtype if image.is_floating_point() else torch.float32)
    hard = g.clone()
    bl = boxes.detach().long()
    for i in torch.nonzero(params.mix.to(torch.bool)).flatten().tolist():
        m, lam = int(params.mix_class[i]), float(params.lam[i])
        crop = bank.crops[m][int(params.crop_index[i])].to(image)
        x1, y1, x2, y2 = bl[i].tolist()
        if y2 <= y1 or x2 <= x1:
            continue
        resized = F.interpolate(crop[None], size=(y2 - y1, x2 - x1), mode="bilinear")[0]
        out[:, y1:y2, x1:x2] = lam * out[:, y1:y2, x1:x2] + (1 - lam) * resized
        soft[i] = 0
        soft[i, g[i]] += lam
        soft[i, m] += 1 - lam
        if not bool(params.minority[i]):
            hard[i] = m
    return out, hard, soft


class RelationGuidedMix(nn.Module):
    """Grounded Teacher's relation-guided crop mixing of one image (stateless wrapper).

    ``forward(image, boxes, labels, relation, bank, *, generator=None)`` draws
    :func:`sample_relation_mix` and applies :func:`apply_relation_mix`; returns
    ``(image, hard_labels, soft_targets)``.
    """

    def __init__(
        self,
        *,
        mix_ratio: float = 0.5,
        limit_mix: bool = True,
        random_classes: bool = False,
        skip_minority: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= mix_ratio <= 1.0:
            raise ValueError(f"RelationGuidedMix: mix_ratio must be in [0, 1]; got {mix_ratio}")
        self.mix_ratio, self.limit_mix = float(mix_ratio), bool(limit_mix)
        self.random_classes, self.skip_minority = bool(random_classes), bool(skip_minority)

    def forward(
        self,
        image: torch.Tensor,
        boxes: torch.Tensor,
        labels: torch.Tensor,
        relation: torch.Tensor,
        bank: CropBank,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        params = sample_relation_mix(
            relation,
            boxes,
            labels,
            bank,
            mix_ratio=self.mix_ratio,
            limit_mix=self.limit_mix,
            random_classes=self.random_classes,
            skip_minority=self.skip_minority,
            generator=generator,
        )
        return apply_relation_mix(image, boxes, labels, params, bank)

    def extra_repr(self) -> str:
        return (
            f"mix_ratio={self.mix_ratio}, limit_mix={self.limit_mix}, "
            f"random_classes={self.random_classes}, skip_minority={self.skip_minority}"
        )


# --------------------------------------------------------------------------- expert guidance


def _threshold(d: Detections, threshold: float) -> Detections:
    keep = d.scores > threshold
    return Detections(d.boxes[keep], d.scores[keep], d.labels[keep])


def expert_guidance(
    teacher: Sequence[Detections],
    expert: Sequence[Detections | None],
    *,
    threshold: float = 0.8,
    overwrite: bool = False,
) -> tuple[list[Detections], list[Detections]]:
    """The two pseudo-label sets the student trains on: the teacher's and the expert's.

    Both are thresholded with ``score > threshold`` (``threshold_bbox``; ``BBOX_THRESHOLD``
    0.8 in the released config). ``expert[i]`` is None for an image without expert boxes.

    - ``overwrite=False`` (default; the paper's intent): ``(teacher_i, expert_i)`` per image,
      an image without expert boxes gets an empty expert set.
    - ``overwrite=True`` (the released ``run_step_full_semisup``): images without expert boxes
      are dropped from the expert list, which is then written over the teacher's labels by
      position (``add_label`` mutates the batch in place and returns the same list), so both
      returned lists are the same: expert labels by position, the teacher's only past the end
      of the expert list.

    Args:
        teacher: per image, the teacher's detections on the weak view.
        expert: per image, the expert's detections or None (same length as ``teacher``).
        threshold: the confidence a box must exceed.
        overwrite: reproduce the released overwrite.

    Returns:
        ``(teacher_labels, expert_labels)``, one :class:`Detections` per image each.

    Example:
        >>> d = lambda s: Detections(torch.zeros(1, 4), torch.tensor([s]), torch.tensor([0]))
        >>> t, e = expert_guidance([d(0.9), d(0.9)], [None, d(0.95)], overwrite=True)
        >>> [round(float(x.scores[0]), 2) for x in t] == [0.95, 0.9] and t is e
        True
    """
    if len(teacher) != len(expert):
        raise ValueError(
            f"expert_guidance: expert must have one entry per image ({len(teacher)}); "
            f"got {len(expert)}"
        )
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"expert_guidance: threshold must be in [0, 1]; got {threshold}")
    t = [_threshold(d, threshold) for d in teacher]
    empty = [Detections(d.boxes[:0], d.scores[:0], d.labels[:0]) for d in teacher]
    if not overwrite:
        e = [_threshold(x, threshold) if x is not None else empty[i] for i, x in enumerate(expert)]
        return t, e
    compact = [_threshold(x, threshold) for x in expert if x is not None]
    merged = list(t)
    for i, x in enumerate(compact):
        merged[i] = x
    return merged, merged
