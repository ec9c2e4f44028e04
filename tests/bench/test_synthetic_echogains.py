"""The echogains section of `posneg bench synthetic`, demo preset (plumbing, not the claim)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from posneg.bench import _synthetic_echogains as part
from posneg.bench._synthetic_context import SyntheticContext, make_context


@pytest.fixture(scope="module")
def ctx() -> SyntheticContext:
    return make_context(preset="demo")


def test_section_returns_finite_metrics_and_a_claim(ctx: SyntheticContext) -> None:
    ((name, section),) = part.SECTIONS.items()
    out = section(ctx, torch.Generator().manual_seed(0))
    numbers = {k: v for k, v in out.items() if isinstance(v, float)}
    assert numbers and all(math.isfinite(v) for v in numbers.values())
    agg = {f"{name}/{k}": (v, 0.0) for k, v in numbers.items()}
    lines = part.claims(agg)
    assert len(lines) == 1 and ("as claimed" in lines[0] or "NOT" in lines[0])
    assert part.claims({}) == []


def test_section_is_seeded(ctx: SyntheticContext) -> None:
    ((_, section),) = part.SECTIONS.items()
    a = section(ctx, torch.Generator().manual_seed(1))
    b = section(dataclasses.replace(ctx), torch.Generator().manual_seed(1))
    assert {k: v for k, v in a.items() if isinstance(v, float)} == {
        k: v for k, v in b.items() if isinstance(v, float)
    }
