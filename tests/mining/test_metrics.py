"""Retrieval metrics: a naive float64 loop over the full score matrix, properties, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.mining.index import ExactIndex
from posneg.mining.metrics import retrieval_metrics

# --------------------------------------------------------------------------------------------
# formula: a naive loop from the definitions, float64, over the full Q x N score matrix
# --------------------------------------------------------------------------------------------


def naive_metrics(
    q: torch.Tensor, d: torch.Tensor, relevant: list[list[int]], ks: tuple[int, ...], cutoff: int
) -> dict[str, float]:
    scores = q.double() @ d.double().T
    sums: dict[str, float] = {f"mrr@{cutoff}": 0.0, f"ndcg@{cutoff}": 0.0}
    sums.update({f"recall@{k}": 0.0 for k in ks})
    for i in range(q.shape[0]):
        order = sorted(range(d.shape[0]), key=lambda j: -float(scores[i, j]))
        rel = set(relevant[i])
        rr = 0.0
        for r, j in enumerate(order[:cutoff], start=1):
            if j in rel:
                rr = 1.0 / r
                break
        dcg = sum(1.0 / math.log2(r + 1) for r, j in enumerate(order[:cutoff], 1) if j in rel)
        idcg = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(rel), cutoff) + 1))
        sums[f"mrr@{cutoff}"] += rr
        sums[f"ndcg@{cutoff}"] += dcg / idcg
        for k in ks:
            sums[f"recall@{k}"] += len(rel & set(order[:k])) / len(rel)
    return {key: v / q.shape[0] for key, v in sums.items()}


def _random_case(
    g: torch.Generator, n_q: int, n_d: int, dim: int, max_rel: int
) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    q = torch.randn(n_q, dim, generator=g, dtype=torch.float64)
    d = torch.randn(n_d, dim, generator=g, dtype=torch.float64)
    n_rel = torch.randint(1, max_rel + 1, (n_q,), generator=g)
    relevant = [torch.randperm(n_d, generator=g)[: int(c)].tolist() for c in n_rel]
    return q, d, relevant


@pytest.mark.parametrize(
    ("n_q", "n_d", "max_rel", "ks", "cutoff"),
    [
        (30, 200, 1, (1, 10, 100), 10),
        (25, 150, 15, (1, 10, 100), 10),  # more relevant rows than the cut-off
        (10, 40, 5, (1, 3, 7, 100), 5),  # k beyond the corpus counts the whole corpus
    ],
)
def test_matches_naive_loop(
    n_q: int, n_d: int, max_rel: int, ks: tuple[int, ...], cutoff: int
) -> None:
    g = torch.Generator().manual_seed(n_q * 1000 + n_d)
    q, d, relevant = _random_case(g, n_q, n_d, 16, max_rel)
    got = retrieval_metrics(q, d, relevant, ks=ks, cutoff=cutoff)
    want = naive_metrics(q, d, relevant, ks, cutoff)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_float32_matches_naive_loop_with_the_default_keys() -> None:
    g = torch.Generator().manual_seed(7)
    q, d, relevant = _random_case(g, 40, 300, 24, 3)
    got = retrieval_metrics(q.float(), d.float(), relevant)
    assert list(got) == ["mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100"]
    want = naive_metrics(q, d, relevant, (1, 10, 100), 10)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


@settings(max_examples=25, deadline=None)
@given(
    n_q=st.integers(1, 8),
    n_d=st.integers(1, 30),
    max_rel=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
def test_hypothesis_shapes_match_naive_loop(n_q: int, n_d: int, max_rel: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    q, d, relevant = _random_case(g, n_q, n_d, 5, min(max_rel, n_d))
    got = retrieval_metrics(q, d, relevant, ks=(1, 5, 50))
    want = naive_metrics(q, d, relevant, (1, 5, 50), 10)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
        assert 0.0 <= got[key] <= 1.0 + 1e-12


# --------------------------------------------------------------------------------------------
# properties: answers known by construction
# --------------------------------------------------------------------------------------------


def _ranked_docs(n_docs: int) -> torch.Tensor:
    """Docs whose score against the query e0 + small e1 is strictly decreasing in the row."""
    d = torch.zeros(n_docs, 2, dtype=torch.float64)
    d[:, 0] = torch.linspace(1.0, 0.0, n_docs, dtype=torch.float64)
    return d


def test_perfect_ranking_gives_one() -> None:
    d = _ranked_docs(50)
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64).repeat(3, 1)
    relevant = [[0], [0, 1, 2], list(range(20))]  # always the top rows
    m = retrieval_metrics(q, d, relevant)
    assert m["mrr@10"] == 1.0 and m["ndcg@10"] == pytest.approx(1.0)
    assert m["recall@100"] == 1.0
    assert m["recall@10"] == pytest.approx((1 + 1 + 10 / 20) / 3)  # 20 relevant, 10 slots
    assert m["recall@1"] == pytest.approx((1 + 1 / 3 + 1 / 20) / 3)


def test_reversed_ranking_gives_known_values() -> None:
    n = 12
    d = _ranked_docs(n)
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    # the only relevant row ranks last (12th): outside the top 10
    m = retrieval_metrics(q, d, [[n - 1]], ks=(1, 10, 12))
    assert m == {"mrr@10": 0.0, "ndcg@10": 0.0, "recall@1": 0.0, "recall@10": 0.0, "recall@12": 1.0}
    # relevant rows at ranks 9 and 10
    m = retrieval_metrics(q, d, [[8, 9]], ks=(1, 10))
    assert m["mrr@10"] == pytest.approx(1 / 9)
    dcg = 1 / math.log2(10) + 1 / math.log2(11)
    assert m["ndcg@10"] == pytest.approx(dcg / (1 + 1 / math.log2(3)))
    assert m["recall@1"] == 0.0 and m["recall@10"] == 1.0


def test_single_relevant_at_rank_r() -> None:
    d = _ranked_docs(30)
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64).repeat(30, 1)
    relevant = [[r] for r in range(30)]  # query r's relevant row is at rank r + 1
    m = retrieval_metrics(q, d, relevant, ks=(1, 10, 100))
    assert m["mrr@10"] == pytest.approx(sum(1 / r for r in range(1, 11)) / 30)
    assert m["ndcg@10"] == pytest.approx(sum(1 / math.log2(r + 1) for r in range(1, 11)) / 30)
    assert m["recall@1"] == pytest.approx(1 / 30)
    assert m["recall@10"] == pytest.approx(10 / 30)
    assert m["recall@100"] == 1.0


def test_repeated_relevant_rows_count_once() -> None:
    d = _ranked_docs(10)
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert retrieval_metrics(q, d, [[0, 0, 5]]) == retrieval_metrics(q, d, [[5, 0]])


def test_relevant_as_tensors_and_tuples() -> None:
    d = _ranked_docs(10)
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    a = retrieval_metrics(q, d, [torch.tensor([1, 2]), (3,)])
    b = retrieval_metrics(q, d, [[1, 2], [3]])
    assert a == b


def test_a_filled_index_is_reused_and_an_empty_one_filled() -> None:
    g = torch.Generator().manual_seed(3)
    q, d, relevant = _random_case(g, 20, 80, 8, 2)
    q, d = q.float(), d.float()
    want = retrieval_metrics(q, d, relevant)
    filled = ExactIndex(metric="ip")
    filled.add(d)
    assert retrieval_metrics(q, d, relevant, index=filled) == want
    assert filled.ntotal == 80  # not added twice
    empty = ExactIndex(metric="ip")
    assert retrieval_metrics(q, d, relevant, index=empty) == want
    assert empty.ntotal == 80


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------

Q = torch.randn(3, 4)
D = torch.randn(5, 4)
REL = [[0], [1], [2]]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"query_emb": [[1.0]]}, TypeError, "query_emb must be a torch.Tensor"),
        ({"query_emb": torch.ones(3, 4, dtype=torch.int64)}, TypeError, "floating-point"),
        ({"query_emb": torch.randn(3)}, ValueError, r"query_emb must have shape \(B, D\)"),
        ({"query_emb": torch.randn(0, 4), "relevant": []}, ValueError, "at least 1 rows"),
        ({"corpus_emb": torch.randn(0, 4)}, ValueError, "corpus_emb must have at least 1"),
        ({"corpus_emb": torch.randn(5, 3)}, ValueError, "corpus_emb must have dimension D=4"),
        ({"corpus_emb": torch.randn(5, 4).double()}, TypeError, "corpus_emb has dtype"),
        ({"relevant": [[0], [1]]}, ValueError, r"one list per query \(3\); got 2"),
        ({"relevant": "abc"}, TypeError, "relevant must be a sequence of id sequences"),
        ({"relevant": [[0], 1, [2]]}, TypeError, r"relevant\[1\] must be a sequence"),
        ({"relevant": [[0], [1.0], [2]]}, TypeError, r"relevant\[1\] must hold int"),
        ({"relevant": [[0], [], [2]]}, ValueError, r"relevant\[1\] is empty"),
        (
            {"relevant": [[0], [5], [2]]},
            ValueError,
            r"relevant\[1\] holds 5, outside the corpus rows",
        ),
        ({"relevant": [[0], [-1], [2]]}, ValueError, r"relevant\[1\] holds -1, outside"),
        ({"ks": ()}, ValueError, "ks must be a non-empty sequence"),
        ({"ks": (1, 0)}, ValueError, "ks must be >= 1"),
        ({"ks": (1, 2.5)}, TypeError, "ks must be an int"),
        ({"cutoff": 0}, ValueError, "cutoff must be >= 1"),
    ],
)
def test_errors(kwargs: dict[str, object], exc: type[Exception], match: str) -> None:
    args: dict[str, object] = {"query_emb": Q, "corpus_emb": D, "relevant": REL}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        retrieval_metrics(**args)  # type: ignore[arg-type]


def test_index_of_another_size() -> None:
    index = ExactIndex(metric="ip")
    index.add(torch.randn(7, 4))
    with pytest.raises(ValueError, match="index holds 7 rows but corpus_emb has 5"):
        retrieval_metrics(Q, D, REL, index=index)
