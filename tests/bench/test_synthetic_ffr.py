"""The ffr section of `posneg bench synthetic` on the demo preset (plumbing, one seed)."""

from __future__ import annotations

import math

import torch

from posneg.bench._synthetic_context import make_context
from posneg.bench._synthetic_ffr import SECTIONS, claims


def test_ffr_section_demo() -> None:
    ctx = make_context(preset="demo")
    ((name, section),) = SECTIONS.items()
    state = torch.get_rng_state()
    out = section(ctx, torch.Generator().manual_seed(0))
    again = section(ctx, torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())
    numbers = {k: v for k, v in out.items() if not k.startswith("_") and not isinstance(v, str)}
    assert numbers and all(math.isfinite(v) for v in numbers.values())
    assert numbers == {k: v for k, v in again.items() if k in numbers}
    assert out["_images"].dim() == 4
    agg = {f"{name}/{k}": (float(v), 0.0) for k, v in numbers.items()}
    lines = claims(agg)
    assert lines and all("claim" in line or "flip test" in line for line in lines)
