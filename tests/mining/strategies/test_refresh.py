"""Random negatives and the hard-negative pool (static / ANCE-style / false-negative-aware)."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.mining.strategies import HardNegativePool, random_negatives

# --- random_negatives -------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    q=st.integers(1, 6),
    n=st.integers(2, 30),
    k=st.integers(1, 8),
    replacement=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_never_a_positive_and_distinct(
    q: int, n: int, k: int, replacement: bool, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    positives = [
        torch.randperm(n, generator=g)[: int(torch.randint(1, n, (1,), generator=g))].tolist()
        for _ in range(q)
    ]
    avail = min(n - len(p) for p in positives)
    if not replacement and k > avail:
        with pytest.raises(ValueError, match="non-positive documents"):
            random_negatives(q, n, k, positives, generator=g)
        return
    neg = random_negatives(q, n, k, positives, replacement=replacement, generator=g)
    assert neg.shape == (q, k) and neg.dtype == torch.int64
    for row, pos in zip(neg.tolist(), positives, strict=True):
        assert all(0 <= d < n for d in row)
        assert not set(row) & set(pos)
        if not replacement:
            assert len(set(row)) == k


def test_uniform_over_non_positives() -> None:
    """Each non-positive document is drawn about equally often (chi-square style bound)."""
    n, draws = 12, 6000
    positives = [[0, 5, 11]] * draws
    neg = random_negatives(draws, n, 1, positives, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(neg.reshape(-1), minlength=n).double()
    assert counts[[0, 5, 11]].sum() == 0
    allowed = counts[[i for i in range(n) if i not in (0, 5, 11)]]
    expected = draws / 9
    chi2 = float(((allowed - expected) ** 2 / expected).sum())
    assert chi2 < 35.0  # 8 degrees of freedom: p < 1e-4 beyond this


def test_without_replacement_subset_is_uniform() -> None:
    """k = available - 1 distinct draws: each document is left out about equally often."""
    n, reps = 6, 3000
    neg = random_negatives(
        reps, n, 4, [[2]] * reps, generator=torch.Generator().manual_seed(1)
    )  # 5 available, 4 drawn: one left out
    left_out = torch.tensor([({0, 1, 3, 4, 5} - set(r)).pop() for r in neg.tolist()])
    counts = torch.bincount(left_out, minlength=n).double()[[0, 1, 3, 4, 5]]
    assert float(((counts - reps / 5) ** 2 / (reps / 5)).sum()) < 25.0
    first = torch.bincount(neg[:, 0], minlength=n).double()[[0, 1, 3, 4, 5]]
    assert float(((first - reps / 5) ** 2 / (reps / 5)).sum()) < 25.0  # order is random too


def test_deterministic_and_global_rng_untouched() -> None:
    before = torch.get_rng_state()
    a = random_negatives(5, 100, 7, [[1, 2]] * 5, generator=torch.Generator().manual_seed(3))
    b = random_negatives(5, 100, 7, [[1, 2]] * 5, generator=torch.Generator().manual_seed(3))
    c = random_negatives(5, 100, 7, [[1, 2]] * 5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_tensor_positives_and_empty() -> None:
    pos = torch.tensor([[3, -1], [0, 1]])
    neg = random_negatives(2, 4, 2, pos, generator=torch.Generator().manual_seed(0))
    assert sorted(neg[1].tolist()) == [2, 3] and 3 not in neg[0].tolist()
    assert random_negatives(0, 5, 3, []).shape == (0, 3)


def test_random_negatives_errors() -> None:
    fn = "random_negatives"
    with pytest.raises(ValueError, match=f"{fn}: num_docs must be >= 1"):
        random_negatives(1, 0, 1, [[0]])
    with pytest.raises(ValueError, match="k must be >= 1"):
        random_negatives(1, 5, 0, [[0]])
    with pytest.raises(
        ValueError, match=r"positives\[0\] holds 7, outside the corpus rows \[0, 5\)"
    ):
        random_negatives(1, 5, 1, [[7]])
    with pytest.raises(ValueError, match="every query needs at least one positive; query 0"):
        random_negatives(1, 5, 1, [[]])
    with pytest.raises(ValueError, match="one list per query"):
        random_negatives(2, 5, 1, [[0]])
    with pytest.raises(TypeError, match="positives must be a sequence of id sequences"):
        random_negatives(1, 5, 1, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"query 0 has 1 non-positive documents"):
        random_negatives(1, 3, 2, [[0, 1]])
    with pytest.raises(TypeError, match="replacement must be a bool"):
        random_negatives(1, 5, 1, [[0]], replacement=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="positives must be an integer tensor"):
        random_negatives(1, 5, 1, torch.zeros(1, 1))


# --- HardNegativePool with a stand-in miner (the agreed posneg.mining.mine API) ----------------


@dataclass(frozen=True)
class _Mined:
    ids: torch.Tensor
    scores: torch.Tensor
    ranks: torch.Tensor
    positive_scores: torch.Tensor
    removed: dict[str, int] = field(default_factory=dict)


@pytest.fixture
def fake_mine(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace posneg.mining.mine by a stand-in: top-scored non-positive rows, -1 padded past
    ``range_max`` candidates; records every call's arguments."""
    calls: list[dict[str, Any]] = []

    def mine(query_emb: torch.Tensor, corpus_emb: torch.Tensor, positives: Any, **kw: Any) -> Any:
        calls.append({"positives": positives, **kw})
        s = query_emb @ corpus_emb.T
        for qi, pos in enumerate(positives):
            s[qi, pos] = float("-inf")
        top = torch.topk(s, kw["num_negatives"], dim=1)
        ids = torch.where(torch.isfinite(top.values), top.indices, -1)
        ids[:, kw["range_max"] :] = -1
        return _Mined(ids, top.values, torch.zeros_like(ids), s.max(dim=1).values)

    module = types.ModuleType("posneg.mining.mine")
    module.mine = mine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "posneg.mining.mine", module)
    return calls


def _emb(q: int = 6, n: int = 20, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(q, d, generator=g), torch.randn(n, d, generator=g)


def test_pool_refresh_passes_the_stored_miner_settings(fake_mine: list[dict[str, Any]]) -> None:
    positives = [[i] for i in range(6)]
    dup = torch.arange(20)
    pool = HardNegativePool(
        positives,
        pool_size=4,
        range_min=1,
        range_max=50,
        margin=0.1,
        relative_margin=0.05,
        max_score=0.9,
        duplicate_of=dup,
        sampling="softmax",
        temperature=0.5,
        refresh_every=3,
    )
    text = repr(pool)
    for part in ("pool_size=4", "refresh_every=3", "margin=0.1", "relative_margin=0.05"):
        assert part in text
    q, c = _emb()
    g = torch.Generator().manual_seed(0)
    mined = pool.refresh(q, c, generator=g)
    call = fake_mine[0]
    assert call["positives"] == positives
    assert call["num_negatives"] == 4 and call["range_min"] == 1 and call["range_max"] == 50
    assert call["margin"] == 0.1 and call["relative_margin"] == 0.05 and call["max_score"] == 0.9
    assert call["duplicate_of"] is dup and call["sampling"] == "softmax"
    assert call["temperature"] == 0.5 and call["generator"] is g
    assert pool.ids is not None and torch.equal(pool.ids, mined.ids) and pool.num_refreshes == 1
    assert pool.last is mined


def test_pool_schedule(fake_mine: list[dict[str, Any]]) -> None:
    static = HardNegativePool([[0]] * 6, pool_size=2)
    ance = HardNegativePool([[0]] * 6, pool_size=2, refresh_every=5)
    assert static.due(7) and ance.due(7)  # nothing mined yet
    q, c = _emb()
    static.refresh(q, c)
    ance.refresh(q, c)
    assert [s for s in range(16) if static.due(s)] == []
    assert [s for s in range(16) if ance.due(s)] == [0, 5, 10, 15]


def test_pool_sample_draws_from_each_pool(fake_mine: list[dict[str, Any]]) -> None:
    pool = HardNegativePool([[i] for i in range(6)], pool_size=5)
    q, c = _emb()
    pool.refresh(q, c)
    assert pool.ids is not None
    rows = torch.tensor([4, 0, 4])
    out = pool.sample(rows, 3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 3)
    for r, drawn in zip(rows.tolist(), out.tolist(), strict=True):
        assert set(drawn) <= set(pool.ids[r].tolist()) and len(set(drawn)) == 3
    a = pool.sample(rows, 3, generator=torch.Generator().manual_seed(1))
    b = pool.sample(rows, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    # over many draws every pool member is served
    many = pool.sample(
        torch.zeros(400, dtype=torch.int64), 1, generator=torch.Generator().manual_seed(2)
    )
    assert set(many.reshape(-1).tolist()) == set(pool.ids[0].tolist())


def test_pool_small_and_empty_pools(fake_mine: list[dict[str, Any]]) -> None:
    pool = HardNegativePool([[i] for i in range(6)], pool_size=4, range_max=2)
    q, c = _emb()
    pool.refresh(q, c)  # the stand-in keeps 2 of 4: the rest is -1
    out = pool.sample([1], 5, generator=torch.Generator().manual_seed(0))
    assert pool.ids is not None
    valid = set(pool.ids[1, :2].tolist())
    assert set(out[0].tolist()) == valid  # cycled
    pool.ids[2] = -1  # a query whose every candidate was filtered
    out = pool.sample([2], 6, generator=torch.Generator().manual_seed(0))
    assert 2 not in out[0].tolist() and bool(((out >= 0) & (out < 20)).all())


def test_pool_errors(fake_mine: list[dict[str, Any]]) -> None:
    pool = HardNegativePool([[0], [1]], pool_size=2)
    with pytest.raises(RuntimeError, match=r"call refresh\(\.\.\.\) first"):
        pool.sample([0], 1)
    q, c = _emb(q=2)
    with pytest.raises(ValueError, match=r"query_emb must have one row per query \(2\)"):
        pool.refresh(q[:1], c)
    pool.refresh(q, c)
    with pytest.raises(ValueError, match=r"query_rows must lie in \[0, 2\)"):
        pool.sample([2], 1)
    with pytest.raises(ValueError, match="n must be >= 1"):
        pool.sample([0], 0)
    with pytest.raises(ValueError, match="HardNegativePool: pool_size must be >= 1"):
        HardNegativePool([[0]], pool_size=0)
    with pytest.raises(ValueError, match="range_max must be >= 5"):
        HardNegativePool([[0]], range_min=5, range_max=2)
    with pytest.raises(ValueError, match="sampling must be one of"):
        HardNegativePool([[0]], sampling="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refresh_every must be >= 1"):
        HardNegativePool([[0]], refresh_every=0)
    with pytest.raises(ValueError, match="every query needs at least one positive"):
        HardNegativePool([[0], []])
    with pytest.raises(TypeError, match="positives must be a sequence of id sequences"):
        HardNegativePool(torch.zeros(2, 1))  # type: ignore[arg-type]


# --- with the real miner, once it exists --------------------------------------------------------


def test_pool_with_real_miner_never_serves_a_positive() -> None:
    mine_mod = pytest.importorskip("posneg.mining.mine")
    assert hasattr(mine_mod, "mine")
    g = torch.Generator().manual_seed(0)
    corpus = torch.nn.functional.normalize(torch.randn(60, 8, generator=g), dim=1)
    positives = [[i, (i + 30) % 60] for i in range(10)]
    queries = corpus[:10] + 0.05 * torch.randn(10, 8, generator=g)
    pool = HardNegativePool(positives, pool_size=6, range_max=30, refresh_every=2)
    pool.refresh(queries, corpus)
    assert pool.ids is not None and pool.ids.shape == (10, 6)
    served = pool.sample(torch.arange(10), 4, generator=torch.Generator().manual_seed(1))
    for row, pos in zip(served.tolist(), positives, strict=True):
        assert not set(row) & set(pos)
    # the false-negative-aware variant removes candidates scored near the positive
    strict = HardNegativePool(positives, pool_size=6, range_max=30, margin=0.5)
    mined = strict.refresh(queries, corpus)
    ok = mined.ids >= 0
    assert bool(
        (mined.scores[ok] <= (mined.positive_scores[:, None] - 0.5).expand_as(ok)[ok] + 1e-6).all()
    )
