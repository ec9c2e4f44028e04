"""posneg.detection box utilities and the detector's NMS against torchvision.ops (0.29:
``torchvision/ops/boxes.py``: ``box_iou``, ``box_area``, ``nms``)."""

from __future__ import annotations

import torch
from _peer import peer

from posneg.detection.boxes import box_area, box_iou

tv_ops = peer("torchvision.ops")


def _boxes(n: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * 100
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * 40 + 1
    return torch.cat((xy, xy + wh), dim=1)


def test_box_iou_matches_torchvision() -> None:
    for seed in range(3):
        a, b = _boxes(17, seed), _boxes(11, seed + 10)
        torch.testing.assert_close(box_iou(a, b), tv_ops.box_iou(a, b))
        torch.testing.assert_close(box_area(a), tv_ops.box_area(a))


def test_box_iou_float32_matches_torchvision() -> None:
    a, b = _boxes(9, 0, torch.float32), _boxes(13, 1, torch.float32)
    torch.testing.assert_close(box_iou(a, b), tv_ops.box_iou(a, b))


def test_bench_nms_matches_torchvision() -> None:
    from posneg.bench._det_model import nms

    for seed in range(3):
        boxes = _boxes(40, seed, torch.float32) / 3
        scores = torch.rand(40, generator=torch.Generator().manual_seed(seed))
        assert nms(boxes, scores, 0.5).tolist() == tv_ops.nms(boxes, scores, 0.5).tolist()
