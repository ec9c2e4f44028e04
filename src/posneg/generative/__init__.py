"""Generation steered away from negatives: guidance rules and attention hooks for diffusers models.

Perp-Neg guidance, NegToMe token merging, ANT's interval-aware training, augmented conditioning
and Adapt-then-Unlearn's EWC and repulsion losses. Imports only torch here; the diffusers
attention processor of NegToMe imports diffusers lazily.
"""

from posneg.generative.ant import (
    ANTUncertaintyWeighting,
    ant_uw_loss,
    interval_clustering,
    interval_losses,
    sample_interval_timesteps,
    task_affinity_scores,
    timestep_gradients,
    uniform_intervals,
)
from posneg.generative.augmented_conditioning import (
    MODES,
    AugCondParams,
    AugmentedConditioning,
    apply_augmented_conditioning,
    same_class_partners,
    sample_augmented_conditioning_params,
)
from posneg.generative.negtome import NegToMe, negtome
from posneg.generative.perp_neg import PerpNegGuidance, guidance, perp_neg_2d, perp_neg_3d
from posneg.generative.unlearn import (
    EWCPenalty,
    RepulsionLoss,
    consolidate,
    digit_scale,
    estimate_fisher,
    ewc_loss,
    fisher_diagonal,
    repulsion_distance,
    repulsion_loss,
)

__all__ = [
    "MODES",
    "ANTUncertaintyWeighting",
    "AugCondParams",
    "AugmentedConditioning",
    "EWCPenalty",
    "NegToMe",
    "PerpNegGuidance",
    "RepulsionLoss",
    "ant_uw_loss",
    "apply_augmented_conditioning",
    "consolidate",
    "digit_scale",
    "estimate_fisher",
    "ewc_loss",
    "fisher_diagonal",
    "guidance",
    "interval_clustering",
    "interval_losses",
    "negtome",
    "perp_neg_2d",
    "perp_neg_3d",
    "repulsion_distance",
    "repulsion_loss",
    "same_class_partners",
    "sample_augmented_conditioning_params",
    "sample_interval_timesteps",
    "task_affinity_scores",
    "timestep_gradients",
    "uniform_intervals",
]
