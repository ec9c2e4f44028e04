"""ADORE: weights (card test 2), loss against a naive loop and DRhard's computation written out,
candidate retrieval with appended positives, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.mining.strategies import (
    ADORELoss,
    adore_candidates,
    adore_loss,
    adore_weights,
    candidate_scores,
)


def naive_adore(
    scores: torch.Tensor,
    relevant: torch.Tensor,
    ranks: torch.Tensor,
    metric_cut: int | None,
    sigma: float = 1.0,
) -> list[float]:
    """Per-query loss from the paper's formula, loop by loop (padding: rank -1)."""
    out = []
    for b in range(scores.shape[0]):
        total, pairs = 0.0, 0
        k = scores.shape[1]
        for i in range(k):
            for j in range(k):
                ri, rj = int(ranks[b, i]), int(ranks[b, j])
                if ri < 1 or rj < 1 or not bool(relevant[b, i]) or bool(relevant[b, j]):
                    continue
                rr_i = 0.0 if (metric_cut is not None and ri > metric_cut) else 1.0 / ri
                rr_j = 0.0 if (metric_cut is not None and rj > metric_cut) else 1.0 / rj
                diff = float(scores[b, i] - scores[b, j])
                total += abs(rr_i - rr_j) * math.log1p(math.exp(-sigma * diff))
                pairs += 1
        out.append(total / pairs if pairs else 0.0)
    return out


def drhard_adore(scores: torch.Tensor, relevant: torch.Tensor, metric_cut: int) -> torch.Tensor:
    """DRhard adore/train.py's per-query loss as written there (both pair directions, divided by
    2 * #positive pairs, then by the batch size); lists without padding, ranks 1..K."""
    loss = scores.new_zeros(())
    for y_pred_row, labels in zip(scores, relevant, strict=True):
        target = labels.double().reshape(-1, 1)
        rel_diff = target - target.T
        pos_pairs = (rel_diff > 0).double()
        neg_pairs = (rel_diff < 0).double()
        num_pairs = 2 * pos_pairs.sum()
        y_pred = y_pred_row.reshape(-1, 1)
        c_pos = torch.log(1 + torch.exp(-(y_pred - y_pred.T)))
        c_neg = torch.log(1 + torch.exp(y_pred - y_pred.T))
        c = pos_pairs * c_pos + neg_pairs * c_neg
        arr = 1 / torch.arange(1, 1 + len(y_pred), dtype=torch.float64)
        arr[metric_cut:] = 0
        weights = torch.abs(arr.view(-1, 1) - arr.view(1, -1))
        loss = loss + (c * weights).sum() / num_pairs
    return loss / scores.shape[0]


def test_card_single_relevant_at_rank_one() -> None:
    """Card test 2: one relevant document at rank 1 and metric_cut >= K: weights 1 - 1/j."""
    k = 7
    ranks = torch.arange(1, k + 1)[None]
    relevant = torch.zeros(1, k, dtype=torch.bool)
    relevant[0, 0] = True
    for cut in (k, 200, None):
        w = adore_weights(ranks, relevant, metric_cut=cut, dtype=torch.float64)
        expected = torch.tensor([1 - 1 / j for j in range(1, k + 1)], dtype=torch.float64)
        torch.testing.assert_close(w[0, 0], expected)
        assert float(w[0, 1:].abs().sum()) == 0.0  # rows of non-relevant documents are empty


def test_metric_cut_zeroes_reciprocal_ranks_beyond_it() -> None:
    ranks = torch.tensor([[1, 2, 3, 4]])
    relevant = torch.tensor([[False, True, False, False]])
    w = adore_weights(ranks, relevant, metric_cut=2, dtype=torch.float64)[0, 1]
    # rr = [1, 1/2, 0, 0]: |1/2 - 1| for rank 1, |1/2 - 0| beyond the cut
    torch.testing.assert_close(w, torch.tensor([0.5, 0.0, 0.5, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("chunk_size", [None, 1])
def test_formula_against_naive_loop(chunk_size: int | None) -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 9, generator=g, dtype=torch.float64)
    relevant = torch.rand(4, 9, generator=g) < 0.3
    relevant[:, 4] = True
    ranks = torch.arange(1, 10).repeat(4, 1)
    ranks[1, 7:] = -1  # padding
    for cut, sigma in ((200, 1.0), (3, 1.0), (None, 2.0)):
        expected = naive_adore(scores, relevant, ranks, cut, sigma)
        got = adore_loss(
            scores,
            relevant,
            ranks,
            metric_cut=cut,
            sigma=sigma,
            reduction="none",
            chunk_size=chunk_size,
        )
        torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
        mean = adore_loss(scores, relevant, ranks, metric_cut=cut, sigma=sigma)
        assert math.isclose(float(mean), sum(expected) / 4, rel_tol=1e-12)


def test_equals_drhard_computation() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 12, generator=g, dtype=torch.float64)
    relevant = torch.rand(3, 12, generator=g) < 0.25
    relevant[:, -1] = True  # as if appended
    ranks = torch.arange(1, 13).repeat(3, 1)
    torch.testing.assert_close(
        adore_loss(scores, relevant, ranks, metric_cut=10), drhard_adore(scores, relevant, 10)
    )


def test_relevant_document_pushed_up_and_gradients() -> None:
    scores = torch.tensor([[2.0, 1.0, 0.5, 0.0]], dtype=torch.float64, requires_grad=True)
    relevant = torch.tensor([[False, False, True, False]])
    adore_loss(scores, relevant, torch.tensor([[1, 2, 3, 4]])).backward()
    assert scores.grad is not None
    assert float(scores.grad[0, 2]) < 0
    assert bool((scores.grad[0, [0, 1, 3]] > 0).all())
    assert math.isclose(float(scores.grad.sum()), 0.0, abs_tol=1e-12)


def test_query_without_pairs_contributes_zero() -> None:
    scores = torch.randn(2, 3, dtype=torch.float64)
    relevant = torch.tensor([[True, True, True], [True, False, False]])
    ranks = torch.tensor([[1, 2, 3], [1, 2, 3]])
    per = adore_loss(scores, relevant, ranks, reduction="none")
    assert float(per[0]) == 0.0 and float(per[1]) > 0
    assert math.isclose(float(adore_loss(scores, relevant, ranks)), float(per[1]) / 2)


def test_half_and_module() -> None:
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(2, 5, generator=g)
    relevant = torch.eye(2, 5, dtype=torch.bool)
    ranks = torch.arange(1, 6).repeat(2, 1)
    out = adore_loss(scores.half(), relevant, ranks)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, adore_loss(scores.half().float(), relevant, ranks))
    module = ADORELoss(metric_cut=3, sigma=2.0, reduction="sum", chunk_size=1)
    for part in ("metric_cut=3", "sigma=2.0", "reduction='sum'", "chunk_size=1"):
        assert part in repr(module)
    torch.testing.assert_close(
        module(scores, relevant, ranks),
        adore_loss(scores, relevant, ranks, metric_cut=3, sigma=2.0, reduction="sum"),
    )


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 4),
    k=st.integers(1, 8),
    cut=st.sampled_from([None, 1, 3, 100]),
    seed=st.integers(0, 10_000),
)
def test_hypothesis_matches_naive(b: int, k: int, cut: int | None, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, k, generator=g, dtype=torch.float64)
    relevant = torch.rand(b, k, generator=g) < 0.4
    ranks = torch.randperm(k, generator=g).add(1).repeat(b, 1)
    ranks[torch.rand(b, k, generator=g) < 0.2] = -1
    got = adore_loss(scores, relevant, ranks, metric_cut=cut, reduction="none")
    torch.testing.assert_close(
        got, torch.tensor(naive_adore(scores, relevant, ranks, cut), dtype=torch.float64)
    )


# --- candidates ------------------------------------------------------------------------------


class _Flat:
    """A brute-force index: top-k of q @ docs.T, ids -1 beyond the corpus."""

    def __init__(self, docs: torch.Tensor) -> None:
        self.docs = docs

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = queries @ self.docs.T
        kk = min(k, s.shape[1])
        top = torch.topk(s, kk, dim=1)
        pad = k - kk
        ids = torch.cat([top.indices, torch.full((s.shape[0], pad), -1)], dim=1)
        scores = torch.cat([top.values, torch.full((s.shape[0], pad), float("-inf"))], dim=1)
        return scores, ids


def _corpus() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    docs = torch.randn(30, 8, generator=g)
    queries = torch.randn(4, 8, generator=g)
    return docs, queries


def test_candidates_retrieved_positive_not_appended() -> None:
    docs, queries = _corpus()
    index = _Flat(docs)
    top = index.search(queries, 5)[1]
    positives = [[int(top[0, 2])], [int(top[1, 0]), 29], [int(top[2, 4])], [int(top[3, 1])]]
    ids, ranks, relevant = adore_candidates(index, queries, 5, positives)
    assert ids.shape == (4, 5)  # every query retrieved a positive: nothing appended
    assert torch.equal(ids, top)
    assert torch.equal(ranks, torch.arange(1, 6).repeat(4, 1))
    assert relevant.sum(dim=1).tolist() == [1, 1, 1, 1]
    assert bool(relevant[0, 2]) and bool(relevant[1, 0])
    # the "missing" option appends the unretrieved 29 of query 1
    ids2, ranks2, rel2 = adore_candidates(index, queries, 5, positives, append="missing")
    assert ids2.shape == (4, 6)
    assert ids2[1, 5].item() == 29 and ranks2[1, 5].item() == 6 and bool(rel2[1, 5])
    assert ids2[0, 5].item() == -1 and ranks2[0, 5].item() == -1 and not bool(rel2[0, 5])


def test_candidates_append_all_positives_when_none_retrieved() -> None:
    docs, queries = _corpus()
    index = _Flat(docs)
    full = index.search(queries, 30)[1]
    last = [sorted(full[b, -3:].tolist()) for b in range(4)]  # never in the top 5
    positives = [last[0], last[1][:1], [int(full[2, 0])], last[3][:2]]
    ids, ranks, relevant = adore_candidates(index, queries, 5, positives)
    assert ids.shape == (4, 8)
    assert ids[0, 5:].tolist() == last[0] and ranks[0, 5:].tolist() == [6, 7, 8]
    assert ids[1, 5:].tolist() == [last[1][0], -1, -1] and ranks[1, 5:].tolist() == [6, -1, -1]
    assert ids[2, 5:].tolist() == [-1, -1, -1] and bool(relevant[2, 0])
    assert ids[3, 5:7].tolist() == last[3][:2] and relevant[3].sum().item() == 2
    assert relevant.sum(dim=1).tolist() == [3, 1, 1, 2]
    # every list has a relevant document and the loss is finite
    scores = candidate_scores(queries, docs, ids)
    assert bool(torch.isfinite(adore_loss(scores, relevant, ranks)))


def test_candidates_index_padding() -> None:
    docs, queries = _corpus()
    index = _Flat(docs[:3])
    ids, ranks, relevant = adore_candidates(index, queries, 5, [[0], [1], [2], [0, 1]])
    assert ids.shape == (4, 5)
    assert bool((ids[:, 3:] == -1).all()) and bool((ranks[:, 3:] == -1).all())
    assert not bool(relevant[:, 3:].any())


def test_candidates_with_exact_index() -> None:
    index_mod = pytest.importorskip("posneg.mining.index")
    docs, queries = _corpus()
    index = index_mod.ExactIndex(metric="ip")
    index.add(docs)
    positives = [[0], [5, 6], [7], [29]]
    ref = adore_candidates(_Flat(docs), queries, 10, positives)
    got = adore_candidates(index, queries, 10, positives)
    for a, b in zip(got, ref, strict=True):
        assert torch.equal(a, b)


def test_candidate_scores() -> None:
    docs, queries = _corpus()
    ids = torch.tensor([[0, 1, -1], [2, 2, 3], [29, -1, -1], [4, 5, 6]])
    s = candidate_scores(queries.double(), docs.double(), ids)
    for b in range(4):
        for c in range(3):
            d = int(ids[b, c])
            expected = float(queries[b].double() @ docs[d].double()) if d >= 0 else 0.0
            assert math.isclose(float(s[b, c]), expected, rel_tol=1e-12, abs_tol=1e-12)


def test_errors() -> None:
    ranks = torch.arange(1, 4)[None]
    rel = torch.tensor([[True, False, False]])
    s = torch.randn(1, 3)
    with pytest.raises(TypeError, match="adore_weights: ranks must be an integer tensor"):
        adore_weights(ranks.float(), rel)
    with pytest.raises(ValueError, match=r"adore_weights: ranks must have shape \(B, K\)"):
        adore_weights(ranks[0], rel)
    with pytest.raises(ValueError, match="ranks must be 1-based"):
        adore_weights(torch.tensor([[0, 1, 2]]), rel)
    with pytest.raises(TypeError, match="relevant must be a bool tensor"):
        adore_weights(ranks, rel.long())
    with pytest.raises(ValueError, match=r"relevant must have shape \(1, 3\)"):
        adore_weights(ranks, rel[:, :2])
    with pytest.raises(ValueError, match="metric_cut must be >= 1"):
        adore_weights(ranks, rel, metric_cut=0)
    with pytest.raises(TypeError, match="metric_cut must be an int"):
        adore_weights(ranks, rel, metric_cut=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dtype must be a floating"):
        adore_weights(ranks, rel, dtype=torch.int64)
    with pytest.raises(TypeError, match="adore_loss: scores must be a floating"):
        adore_loss(s.long(), rel, ranks)
    with pytest.raises(ValueError, match=r"adore_loss: scores must have shape \(B, K\)"):
        adore_loss(s[0], rel, ranks)
    with pytest.raises(ValueError, match=r"ranks must have shape \(1, 4\) like scores"):
        adore_loss(torch.randn(1, 4), rel, ranks)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        adore_loss(s, rel, ranks, sigma=0.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        adore_loss(s, rel, ranks, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ADORELoss: metric_cut must be >= 1"):
        ADORELoss(metric_cut=0)
    docs, queries = _corpus()
    index = _Flat(docs)
    with pytest.raises(ValueError, match="adore_candidates: k must be >= 1"):
        adore_candidates(index, queries, 0, [[0]] * 4)
    with pytest.raises(ValueError, match="one list per query"):
        adore_candidates(index, queries, 3, [[0]] * 3)
    with pytest.raises(ValueError, match="every query needs at least one positive; query 1"):
        adore_candidates(index, queries, 3, [[0], [], [1], [2]])
    with pytest.raises(TypeError, match=r"positives\[0\] must hold ints"):
        adore_candidates(index, queries, 3, [[0.5], [1], [1], [2]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="append must be one of"):
        adore_candidates(index, queries, 3, [[0]] * 4, append="always")
    with pytest.raises(ValueError, match=r"candidate_scores: doc_ids must be rows of doc_emb"):
        candidate_scores(queries, docs, torch.tensor([[30]] * 4))
    with pytest.raises(TypeError, match="candidate_scores: doc_ids must be an integer tensor"):
        candidate_scores(queries, docs, torch.zeros(4, 1))


def test_gradcheck_through_row_blocks() -> None:
    g = torch.Generator().manual_seed(5)
    scores = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    relevant = torch.rand(3, 5, generator=g) < 0.4
    relevant[:, 0] = True
    ranks = torch.arange(1, 6).repeat(3, 1)

    def fn(s: torch.Tensor) -> torch.Tensor:
        return adore_loss(s, relevant, ranks, metric_cut=3, chunk_size=1, reduction="none")

    assert torch.autograd.gradcheck(fn, (scores,))
