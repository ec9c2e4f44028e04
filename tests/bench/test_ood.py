"""posneg.bench.ood on a tiny preset: runners collected, metrics and reports written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posneg.bench import _harness as harness
from posneg.bench.ood import RUNNER_MODULES, BenchConfig, collect_runners, run


def test_tiny_run(tmp_path: Path) -> None:
    cfg = BenchConfig(
        detectors=("msp", "knn", "mahalanobis_uniform"),
        epochs=1,
        seeds=2,
        plot_detector="msp",
        out=str(tmp_path),
        quiet=True,
    )
    result = run(cfg)
    payload = json.loads((tmp_path / "results.json").read_text())
    sets = {a["set"] for a in payload["results"]["aggregate"]}
    assert {"near", "far_photo", "far_noise"} <= sets
    for a in result["aggregate"]:
        assert 0.0 <= a["auroc_mean"] <= 1.0 and a["n_seeds"] == 2
    assert (tmp_path / "scores_msp.png").exists()
    assert "FPR95" in (tmp_path / "results.md").read_text()


def test_runner_modules_and_unknown_detector(tmp_path: Path) -> None:
    assert RUNNER_MODULES[:2] == ("_ood_baselines", "_ood_mahalanobis")
    runners = collect_runners()
    assert {"msp", "maxlogit", "energy", "knn", "mahalanobis_adv"} <= set(runners)
    with pytest.raises(harness.UsageError, match="--detector: unknown nope"):
        run(BenchConfig(detectors=("nope",), out=str(tmp_path), quiet=True))


def test_mnist1d_tiny(tmp_path: Path) -> None:
    cfg = BenchConfig(
        detectors=("msp", "mahalanobis_last"),
        dataset="mnist1d",
        epochs=1,
        seeds=1,
        plot_detector="none",
        out=str(tmp_path),
        quiet=True,
    )
    result = run(cfg)
    sets = {a["set"] for a in result["aggregate"]}
    assert {"near", "far_noise", "far_sine"} <= sets
    assert result["config"]["id"].startswith("mnist1d")
    with pytest.raises(harness.UsageError, match="--dataset: unknown data set 'x'"):
        run(BenchConfig(dataset="x", out=str(tmp_path), quiet=True))
