"""Every section of `posneg bench synthetic` on the demo preset: plumbing, not the claims.

One protocol for each module in :data:`posneg.bench.synthetic.PARTS`: finite metrics, the
same metrics again from the same generator, the global RNG untouched, and a claims line for
each claim the section checks (none from an empty aggregate). The claims themselves are
measured by the default preset (docs/synthetic.md).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any

import pytest
import torch

from posneg.bench._synthetic_context import SyntheticContext, make_context
from posneg.bench.synthetic import PARTS


@pytest.fixture(scope="module")
def ctx() -> SyntheticContext:
    return make_context(preset="demo")


def _numbers(out: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in out.items()
        if not k.startswith("_") and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


@pytest.mark.parametrize("part", PARTS)
def test_section_is_finite_seeded_and_states_its_claim(part: str, ctx: SyntheticContext) -> None:
    module = importlib.import_module(f"posneg.bench.{part}")
    assert module.SECTIONS, part
    for name, section in module.SECTIONS.items():
        state = torch.get_rng_state()
        out = section(ctx, torch.Generator().manual_seed(1))
        again = section(dataclasses.replace(ctx), torch.Generator().manual_seed(1))
        assert torch.equal(state, torch.get_rng_state()), (part, "global RNG touched")
        numbers = _numbers(out)
        assert numbers and all(math.isfinite(v) for v in numbers.values()), (part, numbers)
        assert _numbers(again) == numbers, part
        if "_images" in out:
            assert out["_images"].dim() == 4, part
        claims = getattr(module, "claims", None)
        if claims is not None:
            agg = {f"{name}/{k}": (v, 0.0) for k, v in numbers.items()}
            assert claims(agg), part
            assert claims({}) == [], part
