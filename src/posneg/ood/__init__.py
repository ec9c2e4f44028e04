"""Out-of-distribution detectors and their metrics.

Detectors work on features (or logits) the caller computed: ``fit(features, labels)``,
``score(features)``; higher score = more out-of-distribution, everywhere.

- baselines: :class:`MaxSoftmax`, :class:`MaxLogit`, :class:`EnergyScore`, :class:`KNNDistance`;
- :class:`Mahalanobis` and :class:`MahalanobisEnsemble` (Lee et al., NeurIPS 2018);
- :class:`EPSAD`: expected perturbation score + MMD against a reference set (Zhang et al., 2023);
- :class:`UniCLRLoss` and :class:`UniConHAScorer`: UniCon-HA one-class training and scoring;
- CLIPN's losses, learnable "no" prompts and the CTW/ATD scores on any two-tower model's features;
- the CounterAnimal protocol (:func:`group_accuracy`, :func:`effective_robustness`, ...);
- metrics: :func:`auroc`, :func:`aupr_in`, :func:`aupr_out`, :func:`fpr_at_tpr`.
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
from posneg.ood.clipn import (
    CLIPNLoss,
    CLIPNNoPrompt,
    CLIPNScore,
    add_no_prompt,
    atd_score,
    clipn_logits,
    clipn_loss,
    ctw_score,
    itbo_loss,
    merge_templates,
    tso_loss,
)
from posneg.ood.counteranimal import (
    GroupAccuracy,
    curate_counter_split,
    effective_robustness,
    fit_reference_line,
    group_accuracy,
    split_by_attribute,
)
from posneg.ood.eps_ad import (
    EPSAD,
    DeepKernel,
    GaussianScore,
    deep_kernel,
    expected_perturbation_score,
    median_bandwidth,
    mmd2_and_variance,
    mmd_scores,
    noise_prediction_score,
    pdist2,
    train_deep_kernel,
    vp_marginal,
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
from posneg.ood.unicon_ha import (
    UniCLRLoss,
    UniConHAScorer,
    anomaly_score,
    augment,
    hierarchical_loss,
    rotation_outliers,
    soft_weights,
    uniclr_loss,
    with_rotation_outliers,
)

__all__ = [
    "EPSAD",
    "CLIPNLoss",
    "CLIPNNoPrompt",
    "CLIPNScore",
    "DeepKernel",
    "EnergyScore",
    "GaussianScore",
    "GroupAccuracy",
    "KNNDistance",
    "Mahalanobis",
    "MahalanobisEnsemble",
    "MaxLogit",
    "MaxSoftmax",
    "UniCLRLoss",
    "UniConHAScorer",
    "add_no_prompt",
    "anomaly_score",
    "atd_score",
    "augment",
    "aupr_in",
    "aupr_out",
    "auroc",
    "clipn_logits",
    "clipn_loss",
    "ctw_score",
    "curate_counter_split",
    "deep_kernel",
    "detection_accuracy",
    "effective_robustness",
    "energy_score",
    "expected_perturbation_score",
    "fit_gaussian",
    "fit_reference_line",
    "fpr_at_tpr",
    "gaussian_scores",
    "group_accuracy",
    "hierarchical_loss",
    "itbo_loss",
    "knn_score",
    "layer_confidences",
    "mahalanobis_score",
    "max_logit_score",
    "median_bandwidth",
    "merge_templates",
    "mmd2_and_variance",
    "mmd_scores",
    "msp_score",
    "noise_prediction_score",
    "ood_metrics",
    "pdist2",
    "preprocess_input",
    "rotation_outliers",
    "select_epsilon",
    "soft_weights",
    "split_by_attribute",
    "train_deep_kernel",
    "tso_loss",
    "uniclr_loss",
    "vp_marginal",
    "with_rotation_outliers",
]
