"""Rand-Neg (DRhard's random-negative baseline): DRhard's randneg_train transcribed, formula,
the deliberate difference from star_loss, properties, errors."""

from __future__ import annotations

import math
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.mining.strategies import random_negatives, star_loss
from posneg.mining.strategies.randneg import RandNegLoss, rand_neg_loss


def drhard_randneg_train(
    query_embs: torch.Tensor,
    doc_embs: torch.Tensor,
    other_doc_embs: torch.Tensor,
    hard_pair_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Transcription of jingtaozhan/DRhard ``model.py::randneg_train`` (commit
    15e22359e70bccfb0b7b5ddf9c050161efc93607) after the encoders, in float64.

    ``other_doc_embs`` is (B, rand_num, D): the documents drawn per query, flattened to one list
    that every query is scored against; ``hard_pair_mask`` is (B, B * rand_num), 1 = keep.
    """
    batch_scores = query_embs @ doc_embs.T
    single_positive_scores = torch.diagonal(batch_scores, 0)
    other_doc_num = other_doc_embs.shape[0] * other_doc_embs.shape[1]
    other = other_doc_embs.reshape(other_doc_num, -1)
    other_batch_scores = (query_embs @ other.T).reshape(-1)
    positive_scores = single_positive_scores.reshape(-1, 1).repeat(1, other_doc_num).reshape(-1)
    logit_matrix = torch.cat([positive_scores.unsqueeze(1), other_batch_scores.unsqueeze(1)], 1)
    other_loss = -1.0 * F.log_softmax(logit_matrix, dim=1)[:, 0]
    if hard_pair_mask is not None:
        mask = hard_pair_mask.reshape(-1)
        other_loss = other_loss * mask
        return other_loss.sum() / mask.sum()
    return other_loss.sum() / len(other_loss)


def naive_randneg(
    q: torch.Tensor,
    d: torch.Tensor,
    r: torch.Tensor,
    relevant: torch.Tensor | None,
    temperature: float = 1.0,
) -> tuple[float, int]:
    """(sum of pair losses, number of pairs), one pair at a time."""
    total, count = 0.0, 0
    for i in range(q.shape[0]):
        s_pos = float(q[i] @ d[i]) / temperature
        for m in range(r.shape[0]):
            if relevant is not None and bool(relevant[i, m]):
                continue
            total += math.log1p(math.exp(float(q[i] @ r[m]) / temperature - s_pos))
            count += 1
    return total, count


def _data(seed: int, b: int = 5, rand_num: int = 2, d: int = 6) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=g, dtype=torch.float64)
    p = torch.randn(b, d, generator=g, dtype=torch.float64)
    r = torch.randn(b, rand_num, d, generator=g, dtype=torch.float64)
    rel = torch.rand(b, b * rand_num, generator=g) < 0.3
    return q, p, r, rel


# --- 1. reference: DRhard's randneg_train as written -----------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("masked", [False, True])
def test_equals_drhard_randneg_train(seed: int, masked: bool) -> None:
    q, p, r, rel = _data(seed)
    keep = (~rel).to(torch.float64) if masked else None
    expected = drhard_randneg_train(q, p, r, keep)
    got = rand_neg_loss(q, p, r.reshape(-1, q.shape[1]), rand_relevant=rel if masked else None)
    torch.testing.assert_close(got, expected)


def test_gradients_equal_drhard_randneg_train() -> None:
    q, p, r, rel = _data(3)
    q1, q2 = q.clone().requires_grad_(True), q.clone().requires_grad_(True)
    rand_neg_loss(q1, p, r.reshape(-1, 6), rand_relevant=rel).backward()
    drhard_randneg_train(q2, p, r, (~rel).to(torch.float64)).backward()
    torch.testing.assert_close(q1.grad, q2.grad)


# --- 2. formula ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_formula_float64(chunk_size: int | None) -> None:
    q, p, r, rel = _data(4)
    flat = r.reshape(-1, 6)
    total, count = naive_randneg(q, p, flat, rel, temperature=0.7)
    kw = {"rand_relevant": rel, "temperature": 0.7, "chunk_size": chunk_size}
    torch.testing.assert_close(
        rand_neg_loss(q, p, flat, **kw), torch.tensor(total / count, dtype=torch.float64)
    )
    torch.testing.assert_close(
        rand_neg_loss(q, p, flat, reduction="sum", **kw), torch.tensor(total, dtype=torch.float64)
    )
    each = rand_neg_loss(q, p, flat, reduction="none", **kw)
    assert each.shape == (5,)
    torch.testing.assert_close(each.sum(), torch.tensor(total, dtype=torch.float64))


# --- 3. the deliberate difference from STAR with random documents -----------------------------


def test_differs_from_star_with_random_documents_by_the_in_batch_pairs() -> None:
    q, p, r, _ = _data(5)
    flat = r.reshape(-1, 6)
    rand_sum = float(rand_neg_loss(q, p, flat, reduction="sum"))
    star_sum = float(star_loss(q, p, flat, reduction="sum"))
    inbatch_sum = float(star_loss(q, p, reduction="sum"))
    # star_loss with random documents = Rand-Neg's pairs + the in-batch pairs (not DRhard's)
    assert math.isclose(star_sum, rand_sum + inbatch_sum, rel_tol=1e-12)
    assert not math.isclose(
        float(star_loss(q, p, flat)), float(rand_neg_loss(q, p, flat)), rel_tol=1e-6
    )


def test_with_random_negatives_draws() -> None:
    g = torch.Generator().manual_seed(0)
    corpus = torch.randn(30, 4, generator=g, dtype=torch.float64)
    positives = torch.tensor([[0], [1], [2], [3]])
    ids = random_negatives(4, 30, 3, positives, generator=g)  # (4, 3), never the own positive
    flat = ids.reshape(-1)
    relevant = flat[None, :] == positives  # another query's positive drawn: masked
    assert not relevant[torch.arange(4)[:, None], torch.arange(12).reshape(4, 3)].any()
    q = torch.randn(4, 4, generator=g, dtype=torch.float64)
    got = rand_neg_loss(q, corpus[:4], corpus[flat], rand_relevant=relevant)
    expected = drhard_randneg_train(q, corpus[:4], corpus[ids], (~relevant).to(torch.float64))
    torch.testing.assert_close(got, expected)


# --- 4. properties ---------------------------------------------------------------------------


def test_all_masked_warns_and_returns_connected_zero() -> None:
    q, p, r, _ = _data(6, b=2, rand_num=1)
    qq = q.clone().requires_grad_(True)
    with pytest.warns(RuntimeWarning, match="every pair is masked"):
        every = torch.ones(2, 2, dtype=torch.bool)
        loss = rand_neg_loss(qq, p, r.reshape(-1, 6), rand_relevant=every)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert qq.grad is not None and (qq.grad == 0).all()


def test_normalize_and_temperature() -> None:
    q, p, r, _ = _data(7)
    flat = r.reshape(-1, 6)
    expected = rand_neg_loss(
        F.normalize(q, dim=1), F.normalize(p, dim=1), F.normalize(flat, dim=1), temperature=0.1
    )
    got = rand_neg_loss(q, p, flat, normalize=True, temperature=0.1)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(
        rand_neg_loss(q / 0.5, p, flat), rand_neg_loss(q, p, flat, temperature=0.5)
    )


def test_gradient_pushes_positive_up() -> None:
    q, p, r, _ = _data(8)
    pp = p.clone().requires_grad_(True)
    rand_neg_loss(q, pp, r.reshape(-1, 6)).backward()
    assert pp.grad is not None
    assert ((pp.grad * q).sum(dim=1) < 0).all()  # descent raises q_i . d_i


def test_half_inputs_compute_in_float32() -> None:
    q, p, r, _ = _data(9)
    out = rand_neg_loss(q.half(), p.half(), r.reshape(-1, 6).half())
    assert out.dtype == torch.float32 and torch.isfinite(out)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 6),
    m=st.integers(1, 7),
    chunk=st.one_of(st.none(), st.integers(1, 4)),
    seed=st.integers(0, 1000),
)
def test_hypothesis_matches_naive(b: int, m: int, chunk: int | None, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    q, p = torch.randn(b, 3, generator=g, dtype=torch.float64), torch.randn(b, 3, generator=g)
    p = p.double()
    r = torch.randn(m, 3, generator=g, dtype=torch.float64)
    rel = torch.rand(b, m, generator=g) < 0.4
    total, count = naive_randneg(q, p, r, rel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = rand_neg_loss(q, p, r, rand_relevant=rel, chunk_size=chunk)
    torch.testing.assert_close(got, torch.tensor(total / max(count, 1), dtype=torch.float64))


def test_module_matches_function_and_pickles() -> None:
    q, p, r, rel = _data(10)
    flat = r.reshape(-1, 6)
    module = RandNegLoss(temperature=0.5, normalize=True)
    assert "temperature=0.5" in repr(module) and "normalize=True" in repr(module)
    expected = rand_neg_loss(q, p, flat, rand_relevant=rel, temperature=0.5, normalize=True)
    torch.testing.assert_close(module(q, p, flat, rel), expected)
    torch.testing.assert_close(pickle.loads(pickle.dumps(module))(q, p, flat, rel), expected)


def test_gradcheck() -> None:
    q, p, r, rel = _data(11, b=3, rand_num=1, d=3)
    args = (q.requires_grad_(True), p.requires_grad_(True), r.reshape(-1, 3).requires_grad_(True))
    assert torch.autograd.gradcheck(
        lambda a, b, c: rand_neg_loss(a, b, c, rand_relevant=rel[:, :3], chunk_size=1), args
    )


# --- 5. errors -------------------------------------------------------------------------------


def test_errors() -> None:
    q, p, r = torch.randn(3, 4), torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="rand_neg_loss: rand_doc must have shape"):
        rand_neg_loss(q, p, torch.randn(0, 4))
    with pytest.raises(ValueError, match="rand_neg_loss: rand_doc must have shape"):
        rand_neg_loss(q, p, torch.randn(5))
    with pytest.raises(TypeError, match="rand_neg_loss: rand_doc"):
        rand_neg_loss(q, p, torch.ones(5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="rand_neg_loss: rand_relevant must have shape"):
        rand_neg_loss(q, p, r, rand_relevant=torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="rand_neg_loss: rand_relevant must be a bool"):
        rand_neg_loss(q, p, r, rand_relevant=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="rand_neg_loss: temperature must be > 0"):
        rand_neg_loss(q, p, r, temperature=0.0)
    with pytest.raises(ValueError, match="rand_neg_loss: reduction must be one of"):
        rand_neg_loss(q, p, r, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rand_neg_loss"):
        rand_neg_loss(q, torch.randn(2, 4), r)
    with pytest.raises(ValueError, match="rand_neg_loss"):
        rand_neg_loss(q, p, torch.randn(5, 3))
    with pytest.raises(TypeError, match="rand_neg_loss"):
        rand_neg_loss(q, p, r.double())
    with pytest.raises(ValueError, match="RandNegLoss: temperature must be > 0"):
        RandNegLoss(temperature=-1.0)
    with pytest.raises(TypeError, match="RandNegLoss: normalize must be a bool"):
        RandNegLoss(normalize=1)  # type: ignore[arg-type]
