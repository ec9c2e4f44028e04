"""Pairwise logistic loss: formula, properties, errors."""

from __future__ import annotations

import math

import pytest
import torch

from posneg.mining.strategies import PairwiseLogisticLoss, pairwise_logistic


def test_two_logits_equal_softplus() -> None:
    """Card test 1: -log softmax([s+, s-])[0] == softplus(s- - s+)."""
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(6, generator=g, dtype=torch.float64)
    neg = torch.randn(6, generator=g, dtype=torch.float64)
    ref = -torch.log_softmax(torch.stack([pos, neg], dim=1), dim=1)[:, 0]
    torch.testing.assert_close(pairwise_logistic(pos, neg, reduction="none"), ref)
    for p, n in zip(pos.tolist(), neg.tolist(), strict=True):
        assert math.isclose(
            float(pairwise_logistic(torch.tensor([p]), torch.tensor([n]))),
            math.log1p(math.exp(n - p)),
            rel_tol=1e-6,
        )


def test_matrix_form_and_mask() -> None:
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(3, generator=g, dtype=torch.float64)
    neg = torch.randn(3, 4, generator=g, dtype=torch.float64)
    valid = torch.rand(3, 4, generator=g) > 0.4
    total, count = 0.0, 0
    for i in range(3):
        for j in range(4):
            if valid[i, j]:
                total += math.log1p(math.exp(float(neg[i, j] - pos[i])))
                count += 1
    out = pairwise_logistic(pos, neg, valid=valid)
    assert math.isclose(float(out), total / count, rel_tol=1e-12)
    assert math.isclose(
        float(pairwise_logistic(pos, neg, valid=valid, reduction="sum")), total, rel_tol=1e-12
    )
    none = pairwise_logistic(pos, neg, valid=valid, reduction="none")
    assert bool((none[~valid] == 0).all())


def test_half_computes_in_float32_and_module() -> None:
    out = pairwise_logistic(
        torch.zeros(2, dtype=torch.float16), torch.zeros(2, dtype=torch.float16)
    )
    assert out.dtype == torch.float32
    assert math.isclose(float(out), math.log(2), rel_tol=1e-6)
    loss = PairwiseLogisticLoss(reduction="sum")
    assert "reduction='sum'" in repr(loss)
    assert math.isclose(
        float(loss(torch.zeros(2), torch.zeros(2, 3))), 6 * math.log(2), rel_tol=1e-6
    )


def test_no_valid_pair_gives_zero() -> None:
    pos = torch.zeros(2, requires_grad=True)
    out = pairwise_logistic(pos, torch.zeros(2), valid=torch.zeros(2, dtype=torch.bool))
    out.backward()
    assert float(out.detach()) == 0.0 and pos.grad is not None


def test_errors() -> None:
    with pytest.raises(TypeError, match=r"pairwise_logistic: pos_scores must be a torch\.Tensor"):
        pairwise_logistic([1.0], torch.zeros(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pos_scores must have shape"):
        pairwise_logistic(torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="neg_scores must have shape"):
        pairwise_logistic(torch.zeros(2), torch.zeros(3))
    with pytest.raises(TypeError, match="neg_scores has dtype"):
        pairwise_logistic(torch.zeros(2), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(TypeError, match="valid must be a bool tensor"):
        pairwise_logistic(torch.zeros(2), torch.zeros(2), valid=torch.ones(2))
    with pytest.raises(ValueError, match=r"valid must have shape \(2,\)"):
        pairwise_logistic(torch.zeros(2), torch.zeros(2), valid=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction must be one of"):
        pairwise_logistic(torch.zeros(2), torch.zeros(2), reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="PairwiseLogisticLoss: reduction"):
        PairwiseLogisticLoss(reduction="avg")  # type: ignore[arg-type]
