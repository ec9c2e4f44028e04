"""`posneg bench semisup`: a tiny preset runs, writes its reports and is deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posneg.bench import _harness as harness
from posneg.bench.semisup import BenchConfig, run

TINY = {"steps": 6, "eval_every": 3, "batch_size": 8, "uratio": 2, "size": 8, "quiet": True}


def test_tiny_run_writes_reports_and_repeats(tmp_path: Path) -> None:
    cfg = BenchConfig(seeds=1, out=str(tmp_path / "a"), saa_start=0.0, **TINY)  # type: ignore[arg-type]
    res = run(cfg)
    assert [a["method"] for a in res["aggregate"]] == ["supervised", "fixmatch", "fixmatch+saa"]
    assert (tmp_path / "a" / "results.md").exists() and res["plots"][0].exists()
    payload = json.loads((tmp_path / "a" / "results.json").read_text())
    assert "gap" in payload["results"]
    saa = next(r for r in res["runs"] if r["method"] == "fixmatch+saa")
    assert len(saa["naive_fraction_curve"]) == 2  # mask updated at each evaluation
    again = run(BenchConfig(seeds=1, out=str(tmp_path / "b"), saa_start=0.0, **TINY))  # type: ignore[arg-type]
    assert [r["accuracy"] for r in again["runs"]] == [r["accuracy"] for r in res["runs"]]


def test_bad_values_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(harness.UsageError, match="--method"):
        run(BenchConfig(methods=("mixmatch",), out=str(tmp_path)))
    with pytest.raises(harness.UsageError, match="--threshold"):
        run(BenchConfig(threshold=1.5, out=str(tmp_path)))
