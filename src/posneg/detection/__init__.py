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
from posneg.detection.cq_dino import (
    CategoryContrastiveHead,
    CategoryTreeAggregation,
    CQDINOSelectionLoss,
    GradientShare,
    ancestor_mask,
    asymmetric_loss,
    category_positive_map,
    contrastive_logits,
    focal_logit_gradient,
    gradient_share,
    select_top_k,
    tree_aggregate,
    tree_depths,
    tree_weights,
)
from posneg.detection.metrics import Detections, average_precision

__all__ = [
    "BACKGROUND",
    "IGNORE",
    "ATSSAssigner",
    "Assignment",
    "CQDINOSelectionLoss",
    "CategoryContrastiveHead",
    "CategoryTreeAggregation",
    "Detections",
    "GradientShare",
    "IoUThresholdAssigner",
    "ancestor_mask",
    "asymmetric_loss",
    "atss_assign",
    "average_precision",
    "box_area",
    "box_centers",
    "box_iou",
    "category_positive_map",
    "center_distance",
    "centers_inside",
    "contrastive_logits",
    "focal_logit_gradient",
    "gradient_share",
    "iou_threshold_assign",
    "select_top_k",
    "tree_aggregate",
    "tree_depths",
    "tree_weights",
]
