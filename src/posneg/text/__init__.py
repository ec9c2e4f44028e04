"""Negatives for text generators: training data built from a generator's own samples.

RAFT's reward-ranked selection and SFT (:mod:`posneg.text.raft`), resampling with imperfect
verifiers (:mod:`posneg.text.verifiers`), per-step negatives from incorrect traces
(:mod:`posneg.text.per_step`) and DISCO's counterfactual filtering (:mod:`posneg.text.disco`).
transformers is needed only by the code that runs a model, and is imported there lazily.
"""

from __future__ import annotations

from posneg.text.disco import (
    DEFAULT_NEGATIONS,
    FORBIDDEN_PHRASES,
    Counterfactual,
    DiscoPipeline,
    DiscoTeacherFilter,
    critic_scores,
    ensemble_scores,
    heuristic_reason,
    jaccard,
    normalize,
    teacher_filter,
)
from posneg.text.per_step import (
    PerStepDPOLoss,
    StepPair,
    advantage_weighted_nll,
    dpo_loss,
    edit_distance,
    first_pit,
    mc_values,
    outcome_pair,
    per_step_pair,
    sft_nll,
    step_advantages,
)
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
    "DEFAULT_NEGATIONS",
    "FORBIDDEN_PHRASES",
    "Counterfactual",
    "DiscoPipeline",
    "DiscoTeacherFilter",
    "ImperfectVerifier",
    "PerStepDPOLoss",
    "RAFTSelector",
    "RaftIterationResult",
    "RaftSelection",
    "ResampleResult",
    "SFTBatch",
    "StepPair",
    "advantage_weighted_nll",
    "build_sft_batch",
    "critic_scores",
    "dpo_loss",
    "edit_distance",
    "ensemble_scores",
    "first_pit",
    "heuristic_reason",
    "jaccard",
    "mc_values",
    "mixture_utility",
    "noisy_verdicts",
    "normalize",
    "optimal_k",
    "outcome_pair",
    "pack_texts",
    "per_step_pair",
    "raft_iteration",
    "resample",
    "resampling_accuracy",
    "resampling_ceiling",
    "resampling_utility",
    "samples_per_prompt",
    "select_best_of_k",
    "select_top_fraction",
    "sft_nll",
    "sft_step",
    "step_advantages",
    "teacher_filter",
]
