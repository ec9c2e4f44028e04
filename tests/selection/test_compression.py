"""Class-dependent compression (Entezari and Saukh, arXiv 1909.10364).

Reference: rahimentezari/Sensys-ml2020 at 1c0c7b3, ``Decon_edit.py``
(``prune_and_rewindRemaining_to_k``) and ``models/train_model.py``
(``binary_crossentropy_with_ranking``, ``loss = BCEloss + 0 * BCEloss_rank``), transcribed below
as ``_code_prune`` / ``_code_ranking`` (our own rewrite of their behaviour, lists of indices and
``torch.topk`` included).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posneg.selection.compression import (
    CITATION,
    ClassDependentLoss,
    class_dependent_loss,
    iterative_magnitude_pruning,
    magnitude_increase_score,
    prunable_parameters,
    prune_mask,
    ranking_term,
    rewind,
)


def _code_prune(end: torch.Tensor, init: torch.Tensor, pruned: list, frac: float) -> list:
    """prune_and_rewindRemaining_to_k for one tensor: returns the grown list of pruned indices."""
    diff = end.abs() - init.abs()
    for x in pruned:
        diff[x] = 10e5
    k = int((end.view(-1).shape[0] - len(pruned)) * frac)
    idx = torch.topk(diff.view(-1), k, largest=False, sorted=True)[1]
    out = list(pruned)
    for i in range(k):
        out.append(np.unravel_index(idx[i].item(), end.size()))
    return out


def _code_ranking(outputs: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """binary_crossentropy_with_ranking, step by step."""
    y_pred = outputs.clamp(10e-8, 1 - 10e-8).detach()
    mx = torch.max(y_pred * (onehot < 1).float())
    rank = ((y_pred - mx) * onehot).clamp(-100, 0) ** 2
    return torch.sum(rank) / (torch.sum(onehot > 0) + 1)


def _mask_from(indices: list, shape: torch.Size) -> torch.Tensor:
    m = torch.ones(shape, dtype=torch.bool)
    for x in indices:
        m[x] = False
    return m


# ---------------------------------------------------------------------------- transcription


@pytest.mark.parametrize("shape", [(7,), (5, 6), (3, 2, 2, 2)])
def test_two_rounds_match_the_released_pruning(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    init = torch.randn(shape, generator=g, dtype=torch.float64)
    mask = torch.ones(shape, dtype=torch.bool)
    code_list: list = []
    for _ in range(2):
        end = (init + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)) * mask
        code_list = _code_prune(end.clone(), (init * mask).clone(), code_list, 0.5)
        mask = prune_mask(magnitude_increase_score(end, init * mask, mask), mask, fraction=0.5)
        assert torch.equal(mask, _mask_from(code_list, init.shape))


def test_ranking_term_matches_released_function() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.rand(6, 2, generator=g) * 1.4 - 0.2
    onehot = F.one_hot(torch.tensor([0, 1, 1, 0, 1, 0]), 2).float()
    torch.testing.assert_close(ranking_term(z, onehot, detach=True), _code_ranking(z, onehot))


def test_released_switches_give_plain_bce() -> None:
    # Card test 1 (loss part): w = [1, 1] and ranking weight 0 is the code's criterion.
    g = torch.Generator().manual_seed(2)
    z, y = torch.randn(8, 2, generator=g), torch.randint(2, (8,), generator=g)
    onehot = F.one_hot(y, 2).float()
    code = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 1.0]))(z, onehot) + 0 * _code_ranking(
        z, onehot
    )
    got = class_dependent_loss(z, y, pos_weight=(1.0, 1.0), ranking_weight=0.0, detach_ranking=True)
    torch.testing.assert_close(got, code)


# -------------------------------------------------------------------------------- formula


def test_loss_formula_naive_float64() -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2, 0])
    w = (1.0, 2.0, 4.0)
    total = 0.0
    for i in range(5):
        for c in range(3):
            s = 1 / (1 + math.exp(-float(z[i, c])))
            t = 1.0 if y[i] == c else 0.0
            total -= w[c] * t * math.log(s) + (1 - t) * math.log(1 - s)
    bce = total / 15
    # ranking: s = clamp(z), m = max over y=0 entries, sum over y=1 of min(s - m, 0)^2 / (B + 1)
    s = z.clamp(1e-7, 1 - 1e-7)
    m = max(float(s[i, c]) for i in range(5) for c in range(3) if y[i] != c)
    rank = sum(min(float(s[i, int(y[i])]) - m, 0.0) ** 2 for i in range(5)) / 6
    got = class_dependent_loss(z, y, pos_weight=w, ranking_weight=0.7)
    assert abs(float(got) - (bce + 0.7 * rank)) < 1e-12


def test_ranking_gradient_flows_only_when_not_detached() -> None:
    z = torch.tensor([[0.6, 0.2], [0.3, 0.9], [0.8, 0.1]], requires_grad=True)
    y = torch.tensor([1, 1, 0])
    onehot = F.one_hot(y, 2).float()
    (ga,) = torch.autograd.grad(ranking_term(z, onehot), z)
    assert float(ga.abs().sum()) > 0
    r = ranking_term(z, onehot, detach=True)
    assert not r.requires_grad


def test_weighting_the_important_class_raises_its_gradient() -> None:
    z = torch.zeros(4, 2, requires_grad=True)
    y = torch.tensor([0, 1, 1, 0])
    (g1,) = torch.autograd.grad(class_dependent_loss(z, y, pos_weight=(1.0, 1.0)), z)
    (g3,) = torch.autograd.grad(class_dependent_loss(z, y, pos_weight=(1.0, 3.0)), z)
    assert torch.allclose(g3[y == 1, 1], 3 * g1[y == 1, 1])
    assert torch.allclose(g3[y == 0], g1[y == 0])


# ----------------------------------------------------------------------------- properties


def test_ranking_zero_when_positives_beat_negatives() -> None:
    # Card test 4.
    z = torch.tensor([[0.1, 0.8], [0.7, 0.2], [0.05, 0.6]])
    onehot = F.one_hot(torch.tensor([1, 0, 1]), 2).float()
    assert float(ranking_term(z, onehot)) == 0.0


def test_score_picks_the_most_shrunk_entry_and_ties_are_stable() -> None:
    # Card test 3.
    init = torch.tensor([1.0, 1.0, -1.0, 2.0])
    final = torch.tensor([0.9, 1.5, -0.1, 1.9])
    score = magnitude_increase_score(final, init, torch.ones(4, dtype=torch.bool))
    new = prune_mask(score, torch.ones(4, dtype=torch.bool), fraction=0.25)
    assert new.tolist() == [True, True, False, True]
    tie = prune_mask(torch.zeros(6), torch.ones(6, dtype=torch.bool), fraction=0.5)
    assert tie.tolist() == [False, False, False, True, True, True]


def test_difference_inf_versus_code_sentinel() -> None:
    # The code marks pruned entries with 10e5; a surviving entry whose score exceeds that is
    # out-ranked by an already-pruned one, which the code "prunes" again while the survivor
    # stays. posneg uses +inf, so the survivor is the one pruned.
    init = torch.tensor([0.0, 0.0, 0.0, 0.0])
    end = torch.tensor([0.0, 5e6, 6e6, 7e6])
    code = _code_prune(end.clone(), init.clone(), [(0,)], 0.34)
    assert _mask_from(code, init.shape).tolist() == [False, True, True, True]  # no survivor pruned
    mask = torch.tensor([False, True, True, True])
    ours = prune_mask(magnitude_increase_score(end, init, mask), mask, fraction=0.34)
    assert ours.tolist() == [False, False, True, True]


def test_rewind_restores_survivors_bit_exactly() -> None:
    # Card test 5.
    g = torch.Generator().manual_seed(4)
    init = {"w": torch.randn(4, 3, generator=g), "b": torch.randn(4, generator=g)}
    masks = {"w": torch.rand(4, 3, generator=g) > 0.5}
    out = rewind(init, masks)
    assert torch.equal(out["w"][masks["w"]], init["w"][masks["w"]])
    assert bool((out["w"][~masks["w"]] == 0).all())
    assert torch.equal(out["b"], init["b"])


def _mlp() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)).double()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 4, generator=g, dtype=torch.float64)
    return x, (x[:, 0] + 0.3 * x[:, 1] > 0.5).long()


def _trainer(loss_fn, log: list):  # type: ignore[no-untyped-def]
    x, y = _data()

    def train(model: nn.Module, t: int) -> dict[str, torch.Tensor]:
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(20):
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log.append(state)
        return state

    return train


def test_imp_keeps_half_per_round_and_pruned_stay_zero() -> None:
    # Card test 2.
    log: list = []
    model = _mlp()
    rounds = iterative_magnitude_pruning(model, _trainer(ClassDependentLoss(), log), rounds=3)
    shapes = {k: p.numel() for k, p in prunable_parameters(_mlp()).items()}
    for t, state in enumerate(log):
        for name, n in shapes.items():
            alive = n
            for _ in range(t):
                alive -= int(alive * 0.5)
            assert int((state[name] != 0).sum()) <= alive
    # pruned entries are exactly zero after training in every round
    masks_last = {k: log[-1][k] != 0 for k in shapes}
    assert all(int(m.sum()) >= 1 for m in masks_last.values())
    assert [r.round for r in rounds] == [0, 1, 2, 3]
    assert rounds[0].remaining == 1.0 and abs(rounds[3].remaining - 0.125) < 0.05


def test_released_switches_equal_plain_imp() -> None:
    # Card test 1: the released loss (w = [1, 1], ranking weight 0) trains exactly like plain
    # one-hot BCE IMP, round for round.
    a: list = []
    b: list = []
    iterative_magnitude_pruning(
        _mlp(), _trainer(ClassDependentLoss(pos_weight=(1.0, 1.0)), a), rounds=2
    )

    def plain(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(z, F.one_hot(y, 2).to(z.dtype))

    iterative_magnitude_pruning(_mlp(), _trainer(plain, b), rounds=2)
    for sa, sb in zip(a, b, strict=True):
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k])


def test_imp_rewinds_to_theta0_each_round() -> None:
    theta0 = {k: v.clone() for k, v in _mlp().state_dict().items()}
    seen: list = []

    def train(model: nn.Module, t: int) -> None:
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(torch.linspace(0.1, 2.0, p.numel(), dtype=p.dtype).reshape(p.shape))

    iterative_magnitude_pruning(_mlp(), train, rounds=2)
    for state in seen:
        for k, v in state.items():
            alive = v != 0
            assert torch.equal(v[alive], theta0[k][alive])


def test_repr_and_citation() -> None:
    r = repr(ClassDependentLoss(pos_weight=(1.0, 5.0), ranking_weight=0.5))
    assert "pos_weight=(1.0, 5.0), ranking_weight=0.5, detach_ranking=False" in r
    assert "1909.10364" in CITATION


def test_errors() -> None:
    z, y = torch.zeros(4, 2), torch.tensor([0, 1, 1, 0])
    with pytest.raises(ValueError, match="class_dependent_loss: pos_weight must have 2 entries"):
        class_dependent_loss(z, y, pos_weight=(1.0, 2.0, 3.0))
    with pytest.raises(
        ValueError, match="ClassDependentLoss: pos_weight entries must be finite and > 0"
    ):
        ClassDependentLoss(pos_weight=(1.0, 0.0))
    with pytest.raises(ValueError, match="ClassDependentLoss: ranking_weight must be >= 0"):
        ClassDependentLoss(ranking_weight=-1.0)
    with pytest.raises(
        ValueError, match=r"class_dependent_loss: target must hold labels in \[0, 2\)"
    ):
        class_dependent_loss(z, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"class_dependent_loss: logits must have shape \(B, C\)"):
        class_dependent_loss(torch.zeros(4), y)
    with pytest.raises(TypeError, match="prune_mask: mask must be a bool tensor"):
        prune_mask(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match=r"prune_mask: fraction must be in \[0.0, 1.0\]"):
        prune_mask(torch.zeros(3), torch.ones(3, dtype=torch.bool), fraction=1.5)
    with pytest.raises(ValueError, match="magnitude_increase_score: init must have the shape"):
        magnitude_increase_score(torch.zeros(3), torch.zeros(2), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="rewind: masks names 'x'"):
        rewind({"w": torch.zeros(2)}, {"x": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="iterative_magnitude_pruning: model has no Linear"):
        iterative_magnitude_pruning(nn.ReLU(), lambda m, t: None)
    with pytest.raises(TypeError, match="iterative_magnitude_pruning: train must be callable"):
        iterative_magnitude_pruning(_mlp(), 3)  # type: ignore[arg-type]
