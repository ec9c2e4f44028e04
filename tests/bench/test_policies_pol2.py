"""The MADAug and invariance-constrained runners on a tiny PolicyContext (sequences and images)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from posneg.bench import _policies_invariance, _policies_madaug
from posneg.bench._policy_context import PolicyContext, PolicyResult


class _Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten()
        )
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _Img(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _ctx(kind: str) -> PolicyContext:
    g = torch.Generator().manual_seed(0)
    shape = (1, 12) if kind == "sequence" else (1, 8, 8)
    x = torch.rand(60, *shape, generator=g)
    y = torch.randint(0, 3, (60,), generator=g)
    return PolicyContext(
        train_x=x[:32],
        train_y=y[:32],
        val_x=x[32:44],
        val_y=y[32:44],
        test_x=x[44:],
        test_y=y[44:],
        kind=kind,
        num_classes=3,  # type: ignore[arg-type]
        make_model=_Seq if kind == "sequence" else _Img,
        epochs=2,
        batch_size=16,
    )


RUNNERS = {**_policies_madaug.RUNNERS, **_policies_invariance.RUNNERS}


@pytest.mark.parametrize("kind", ["sequence", "image"])
@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_runner_returns_a_result(name: str, kind: str) -> None:
    ctx = _ctx(kind)
    before = torch.get_rng_state()
    res = RUNNERS[name](ctx, torch.Generator().manual_seed(1))
    assert isinstance(res, PolicyResult)
    assert 0.0 <= res.accuracy <= 1.0 and math.isfinite(res.ece) and len(res.curve) == 2
    assert torch.equal(before, torch.get_rng_state())  # the global RNG is untouched
    again = RUNNERS[name](ctx, torch.Generator().manual_seed(1))
    assert again.accuracy == res.accuracy and again.curve == res.curve


def test_module_names_are_the_bench_s() -> None:
    assert set(_policies_madaug.RUNNERS) == {"madaug", "madaug_released", "uniform_ops"}
    assert set(_policies_invariance.RUNNERS) == {"invariance", "invariance_uniform"}


def test_invariance_note_reports_gamma_and_op_counts() -> None:
    res = _policies_invariance.RUNNERS["invariance"](
        _ctx("sequence"), torch.Generator().manual_seed(0)
    )
    assert "gamma" in res.notes and "op counts" in res.notes


def test_released_madaug_never_updates_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = _policies_madaug.bilevel_validation_loss

    def spy(*args: object, **kw: object) -> torch.Tensor:
        calls.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_policies_madaug, "bilevel_validation_loss", spy)
    _policies_madaug.RUNNERS["madaug_released"](_ctx("sequence"), torch.Generator().manual_seed(0))
    assert not calls
    _policies_madaug.RUNNERS["madaug"](_ctx("sequence"), torch.Generator().manual_seed(0))
    assert len(calls) == 2  # 2 steps per epoch x 2 epochs, every 3rd step: steps 0 and 3
