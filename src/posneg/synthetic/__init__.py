"""Synthetic data as positives: from a generator's output to the training set.

- :mod:`~posneg.synthetic.mixing`: the GDA batch sampler (a fixed share of generated samples
  per batch, Zheng et al., NeurIPS 2023).
- :mod:`~posneg.synthetic.gda`: the GDA theory's bGMM simulation, the generalisation gap
  against the synthetic ratio gamma.
- :mod:`~posneg.synthetic.codsa`: CoDSA's allocation of a synthetic budget over regions around
  any conditional generator (Tian and Shen, 2025).

Generators are user-supplied callables or modules; the library never trains one itself.
"""

from posneg.synthetic.codsa import CoDSA, CoDSAResult, codsa_allocate, codsa_synthesize
from posneg.synthetic.gda import (
    BGMMGap,
    BGMMGapSimulation,
    bgmm_fit,
    bgmm_gap,
    bgmm_generalization_gap,
    bgmm_nll,
    bgmm_sample,
    bgmm_theta,
    bgmm_zero_one_loss,
)
from posneg.synthetic.mixing import GDAMixSampler, gda_mix_batches

# syn2 (From Fake to Real, Leaving Reality, ASPIRE) and syn3 (CDvG, EchoGAINS, MhERGAN)
# exports go here (listed in their integration files, added by the lead).

__all__ = [
    "BGMMGap",
    "BGMMGapSimulation",
    "CoDSA",
    "CoDSAResult",
    "GDAMixSampler",
    "bgmm_fit",
    "bgmm_gap",
    "bgmm_generalization_gap",
    "bgmm_nll",
    "bgmm_sample",
    "bgmm_theta",
    "bgmm_zero_one_loss",
    "codsa_allocate",
    "codsa_synthesize",
    "gda_mix_batches",
]
