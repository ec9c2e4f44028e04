"""Implicit-feedback data for the recommendation bench: a generated low-rank matrix, F1/NDCG@k.

No real interaction matrix ships with the installed packages (scikit-learn bundles none; its
MovieLens-style fetchers download), so the bench uses a **generated** one, labelled as such in
every report: users and items get rank-``rank`` Gaussian factors, each user's true positives
are the ``density`` share of items it scores highest, a ``test_fraction`` of them is held out,
and a further share ``hidden`` of the rest is **hidden**: a true positive that appears as
unvoted in training (the label noise NBPO models). The evaluation set is every true positive
not in training (held out and hidden).

The metrics follow NBPO's ``Library.py`` (``evaluation_F1``, ``evaluation_NDCG``) and
``test_Model``: rank all items by score, remove the user's training positives, then per user
``precision = hits / k``, ``recall = hits / |test|``, ``F1 = 2PR/(P+R)`` and
``NDCG = DCG@k / IDCG@min(|test|, k)`` (gain 1, discount ``1/log2(rank + 1)``), averaged over
the users with at least one test item.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["Interactions", "low_rank_interactions", "topk_metrics"]


@dataclass(frozen=True)
class Interactions:
    """An implicit-feedback split.

    Attributes:
        train: (M, N) bool, the observed (training) positives.
        test: (M, N) bool, true positives not observed: held out plus hidden.
        hidden: (M, N) bool, the hidden share of ``test`` (label noise in training).
        generated: True for a generated matrix.
    """

    train: torch.Tensor
    test: torch.Tensor
    hidden: torch.Tensor
    generated: bool = True

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.train.shape[0]), int(self.train.shape[1]))


def low_rank_interactions(
    *,
    n_users: int = 300,
    n_items: int = 500,
    rank: int = 8,
    density: float = 0.05,
    test_fraction: float = 0.2,
    hidden: float = 0.3,
    seed: int = 0,
) -> Interactions:
    """A generated low-rank implicit-feedback matrix with held-out and hidden positives.

    Args:
        n_users, n_items: matrix size (>= 2 items).
        rank: rank of the true preference scores.
        density: share of items that are true positives per user (at least 2 per user).
        test_fraction: share of each user's true positives held out for evaluation (>= 1).
        hidden: share of the remaining positives hidden from training (in [0, 1); at least one
            training positive per user is kept).
        seed: the only source of randomness.

    Returns:
        :class:`Interactions` with ``generated=True``.

    Raises:
        ValueError: a size or share out of range.

    Example:
        >>> data = low_rank_interactions(n_users=20, n_items=50, rank=3, density=0.2, seed=0)
        >>> data.shape, bool((data.train & data.test).any())
        ((20, 50), False)
    """
    fn = "low_rank_interactions"
    for name, v, lo in (("n_users", n_users, 1), ("n_items", n_items, 2), ("rank", rank, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{fn}: {name} must be an int >= {lo}; got {v!r}")
    for name, f in (("density", density), ("test_fraction", test_fraction)):
        if not 0 < f < 1:
            raise ValueError(f"{fn}: {name} must be in (0, 1); got {f!r}")
    if not 0 <= hidden < 1:
        raise ValueError(f"{fn}: hidden must be in [0, 1); got {hidden!r}")
    n_pos = max(2, round(density * n_items))
    if n_pos >= n_items:
        raise ValueError(f"{fn}: density leaves no negative item")
    g = torch.Generator().manual_seed(seed)
    users = torch.randn(n_users, rank, generator=g, dtype=torch.float64)
    items = torch.randn(n_items, rank, generator=g, dtype=torch.float64)
    scores = users @ items.T
    top = scores.topk(n_pos, dim=1).indices
    order = torch.rand(n_users, n_pos, generator=g).argsort(dim=1)
    top = top.gather(1, order)  # true positives of each user in random order
    n_test = max(1, round(test_fraction * n_pos))
    n_hidden = min(round(hidden * (n_pos - n_test)), n_pos - n_test - 1)
    rows = torch.arange(n_users)[:, None]
    test = torch.zeros(n_users, n_items, dtype=torch.bool)
    hid = torch.zeros_like(test)
    train = torch.zeros_like(test)
    test[rows, top[:, : n_test + n_hidden]] = True
    hid[rows, top[:, n_test : n_test + n_hidden]] = True
    train[rows, top[:, n_test + n_hidden :]] = True
    return Interactions(train=train, test=test, hidden=hid, generated=True)


def topk_metrics(
    scores: torch.Tensor, train: torch.Tensor, test: torch.Tensor, ks: Sequence[int]
) -> dict[int, tuple[float, float]]:
    """F1@k and NDCG@k as NBPO's ``test_Model`` computes them (training positives removed).

    Args:
        scores: (M, N) scores of every item for every user.
        train: (M, N) bool training positives (removed from the ranking).
        test: (M, N) bool evaluation positives.
        ks: cut-offs (each >= 1 and at most the number of non-training items).

    Returns:
        ``{k: (F1, NDCG)}``, each averaged over users with at least one test item.

    Raises:
        ValueError: mismatched shapes, a bad k, no user with a test item.

    Example:
        >>> import torch
        >>> s = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
        >>> tr = torch.tensor([[True, False, False, False]])
        >>> te = torch.tensor([[False, False, True, False]])
        >>> topk_metrics(s, tr, te, [1, 2])
        {1: (0.0, 0.0), 2: (0.6666666666666666, 0.6309297535714575)}
    """
    fn = "topk_metrics"
    if scores.shape != train.shape or scores.shape != test.shape or scores.dim() != 2:
        raise ValueError(f"{fn}: scores, train and test must be (M, N) of one shape")
    free = int((~train).sum(1).min())
    for k in ks:
        if not isinstance(k, int) or k < 1 or k > free:
            raise ValueError(f"{fn}: each k must be an int in [1, {free}]; got {k!r}")
    users = test.any(1)
    if not bool(users.any()):
        raise ValueError(f"{fn}: no user has a test item")
    s = scores.detach().double().masked_fill(train, -math.inf)[users]
    t = test[users]
    n_test = t.sum(1).double()
    out: dict[int, tuple[float, float]] = {}
    kmax = max(ks)
    hits = t.gather(1, s.topk(kmax, dim=1).indices).double()  # (U, kmax) relevance in rank order
    disc = 1 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float64))
    for k in ks:
        h = hits[:, :k].sum(1)
        prec, rec = h / k, h / n_test
        f1 = torch.where(h > 0, 2 * prec * rec / (prec + rec).clamp_min(1e-10), 0.0)
        dcg = (hits[:, :k] * disc[:k]).sum(1)
        ideal = torch.cumsum(disc[:k], 0)[(n_test.clamp(max=k) - 1).long()]
        out[k] = (float(f1.mean()), float((dcg / ideal).mean()))
    return out
