"""`posneg bench image-text`: a tiny run writes the reports; determinism; one-line usage errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from posneg.bench._harness import UsageError
from posneg.bench._two_tower import TwoTower
from posneg.bench.image_text import BenchConfig, run

TINY = BenchConfig(
    seeds=1,
    n_train=60,
    n_test=40,
    pretrain_epochs=1,
    finetune_epochs=1,
    batch_size=16,
    n_references=12,
    window_min=2,
    window_max=20,
    cir_epochs=1,
    encoder_epochs=5,
    quiet=True,
)


def test_tiny_run_writes_reports_and_is_deterministic(tmp_path: Path) -> None:
    a = run(replace(TINY, out=str(tmp_path / "a")))
    b = run(replace(TINY, out=str(tmp_path / "b")))
    methods = [(r["part"], r["method"]) for r in a["aggregate"]]
    assert methods == [
        ("degla", "pretrained"),
        ("degla", "clip"),
        ("degla", "negclip"),
        ("degla", "degla"),
        ("spn4cir", "in-batch"),
        ("spn4cir", "full-bank"),
        ("spn4cir", "in-batch+synthetic"),
        ("spn4cir", "full-bank+synthetic"),
    ]
    strip = ("final_loss",)
    ra = [{k: v for k, v in r.items() if k not in strip} for r in a["runs"]]
    rb = [{k: v for k, v in r.items() if k not in strip} for r in b["runs"]]
    assert ra == rb
    for r in a["runs"]:
        for k, v in r.items():
            if k.endswith("accuracy") or k.startswith("recall"):
                assert 0.0 <= v <= 1.0
    out = tmp_path / "a"
    payload = json.loads((out / "results.json").read_text())
    assert payload["title"] == "posneg bench image-text"
    md = (out / "results.md").read_text()
    assert "DeGLA claim" in md and "SPN4CIR claim" in md
    assert (out / "degla.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "spn4cir.png").exists()


def test_one_part_only(tmp_path: Path) -> None:
    res = run(replace(TINY, parts=("spn4cir",), out=str(tmp_path)))
    assert {r["part"] for r in res["runs"]} == {"spn4cir"}


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({"parts": ("clip",)}, "--part"),
        ({"window_max": 2}, "--window-max"),
        ({"temperature": 0.0}, "--temperature"),
        ({"device": "cuda"}, "--device"),
        ({"real_fraction": 0.0}, "--real-fraction"),
    ],
)
def test_usage_errors_name_the_flag(change: dict, flag: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=flag):
        run(replace(TINY, out=str(tmp_path), **change))


def test_two_tower_text_tower_sees_word_order() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = TwoTower(image_features=128, vocab_size=30)
    a = m.encode_text(torch.tensor([[3, 11, 5, 0]]))
    b = m.encode_text(torch.tensor([[5, 11, 3, 0]]))
    assert not torch.allclose(a, b)
    img, txt, scale = m(torch.zeros(2, 1, 8, 16), torch.tensor([[1, 0], [2, 3]]))
    assert img.shape == (2, 32) and txt.shape == (2, 32)
    assert torch.allclose(img.norm(dim=1), torch.ones(2))
    assert float(scale.detach()) == pytest.approx(1 / 0.07)
