"""The EPS-AD and UniCon-HA runners of `posneg bench ood` on a tiny fake OODContext."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import posneg.bench._ood_eps as eps_runners
import posneg.bench._ood_unicon as unicon_runners
from posneg.bench._ood_context import OODContext


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x.flatten(1)]


def _digits_like(n: int, seed: int, bright: slice) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = 0.05 * torch.rand(n, 1, 8, 8, generator=g)
    x[:, :, bright, 2:6] += 0.8
    return x.clamp(0, 1)


def _ctx() -> OODContext:
    train = _digits_like(48, 0, slice(1, 7))
    return OODContext(
        model=_Model().eval(),
        train_x=train,
        train_y=torch.arange(48) % 3,
        val_x=_digits_like(12, 1, slice(1, 7)),
        val_y=torch.arange(12) % 3,
        eval_sets={
            "id": _digits_like(16, 2, slice(1, 7)),
            "far_noise": torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(3)),
        },
        num_classes=3,
        seed=0,
        extra={"images_are": "digits8x8_unit"},
    )


def _check(scores: dict[str, torch.Tensor], ctx: OODContext) -> None:
    assert set(scores) == set(ctx.eval_sets)
    for k, v in scores.items():
        assert v.shape == (ctx.eval_sets[k].shape[0],) and torch.isfinite(v).all()


@pytest.mark.parametrize("name", ["eps_single", "eps_multi"])
def test_eps_runners(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(eps_runners, "TRAIN_STEPS", 40)
    ctx = _ctx()
    run = eps_runners.RUNNERS[name]
    a = run(ctx, torch.Generator().manual_seed(0))
    b = run(ctx, torch.Generator().manual_seed(0))
    _check(a, ctx)
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded training, generator-drawn noise
    # uniform noise is far from the structured training images
    assert a["far_noise"].mean() > a["id"].mean()


def test_unicon_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unicon_runners, "TRAIN_STEPS", 3)
    monkeypatch.setattr(unicon_runners, "BATCH", 8)
    ctx = _ctx()
    a = unicon_runners.RUNNERS["unicon_ha"](ctx, torch.Generator().manual_seed(0))
    b = unicon_runners.RUNNERS["unicon_ha"](ctx, torch.Generator().manual_seed(0))
    _check(a, ctx)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert float(a["id"].min()) >= -1.0 - 1e-6
