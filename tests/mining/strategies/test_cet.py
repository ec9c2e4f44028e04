"""CET weights (card tests 1 and 2; form [paper, unverified]) and the pooled-label likelihood."""

from __future__ import annotations

import math

import pytest
import torch

from posneg.mining.strategies import cet_nll, cet_weights


def test_formula() -> None:
    r = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0, 1.0], dtype=torch.float64)
    g = torch.tensor([0.3, 0.7, 0.5, 0.1, 0.4, 1.0], dtype=torch.float64)
    expected = [
        (1 - a) / (1 - a * b) if a * b < 1 else 1.0
        for a, b in zip(r.tolist(), g.tolist(), strict=True)
    ]
    torch.testing.assert_close(cet_weights(r, g), torch.tensor(expected, dtype=torch.float64))


def test_card_selection_one_gives_standard_training() -> None:
    """Card test 1: g == 1 -> every weight is 1 ((1 - r) / (1 - r) for r < 1; 0/0 defined as 1)."""
    r = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(cet_weights(r, torch.ones_like(r)), torch.ones_like(r))
    torch.testing.assert_close(
        cet_weights(r, torch.tensor(1.0, dtype=torch.float64)), torch.ones_like(r)
    )


def test_card_planted_false_negatives_get_lower_weights() -> None:
    """Card test 2: in a top-k with planted false negatives (relevant documents the pool did not
    select: near-duplicates of the positive, ranked low by the pooling retriever), the CET
    weights are lower for the planted ones than for the true negatives."""
    g = torch.Generator().manual_seed(0)
    q, k, d = 16, 20, 32
    queries = torch.nn.functional.normalize(torch.randn(q, d, generator=g), dim=1)
    planted = torch.zeros(q, k, dtype=torch.bool)
    planted[:, :3] = True  # 3 planted false negatives per query
    docs = torch.nn.functional.normalize(torch.randn(q, k, d, generator=g), dim=2)
    near = queries[:, None, :] + 0.05 * torch.randn(q, k, d, generator=g)
    docs = torch.where(planted[..., None], torch.nn.functional.normalize(near, dim=2), docs)
    # relevance model: a calibrated score of the dense similarity
    relevance = torch.sigmoid(8 * ((docs * queries[:, None, :]).sum(-1) - 0.5))
    # selection model: a lexical retriever that pooled only some documents, not the planted ones
    lexical = torch.rand(q, k, generator=g)
    lexical[planted] *= 0.2
    selection = torch.sigmoid(6 * (lexical - 0.5))
    w = cet_weights(relevance, selection)
    assert float(w[planted].mean()) < 0.5 < float(w[~planted].mean())
    assert float(w[planted].max()) < float(w[~planted].median())


def test_gradient_and_half() -> None:
    r = torch.tensor([0.3, 0.8], requires_grad=True)
    g = torch.tensor([0.5, 0.5])
    cet_weights(r, g).sum().backward()
    assert r.grad is not None and bool((r.grad < 0).all())  # more relevant -> lower weight
    out = cet_weights(r.detach().half(), g.half())
    assert out.dtype == torch.float32


def test_nll() -> None:
    r = torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64)
    g = torch.tensor([1.0, 0.2, 0.5], dtype=torch.float64)
    y = torch.tensor([1, 0, 0])
    expected = [-math.log(0.9), -math.log(1 - 0.1), -math.log(1 - 0.1)]
    torch.testing.assert_close(
        cet_nll(r, g, y, reduction="none"), torch.tensor(expected, dtype=torch.float64)
    )
    assert math.isclose(float(cet_nll(r, g, y.bool())), sum(expected) / 3, rel_tol=1e-12)
    assert math.isclose(float(cet_nll(r, g, y, reduction="sum")), sum(expected), rel_tol=1e-12)


def test_errors() -> None:
    r = torch.tensor([0.5])
    with pytest.raises(
        ValueError, match=r"cet_weights: relevance_prob must hold probabilities in \[0, 1\]"
    ):
        cet_weights(torch.tensor([1.5]), r)
    with pytest.raises(ValueError, match="selection_prob must hold probabilities"):
        cet_weights(r, torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="does not broadcast"):
        cet_weights(torch.rand(3), torch.rand(2))
    with pytest.raises(TypeError, match="selection_prob has dtype"):
        cet_weights(r, r.double())
    with pytest.raises(TypeError, match="relevance_prob must be a floating"):
        cet_weights(torch.tensor([1]), r)
    with pytest.raises(ValueError, match="cet_nll: labels must be 0 or 1"):
        cet_nll(r, r, torch.tensor([2]))
    with pytest.raises(ValueError, match=r"eps must be in \(0.0, 0.5\)"):
        cet_nll(r, r, torch.tensor([1]), eps=0.0)
