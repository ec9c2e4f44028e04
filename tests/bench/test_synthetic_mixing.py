"""The GDA section of `posneg bench synthetic` (demo preset, untrained DDPM: plumbing)."""

from __future__ import annotations

import torch

from posneg.bench import _synthetic_mixing as section
from posneg.bench._synthetic_context import make_context


def test_gda_section_reports_gap_error_and_bgmm_prediction():
    ctx = make_context(seed=0, preset="demo", ddpm_steps=0, sample_steps=2)
    out = section.gda_section(ctx, torch.Generator().manual_seed(0))
    for key in ("m3_gamma0/gap", "m3_gamma1/gap", "m3_gamma1/test_err", "m3_gamma1/bgmm_gap"):
        assert 0.0 <= out[key] <= 1.0
    assert out["_images"].shape[1:] == (1, 8, 8)
    agg = {
        f"gda/{k}": (float(v), 0.0)
        for k, v in out.items()
        if not isinstance(v, str) and not k.startswith("_")
    }
    lines = section.claims(agg)
    assert len(lines) == 2 and all("GDA claim" in line for line in lines)
    assert section.claims({}) == []
