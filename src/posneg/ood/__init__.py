"""Out-of-distribution detectors and their metrics.

Detectors work on features (or logits) the caller computed: ``fit(features, labels)``,
``score(features)``; higher score = more out-of-distribution, everywhere.
"""

from posneg.ood.baselines import (
    EnergyScore,
    KNNDistance,
    MaxLogit,
    MaxSoftmax,
    energy_score,
    knn_score,
    max_logit_score,
    msp_score,
)
from posneg.ood.mahalanobis import (
    Mahalanobis,
    MahalanobisEnsemble,
    fit_gaussian,
    gaussian_scores,
    layer_confidences,
    mahalanobis_score,
    preprocess_input,
    select_epsilon,
)
from posneg.ood.metrics import (
    aupr_in,
    aupr_out,
    auroc,
    detection_accuracy,
    fpr_at_tpr,
    ood_metrics,
)

# The other OOD engineers' exports (eps_ad, unicon_ha, clipn, counteranimal) go here; the lead
# adds them from their integration files.

__all__ = [
    "EnergyScore",
    "KNNDistance",
    "Mahalanobis",
    "MahalanobisEnsemble",
    "MaxLogit",
    "MaxSoftmax",
    "aupr_in",
    "aupr_out",
    "auroc",
    "detection_accuracy",
    "energy_score",
    "fit_gaussian",
    "fpr_at_tpr",
    "gaussian_scores",
    "knn_score",
    "layer_confidences",
    "mahalanobis_score",
    "max_logit_score",
    "msp_score",
    "ood_metrics",
    "preprocess_input",
    "select_epsilon",
]
