"""COCO-style AP against a naive loop and hand-computed cases.

The protocol is pycocotools' ``COCOeval`` (``evaluateImg`` + ``accumulate``); the naive
reference here computes interpolated precision directly (the highest precision at any recall
>= r, for r = 0, 0.01, ..., 1,
with r rounded as numpy's linspace rounds it) after a plain greedy matching loop, no area ranges.
"""

from __future__ import annotations

import math

import pytest
import torch

from posneg.detection.metrics import Detections, average_precision


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _naive_ap(
    dets: list[Detections], gts: list[torch.Tensor], labels: list[torch.Tensor], thr: float
) -> float:
    classes = sorted({int(c) for lab in labels for c in lab.tolist()})
    aps = []
    for k in classes:
        records = []  # (score, image index, is_tp)
        n_pos = 0
        for i, (d, g, gl) in enumerate(zip(dets, gts, labels, strict=True)):
            gb = [b for b, c in zip(g.tolist(), gl.tolist(), strict=True) if c == k]
            n_pos += len(gb)
            items = sorted(
                [
                    (s, b)
                    for b, s, c in zip(
                        d.boxes.tolist(), d.scores.tolist(), d.labels.tolist(), strict=True
                    )
                    if c == k
                ],
                key=lambda x: -x[0],
            )
            taken = [False] * len(gb)
            for s, b in items:
                best, m = thr, -1
                for j, gbox in enumerate(gb):
                    v = _iou(b, gbox)
                    if not taken[j] and v >= best:
                        best, m = v, j
                if m >= 0:
                    taken[m] = True
                records.append((s, i, m >= 0))
        records.sort(key=lambda r: -r[0])
        tp = fp = 0
        curve = []
        for _, _, hit in records:
            tp += hit
            fp += not hit
            curve.append((tp / n_pos, tp / (tp + fp)))
        total = 0.0
        for r in range(101):
            rr = 0.01 * r  # pycocotools' np.linspace(0, 1, 101): 0.7 is 0.7000000000000001
            ps = [p for rec, p in curve if rec >= rr]
            total += max(ps) if ps else 0.0
        aps.append(total / 101)
    return sum(aps) / len(aps)


def _random_case(
    seed: int, n_img: int = 4
) -> tuple[list[Detections], list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    dets, gts, labs = [], [], []
    for _ in range(n_img):
        n = int(torch.randint(1, 5, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 60
        wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 20 + 4
        gb = torch.cat((xy, xy + wh), dim=1)
        gl = torch.randint(0, 3, (n,), generator=g)
        # detections: jittered copies of some gts, plus random false positives
        jit = gb + torch.randn(n, 4, generator=g, dtype=torch.float64) * 2.5
        jit = torch.cat(
            (torch.minimum(jit[:, :2], jit[:, 2:]), torch.maximum(jit[:, :2], jit[:, 2:])), 1
        )
        fp = torch.cat((xy.flip(0) + 5, xy.flip(0) + 5 + wh), dim=1)
        db = torch.cat((jit, fp))
        ds = torch.rand(2 * n, generator=g, dtype=torch.float64)
        dl = torch.cat((gl, torch.randint(0, 3, (n,), generator=g)))
        dets.append(Detections(db, ds, dl))
        gts.append(gb)
        labs.append(gl)
    return dets, gts, labs


@pytest.mark.parametrize("seed", range(6))
def test_ap_matches_naive_loop(seed: int) -> None:
    dets, gts, labs = _random_case(seed)
    got = average_precision(
        detections=dets, gt_boxes=gts, gt_labels=labs, iou_thresholds=[0.5, 0.75]
    )
    assert got["ap50"] == pytest.approx(_naive_ap(dets, gts, labs, 0.5), abs=1e-9)
    assert got["ap75"] == pytest.approx(_naive_ap(dets, gts, labs, 0.75), abs=1e-9)
    full = average_precision(detections=dets, gt_boxes=gts, gt_labels=labs)
    naive = sum(_naive_ap(dets, gts, labs, 0.5 + 0.05 * i) for i in range(10)) / 10
    assert full["ap"] == pytest.approx(naive, abs=1e-9)


def test_hand_computed_two_gts_one_false_positive() -> None:
    gt = [torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])]
    det = Detections(
        torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]]),
        torch.tensor([0.9, 0.8, 0.7]),
        torch.tensor([0, 0, 0]),
    )
    r = average_precision(detections=[det], gt_boxes=gt, gt_labels=[torch.tensor([0, 0])])
    # recall 0.5 at precision 1, recall 1 at precision 2/3: 51 points at 1, 50 at 2/3.
    assert r["ap50"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert r["ap"] == pytest.approx(r["ap50"])


def test_perfect_and_empty() -> None:
    gt = [torch.tensor([[0.0, 0, 10, 10]])]
    lab = [torch.tensor([1])]
    perfect = Detections(gt[0].clone(), torch.tensor([1.0]), torch.tensor([1]))
    assert average_precision(detections=[perfect], gt_boxes=gt, gt_labels=lab)[
        "ap"
    ] == pytest.approx(1.0)
    none = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    assert average_precision(detections=[none], gt_boxes=gt, gt_labels=lab)["ap"] == 0.0
    wrong_class = Detections(gt[0].clone(), torch.tensor([1.0]), torch.tensor([2]))
    assert average_precision(detections=[wrong_class], gt_boxes=gt, gt_labels=lab)["ap"] == 0.0
    r = average_precision(
        detections=[none],
        gt_boxes=[torch.zeros(0, 4)],
        gt_labels=[torch.zeros(0, dtype=torch.int64)],
    )
    assert math.isnan(r["ap"])


def test_area_ranges_ignore_out_of_range_boxes() -> None:
    gt = [torch.tensor([[0.0, 0, 4, 4], [20, 20, 40, 40]])]  # areas 16 and 400
    lab = [torch.tensor([0, 0])]
    # The big box found, the small box missed; a false positive of small size.
    det = Detections(
        torch.tensor([[20.0, 20, 40, 40], [50, 50, 53, 53]]),
        torch.tensor([0.9, 0.95]),
        torch.tensor([0, 0]),
    )
    ranges = {"all": (0.0, 1e10), "small": (0.0, 100.0), "large": (100.0, 1e10)}
    r = average_precision(detections=[det], gt_boxes=gt, gt_labels=lab, area_ranges=ranges)
    assert r["ap_large"] == pytest.approx(1.0)  # the small false positive is out of range: ignored
    assert r["ap_small"] == 0.0
    # all: FP first (precision 0 at recall 0), then TP: recall 0.5 at precision 0.5.
    assert r["ap"] == pytest.approx(51 * 0.5 / 101)


def test_max_detections_per_image_and_class() -> None:
    gt = [torch.tensor([[0.0, 0, 10, 10]])]
    boxes = torch.tensor([[50.0, 50, 60, 60]] * 3 + [[0.0, 0, 10, 10]])
    det = Detections(boxes, torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.zeros(4, dtype=torch.int64))
    lab = [torch.tensor([0])]
    assert (
        average_precision(detections=[det], gt_boxes=gt, gt_labels=lab, max_detections=3)["ap"]
        == 0.0
    )
    assert average_precision(detections=[det], gt_boxes=gt, gt_labels=lab, max_detections=4)[
        "ap"
    ] == pytest.approx(0.25)


def test_errors() -> None:
    gt = [torch.zeros(1, 4)]
    lab = [torch.zeros(1, dtype=torch.int64)]
    det = [Detections(torch.zeros(1, 4), torch.zeros(1), torch.zeros(1, dtype=torch.int64))]
    with pytest.raises(
        ValueError,
        match="average_precision: detections, gt_boxes and gt_labels must have one entry",
    ):
        average_precision(detections=det, gt_boxes=gt * 2, gt_labels=lab)
    with pytest.raises(TypeError, match=r"average_precision: detections\[0\] must be a Detections"):
        average_precision(detections=[(1, 2, 3)], gt_boxes=gt, gt_labels=lab)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="average_precision: area_ranges must contain 'all'"):
        average_precision(
            detections=det, gt_boxes=gt, gt_labels=lab, area_ranges={"small": (0.0, 1.0)}
        )
    with pytest.raises(ValueError, match="average_precision: max_detections must be"):
        average_precision(detections=det, gt_boxes=gt, gt_labels=lab, max_detections=0)
