"""Sections ``perstep`` and ``disco`` of `posneg bench reasoning` on tiny presets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from posneg.bench._reasoning_disco import _truth, disco_section, make_nli
from posneg.bench._reasoning_perstep import perstep_section, sequence_logps, split_steps
from posneg.bench._tiny_gpt import CharTokenizer, TinyGPTConfig, pretrained_gpt
from posneg.bench.reasoning import BenchConfig, _context, collect_sections


def _ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("POSNEG_CACHE", str(tmp_path / "cache"))
    cfg = BenchConfig(preset="demo", pretrain_steps=3, iterations=1, prompts=12, n_test=8)
    model = pretrained_gpt(TinyGPTConfig(steps=3))
    return _context(cfg, model, 0, torch.device("cpu"))


def test_sections_are_collected() -> None:
    found = collect_sections()
    assert "perstep" in found and "disco" in found


def test_split_steps() -> None:
    assert split_steps("1,2,7=7.", 3) == ["1,", "2,", "7=7."]
    assert split_steps("1,2=7.", 3) is None
    assert split_steps("12,7=7.", 3) is None


def test_sequence_logps_against_token_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _ctx(tmp_path, monkeypatch)
    model = ctx.model  # type: ignore[attr-defined]
    prompts, resp = ["1+2*3:", "1+2*3:3,"], ["3,9,7=7.", "9=9."]
    with torch.no_grad():
        got = sequence_logps(model, prompts, resp)
    tok = CharTokenizer()
    for i in range(2):
        ids = torch.tensor([tok.encode(prompts[i] + resp[i])])
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
        want = sum(float(lp[t - 1, ids[0, t]]) for t in range(len(prompts[i]), ids.shape[1]))
        assert float(got[i]) == pytest.approx(want, abs=1e-4)


def test_perstep_section_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _ctx(tmp_path, monkeypatch)
    out = perstep_section(ctx, torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    for arm in ("start", "sft_positives", "outcome_dpo", "per_step_dpo"):
        assert 0.0 <= out[f"{arm}_accuracy"] <= 1.0
        assert 0.0 <= out[f"{arm}_step_accuracy"] <= out[f"{arm}_accuracy"] + 1.0
    assert out["per_step_pairs"] <= out["outcome_pairs"]


def test_disco_task_and_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prem, hyp, lab = make_nli(50, shortcut=0.9, generator=torch.Generator().manual_seed(1))
    assert [_truth(p, h) for p, h in zip(prem, hyp, strict=True)] == lab
    ctx = _ctx(tmp_path, monkeypatch)
    out = disco_section(ctx, torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    assert out["accepted"] + out["heuristic_rejected"] <= out["proposals"]
    for arm in ("original", "unfiltered", "disco"):
        assert 0.0 <= out[f"{arm}_stress_accuracy"] <= 1.0
