"""The CLIPN runners of `posneg bench ood` on a tiny fake context, and the spurious-digits run."""

from __future__ import annotations

import pytest
import torch

from posneg.bench import _ood_clipn
from posneg.bench._ood_context import OODContext
from posneg.bench._spurious import curator_bias_rows, spurious_rows


def _ctx(seed: int = 0) -> OODContext:
    g = torch.Generator().manual_seed(0)
    proto = torch.rand(3, 1, 8, 8, generator=g)
    y = torch.arange(3).repeat(20)
    x = (proto[y] + 0.1 * torch.rand(60, 1, 8, 8, generator=g)).clamp(0, 1)
    sets = {"id": x[:12], "near": torch.rand(10, 1, 8, 8, generator=g)}
    return OODContext(
        model=None,  # type: ignore[arg-type]  # the CLIPN runners train their own two-tower model
        train_x=x,
        train_y=y,
        val_x=x[:6],
        val_y=y[:6],
        eval_sets=sets,
        num_classes=3,
        seed=seed,
    )


def test_clipn_runners_score_every_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ood_clipn, "PRETRAIN_EPOCHS", 3)
    monkeypatch.setattr(_ood_clipn, "CLIPN_STEPS", 4)
    ctx = _ctx()
    state = torch.random.get_rng_state()
    out = {name: run(ctx, torch.Generator()) for name, run in _ood_clipn.RUNNERS.items()}
    assert torch.equal(state, torch.random.get_rng_state())
    assert set(out) == {"clipn_ctw", "clipn_atd", "clip_msp"}
    for name, scores in out.items():
        assert set(scores) == {"id", "near"}
        assert scores["id"].shape == (12,) and scores["near"].shape == (10,)
        assert all(bool(torch.isfinite(s).all()) for s in scores.values()), name
    for name in ("clipn_ctw", "clipn_atd"):
        assert all(bool(((s >= 0) & (s <= 1)).all()) for s in out[name].values())
    # same context and seed: the cached model gives the same scores; a fresh context retrains
    again = _ood_clipn.RUNNERS["clipn_atd"](_ctx(), torch.Generator())
    torch.testing.assert_close(again["near"], out["clipn_atd"]["near"])


def test_clipn_training_only_moves_the_no_side() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.arange(3).repeat(8)
    x = torch.rand(24, 1, 8, 8, generator=g)
    model, no = _ood_clipn.train_clipn(x, y, 3, seed=0, pretrain_epochs=1, steps=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    no_before = no.text_head.weight.clone()
    torch.testing.assert_close(no.text_head.weight, model.text_head.weight)  # an exact copy
    model2, no2 = _ood_clipn.train_clipn(x, y, 3, seed=0, pretrain_epochs=1, steps=3)
    for k, v in model2.state_dict().items():
        torch.testing.assert_close(v, before[k])  # frozen yes side and image tower
    assert not torch.equal(no2.text_head.weight, no_before)
    assert no2.prompt.prompt.abs().sum() > 0  # prompts moved away from their zero init


def test_spurious_rows_drop_and_control() -> None:
    rows = spurious_rows(seeds=(0,), steps=80, clip_epochs=2)
    by = {r["model"]: r for r in rows}
    assert set(by) == {"linear", "mlp", "mlp_balanced", "two_tower_zero_shot"}
    assert abs(by["mlp_balanced"]["drop"]) < 0.06  # no spurious feature learned: drop ~ 0
    assert by["linear"]["drop"] > by["mlp_balanced"]["drop"] + 0.1
    assert by["mlp_balanced"]["er_logit"] > by["linear"]["er_logit"]


def test_curator_bias_rows_shape() -> None:
    rows = curator_bias_rows(seeds=(0,), steps=20)
    assert [(r["model"], r["half"]) for r in rows] == [
        ("curator", "curation"),
        ("curator", "held_out"),
        ("other_init", "held_out"),
    ]
    assert all(-1.0 <= r["drop"] <= 1.0 for r in rows)
