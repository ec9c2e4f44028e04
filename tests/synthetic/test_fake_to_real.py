"""From Fake to Real (posneg.synthetic.fake_to_real): budget, make_harder, stats, trainer.

The reference transcriptions follow ``mqraitem/From-Fake-to-Real`` at commit
``12e522faa81730cda75ada364e3faaca2d9a9fac``: ``datasets/dataset.py`` (``make_harder``,
``load_gen_data_balance``, ``get_gen_ratio``), ``training_code/train_erm_ffr_1.py``
(``num_per_group = num_gen // len(GROUPS)``) and ``utils.py`` (``compute_stats``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from posneg.synthetic.fake_to_real import (
    FakeToRealTrainer,
    balancing_budget,
    ffr_per_group,
    group_counts,
    group_stats,
    make_harder,
    synthetic_plan,
    train_stage,
)


def _groups(sizes: dict[tuple[int, int], int]) -> tuple[torch.Tensor, torch.Tensor]:
    y, b = [], []
    for (c, k), n in sizes.items():
        y += [c] * n
        b += [k] * n
    return torch.tensor(y), torch.tensor(b)


# ---- formula / reference ---------------------------------------------------------------------


def _official_budget(counts: np.ndarray) -> tuple[list[int], int]:
    """``load_gen_data_balance`` + ``get_gen_ratio`` + ``num_gen // len(GROUPS)``, as a loop."""
    flat = counts.reshape(-1).astype(np.float64)
    max_count = np.max(flat)
    to_add = [int(max_count - flat[i]) for i in range(len(flat))]
    num_gen = sum(to_add)
    return to_add, num_gen // len(flat)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_budget_matches_the_official_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    counts = torch.tensor(rng.integers(0, 500, size=(3, 2)))
    to_add, per_group = _official_budget(counts.numpy())
    assert balancing_budget(counts).reshape(-1).tolist() == to_add
    assert ffr_per_group(counts) == per_group


def _official_make_harder(y: np.ndarray, b: np.ndarray, r: float, k: int) -> list[int]:
    """The number removed per class by ``make_harder`` (keep_min=True), as in the code."""
    removed = []
    for c in np.unique(y):
        cnt = {(c, v): int(np.sum((y == c) & (b == v))) for v in range(k)}
        max_g = max(cnt, key=cnt.get)
        min_g = min(cnt, key=cnt.get)
        ratio = 1 - r
        to_keep = (cnt[max_g] * ratio) / (1 - ratio)
        if to_keep > cnt[min_g]:
            removed.append(0)
            continue
        to_keep = max(to_keep, 10)
        removed.append(int(cnt[min_g] - to_keep))
    return removed


@pytest.mark.parametrize("r", [0.9, 0.95, 0.99, 0.999])
def test_make_harder_removes_what_the_code_removes(r: float) -> None:
    y, b = _groups({(0, 0): 400, (0, 1): 120, (1, 0): 90, (1, 1): 350})
    keep = make_harder(y, b, minority_to_keep=r, generator=torch.Generator().manual_seed(0))
    expect = _official_make_harder(y.numpy(), b.numpy(), r, 2)
    got = [int((y == c).sum()) - int((y[keep] == c).sum()) for c in (0, 1)]
    assert got == expect


def test_make_harder_ratio_and_floor() -> None:
    # card test 1: n_min / (n_min + n_max) ~ 1 - r, with the floor of 10
    y, b = _groups({(0, 0): 500, (0, 1): 300, (1, 0): 300, (1, 1): 500})
    keep = make_harder(y, b, minority_to_keep=0.95, generator=torch.Generator().manual_seed(1))
    c = group_counts(y[keep], b[keep])
    assert c[0, 1] / (c[0, 0] + c[0, 1]) == pytest.approx(0.05, abs=0.002)
    keep = make_harder(y, b, minority_to_keep=0.999, generator=torch.Generator().manual_seed(1))
    assert group_counts(y[keep], b[keep])[:, :].min() == 10


def test_compute_stats_hand_example() -> None:
    # card test 4; compute_stats: accuracies per GROUPS order, np.min, np.mean
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    b = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    pred = torch.tensor([0, 0, 0, 1, 1, 0, 1, 1])
    s = group_stats(y_true=y, y_pred=pred, bias=b)
    assert s.per_group.tolist() == [1.0, 0.5, 0.5, 1.0]
    assert (s.worst, s.balanced) == (0.5, 0.75)
    logits = torch.nn.functional.one_hot(pred, 2).float()
    assert group_stats(y_true=y, y_pred=logits, bias=b).worst == 0.5


def test_empty_group_is_left_out_where_compute_stats_gives_nan() -> None:
    # deliberate difference: the code divides by len(idx) = 0 -> NaN for both numbers
    y, b, pred = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0]), torch.tensor([0, 1, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        accs = [
            np.sum(pred.numpy()[i] == y.numpy()[i]) / len(i)
            for i in (
                np.where((y.numpy() == c) & (b.numpy() == k))[0] for c in (0, 1) for k in (0, 1)
            )
        ]
    assert math.isnan(float(np.min(accs)))
    s = group_stats(y_true=y, y_pred=pred, bias=b, num_biases=2)
    assert (s.worst, s.balanced) == (0.0, 2 / 3)
    assert math.isnan(float(s.per_group[3]))


def test_small_minority_is_kept_where_the_code_errors() -> None:
    y, b = _groups({(0, 0): 2000, (0, 1): 6})
    keep = make_harder(y, b, minority_to_keep=0.999)
    assert int((b[keep] == 1).sum()) == 6


# ---- properties ------------------------------------------------------------------------------


def test_usb_gives_equal_groups_and_asb_equal_synthetic() -> None:
    # card test 2
    counts = torch.tensor([[400, 10], [12, 380]])
    y, b = synthetic_plan(counts, mode="usb")
    assert (counts + group_counts(y, b, num_classes=2, num_biases=2)).unique().tolist() == [400]
    y, b = synthetic_plan(counts, mode="asb")
    per = group_counts(y, b, num_classes=2, num_biases=2)
    assert per.unique().tolist() == [(390 + 388 + 20) // 4]
    assert len(synthetic_plan(counts, mode="ffr")[0]) == len(y)


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x[:, 0].detach().clone())
        return self.lin(x)


def test_step_one_sees_no_real_sample_and_step_two_no_synthetic() -> None:
    # card test 3: synthetic rows carry x[:, 0] = 1, real rows 0
    g = torch.Generator().manual_seed(0)
    xs = torch.cat([torch.ones(12, 1), torch.randn(12, 1, generator=g)], 1)
    xr = torch.cat([torch.zeros(8, 1), torch.randn(8, 1, generator=g)], 1)
    model = _Recorder()
    FakeToRealTrainer(pretrain_epochs=2, finetune_epochs=3, batch_size=5).fit(
        model, synthetic_x=xs, synthetic_y=torch.arange(12) % 2, real_x=xr,
        real_y=torch.arange(8) % 2, generator=g,
    )  # fmt: skip
    first = torch.cat(model.seen[:6])  # 2 epochs x ceil(12 / 5) batches
    second = torch.cat(model.seen[6:])
    assert first.eq(1).all() and first.numel() == 24
    assert second.eq(0).all() and second.numel() == 24


def test_selection_restores_the_best_epoch() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, generator=g), torch.arange(32) % 2
    scores: list[float] = []

    def select(m: nn.Module) -> float:
        s = [0.3, 0.9, 0.1][len(scores)]
        scores.append(s)
        if s == 0.9:
            select.best = {k: v.clone() for k, v in m.state_dict().items()}  # type: ignore[attr-defined]
        return s

    model = train_stage(nn.Linear(3, 2), x, y, epochs=3, batch_size=8, lr=0.1, weight_decay=0.0,
                        select=select, generator=g)  # fmt: skip
    for k, v in model.state_dict().items():
        assert torch.equal(v, select.best[k])  # type: ignore[attr-defined]


def test_freeze_bn_keeps_running_stats_in_step_two() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, generator=g), torch.arange(16) % 2
    model = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 2))
    trainer = FakeToRealTrainer(pretrain_epochs=1, finetune_epochs=2, batch_size=8, freeze_bn=True)
    trainer.fit(model, synthetic_x=x, synthetic_y=y, real_x=x + 5,
                real_y=y, generator=torch.Generator().manual_seed(0))  # fmt: skip
    ref = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 2))
    FakeToRealTrainer(pretrain_epochs=1, finetune_epochs=0, batch_size=8).fit(
        ref, synthetic_x=x, synthetic_y=y, real_x=x, real_y=y,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert torch.allclose(model[0].running_mean, ref[0].running_mean)


def test_determinism_and_global_rng() -> None:
    def run() -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            m = nn.Linear(3, 2)
        g = torch.Generator().manual_seed(5)
        x, y = torch.randn(20, 3, generator=g), torch.arange(20) % 2
        FakeToRealTrainer(pretrain_epochs=2, finetune_epochs=2, batch_size=6).fit(
            m, synthetic_x=x, synthetic_y=y, real_x=x, real_y=y, generator=g
        )
        return m.weight.detach()

    state = torch.get_rng_state()
    a, b = run(), run()
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())


# ---- errors ----------------------------------------------------------------------------------


def test_errors() -> None:
    y, b = torch.tensor([0, 1]), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"make_harder: minority_to_keep must be in \(0.0, 1.0\)"):
        make_harder(y, b, minority_to_keep=1.0)
    with pytest.raises(TypeError, match="group_counts: labels must be a 1-D integer tensor"):
        group_counts(y.float(), b)
    with pytest.raises(ValueError, match="group_counts: bias must have shape"):
        group_counts(y, b[:1])
    with pytest.raises(ValueError, match="synthetic_plan: mode must be one of"):
        synthetic_plan(torch.tensor([[1, 2]]), mode="mix")
    with pytest.raises(ValueError, match="balancing_budget: counts must be a non-empty"):
        balancing_budget(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="group_stats: labels must be < num_classes=1"):
        group_stats(y_true=y, y_pred=y, bias=b, num_classes=1)
    with pytest.raises(ValueError, match="FakeToRealTrainer: pretrain_lr must be > 0"):
        FakeToRealTrainer(pretrain_lr=0.0)
    with pytest.raises(TypeError, match="FakeToRealTrainer: freeze_bn must be a bool"):
        FakeToRealTrainer(freeze_bn=1)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"FakeToRealTrainer\.fit: synthetic_x and real_x must share"
    ):
        FakeToRealTrainer().fit(nn.Linear(2, 2), synthetic_x=torch.ones(2, 2), synthetic_y=y,
                                real_x=torch.ones(2, 3), real_y=y)  # fmt: skip
    assert "freeze_bn=False" in repr(FakeToRealTrainer())
