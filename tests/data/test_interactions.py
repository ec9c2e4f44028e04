"""The generated implicit-feedback matrix and F1/NDCG@k as NBPO's Library.py computes them."""

from __future__ import annotations

import math

import pytest
import torch

from posneg.data.interactions import low_rank_interactions, topk_metrics


def test_split_is_disjoint_and_shares_hold() -> None:
    d = low_rank_interactions(n_users=30, n_items=100, rank=4, density=0.1, hidden=0.5, seed=1)
    assert d.generated and d.shape == (30, 100)
    assert not bool((d.train & d.test).any()) and bool((d.hidden <= d.test).all())
    per_user = (d.train | d.test).sum(1)
    assert bool((per_user == 10).all())
    assert bool((d.test.sum(1) == 2 + 4).all())  # 20% held out + half of the other 8 hidden
    assert bool((d.train.sum(1) >= 1).all())
    same = low_rank_interactions(n_users=30, n_items=100, rank=4, density=0.1, hidden=0.5, seed=1)
    assert torch.equal(d.train, same.train)


def test_card5_metrics_by_hand() -> None:
    """Card test 5: F1@k and NDCG@k on hand-made rankings (Library.py's formulas)."""
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    train = torch.tensor([[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    test = torch.tensor([[0, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    out = topk_metrics(scores, train, test, [1, 3])
    # user 0: ranking after removing item 0 is 1, 2, 3, 4, 5; hits at ranks 2 (item 2) and 4
    # user 1: ranking 5, 4, ...; hit at rank 1
    f1_u0_k1, f1_u1_k1 = 0.0, 1.0
    p, r = 1 / 3, 1 / 2
    f1_u0_k3, f1_u1_k3 = 2 * p * r / (p + r), 2 * (1 / 3) * 1 / (1 / 3 + 1)
    nd_u0_k1, nd_u1_k1 = 0.0, 1.0
    nd_u0_k3 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert out[1][0] == pytest.approx((f1_u0_k1 + f1_u1_k1) / 2)
    assert out[1][1] == pytest.approx((nd_u0_k1 + nd_u1_k1) / 2)
    assert out[3][0] == pytest.approx((f1_u0_k3 + f1_u1_k3) / 2)
    assert out[3][1] == pytest.approx((nd_u0_k3 + 1.0) / 2)


def test_users_without_test_items_are_skipped() -> None:
    scores = torch.rand(2, 4, generator=torch.Generator().manual_seed(0))
    train = torch.zeros(2, 4, dtype=torch.bool)
    test = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    assert topk_metrics(scores, train, test, [2]) == {2: (2 * 1 * 0.5 / 1.5, 1.0)}


def test_errors() -> None:
    with pytest.raises(ValueError, match="low_rank_interactions: hidden must be in"):
        low_rank_interactions(hidden=1.0)
    with pytest.raises(ValueError, match="topk_metrics: each k"):
        topk_metrics(
            torch.zeros(1, 3),
            torch.zeros(1, 3, dtype=torch.bool),
            torch.ones(1, 3, dtype=torch.bool),
            [4],
        )
    with pytest.raises(ValueError, match="no user has a test item"):
        topk_metrics(
            torch.zeros(1, 3),
            torch.zeros(1, 3, dtype=torch.bool),
            torch.zeros(1, 3, dtype=torch.bool),
            [1],
        )
