"""The runner of `posneg bench synthetic`: sections, aggregation, report files, demo."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from posneg.bench import _harness as harness
from posneg.bench import synthetic


def _cfg(tmp_path, **kw):
    base = {**asdict(synthetic.DEMO_CONFIG), "out": str(tmp_path), "quiet": True}
    return synthetic.BenchConfig(**{**base, **kw})


def test_run_writes_the_report_with_mean_std_per_metric(tmp_path):
    result = synthetic.run(_cfg(tmp_path, sections=("gda", "codsa"), seeds=2, sample_steps=2))
    assert result["sections"] == ["gda", "codsa"]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["config"]["seed_list"] == [0, 1]
    runs = data["results"]["runs"]
    assert {r["seed"] for r in runs} == {0, 1}
    assert "gda/m3_gamma1/gap" in data["results"]["aggregate"]
    md = (tmp_path / "results.md").read_text()
    assert "GDA claim" in md and "CoDSA claim" in md
    assert (tmp_path / "synthetic_metrics.png").stat().st_size > 0
    assert (tmp_path / "synthetic_samples.png").stat().st_size > 0


def test_unknown_section_and_bad_numbers_are_usage_errors(tmp_path):
    with pytest.raises(harness.UsageError, match="--section: unknown nope"):
        synthetic.run(_cfg(tmp_path, sections=("nope",)))
    with pytest.raises(harness.UsageError, match="--sample-steps"):
        synthetic.run(_cfg(tmp_path, sample_steps=0))
    with pytest.raises(harness.UsageError, match="--preset must be default or demo"):
        synthetic.run(_cfg(tmp_path, preset="full"))


def test_parts_name_the_section_modules():
    assert synthetic.PARTS[:2] == ("_synthetic_mixing", "_synthetic_codsa")
    assert all(p.startswith("_synthetic_") for p in synthetic.PARTS)
