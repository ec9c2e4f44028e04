"""`posneg bench segmentation`: a tiny preset runs, writes its reports and is deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from posneg.bench import _harness as harness
from posneg.bench._segmentation_data import OBSERVER_HABITS, largest_component, make_frames
from posneg.bench.segmentation import BenchConfig, run
from posneg.selection.observers import frame_labels

TINY = {
    "size": 8,
    "train_digits": 40,
    "epochs": 1,
    "classifier_epochs": 1,
    "test_fraction": 0.05,
    "batch_size": 16,
    "width": 2,
    "quiet": True,
}


def test_tiny_run_writes_reports_and_repeats(tmp_path: Path) -> None:
    res = run(BenchConfig(seeds=1, out=str(tmp_path / "a"), **TINY))  # type: ignore[arg-type]
    assert [a["strategy"] for a in res["aggregate"]] == ["random", "vote", "mean"]
    assert (tmp_path / "a" / "results.md").exists() and res["plots"][0].exists()
    payload = json.loads((tmp_path / "a" / "results.json").read_text())
    run0 = payload["results"]["runs"][0]
    assert len(run0["sweep"]) == 20 and run0["sweep"][0]["theta"] == 0.0
    assert 0.0 <= run0["fp_rate_gate"] <= 1.0 and 0.0 <= run0["fn_rate_nogate"] <= 1.0
    again = run(BenchConfig(seeds=1, out=str(tmp_path / "b"), **TINY))  # type: ignore[arg-type]
    key = ("fp_rate_nogate", "fp_rate_gate", "dice_accepted_gate")
    assert [[r[k] for k in key] for r in again["runs"]] == [
        [r[k] for k in key] for r in res["runs"]
    ]


def test_frames_and_observers() -> None:
    digits = torch.zeros(30, 1, 8, 8)
    digits[:, :, 2:6, 2:6] = 1.0  # survives a 1-px erosion
    f = make_frames(digits, 20, noise=0.1, clutter=0.5, p_miss=0.0, p_false=0.0,
                    generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert f.observers.shape == (50, len(OBSERVER_HABITS), 8, 8)
    assert int(f.has_object.sum()) == 30
    empty = f.observers[~f.has_object].reshape(20, -1)
    assert not bool(empty.any())  # no false marks with p_false = 0
    nonempty = f.truth[f.has_object].reshape(30, -1).any(1)
    assert torch.equal(frame_labels(f.observers)[f.has_object], nonempty)


def test_largest_component_keeps_one_blob() -> None:
    m = torch.zeros(1, 6, 6)
    m[0, 0, 0] = 1
    m[0, 3:5, 3:5] = 1
    kept = largest_component(m.numpy())
    assert kept.sum() == 4 and kept[0, 0, 0] == 0


def test_bad_values_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(harness.UsageError, match="--strategy"):
        run(BenchConfig(strategies=("staple",), out=str(tmp_path)))
    with pytest.raises(harness.UsageError, match="--size"):
        run(BenchConfig(size=18, out=str(tmp_path)))
    with pytest.raises(harness.UsageError, match="--theta"):
        run(BenchConfig(theta=1.5, out=str(tmp_path)))
