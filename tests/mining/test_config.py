"""`posneg mine` in layers: the validated MineConfig, the library never importing the top layer,
progress through callbacks, the old import path, and the command's ``--device auto`` default."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from posneg._io import InputError
from posneg.mining.config import (
    FORMATS,
    INDEXES,
    SAMPLINGS,
    MineConfig,
    check_window,
    resolve_device,
)

# ---------------------------------------------------------------------------------------------
# MineConfig
# ---------------------------------------------------------------------------------------------


def test_defaults_and_normalised_fields(tmp_path: Path) -> None:
    config = MineConfig(out=str(tmp_path / "o.jsonl"), queries="q.jsonl", corpus="c.jsonl")
    assert config.out == config.out_path == tmp_path / "o.jsonl"
    assert config.queries == Path("q.jsonl") and config.pairs is None
    assert (config.output_format, config.sampling, config.index) == ("triplets", "top", "exact")
    assert (config.num_negatives, config.range_min, config.range_max) == (5, 0, None)
    assert config.device == "cpu" and config.shard_size == 2048 and config.cache_dir is None
    assert config.inputs() == {"queries": "q.jsonl", "corpus": "c.jsonl"}
    assert MineConfig(out="o.jsonl", pairs="p.jsonl").inputs() == {"pairs": "p.jsonl"}
    with pytest.raises(AttributeError):
        config.margin = 0.1  # type: ignore[misc]
    numbers = MineConfig(out="o.jsonl", temperature=2, margin=0, max_score=1)
    assert isinstance(numbers.temperature, float) and isinstance(numbers.margin, float)
    assert isinstance(numbers.max_score, float)


def test_choices_match_the_literal_types() -> None:
    assert FORMATS == ("triplets", "nway", "full")
    assert SAMPLINGS == ("top", "uniform", "softmax")
    assert INDEXES == ("exact", "faiss-flat", "faiss-ivf", "sharded")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"output_format": "pairs"}, "--format: unknown format 'pairs'; known: triplets, nway"),
        ({"sampling": "best"}, "--sampling: unknown rule 'best'; known: top, uniform, softmax"),
        ({"index": "hnsw"}, "--index: unknown index 'hnsw'; known: exact, faiss-flat"),
        ({"temperature": 0.0}, "--temperature must be > 0; got 0.0"),
        ({"temperature": "hot"}, "--temperature must be a number; got str"),
        ({"margin": -1.0}, "--margin must be >= 0; got -1.0"),
        ({"relative_margin": -0.1}, "--relative-margin must be >= 0; got -0.1"),
        ({"max_score": float("nan")}, "--max-score must be a finite number; got nan"),
        # issue 22: these were accepted here and failed only after encoding
        ({"max_score": float("inf")}, "--max-score must be a finite number; got inf"),
        ({"margin": float("nan")}, "--margin must be a finite number; got nan"),
        ({"relative_margin": float("inf")}, "--relative-margin must be a finite number; got inf"),
        ({"temperature": float("inf")}, "--temperature must be a finite number; got inf"),
        ({"seed": 2**64}, "--seed must be between -2**63 and 2**64 - 1; got 18446744073709551616"),
        ({"seed": -(2**63) - 1}, "--seed must be between -2**63 and 2**64 - 1"),
        ({"device": "meta"}, "--device: 'meta' cannot compute embeddings; use auto, cpu"),
        ({"shard_size": 0}, "--shard-size must be >= 1; got 0"),
        ({"num_negatives": 0}, "--num-negatives must be >= 1; got 0"),
        ({"num_negatives": 2.5}, "--num-negatives must be an integer; got float"),
        ({"range_min": -1}, "--range-min must be >= 0; got -1"),
        ({"range_max": True}, "--range-max must be an integer; got bool"),
        ({"seed": "0"}, "--seed must be an integer; got str"),
        ({"device": "tpu9"}, "--device: unknown device 'tpu9'"),
        ({"out": 3}, "--out must be a file path; got int"),
        ({"cache_dir": 1.5}, "--cache-dir must be a file path; got float"),
        ({"anchor_column": None}, "--anchor-column must be a string; got NoneType"),
    ],
)
def test_config_errors_name_the_flag(kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"out": "o.jsonl", **kw}
    with pytest.raises(InputError, match="^" + re.escape(message)):
        MineConfig(**args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_an_input_error() -> None:
    with pytest.raises(InputError, match="--device: 'cuda' requested but CUDA is not available"):
        MineConfig(out="o.jsonl", device="cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_seed_range_is_what_torch_takes() -> None:
    for seed in (-(2**63), 2**64 - 1):
        torch.Generator().manual_seed(MineConfig(out="o.jsonl", seed=seed).seed)


def test_check_window() -> None:
    assert check_window(500, num_negatives=5, range_min=0, range_max=None) == 100
    assert check_window(8, num_negatives=2, range_min=0, range_max=None) == 7
    assert check_window(8, num_negatives=2, range_min=3, range_max=5) == 5
    with pytest.raises(InputError, match="--range-max 8 is larger than the corpus allows"):
        check_window(8, num_negatives=2, range_min=0, range_max=8)
    with pytest.raises(InputError, match=r"--num-negatives 4 exceeds the window ranks 3\.\.5"):
        check_window(8, num_negatives=4, range_min=3, range_max=5)


# ---------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------


def test_library_never_imports_the_top_layer() -> None:
    code = """
import importlib, pkgutil, sys
import posneg.mining
names = [m.name for m in pkgutil.walk_packages(posneg.mining.__path__, "posneg.mining.")]
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules
             if m.split(".")[0] in ("typer", "rich", "matplotlib")
             or m.startswith(("posneg.bench", "posneg.cli")))
print(len(names), bad)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, bad = done.stdout.strip().split(" ", 1)
    assert int(count) >= 8 and bad == "[]", done.stdout


def test_no_lazy_import_of_the_top_layer_either() -> None:
    import ast

    import posneg.mining

    root = Path(posneg.mining.__file__).parent
    banned = ("typer", "rich", "matplotlib", "posneg.bench", "posneg.cli")
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            found += [f"{path.name}: {n}" for n in names if n.startswith(banned)]
    assert found == []


def test_old_import_path_still_works() -> None:
    from posneg.mining import cli as old
    from posneg.mining import files, pipeline

    assert old.mine_files is pipeline.mine_files and old.mine_data is pipeline.mine_data
    assert old.read_pairs is files.read_pairs and old.MineConfig is MineConfig
    assert old.read_queries_corpus is files.read_queries_corpus and old.FORMATS == FORMATS


# ---------------------------------------------------------------------------------------------
# the pipeline: progress callbacks, types
# ---------------------------------------------------------------------------------------------


def _toy(texts: list[str]) -> torch.Tensor:
    return torch.tensor([[t.count(c) + 0.1 for c in "abcdefghijklmnopqrstuvwxyz "] for t in texts])


def _files(tmp: Path) -> tuple[Path, Path]:
    docs = [f"{w} number {i}" for i, w in enumerate(["sort", "read", "parse", "join"] * 5)]
    c = tmp / "c.jsonl"
    c.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(docs)))
    q = tmp / "q.jsonl"
    rows = [{"id": f"q{i}", "text": f"{docs[i]}?", "positives": [i]} for i in range(7)]
    q.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return q, c


def test_mine_files_reports_progress_through_a_callback(tmp_path: Path) -> None:
    from posneg.mining.encode import load_encoder
    from posneg.mining.pipeline import mine_files

    q, c = _files(tmp_path)
    seen: dict[str, list[tuple[int, int]]] = {}

    def report(desc: str, done: int, total: int) -> None:
        seen.setdefault(desc, []).append((done, total))

    config = MineConfig(queries=q, corpus=c, out=tmp_path / "o.jsonl", num_negatives=2)
    summary = mine_files(config, encoder=load_encoder(_toy, name="toy"), progress=report)
    assert list(seen) == ["encoding corpus", "encoding queries", "mining"]
    assert seen["encoding corpus"][-1] == (20, 20) and seen["encoding queries"][-1] == (7, 7)
    assert seen["mining"][0] == (0, 7) and seen["mining"][-1] == (7, 7)
    assert summary.rows == 14 and summary.config["device"] == "cpu"


def test_mine_files_type_errors(tmp_path: Path) -> None:
    from posneg.mining.encode import load_encoder
    from posneg.mining.pipeline import mine_data, mine_files

    enc = load_encoder(_toy, name="toy")
    with pytest.raises(TypeError, match="mine_files: config must be a MineConfig; got dict"):
        mine_files({"out": "o.jsonl"}, encoder=enc)  # type: ignore[arg-type]
    config = MineConfig(out=tmp_path / "o.jsonl", pairs=tmp_path / "p.jsonl")
    with pytest.raises(TypeError, match="mine_files: progress must be a bool or a callable"):
        mine_files(config, encoder=enc, progress="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mine_data: config must be a MineConfig"):
        mine_data(None, None, encoder=enc)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="--pairs: file not found"):
        mine_files(config, encoder=enc)
