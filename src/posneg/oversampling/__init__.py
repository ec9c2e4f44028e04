"""Over-sampling: synthetic minority samples (SMOTE and variants) and class-rebalancing batches.

The samplers follow scikit-learn's contract (constructor stores arguments, ``fit_resample(X, y)``)
and imbalanced-learn's semantics, on numpy arrays (numpy out) and torch tensors on any device
(tensor out, on that device). See ``docs/oversampling.md``.
"""

from posneg.oversampling.adasyn import ADASYN
from posneg.oversampling.borderline_smote import BorderlineSMOTE
from posneg.oversampling.laso import LaSO
from posneg.oversampling.sampler import BalancedBatchSampler
from posneg.oversampling.smote import SMOTE
from posneg.oversampling.smotenc import SMOTENC

__all__ = [
    "ADASYN",
    "SMOTE",
    "SMOTENC",
    "BalancedBatchSampler",
    "BorderlineSMOTE",
    "LaSO",
]
