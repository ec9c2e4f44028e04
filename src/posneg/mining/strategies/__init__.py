"""Training strategies for retrieval with hard negatives, each usable in one's own loop.

- in-batch negatives only: :func:`star_loss` without hard negatives (DRhard's "Inbatch-Neg");
- random negatives only: :func:`random_negatives` + :func:`rand_neg_loss` (DRhard's "Rand-Neg";
  :func:`star_loss` with random documents adds the in-batch pairs, so it is not Rand-Neg);
- static hard negatives: :class:`HardNegativePool` mined once + :func:`star_loss` (STAR);
- ANCE-style periodic re-mining: :class:`HardNegativePool` with ``refresh_every``;
- false-negative-aware: the pool with the miner's margin filters set;
- ADORE: :func:`adore_candidates` from a fixed document index + :func:`adore_loss`;
- NGAME: :class:`NGAMESampler` batches of balanced clusters + :func:`triplet_margin_ohnm`;
- AR2: retriever-ranker co-training, :func:`ar2_retriever_loss` + :func:`ar2_ranker_loss`;
- CoCoSoDa: soft data augmentation and momentum queues for code search, :func:`cocosoda_loss`;
- CET (coupled estimation of the pooling bias, as the official code runs it): :func:`cet_losses` /
  :class:`CETLoss`; the older :func:`cet_weights` / :func:`cet_nll` are deprecated;
- NBPO / BPO / BPR update rules for implicit feedback: :func:`nbpo_step` / :class:`NBPO`.
"""

from posneg.mining.strategies.adore import (
    ADORELoss,
    adore_candidates,
    adore_loss,
    adore_weights,
    candidate_scores,
)
from posneg.mining.strategies.ar2 import (
    AR2Loss,
    ar2_ranker_loss,
    ar2_retriever_loss,
    ar2_trains_ranker,
)
from posneg.mining.strategies.cet import (
    CETLoss,
    CETLosses,
    cet_losses,
    cet_nll,
    cet_pair_loss,
    cet_weights,
    cet_weights_from_scores,
    split_pairs,
)
from posneg.mining.strategies.cocosoda import (
    CoCoSoDaLoss,
    CoCoSoDaQueues,
    cocosoda_loss,
    momentum_update,
    soda_augment,
    soda_mask_tokens,
    soda_replace_token_with_mask,
)
from posneg.mining.strategies.nbpo import (
    NBPO,
    NBPOFactors,
    hidden_positive_posterior,
    init_factors,
    nbpo_directions,
    nbpo_step,
    nbpoo_log_likelihood,
    nbpos_likelihood,
    sample_unvoted,
)
from posneg.mining.strategies.ngame import (
    NGAMESampler,
    TripletMarginOHNMLoss,
    balanced_clusters,
    cluster_size_schedule,
    refresh_due,
    triplet_margin_ohnm,
)
from posneg.mining.strategies.pairwise import PairwiseLogisticLoss, pairwise_logistic
from posneg.mining.strategies.randneg import RandNegLoss, rand_neg_loss
from posneg.mining.strategies.refresh import HardNegativePool, random_negatives
from posneg.mining.strategies.star import STARLoss, star_loss

__all__ = [
    "NBPO",
    "ADORELoss",
    "AR2Loss",
    "CETLoss",
    "CETLosses",
    "CoCoSoDaLoss",
    "CoCoSoDaQueues",
    "HardNegativePool",
    "NBPOFactors",
    "NGAMESampler",
    "PairwiseLogisticLoss",
    "RandNegLoss",
    "STARLoss",
    "TripletMarginOHNMLoss",
    "adore_candidates",
    "adore_loss",
    "adore_weights",
    "ar2_ranker_loss",
    "ar2_retriever_loss",
    "ar2_trains_ranker",
    "balanced_clusters",
    "candidate_scores",
    "cet_losses",
    "cet_nll",
    "cet_pair_loss",
    "cet_weights",
    "cet_weights_from_scores",
    "cluster_size_schedule",
    "cocosoda_loss",
    "hidden_positive_posterior",
    "init_factors",
    "momentum_update",
    "nbpo_directions",
    "nbpo_step",
    "nbpoo_log_likelihood",
    "nbpos_likelihood",
    "pairwise_logistic",
    "rand_neg_loss",
    "random_negatives",
    "refresh_due",
    "sample_unvoted",
    "soda_augment",
    "soda_mask_tokens",
    "soda_replace_token_with_mask",
    "split_pairs",
    "star_loss",
    "triplet_margin_ohnm",
]
