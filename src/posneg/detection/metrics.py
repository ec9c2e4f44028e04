"""COCO-style average precision for box detections (101 recall points, IoU 0.5:0.95, by size).

Follows ``pycocotools.cocoeval.COCOeval`` (``evaluateImg`` + ``accumulate``, box IoU, no crowd
boxes): per image and class the detections are sorted by score (stable) and cut to
``max_detections``; each, in turn, takes the unmatched ground-truth box of highest IoU at or
above the threshold (boxes outside the area range come last and are only matched when no
in-range box is; a detection matched to one, or unmatched and itself outside the range, is
ignored). Over all images, per class, precision is made monotone and read at the recall points
``0, 0.01, ..., 1`` (``searchsorted(recall, r, 'left')``, 0 past the last recall); AP is the mean
over recall points, then over classes with at least one in-range box, then over IoU thresholds.

Areas are box areas in pixels^2. COCO's ranges (small < 32^2 <= medium < 96^2 <= large, both
ends inclusive as in pycocotools) suit full-size images; pass ``area_ranges`` for small ones.

Example:
    >>> import torch
    >>> gt = [torch.tensor([[0.0, 0, 10, 10]])]
    >>> det = [Detections(torch.tensor([[0.0, 0, 10, 9]]), torch.tensor([0.9]), torch.tensor([0]))]
    >>> r = average_precision(detections=det, gt_boxes=gt, gt_labels=[torch.tensor([0])])
    >>> round(r["ap50"], 3), round(r["ap"], 3)
    (1.0, 0.9)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from posneg import _checks
from posneg.detection.boxes import box_iou

__all__ = ["COCO_AREA_RANGES", "Detections", "average_precision"]

CITATION = """
@inproceedings{lin2014coco,
  title     = {Microsoft {COCO}: Common Objects in Context},
  author    = {Lin, Tsung-Yi and Maire, Michael and Belongie, Serge and Hays, James and
               Perona, Pietro and Ramanan, Deva and Doll{\\'a}r, Piotr and Zitnick, C. Lawrence},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2014},
  note      = {arXiv:1405.0312}
}
"""

#: pycocotools' area ranges (pixels^2): all, small, medium, large.
COCO_AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e10),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e10),
}


class Detections(NamedTuple):
    """One image's detections.

    Attributes:
        boxes: ``(n, 4)`` xyxy float.
        scores: ``(n,)`` float confidences (higher first).
        labels: ``(n,)`` int64 classes.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def _match(
    ious: np.ndarray, g_ignore: np.ndarray, d_out: np.ndarray, thr: float
) -> tuple[np.ndarray, np.ndarray]:
    """COCO greedy matching for one image/class/range; returns (matched, ignored) per detection."""
    n_d, n_g = ious.shape
    gt_taken = np.zeros(n_g, dtype=bool)
    matched = np.zeros(n_d, dtype=bool)
    ignored = np.zeros(n_d, dtype=bool)
    for d in range(n_d):
        best = min(thr, 1 - 1e-10)
        m = -1
        for g in range(n_g):
            if gt_taken[g]:
                continue
            if m > -1 and not g_ignore[m] and g_ignore[g]:
                break
            if ious[d, g] < best:
                continue
            best = ious[d, g]
            m = g
        if m == -1:
            ignored[d] = d_out[d]
            continue
        gt_taken[m] = True
        matched[d] = True
        ignored[d] = g_ignore[m]
    return matched, ignored


def _ap_from_matches(scores: np.ndarray, tp: np.ndarray, ig: np.ndarray, n_pos: int) -> float:
    order = np.argsort(-scores, kind="mergesort")
    tp, ig = tp[order], ig[order]
    tps = np.cumsum(tp & ~ig).astype(np.float64)
    fps = np.cumsum(~tp & ~ig).astype(np.float64)
    recall = tps / n_pos
    precision = tps / (tps + fps + np.spacing(1))
    for i in range(len(precision) - 1, 0, -1):
        precision[i - 1] = max(precision[i - 1], precision[i])
    rec_thrs = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(recall, rec_thrs, side="left")
    q = np.zeros(101)
    valid = idx < len(precision)
    q[valid] = precision[idx[valid]]
    return float(q.mean())


def _check_inputs(
    fn: str,
    detections: Sequence[Detections],
    gt_boxes: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
) -> int:
    for name, seq in (("detections", detections), ("gt_boxes", gt_boxes), ("gt_labels", gt_labels)):
        if not isinstance(seq, Sequence):
            raise TypeError(
                f"{fn}: {name} must be a sequence (one entry per image); got {type(seq).__name__}"
            )
    n = len(detections)
    if len(gt_boxes) != n or len(gt_labels) != n:
        raise ValueError(
            f"{fn}: detections, gt_boxes and gt_labels must have one entry per image; "
            f"got {n}, {len(gt_boxes)} and {len(gt_labels)}"
        )
    for i in range(n):
        det = detections[i]
        if not isinstance(det, Detections):
            raise TypeError(f"{fn}: detections[{i}] must be a Detections; got {type(det).__name__}")
        nd = det.boxes.shape[0]
        if det.boxes.shape != (nd, 4) or det.scores.shape != (nd,) or det.labels.shape != (nd,):
            raise ValueError(
                f"{fn}: detections[{i}] must hold boxes (n, 4), scores (n,), labels (n,); got "
                f"{tuple(det.boxes.shape)}, {tuple(det.scores.shape)}, {tuple(det.labels.shape)}"
            )
        gb, gl = gt_boxes[i], gt_labels[i]
        _checks.check_tensor(fn, f"gt_boxes[{i}]", gb)
        _checks.check_tensor(fn, f"gt_labels[{i}]", gl)
        if gb.dim() != 2 or gb.shape[1] != 4 or gl.shape != (gb.shape[0],):
            raise ValueError(
                f"{fn}: gt_boxes[{i}] must be (G, 4) and gt_labels[{i}] (G,); got "
                f"{tuple(gb.shape)} and {tuple(gl.shape)}"
            )
    return n


def average_precision(
    *,
    detections: Sequence[Detections],
    gt_boxes: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    iou_thresholds: Sequence[float] | None = None,
    area_ranges: Mapping[str, tuple[float, float]] | None = None,
    max_detections: int = 100,
) -> dict[str, float]:
    """COCO-style box AP over a set of images (see the module docstring for the protocol).

    Args:
        detections: per image, a :class:`Detections`.
        gt_boxes: per image, ``(G_i, 4)`` xyxy ground-truth boxes.
        gt_labels: per image, ``(G_i,)`` integer classes.
        iou_thresholds: default ``0.50, 0.55, ..., 0.95`` (must include 0.5 and 0.75 for
            ``ap50`` / ``ap75``; those keys are absent otherwise).
        area_ranges: name -> ``(low, high)`` box area; must contain ``"all"``. Default
            :data:`COCO_AREA_RANGES`.
        max_detections: detections kept per image and class (highest scores), 100.

    Returns:
        ``{"ap", "ap50", "ap75", "ap_<range>" for every range but "all"}``; ``nan`` where no
        class has an in-range box (pycocotools prints -1 there).
    """
    fn = "average_precision"
    n_img = _check_inputs(fn, detections, gt_boxes, gt_labels)
    thrs = [0.5 + 0.05 * i for i in range(10)] if iou_thresholds is None else list(iou_thresholds)
    if not thrs:
        raise ValueError(f"{fn}: iou_thresholds must not be empty")
    for t in thrs:
        _checks.check_range(fn, "iou_thresholds[i]", t, 0.0, 1.0)
    ranges = dict(COCO_AREA_RANGES if area_ranges is None else area_ranges)
    if "all" not in ranges:
        raise ValueError(f"{fn}: area_ranges must contain 'all'; got {sorted(ranges)}")
    max_det = _checks.check_int(fn, "max_detections", max_detections, min_value=1)
    classes = sorted(
        {int(c) for lab in gt_labels for c in lab.tolist()}
        | {int(c) for d in detections for c in d.labels.tolist()}
    )
    # ap[range][t] -> list over classes
    table: dict[str, list[list[float]]] = {r: [[] for _ in thrs] for r in ranges}
    for k in classes:
        per_img = []
        for i in range(n_img):
            det = detections[i]
            dm = det.labels == k
            d_boxes = det.boxes[dm].detach().double().cpu()
            d_scores = det.scores[dm].detach().double().cpu().numpy()
            order = np.argsort(-d_scores, kind="mergesort")[:max_det]
            d_boxes, d_scores = d_boxes[torch.from_numpy(order)], d_scores[order]
            gm = gt_labels[i] == k
            g_boxes = gt_boxes[i][gm].detach().double().cpu()
            ious = box_iou(d_boxes, g_boxes).numpy()
            d_area = ((d_boxes[:, 2] - d_boxes[:, 0]) * (d_boxes[:, 3] - d_boxes[:, 1])).numpy()
            g_area = ((g_boxes[:, 2] - g_boxes[:, 0]) * (g_boxes[:, 3] - g_boxes[:, 1])).numpy()
            per_img.append((ious, d_scores, d_area, g_area))
        for name, (lo, hi) in ranges.items():
            n_pos = 0
            rows = []
            for ious, d_scores, d_area, g_area in per_img:
                g_ig = (g_area < lo) | (g_area > hi)
                g_order = np.argsort(g_ig, kind="mergesort")
                n_pos += int((~g_ig).sum())
                d_out = (d_area < lo) | (d_area > hi)
                rows.append((ious[:, g_order], g_ig[g_order], d_out, d_scores))
            if n_pos == 0:
                continue
            scores = np.concatenate([r[3] for r in rows]) if rows else np.zeros(0)
            for ti, t in enumerate(thrs):
                tp_parts, ig_parts = [], []
                for ious, g_ig, d_out, _ in rows:
                    tp, ig = _match(ious, g_ig, d_out, t)
                    tp_parts.append(tp)
                    ig_parts.append(ig)
                tp_all = np.concatenate(tp_parts) if tp_parts else np.zeros(0, dtype=bool)
                ig_all = np.concatenate(ig_parts) if ig_parts else np.zeros(0, dtype=bool)
                table[name][ti].append(_ap_from_matches(scores, tp_all, ig_all, n_pos))
    out: dict[str, float] = {}

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    out["ap"] = mean([v for per_t in table["all"] for v in per_t])
    for key, t0 in (("ap50", 0.5), ("ap75", 0.75)):
        hits = [ti for ti, t in enumerate(thrs) if abs(t - t0) < 1e-9]
        if hits:
            out[key] = mean(table["all"][hits[0]])
    for name in ranges:
        if name != "all":
            out[f"ap_{name}"] = mean([v for per_t in table[name] for v in per_t])
    return out
