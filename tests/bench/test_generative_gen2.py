"""The "ant" and "augcond" sections of `posneg bench generative` on tiny settings."""

from __future__ import annotations

import math

import pytest
import torch

from posneg.bench._generative_ant import (
    SECTIONS as ANT_SECTIONS,
)
from posneg.bench._generative_ant import (
    frechet_distance,
    local_context,
)
from posneg.bench._generative_augcond import SECTIONS as AUG_SECTIONS


@pytest.fixture(scope="module")
def ctx():  # type: ignore[no-untyped-def]
    return local_context(
        0,
        "demo",
        ant_steps=5,
        ant_samples_per_class=3,
        augcond_steps=5,
        augcond_per_class=2,
    )


def test_frechet_distance_zero_on_same_set_and_grows_with_shift() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 4, generator=g, dtype=torch.float64)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + 1.0) == pytest.approx(4.0, rel=1e-6)  # |mu shift|^2


def test_ant_section_runs_and_reports_each_variant(ctx) -> None:  # type: ignore[no-untyped-def]
    out = ANT_SECTIONS["ant"](ctx, torch.Generator().manual_seed(0))
    for name in ("vanilla", "ant_uniform", "ant_snr"):
        assert math.isfinite(out[f"fd_{name}"])
        assert 0.0 <= out[f"acc_{name}"] <= 1.0
    assert out["_images"].shape[1:] == (1, 8, 8)
    again = ANT_SECTIONS["ant"](ctx, torch.Generator().manual_seed(0))
    assert again["fd_vanilla"] == out["fd_vanilla"]  # seeded


def test_augcond_section_runs(ctx) -> None:  # type: ignore[no-untyped-def]
    out = AUG_SECTIONS["augcond"](ctx, torch.Generator().manual_seed(1))
    for shots in (1, 5):
        for name in ("class_only", "image", "augmented", "real_only"):
            assert 0.0 <= out[f"acc_{shots}shot_{name}"] <= 1.0
        assert math.isfinite(out[f"div_{shots}shot_augmented"])
