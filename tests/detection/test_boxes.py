"""Box utilities against naive float64 loops."""

from __future__ import annotations

import pytest
import torch

from posneg.detection.boxes import box_area, box_centers, box_iou, center_distance, centers_inside


def _rand_boxes(n: int, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 50
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 30 + 0.5
    return torch.cat((xy, xy + wh), dim=1)


def test_iou_matches_naive_loop() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = _rand_boxes(7, g), _rand_boxes(5, g)
    got = box_iou(a, b)
    for i in range(7):
        for j in range(5):
            ax1, ay1, ax2, ay2 = a[i].tolist()
            bx1, by1, bx2, by2 = b[j].tolist()
            iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
            ih = max(0.0, min(ay2, by2) - max(ay1, by1))
            inter = iw * ih
            union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
            assert got[i, j].item() == pytest.approx(inter / union, abs=1e-12)


def test_iou_properties() -> None:
    g = torch.Generator().manual_seed(1)
    a = _rand_boxes(6, g)
    m = box_iou(a, a)
    torch.testing.assert_close(m.diagonal(), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(m, m.T)
    assert (m >= 0).all() and (m <= 1 + 1e-12).all()
    far = a + 1000.0
    assert (box_iou(a, far) == 0).all()
    assert box_iou(a, a[:0]).shape == (6, 0)


def test_centers_and_distance() -> None:
    b = torch.tensor([[0.0, 0.0, 2.0, 4.0], [3.0, 4.0, 5.0, 8.0]])
    torch.testing.assert_close(box_centers(b), torch.tensor([[1.0, 2.0], [4.0, 6.0]]))
    torch.testing.assert_close(box_area(b), torch.tensor([8.0, 8.0]))
    d = center_distance(b, b)
    torch.testing.assert_close(d, torch.tensor([[0.0, 5.0], [5.0, 0.0]]))


def test_centers_inside_margin() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    pts = torch.tensor([[5.0, 5.0], [0.005, 5.0], [0.02, 5.0], [10.0, 5.0], [11.0, 5.0]])
    got = centers_inside(pts, boxes)[:, 0].tolist()
    assert got == [True, False, True, False, False]
    assert centers_inside(pts, boxes, eps=0.0)[1, 0].item()


def test_errors_name_function_and_argument() -> None:
    good = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"box_iou: a must have shape \(N, 4\)"):
        box_iou(torch.zeros(2, 3), good)
    with pytest.raises(TypeError, match="box_iou: b must be a floating-point tensor"):
        box_iou(good, torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"center_distance: a must be a torch\.Tensor"):
        center_distance([[0, 0, 1, 1]], good)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"centers_inside: points must have shape \(N, 2\)"):
        centers_inside(good, good)
    with pytest.raises(ValueError, match="centers_inside: eps must be >= 0"):
        centers_inside(torch.zeros(1, 2), good, eps=-1.0)
    with pytest.raises(TypeError, match="box_iou: b has dtype"):
        box_iou(good, good.double())
