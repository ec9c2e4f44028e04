"""Sample selection: what chooses (and weights) training samples.

Coresets for data-efficient augmentation (:mod:`posneg.selection.coresets`); the lead adds the
exports of the other selection modules (compression, saa) here.
"""

from __future__ import annotations

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

__all__ = [
    "Coreset",
    "CoresetSelector",
    "class_budgets",
    "cluster_weights",
    "facility_location_similarity",
    "gradient_proxy",
    "greedy_facility_location",
    "random_subset",
    "select_coreset",
]
