"""The "unlearn" section of `posneg bench generative` and its GAN, on tiny settings."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from posneg.bench._gan import Discriminator, Generator, gan_step, make_optimizers, pretrained_gan
from posneg.bench._generative_unlearn import SECTIONS, frechet, local_context


@pytest.fixture(scope="module")
def ctx():  # type: ignore[no-untyped-def]
    return local_context(
        0,
        "demo",
        unlearn_gan_steps=20,
        unlearn_adapt_steps=3,
        unlearn_steps=4,
        unlearn_eval_every=2,
        unlearn_feedback=200,
        unlearn_cache=False,
    )


def test_frechet_is_zero_on_one_set_and_the_mean_shift_squared_for_a_shift() -> None:
    a = torch.randn(300, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert frechet(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet(a, a + 2.0) == pytest.approx(12.0, rel=1e-6)


def test_unlearn_section_reports_both_variants_and_is_seeded(ctx) -> None:  # type: ignore[no-untyped-def]
    out = SECTIONS["unlearn"](ctx, torch.Generator().manual_seed(0))
    for name in ("plain", "repel"):
        for step in (0, 2, 4):
            assert 0.0 <= out[f"share_step{step}_{name}"] <= 1.0
        assert 0.0 <= out[f"share_final_{name}"] <= 1.0
        assert math.isfinite(out[f"distance_{name}"])
    assert out["share_step0_plain"] == out["share_step0_repel"] == out["share_pretrained"]
    assert out["_images"].shape[1:] == (1, 8, 8)
    again = SECTIONS["unlearn"](ctx, torch.Generator().manual_seed(0))
    assert again["share_final_repel"] == out["share_final_repel"]
    assert again["distance_repel"] == out["distance_repel"]


def test_gamma_zero_repel_run_equals_plain_fine_tuning(ctx) -> None:  # type: ignore[no-untyped-def]
    extra = dict(ctx.extra, unlearn_gamma=0.0, unlearn_kind="l2", unlearn_steps=2)
    out = SECTIONS["unlearn"](
        dataclasses.replace(ctx, extra=extra), torch.Generator().manual_seed(3)
    )
    assert out["distance_plain"] == pytest.approx(out["distance_repel"], rel=1e-6)
    assert out["share_final_plain"] == out["share_final_repel"]


def test_gan_step_trains_and_pretrained_gan_caches(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    g1, _ = pretrained_gan(x, seed=0, steps=3, batch=8)
    assert len(list((tmp_path / "posneg" / "generative").glob("gan_*.pt"))) == 1
    g2, _ = pretrained_gan(x, seed=0, steps=3, batch=8)
    for a, b in zip(g1.parameters(), g2.parameters(), strict=True):
        assert torch.equal(a, b)
    g, d = Generator(), Discriminator()
    before = [p.detach().clone() for p in g.parameters()]
    loss = gan_step(g, d, make_optimizers(g, d), x[:8], generator=torch.Generator().manual_seed(1))
    assert math.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, g.parameters(), strict=True))
    assert all(p.requires_grad for p in d.parameters())
