"""Batch mixing: MixUp, CutMix, FMix, ResizeMix, MinorityMix and the learned AdAutoMix.

Each technique has three layers:

- ``sample_<name>_params(..., generator=)`` draws the randomness into a small frozen dataclass
  (lambda per sample or per batch, an explicit partner ``index``, boxes or masks);
- ``apply_<name>(x, targets, params, *, masks=None, ...)`` is the deterministic, vectorised
  kernel (replaying the same params gives the same output, on images and masks alike);
- an ``nn.Module`` whose ``forward(x, targets, *, masks=None, generator=None)`` does both and
  returns :class:`MixedBatch` ``(x, targets)``, or :class:`MixedSegBatch`
  ``(x, targets, masks)`` when segmentation masks are given.

Conventions: ``lam[i]`` is the share of sample ``i`` itself; targets are class ids (with
``num_classes``), soft or multi-hot labels, mixed as ``lam y_i + (1 - lam) y_index[i]``.
Any batch size B >= 1 works (odd too; with B = 1 the permutation is the identity and the sample
comes back unchanged).
"""

from posneg.mixing._common import MixedBatch, MixedSegBatch
from posneg.mixing.adautomix import (
    AdaptiveMask,
    AdAutoMix,
    AdAutoMixLosses,
    AdAutoMixParams,
    adaptive_mask,
    adautomix_classifier_loss,
    adautomix_cosine,
    adautomix_generator_loss,
    adautomix_momentum,
    ema_update,
    mix_sources,
    mixed_cross_entropy,
    sample_adautomix_params,
)
from posneg.mixing.cutmix import CutMix, CutMixParams, apply_cutmix, sample_cutmix_params
from posneg.mixing.fmix import (
    FMix,
    FMixParams,
    apply_fmix,
    fmix_masks,
    low_frequency_images,
    sample_fmix_params,
)
from posneg.mixing.minority import (
    MinorityMix,
    MinorityMixParams,
    MinorityPartnerSampler,
    apply_minority_mix,
    minority_pair_probabilities,
    sample_minority_mix_params,
)
from posneg.mixing.mixup import MixUp, MixUpParams, apply_mixup, sample_mixup_params
from posneg.mixing.resizemix import (
    ResizeMix,
    ResizeMixParams,
    apply_resizemix,
    sample_resizemix_params,
)

__all__ = [
    "AdAutoMix",
    "AdAutoMixLosses",
    "AdAutoMixParams",
    "AdaptiveMask",
    "CutMix",
    "CutMixParams",
    "FMix",
    "FMixParams",
    "MinorityMix",
    "MinorityMixParams",
    "MinorityPartnerSampler",
    "MixUp",
    "MixUpParams",
    "MixedBatch",
    "MixedSegBatch",
    "ResizeMix",
    "ResizeMixParams",
    "adaptive_mask",
    "adautomix_classifier_loss",
    "adautomix_cosine",
    "adautomix_generator_loss",
    "adautomix_momentum",
    "apply_cutmix",
    "apply_fmix",
    "apply_minority_mix",
    "apply_mixup",
    "apply_resizemix",
    "ema_update",
    "fmix_masks",
    "low_frequency_images",
    "minority_pair_probabilities",
    "mix_sources",
    "mixed_cross_entropy",
    "sample_adautomix_params",
    "sample_cutmix_params",
    "sample_fmix_params",
    "sample_minority_mix_params",
    "sample_mixup_params",
    "sample_resizemix_params",
]
