"""Synthetic data as positives: from a generator's output to the training set.

- :mod:`~posneg.synthetic.mixing`: the GDA batch sampler (a fixed share of generated samples
  per batch, Zheng et al., NeurIPS 2023).
- :mod:`~posneg.synthetic.gda`: the GDA theory's bGMM simulation, the generalisation gap
  against the synthetic ratio gamma.
- :mod:`~posneg.synthetic.codsa`: CoDSA's allocation of a synthetic budget over regions around
  any conditional generator (Tian and Shen, 2025).
- :mod:`~posneg.synthetic.fake_to_real`: From Fake to Real, group-balanced synthetic
  pretraining then real-only fine-tuning, and worst-group accuracy.
- :mod:`~posneg.synthetic.leaving_reality`: Leaving Reality to Imagination, generated copies of
  a data set (one per real sample, or a set ratio) from prompt templates.
- :mod:`~posneg.synthetic.aspire`: ASPIRE's flip test that finds spurious features, their
  scoring and merging, and the per-class image cap (editing and language steps pluggable).
- :mod:`~posneg.synthetic.cdvg`: CDvG, bias-transformed views as contrastive positives.
- :mod:`~posneg.synthetic.echogains`: EchoGAINS, label-wise geometric transforms with the
  uncovered region inpainted by any DDPM (RePaint), for segmentation.
- :mod:`~posneg.synthetic.mhergan`: Metropolis-Hastings selection of GAN samples over a
  calibrated ensemble of discriminators (MhERGAN; an MH-GAN stand-in).

Generators are user-supplied callables or modules; the library never trains one itself.
"""

# syn2 (From Fake to Real, Leaving Reality, ASPIRE) and syn3 (CDvG, EchoGAINS, MhERGAN)
# exports go here (listed in their integration files, added by the lead).
from posneg.synthetic.aspire import (
    ASPIRESelection,
    ASPIRESelector,
    FlipResult,
    flip_test,
    image_cap,
    merge_phrases,
    normalize_phrase,
    rank_feature_groups,
    spurious_scores,
)
from posneg.synthetic.cdvg import CDvGLoss, bias_transformed_views, cdvg_loss, sample_target_domains
from posneg.synthetic.codsa import CoDSA, CoDSAResult, codsa_allocate, codsa_synthesize
from posneg.synthetic.echogains import (
    EchoGAINSAugment,
    EchoGAINSParams,
    EchoGAINSSample,
    apply_echogains_params,
    echogains_keep_mask,
    echogains_valid,
    repaint,
    repaint_schedule,
    sample_echogains_params,
)
from posneg.synthetic.fake_to_real import (
    FakeToRealTrainer,
    GroupStats,
    balancing_budget,
    erm_step,
    ffr_per_group,
    group_counts,
    group_stats,
    make_harder,
    synthetic_plan,
    train_stage,
)
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
from posneg.synthetic.leaving_reality import (
    CLIP_TEMPLATES,
    GeneratedDataset,
    LeavingRealityAugmentation,
    generation_plan,
    sample_prompts,
)
from posneg.synthetic.mhergan import (
    MHERGANSelector,
    MHSelection,
    ensemble_probability,
    fit_logistic_calibration,
    mh_accept_prob,
    mh_select,
)
from posneg.synthetic.mixing import GDAMixSampler, gda_mix_batches

__all__ = [
    "CLIP_TEMPLATES",
    "ASPIRESelection",
    "ASPIRESelector",
    "BGMMGap",
    "BGMMGapSimulation",
    "CDvGLoss",
    "CoDSA",
    "CoDSAResult",
    "EchoGAINSAugment",
    "EchoGAINSParams",
    "EchoGAINSSample",
    "FakeToRealTrainer",
    "FlipResult",
    "GDAMixSampler",
    "GeneratedDataset",
    "GroupStats",
    "LeavingRealityAugmentation",
    "MHERGANSelector",
    "MHSelection",
    "apply_echogains_params",
    "balancing_budget",
    "bgmm_fit",
    "bgmm_gap",
    "bgmm_generalization_gap",
    "bgmm_nll",
    "bgmm_sample",
    "bgmm_theta",
    "bgmm_zero_one_loss",
    "bias_transformed_views",
    "cdvg_loss",
    "codsa_allocate",
    "codsa_synthesize",
    "echogains_keep_mask",
    "echogains_valid",
    "ensemble_probability",
    "erm_step",
    "ffr_per_group",
    "fit_logistic_calibration",
    "flip_test",
    "gda_mix_batches",
    "generation_plan",
    "group_counts",
    "group_stats",
    "image_cap",
    "make_harder",
    "merge_phrases",
    "mh_accept_prob",
    "mh_select",
    "normalize_phrase",
    "rank_feature_groups",
    "repaint",
    "repaint_schedule",
    "sample_echogains_params",
    "sample_prompts",
    "sample_target_domains",
    "spurious_scores",
    "synthetic_plan",
    "train_stage",
]
