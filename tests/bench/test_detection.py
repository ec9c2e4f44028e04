"""`posneg bench detection` on a tiny preset (the bench function directly, not the CLI)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from posneg.bench import _harness as harness
from posneg.bench import detection
from posneg.bench._det_model import TinyDetector, decode, encode, nms, predict
from posneg.bench._det_scenes import make_scenes

TINY = detection.BenchConfig(
    seeds=1,
    train_scenes=6,
    test_scenes=4,
    target_scenes=2,
    steps=2,
    batch_size=4,
    sections=False,
    quiet=True,
)


def test_bench_runs_sections_and_writes_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = {}

    def section(ctx: detection.DetContext, g: torch.Generator) -> dict[str, float]:
        seen["n"] = len(ctx.target_test)
        dets = ctx.predict(ctx.source_detector, ctx.source_test.images)
        return {"ap50": ctx.evaluate(dets, ctx.source_test)["ap50"], "_skip": 1.0}

    monkeypatch.setattr(detection, "collect_sections", lambda: {"probe": section})
    result = detection.run(replace(TINY, out=str(tmp_path), sections=True))
    assert {r["assigner"] for r in result["runs"]} == {"atss", "iou"}
    for r in result["runs"]:
        assert 0.0 <= r["ap"] <= 1.0 and 0.0 <= r["covered"] <= 1.0
    assert seen["n"] == 2
    assert result["sections"][0]["section"] == "probe" and "_skip" not in result["sections"][0]
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["results"]["aggregate"][0]["assigner"] == "atss"
    md = (tmp_path / "results.md").read_text()
    assert "Claim (Zhang et al., CVPR 2020)" in md and "Section `probe`" in md
    assert (tmp_path / "predictions.png").stat().st_size > 0


def test_collect_sections_skips_absent_modules() -> None:
    assert isinstance(detection.collect_sections(), dict)


def test_bad_values_name_the_flag(tmp_path: Path) -> None:
    with pytest.raises(harness.UsageError, match="--assigner"):
        detection.run(replace(TINY, out=str(tmp_path), assigners=("maxiou",)))
    with pytest.raises(harness.UsageError, match="--steps"):
        detection.run(replace(TINY, out=str(tmp_path), steps=0))
    with pytest.raises(harness.UsageError, match="--classes"):
        detection.run(replace(TINY, out=str(tmp_path), classes=11))
    with pytest.raises(harness.UsageError, match="--min-size"):
        detection.run(replace(TINY, out=str(tmp_path), min_size=40.0))


def test_scenes_and_box_coding() -> None:
    s = make_scenes(5, domain="target", long_tail=10.0, generator=torch.Generator().manual_seed(0))
    assert (
        s.images.shape == (5, 3, 64, 64)
        and 0 <= float(s.images.min()) <= float(s.images.max()) <= 1
    )
    for b, lab in zip(s.boxes, s.labels, strict=True):
        assert b.shape == (len(lab), 4) and len(lab) >= 1
        assert (b[:, 2:] > b[:, :2]).all() and (b >= 0).all() and (b <= 64).all()
    again = make_scenes(
        5, domain="target", long_tail=10.0, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(s.images, again.images)
    few = make_scenes(8, classes=3, min_size=12.0, generator=torch.Generator().manual_seed(1))
    assert int(torch.cat(few.labels).max()) <= 2
    with pytest.raises(ValueError, match="make_scenes: classes"):
        make_scenes(1, classes=0, generator=torch.Generator())
    model = TinyDetector()
    boxes = torch.tensor([[3.0, 4.0, 20.0, 15.0]]).expand(len(model.anchors), 4)
    torch.testing.assert_close(decode(encode(boxes, model.anchors), model.anchors), boxes)
    keep = nms(
        torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]]),
        torch.tensor([0.5, 0.9, 0.1]),
        0.5,
    )
    assert keep.tolist() == [1, 2]
    dets = predict(model, s.images[:2])
    assert len(dets) == 2 and all(d.boxes.shape[1] == 4 for d in dets)
