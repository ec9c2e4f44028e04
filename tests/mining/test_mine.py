"""mine(): window, filters, sampling and counts on constructed scores; invariants by hypothesis."""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.mining.index import ExactIndex, FaissIndex
from posneg.mining.mine import FILTERS, MinedNegatives, duplicate_groups, mine


def scored(rows: Sequence[Sequence[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries whose score against corpus row j is exactly ``rows[i][j]`` (corpus = identity)."""
    q = torch.tensor(rows, dtype=torch.float64)
    return q, torch.eye(q.shape[1], dtype=torch.float64)


def naive_ranking(q: torch.Tensor, x: torch.Tensor) -> list[list[int]]:
    """Full ranking of every query in float64: score desc, row asc."""
    s = (q.double() @ x.double().T).tolist()
    return [sorted(range(len(r)), key=lambda j: (-r[j], j)) for r in s]


# scores 0.9, 0.8, ..., 0.0 over 10 documents; document j has score 0.9 - 0.1 j
DESC = [round(0.9 - 0.1 * j, 10) for j in range(10)]


# ---------------------------------------------------------------------------------------------
# formula: window, filters, counts on constructed scores
# ---------------------------------------------------------------------------------------------


def test_window_is_inclusive_and_positives_are_not_replaced() -> None:
    q, x = scored([DESC])
    out = mine(q, x, [[3]], num_negatives=4, range_min=2, range_max=5)
    # window ranks 2..5 = rows 2, 3, 4, 5; row 3 is the positive: removed, not replaced by row 6
    assert out.ids.tolist() == [[2, 4, 5, -1]]
    assert out.ranks.tolist() == [[2, 4, 5, -1]]
    torch.testing.assert_close(out.scores[0, :3], torch.tensor([0.7, 0.5, 0.4]))
    assert math.isnan(out.scores[0, 3].item())
    assert out.removed["positive"] == 1
    assert out.short_queries == 1 and out.missing == 1
    assert out.positive_scores.tolist() == pytest.approx([0.6])


def test_positive_outside_window_is_not_counted() -> None:
    q, x = scored([DESC])
    out = mine(q, x, [[0]], num_negatives=2, range_min=3, range_max=4)
    assert out.ids.tolist() == [[3, 4]] and out.removed["positive"] == 0


def test_ties_ranked_by_row() -> None:
    q, x = scored([[0.5, 0.9, 0.5, 0.5, 0.1]])
    out = mine(q, x, [[1]], num_negatives=2, range_max=2)
    assert out.ids.tolist() == [[0, 2]] and out.ranks.tolist() == [[1, 2]]


def test_max_score() -> None:
    q, x = scored([DESC])
    out = mine(q, x, [[9]], num_negatives=3, range_max=9, max_score=0.65)
    assert out.ids.tolist() == [[3, 4, 5]]  # 0.9, 0.8, 0.7 > 0.65 removed; 0.6 kept
    assert out.removed["max_score"] == 3


def test_absolute_margin_uses_best_positive() -> None:
    q, x = scored([DESC])
    # positives rows 2 (0.7) and 6 (0.3): the reference is 0.7; keep s <= 0.7 - 0.15 = 0.55
    out = mine(q, x, [[2, 6]], num_negatives=3, range_max=9, margin=0.15)
    assert out.ids.tolist() == [[4, 5, 7]]
    assert out.positive_scores.tolist() == pytest.approx([0.7])
    assert out.removed == {**dict.fromkeys(FILTERS, 0), "positive": 2, "margin": 3}


def test_margin_zero_keeps_equal_scores() -> None:
    q, x = scored([[0.5, 0.5, 0.4]])
    out = mine(q, x, [[0]], num_negatives=2, range_max=2, margin=0.0)
    assert out.ids.tolist() == [[1, 2]]  # s_neg <= s_pos - 0 keeps the tie


def test_relative_margin_positive_and_negative_positive_score() -> None:
    q, x = scored([DESC])
    # reference 0.5 (row 4); keep s <= 0.5 * (1 - 0.2) = 0.4
    out = mine(q, x, [[4]], num_negatives=2, range_max=9, relative_margin=0.2)
    assert out.ids.tolist() == [[5, 6]] and out.removed["relative_margin"] == 4
    # negative positive score -0.5: keep s <= -0.5 - 0.5 * 0.2 = -0.6 (below the positive)
    q2, x2 = scored([[-0.3, -0.5, -0.55, -0.6, -0.7]])
    out2 = mine(q2, x2, [[1]], num_negatives=2, range_max=4, relative_margin=0.2)
    assert out2.ids.tolist() == [[3, 4]] and out2.removed["relative_margin"] == 2


def test_own_document_and_duplicates() -> None:
    q, x = scored([DESC])
    texts = ["a", "b", "c", "a", "e", "c", "g", "b", "i", "j"]
    dup = duplicate_groups(texts)
    assert dup.tolist() == [0, 1, 2, 0, 4, 2, 6, 1, 8, 9]
    # positive row 0 (text a: duplicate row 3); own document row 2 (text c: duplicate row 5)
    out = mine(q, x, [[0]], own_document=[2], duplicate_of=dup, num_negatives=4, range_max=9)
    assert out.ids.tolist() == [[1, 4, 6, 7]]
    assert out.removed["positive"] == 1
    assert out.removed["own_document"] == 1
    assert out.removed["duplicate"] == 2
    # -1 means "no own document"
    out2 = mine(q, x, [[0]], own_document=[-1], num_negatives=2, range_max=9)
    assert out2.ids.tolist() == [[1, 2]] and out2.removed["own_document"] == 0


def test_duplicate_groups_key() -> None:
    dup = duplicate_groups(["a  b", "a b", "c"], key=lambda t: " ".join(t.split()))
    assert dup.tolist() == [0, 0, 2]


def test_rescore_called_on_survivors_only() -> None:
    q, x = scored([DESC, DESC])
    calls: list[tuple[list[int], list[int]]] = []

    def rescore(qr: list[int], cr: list[int]) -> torch.Tensor:
        calls.append((qr, cr))
        # a "cross-encoder" that flags row 2 for query 0 and row 3 for query 1 as relevant
        flagged = {(0, 2), (1, 3)}
        return torch.tensor(
            [1.0 if (a, b) in flagged else 0.0 for a, b in zip(qr, cr, strict=True)]
        )

    out = mine(
        q, x, [[0], [0]], num_negatives=2, range_max=4, max_score=0.85,
        rescore=rescore, rescore_threshold=0.5,
    )  # fmt: skip
    assert out.ids.tolist() == [[1, 3], [1, 2]]
    assert out.removed["rescore"] == 2 and out.removed["max_score"] == 0  # row 0 is the positive
    assert calls == [([0, 0, 0, 0, 1, 1, 1, 1], [1, 2, 3, 4, 1, 2, 3, 4])]


def test_removed_counts_constructed() -> None:
    q, x = scored([DESC, DESC])
    dup = duplicate_groups(["p", "x", "p", "y", "z", "w", "v", "u", "t", "s"])
    out = mine(
        q, x, [[0], [4]], own_document=[1, -1], duplicate_of=dup, num_negatives=2,
        range_min=0, range_max=6, max_score=0.75, margin=0.05,
    )  # fmt: skip
    # query 0 (pos 0.9): window rows 0..6; positive row 0, own row 1, duplicate row 2 (text p),
    #   max_score removes nothing else (0.9/0.8/0.7 already gone: 0.7 <= 0.75 anyway), margin
    #   keeps s <= 0.85 -> rows 3, 4, 5, 6 stay
    # query 1 (pos 0.5): window rows 0..6; positive row 4; max_score removes rows 0, 1 (0.9,
    #   0.8); margin keeps s <= 0.45 -> removes rows 2, 3 (0.7, 0.6); rows 5, 6 stay
    assert out.ids.tolist() == [[3, 4], [5, 6]]
    assert out.removed == {
        "positive": 2,
        "own_document": 1,
        "duplicate": 1,
        "max_score": 2,
        "margin": 2,
        "relative_margin": 0,
        "rescore": 0,
    }
    assert "removed by margin: 2" in out.summary()


def test_positives_as_padded_tensor() -> None:
    q, x = scored([DESC, DESC])
    a = mine(q, x, [[0, 1], [2]], num_negatives=3, range_max=9)
    b = mine(q, x, torch.tensor([[0, 1], [2, -1]]), num_negatives=3, range_max=9)
    assert torch.equal(a.ids, b.ids) and a.removed == b.removed


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------


def test_top_picks_highest_in_rank_order() -> None:
    q, x = scored([DESC])
    out = mine(q, x, [[1]], num_negatives=3, range_max=9, sampling="top")
    assert out.ids.tolist() == [[0, 2, 3]]


def test_uniform_covers_window_and_stays_inside() -> None:
    q, x = scored([DESC] * 400)
    g = torch.Generator().manual_seed(0)
    out = mine(q, x, [[0]] * 400, num_negatives=2, range_min=2, range_max=6, sampling="uniform",
               generator=g)  # fmt: skip
    picked = out.ids.flatten()
    assert set(picked.tolist()) == {2, 3, 4, 5, 6}
    counts = torch.bincount(picked, minlength=10)[2:7].float()
    assert bool((counts > 0.7 * counts.mean()).all())  # roughly uniform (expected 160 each)
    assert bool((out.ranks[:, 0] < out.ranks[:, 1]).all())  # rank order within a query


def test_softmax_prefers_high_scores_at_low_temperature() -> None:
    q, x = scored([DESC] * 300)
    g = torch.Generator().manual_seed(1)
    cold = mine(q, x, [[9]] * 300, num_negatives=1, range_max=9, sampling="softmax",
                temperature=0.01, generator=g)  # fmt: skip
    assert (cold.ids == 0).float().mean() > 0.99
    hot = mine(q, x, [[9]] * 300, num_negatives=1, range_max=9, sampling="softmax",
               temperature=100.0, generator=g)  # fmt: skip
    assert len(set(hot.ids.flatten().tolist())) >= 8  # nearly uniform
    mid = mine(q, x, [[9]] * 300, num_negatives=1, range_max=9, sampling="softmax",
               temperature=0.1, generator=g)  # fmt: skip
    freq = torch.bincount(mid.ids.flatten(), minlength=10).float() / 300
    w = torch.softmax(torch.tensor(DESC[:9]) / 0.1, 0)  # expected probabilities, rows 0..8
    assert float((freq[:9] - w).abs().max()) < 0.08


@pytest.mark.parametrize("sampling", ["uniform", "softmax"])
def test_deterministic_under_generator(sampling: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    q = torch.randn(30, 8, generator=g)
    pos = [[i] for i in range(30)]

    def run(seed: int) -> MinedNegatives:
        return mine(q, x, pos, num_negatives=5, range_max=40, sampling=sampling,  # type: ignore[arg-type]
                    generator=torch.Generator().manual_seed(seed))  # fmt: skip

    state = torch.get_rng_state()
    a, b, c = run(7), run(7), run(8)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    assert torch.equal(a.ids, b.ids) and torch.equal(a.ranks, b.ranks)
    assert not torch.equal(a.ids, c.ids)


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_mined_negatives_are_never_positive_own_or_duplicate(data: st.DataObject) -> None:
    n_texts = data.draw(st.integers(3, 25), label="distinct texts")
    n_docs = data.draw(st.integers(n_texts, 40), label="corpus rows")
    n_q = data.draw(st.integers(1, 8), label="queries")
    seed = data.draw(st.integers(0, 10_000), label="seed")
    g = torch.Generator().manual_seed(seed)
    # corpus rows are texts; texts beyond the first n_texts rows are planted duplicates
    text_of = torch.cat([torch.arange(n_texts), torch.randint(0, n_texts, (n_docs - n_texts,),
                                                              generator=g)])  # fmt: skip
    text_of = text_of[torch.randperm(n_docs, generator=g)]
    texts = [f"text {int(t)}" for t in text_of]
    dup = duplicate_groups(texts)
    text_emb = torch.randn(n_texts, 4, generator=g, dtype=torch.float64)
    x = text_emb[text_of]  # equal texts, equal embeddings
    q = torch.randn(n_q, 4, generator=g, dtype=torch.float64)
    positives = [
        torch.randperm(n_docs, generator=g)[: int(torch.randint(1, 4, (1,), generator=g))].tolist()
        for _ in range(n_q)
    ]
    own = torch.randint(-1, n_docs, (n_q,), generator=g).tolist()
    range_max = data.draw(st.integers(0, n_docs - 1), label="range_max")
    range_min = data.draw(st.integers(0, range_max), label="range_min")
    num = data.draw(st.integers(1, range_max - range_min + 1), label="num_negatives")
    sampling = data.draw(st.sampled_from(["top", "uniform", "softmax"]), label="sampling")
    out = mine(q, x, positives, num_negatives=num, range_min=range_min, range_max=range_max,
               own_document=own, duplicate_of=dup, sampling=sampling,  # type: ignore[arg-type]
               generator=torch.Generator().manual_seed(seed))  # fmt: skip
    ranking = naive_ranking(q, x)
    for i in range(n_q):
        banned_groups = {int(dup[p]) for p in positives[i]}
        if own[i] >= 0:
            banned_groups.add(int(dup[own[i]]))
        got = [j for j in out.ids[i].tolist() if j >= 0]
        assert len(set(got)) == len(got)
        for j, r in zip(out.ids[i].tolist(), out.ranks[i].tolist(), strict=True):
            if j < 0:
                assert r == -1
                continue
            assert j not in positives[i] and j != own[i]
            assert int(dup[j]) not in banned_groups
            assert range_min <= r <= range_max and ranking[i][r] == j
        # "top" takes the first survivors of the window; padding only when too few survive
        window = ranking[i][range_min : range_max + 1]
        allowed = [j for j in window if int(dup[j]) not in banned_groups and j != own[i]]
        assert len(got) == min(num, len(allowed))
        if sampling == "top":
            assert got == allowed[:num]
    counted = sum(out.removed.values())
    assert counted <= n_q * (range_max - range_min + 1)


def test_faiss_index_gives_same_negatives() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(500, 16, generator=g)
    q = torch.randn(20, 16, generator=g)
    pos = [[i, i + 1] for i in range(20)]
    a = mine(q, x, pos, num_negatives=5, range_max=30, margin=0.1)
    b = mine(q, x, pos, num_negatives=5, range_max=30, margin=0.1, index=FaissIndex())
    assert torch.equal(a.ids, b.ids) and a.removed == b.removed
    # a pre-filled index with exactly N rows is used as it is
    pre = ExactIndex()
    pre.add(x)
    c = mine(q, x, pos, num_negatives=5, range_max=30, margin=0.1, index=pre)
    assert torch.equal(a.ids, c.ids) and pre.ntotal == 500


def test_half_precision_and_progress() -> None:
    q, x = scored([DESC])
    out = mine(q.float().half(), x.float().half(), [[0]], num_negatives=2, range_max=4,
               progress=True)  # fmt: skip
    assert out.ids.tolist() == [[1, 2]] and out.scores.dtype == torch.float32


def test_progress_callback_counts_every_query(monkeypatch: pytest.MonkeyPatch) -> None:
    mine_mod = importlib.import_module("posneg.mining.mine")  # the attribute is the function
    monkeypatch.setattr(mine_mod, "_CHUNK_ELEMENTS", 4 * 11)  # chunks of 4 queries (k = 11)
    g = torch.Generator().manual_seed(0)
    q, x = torch.randn(10, 8, generator=g), torch.randn(40, 8, generator=g)
    pos = [[i] for i in range(10)]
    seen: list[tuple[str, int, int]] = []
    out = mine(q, x, pos, num_negatives=3, range_max=10,
               progress=lambda d, n, t: seen.append((d, n, t)))  # fmt: skip
    assert seen == [("mining", n, 10) for n in (0, 4, 8, 10)]
    assert torch.equal(out.ids, mine(q, x, pos, num_negatives=3, range_max=10).ids)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors() -> None:
    q, x = scored([DESC])
    ok: dict[str, object] = {"num_negatives": 2, "range_max": 5}

    def bad(match: str, exc: type[Exception] = ValueError, **kw: object) -> None:
        args = {"query_emb": q, "corpus_emb": x, "positives": [[0]], **ok, **kw}
        with pytest.raises(exc, match=match):
            mine(args.pop("query_emb"), args.pop("corpus_emb"), args.pop("positives"), **args)  # type: ignore[arg-type]

    bad("mine: corpus_emb is empty", corpus_emb=torch.empty(0, 10, dtype=torch.float64))
    bad(r"mine: corpus_emb must have dimension D=10", corpus_emb=torch.eye(4, dtype=torch.float64))
    bad("mine: corpus_emb has dtype torch.float32", TypeError, corpus_emb=x.float())
    bad("mine: query_emb must be a floating-point", TypeError, query_emb=q.long())
    bad("mine: query_emb contains NaN", query_emb=q * math.nan)
    bad(r"range_max must be < the corpus size N=10", range_max=10)
    bad("range_min must be <= range_max", range_min=6, range_max=5)
    bad("range_min must be >= 0", range_min=-1)
    bad(r"num_negatives must be <= the window size .* = 2", range_min=4, range_max=5,
        num_negatives=3)  # fmt: skip
    bad("num_negatives must be >= 1", num_negatives=0)
    bad(r"positives\[0\] holds 10, outside the corpus rows", positives=[[10]])
    bad(r"positives\[0\] holds -1, outside", positives=[[-1]])
    bad("every query needs at least one positive; query 0 has none", positives=[[]])
    bad("every query needs at least one positive", positives=torch.tensor([[-1, -1]]))
    bad(r"positives must hold one list per query \(1\); got 2", positives=[[0], [1]])
    bad(r"positives\[0\] must hold int", TypeError, positives=[[0.5]])
    bad("positives must be a sequence", TypeError, positives=3)
    bad("margin must be >= 0", margin=-0.1)
    bad("relative_margin must be >= 0", relative_margin=-0.5)
    bad("max_score must be finite", max_score=math.inf)
    bad("sampling must be one of 'top', 'uniform', 'softmax'", sampling="random")
    bad("temperature must be > 0", temperature=0.0)
    bad("rescore and rescore_threshold go together", rescore=lambda a, b: torch.zeros(len(a)))
    bad("rescore and rescore_threshold go together", rescore_threshold=0.5)
    bad(r"rescore must return a tensor of shape \(5,\)", rescore=lambda a, b: torch.zeros(1),
        rescore_threshold=0.5)  # fmt: skip
    bad(r"own_document\[0\] is 10, outside", own_document=[10])
    bad("own_document must hold one corpus row per query", own_document=[1, 2])
    bad(r"duplicate_of must have shape \(10,\)", duplicate_of=torch.arange(3))
    bad(r"duplicate_of must hold corpus rows in \[0, 10\)", duplicate_of=torch.arange(10) + 1)
    bad("index holds 3 rows but corpus_emb has 10", index=_filled(3))
    bad("index must implement the Index protocol", TypeError, index=object())
    bad("generator must be a torch.Generator", TypeError, generator=0)
    bad("progress must be a bool", TypeError, progress=1)
    with pytest.raises(TypeError, match="duplicate_groups: texts"):
        duplicate_groups("abc")
    with pytest.raises(TypeError, match=r"duplicate_groups: texts\[1\] must be a str"):
        duplicate_groups(["a", 1])  # type: ignore[list-item]


def _filled(n: int) -> ExactIndex:
    index = ExactIndex()
    index.add(torch.eye(10, dtype=torch.float64)[:n])
    return index
