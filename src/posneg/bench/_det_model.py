"""The tiny single-stage anchor-based detector of `posneg bench detection`.

A RetinaNet/ATSS-shaped detector sized for CPU: a 4-stage conv backbone (strides 2, 4, 8, 16;
two 3x3 conv + BatchNorm + ReLU per stage), an FPN (1x1 laterals to ``width`` channels at
strides 4, 8 and 16 plus a nearest-upsampling top-down path; three levels), a
head shared across levels (one 3x3 conv + ReLU per branch, then a classification conv with the
focal-loss prior bias ``-log(99)`` and a box conv). **One anchor per location**, square, side
``4 * stride`` (16, 32, 64 px on 64 px images; the paper's ATSS uses ``8 * stride`` on
full-size images). Boxes are coded as in the ATSS release's ``BoxCoder`` (deltas
``(dx, dy, dw, dh)`` with weights ``(10, 10, 5, 5)``, ``dw, dh`` clamped at ``log(1000 / 16)``),
without its ``+1`` pixel offset.

Training: sigmoid focal loss (:func:`posneg.losses.focal.focal`, ``gamma = 2``,
``alpha = 0.25``) over all non-ignored anchors, summed and divided by ``max(#positives, 1)``;
GIoU loss (``1 - GIoU``) on the positives' decoded boxes, averaged over positives, weight 2
(mmdetection's ATSS weight). The centerness branch of ATSS is left out, so that the two
assigners differ only in which anchors are positive. Adam, cosine decay to 0. Targets are
assigned once per training scene (anchors and scenes are fixed; no augmentation).

Inference: sigmoid scores > 0.05, the 100 best (anchor, class) pairs per image, class-wise NMS
at IoU 0.5, at most 100 detections.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posneg.bench._det_context import DetScenes
from posneg.detection.atss import atss_assign, iou_threshold_assign
from posneg.detection.boxes import box_iou
from posneg.detection.metrics import Detections, average_precision
from posneg.losses.focal import focal

__all__ = [
    "AREA_RANGES",
    "ASSIGNERS",
    "TinyDetector",
    "assign_targets",
    "decode",
    "encode",
    "evaluate",
    "nms",
    "predict",
    "train_detector",
]

STRIDES = (4, 8, 16)
ANCHOR_SCALE = 4.0
WEIGHTS = (10.0, 10.0, 5.0, 5.0)
CLAMP = math.log(1000.0 / 16)
ASSIGNERS = ("atss", "iou")
#: Box-area ranges (px^2) for AP by size on 64 px scenes (COCO's 32^2 / 96^2 scaled down).
AREA_RANGES = {
    "all": (0.0, 1e10),
    "small": (0.0, 12.0**2),
    "medium": (12.0**2, 20.0**2),
    "large": (20.0**2, 1e10),
}


def _grid(size: int, stride: int) -> torch.Tensor:
    c = torch.arange(stride / 2, size, stride, dtype=torch.float32)
    cy, cx = torch.meshgrid(c, c, indexing="ij")
    ctr = torch.stack((cx.flatten(), cy.flatten()), dim=1)
    half = ANCHOR_SCALE * stride / 2
    return torch.cat((ctr - half, ctr + half), dim=1)


class TinyDetector(nn.Module):
    """One anchor per location on three levels.

    ``forward(x)`` gives ``(logits (B, A, C), deltas (B, A, 4))``.
    """

    anchors: torch.Tensor

    def __init__(self, num_classes: int = 10, *, width: int = 32, image_size: int = 64) -> None:
        super().__init__()
        self.num_classes = num_classes
        chans = (16, 32, 48, 64)
        layers, c_in = [], 3
        for c in chans:
            layers.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(),
                    nn.Conv2d(c, c, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(),
                )
            )
            c_in = c
        self.stages = nn.ModuleList(layers)
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1) for c in chans[1:])
        self.cls_tower = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.box_tower = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.cls = nn.Conv2d(width, num_classes, 3, padding=1)
        self.box = nn.Conv2d(width, 4, 3, padding=1)
        nn.init.normal_(self.cls.weight, std=0.01)
        if self.cls.bias is not None:
            nn.init.constant_(self.cls.bias, -math.log(99.0))
        nn.init.normal_(self.box.weight, std=0.01)
        if self.box.bias is not None:
            nn.init.zeros_(self.box.bias)
        levels = [_grid(image_size, s) for s in STRIDES]
        self.num_anchors_per_level = [len(a) for a in levels]
        self.register_buffer("anchors", torch.cat(levels), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        pyramid = [lat(f) for lat, f in zip(self.laterals, feats[1:], strict=True)]
        for i in range(len(pyramid) - 2, -1, -1):  # top-down path
            pyramid[i] = pyramid[i] + F.interpolate(
                pyramid[i + 1], scale_factor=2.0, mode="nearest"
            )
        logits, deltas = [], []
        for p in pyramid:
            b = p.shape[0]
            logits.append(
                self.cls(self.cls_tower(p)).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes)
            )
            deltas.append(self.box(self.box_tower(p)).permute(0, 2, 3, 1).reshape(b, -1, 4))
        return torch.cat(logits, 1), torch.cat(deltas, 1)


def encode(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Deltas ``(dx, dy, dw, dh)`` of ``boxes`` relative to ``anchors`` (both ``(N, 4)``)."""
    wa, ha = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    xa, ya = anchors[:, 0] + wa / 2, anchors[:, 1] + ha / 2
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    x, y = boxes[:, 0] + w / 2, boxes[:, 1] + h / 2
    wx, wy, ww, wh = WEIGHTS
    return torch.stack(
        (wx * (x - xa) / wa, wy * (y - ya) / ha, ww * torch.log(w / wa), wh * torch.log(h / ha)), 1
    )


def decode(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Boxes from ``deltas`` (``(..., N, 4)``) and ``anchors`` (``(N, 4)``)."""
    wa, ha = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    xa, ya = anchors[:, 0] + wa / 2, anchors[:, 1] + ha / 2
    wx, wy, ww, wh = WEIGHTS
    x = deltas[..., 0] / wx * wa + xa
    y = deltas[..., 1] / wy * ha + ya
    w = torch.exp((deltas[..., 2] / ww).clamp(max=CLAMP)) * wa
    h = torch.exp((deltas[..., 3] / wh).clamp(max=CLAMP)) * ha
    return torch.stack((x - w / 2, y - h / 2, x + w / 2, y + h / 2), -1)


def _giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x1, y1 = pred[:, 0], pred[:, 1]
    x2, y2 = torch.maximum(pred[:, 2], x1), torch.maximum(pred[:, 3], y1)
    area_p = (x2 - x1) * (y2 - y1)
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    iw = (torch.minimum(x2, target[:, 2]) - torch.maximum(x1, target[:, 0])).clamp(min=0)
    ih = (torch.minimum(y2, target[:, 3]) - torch.maximum(y1, target[:, 1])).clamp(min=0)
    inter = iw * ih
    union = area_p + area_t - inter + 1e-7
    enclose = (torch.maximum(x2, target[:, 2]) - torch.minimum(x1, target[:, 0])) * (
        torch.maximum(y2, target[:, 3]) - torch.minimum(y1, target[:, 1])
    ) + 1e-7
    return 1 - (inter / union - (enclose - union) / enclose)


def assign_targets(
    model: TinyDetector, scenes: DetScenes, assigner: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per scene and anchor: labels ``(N, A)`` (class, -1 background, -2 ignored).

    Also the matched boxes ``(N, A, 4)`` (zeros where no box).
    """
    anchors = model.anchors.cpu()
    labels, boxes = [], []
    for b, lab in zip(scenes.boxes, scenes.labels, strict=True):
        if assigner == "atss":
            a = atss_assign(
                anchors=anchors,
                num_anchors_per_level=model.num_anchors_per_level,
                gt_boxes=b,
                gt_labels=lab,
            )
        else:
            a = iou_threshold_assign(anchors=anchors, gt_boxes=b, gt_labels=lab)
        labels.append(a.labels)
        boxes.append(b[a.gt_index.clamp(min=0)] if len(b) else torch.zeros(len(anchors), 4))
    return torch.stack(labels), torch.stack(boxes)


def train_detector(
    model: TinyDetector,
    scenes: DetScenes,
    *,
    assigner: str = "atss",
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 3e-3,
    generator: torch.Generator,
    tick: Any = None,
) -> TinyDetector:
    """Train ``model`` in place on ``scenes`` with ``assigner`` (``"atss"`` or ``"iou"``)."""
    if assigner not in ASSIGNERS:
        raise ValueError(f"train_detector: assigner must be one of {ASSIGNERS}; got {assigner!r}")
    device = model.anchors.device
    labels, targets = assign_targets(model, scenes, assigner)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    n = len(scenes)
    for step in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=generator)
        x = scenes.images[idx].to(device)
        lab = labels[idx].to(device)
        tgt = targets[idx].to(device)
        logits, deltas = model(x)
        valid = lab != -2
        pos = lab >= 0
        onehot = F.one_hot(lab.clamp(min=0), model.num_classes).float() * pos[..., None]
        num_pos = max(int(pos.sum()), 1)
        cls_loss = (
            focal(logits[valid], onehot[valid], gamma=2.0, alpha=0.25, reduction="sum") / num_pos
        )
        if bool(pos.any()):
            anchors = model.anchors.expand(lab.shape[0], -1, -1)[pos]
            pred = decode(deltas[pos][None], anchors)[0]
            box_loss = _giou_loss(pred, tgt[pos]).mean()
        else:
            box_loss = deltas.sum() * 0
        loss = cls_loss + 2.0 * box_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if tick is not None:
            tick(step)
    return model.eval()


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy NMS; indices kept, highest score first."""
    order = scores.argsort(descending=True, stable=True)
    overlaps = box_iou(boxes[order], boxes[order])
    keep: list[int] = []
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i] > iou
    return order[torch.tensor(keep, dtype=torch.int64)]


@torch.no_grad()
def predict(
    model: TinyDetector,
    images: torch.Tensor,
    *,
    score_thresh: float = 0.05,
    topk: int = 100,
    nms_iou: float = 0.5,
    batch_size: int = 128,
) -> list[Detections]:
    """Detections per image (boxes clipped to the image)."""
    model.eval()
    device = model.anchors.device
    size = images.shape[-1]
    out: list[Detections] = []
    for start in range(0, len(images), batch_size):
        logits, deltas = model(images[start : start + batch_size].to(device))
        scores = logits.sigmoid()
        boxes = decode(deltas, model.anchors).clamp(0, size)
        for s, b in zip(scores.cpu(), boxes.cpu(), strict=True):
            flat = s.flatten()
            keep = torch.nonzero(flat > score_thresh).flatten()
            keep = keep[flat[keep].argsort(descending=True, stable=True)[:topk]]
            a_idx, c_idx = keep // model.num_classes, keep % model.num_classes
            bb, ss = b[a_idx], flat[keep]
            shifted = bb + c_idx[:, None].float() * (size + 1)
            k = nms(shifted, ss, nms_iou) if len(keep) else keep
            out.append(Detections(bb[k], ss[k], c_idx[k]))
    return out


def evaluate(detections: list[Detections], scenes: DetScenes) -> dict[str, float]:
    """AP (0.5:0.95), AP50, AP75 and AP by size (:data:`AREA_RANGES`) on ``scenes``."""
    return average_precision(
        detections=detections,
        gt_boxes=scenes.boxes,
        gt_labels=scenes.labels,
        area_ranges=AREA_RANGES,
    )
