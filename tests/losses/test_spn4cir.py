"""SPN4CIR: bank InfoNCE (full and neg_num), the rank-window sampler, the templates.

Reference: BUAADreamer/SPN4CIR at commit 2a413f7a9c6d0c69387e8fbf9726b58a4b2724a4:
``clip4cir/models.py`` (``infonce_loss``: ``CE(q T^T / tau, labels)``; ``part_infonce_loss``:
per query ``CE([T_pos; T[random.sample(range(N) - {pos}, neg_num)]] q / tau, 0)`` averaged
over queries) and ``zscir/get_cir_data.py`` (``get_captions``, ``get_diff_id``). The
``_official_*`` helpers re-state that behaviour with ``F.cross_entropy`` and Python's
``random``, written here.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from posneg.losses.spn4cir import (
    TEMPLATES,
    BankInfoNCELoss,
    bank_infonce,
    modification_texts,
    sample_window_targets,
)

F64 = torch.float64


def _unit(n: int, d: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=F64), dim=1)


def _naive_full(q: torch.Tensor, bank: torch.Tensor, y: torch.Tensor, t: float) -> list[float]:
    out = []
    for i in range(q.shape[0]):
        s = [sum(float(a) * float(b) for a, b in zip(q[i], row, strict=True)) / t for row in bank]
        m = max(s)
        out.append(m + math.log(sum(math.exp(v - m) for v in s)) - s[int(y[i])])
    return out


def test_full_bank_matches_naive_loop_and_official_ce() -> None:
    q, bank = _unit(6, seed=1), _unit(40, seed=2)
    y = torch.tensor([0, 3, 39, 7, 7, 20])
    per = bank_infonce(q, bank, y, temperature=0.05, reduction="none")
    assert per.tolist() == pytest.approx(_naive_full(q, bank, y, 0.05), rel=1e-10)
    official = F.cross_entropy(q @ bank.T / 0.05, y)
    assert float(bank_infonce(q, bank, y, temperature=0.05)) == pytest.approx(float(official))


def test_tiling_does_not_change_the_loss_or_its_gradient() -> None:
    q = _unit(9, seed=3).requires_grad_(True)
    bank = _unit(30, seed=4)
    y = torch.arange(9) * 3
    a = bank_infonce(q, bank, y, chunk_size=2)
    (ga,) = torch.autograd.grad(a, q)
    b = bank_infonce(q, bank, y)
    (gb,) = torch.autograd.grad(b, q)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)


def test_card1_bank_of_in_batch_targets_is_in_batch_infonce() -> None:
    q, targets = _unit(8, seed=5), _unit(8, seed=6)
    in_batch = F.cross_entropy(q @ targets.T / 0.02, torch.arange(8))
    loss = bank_infonce(q, targets, torch.arange(8), temperature=0.02)
    assert float(loss) == pytest.approx(float(in_batch), rel=1e-12)


def test_card2_all_bank_negatives_equals_full_bank() -> None:
    q, bank = _unit(5, seed=7), _unit(12, seed=8)
    y = torch.tensor([0, 11, 4, 4, 9])
    full = bank_infonce(q, bank, y, temperature=0.1)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        part = bank_infonce(q, bank, y, temperature=0.1, num_negatives=11, generator=g)
        assert float(part) == pytest.approx(float(full), rel=1e-12)


def _official_part(
    q: torch.Tensor, bank: torch.Tensor, y: torch.Tensor, t: float, negs: list[list[int]]
) -> float:
    total = 0.0
    for i in range(q.shape[0]):
        feats = torch.cat([bank[int(y[i])][None], bank[negs[i]]])
        total += float(F.cross_entropy(q[i] @ feats.T / t, torch.tensor(0)))
    return total / q.shape[0]


def test_part_infonce_with_given_negatives_matches_official() -> None:
    q, bank = _unit(4, seed=9), _unit(20, seed=10)
    y = torch.tensor([2, 5, 19, 0])
    g = torch.Generator().manual_seed(0)
    loss = bank_infonce(q, bank, y, temperature=0.07, num_negatives=3, generator=g)
    # replay the same draws through the official per-query loop
    g = torch.Generator().manual_seed(0)
    negs = []
    for t in y.tolist():
        pick = torch.randperm(19, generator=g)[:3]
        negs.append([int(p) + (int(p) >= t) for p in pick])
    assert all(t not in row and len(set(row)) == 3 for t, row in zip(y.tolist(), negs, strict=True))
    assert float(loss) == pytest.approx(_official_part(q, bank, y, 0.07, negs), rel=1e-10)


def test_random_negatives_are_uniform_over_the_rest_of_the_bank() -> None:
    # law check against random.sample: each non-target row is drawn with prob k / (N - 1)
    n_bank, k, trials = 6, 2, 3000
    counts = torch.zeros(n_bank)
    g = torch.Generator().manual_seed(1)
    from posneg.losses.spn4cir import _draw_negatives

    for _ in range(trials):
        counts[_draw_negatives(torch.tensor([2]), n_bank, k, g)[0]] += 1
    assert counts[2] == 0
    freq = counts[torch.arange(n_bank) != 2] / trials
    assert torch.allclose(freq, torch.full_like(freq, k / (n_bank - 1)), atol=0.04)


def test_num_negatives_draws_depend_on_generator_only() -> None:
    q, bank, y = _unit(4, seed=11), _unit(30, seed=12), torch.tensor([1, 2, 3, 4])
    state = torch.get_rng_state()
    a = bank_infonce(q, bank, y, num_negatives=3, generator=torch.Generator().manual_seed(5))
    b = bank_infonce(q, bank, y, num_negatives=3, generator=torch.Generator().manual_seed(5))
    c = bank_infonce(q, bank, y, num_negatives=3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(state, torch.get_rng_state())


def _official_window(ranks: list[list[int]], i: int, lo: int, hi: int | None, k: int) -> list[int]:
    r = ranks[i][lo:hi] if hi is not None else ranks[i][lo:]
    return random.Random(0).sample(r, k)


def test_card4_window_sampler_stays_in_window_and_never_returns_self() -> None:
    n = 30
    sim = _unit(n, d=4, seed=13) @ _unit(n, d=4, seed=13).T
    ranks = torch.argsort(sim, dim=1, descending=True, stable=True)
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        out = sample_window_targets(sim, rank_min=3, rank_max=12, k=4, generator=g)
        assert out.shape == (n, 4) and out.dtype == torch.int64
        for i in range(n):
            window = set(ranks[i, 3:12].tolist())
            row = out[i].tolist()
            assert set(row) <= window and i not in row and len(set(row)) == 4
    # with the window starting at 0, i (rank 0 of its own ranking) is removed explicitly
    out = sample_window_targets(sim, rank_min=0, rank_max=2, k=1)
    assert all(int(out[i, 0]) == int(ranks[i, 1]) for i in range(n))
    # the code's no-window branch: uniform over j != i
    out = sample_window_targets(sim, rank_min=0, k=n - 1)
    assert all(sorted(out[i].tolist()) == [j for j in range(n) if j != i] for i in range(n))
    # precomputed integer rankings are used as given (official sample space)
    got = sample_window_targets(ranks, rank_min=5, rank_max=8, k=3)
    ref = _official_window(ranks.tolist(), 0, 5, 8, 3)
    assert sorted(got[0].tolist()) == sorted(ref)


def test_card3_templates_and_fallback() -> None:
    assert modification_texts("a cat", "a dog", templates=(2,)) == ["a dog"]
    assert modification_texts("a cat", "a dog", templates=(0, 1)) == [
        "a dog instead of a cat",
        "Unlike a cat, I want a dog",
    ]
    # the official get_captions formats "{1} instead of {0}" with (caption1, caption2)
    official = ["{1} instead of {0}", "Unlike {0}, I want {1}", "{1}"]
    for ours, theirs in zip(TEMPLATES, official, strict=True):
        assert ours.format(c_i="X", c_j="Y") == theirs.format("X", "Y")
    short = modification_texts(
        "a long reference", "dog", templates=(0, 1, 2), fits=lambda s: len(s) < 8
    )
    assert short == ["dog", "dog", "dog"]


def test_module_repr_and_call() -> None:
    m = BankInfoNCELoss(temperature=0.05, num_negatives=4, chunk_size=3)
    assert "num_negatives=4" in repr(m) and "temperature=0.05" in repr(m)
    q, bank = _unit(3, seed=1), _unit(10, seed=2)
    g = torch.Generator().manual_seed(0)
    assert m(q, bank, torch.tensor([0, 1, 2]), generator=g).shape == ()


def test_errors_name_function_and_argument() -> None:
    q, bank = _unit(3), _unit(10)
    with pytest.raises(ValueError, match=r"bank_infonce: target_index must lie in \[0, 10\)"):
        bank_infonce(q, bank, torch.tensor([0, 1, 10]))
    with pytest.raises(ValueError, match="bank_infonce: num_negatives must be <= N - 1 = 9"):
        bank_infonce(q, bank, torch.tensor([0, 1, 2]), num_negatives=10)
    with pytest.raises(TypeError, match="bank_infonce: target_index must be an integer tensor"):
        bank_infonce(q, bank, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="BankInfoNCELoss: temperature must be > 0"):
        BankInfoNCELoss(temperature=0.0)
    with pytest.raises(ValueError, match="sample_window_targets: rank_max must be >= 4"):
        sample_window_targets(torch.randn(4, 4), rank_min=3, rank_max=3)
    with pytest.raises(ValueError, match="sample_window_targets: the window"):
        sample_window_targets(torch.randn(4, 4), rank_min=2, k=3)
    with pytest.raises(ValueError, match="modification_texts: templates must hold ids"):
        modification_texts("a", "b", templates=(3,))
    with pytest.raises(TypeError, match="modification_texts: c_j must be a str"):
        modification_texts("a", 1)  # type: ignore[arg-type]
