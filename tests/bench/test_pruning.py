"""`posneg bench pruning` on a tiny preset (run directly, not through the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from posneg.bench import pruning
from posneg.bench._harness import UsageError


def _tiny_mnist1d() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 40, generator=g)
    y = torch.arange(64) % 10
    return x, y, x[:16], y[:16]


def test_tiny_run_writes_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pruning._msd, "load", _tiny_mnist1d)
    cfg = pruning.BenchConfig(
        datasets=("breast_cancer",), rounds=2, epochs=5, msd_epochs=1, msd_samples=(1, 2),
        seeds=1, out=str(tmp_path), quiet=True,
    )  # fmt: skip
    result = pruning.run(cfg)
    assert (tmp_path / "results.md").is_file()
    assert (tmp_path / "pruning.png").is_file() and (tmp_path / "msd.png").is_file()
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["config"]["rounds"] == 2
    agg = result["aggregate"]
    assert {a["method"] for a in agg} == {"imp", "class_dependent"}
    remaining = sorted({a["remaining"] for a in agg}, reverse=True)
    assert remaining[0] == 1.0 and len(remaining) == 3
    assert all(0.0 <= a["minority_recall_mean"] <= 1.0 for a in agg)
    assert [a["M"] for a in result["msd_aggregate"]] == [1, 2]
    assert len(result["claims"]) == 2 and all("verdict" in c for c in result["claims"])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("epochs", 0, "--epochs"),
        ("pos_weight", 0.0, "--pos-weight"),
        ("msd_samples", (0,), "--msd-samples"),
        ("datasets", ("no-such-set",), "--datasets"),
    ],
)
def test_bad_config(tmp_path: Path, field: str, value: object, match: str) -> None:
    cfg = pruning.BenchConfig(**{"out": str(tmp_path), "quiet": True, field: value})  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=match):
        pruning.run(cfg)
