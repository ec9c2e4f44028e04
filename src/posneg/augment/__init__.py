"""Per-sample image augmentation on (B, C, H, W) batches.

RandAugment (``randaugment``) with its kernels (``functional``), MedMNIST-C corruptions
(``corruptions``), random-field augmentations (``random_field``), IRAD resampling
(``resample``), ForAug foreground/background recombination (``foraug``), and the learned
policies: MADAug (``madaug``), invariance-constrained MCMC sampling (``invariance``) and the
policy-gradient noise mask (``noise_mask``).

Each technique has a params sampler (``sample_*_params(..., generator=)``), a deterministic
``apply_*`` kernel and an ``nn.Module`` whose ``forward(x, *, generator=None)`` does both. The
function :func:`posneg.augment.resample.resample` is not re-exported here, so that the name
``posneg.augment.resample`` keeps meaning the module; use ``Resample`` or import it from there.
"""

from posneg.augment.corruptions import (
    CORRUPTIONS,
    DATASETS,
    MODALITIES,
    Corruptions,
    augmentation_params,
    corrupt,
    severity_table,
)
from posneg.augment.foraug import (
    ForAug,
    ForAugParams,
    apply_foraug,
    choose_backgrounds,
    original_prob,
    sample_foraug_params,
    threshold_mask,
)
from posneg.augment.invariance import (
    InvarianceSampler,
    dual_update,
    level_magnitudes,
    metropolis_hastings,
    primal_dual_loss,
    sample_proposals,
)
from posneg.augment.madaug import (
    IMAGE_OPS,
    SEQUENCE_OPS,
    ExploitParams,
    MADAugPolicy,
    apply_ops,
    bilevel_validation_loss,
    curriculum_split,
    explore_mix,
    op_values,
    ops_for,
    perturb_magnitudes,
    policy_outputs,
    sample_exploit_params,
)
from posneg.augment.noise_mask import (
    NoiseMaskDraw,
    NoiseMaskPolicy,
    blur_mask,
    gaussian_kernel1d,
    noise_mask_log_prob,
    noise_mask_loss,
    sample_noise_mask,
    smooth_concentrations,
)
from posneg.augment.randaugment import (
    OPS,
    RandAugment,
    RandAugmentParams,
    apply_randaugment,
    sample_randaugment_params,
)
from posneg.augment.random_field import (
    FIELDS,
    RandomField,
    RandomFieldParams,
    apply_random_field,
    gaussian_random_fields,
    sample_random_field_params,
)
from posneg.augment.resample import (
    Resample,
    ResampleParams,
    apply_resample,
    sample_resample_params,
)

__all__ = [
    "CORRUPTIONS",
    "DATASETS",
    "FIELDS",
    "IMAGE_OPS",
    "MODALITIES",
    "OPS",
    "SEQUENCE_OPS",
    "Corruptions",
    "ExploitParams",
    "ForAug",
    "ForAugParams",
    "InvarianceSampler",
    "MADAugPolicy",
    "NoiseMaskDraw",
    "NoiseMaskPolicy",
    "RandAugment",
    "RandAugmentParams",
    "RandomField",
    "RandomFieldParams",
    "Resample",
    "ResampleParams",
    "apply_foraug",
    "apply_ops",
    "apply_randaugment",
    "apply_random_field",
    "apply_resample",
    "augmentation_params",
    "bilevel_validation_loss",
    "blur_mask",
    "choose_backgrounds",
    "corrupt",
    "curriculum_split",
    "dual_update",
    "explore_mix",
    "gaussian_kernel1d",
    "gaussian_random_fields",
    "level_magnitudes",
    "metropolis_hastings",
    "noise_mask_log_prob",
    "noise_mask_loss",
    "op_values",
    "ops_for",
    "original_prob",
    "perturb_magnitudes",
    "policy_outputs",
    "primal_dual_loss",
    "sample_exploit_params",
    "sample_foraug_params",
    "sample_noise_mask",
    "sample_proposals",
    "sample_randaugment_params",
    "sample_random_field_params",
    "sample_resample_params",
    "severity_table",
    "smooth_concentrations",
    "threshold_mask",
]
