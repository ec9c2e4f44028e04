"""Fast checks of `posneg bench selection` (tiny presets)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from posneg.bench import _harness as harness
from posneg.bench._foraug import compose
from posneg.bench._selection_train import augment
from posneg.bench.selection import DEMO_CONFIG, BenchConfig, demo, run


def test_demo_writes_report(tmp_path: Path) -> None:
    summary = demo(tmp_path)
    assert summary.family == "selection"
    assert [r[0] for r in summary.rows] == ["full", "coreset@0.3", "random@0.3"]
    payload = json.loads((tmp_path / "results.json").read_text())
    curves = payload["results"]["coreset"]["runs"]["coreset@0.3"][0]
    assert len(curves["acc"]) == DEMO_CONFIG.epochs
    # coreset part: subset + augmented copy = 2 |S| examples per epoch (train.sh protocol)
    n_full = payload["results"]["coreset"]["runs"]["full"][0]["examples_per_epoch"][0]
    assert curves["examples_per_epoch"][0] < n_full
    assert (tmp_path / "coreset_accuracy_vs_time.png").is_file()


def test_foraug_part_tiny(tmp_path: Path) -> None:
    cfg = BenchConfig(
        parts=("foraug",),
        foraug_epochs=1,
        patches_per_family=2,
        seeds=1,
        out=str(tmp_path),
        quiet=True,
    )
    result = run(cfg)
    methods = [a["method"] for a in result["foraug"]["aggregate"]]
    assert methods == ["correlated", "foraug-all", "foraug-same"]
    assert result["foraug"]["verdict"] in ("holds", "does not hold")
    assert (tmp_path / "foraug_background_swap.png").is_file()


def test_compose_and_augment_shapes() -> None:
    g = torch.Generator().manual_seed(0)
    fg = torch.rand(3, 3, 16, 16, generator=g)
    alpha = (fg.mean(1, keepdim=True) > 0.5).float()
    out = compose(fg, alpha, torch.zeros(3, 3, 32, 32), g)
    assert out.shape == (3, 3, 32, 32) and float(out.abs().sum()) > 0
    x = torch.rand(4, 1, 8, 8, generator=g)
    assert augment(x, g).shape == x.shape


def test_bad_config_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(harness.UsageError, match="--parts"):
        run(replace(DEMO_CONFIG, parts=("nope",), out=str(tmp_path)))
    with pytest.raises(harness.UsageError, match="--fractions"):
        run(replace(DEMO_CONFIG, fractions=(0.0,), out=str(tmp_path)))


def test_augment_is_a_one_pixel_shift_without_noise() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.zeros(20, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1.0
    out = augment(x, g, noise=0.0)
    for i in range(20):
        ys, xs = torch.nonzero(out[i, 0], as_tuple=True)
        assert ys.min() in (2, 3, 4) and xs.min() in (2, 3, 4)
        assert int(out[i].sum()) == 4
