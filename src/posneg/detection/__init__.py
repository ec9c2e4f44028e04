"""Detection: which anchors and predictions count as positives and negatives.

Box utilities (:mod:`posneg.detection.boxes`), COCO-style average precision
(:mod:`posneg.detection.metrics`) and anchor assigners (:mod:`posneg.detection.atss`: ATSS and
RetinaNet's IoU-threshold rule).
"""

from posneg.detection.atss import (
    BACKGROUND,
    IGNORE,
    Assignment,
    ATSSAssigner,
    IoUThresholdAssigner,
    atss_assign,
    iou_threshold_assign,
)
from posneg.detection.boxes import box_area, box_centers, box_iou, center_distance, centers_inside
from posneg.detection.metrics import Detections, average_precision

__all__ = [
    "BACKGROUND",
    "IGNORE",
    "ATSSAssigner",
    "Assignment",
    "Detections",
    "IoUThresholdAssigner",
    "atss_assign",
    "average_precision",
    "box_area",
    "box_centers",
    "box_iou",
    "center_distance",
    "centers_inside",
    "iou_threshold_assign",
]
