"""CoDSA's synthetic-budget allocation (posneg.synthetic.codsa).

No official code exists (PAPERS.md card: string and repository searches found none), so the
reference here is the paper's description: the targeted rule fills the sparse regions first
(checked against a naive one-at-a-time loop), the non-adaptive baselines spend the same total.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.synthetic.codsa import CoDSA, codsa_allocate, codsa_synthesize


def _naive_balance(counts, budget):
    """Hand the samples out one by one to the region with the fewest, ties to the lowest index."""
    alloc = [0] * len(counts)
    for _ in range(budget):
        totals = [c + a for c, a in zip(counts, alloc, strict=True)]
        alloc[totals.index(min(totals))] += 1
    return alloc


def _naive_proportional(weights, budget):
    """Largest remainder (Hamilton) with ties to the lowest index, in exact fractions."""
    from fractions import Fraction

    total = sum(Fraction(w) for w in weights)
    shares = [Fraction(w) / total * budget for w in weights]
    base = [int(s) for s in shares]
    rest = sorted(range(len(weights)), key=lambda i: (-(shares[i] - base[i]), i))
    for i in rest[: budget - sum(base)]:
        base[i] += 1
    return base


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=6),
    budget=st.integers(0, 120),
)
def test_balance_equals_the_greedy_loop(counts, budget):
    assert codsa_allocate(counts, budget).tolist() == _naive_balance(counts, budget)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    budget=st.integers(0, 120),
)
def test_proportional_and_uniform_equal_largest_remainder(counts, budget):
    got = codsa_allocate(counts, budget, rule="proportional").tolist()
    assert got == _naive_proportional(counts, budget)
    assert codsa_allocate(counts, budget, rule="uniform").tolist() == _naive_proportional(
        [1] * len(counts), budget
    )
    w = [c % 3 + 0.5 for c in counts]
    assert codsa_allocate(counts, budget, rule="weighted", weights=w).tolist() == (
        _naive_proportional(w, budget)
    )


@pytest.mark.parametrize("rule", ["balance", "uniform", "proportional", "weighted"])
def test_allocation_sums_to_the_budget_and_zero_is_identity(rule):
    w = [1.0, 2.0, 0.0] if rule == "weighted" else None
    for m in (0, 1, 7, 100):
        a = codsa_allocate([10, 3, 5], m, rule=rule, weights=w)
        assert a.dtype == torch.int64 and int(a.sum()) == m and bool((a >= 0).all())
    assert codsa_allocate([10, 3, 5], 0, rule=rule, weights=w).tolist() == [0, 0, 0]


def test_post_augmentation_counts_follow_the_rule():
    counts = [50, 5, 20]
    a = codsa_allocate(counts, 91)  # 75 balance everything at 50, 16 left over
    after = [c + int(x) for c, x in zip(counts, a, strict=True)]
    assert after == [56, 55, 55]
    a = codsa_allocate(counts, 10)  # only the sparsest region rises
    assert a.tolist() == [0, 10, 0]
    assert codsa_allocate(counts, 10, rule="weighted", weights=[0, 0, 1]).tolist() == [0, 0, 10]


def test_synthesize_calls_the_generator_with_the_allocated_conditions():
    calls = []

    def sample(cond, g):
        calls.append(cond.clone())
        return torch.stack([cond.float(), torch.rand(len(cond), generator=g)], dim=1)

    regions = torch.tensor([0] * 8 + [1] * 2 + [2] * 4)
    out = codsa_synthesize(regions, sample, budget=8, generator=torch.Generator().manual_seed(0))
    assert out.allocation.tolist() == [0, 5, 3]
    assert out.regions.tolist() == [1] * 5 + [2] * 3
    assert torch.equal(out.samples[:, 0], out.regions.float())  # conditional fidelity
    assert len(calls) == 1
    none = codsa_synthesize(regions, sample, budget=0)
    assert none.samples.numel() == 0 and none.allocation.tolist() == [0, 0, 0] and len(calls) == 1
    empty_region = codsa_synthesize(regions, sample, budget=2, num_regions=4)
    assert empty_region.allocation.tolist() == [0, 0, 0, 2]


def test_module_uses_the_ratio_and_is_deterministic():
    regions = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])

    def sample(cond, g):
        return torch.randn(len(cond), 3, generator=g)

    codsa = CoDSA(ratio=0.5)
    a = codsa(regions, sample, generator=torch.Generator().manual_seed(1))
    b = codsa(regions, sample, generator=torch.Generator().manual_seed(1))
    assert a.allocation.tolist() == [0, 4] and torch.equal(a.samples, b.samples)
    assert "ratio=0.5" in repr(codsa) and "rule='balance'" in repr(codsa)
    uniform = CoDSA(ratio=0.5, rule="uniform")(regions, sample)
    assert uniform.allocation.tolist() == [2, 2]


def test_errors():
    with pytest.raises(ValueError, match="codsa_allocate: region_counts must not be empty"):
        codsa_allocate([], 3)
    with pytest.raises(ValueError, match="codsa_allocate: region_counts must be >= 0"):
        codsa_allocate([1, -1], 3)
    with pytest.raises(TypeError, match="codsa_allocate: region_counts must be ints"):
        codsa_allocate([1.5, 2], 3)
    with pytest.raises(ValueError, match="codsa_allocate: budget must be >= 0"):
        codsa_allocate([1, 2], -1)
    with pytest.raises(ValueError, match="codsa_allocate: rule must be one of"):
        codsa_allocate([1, 2], 3, rule="greedy")
    with pytest.raises(ValueError, match="codsa_allocate: weights must be given exactly when"):
        codsa_allocate([1, 2], 3, rule="weighted")
    with pytest.raises(ValueError, match=r"codsa_allocate: weights must have shape \(2,\)"):
        codsa_allocate([1, 2], 3, rule="weighted", weights=[1.0])
    with pytest.raises(ValueError, match="codsa_allocate: weights must be finite, >= 0 and not"):
        codsa_allocate([1, 2], 3, rule="weighted", weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="codsa_allocate: rule='proportional' needs some"):
        codsa_allocate([0, 0], 3, rule="proportional")
    with pytest.raises(TypeError, match="codsa_synthesize: regions must be an integer tensor"):
        codsa_synthesize(torch.zeros(3), lambda c, g: c, budget=1)
    with pytest.raises(TypeError, match="codsa_synthesize: sample must be callable"):
        codsa_synthesize(torch.zeros(3, dtype=torch.int64), None, budget=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"codsa_synthesize: region ids must be in \[0, 2\)"):
        codsa_synthesize(torch.tensor([0, 3]), lambda c, g: c, budget=1, num_regions=2)
    with pytest.raises(ValueError, match="codsa_synthesize: sample must return 2 samples"):
        codsa_synthesize(torch.tensor([0, 1]), lambda c, g: c[:1], budget=2)
    with pytest.raises(ValueError, match="CoDSA: ratio must be >= 0"):
        CoDSA(ratio=-1.0)
    with pytest.raises(ValueError, match="CoDSA: weights must be given exactly when"):
        CoDSA(rule="weighted")
