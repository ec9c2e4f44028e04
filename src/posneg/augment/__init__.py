"""Per-sample image augmentation on (B, C, H, W) batches.

RandAugment (``randaugment``) with its kernels (``functional``), MedMNIST-C corruptions
(``corruptions``), random-field augmentations (``random_field``) and IRAD resampling
(``resample``).

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
    "MODALITIES",
    "OPS",
    "Corruptions",
    "RandAugment",
    "RandAugmentParams",
    "RandomField",
    "RandomFieldParams",
    "Resample",
    "ResampleParams",
    "apply_randaugment",
    "apply_random_field",
    "apply_resample",
    "augmentation_params",
    "corrupt",
    "gaussian_random_fields",
    "sample_randaugment_params",
    "sample_random_field_params",
    "sample_resample_params",
    "severity_table",
]
