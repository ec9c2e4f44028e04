"""Negatives for text generators: training data built from a generator's own samples.

RAFT's reward-ranked selection and SFT (:mod:`posneg.text.raft`) and resampling with imperfect
verifiers (:mod:`posneg.text.verifiers`). transformers is needed only by the code that runs a
model, and is imported there lazily.
"""

from __future__ import annotations

from posneg.text.raft import (
    RaftIterationResult,
    RaftSelection,
    RAFTSelector,
    SFTBatch,
    build_sft_batch,
    pack_texts,
    raft_iteration,
    samples_per_prompt,
    select_best_of_k,
    select_top_fraction,
    sft_step,
)
from posneg.text.verifiers import (
    ImperfectVerifier,
    ResampleResult,
    mixture_utility,
    noisy_verdicts,
    optimal_k,
    resample,
    resampling_accuracy,
    resampling_ceiling,
    resampling_utility,
)

__all__ = [
    "ImperfectVerifier",
    "RAFTSelector",
    "RaftIterationResult",
    "RaftSelection",
    "ResampleResult",
    "SFTBatch",
    "build_sft_batch",
    "mixture_utility",
    "noisy_verdicts",
    "optimal_k",
    "pack_texts",
    "raft_iteration",
    "resample",
    "resampling_accuracy",
    "resampling_ceiling",
    "resampling_utility",
    "samples_per_prompt",
    "select_best_of_k",
    "select_top_fraction",
    "sft_step",
]
