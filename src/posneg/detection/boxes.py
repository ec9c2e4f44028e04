"""Box utilities for the detection family: IoU, centres, centre distance, centre-in-box.

Boxes are ``(x1, y1, x2, y2)`` ("xyxy") in pixels, float tensors of shape ``(N, 4)``. All
functions are batched, run on the input's device and keep its dtype; they are pairwise
(``(N, 4) x (M, 4) -> (N, M)``) wherever two sets are compared. Checked against
``torchvision.ops.box_iou`` in ``tests/peers/test_torchvision_det1.py``.

Example:
    >>> import torch
    >>> a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    >>> b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]])
    >>> box_iou(a, b)
    tensor([[0.1429, 1.0000]])
"""

from __future__ import annotations

import torch

from posneg import _checks

__all__ = ["box_area", "box_centers", "box_iou", "center_distance", "centers_inside"]


def _check_boxes(fn: str, name: str, boxes: object) -> torch.Tensor:
    x = _checks.check_float(fn, name, boxes)
    if x.dim() != 2 or x.shape[1] != 4:
        raise ValueError(
            f"{fn}: {name} must have shape (N, 4) in (x1, y1, x2, y2); got {tuple(x.shape)}"
        )
    return x


def _check_points(fn: str, name: str, points: object) -> torch.Tensor:
    x = _checks.check_float(fn, name, points)
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"{fn}: {name} must have shape (N, 2) in (x, y); got {tuple(x.shape)}")
    return x


def _check_pair(fn: str, a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    _checks.check_same_device(fn, b_name, b, a_name, a)
    _checks.check_same_dtype(fn, b_name, b, a_name, a)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area ``(x2 - x1) * (y2 - y1)`` of each box, ``(N, 4) -> (N,)``.

    Degenerate boxes (``x2 < x1``) give a negative area; :func:`box_iou` clamps intersections
    only, like ``torchvision.ops.box_area``.
    """
    b = _check_boxes("box_area", "boxes", boxes)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union, ``(N, 4) x (M, 4) -> (N, M)``.

    ``IoU = |a ∩ b| / (|a| + |b| - |a ∩ b|)`` with the intersection clamped at zero (the same
    convention as ``torchvision.ops.box_iou``: no ``+1`` pixel offset). Two zero-area boxes give
    ``nan`` (0 / 0), as in torchvision.

    Args:
        a: boxes ``(N, 4)`` xyxy, floating point.
        b: boxes ``(M, 4)`` xyxy, same dtype and device.

    Returns:
        ``(N, M)`` IoU in ``[0, 1]``.
    """
    fn = "box_iou"
    a = _check_boxes(fn, "a", a)
    b = _check_boxes(fn, "b", b)
    _check_pair(fn, a, "a", b, "b")
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def box_centers(boxes: torch.Tensor) -> torch.Tensor:
    """Centres ``((x1 + x2) / 2, (y1 + y2) / 2)``, ``(N, 4) -> (N, 2)``."""
    b = _check_boxes("box_centers", "boxes", boxes)
    return torch.stack(((b[:, 0] + b[:, 2]) / 2.0, (b[:, 1] + b[:, 3]) / 2.0), dim=1)


def center_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distance between box centres, ``(N, 4) x (M, 4) -> (N, M)``.

    This is ATSS's candidate criterion (``sqrt((ax - bx)^2 + (ay - by)^2)``, computed directly,
    not through ``torch.cdist``'s matrix-product shortcut, so ties stay exact).
    """
    fn = "center_distance"
    a = _check_boxes(fn, "a", a)
    b = _check_boxes(fn, "b", b)
    _check_pair(fn, a, "a", b, "b")
    ca = torch.stack(((a[:, 0] + a[:, 2]) / 2.0, (a[:, 1] + a[:, 3]) / 2.0), dim=1)
    cb = torch.stack(((b[:, 0] + b[:, 2]) / 2.0, (b[:, 1] + b[:, 3]) / 2.0), dim=1)
    diff = ca[:, None, :] - cb[None, :, :]
    return (diff.pow(2).sum(-1)).sqrt()


def centers_inside(points: torch.Tensor, boxes: torch.Tensor, *, eps: float = 0.01) -> torch.Tensor:
    """Whether each point lies strictly inside each box, ``(N, 2) x (M, 4) -> (N, M)`` bool.

    Inside means ``min(x - x1, y - y1, x2 - x, y2 - y) > eps``, ATSS's test (``eps = 0.01`` in
    ``sfzhang15/ATSS`` ``atss_core/modeling/rpn/atss/loss.py``). ``eps = 0`` gives the plain
    strict test.

    Args:
        points: ``(N, 2)`` points (e.g. anchor centres from :func:`box_centers`).
        boxes: ``(M, 4)`` xyxy boxes, same dtype and device.
        eps: margin; must be finite and >= 0.
    """
    fn = "centers_inside"
    p = _check_points(fn, "points", points)
    b = _check_boxes(fn, "boxes", boxes)
    _check_pair(fn, p, "points", b, "boxes")
    margin = _checks.check_nonnegative(fn, "eps", eps)
    x = p[:, 0:1]
    y = p[:, 1:2]
    d = torch.stack(
        (x - b[None, :, 0], y - b[None, :, 1], b[None, :, 2] - x, b[None, :, 3] - y), dim=-1
    )
    return d.min(dim=-1).values > margin
