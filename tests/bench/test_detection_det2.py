"""The "cqdino" section of `posneg bench detection` on a tiny preset."""

from __future__ import annotations

import math

from posneg.bench import _detection_cqdino as section


def test_section_runs_and_reports_both_methods() -> None:
    out = section.run_cqdino(preset="demo", seed=0, cnn_steps=5, steps=10, extra=20)
    for mode in ("full", "cqdino"):
        for key in ("tail_recall", "head_recall", "mean_recall", "pos_grad_share"):
            value = out[f"{mode}_{key}"]
            assert 0.0 <= value <= 1.0 and math.isfinite(value)
    assert 0.0 <= out["cqdino_selector_recall_at_k"] <= 1.0
    assert out["_num_categories"] == 120


def test_same_seed_same_numbers() -> None:
    assert callable(section.SECTIONS["cqdino"])
    a = section.run_cqdino(preset="demo", seed=3, cnn_steps=2, steps=3, extra=5)
    b = section.run_cqdino(preset="demo", seed=3, cnn_steps=2, steps=3, extra=5)
    assert a == b
