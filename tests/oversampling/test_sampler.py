"""BalancedBatchSampler: class composition, convergence to the target, determinism, errors."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from posneg.oversampling import BalancedBatchSampler

LABELS = torch.tensor([0] * 500 + [1] * 60 + [2] * 15)


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _class_counts(sampler: BalancedBatchSampler, labels: torch.Tensor) -> np.ndarray:
    batches = torch.tensor(list(sampler))
    return np.stack([np.bincount(labels[b].numpy(), minlength=3) for b in batches])


# 1. formula: per-batch counts are floor or ceil of batch_size * p, summing to batch_size ------


@pytest.mark.parametrize("target", ["balanced", {0: 0.5, 1: 0.3, 2: 0.2}, {0: 1, 2: 3}])
def test_batch_counts_are_floor_or_ceil_of_expected(target: object) -> None:
    sampler = BalancedBatchSampler(LABELS, 16, target=target, num_batches=200, generator=_g())  # type: ignore[arg-type]
    counts = _class_counts(sampler, LABELS)
    expected = 16 * sampler.probabilities_
    assert (counts.sum(1) == 16).all()
    assert (counts >= np.floor(expected - 1e-9)).all() and (
        counts <= np.ceil(expected + 1e-9)
    ).all()


def test_balanced_divisible_batches_are_exact() -> None:
    counts = _class_counts(BalancedBatchSampler(LABELS, 12, num_batches=50, generator=_g()), LABELS)
    assert (counts == 4).all()


# 2. reference: empirical frequencies converge to the target (law of large numbers) ------------


@pytest.mark.parametrize("target", ["balanced", {0: 0.6, 1: 0.3, 2: 0.1}])
@pytest.mark.parametrize("replacement", [False, True])
def test_empirical_frequencies_converge(target: object, replacement: bool) -> None:
    sampler = BalancedBatchSampler(
        LABELS,
        7,
        target=target,
        num_batches=3000,
        replacement=replacement,
        generator=_g(1),  # type: ignore[arg-type]
    )
    freq = _class_counts(sampler, LABELS).sum(0) / (7 * 3000)
    # systematic sampling keeps each batch within one of its expectation: error << 1/sqrt(n)
    np.testing.assert_allclose(freq, sampler.probabilities_, atol=0.01)


# 3. properties ---------------------------------------------------------------------------------


def test_minority_samples_are_cycled_evenly_without_replacement() -> None:
    sampler = BalancedBatchSampler(LABELS, 15, num_batches=60, generator=_g(2))
    seen = Counter(i for b in sampler for i in b if LABELS[i] == 2)
    # 300 draws of class 2 over 15 samples: whole permutations, 20 each
    assert set(seen) == set(range(560, 575)) and set(seen.values()) == {20}


def test_len_default_and_num_batches() -> None:
    assert len(BalancedBatchSampler(LABELS, 32)) == -(-575 // 32)
    sampler = BalancedBatchSampler(LABELS, 32, num_batches=7, generator=_g())
    assert len(sampler) == 7 and len(list(sampler)) == 7
    assert all(isinstance(i, int) for i in next(iter(sampler)))


def test_determinism_epochs_and_rng() -> None:
    a = BalancedBatchSampler(LABELS, 8, num_batches=5, generator=_g(3))
    b = BalancedBatchSampler(LABELS, 8, num_batches=5, generator=_g(3))
    before = torch.get_rng_state()
    first_a, first_b = list(a), list(b)
    second_a = list(a)
    assert torch.equal(before, torch.get_rng_state())
    assert first_a == first_b and first_a != second_a  # a new epoch draws anew
    torch.manual_seed(0)
    c = list(BalancedBatchSampler(LABELS, 8, num_batches=5))
    torch.manual_seed(0)
    d = list(BalancedBatchSampler(LABELS, 8, num_batches=5))
    assert c == d


def test_labels_as_numpy_strings_and_lists() -> None:
    labels = np.array(["a"] * 30 + ["b"] * 6)
    batch = next(iter(BalancedBatchSampler(labels, 4, generator=_g())))
    assert sorted(labels[batch].tolist()) == ["a", "a", "b", "b"]
    assert len(next(iter(BalancedBatchSampler([0, 0, 0, 1], 2, generator=_g())))) == 2


def test_with_dataloader() -> None:
    data = TensorDataset(torch.arange(len(LABELS)).float(), LABELS)
    loader = DataLoader(data, batch_sampler=BalancedBatchSampler(LABELS, 9, generator=_g()))
    xb, yb = next(iter(loader))
    assert xb.shape == (9,) and torch.bincount(yb, minlength=3).tolist() == [3, 3, 3]


def test_pickle_and_state_dict_resume() -> None:
    s = BalancedBatchSampler(LABELS, 6, num_batches=4, generator=_g(4))
    list(s)
    state = s.state_dict()
    copy = pickle.loads(pickle.dumps(s))
    assert list(copy) == list(s)
    t = BalancedBatchSampler(LABELS, 6, num_batches=4, generator=_g(99))
    t.load_state_dict(state)
    s2 = BalancedBatchSampler(LABELS, 6, num_batches=4, generator=_g(4))
    list(s2)
    assert list(t) == list(s2)
    assert "batch_size=6" in repr(s)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=2, max_size=5),
    batch_size=st.integers(1, 20),
)
def test_hypothesis_batches_are_valid_indices(sizes: list[int], batch_size: int) -> None:
    labels = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    sampler = BalancedBatchSampler(labels, batch_size, num_batches=3, generator=_g())
    for batch in sampler:
        assert len(batch) == batch_size
        assert all(0 <= i < len(labels) for i in batch)


# 4. errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "err", "match"),
    [
        ((torch.tensor([0.0, 1.0]), 2), {}, TypeError, "labels must be an integer tensor"),
        ((np.zeros((2, 2)), 2), {}, ValueError, r"labels must have shape \(N,\)"),
        (([], 2), {}, ValueError, "labels must not be empty"),
        ((LABELS, 0), {}, ValueError, "batch_size must be >= 1"),
        ((LABELS, 2.0), {}, TypeError, "batch_size must be an int"),
        ((LABELS, 2), {"num_batches": 0}, ValueError, "num_batches must be >= 1"),
        ((LABELS, 2), {"target": "uniform"}, ValueError, "target must be 'balanced'"),
        ((LABELS, 2), {"target": [1, 2]}, TypeError, "target must be 'balanced'"),
        ((LABELS, 2), {"target": {5: 1.0}}, ValueError, "not in labels"),
        ((LABELS, 2), {"target": {0: -1.0}}, ValueError, "finite and >= 0"),
        ((LABELS, 2), {"target": {0: 0.0}}, ValueError, "must not all be 0"),
        ((LABELS, 2), {"replacement": 1}, TypeError, "replacement must be a bool"),
        ((LABELS, 2), {"generator": 0}, TypeError, "generator must be a torch.Generator"),
    ],
)
def test_errors(args: tuple, kwargs: dict, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        BalancedBatchSampler(*args, **kwargs)
