"""Invariance-constrained augmentation: proposals, independence Metropolis-Hastings, primal-dual.

Official behaviour transcribed from github.com/ihounie/daug, ``TrivialAugment/train_pd_batch.py``
(``run_epoch_dual``, commit a75c186da596e5d9063082304837bde510e97cf4): i.i.d. proposals without
the identity and level 0, acceptance ``min(nan_to_num(l_s / l_cur), 1) * (ratio > 0)``, last state
kept, ``L = CE(x) + gamma CE(x_MH)``, ``gamma <- relu(gamma + lr (L_aug - margin))``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posneg.augment.invariance import (
    InvarianceSampler,
    dual_update,
    level_magnitudes,
    metropolis_hastings,
    primal_dual_loss,
    sample_proposals,
)
from posneg.augment.madaug import SEQUENCE_OPS, apply_ops


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _naive_chain(losses: list[float], accept: list[bool]) -> int:
    state = 0
    for s in range(1, len(losses)):
        if accept[s - 1]:
            state = s
    return state


# ------------------------------------------------------------------ formula
def test_deterministic_chains_against_naive_loop() -> None:
    # ratios are 0 or >= 1 here, so every acceptance is certain and the chain is a plain loop
    losses = torch.tensor(
        [[1.0, 2.0, 0.5, 0.0], [2.0, 0.0, 1.0, 3.0], [0.0, 3.0, 4.0, 1.0], [5.0, 0.0, 4.0, 0.0]],
        dtype=torch.float64,
    )
    state, accepted, chain = metropolis_hastings(losses, generator=_gen())
    for b in range(4):
        col = losses[:, b].tolist()
        acc, cur = [], col[0]
        for s in range(1, 4):
            ratio = col[s] / cur if cur > 0 else (float("inf") if col[s] > 0 else 0.0)
            acc.append(ratio >= 1.0)
            if ratio >= 1.0:
                cur = col[s]
        assert int(state[b]) == _naive_chain(col, acc)
        assert accepted[:, b].tolist() == acc
        assert float(chain[b]) == cur


def test_dual_update_is_exact() -> None:
    assert dual_update(0.3, 1.7, lr=0.1, margin=0.5) == pytest.approx(0.3 + 0.1 * 1.2)
    assert dual_update(0.05, 0.0, lr=0.1, margin=1.0) == 0.0  # projected onto gamma >= 0
    x = torch.tensor(2.0)
    assert primal_dual_loss(x, torch.tensor(3.0), 0.5).item() == pytest.approx(3.5)


def test_acceptance_rate_equals_loss_ratio() -> None:
    n = 40000
    losses = torch.stack([torch.full((n,), 2.0), torch.full((n,), 0.6)])
    _, accepted, _ = metropolis_hastings(losses, generator=_gen())
    assert float(accepted.double().mean()) == pytest.approx(0.3, abs=0.01)
    up = torch.stack([torch.full((n,), 0.6), torch.full((n,), 2.0)])
    assert bool(metropolis_hastings(up, generator=_gen())[1].all())


def test_long_chain_histogram_is_proportional_to_loss() -> None:
    per_op = torch.tensor([0.2, 1.0, 3.0, 0.8])  # a frozen model's loss per op
    steps, b = 60, 20000
    ops = torch.randint(4, (steps, b), generator=_gen(1))
    state, _, _ = metropolis_hastings(per_op[ops], generator=_gen(2))
    final = ops.gather(0, state.view(1, -1))[0]
    freq = torch.bincount(final, minlength=4).double() / b
    torch.testing.assert_close(freq, (per_op / per_op.sum()).double(), atol=0.012, rtol=0)


# ------------------------------------------------------------------ official behaviour
def test_single_step_returns_proposal_zero() -> None:
    losses = torch.rand(1, 50)
    state, accepted, chain = metropolis_hastings(losses, generator=_gen())
    assert bool((state == 0).all()) and accepted.shape == (0, 50)
    torch.testing.assert_close(chain, losses[0])


def test_zero_current_loss_accepts_and_zero_over_zero_rejects() -> None:
    losses = torch.tensor([[0.0, 0.0], [0.4, 0.0]])
    state, _, _ = metropolis_hastings(losses, generator=_gen())
    assert state.tolist() == [1, 0]


def test_proposals_exclude_identity_and_level_zero() -> None:
    ops, levels = sample_proposals(3000, 2, num_ops=7, max_level=29, generator=_gen())
    assert ops.shape == levels.shape == (2, 3000)
    assert set(ops.unique().tolist()) == set(range(1, 7))
    assert set(levels.unique().tolist()) == set(range(1, 30))


def test_level_magnitudes_grow_with_level() -> None:
    ops = torch.tensor([SEQUENCE_OPS.index("translate"), SEQUENCE_OPS.index("blur")])
    m = level_magnitudes(ops, torch.tensor([29, 29]), max_level=29, kind="sequence")
    assert m.tolist() == [1.0, 1.0]
    m = level_magnitudes(ops, torch.tensor([0, 0]), max_level=29, kind="sequence")
    assert m.tolist() == [0.5, 0.0]  # strength 0 is the identity for both


class _Frozen(nn.Module):
    """Loss depends only on the sequence's flip: flipped inputs get a high loss."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x[..., :5].sum(-1) - x[..., -5:].sum(-1)).view(-1, 1)
        return torch.cat([score, -score], 1)


def test_sampler_returns_chain_states_and_prefers_high_loss_ops() -> None:
    x = torch.zeros(4000, 1, 20)
    x[..., :5] = 1.0  # class 0 when not flipped
    y = torch.zeros(4000, dtype=torch.int64)
    s = InvarianceSampler(kind="sequence", mh_steps=6, lr=0.1, margin=0.0)
    out = s.sample(_Frozen(), x, y, generator=_gen())
    assert out.shape == x.shape
    counts = s.op_counts_.double()
    flip = SEQUENCE_OPS.index("flip")
    assert counts[0] == 0  # identity never proposed
    assert counts[flip] / counts.sum() > 2.0 / 6  # uniform would be 1/6


def test_sampler_state_dict_round_trip_and_erm_limit() -> None:
    s = InvarianceSampler(kind="sequence", lr=0.5, margin=10.0)
    for _ in range(5):
        s.update(torch.tensor(2.3))  # margin above the loss: gamma stays 0 -> ERM
    assert s.gamma_ == 0.0 and s.steps_ == 5
    logits, aug = torch.randn(6, 3), torch.randn(6, 3)
    y = torch.randint(0, 3, (6,))
    primal, _ = s.loss(logits, aug, y)
    torch.testing.assert_close(primal, F.cross_entropy(logits, y))
    s2 = InvarianceSampler(kind="sequence", lr=0.5, margin=0.1)
    s2.update(1.1)
    assert s2.gamma_ == pytest.approx(0.5)
    s.load_state_dict(s2.state_dict())
    assert s.gamma_ == pytest.approx(0.5) and s.steps_ == 1
    assert "mh_steps=2" in repr(s)


def test_sample_is_reproducible_and_uses_kernels() -> None:
    x = torch.randn(8, 1, 16)
    y = torch.randint(0, 2, (8,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    a = InvarianceSampler(kind="sequence", mh_steps=1).sample(model, x, y, generator=_gen(5))
    b = InvarianceSampler(kind="sequence", mh_steps=1).sample(model, x, y, generator=_gen(5))
    torch.testing.assert_close(a, b)
    g = _gen(5)
    ops, levels = sample_proposals(8, 1, num_ops=len(SEQUENCE_OPS), generator=g)
    mags = level_magnitudes(ops, levels, max_level=29, kind="sequence")
    signs = (torch.randint(2, (1, 8), generator=g) * 2 - 1).float()
    torch.testing.assert_close(a, apply_ops(x, ops[0], mags[0], signs[0]))


# ------------------------------------------------------------------ errors
def test_errors_name_function_and_argument() -> None:
    with pytest.raises(ValueError, match="metropolis_hastings: losses"):
        metropolis_hastings(torch.rand(5))
    with pytest.raises(ValueError, match="sample_proposals: num_ops"):
        sample_proposals(3, 2, num_ops=1)
    with pytest.raises(ValueError, match="InvarianceSampler: kind"):
        InvarianceSampler(kind="text")
    with pytest.raises(ValueError, match="InvarianceSampler: mh_steps"):
        InvarianceSampler(mh_steps=0)
    with pytest.raises(ValueError, match="dual_update: gamma"):
        dual_update(-1.0, 0.0, lr=0.1, margin=0.0)
    with pytest.raises(ValueError, match=r"InvarianceSampler\.sample: x"):
        InvarianceSampler(kind="image").sample(nn.Identity(), torch.randn(2, 1, 8), torch.zeros(2))
    with pytest.raises(ValueError, match="load_state_dict: state is missing"):
        InvarianceSampler().load_state_dict({"gamma_": 0.0})
