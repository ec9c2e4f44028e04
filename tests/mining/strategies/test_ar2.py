"""AR2 (Zhang et al., ICLR 2022): the retriever's distillation + adversarial loss, the ranker's
CE and the co-training schedule, against a float64 loop transcribed from ``microsoft/AR2`` at
commit c8df9379e0f7d50f9f52aa34982908c88b408a24, ``AR2/wiki/co_training_wiki_train.py::train``."""

from __future__ import annotations

import math

import pytest
import torch

from posneg.mining.strategies.ar2 import (
    AR2Loss,
    ar2_ranker_loss,
    ar2_retriever_loss,
    ar2_trains_ranker,
)

EPS = 1e-7


def naive(q, docs, logits, lam, t=1.0, rt=1.0, reduction="sum"):
    """Python loops in float64 over queries and documents, the code's formula term by term."""
    b, g = logits.shape
    normal = adv = 0.0
    for i in range(b):
        s = [
            sum(float(q[i, k]) * float(docs[i, j, k]) for k in range(q.shape[1])) / rt
            for j in range(g)
        ]
        m = max(s)
        z = sum(math.exp(x - m) for x in s)
        pt = [math.exp(x - m) / z for x in s]
        lm = max(float(v) / t for v in logits[i])
        zl = sum(math.exp(float(v) / t - lm) for v in logits[i])
        pp = [math.exp(float(v) / t - lm) / zl for v in logits[i]]
        for j in range(g):
            # 2-way softmax of (l_0, l_j), probability of the positive
            a, c = float(logits[i, 0]), float(logits[i, j])
            r = math.log(math.exp(a) / (math.exp(a) + math.exp(c)) + EPS)
            normal += -pp[j] * math.log(pt[j] + EPS)
            adv += r * math.log(pt[j] + EPS)
    normal /= b
    if reduction == "mean":
        adv /= b
    return lam * adv + (1 - lam) * normal


def draw(b=3, g=4, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=gen, dtype=torch.float64)
    docs = torch.randn(b, g, d, generator=gen, dtype=torch.float64)
    logits = 2 * torch.randn(b, g, generator=gen, dtype=torch.float64)
    return q, docs, logits


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_formula_against_a_float64_loop(lam: float, reduction: str) -> None:
    q, docs, logits = draw()
    got = ar2_retriever_loss(
        q,
        docs,
        logits,
        adv_lambda=lam,
        temperature=0.7,
        retriever_temperature=0.5,
        adv_reduction=reduction,
    )
    want = naive(q, docs, logits, lam, t=0.7, rt=0.5, reduction=reduction)
    assert float(got) == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_adversarial_term_is_summed_as_the_code_does() -> None:
    """The code sums adv over B*G while normal is divided by B: doubling the batch (the same
    groups twice) doubles adv but leaves normal unchanged."""
    q, docs, logits = draw()
    q2, docs2, logits2 = torch.cat([q, q]), torch.cat([docs, docs]), torch.cat([logits, logits])
    adv1 = ar2_retriever_loss(q, docs, logits, adv_lambda=1.0)
    adv2 = ar2_retriever_loss(q2, docs2, logits2, adv_lambda=1.0)
    assert float(adv2) == pytest.approx(2 * float(adv1), rel=1e-12)
    n1 = ar2_retriever_loss(q, docs, logits, adv_lambda=0.0)
    n2 = ar2_retriever_loss(q2, docs2, logits2, adv_lambda=0.0)
    assert float(n2) == pytest.approx(float(n1), rel=1e-12)
    mean2 = ar2_retriever_loss(q2, docs2, logits2, adv_lambda=1.0, adv_reduction="mean")
    assert float(mean2) == pytest.approx(float(adv1) / q.shape[0], rel=1e-12)


def test_card_1_lambda0_zero_gradient_when_distributions_agree() -> None:
    """lambda = 0: the distillation term's gradient vanishes when p_theta = p_phi (up to eps)."""
    q, docs, _ = draw()
    q.requires_grad_(True)
    logits = torch.einsum("bh,bgh->bg", q.detach(), docs)  # ranker == retriever
    loss = ar2_retriever_loss(q, docs, logits, adv_lambda=0.0)
    (grad,) = torch.autograd.grad(loss, q)
    assert grad.abs().max() < 1e-6


def test_card_2_reward_vanishes_when_the_positive_dominates() -> None:
    """l_0 >> l_j: reward_j -> log(1 + eps) ~ 0, so adv -> sum of log(1/2 + eps) log p_theta(0)."""
    q, docs, _ = draw(b=2, g=3)
    logits = torch.tensor([[100.0, 0.0, -1.0], [100.0, 1.0, 2.0]], dtype=torch.float64)
    got = ar2_retriever_loss(q, docs, logits, adv_lambda=1.0)
    p = torch.softmax(torch.einsum("bh,bgh->bg", q, docs), dim=1)
    want = (math.log(0.5 + EPS) * torch.log(p[:, 0] + EPS)).sum()
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_card_3_adversarial_gradient_raises_the_confusing_negative() -> None:
    """Three documents (positive + two negatives): a descent step on adv alone raises p_theta of
    the negative with the higher ranker logit relative to the other negative."""
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    docs = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]], dtype=torch.float64)
    logits = torch.tensor([[2.0, 1.9, -3.0]], dtype=torch.float64)
    loss = ar2_retriever_loss(q, docs, logits, adv_lambda=1.0)
    (grad,) = torch.autograd.grad(loss, q)
    before = torch.softmax(docs[0] @ q.detach()[0], 0)
    after = torch.softmax(docs[0] @ (q.detach()[0] - 0.1 * grad[0]), 0)
    assert after[1] / after[2] > before[1] / before[2]


def test_card_4_shapes_and_the_ranker_target_is_zero() -> None:
    q = torch.randn(4, 8)
    docs = torch.randn(4, 16, 8)
    logits = torch.randn(4, 16)
    assert ar2_retriever_loss(q, docs, logits).shape == ()
    want = -torch.log_softmax(logits.double(), 1)[:, 0].mean()
    assert float(ar2_ranker_loss(logits.double())) == pytest.approx(float(want), rel=1e-12)


def test_positive_gets_reward_log_half_and_no_gradient_to_the_ranker() -> None:
    q, docs, logits = draw(b=1, g=1)
    logits.requires_grad_(True)
    loss = ar2_retriever_loss(q, docs, logits, adv_lambda=1.0)
    # one document: p_theta = 1, log(1 + eps) * log(1/2 + eps)
    assert float(loss) == pytest.approx(math.log(0.5 + EPS) * math.log(1 + EPS), rel=1e-9)
    assert not loss.requires_grad or torch.autograd.grad(loss, logits, allow_unused=True)[0] is None


def test_schedule_boundary_quirk() -> None:
    """R + 1 ranker steps per block (0..R inclusive), transcribed from the train_flag logic."""

    def official(total: int, i: int, r: int) -> list[bool]:
        flag, out = 1, []
        for gs in range(1, total + 1):
            out.append(flag == 1)
            if gs % i > r:
                flag = 0
            elif 0 < gs % i < r:
                flag = 1
            elif gs % i == 0:
                flag = 1
        return out

    for i, r in [(10, 3), (2000, 500), (7, 0), (5, 1), (4, 6)]:
        n = 3 * i + 2
        assert [
            ar2_trains_ranker(s, iteration_step=i, ranker_steps=r) for s in range(n)
        ] == official(n, i, r)
    assert sum(ar2_trains_ranker(s) for s in range(2000)) == 501


def test_module_matches_function_and_repr() -> None:
    q, docs, logits = draw()
    m = AR2Loss(adv_lambda=0.3, temperature=2.0, adv_reduction="mean")
    assert torch.equal(
        m(q, docs, logits),
        ar2_retriever_loss(q, docs, logits, adv_lambda=0.3, temperature=2.0, adv_reduction="mean"),
    )
    assert "adv_lambda=0.3" in repr(m) and "'mean'" in repr(m)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"adv_lambda": 1.5}, "ar2_retriever_loss: adv_lambda"),
        ({"temperature": 0.0}, "ar2_retriever_loss: temperature"),
        ({"adv_reduction": "max"}, "ar2_retriever_loss: adv_reduction"),
    ],
)
def test_errors_name_the_argument(kwargs, match) -> None:
    q, docs, logits = draw()
    with pytest.raises(ValueError, match=match):
        ar2_retriever_loss(q, docs, logits, **kwargs)


def test_shape_errors() -> None:
    q, docs, logits = draw()
    with pytest.raises(ValueError, match="ar2_retriever_loss: docs"):
        ar2_retriever_loss(q, docs[:, :, :2], logits)
    with pytest.raises(ValueError, match="ar2_retriever_loss: ranker_logits"):
        ar2_retriever_loss(q, docs, logits[:, :2])
    with pytest.raises(ValueError, match="ar2_ranker_loss: logits"):
        ar2_ranker_loss(logits[0])
    with pytest.raises(TypeError, match="ar2_ranker_loss"):
        ar2_ranker_loss(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="AR2Loss: adv_lambda"):
        AR2Loss(adv_lambda=-0.1)
    with pytest.raises(ValueError, match="ar2_trains_ranker: step"):
        ar2_trains_ranker(-1)
