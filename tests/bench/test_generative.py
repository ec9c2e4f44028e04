"""`posneg bench generative` on its demo preset (untrained stand-in, few samples): plumbing only."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("matplotlib")

from posneg.bench import generative
from posneg.bench._ddpm import TinyUNet, ddim_sample, make_scheduler
from posneg.bench._harness import UsageError


def test_demo_writes_report_grid_and_perp_neg_metrics(tmp_path: Path) -> None:
    cfg = replace(generative.DEMO_CONFIG, out=str(tmp_path), quiet=True)
    result = generative.run(cfg)
    payload = json.loads((tmp_path / "results.json").read_text())
    agg = payload["results"]["aggregate"]
    for key in ("perp_neg/3vs8/cfg/p_main", "perp_neg/1vs7/perp_neg/w=2/p_neg"):
        assert key in agg and 0.0 <= agg[key][0] <= 1.0
    assert (tmp_path / "generative_samples.png").stat().st_size > 0
    assert "UNTRAINED" in (tmp_path / "results.md").read_text()
    assert Path(result["report"]).exists()


def test_unknown_section_and_bad_numbers(tmp_path: Path) -> None:
    base = replace(generative.DEMO_CONFIG, out=str(tmp_path), quiet=True)
    with pytest.raises(UsageError, match="--section: unknown nope"):
        generative.run(replace(base, sections=("nope",)))
    with pytest.raises(UsageError, match="--sample-steps"):
        generative.run(replace(base, sample_steps=0))
    with pytest.raises(UsageError, match="--preset"):
        generative.run(replace(base, preset="huge"))


def test_stand_in_has_unet2dmodel_signature_and_attention() -> None:
    from diffusers.models.attention_processor import Attention

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = TinyUNet(8).eval()
    assert any(isinstance(mod, Attention) for mod in m.modules())
    x = torch.zeros(2, 1, 8, 8)
    assert m(x, torch.tensor([5, 5]), class_labels=torch.tensor([0, 10])).sample.shape == x.shape
    out = ddim_sample(
        lambda xt, t: m(xt, t, class_labels=torch.zeros(len(xt), dtype=torch.long)).sample,
        3,
        scheduler=make_scheduler(),
        steps=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.shape == (3, 1, 8, 8) and out.abs().max() <= 1


def test_demo_config_is_small() -> None:
    d = asdict(generative.DEMO_CONFIG)
    assert d["ddpm_steps"] == 0 and d["seeds"] == 1
