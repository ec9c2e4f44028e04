"""CET as its official code computes it, and the deprecated earlier formalisation.

Official code: caiyinqiong/Coupled_Estimation_Technique at 8729d275c28b313f30c28b9423a59c1e3ae1b8b7,
train.py (``train``) and modeling.py (``Reranker``/``Observer``). The first half tests the
deprecated ``cet_weights``/``cet_nll`` (the earlier card's Bayes posterior, kept importable; every
call warns); the second half the code-exact coupled estimation (card tests 1-5).
"""

from __future__ import annotations

import math

import pytest
import torch

from posneg.mining.strategies.cet import (
    DEFAULT_DEBIAS_RATIO,
    CETLoss,
    cet_losses,
    cet_nll,
    cet_pair_loss,
    cet_weights,
    cet_weights_from_scores,
    split_pairs,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


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


# ---------------------------------------------------------------------------------------------
# the coupled estimation as the official code runs it
# ---------------------------------------------------------------------------------------------


def test_old_names_warn_deprecated() -> None:
    with pytest.deprecated_call(match="contradicts CET's official code"):
        cet_weights(torch.tensor([0.5]), torch.tensor([0.5]))
    with pytest.deprecated_call(match="cet_nll is deprecated"):
        cet_nll(torch.tensor([0.5]), torch.tensor([0.5]), torch.tensor([1]))


def _code_step(scores_r: list[float], scores_s: list[float], ratio: float) -> tuple[float, float]:
    """train.py + modeling.py transcribed in float64 Python: interleaved batch, eval-mode weights
    from the other model's negative, ``torch.dot(weight, loss) / (batch_size // 2)``."""
    n = len(scores_r) // 2

    def weight(s: float) -> float:
        return 1.0 / (1.0 - 1.0 / (1.0 + math.exp(-s / ratio)))

    def ce(pos: float, neg: float) -> float:  # CrossEntropyLoss([pos, neg], label 0)
        return -(pos - math.log(math.exp(pos) + math.exp(neg)))

    w_r = [weight(scores_s[2 * p + 1]) for p in range(n)]
    w_s = [weight(scores_r[2 * p + 1]) for p in range(n)]
    loss_r = sum(w_r[p] * ce(scores_r[2 * p], scores_r[2 * p + 1]) for p in range(n)) / n
    loss_s = sum(w_s[p] * ce(scores_s[2 * p], scores_s[2 * p + 1]) for p in range(n)) / n
    return loss_r, loss_s


def test_formula_against_code_transcription() -> None:
    g = torch.Generator().manual_seed(3)
    for ratio in (2.0, 10.0):
        sr = torch.randn(8, 1, generator=g, dtype=torch.float64) * 3
        ss = torch.randn(8, 1, generator=g, dtype=torch.float64) * 3
        rp, rn = split_pairs(sr)
        sp, sn = split_pairs(ss)
        out = cet_losses(rel_pos=rp, rel_neg=rn, sel_pos=sp, sel_neg=sn, debias_ratio=ratio)
        want_r, want_s = _code_step(sr[:, 0].tolist(), ss[:, 0].tolist(), ratio)
        assert math.isclose(float(out.relevance), want_r, rel_tol=1e-12)
        assert math.isclose(float(out.selection), want_s, rel_tol=1e-12)


def test_card1_large_ratio_sends_weights_to_two() -> None:
    """Card test 1: r -> inf gives w = 2 everywhere: unweighted training at twice the lr."""
    s = torch.tensor([-30.0, 0.0, 5.0, 40.0], dtype=torch.float64)
    w = cet_weights_from_scores(s, debias_ratio=1e9)
    torch.testing.assert_close(w, torch.full_like(s, 2.0))
    pos = torch.tensor([1.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    plain = cet_pair_loss(pos, s)
    assert math.isclose(float(cet_pair_loss(pos, s, w)), 2 * float(plain), rel_tol=1e-6)


def test_card2_weights_at_least_one_and_monotone() -> None:
    """Card test 2: the weights are >= 1 (not normalised or clipped), and rise with the score."""
    s = torch.linspace(-50, 50, 101, dtype=torch.float64)
    w = cet_weights_from_scores(s, debias_ratio=2.0)
    assert bool((w >= 1).all()) and bool((w[1:] > w[:-1]).all())


def test_card3_rows_0_2_are_positives() -> None:
    """Card test 3: the interleaved batch's rows 0::2 are the positives, 1::2 the negatives."""
    pos, neg = split_pairs(torch.arange(6.0)[:, None])
    assert pos.tolist() == [0.0, 2.0, 4.0] and neg.tolist() == [1.0, 3.0, 5.0]


def test_card4_per_pair_ce_is_softplus() -> None:
    """Card test 4: CrossEntropyLoss([s+, s-], 0) per pair equals softplus(s- - s+)."""
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(7, generator=g, dtype=torch.float64)
    neg = torch.randn(7, generator=g, dtype=torch.float64)
    ce = torch.nn.functional.cross_entropy(
        torch.stack([pos, neg], 1), torch.zeros(7, dtype=torch.long), reduction="none"
    )
    torch.testing.assert_close(cet_pair_loss(pos, neg, reduction="none"), ce)


def test_card5_symmetric_under_swapping_models() -> None:
    """Card test 5: swapping R and S swaps the two losses and weights."""
    g = torch.Generator().manual_seed(2)
    a, b, c, d = (torch.randn(5, generator=g, dtype=torch.float64) for _ in range(4))
    one = cet_losses(rel_pos=a, rel_neg=b, sel_pos=c, sel_neg=d)
    two = cet_losses(rel_pos=c, rel_neg=d, sel_pos=a, sel_neg=b)
    torch.testing.assert_close(one.relevance, two.selection)
    torch.testing.assert_close(one.selection, two.relevance)
    torch.testing.assert_close(one.relevance_weights, two.selection_weights)


def test_only_the_negative_score_and_the_other_model_set_the_weight() -> None:
    """Card bug 1: positives never enter the weights; R's weight comes from S only."""
    z = torch.zeros(3, dtype=torch.float64)
    s_neg = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    base = cet_losses(rel_pos=z, rel_neg=z, sel_pos=z, sel_neg=s_neg)
    moved = cet_losses(rel_pos=z + 5, rel_neg=z + 1, sel_pos=z + 9, sel_neg=s_neg)
    torch.testing.assert_close(base.relevance_weights, moved.relevance_weights)
    torch.testing.assert_close(base.relevance_weights, 1 + torch.exp(s_neg / 10))


def test_weights_detached_and_eval_scores_used() -> None:
    """The code scores the weights in eval mode under no_grad: gradients reach each model
    only through its own loss, and eval-mode scores replace the train-mode ones."""
    rp = torch.zeros(2, requires_grad=True)
    rn = torch.zeros(2, requires_grad=True)
    sp = torch.zeros(2, requires_grad=True)
    sn = torch.ones(2, requires_grad=True)
    out = cet_losses(rel_pos=rp, rel_neg=rn, sel_pos=sp, sel_neg=sn)
    (g_sn,) = torch.autograd.grad(out.relevance, [sn], allow_unused=True)
    assert g_sn is None
    ev = cet_losses(
        rel_pos=rp, rel_neg=rn, sel_pos=sp, sel_neg=sn, sel_neg_eval=torch.full((2,), 20.0)
    )
    torch.testing.assert_close(ev.relevance_weights, torch.full((2,), 1 + math.exp(2.0)))
    total = CETLoss()(rp, rn, sp, sn)
    torch.testing.assert_close(total, out.relevance + out.selection)


def test_stable_form_differs_from_code_only_in_overflow() -> None:
    """1 + exp(s/r) equals the code's 1/(1 - sigmoid(s/r)); the code's form is inf in float32
    once sigmoid rounds to 1, ours stays finite."""
    s = torch.tensor([200.0])
    code = 1.0 / (1.0 - torch.sigmoid(s / 10.0))
    assert math.isinf(float(code))
    assert math.isfinite(float(cet_weights_from_scores(s, debias_ratio=10.0)))


def test_default_ratio_is_the_scripts_and_module() -> None:
    assert DEFAULT_DEBIAS_RATIO == 10.0
    assert "debias_ratio=10.0" in repr(CETLoss())
    half = cet_losses(
        rel_pos=torch.zeros(2).half(),
        rel_neg=torch.zeros(2).half(),
        sel_pos=torch.zeros(2).half(),
        sel_neg=torch.zeros(2).half(),
    )
    assert half.relevance.dtype == torch.float32


def test_coupled_errors() -> None:
    z = torch.zeros(3)
    with pytest.raises(ValueError, match="split_pairs: scores needs an even"):
        split_pairs(z)
    with pytest.raises(ValueError, match="cet_weights_from_scores: debias_ratio"):
        cet_weights_from_scores(z, debias_ratio=0.0)
    with pytest.raises(ValueError, match=r"cet_pair_loss: neg_scores must have shape \(3,\)"):
        cet_pair_loss(z, torch.zeros(4))
    with pytest.raises(ValueError, match="cet_losses: sel_neg must have shape"):
        cet_losses(rel_pos=z, rel_neg=z, sel_pos=z, sel_neg=torch.zeros(2))
    with pytest.raises(TypeError, match="cet_pair_loss: neg_scores"):
        cet_pair_loss(z, z.double())
    with pytest.raises(ValueError, match="CETLoss: debias_ratio"):
        CETLoss(debias_ratio=-1.0)
