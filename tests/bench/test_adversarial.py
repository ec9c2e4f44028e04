"""`posneg bench adversarial`: tiny runs, report files, determinism, errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from posneg.bench import adversarial
from posneg.bench._adversarial_at import ATSetting, small_cnn, train_at
from posneg.bench._harness import UsageError
from posneg.bench.adversarial import BenchConfig, run

TINY = BenchConfig(
    seeds=1,
    at_epochs=1,
    pgd_steps=1,
    irad_epochs=1,
    classifier_epochs=1,
    max_train=64,
    quiet=True,
    threads=1,
)


def test_tiny_run_writes_reports(tmp_path: Path) -> None:
    res = run(replace(TINY, out=str(tmp_path)))
    assert (tmp_path / "results.json").exists() and (tmp_path / "results.md").exists()
    assert (tmp_path / "adversarial_training.png").read_bytes()[:4] == b"\x89PNG"
    payload = json.loads((tmp_path / "results.json").read_text())
    assert {a["method"] for a in payload["results"]["at_aggregate"]} == {"fgsm_at", "aaer"}
    assert [a["defence"] for a in res["irad_aggregate"]] == list(adversarial.__dict__["DEFENCES"])
    md = (tmp_path / "results.md").read_text()
    assert "Claim (AAER" in md and "IRAD, PGD accuracy" in md
    for r in res["at_runs"]:
        assert len(r["curve"]["pgd"]) == 1 and 0.0 <= r["pgd_accuracy"] <= 1.0


def test_at_runs_are_deterministic_and_baseline_ignores_lambdas() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 8, 8, generator=g), torch.randint(10, (40,), generator=g)
    data = (x, y, x[:10], y[:10])
    s = ATSetting(
        epsilon=0.1,
        random_start=True,
        project=True,
        alpha=1.25,
        lambda1=1.0,
        lambda2=2.5,
        lambda3=1.5,
        epochs=1,
        lr=0.01,
        batch_size=16,
        pgd_steps=1,
    )
    a = train_at("fgsm_at", s, data, 3, lambda: None)
    b = train_at("fgsm_at", replace(s, lambda3=99.0), data, 3, lambda: None)
    assert a["curve"] == b["curve"]
    assert (
        train_at("aaer", s, data, 3, lambda: None)["curve"]["pgd"]
        == train_at("aaer", s, data, 3, lambda: None)["curve"]["pgd"]
    )
    assert small_cnn()(x).shape == (40, 10)
    assert small_cnn(size=16, width=4)(torch.rand(2, 1, 16, 16)).shape == (2, 10)


def test_upsampled_training_images(tmp_path: Path) -> None:
    res = run(replace(TINY, parts=("at",), at_size=16, at_width=4, out=str(tmp_path)))
    assert {r["method"] for r in res["at_runs"]} == {"fgsm_at", "aaer"}
    assert res["irad_aggregate"] == []
    assert "16x16" in (tmp_path / "results.md").read_text()


def test_bad_values_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--part"):
        run(replace(TINY, parts=("nope",), out=str(tmp_path)))
    with pytest.raises(UsageError, match="--at-epochs"):
        run(replace(TINY, at_epochs=0, out=str(tmp_path)))
    with pytest.raises(UsageError, match="--max-train"):
        run(replace(TINY, max_train=-1, out=str(tmp_path)))
    with pytest.raises(UsageError, match="--at-size"):
        run(replace(TINY, at_size=7, out=str(tmp_path)))
    with pytest.raises(UsageError, match="--at-width"):
        run(replace(TINY, at_width=0, out=str(tmp_path)))
    with pytest.raises(UsageError, match="--epsilon"):
        run(replace(TINY, epsilon=2.0, out=str(tmp_path)))


def test_bench_file_sizes() -> None:
    root = Path(adversarial.__file__).parent
    for name in ("adversarial.py", "_adversarial_at.py", "_adversarial_irad.py"):
        assert len((root / name).read_text().splitlines()) <= 500
