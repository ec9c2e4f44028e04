"""`posneg bench superres`: data without downloads, metrics against scikit-image, a tiny run
(reports, plot, released-code parity equals L1), usage errors."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from posneg.bench import superres
from posneg.bench._harness import UsageError
from posneg.bench._superres_data import (
    TEST_IMAGES,
    TRAIN_IMAGES,
    SmallSR,
    downscale,
    load_image,
    metrics,
    psnr,
    ssim,
)
from posneg.bench.superres import DEMO_CONFIG, BenchConfig, run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = replace(DEMO_CONFIG, pretrain_steps=4, steps=3, train_crops=32, test_crops=8, quiet=True)


def test_images_are_bundled_and_disjoint() -> None:
    assert not set(TRAIN_IMAGES) & set(TEST_IMAGES)
    for name in ("china", "camera", "chelsea"):
        img = load_image(name)
        assert img.ndim == 2 and img.dtype == np.float32
        assert 0.0 <= img.min() and img.max() <= 1.0 and img.shape[0] >= 32


def test_psnr_matches_skimage() -> None:
    from skimage.metrics import peak_signal_noise_ratio

    g = torch.Generator().manual_seed(0)
    hr = torch.rand(3, 1, 16, 16, generator=g, dtype=torch.float64)
    sr = (hr + 0.05 * torch.randn(3, 1, 16, 16, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = psnr(sr, hr, shave=2)
    for i in range(3):
        ref = peak_signal_noise_ratio(
            hr[i, 0, 2:-2, 2:-2].numpy(), sr[i, 0, 2:-2, 2:-2].numpy(), data_range=1.0
        )
        assert ours[i].item() == pytest.approx(ref, rel=1e-12)


def test_ssim_matches_skimage() -> None:
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(2)
    hr = torch.rand(3, 1, 20, 20, generator=g, dtype=torch.float64)
    sr = (hr + 0.1 * torch.randn(3, 1, 20, 20, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(sr, hr, shave=2)
    for i in range(3):
        ref = structural_similarity(
            sr[i, 0, 2:-2, 2:-2].numpy(), hr[i, 0, 2:-2, 2:-2].numpy(), data_range=1.0
        )
        assert ours[i].item() == pytest.approx(ref, rel=1e-10)


def test_metrics_perfect_and_model_size() -> None:
    hr = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    m = metrics(hr, hr)
    assert m["hh_error"] == 0.0 and m["ssim"] == pytest.approx(1.0)
    assert 40_000 <= sum(p.numel() for p in SmallSR().parameters()) <= 60_000
    lr = downscale(hr)
    assert lr.shape == (4, 1, 8, 8) and SmallSR()(lr).shape == hr.shape


def test_tiny_run_reports_and_parity(tmp_path: Path) -> None:
    cfg = replace(TINY, out=str(tmp_path))
    result = run(cfg)
    by = {r["method"]: r for r in result["runs"]}
    assert set(by) == {"l1", "pcl", "pcl_parity"}
    # released-code parity: no gradient from L_CL to the SR net, so the SR net equals L1's
    for k in ("psnr", "ssim", "hh_error", "train_l1"):
        assert by["pcl_parity"][k] == by["l1"][k]
    assert by["pcl"]["psnr"] != by["l1"]["psnr"]  # the paper's gradient changes the net
    assert by["pcl"]["train_cl"] is not None and by["l1"]["train_cl"] is None
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["config"]["steps"] == 3 and "gaps" in payload["results"]
    assert "Claim (PCL-SR" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "superres.png").read_bytes()[:8] == PNG_MAGIC


def test_demo(tmp_path: Path) -> None:
    summary = superres.demo(tmp_path)
    assert summary.family == "superres" and len(summary.rows) == 3
    assert summary.report.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"methods": ("l1", "gan")}, "--method: unknown method 'gan'"),
        ({"weight": -1.0}, "--weight: must be in"),
        ({"steps": 0}, "--steps: must be in"),
        ({"train_crops": 4}, "--train-crops: must be in"),
    ],
)
def test_usage_errors(change: dict[str, object], message: str, tmp_path: Path) -> None:
    cfg = BenchConfig(**{**asdict(TINY), **change, "out": str(tmp_path)})
    with pytest.raises(UsageError, match=message):
        run(cfg)


def test_bench_files_within_500_lines() -> None:
    from posneg.bench import _superres_data

    for mod in (superres, _superres_data):
        assert len(Path(str(mod.__file__)).read_text().splitlines()) <= 500
