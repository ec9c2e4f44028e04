"""Detection: which anchors and predictions count as positives and negatives.

Box utilities (:mod:`posneg.detection.boxes`), COCO-style average precision
(:mod:`posneg.detection.metrics`) and anchor assigners (:mod:`posneg.detection.atss`).
"""

from posneg.detection.boxes import box_area, box_centers, box_iou, center_distance, centers_inside

__all__ = ["box_area", "box_centers", "box_iou", "center_distance", "centers_inside"]
