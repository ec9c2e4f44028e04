"""`posneg bench recsys` on a tiny preset (the function, not the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posneg.bench import recsys
from posneg.bench._harness import UsageError


def test_tiny_run_writes_report(tmp_path: Path) -> None:
    cfg = recsys.BenchConfig(
        hidden=(0.3,),
        variants=("bpr", "nbpo"),
        epochs=2,
        users=20,
        items=40,
        dim=4,
        cet_epochs=1,
        cet_queries=12,
        seeds=1,
        out=str(tmp_path),
        quiet=True,
    )
    result = recsys.run(cfg)
    payload = json.loads((tmp_path / "results.json").read_text())
    assert len(payload["results"]["mf_runs"]) == 2 and len(payload["results"]["cet_runs"]) == 3
    md = (tmp_path / "results.md").read_text()
    assert "GENERATED" in md and "Claim NBPO > BPR" in md and "CET claims" in md
    assert (tmp_path / "recsys.png").exists() and result["plots"]
    for row in result["mf_aggregate"]:
        assert 0 <= row["ndcg@10_mean"] <= 1


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--variants: unknown"):
        recsys.run(recsys.BenchConfig(variants=("warp",), out=str(tmp_path), quiet=True))
    with pytest.raises(UsageError, match="--hidden"):
        recsys.run(recsys.BenchConfig(hidden=(1.5,), out=str(tmp_path), quiet=True))
