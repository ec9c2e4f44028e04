"""Scenes for `posneg bench detection`: 8x8 digits pasted at several scales onto real photos.

Backgrounds are random crops of scikit-learn's bundled photographs
(``sklearn.datasets.load_sample_images``): ``china.jpg`` for the source domain, ``flower.jpg``
for the target domain, which is also blurred (3x3 box filter, twice) and lower in contrast
(pixels pulled half way to their mean). Each scene holds 1 to ``max_objects`` digits from
``sklearn.datasets.load_digits``, each upsampled (bilinear) to a side drawn log-uniformly in
``[min_size, max_size]``, tinted with a random colour and alpha-blended (alpha = ink / 16). Its
box is the tight box of the pasted ink (alpha > 0.25). Digits are placed so that no two boxes
overlap by IoU > 0.2 (a few tries, then the digit is dropped). Labels follow the digit; with
``long_tail`` set the class of each object is drawn with ``p_c ∝ long_tail ** (-c / 9)`` (class 0
the head, class 9 the tail, head/tail ratio ``long_tail``; with ``classes`` < 10 only the digits
``0 .. classes - 1`` appear and the ramp runs over them). Train and test scenes draw from
disjoint halves of the digits.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from posneg.bench._det_context import DetScenes
from posneg.detection.boxes import box_iou

__all__ = ["make_scenes"]

NUM_CLASSES = 10


@lru_cache(maxsize=1)
def _photos() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_sample_images

    imgs = load_sample_images().images
    out = []
    for im in imgs:
        t = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out.append(F.avg_pool2d(t[None], 2)[0])  # 213 x 320: denser texture at 64 px
    return out[0], out[1]


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.from_numpy(d.images.astype(np.float32) / 16.0), torch.from_numpy(d.target).long()


def _target_style(img: torch.Tensor) -> torch.Tensor:
    k = torch.full((3, 1, 3, 3), 1.0 / 9.0)
    x = img[None]
    for _ in range(2):
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3)
    x = x[0]
    mean = x.mean(dim=(1, 2), keepdim=True)
    return mean + 0.5 * (x - mean)


def make_scenes(
    n: int,
    *,
    size: int = 64,
    domain: str = "source",
    split: str = "train",
    min_size: float = 8.0,
    max_size: float = 32.0,
    max_objects: int = 4,
    long_tail: float | None = None,
    classes: int = NUM_CLASSES,
    generator: torch.Generator,
) -> DetScenes:
    """``n`` scenes of side ``size`` (see the module docstring); all draws from ``generator``.

    ``classes`` keeps the digits ``0 .. classes - 1`` (labels unchanged).
    """
    if not 1 <= classes <= NUM_CLASSES:
        raise ValueError(f"make_scenes: classes must be in [1, {NUM_CLASSES}]; got {classes}")
    photo = _photos()[0 if domain == "source" else 1]
    digits, targets = _digits()
    half = len(digits) // 2
    idx_pool = torch.arange(half) if split == "train" else torch.arange(half, len(digits))
    by_class = [idx_pool[targets[idx_pool] == c] for c in range(classes)]
    if long_tail is not None:
        probs = torch.tensor([long_tail ** (-c / max(classes - 1, 1)) for c in range(classes)])
    else:
        probs = torch.ones(classes)
    probs = probs / probs.sum()
    _, ph, pw = photo.shape
    images = torch.empty(n, 3, size, size)
    all_boxes, all_labels = [], []
    for i in range(n):
        y0 = int(torch.randint(0, ph - size + 1, (1,), generator=generator))
        x0 = int(torch.randint(0, pw - size + 1, (1,), generator=generator))
        img = photo[:, y0 : y0 + size, x0 : x0 + size].clone()
        count = int(torch.randint(1, max_objects + 1, (1,), generator=generator))
        boxes: list[list[float]] = []
        labels: list[int] = []
        for _ in range(count):
            c = int(torch.multinomial(probs, 1, generator=generator))
            pool = by_class[c]
            d = digits[pool[int(torch.randint(0, len(pool), (1,), generator=generator))]]
            u = float(torch.rand((), generator=generator))
            side = round(math.exp(math.log(min_size) + u * math.log(max_size / min_size)))
            alpha = F.interpolate(
                d[None, None], size=(side, side), mode="bilinear", align_corners=False
            )[0, 0]
            alpha = alpha.clamp(0, 1)
            ys, xs = torch.nonzero(alpha > 0.25, as_tuple=True)
            if len(ys) == 0:
                continue
            for _try in range(5):
                oy = int(torch.randint(0, size - side + 1, (1,), generator=generator))
                ox = int(torch.randint(0, size - side + 1, (1,), generator=generator))
                box = [
                    ox + float(xs.min()),
                    oy + float(ys.min()),
                    ox + float(xs.max()) + 1,
                    oy + float(ys.max()) + 1,
                ]
                if (
                    not boxes
                    or float(box_iou(torch.tensor([box]), torch.tensor(boxes)).max()) <= 0.2
                ):
                    break
            else:
                continue
            colour = torch.rand(3, generator=generator)
            bright = img[:, oy : oy + side, ox : ox + side].mean() < 0.5
            colour = 0.6 + 0.4 * colour if bright else 0.4 * colour
            patch = img[:, oy : oy + side, ox : ox + side]
            img[:, oy : oy + side, ox : ox + side] = (
                patch * (1 - alpha) + colour[:, None, None] * alpha
            )
            boxes.append(box)
            labels.append(c)
        images[i] = _target_style(img) if domain == "target" else img
        all_boxes.append(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        all_labels.append(torch.tensor(labels, dtype=torch.int64))
    return DetScenes(images.clamp(0, 1), all_boxes, all_labels, domain)
