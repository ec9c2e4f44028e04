"""Sample selection: what chooses (and weights) training samples.

- coresets for data-efficient augmentation (:mod:`posneg.selection.coresets`);
- class-dependent compression, iterative magnitude pruning with a class-weighted loss
  (:mod:`posneg.selection.compression`);
- sample adaptive augmentation's naive-sample tracker for semi-supervised learning
  (:mod:`posneg.selection.saa`);
- label fusion over several observers, negative frames and the pre-screen gate
  (:mod:`posneg.selection.observers`).
"""

from __future__ import annotations

from posneg.selection.compression import (
    ClassDependentLoss,
    PruneRound,
    class_dependent_loss,
    freeze_pruned,
    iterative_magnitude_pruning,
    magnitude_increase_score,
    prunable_parameters,
    prune_mask,
    ranking_term,
    rewind,
)
from posneg.selection.coresets import (
    Coreset,
    CoresetSelector,
    class_budgets,
    cluster_weights,
    facility_location_similarity,
    gradient_proxy,
    greedy_facility_location,
    random_subset,
    select_coreset,
)
from posneg.selection.observers import (
    PRESCREEN_THRESHOLDS,
    STRATEGIES,
    FrameOutcomes,
    FusionStrategy,
    ObserverLabelFusion,
    SegmentationScores,
    batch_soft_dice,
    draw_observers,
    frame_labels,
    frame_outcomes,
    fuse_observer_labels,
    prescreen_gate,
    prescreen_thresholds,
    segmentation_scores,
)
from posneg.selection.saa import (
    NaiveSampleTracker,
    SAAPasteParams,
    SampleAdaptiveAugmentation,
    apply_saa_paste,
    otsu_threshold,
    saa_strong_views,
    sample_saa_paste_params,
    update_loss_history,
    update_naive_mask,
)

__all__ = [
    "PRESCREEN_THRESHOLDS",
    "STRATEGIES",
    "ClassDependentLoss",
    "Coreset",
    "CoresetSelector",
    "FrameOutcomes",
    "FusionStrategy",
    "NaiveSampleTracker",
    "ObserverLabelFusion",
    "PruneRound",
    "SAAPasteParams",
    "SampleAdaptiveAugmentation",
    "SegmentationScores",
    "apply_saa_paste",
    "batch_soft_dice",
    "class_budgets",
    "class_dependent_loss",
    "cluster_weights",
    "draw_observers",
    "facility_location_similarity",
    "frame_labels",
    "frame_outcomes",
    "freeze_pruned",
    "fuse_observer_labels",
    "gradient_proxy",
    "greedy_facility_location",
    "iterative_magnitude_pruning",
    "magnitude_increase_score",
    "otsu_threshold",
    "prescreen_gate",
    "prescreen_thresholds",
    "prunable_parameters",
    "prune_mask",
    "random_subset",
    "ranking_term",
    "rewind",
    "saa_strong_views",
    "sample_saa_paste_params",
    "segmentation_scores",
    "select_coreset",
    "update_loss_history",
    "update_naive_mask",
]
