"""`posneg bench reasoning` on a tiny preset, plus the arithmetic task's exact checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from posneg.bench._arith import answer_correct, make_problems, parse_completion, step_correct
from posneg.bench.reasoning import BenchConfig, collect_sections, run


def test_arith_exact_checks() -> None:
    p = make_problems(20, generator=torch.Generator().manual_seed(0))
    good = p.completions()
    assert answer_correct(p, good).all() and step_correct(p, good).all()
    assert parse_completion("1,2,x=7.", 3) == ([1, 2, None], 7)
    bad = ["0,0,0=0."] * 20
    assert not (answer_correct(p, bad) == answer_correct(p, good)).all()


def test_bench_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSNEG_CACHE", str(tmp_path / "cache"))
    cfg = BenchConfig(
        pretrain_steps=3,
        iterations=1,
        prompts=4,
        n_test=8,
        r_samples=2,
        seeds=1,
        out=str(tmp_path / "out"),
        quiet=True,
    )
    result = run(cfg)
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    r = data["results"]["runs"][0]
    assert len(r["raft"]["reward"]) == 2 and len(r["resampling"]["measured"]) == 5
    assert 0 <= r["resampling"]["ceiling"] <= 1
    assert (tmp_path / "out" / "reasoning.png").exists()
    assert result["report"]
    assert isinstance(collect_sections(), dict)
