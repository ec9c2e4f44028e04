"""The matrix-factorisation recipe of `posneg bench recsys`: NBPO's training loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from posneg.data.interactions import Interactions, topk_metrics
from posneg.mining.strategies.nbpo import init_factors, nbpo_step, sample_unvoted

#: Per-variant (lr, reg, reg_flip): the code's Amazon values for NBPO and BPO/BPR (_NBPO.py,
#: _BPO.py, _BPR.py: eta 0.05, lambda_r 1, lambda_phi 5); NBPOo's own script uses eta 0.005.
HYPER: dict[str, tuple[float, float, float]] = {
    "bpr": (0.05, 1.0, 5.0),
    "bpo": (0.05, 1.0, 5.0),
    "nbpo": (0.05, 1.0, 5.0),
    "nbpoo": (0.005, 1.0, 0.5),
}


def train_eval(
    data: Interactions,
    variant: str,
    *,
    seed: int,
    epochs: int,
    dim: int,
    batch_size: int,
    n_neg: int,
    ks: Sequence[int],
    step: Callable[[], None] | None = None,
) -> dict[int, tuple[float, float]]:
    """Train one variant as the NBPO code does and return ``{k: (F1, NDCG)}`` on the test set."""
    g = torch.Generator().manual_seed(seed)
    lr, reg, reg_flip = HYPER[variant]
    factors = init_factors(*data.shape, dim=dim, flip_dim=dim, generator=g)
    pairs = data.train.nonzero()
    for _ in range(epochs):
        lr *= 0.99  # the code decays eta before each epoch
        order = pairs[torch.randperm(pairs.shape[0], generator=g)]
        for start in range(0, order.shape[0], batch_size):
            batch = order[start : start + batch_size]
            users, items = batch[:, 0], batch[:, 1]
            neg = sample_unvoted(data.train, users, n_neg, generator=g)
            factors = nbpo_step(
                factors, users, items, neg, variant=variant, lr=lr, reg=reg, reg_flip=reg_flip
            )
        if float(factors.U.sum().abs()) > 1e10:  # the code's divergence stop
            break
        if step is not None:
            step()
    return topk_metrics(factors.U @ factors.V.T, data.train, data.test, ks)
