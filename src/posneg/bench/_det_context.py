"""What every section of `posneg bench detection` is given: scenes, a detector and its tools.

`posneg bench detection` builds one :class:`DetContext` per seed: synthetic scenes (8x8 digits,
upsampled and pasted at several scales onto crops of the bundled photographs; see
:mod:`posneg.bench._det_scenes`), a shifted target domain for source-free adaptation, a
long-tailed training split for many-class heads, the tiny anchor-based single-stage detector
of :mod:`posneg.bench._det_model` with its training and prediction helpers, and COCO-style AP
(:func:`posneg.detection.metrics.average_precision`).

A section is a function ``section(ctx, generator) -> dict[str, Any]`` returning its metrics for
that seed (numbers; keys starting with ``_`` are not tabulated). Sections live in
``posneg/bench/_detection_<part>.py`` files, each exporting ``SECTIONS: dict[str, Section]``;
the bench collects them from a fixed list and skips the files that are absent.

Conventions (all scenes): images ``(N, 3, S, S)`` float32 in ``[0, 1]``; boxes per image
``(n_i, 4)`` float32 xyxy in pixels; labels per image ``(n_i,)`` int64 in ``[0, num_classes)``.
Detections per image: :class:`posneg.detection.metrics.Detections` (boxes, scores, labels).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["DetContext", "DetScenes", "Section"]


@dataclass(frozen=True)
class DetScenes:
    """A set of scenes with their ground truth.

    Attributes:
        images: ``(N, 3, S, S)`` float32 in ``[0, 1]``.
        boxes: ``N`` tensors ``(n_i, 4)`` float32 xyxy in pixels.
        labels: ``N`` tensors ``(n_i,)`` int64 class ids.
        domain: ``"source"`` or ``"target"``.
    """

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    domain: str = "source"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: list[int]) -> DetScenes:
        """The scenes at ``index`` (a new object; tensors are shared)."""
        return DetScenes(
            self.images[index],
            [self.boxes[i] for i in index],
            [self.labels[i] for i in index],
            self.domain,
        )


@dataclass(frozen=True)
class DetContext:
    """The shared protocol of one run (one seed); read-only by convention.

    Attributes:
        source_train: labelled source-domain scenes (the detector's training data).
        source_test: held-out source-domain scenes.
        target_train: target-domain scenes (other backgrounds, blur, lower contrast); their
            labels are there for analysis only; source-free sections must not train on them.
        target_test: held-out target-domain scenes for target AP.
        longtail_train: source-domain scenes whose classes follow a long-tailed distribution
            (class 0 most frequent, class ``num_classes - 1`` rarest).
        num_classes: number of object classes (digits ``0 .. num_classes - 1``; the bench's
            ``--classes``, 3 by default).
        image_size: ``S``.
        make_detector: ``make_detector(generator) -> nn.Module``, a fresh
            :class:`posneg.bench._det_model.TinyDetector` (one anchor per location).
        train_detector: ``train_detector(model, scenes, *, assigner, steps, generator) -> model``
            (``assigner`` is ``"atss"`` or ``"iou"``); trains in place and returns the model in
            eval mode.
        predict: ``predict(model, images) -> list[Detections]`` (score threshold and NMS applied).
        evaluate: ``evaluate(detections, scenes) -> dict[str, float]`` with ``ap``, ``ap50``,
            ``ap75``, ``ap_small``, ``ap_medium``, ``ap_large`` (COCO-style, 101 points).
        source_detector: a detector trained on ``source_train`` with ATSS, eval mode (sections
            copy it before changing it), or None when the bench did not train one.
        steps: the training steps of the preset (sections may use it for their own training).
        preset: ``"demo"`` or ``"default"``.
        seed: the run's seed.
        device: where models and tensors live.
        out: the bench's output folder, or None.
        extra: anything else the set-up provides.
    """

    source_train: DetScenes
    source_test: DetScenes
    target_train: DetScenes
    target_test: DetScenes
    longtail_train: DetScenes
    num_classes: int
    image_size: int
    make_detector: Callable[[torch.Generator], nn.Module]
    train_detector: Callable[..., nn.Module]
    predict: Callable[..., list[Any]]
    evaluate: Callable[[list[Any], DetScenes], dict[str, float]]
    source_detector: nn.Module | None = None
    steps: int = 300
    preset: str = "default"
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    out: Path | None = None
    extra: Mapping[str, object] = field(default_factory=dict)


#: A bench section: metrics for one seed.
Section = Callable[[DetContext, torch.Generator], dict[str, Any]]
