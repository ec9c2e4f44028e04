"""Tests of the "wscol" section of `posneg bench detection` (tiny presets)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from posneg.bench import _detection_wscol as wscol
from posneg.bench._det_sfda import (
    PRESETS,
    MeanTeacher,
    SFDAConfig,
    adapt,
    forward_with_features,
    make_context,
    source_detector,
)


@lru_cache(maxsize=1)
def _ctx():  # type: ignore[no-untyped-def]
    return make_context(0, preset="demo", train_scenes=40, target_scenes=8, steps=5)


def test_demo_run_reports_every_method() -> None:
    out = wscol.run_wscol(_ctx(), torch.Generator().manual_seed(0), PRESETS["demo"])
    for m in wscol.METHODS:
        assert 0.0 <= out[f"{m}_ap"] <= 1.0 and 0.0 <= out[f"{m}_ap50"] <= 1.0
    assert math.isclose(out["wscol_minus_mt_ap"], out["wscol_ap"] - out["mt_ap"])
    assert {"pse_acc", "cluster_acc", "fg_only_share"} <= set(out)
    assert set(wscol.SECTIONS) == {"wscol"}


def test_weight_zero_is_the_harness_mean_teacher() -> None:
    ctx = _ctx()
    source = source_detector(ctx, torch.Generator().manual_seed(1))
    cfg = PRESETS["demo"]
    a = adapt(
        ctx, MeanTeacher(), config=cfg, generator=torch.Generator().manual_seed(2), source=source
    )
    b = wscol.adapt_wscol(
        ctx, config=cfg, generator=torch.Generator().manual_seed(2), source=source, weight=0.0
    )
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_wscol_term_changes_the_student_and_logs_accuracies() -> None:
    ctx = _ctx()
    source = source_detector(ctx, torch.Generator().manual_seed(1))
    # a low pseudo-label threshold, so that the term has foreground proposals whatever the
    # (cached, barely trained) source detector scores
    cfg = SFDAConfig(steps=3, batch_size=4, threshold=0.05)
    log: dict[str, float] = {}
    a = adapt(
        ctx, MeanTeacher(), config=cfg, generator=torch.Generator().manual_seed(2), source=source
    )
    b = wscol.adapt_wscol(
        ctx, config=cfg, generator=torch.Generator().manual_seed(2), source=source, log=log
    )
    diff = sum(
        float((va - vb).abs().sum())
        for va, vb in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
        if va.is_floating_point()
    )
    assert diff > 0
    for k in ("pse_acc", "cluster_acc", "fg_only_share"):
        assert 0.0 <= log[k] <= 1.0  # the term ran (fg_only_share is NaN when it never did)


def test_features_hook_aligns_with_anchors() -> None:
    ctx = _ctx()
    model = source_detector(ctx, torch.Generator().manual_seed(1))
    logits, _, feats = forward_with_features(model, ctx.target_test.images[:2])
    assert feats.shape[:2] == logits.shape[:2] == (2, len(model.anchors))
    # the class logits are the cls conv of those features: a 1x1 check on the level sizes
    assert len(model.num_anchors_per_level) == 3


def test_wscol_and_grounded_teacher_share_one_baseline(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from posneg.bench import _det_sfda as sfda
    from posneg.bench import _detection_gt as gt

    ctx = make_context(1, preset="demo", train_scenes=40, target_scenes=8, steps=5)
    runs: list[str] = []
    real = sfda.adapt

    def counting(ctx, method, **kw):  # type: ignore[no-untyped-def]
        runs.append(method.name)
        return real(ctx, method, **kw)

    monkeypatch.setattr(sfda, "adapt", counting)
    monkeypatch.setattr(wscol, "adapt", counting)
    monkeypatch.setattr(gt, "adapt", counting)
    a = wscol.run_wscol(ctx, torch.Generator().manual_seed(4), PRESETS["demo"])
    b = gt.run_gt(
        ctx, torch.Generator().manual_seed(4), PRESETS["demo"], methods=gt.DEFAULT_METHODS
    )
    assert runs == ["mean_teacher", "wscol", "grounded_teacher"]  # one mean teacher for both
    for m in ("source", "adabn", "mt"):
        assert a[f"{m}_ap"] == b[f"{m}_ap"] and a[f"{m}_ap50"] == b[f"{m}_ap50"]
    assert "gt_expert_ap" not in b and "expert_ap" not in b
