"""`posneg bench policies` (tiny presets) and the fixed, AdAutoMix and noise-mask runners."""

from __future__ import annotations

import json
import math

import pytest
import torch

from posneg.bench import _harness as harness
from posneg.bench._classifier import SmallCNN
from posneg.bench._models1d import SmallCNN1d
from posneg.bench._policies_adautomix import RUNNERS as ADA
from posneg.bench._policies_fixed import RUNNERS as FIXED
from posneg.bench._policies_noise_mask import RUNNERS as NOISE
from posneg.bench._policy_context import PolicyContext
from posneg.bench.policies import CLAIMS, BenchConfig, collect_runners, run


def _ctx(kind: str) -> PolicyContext:
    g = torch.Generator().manual_seed(0)
    shape = (1, 16, 16) if kind == "image" else (1, 40)
    net = SmallCNN if kind == "image" else SmallCNN1d

    def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(n, *shape, generator=g), torch.randint(0, 3, (n,), generator=g)

    (tx, ty), (vx, vy), (sx, sy) = data(24), data(8), data(12)
    return PolicyContext(
        train_x=tx, train_y=ty, val_x=vx, val_y=vy, test_x=sx, test_y=sy,
        kind=kind,  # type: ignore[arg-type]
        num_classes=3, make_model=lambda: net(1, 3, mean=0.5, std=0.3),
        epochs=1, batch_size=8,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["image", "sequence"])
def test_every_runner_trains_on_a_tiny_context(kind):
    ctx = _ctx(kind)
    for name, runner in {**FIXED, **ADA, **NOISE}.items():
        res = runner(ctx, torch.Generator().manual_seed(0))
        if name == "randaugment" and kind == "sequence":
            assert math.isnan(res.accuracy) and "skipped" in res.notes
            continue
        assert 0.0 <= res.accuracy <= 1.0, name
        assert len(res.curve) == ctx.epochs, name


def test_runner_is_reproducible_under_the_same_seed():
    ctx = _ctx("image")
    a = ADA["adautomix"](ctx, torch.Generator().manual_seed(1))
    b = ADA["adautomix"](ctx, torch.Generator().manual_seed(1))
    assert a.curve == b.curve
    c = NOISE["noise_mask"](ctx, torch.Generator().manual_seed(1))
    d = NOISE["noise_mask"](ctx, torch.Generator().manual_seed(1))
    assert c.curve == d.curve


def test_collects_present_modules_and_claims_reference_known_names():
    runners = collect_runners()
    for name in ("none", "mixup", "cutmix", "randaugment", "adautomix", "noise_mask"):
        assert name in runners
    assert all(a != b for _, a, b in CLAIMS)


def test_run_writes_reports(tmp_path):
    cfg = BenchConfig(
        policies=("none", "random_mask", "noise_mask"), epochs=1, seeds=2, train_limit=40,
        size=16, out=str(tmp_path), quiet=True,
    )  # fmt: skip
    result = run(cfg)
    assert {a["policy"] for a in result["aggregate"]} == {"none", "random_mask", "noise_mask"}
    payload = json.loads((tmp_path / "results.json").read_text())
    assert len(payload["results"]["runs"]) == 6
    assert (tmp_path / "policies.png").exists()
    md = (tmp_path / "results.md").read_text()
    assert "noise-mask policy beats random masking" in md


def test_bad_flags_are_usage_errors(tmp_path):
    with pytest.raises(harness.UsageError, match="--policy"):
        run(BenchConfig(policies=("nope",), out=str(tmp_path), quiet=True))
    with pytest.raises(harness.UsageError, match="--dataset"):
        run(BenchConfig(dataset="cifar", out=str(tmp_path), quiet=True))
