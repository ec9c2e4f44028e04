"""Training strategies for retrieval with hard negatives, each usable in one's own loop.

- in-batch negatives only: :func:`star_loss` without hard negatives (DRhard's "Inbatch-Neg");
- random negatives only: :func:`random_negatives` + :func:`rand_neg_loss` (DRhard's "Rand-Neg";
  :func:`star_loss` with random documents adds the in-batch pairs, so it is not Rand-Neg);
- static hard negatives: :class:`HardNegativePool` mined once + :func:`star_loss` (STAR);
- ANCE-style periodic re-mining: :class:`HardNegativePool` with ``refresh_every``;
- false-negative-aware: the pool with the miner's margin filters set;
- ADORE: :func:`adore_candidates` from a fixed document index + :func:`adore_loss`;
- NGAME: :class:`NGAMESampler` batches of balanced clusters + :func:`triplet_margin_ohnm`;
- CET-style weights for probable false negatives: :func:`cet_weights` **[paper, unverified]**.
"""

from posneg.mining.strategies.adore import (
    ADORELoss,
    adore_candidates,
    adore_loss,
    adore_weights,
    candidate_scores,
)
from posneg.mining.strategies.cet import cet_nll, cet_weights
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
    "ADORELoss",
    "HardNegativePool",
    "NGAMESampler",
    "PairwiseLogisticLoss",
    "RandNegLoss",
    "STARLoss",
    "TripletMarginOHNMLoss",
    "adore_candidates",
    "adore_loss",
    "adore_weights",
    "balanced_clusters",
    "candidate_scores",
    "cet_nll",
    "cet_weights",
    "cluster_size_schedule",
    "pairwise_logistic",
    "rand_neg_loss",
    "random_negatives",
    "refresh_due",
    "star_loss",
    "triplet_margin_ohnm",
]
