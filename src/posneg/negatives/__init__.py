"""Negatives in embedding space: MoCo's memory queue, MoCHi hard negative mixing and Feature
Transformation (positive extrapolation, negative interpolation).

Each technique is a state object or a params sampler plus deterministic kernels and a thin
module; see the submodules for the papers and formulas.
"""

from posneg.negatives.feature_transform import (
    FeatureTransform,
    FeatureTransformParams,
    apply_feature_transform,
    feature_transform,
    feature_transform_logits,
    sample_feature_transform_params,
)
from posneg.negatives.mochi import (
    MoCHi,
    MoCHiParams,
    MoCHiSynthetic,
    mochi,
    mochi_logits,
    mochi_synthetic,
    sample_mochi_params,
)
from posneg.negatives.queue import MemoryQueue

__all__ = [
    "FeatureTransform",
    "FeatureTransformParams",
    "MemoryQueue",
    "MoCHi",
    "MoCHiParams",
    "MoCHiSynthetic",
    "apply_feature_transform",
    "feature_transform",
    "feature_transform_logits",
    "mochi",
    "mochi_logits",
    "mochi_synthetic",
    "sample_feature_transform_params",
    "sample_mochi_params",
]
