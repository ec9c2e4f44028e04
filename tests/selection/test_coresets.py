"""Tests of posneg.selection.coresets against tianyu139/data-efficient-augmentation at 84d7eef.

The official files: ``utils/subset.py`` (``grad_predictions``, ``get_coreset``) and
``utils/craig.py`` (``get_orders_and_weights``, ``faciliy_location_order``; submodlib's dense
euclidean ``FacilityLocationFunction``, kernel ``exp(-d / dim)``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from posneg.selection.coresets import (
    CoresetSelector,
    class_budgets,
    cluster_weights,
    facility_location_similarity,
    gradient_proxy,
    greedy_facility_location,
    random_subset,
    select_coreset,
)


def _naive_sim(g: np.ndarray) -> np.ndarray:
    n, d = g.shape
    s = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            s[i, j] = math.exp(-math.sqrt(float(((g[i] - g[j]) ** 2).sum())) / d)
    return s


def _fl(s: np.ndarray, subset: list[int]) -> float:
    return float(sum(max(s[i, j] for j in subset) for i in range(s.shape[0]))) if subset else 0.0


def _naive_greedy(s: np.ndarray, k: int) -> list[int]:
    picks: list[int] = []
    for _ in range(k):
        best, arg = -1.0, -1
        for j in range(s.shape[0]):
            if j in picks:
                continue
            gain = _fl(s, [*picks, j]) - _fl(s, picks)
            if gain > best + 1e-12:
                best, arg = gain, j
        picks.append(arg)
    return picks


def test_similarity_is_exp_minus_distance_over_dim() -> None:
    g = torch.randn(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    s = facility_location_similarity(g)
    np.testing.assert_allclose(s.numpy(), _naive_sim(g.numpy()), rtol=1e-10, atol=1e-12)


def test_greedy_matches_naive_float64_greedy() -> None:
    g = torch.randn(25, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    s = facility_location_similarity(g)
    for k in (1, 4, 10):
        assert greedy_facility_location(s, k).tolist() == _naive_greedy(s.numpy(), k)


def test_greedy_reaches_one_minus_one_over_e_of_brute_force() -> None:
    g = torch.randn(10, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 5
    s = facility_location_similarity(g).numpy()
    for k in (2, 3):
        best = max(_fl(s, list(c)) for c in itertools.combinations(range(10), k))
        got = _fl(s, greedy_facility_location(torch.from_numpy(s), k).tolist())
        assert got >= (1 - 1 / math.e) * best - 1e-12


def test_gradient_proxy_and_use_linear_layout() -> None:
    gen = torch.Generator().manual_seed(4)
    z, h = torch.randn(5, 3, generator=gen), torch.randn(5, 2, generator=gen)
    y = torch.tensor([0, 1, 2, 1, 0])
    g0 = z.softmax(1) - torch.eye(3)[y]
    torch.testing.assert_close(gradient_proxy(logits=z, labels=y), g0)
    # grad_predictions: repeat_interleave(g0, E, 1) * lasts.repeat(1, C)
    ref = torch.repeat_interleave(g0, 2, dim=1) * h.repeat(1, 3)
    torch.testing.assert_close(gradient_proxy(logits=z, labels=y, features=h), ref)


def test_class_budgets_transcribe_equal_num() -> None:
    # 3 classes, sizes 10, 2, 10, B = 12: ceil(12/3) = 4; class 1 is a minority (2 < 4),
    # extra = 2, the others get ceil(2 / 1) = 2 more (the code divides by #minority).
    y = torch.tensor([0] * 10 + [1] * 2 + [2] * 10)
    assert class_budgets(y, 12, 3) == [6, 4, 6]
    assert class_budgets(torch.tensor([0] * 5 + [1] * 5), 4, 2) == [2, 2]


def test_per_class_counts_and_weights_normalised() -> None:
    gen = torch.Generator().manual_seed(5)
    g = torch.randn(60, 4, generator=gen)
    y = torch.arange(60) % 3
    cs = select_coreset(gradients=g, labels=y, num_classes=3, fraction=0.3)
    counts = torch.bincount(y[cs.indices], minlength=3).tolist()
    assert counts == [math.ceil(18 / 3)] * 3
    assert float(cs.weights.sum()) == pytest.approx(len(cs.indices), rel=1e-6)
    raw = select_coreset(
        gradients=g, labels=y, num_classes=3, fraction=0.3, normalize_weights=False
    )
    assert float(raw.weights.sum()) == pytest.approx(60.0)  # every point in exactly one cluster


def test_cluster_weights_match_naive_assignment() -> None:
    g = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    s = facility_location_similarity(g)
    picks = greedy_facility_location(s, 5)
    sizes = np.zeros(5)
    sn = s.numpy()
    for i in range(20):
        sizes[int(np.argmax(sn[i, picks.numpy()]))] += 1
    sizes[sizes == 0] = 1
    np.testing.assert_allclose(cluster_weights(s, picks).numpy(), sizes)


def test_empty_cluster_gets_weight_one() -> None:
    # Duplicates: the second copy of a point joins the first pick (argmax takes the first).
    g = torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]], dtype=torch.float64)
    s = facility_location_similarity(g)
    w = cluster_weights(s, torch.tensor([0, 1, 2]))
    assert w.tolist() == [2.0, 1.0, 1.0]


def test_full_fraction_selects_everything_with_weight_one() -> None:
    g = torch.randn(30, 3, generator=torch.Generator().manual_seed(7))
    y = torch.arange(30) % 3
    cs = select_coreset(gradients=g, labels=y, num_classes=3, fraction=1.0)
    assert sorted(cs.indices.tolist()) == list(range(30))
    torch.testing.assert_close(cs.weights, torch.ones(30))


def test_budget_above_class_size_is_capped_deliberately() -> None:
    # The code asks submodlib for ceil(B/C) = 5 points from a 2-point class (it raises, and
    # get_coreset falls back to a random subset); here the class is taken whole.
    y = torch.tensor([0] * 2 + [1] * 10)
    g = torch.randn(12, 2, generator=torch.Generator().manual_seed(8))
    cs = select_coreset(gradients=g, labels=y, num_classes=2, budget=10)
    # budgets: ceil(10/2) = 5 each; class 0 short by 3, so class 1 gets 5 + 3 = 8.
    assert torch.bincount(y[cs.indices], minlength=2).tolist() == [2, 8]


def test_coreset_beats_random_on_facility_location() -> None:
    gen = torch.Generator().manual_seed(9)
    g = torch.cat([torch.randn(40, 2, generator=gen) * 0.1 + c for c in (0.0, 3.0, 6.0)])
    y = torch.zeros(120, dtype=torch.int64)
    s = facility_location_similarity(g.double()).numpy()
    cs = select_coreset(gradients=g, labels=y, num_classes=1, budget=3)
    rnd = random_subset(120, 3, generator=torch.Generator().manual_seed(0))
    assert _fl(s, cs.indices.tolist()) >= _fl(s, rnd.indices.tolist())
    assert sorted(int(i) // 40 for i in cs.indices) == [0, 1, 2]  # one medoid per blob


def test_random_subset_uses_generator() -> None:
    a = random_subset(50, 10, generator=torch.Generator().manual_seed(1))
    b = random_subset(50, 10, generator=torch.Generator().manual_seed(1))
    assert a.indices.tolist() == b.indices.tolist()
    assert len(set(a.indices.tolist())) == 10
    torch.testing.assert_close(a.weights, torch.ones(10))


def test_selector_module() -> None:
    sel = CoresetSelector(num_classes=2, fraction=0.5)
    assert "fraction=0.5" in repr(sel)
    z = torch.randn(10, 2, generator=torch.Generator().manual_seed(2))
    cs = sel(z, torch.arange(10) % 2, torch.randn(10, 3))
    assert len(cs.indices) == 6  # B = 5, ceil(5 / 2) = 3 per class


def test_errors_name_function_and_argument() -> None:
    with pytest.raises(ValueError, match="select_coreset: give exactly one"):
        select_coreset(
            gradients=torch.randn(4, 2), labels=torch.zeros(4, dtype=torch.int64), num_classes=1
        )
    with pytest.raises(ValueError, match="select_coreset: labels must lie"):
        select_coreset(
            gradients=torch.randn(4, 2), labels=torch.full((4,), 3), num_classes=2, fraction=0.5
        )
    with pytest.raises(ValueError, match="CoresetSelector: fraction"):
        CoresetSelector(num_classes=2, fraction=0.0)
    with pytest.raises(ValueError, match="greedy_facility_location: budget"):
        greedy_facility_location(torch.eye(3), 4)
    with pytest.raises(TypeError, match="gradient_proxy: labels"):
        gradient_proxy(logits=torch.randn(3, 2), labels=torch.zeros(3))
