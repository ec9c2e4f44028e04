"""`posneg bench retrieval`: strategies on a synthetic code-search set with a hashed n-gram
encoder; reports, determinism, invariants, one-line errors, one smoke run with the real model."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cli_helpers import assert_one_line_error, run_main
from posneg.bench import retrieval
from posneg.bench._harness import UsageError
from posneg.bench.retrieval import BenchConfig, run
from posneg.data.code_search import CodeSearchData, CodeSearchPair
from posneg.data.retrieval import load_task
from posneg.mining.encode import TextEncoder, load_encoder
from posneg.mining.metrics import retrieval_metrics
from posneg.mining.training import STRATEGIES, AdapterTowers, Schedule, train_strategy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DIM = 64

# --------------------------------------------------------------------------------------------
# a synthetic code-search set and a tiny deterministic encoder
# --------------------------------------------------------------------------------------------

VERBS = [
    "read",
    "write",
    "parse",
    "close",
    "open",
    "sort",
    "merge",
    "split",
    "join",
    "encode",
    "decode",
    "send",
    "load",
    "dump",
    "check",
    "build",
]
NOUNS = [
    "file",
    "socket",
    "header",
    "buffer",
    "token",
    "path",
    "record",
    "queue",
    "entry",
    "table",
    "stream",
    "key",
    "value",
    "frame",
    "block",
    "line",
]


def synthetic_data(n: int = 160, *, seed: int = 0) -> CodeSearchData:
    """``n`` (query, code) pairs over 8 modules; modules 6 and 7 are the test split."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        v, a, b = rng.choice(VERBS), rng.choice(NOUNS), rng.choice(NOUNS)
        module = f"pkg.m{i % 8}"
        split = "test" if i % 8 >= 6 else "train"
        pairs.append(
            CodeSearchPair(
                id=f"{module}.f{i}",
                query=f"{v.capitalize()} the {a} from the {b} number {i}.",
                code=f"def {v}_{a}_{i}(self, {b}):\n    x = self.{a}\n    return {v}(x, {b})",
                module=module,
                split=split,
            )
        )
    return CodeSearchData(pairs=tuple(pairs))


def ngram_embed(texts: list[str]) -> torch.Tensor:
    """Bag of hashed character trigrams of the lower-cased words (crc32: stable across runs)."""
    out = torch.zeros(len(texts), DIM)
    for row, text in enumerate(texts):
        for word in text.lower().replace("_", " ").replace("(", " ").split():
            w = f"#{word}#"
            for j in range(len(w) - 2):
                out[row, zlib.crc32(w[j : j + 3].encode()) % DIM] += 1.0
    return out + 1e-3


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small products run fastest on one thread (and are not slowed by a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> CodeSearchData:
    return synthetic_data()


@pytest.fixture(scope="module")
def fake() -> TextEncoder:
    return load_encoder(ngram_embed, name="ngram-test-encoder")


def _cfg(out: Path, cache: Path, **kw: Any) -> BenchConfig:
    base: dict[str, Any] = {
        "strategies": ("untrained", "inbatch"),
        "seeds": 1,
        "epochs": 2,
        "batch_size": 16,
        "device": "cpu",
        "threads": 1,
        "cache_dir": str(cache),
        "out": str(out),
        "quiet": True,
    }
    base.update(kw)
    return BenchConfig(**base)


ALL = (
    "untrained",
    "inbatch",
    "random",
    "static:pool=8,range_max=30",
    "ance:pool=8,range_max=30,refresh_every=3",
    "star:pool=8,range_max=30",
    "adore:k=20",
    "ngame:refresh_every=3,max_cluster_size=4",
    "fn-aware:pool=8,range_max=30,relative_margin=0.1",
)

# --------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------


def test_every_strategy_runs_and_reports(
    data: CodeSearchData, fake: TextEncoder, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run(_cfg(out, tmp_path / "cache", strategies=ALL), encoder=fake, data=data)
    payload = json.loads((out / "results.json").read_text())
    cfg = payload["config"]
    assert cfg["strategies"][-1] == "fn_aware:pool=8,range_max=30,relative_margin=0.1"
    assert cfg["n_train"] == 120 and cfg["n_test"] == 40
    assert cfg["total_steps"] == 2 * (120 // 16)
    runs = {r["key"]: r for r in payload["results"]["runs"]}
    assert list(runs) == [
        "untrained",
        "inbatch",
        "random",
        "static",
        "ance",
        "star",
        "adore",
        "ngame",
        "fn_aware",
    ]
    for r in runs.values():
        assert set(r["metrics"]) == set(retrieval.METRICS)
        assert all(0.0 <= v <= 1.0 for v in r["metrics"].values())
        assert r["diverged_at_step"] is None
        assert all(np.isfinite(r["losses"]))
    assert runs["untrained"]["losses"] == []
    assert runs["static"]["refreshes"] == 0 and runs["star"]["refreshes"] == 0
    assert runs["ance"]["refreshes"] == 4  # at steps 3, 6, 9, 12 after step 0 (14 steps)
    assert runs["ngame"]["cluster_sizes"][:3] == [2, 4, 4]  # doubles per refresh up to the cap
    assert runs["fn_aware"]["removed"].get("relative_margin", 0) > 0
    assert runs["adore"]["args"]["metric_cut"] == 20  # DRhard: metric_cut = the retrieval depth
    md = (out / "results.md").read_text()
    assert "| untrained |" in md and "MRR@10" in md and "STAR" in md
    assert (out / "retrieval.png").read_bytes()[:8] == PNG_MAGIC
    assert result["report"] == out / "results.md"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary file
    assert any((tmp_path / "cache").iterdir())  # the embeddings were cached


def test_untrained_is_the_frozen_encoder(
    data: CodeSearchData, fake: TextEncoder, tmp_path: Path
) -> None:
    result = run(_cfg(tmp_path / "out", tmp_path / "cache"), encoder=fake, data=data)
    emb = fake(data.queries("test")), fake(data.corpus("test"))
    want = retrieval_metrics(*emb, [[i] for i in range(40)])
    got = result["runs"][0]["metrics"]
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9)


def test_training_raises_train_split_mrr(data: CodeSearchData, fake: TextEncoder) -> None:
    task = load_task(data, fake, cache_dir=None, progress=False)
    towers = AdapterTowers(task, torch.device("cpu"), fixed_docs=False)
    relevant = [[i] for i in range(task.n_train)]
    before = retrieval_metrics(towers.all_queries(), towers.all_docs(), relevant)["mrr@10"]
    steps: list[int] = []
    train_strategy(
        STRATEGIES["inbatch"](),
        towers,
        Schedule(task.n_train, 16, total_steps=60, lr=1e-2),
        seed=0,
        device=torch.device("cpu"),
        progress=lambda desc, done, total: steps.append(done),
    )
    assert steps == list(range(61))
    after = retrieval_metrics(towers.all_queries(), towers.all_docs(), relevant)["mrr@10"]
    assert after > before


def test_adore_keeps_the_document_side_fixed(data: CodeSearchData, fake: TextEncoder) -> None:
    task = load_task(data, fake, cache_dir=None, progress=False)
    towers = AdapterTowers(task, torch.device("cpu"), fixed_docs=True)
    train_strategy(
        STRATEGIES["adore"](k=10),
        towers,
        Schedule(task.n_train, 16, total_steps=5, lr=1e-2),
        seed=0,
        device=torch.device("cpu"),
    )
    assert torch.count_nonzero(towers.d_adapter.weight) == 0
    assert torch.count_nonzero(towers.q_adapter.weight) > 0
    assert all(not p.requires_grad for p in towers.d_adapter.parameters())


def test_adapter_starts_as_identity() -> None:
    x = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    assert torch.allclose(retrieval.Adapter(8)(x), x)


# --------------------------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------------------------


def _metrics(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(tuple(r["metrics"].values()), tuple(r["losses"])) for r in result["runs"]]


def test_same_seed_same_metrics_and_global_rng_untouched(
    data: CodeSearchData, fake: TextEncoder, tmp_path: Path
) -> None:
    strategies = ("random", "ance:pool=8,refresh_every=3", "ngame:refresh_every=3")
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    cfg = _cfg(tmp_path / "a", tmp_path / "cache", strategies=strategies)
    first = run(cfg, encoder=fake, data=data)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    second = run(cfg, encoder=fake, data=data)
    assert _metrics(first) == _metrics(second)
    other = run(
        _cfg(tmp_path / "c", tmp_path / "cache", strategies=strategies, first_seed=1),
        encoder=fake,
        data=data,
    )
    assert [m[1] for m in _metrics(other)] != [m[1] for m in _metrics(first)]


def test_demo_returns_a_summary(
    data: CodeSearchData, fake: TextEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrieval, "_load_encoder", lambda cfg, device: fake)
    monkeypatch.setattr(retrieval, "_load_data", lambda max_pairs: data)
    preset = _cfg(tmp_path / "ignored", tmp_path / "cache", strategies=("untrained", "static"))
    monkeypatch.setattr(retrieval, "DEMO_CONFIG", preset)
    summary = retrieval.demo(tmp_path / "demo")
    assert summary.family == "retrieval"
    assert summary.report == tmp_path / "demo" / "results.md" and summary.report.exists()
    assert [r[0] for r in summary.rows] == ["untrained", "static"]


# --------------------------------------------------------------------------------------------
# errors: one line, exit code 2, no traceback (raised before any model is loaded)
# --------------------------------------------------------------------------------------------


def _bench(out: Path, *extra: str) -> list[str]:
    return ["bench", "retrieval", "--out", str(out), "--quiet", *extra]


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["-s", "nope"], ["unknown technique 'nope'"]),
        (
            ["-s", "static:foo=1"],
            ["--strategy 'static:foo=1'", "unexpected keyword argument 'foo'"],
        ),
        (["-s", "inbatch:temperature=0"], ["inbatch: temperature must be > 0"]),
        (["-s", "static:num_negatives=0"], ["static: num_negatives must be >= 1"]),
        (["-s", "static:pool=2.5"], ["static: pool must be an int"]),
        (["-s", "static:num_negatives=5,pool=2"], ["num_negatives (5) must be <= pool (2)"]),
        (["-s", "static:range_min=50,range_max=10"], ["range_min (50) must be <= range_max"]),
        (["-s", "fn-aware:relative_margin=1.5"], ["relative_margin must be in [0.0, 1.0)"]),
        (["-s", "untrained:k=3"], ["untrained() got an unexpected keyword argument 'k'"]),
        (["-s", "adore:metric_cut=0"], ["adore: metric_cut must be >= 1"]),
        (["-s", "ngame:warmup=-1"], ["ngame: warmup must be >= 0"]),
        (["-s", "ance:refresh_every=0"], ["ance: refresh_every must be >= 1"]),
        (["-s", "inbatch", "-s", "inbatch"], ["'inbatch' given twice"]),
        (["--mode", "full"], ["--mode", "adapter, finetune"]),
        (["--seeds", "0"], ["--seeds"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--steps", "-1"], ["--steps"]),
        (["-b", "1"], ["--batch-size", ">= 2"]),
        (["--lr", "-1"], ["--lr"]),
        (["--max-pairs", "3"], ["--max-pairs", ">= 10"]),
        (["--max-seq-length", "2"], ["--max-seq-length"]),
    ],
)
def test_bad_values_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragments: list[str]
) -> None:
    code, _, err = run_main(_bench(tmp_path / "out", *extra), capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "out" / "results.json").exists()


def test_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    code, _, err = run_main(_bench(tmp_path / "file"), capsys)
    assert_one_line_error(code, err, "--out")


def test_batch_larger_than_the_train_split(
    data: CodeSearchData, fake: TextEncoder, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="--batch-size: 500 exceeds the 120 training pairs"):
        run(_cfg(tmp_path / "out", tmp_path / "cache", batch_size=500), encoder=fake, data=data)


def test_finetune_needs_a_model(data: CodeSearchData, fake: TextEncoder, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--mode finetune"):
        run(_cfg(tmp_path / "out", tmp_path / "cache", mode="finetune"), encoder=fake, data=data)


def test_unknown_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(_bench(tmp_path / "out", "--model", str(tmp_path / "nomodel")), capsys)
    assert_one_line_error(code, err, "--model")


# --------------------------------------------------------------------------------------------
# the real model: one CLI smoke run (adapter mode) and one finetune run on a handful of pairs
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return load_encoder(max_seq_length=32)


def test_cli_smoke_with_the_real_model(
    minilm: TextEncoder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small = synthetic_data(32)
    monkeypatch.setattr(retrieval, "_load_encoder", lambda cfg, device: minilm)
    monkeypatch.setattr(retrieval, "_load_data", lambda max_pairs: small)
    argv = _bench(
        tmp_path / "out",
        "-s",
        "untrained",
        "-s",
        "static:pool=4",
        "--epochs",
        "1",
        "-b",
        "8",
        "--seeds",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    code, stdout, err = run_main(argv, capsys)
    assert code == 0, err
    assert stdout.strip() == str(tmp_path / "out" / "results.md")
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert payload["config"]["dim"] == 384
    assert payload["results"]["runs"][0]["metrics"]["mrr@10"] > 0.5  # names match their code


def test_finetune_trains_and_restores_the_model(minilm: TextEncoder, tmp_path: Path) -> None:
    assert minilm.model is not None
    before = {k: v.clone() for k, v in minilm.model.state_dict().items()}
    small = synthetic_data(40)
    cfg = _cfg(
        tmp_path / "out",
        tmp_path / "cache",
        mode="finetune",
        strategies=("static:pool=2", "adore:k=5"),
        steps=2,
        batch_size=4,
        lr=1e-3,
    )
    result = run(cfg, encoder=minilm, data=small)
    after = minilm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # restored after every run
    for r in result["runs"]:
        assert len(r["losses"]) == 2 and all(np.isfinite(r["losses"]))
        assert all(0.0 <= v <= 1.0 for v in r["metrics"].values())
    assert result["config"]["total_steps"] == 2


# --------------------------------------------------------------------------------------------
# AR2 and CoCoSoDa (the bench's own loops, bench/_retrieval_coop.py)
# --------------------------------------------------------------------------------------------

OWN_SPECS = (
    "ar2:group_size=4,pool=8,iteration_step=6,ranker_steps=2,ranker_warmup=3",
    "ar2:adv_lambda=0,refresh=false,group_size=4,pool=8,iteration_step=6,ranker_warmup=3",
    "cocosoda:queue_size=32,views=1",
)


def test_ar2_and_cocosoda_run_deterministically(
    data: CodeSearchData, fake: TextEncoder, tmp_path: Path
) -> None:
    cfg = _cfg(tmp_path / "a", tmp_path / "cache", strategies=OWN_SPECS, epochs=1)
    state = torch.random.get_rng_state()
    first = run(cfg, encoder=fake, data=data)
    assert torch.equal(state, torch.random.get_rng_state())
    second = run(
        _cfg(tmp_path / "b", tmp_path / "cache", strategies=OWN_SPECS, epochs=1),
        encoder=fake,
        data=data,
    )
    assert _metrics(first) == _metrics(second)
    runs = first["runs"]  # in spec order, one seed
    assert runs[0]["refreshes"] >= 1  # re-mined at the block boundaries
    assert runs[1]["refreshes"] == 0  # static groups
    for r in first["runs"]:
        assert r["diverged_at_step"] is None and 0.0 <= r["metrics"]["mrr@10"] <= 1.0
    report = Path(first["report"]).read_text()
    assert "AR2" in report and "CoCoSoDa" in report


def test_own_strategies_errors_are_one_line(
    data: CodeSearchData, fake: TextEncoder, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="adv_lambda"):
        run(
            _cfg(tmp_path, tmp_path / "c", strategies=("ar2:adv_lambda=2",)),
            encoder=fake,
            data=data,
        )


def test_masked_texts_mask_words_deterministically() -> None:
    from posneg.bench._retrieval_coop import masked_texts

    texts = ("read the file header now", "write a socket buffer")
    a = masked_texts(texts, probability=1.0, seed=0)
    assert a == masked_texts(texts, probability=1.0, seed=0)
    assert [len(t.split()) for t in a] == [5, 4]
    assert sum(w == "[MASK]" for t in a for w in t.split()) >= 5
    assert masked_texts(texts, probability=0.0, seed=0) == list(texts)
