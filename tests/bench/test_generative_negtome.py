"""The "negtome" section of `posneg bench generative` on an untrained tiny stand-in (plumbing)."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("diffusers")

from posneg.bench._ddpm import TinyUNet, make_scheduler
from posneg.bench._generative_context import GenerativeContext
from posneg.bench._generative_negtome import RUNS, SECTIONS, claims, diversity
from posneg.bench._judge import Judge


def _ctx() -> GenerativeContext:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet, judge = TinyUNet(8).eval(), Judge().eval()
    x = torch.zeros(4, 1, 8, 8)
    y = torch.arange(4)
    return GenerativeContext(
        train_x=x,
        train_y=y,
        test_x=x,
        test_y=y,
        judge=judge,
        ddpm=unet,
        scheduler=make_scheduler(),
        make_unet=lambda: unet,
        sample_steps=5,  # timesteps 800, 600, ...: one inside the window
        preset="demo",
        extra={"negtome_batch": 3},
    )


def test_diversity_against_loops_and_vendi_limits() -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.rand(5, 6, generator=g, dtype=torch.float64)
    d = diversity(f)
    pairs = [(i, j) for i in range(5) for j in range(5) if i != j]
    dist = sum(float((f[i] - f[j]).norm()) for i, j in pairs) / len(pairs)
    cos = sum(float(f[i] @ f[j] / (f[i].norm() * f[j].norm())) for i, j in pairs) / len(pairs)
    assert d["pairwise"] == pytest.approx(dist)
    assert d["one_minus_cos"] == pytest.approx(1 - cos)
    assert d["to_ref"] == pytest.approx(sum(float((f[0] - f[j]).norm()) for j in range(1, 5)) / 4)
    assert diversity(torch.ones(4, 3) * torch.arange(1.0, 5.0)[:, None])["vendi"] == pytest.approx(
        1.0
    )
    assert diversity(torch.eye(4))["vendi"] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="diversity: features"):
        diversity(torch.ones(1, 3))


def test_section_runs_restores_processors_and_negtome_changes_samples() -> None:
    ctx = _ctx()
    before = [type(m.processor) for m in [ctx.ddpm.mid_attn]]  # type: ignore[union-attr]
    out = SECTIONS["negtome"](ctx, torch.Generator().manual_seed(0))
    assert [type(m.processor) for m in [ctx.ddpm.mid_attn]] == before  # type: ignore[union-attr]
    for name, *_ in RUNS:
        assert 0.0 <= out[f"{name}/acc"] <= 1.0
        assert 1.0 - 1e-6 <= out[f"{name}/vendi"] <= 3.0 + 1e-6
        assert math.isfinite(out[f"{name}/pairwise"])
    assert out["a=1.5/pairwise"] != out["off/pairwise"]  # merging acted on the samples
    assert out["_images"].shape == (2 * 3 * 3, 1, 8, 8) and out["_grid_rows"] == 2
    again = SECTIONS["negtome"](ctx, torch.Generator().manual_seed(0))
    assert again["a=0.9/vendi"] == out["a=0.9/vendi"]  # seeded


def test_claims_lines() -> None:
    agg = {
        "negtome/off/vendi": (1.3, 0.01),
        "negtome/off/pairwise": (14.0, 0.1),
        "negtome/off/acc": (0.9, 0.01),
        "negtome/a=0.9/vendi": (1.5, 0.01),
        "negtome/a=0.9/pairwise": (17.0, 0.1),
        "negtome/a=0.9/acc": (0.89, 0.01),
        "negtome/off/scale=1/vendi": (1.4, 0.01),
        "negtome/off/scale=1/pairwise": (15.0, 0.1),
        "negtome/off/scale=1/acc": (0.85, 0.01),
    }
    lines = claims(agg)
    assert len(lines) == 1 and "(a=0.9)" in lines[0] and ": holds;" in lines[0]
    assert "off/scale=1" in lines[0] and "is higher" in lines[0]
    assert claims({}) == []
