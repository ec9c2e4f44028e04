"""`posneg bench verification` (posneg.bench.verification) and its metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from posneg.bench._harness import UsageError
from posneg.bench._verification_metrics import (
    pair_scores,
    reportable_fars,
    roc_sweep,
    tar_at_far,
)
from posneg.bench.verification import BenchConfig, demo, run


def _naive_tar_at_far(pos: np.ndarray, neg: np.ndarray, f: float) -> float:
    """Try every score as a threshold (accept score >= t), plus +inf; O(n^2)."""
    best = 0.0
    for t in [np.inf, *pos.tolist(), *neg.tolist()]:
        far = float(np.mean(neg >= t))
        if far <= f:
            best = max(best, float(np.mean(pos >= t)))
    return best


@pytest.mark.parametrize("seed", range(3))
def test_tar_at_far_against_naive_sweep_and_sklearn(seed: int) -> None:
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(seed)
    pos = np.round(rng.normal(0.6, 0.2, 150), 2)  # rounding: ties between and within classes
    neg = np.round(rng.normal(0.2, 0.2, 400), 2)
    fars = (0.5, 0.1, 0.05, 0.01, 0.0025)
    got = tar_at_far(pos, neg, fars)
    fpr, tpr, _ = roc_curve(np.r_[np.ones(pos.size), np.zeros(neg.size)], np.r_[pos, neg])
    for f in fars:
        assert got[f] == pytest.approx(_naive_tar_at_far(pos, neg, f))
        assert got[f] == pytest.approx(tpr[fpr <= f].max())


def test_roc_sweep_ends_and_errors() -> None:
    far, tar = roc_sweep(np.array([0.9, 0.8]), np.array([0.1, 0.85]))
    assert (far[0], tar[0]) == (0.0, 0.0) and (far[-1], tar[-1]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="roc_sweep: need at least one positive"):
        roc_sweep(np.array([]), np.array([0.1]))
    assert reportable_fars(1000, (1e-1, 1e-2, 1e-3)) == [0.1, 0.01]


def test_pair_scores_counts_each_pair_once() -> None:
    emb = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    pos, neg = pair_scores(emb, labels)
    assert pos.size == 1 + 3 + 1 and neg.size == 21 - 5
    assert np.all(np.abs(pos) <= 1 + 1e-12)


def test_run_tiny_preset_writes_reports(tmp_path: Path) -> None:
    cfg = BenchConfig(
        techniques=("softmax", "arcface+unpg"),
        dataset="digits",
        epochs=1,
        seeds=2,
        quiet=True,
        out=str(tmp_path),
    )
    result = run(cfg)
    assert [a["technique"] for a in result["aggregate"]] == ["softmax", "arcface+unpg"]
    assert result["config"]["reported_fars"] == [0.1, 0.01, 0.001, 0.0001]
    for r in result["runs"]:
        assert 0.0 <= r["tar@0.001"] <= r["tar@0.01"] <= r["tar@0.1"] <= 1.0
        assert r["n_negative_pairs"] > 100_000  # held-out identities only (4 digits)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["train_classes"] == 6
    assert (tmp_path / "results.md").read_text().startswith("# posneg bench verification")
    assert (tmp_path / "roc.png").stat().st_size > 0


def test_run_is_deterministic(tmp_path: Path) -> None:
    cfg = BenchConfig(techniques=("arcface+unpg",), dataset="digits", epochs=1, seeds=1, quiet=True)
    a = run(BenchConfig(**{**cfg.__dict__, "out": str(tmp_path / "a")}))["runs"][0]
    b = run(BenchConfig(**{**cfg.__dict__, "out": str(tmp_path / "b")}))["runs"][0]
    assert a["tar@0.01"] == b["tar@0.01"] and a["epoch_losses"] == b["epoch_losses"]


def test_bad_options() -> None:
    with pytest.raises(UsageError, match="--technique: unknown 'sphereface'"):
        run(BenchConfig(techniques=("sphereface",), quiet=True))
    with pytest.raises(UsageError, match="--dataset: unknown 'cifar'"):
        run(BenchConfig(dataset="cifar", quiet=True))
    with pytest.raises(UsageError, match="--train-classes"):
        run(BenchConfig(train_classes=10, quiet=True))
    with pytest.raises(UsageError, match="--wisk"):
        run(BenchConfig(wisk=-1.0, quiet=True))


def test_demo(tmp_path: Path) -> None:
    summary = demo(tmp_path)
    assert summary.family == "verification"
    assert [r[0] for r in summary.rows] == ["cosface", "cosface+unpg"]
    assert summary.report.exists()
