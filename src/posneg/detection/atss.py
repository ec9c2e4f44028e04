"""ATSS (adaptive training sample selection) and the IoU-threshold assigner it is compared with.

Both decide, per image, which anchors are positives (and for which ground-truth box), which are
negatives (background) and, for the IoU-threshold assigner, which are ignored.

ATSS (Zhang et al., CVPR 2020), as released in ``sfzhang15/ATSS``
``atss_core/modeling/rpn/atss/loss.py`` (``ATSSLossComputation.prepare_targets``,
``POSITIVE_TYPE == 'ATSS'``, commit 0d5af6d69526ae73bafe327295b87a85b37fc220):

1. ``O[a, g]`` = IoU of anchor ``a`` with box ``g``; ``D[a, g]`` = distance of their centres.
2. For each level and box, the ``min(k, |A_l|)`` anchors of that level closest in ``D``
   (``torch.topk(largest=False)``) are the candidates ``C_g`` (``k * L`` of them).
3. ``t_g = mean(O[C_g, g]) + std(O[C_g, g])`` (torch's unbiased std).
4. Positive when ``O[a, g] >= t_g`` and the anchor centre is inside ``g`` by more than 0.01 px.
5. An anchor positive for several boxes goes to the one with the highest IoU; the rest are
   background. There is no ignore band.

Deliberate differences from the released code, each tested:

- **IoU convention.** The release computes IoU with maskrcnn-benchmark's ``+1`` pixel offset
  (``boxlist_iou``, ``TO_REMOVE = 1``); here IoU is the continuous one of
  :func:`posneg.detection.boxes.box_iou` (as in mmdetection and torchvision). Positives can
  differ for boxes a few pixels wide.
- **No boxes.** The release has no guard (it fails on an empty image); here every anchor is
  background, as in mmdetection's ``ATSSAssigner``.
- **No fallback (default, as released).** A box whose candidate IoUs split so that
  ``t_g`` exceeds all of them, or whose candidates' centres all lie outside it, gets no
  positive. ``ensure_positive=True`` (not in the paper) then gives each such box, in box
  order, its highest-IoU anchor among those not yet positive (ties to the lowest index,
  centre-in-box not required), so every box has a positive whenever there are at least as many
  anchors as boxes.

The IoU-threshold assigner is RetinaNet's ``Matcher`` (maskrcnn-benchmark
``modeling/matcher.py``; ``POSITIVE_TYPE == 'IoU'`` in the ATSS release): each anchor takes its
highest-IoU box; ``IoU >= pos_iou`` positive, ``IoU < neg_iou`` background, in between ignored.
With ``low_quality_matches=True`` every anchor that attains some box's maximum IoU (ties
included) becomes positive *for its own best box*, as in the Matcher (which also means an
anchor with IoU 0 can be made positive for a box that overlaps nothing). ``center_in_box=True``
adds the ATSS release's filter: positives whose centre is outside their box become ignored.

Outputs are :class:`Assignment` tuples of int64 tensors over the anchors: ``gt_index`` (the box
index for positives, :data:`BACKGROUND` = -1, :data:`IGNORE` = -2) and ``labels`` (the box's
class for positives, -1 background, -2 ignored).

Example:
    >>> import torch
    >>> anchors = torch.tensor([[0.0, 0, 8, 8], [8, 0, 16, 8], [0, 8, 8, 16], [8, 8, 16, 16]])
    >>> a = atss_assign(anchors=anchors, num_anchors_per_level=[4], gt_boxes=torch.tensor(
    ...     [[0.0, 0, 9, 9]]), gt_labels=torch.tensor([3]), topk=4)
    >>> a.labels.tolist()
    [3, -1, -1, -1]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from posneg import _checks
from posneg.detection.boxes import box_iou, center_distance, centers_inside

__all__ = [
    "BACKGROUND",
    "IGNORE",
    "ATSSAssigner",
    "Assignment",
    "IoUThresholdAssigner",
    "atss_assign",
    "iou_threshold_assign",
]

CITATION = """
@inproceedings{zhang2020atss,
  title     = {Bridging the Gap Between Anchor-based and Anchor-free Detection via Adaptive
               Training Sample Selection},
  author    = {Zhang, Shifeng and Chi, Cheng and Yao, Yongqiang and Lei, Zhen and Li, Stan Z.},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2020},
  note      = {arXiv:1912.02424}
}
"""

CITATION_RETINANET = """
@inproceedings{lin2017focal,
  title     = {Focal Loss for Dense Object Detection},
  author    = {Lin, Tsung-Yi and Goyal, Priya and Girshick, Ross and He, Kaiming and
               Doll{\\'a}r, Piotr},
  booktitle = {IEEE International Conference on Computer Vision (ICCV)},
  year      = {2017},
  note      = {arXiv:1708.02002}
}
"""

CITATIONS = {"ATSSAssigner": CITATION, "IoUThresholdAssigner": CITATION_RETINANET}

#: ``gt_index`` / ``labels`` value of a background (negative) anchor.
BACKGROUND = -1
#: ``gt_index`` / ``labels`` value of an ignored anchor (no loss).
IGNORE = -2


class Assignment(NamedTuple):
    """Per-anchor assignment (all int64, shape ``(A,)``).

    Attributes:
        gt_index: index of the assigned box for positives; -1 background; -2 ignored.
        labels: the assigned box's class for positives; -1 background; -2 ignored.
    """

    gt_index: torch.Tensor
    labels: torch.Tensor

    @property
    def positive(self) -> torch.Tensor:
        """Bool mask of positive anchors."""
        return self.gt_index >= 0


def _check_inputs(
    fn: str, anchors: object, gt_boxes: object, gt_labels: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a = _checks.check_float(fn, "anchors", anchors)
    if a.dim() != 2 or a.shape[1] != 4:
        raise ValueError(f"{fn}: anchors must have shape (A, 4) in xyxy; got {tuple(a.shape)}")
    if a.shape[0] < 1:
        raise ValueError(f"{fn}: anchors must hold at least one anchor; got {tuple(a.shape)}")
    g = _checks.check_float(fn, "gt_boxes", gt_boxes)
    if g.dim() != 2 or g.shape[1] != 4:
        raise ValueError(f"{fn}: gt_boxes must have shape (G, 4) in xyxy; got {tuple(g.shape)}")
    _checks.check_same_device(fn, "gt_boxes", g, "anchors", a)
    _checks.check_same_dtype(fn, "gt_boxes", g, "anchors", a)
    _checks.check_finite(fn, "anchors", a)
    _checks.check_finite(fn, "gt_boxes", g)
    lab = _checks.check_tensor(fn, "gt_labels", gt_labels)
    if lab.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{fn}: gt_labels must be an integer tensor; got {lab.dtype}")
    if lab.shape != (g.shape[0],):
        raise ValueError(
            f"{fn}: gt_labels must have shape (G,) = ({g.shape[0]},) matching gt_boxes; "
            f"got {tuple(lab.shape)}"
        )
    _checks.check_same_device(fn, "gt_labels", lab, "anchors", a)
    if lab.numel() and int(lab.min()) < 0:
        raise ValueError(f"{fn}: gt_labels must be >= 0; got min {int(lab.min())}")
    return a, g, lab.long()


def _check_levels(fn: str, num_anchors_per_level: object, total: int) -> list[int]:
    if isinstance(num_anchors_per_level, (str, bytes)) or not isinstance(
        num_anchors_per_level, Sequence
    ):
        raise TypeError(
            f"{fn}: num_anchors_per_level must be a sequence of ints; "
            f"got {type(num_anchors_per_level).__name__}"
        )
    counts = [
        _checks.check_int(fn, "num_anchors_per_level[i]", n, min_value=1)
        for n in num_anchors_per_level
    ]
    if not counts or sum(counts) != total:
        raise ValueError(
            f"{fn}: num_anchors_per_level must sum to the number of anchors ({total}); "
            f"got {list(num_anchors_per_level)}"
        )
    return counts


def _finish(gt_index: torch.Tensor, gt_labels: torch.Tensor) -> Assignment:
    if gt_labels.numel() == 0:
        return Assignment(gt_index, gt_index.clone())
    labels = torch.where(gt_index >= 0, gt_labels[gt_index.clamp(min=0)], gt_index)
    return Assignment(gt_index, labels)


def atss_assign(
    *,
    anchors: torch.Tensor,
    num_anchors_per_level: Sequence[int],
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    topk: int = 9,
    ensure_positive: bool = False,
) -> Assignment:
    """ATSS assignment for one image (see the module docstring for the rule and its sources).

    Args:
        anchors: ``(A, 4)`` xyxy anchors of all levels, concatenated level by level.
        num_anchors_per_level: anchors per level, summing to ``A``.
        gt_boxes: ``(G, 4)`` xyxy boxes, same dtype/device (``G = 0`` gives all background).
        gt_labels: ``(G,)`` integer classes >= 0.
        topk: candidates per level and box (9 in the paper); clipped at each level's size.
        ensure_positive: give every box without a positive its best free anchor (not in the
            released code; default False, the released behaviour).

    Returns:
        :class:`Assignment` over the ``A`` anchors (no anchor is ignored).
    """
    fn = "atss_assign"
    a, g, lab = _check_inputs(fn, anchors, gt_boxes, gt_labels)
    counts = _check_levels(fn, num_anchors_per_level, a.shape[0])
    k = _checks.check_int(fn, "topk", topk, min_value=1)
    fallback = _checks.check_bool(fn, "ensure_positive", ensure_positive)
    num_anchors, num_gt = a.shape[0], g.shape[0]
    gt_index = torch.full((num_anchors,), BACKGROUND, dtype=torch.int64, device=a.device)
    if num_gt == 0:
        return _finish(gt_index, lab)
    ious = box_iou(a, g)
    dist = center_distance(a, g)
    cand = []
    start = 0
    for n in counts:
        _, idx = dist[start : start + n].topk(min(k, n), dim=0, largest=False)
        cand.append(idx + start)
        start += n
    cand_idx = torch.cat(cand, dim=0)  # (C, G)
    cols = torch.arange(num_gt, device=a.device)
    cand_ious = ious[cand_idx, cols]
    thresh = cand_ious.mean(0) + cand_ious.std(0)
    anchor_centers = torch.stack(((a[:, 0] + a[:, 2]) / 2.0, (a[:, 1] + a[:, 3]) / 2.0), dim=1)
    inside = centers_inside(anchor_centers, g)  # (A, G)
    is_pos = (cand_ious >= thresh[None, :]) & inside[cand_idx, cols]
    masked = torch.full_like(ious, -torch.inf)
    pos_rows = cand_idx[is_pos]
    pos_cols = cols.expand_as(cand_idx)[is_pos]
    masked[pos_rows, pos_cols] = ious[pos_rows, pos_cols]
    best_val, best_gt = masked.max(dim=1)
    gt_index = torch.where(best_val == -torch.inf, gt_index, best_gt)
    if fallback:
        gt_index = _ensure_positive(gt_index, ious, num_gt)
    return _finish(gt_index, lab)


def _ensure_positive(gt_index: torch.Tensor, ious: torch.Tensor, num_gt: int) -> torch.Tensor:
    gt_index = gt_index.clone()
    has_pos = torch.zeros(num_gt, dtype=torch.bool, device=gt_index.device)
    has_pos[gt_index[gt_index >= 0]] = True
    for j in torch.nonzero(~has_pos).flatten().tolist():
        free = gt_index < 0
        if not bool(free.any()):
            break
        col = ious[:, j].masked_fill(~free, -torch.inf)
        gt_index[int(col.argmax())] = j
    return gt_index


def iou_threshold_assign(
    *,
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    pos_iou: float = 0.5,
    neg_iou: float = 0.4,
    low_quality_matches: bool = True,
    center_in_box: bool = False,
) -> Assignment:
    """RetinaNet's IoU-threshold assignment for one image (maskrcnn-benchmark ``Matcher``).

    Args:
        anchors: ``(A, 4)`` xyxy anchors.
        gt_boxes: ``(G, 4)`` xyxy boxes (``G = 0`` gives all background).
        gt_labels: ``(G,)`` integer classes >= 0.
        pos_iou: IoU at or above which an anchor is positive (0.5).
        neg_iou: IoU below which it is background (0.4); in between it is ignored.
        low_quality_matches: also make positive each box's highest-IoU anchors (the Matcher's
            ``allow_low_quality_matches``, True for RetinaNet).
        center_in_box: ignore positives whose centre is not inside their box (the ATSS
            release's ``'IoU'`` ablation does this).

    Returns:
        :class:`Assignment` over the ``A`` anchors.
    """
    fn = "iou_threshold_assign"
    a, g, lab = _check_inputs(fn, anchors, gt_boxes, gt_labels)
    hi = _checks.check_range(fn, "pos_iou", pos_iou, 0.0, 1.0)
    lo = _checks.check_range(fn, "neg_iou", neg_iou, 0.0, 1.0)
    if lo > hi:
        raise ValueError(f"{fn}: neg_iou must be <= pos_iou ({hi}); got {neg_iou!r}")
    low_q = _checks.check_bool(fn, "low_quality_matches", low_quality_matches)
    cib = _checks.check_bool(fn, "center_in_box", center_in_box)
    gt_index = torch.full((a.shape[0],), BACKGROUND, dtype=torch.int64, device=a.device)
    if g.shape[0] == 0:
        return _finish(gt_index, lab)
    ious = box_iou(a, g)  # (A, G)
    best_val, best_gt = ious.max(dim=1)
    gt_index = best_gt.clone()
    gt_index[best_val < hi] = IGNORE
    gt_index[best_val < lo] = BACKGROUND
    if low_q:
        per_gt_max = ious.max(dim=0).values
        rows = torch.nonzero(ious == per_gt_max[None, :])[:, 0]
        gt_index[rows] = best_gt[rows]
    if cib:
        centers = torch.stack(((a[:, 0] + a[:, 2]) / 2.0, (a[:, 1] + a[:, 3]) / 2.0), dim=1)
        pos = gt_index >= 0
        inside = centers_inside(centers, g)[torch.arange(a.shape[0]), gt_index.clamp(min=0)]
        gt_index[pos & ~inside] = IGNORE
    return _finish(gt_index, lab)


class ATSSAssigner(nn.Module):
    """Stateless wrapper of :func:`atss_assign` storing ``topk`` and ``ensure_positive``.

    Example:
        >>> import torch
        >>> anchors = torch.tensor([[0.0, 0, 8, 8], [8, 0, 16, 8]])
        >>> box, label = torch.tensor([[0.0, 0, 7, 7]]), torch.tensor([1])
        >>> ATSSAssigner(topk=4)(anchors, [2], box, label).labels  # IoUs (0.77, 0): t > 0.77
        tensor([-1, -1])
        >>> ATSSAssigner(topk=4, ensure_positive=True)(anchors, [2], box, label).labels
        tensor([ 1, -1])
    """

    def __init__(self, topk: int = 9, *, ensure_positive: bool = False) -> None:
        super().__init__()
        self.topk = _checks.check_int("ATSSAssigner", "topk", topk, min_value=1)
        self.ensure_positive = _checks.check_bool(
            "ATSSAssigner", "ensure_positive", ensure_positive
        )

    def forward(
        self,
        anchors: torch.Tensor,
        num_anchors_per_level: Sequence[int],
        gt_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
    ) -> Assignment:
        """Assign one image's anchors (see :func:`atss_assign`)."""
        return atss_assign(
            anchors=anchors,
            num_anchors_per_level=num_anchors_per_level,
            gt_boxes=gt_boxes,
            gt_labels=gt_labels,
            topk=self.topk,
            ensure_positive=self.ensure_positive,
        )

    def extra_repr(self) -> str:
        return f"topk={self.topk}, ensure_positive={self.ensure_positive}"


class IoUThresholdAssigner(nn.Module):
    """Stateless wrapper of :func:`iou_threshold_assign` (RetinaNet's rule).

    Example:
        >>> import torch
        >>> assigner = IoUThresholdAssigner(pos_iou=0.5, neg_iou=0.4)
        >>> anchors = torch.tensor([[0.0, 0, 8, 8], [8, 0, 16, 8]])
        >>> assigner(anchors, torch.tensor([[0.0, 0, 7, 7]]), torch.tensor([1])).labels
        tensor([ 1, -1])
    """

    def __init__(
        self,
        pos_iou: float = 0.5,
        neg_iou: float = 0.4,
        *,
        low_quality_matches: bool = True,
        center_in_box: bool = False,
    ) -> None:
        super().__init__()
        fn = "IoUThresholdAssigner"
        self.pos_iou = _checks.check_range(fn, "pos_iou", pos_iou, 0.0, 1.0)
        self.neg_iou = _checks.check_range(fn, "neg_iou", neg_iou, 0.0, 1.0)
        if self.neg_iou > self.pos_iou:
            raise ValueError(f"{fn}: neg_iou must be <= pos_iou ({pos_iou}); got {neg_iou!r}")
        self.low_quality_matches = _checks.check_bool(
            fn, "low_quality_matches", low_quality_matches
        )
        self.center_in_box = _checks.check_bool(fn, "center_in_box", center_in_box)

    def forward(
        self, anchors: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor
    ) -> Assignment:
        """Assign one image's anchors (see :func:`iou_threshold_assign`)."""
        return iou_threshold_assign(
            anchors=anchors,
            gt_boxes=gt_boxes,
            gt_labels=gt_labels,
            pos_iou=self.pos_iou,
            neg_iou=self.neg_iou,
            low_quality_matches=self.low_quality_matches,
            center_in_box=self.center_in_box,
        )

    def extra_repr(self) -> str:
        return (
            f"pos_iou={self.pos_iou}, neg_iou={self.neg_iou}, "
            f"low_quality_matches={self.low_quality_matches}, center_in_box={self.center_in_box}"
        )
