"""The CoDSA section of `posneg bench synthetic` (demo preset: breast cancer, one budget)."""

from __future__ import annotations

import torch

from posneg.bench import _synthetic_codsa as section


class _Ctx:
    preset = "demo"
    seed = 0


def test_codsa_section_compares_rules_at_equal_budget():
    out = section.codsa_section(_Ctx(), torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    for arm in ("real_only", "r1_uniform", "r1_proportional", "r1_balance"):
        assert 0.0 <= out[f"breast_cancer/{arm}/bal_acc"] <= 1.0
        assert 0.0 <= out[f"breast_cancer/{arm}/minority_recall"] <= 1.0
    agg = {f"codsa/{k}": (float(v), 0.0) for k, v in out.items() if not isinstance(v, str)}
    (line,) = section.claims(agg)
    assert "breast_cancer" in line and "targeted" in line


def test_split_keeps_a_tenth_of_the_training_minority():
    import numpy as np

    _, y, minority = section._load("breast_cancer")
    tr, te = section._split(y, minority, torch.Generator().manual_seed(0))
    assert len(set(tr) & set(te)) == 0
    assert int((y[tr] == minority).sum()) == round(0.1 * (212 // 2))
    assert int((y[te] == minority).sum()) == 212 - 212 // 2
    assert np.bincount(y[tr])[1 - minority] == 357 // 2
