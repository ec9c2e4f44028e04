"""`posneg mine`: reading and validating the user's files, the three output formats, resuming a
killed run byte for byte, atomic output, the summary, and one one-line error per user mistake.

Everything but one smoke test uses a tiny deterministic fake encoder (hashed character
trigrams), installed through ``posneg.cli.mine.ENCODER_FACTORY`` for the command and passed to
``mine_files`` directly for the library path. One test runs the real packaged model end to end
and trains one MultipleNegativesRankingLoss step on what it wrote.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

import posneg.cli.mine as mine_command
from cli_helpers import assert_one_line_error, run_main
from posneg.mining import files as mfiles
from posneg.mining import pipeline
from posneg.mining.config import FORMATS, MineConfig

DIM = 64
_WORDS = (
    "parse json decode string read file write bytes socket connect http request url path "
    "join split list sort dict key value number float integer date time zone format print "
    "thread lock queue process signal email header encode base64 hash digest random seed"
).split()


def _trigram_embed(texts: Sequence[str]) -> torch.Tensor:
    out = torch.zeros(len(texts), DIM)
    for i, text in enumerate(texts):
        s = f"  {text.lower()}  "
        for j in range(len(s) - 2):
            h = hashlib.blake2b(s[j : j + 3].encode(), digest_size=4).digest()
            out[i, int.from_bytes(h, "little") % DIM] += 1.0
    return torch.nn.functional.normalize(out, dim=1)


class FakeEncoder:
    """Counts every text it embeds; raises ``fail_with`` once more than ``fail_after`` texts."""

    def __init__(
        self, fail_after: int | None = None, fail_with: type[BaseException] = KeyboardInterrupt
    ):
        self.seen: list[str] = []
        self.fail_after = fail_after
        self.fail_with = fail_with

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        texts = list(texts)
        if self.fail_after is not None and len(self.seen) + len(texts) > self.fail_after:
            raise self.fail_with()
        self.seen.extend(texts)
        return _trigram_embed(texts)


def _encoder(fake: FakeEncoder) -> Any:
    from posneg.mining.encode import load_encoder

    return load_encoder(fake, name="fake-trigram")


def _doc(i: int) -> str:
    w = _WORDS
    return f"{w[i % len(w)]} {w[(3 * i + 1) % len(w)]} {w[(7 * i + 2) % len(w)]} item {i}"


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _dataset(tmp: Path, n_docs: int = 60, n_queries: int = 20) -> tuple[Path, Path]:
    corpus = [{"id": f"d{i}", "text": _doc(i)} for i in range(n_docs)]
    corpus.append({"id": "dup", "text": _doc(1)})  # an exact duplicate of query 0's positive
    queries = [
        {"id": f"q{i}", "text": _doc(2 * i + 1)[:-2], "positives": [f"d{2 * i + 1}"]}
        for i in range(n_queries)
    ]
    queries[3]["positives"] = ["d7", "d8"]  # several positives
    return _write_jsonl(tmp / "queries.jsonl", queries), _write_jsonl(tmp / "corpus.jsonl", corpus)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return _dataset(tmp_path)


class _Built(list[Any]):
    """The fake encoders the command built, and ``state["fail_after"]`` for the next one."""

    state: dict[str, Any]


@pytest.fixture
def fake_factory(monkeypatch: pytest.MonkeyPatch) -> _Built:
    """The command builds fake encoders (no model load)."""
    built = _Built()
    built.state = {"fail_after": None}

    def factory(model: str, **kwargs: Any) -> Any:
        fake = FakeEncoder(fail_after=built.state["fail_after"])
        built.append(fake)
        return _encoder(fake)

    monkeypatch.setattr(mine_command, "ENCODER_FACTORY", factory)
    return built


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def test_read_queries_corpus_jsonl_and_parquet_agree(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    qpath, cpath = _dataset(tmp_path)
    a = mfiles.read_queries_corpus(qpath, cpath)
    assert len(a.corpus_ids) == 61 and len(a.query_ids) == 20
    assert a.positives[0] == (1,) and a.positives[3] == (7, 8)
    for src in (qpath, cpath):
        rows = _read_jsonl(src)
        pq.write_table(pa.Table.from_pylist(rows), src.with_suffix(".parquet"))
    b = mfiles.read_queries_corpus(qpath.with_suffix(".parquet"), cpath.with_suffix(".parquet"))
    assert a == b


def test_read_pairs_groups_anchors_and_assigns_row_ids(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"q": "a", "p": "x"},
            {"q": "b", "p": "y"},
            {"q": "a", "p": "z"},
            {"q": "c", "p": "x"},
            {"q": "a", "p": "x"},
        ],
    )
    data = mfiles.read_pairs(path, anchor_column="q", positive_column="p")
    assert data.query_texts == ("a", "b", "c") and data.query_ids == (0, 1, 3)
    assert data.corpus_texts == ("x", "y", "z") and data.corpus_ids == (0, 1, 2)
    assert data.positives == ((0, 2), (1,), (0,))


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    c = tmp_path / "c.jsonl"
    c.write_text('{"id": 1, "text": "a"}\n\n   \n{"id": 2, "text": "b"}\n')
    q = _write_jsonl(tmp_path / "q.jsonl", [{"id": 1, "text": "z", "positives": [2]}])
    data = mfiles.read_queries_corpus(q, c)
    assert data.corpus_ids == (1, 2) and data.positives == ((1,),)


# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------


def _mine(tmp: Path, files: tuple[Path, Path], out: str, **kw: Any) -> tuple[Any, FakeEncoder]:
    fake = FakeEncoder()
    kw.setdefault("num_negatives", 3)
    config = MineConfig(queries=files[0], corpus=files[1], out=tmp / out, **kw)
    summary = pipeline.mine_files(config, encoder=_encoder(fake))
    return summary, fake


def test_full_output_never_lists_a_positive_duplicate_or_own_document(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    summary, _ = _mine(tmp_path, files, "full.jsonl", output_format="full", range_max=10)
    data = mfiles.read_queries_corpus(*files)
    rows = _read_jsonl(tmp_path / "full.jsonl")
    assert [r["query_id"] for r in rows] == list(data.query_ids)
    assert list(rows[0]) == ["query_id", "positive_ids", "negative_ids", "scores", "ranks",
                             "positive_score"]  # fmt: skip
    text_of = dict(zip(data.corpus_ids, data.corpus_texts, strict=True))
    for r, q_text in zip(rows, data.query_texts, strict=True):
        pos_texts = {text_of[p] for p in r["positive_ids"]}
        assert len(r["negative_ids"]) == len(r["scores"]) == len(r["ranks"]) <= 3
        for nid in r["negative_ids"]:
            assert nid not in r["positive_ids"]
            assert text_of[nid] not in pos_texts  # no duplicate text of a positive
            assert text_of[nid] != q_text
        assert r["scores"] == sorted(r["scores"], reverse=True)  # top sampling: best first
        assert all(0 <= k <= 10 for k in r["ranks"])
    assert "dup" not in rows[0]["negative_ids"]  # "dup" duplicates query 0's positive d1
    assert summary.rows == len(rows) and summary.queries == 20 and summary.corpus == 61


def test_triplets_and_nway_rows(tmp_path: Path, files: tuple[Path, Path]) -> None:
    full, _ = _mine(tmp_path, files, "full.jsonl", output_format="full", max_score=0.7, range_max=8)
    _mine(tmp_path, files, "tri.jsonl", output_format="triplets", max_score=0.7, range_max=8)
    nway, _ = _mine(tmp_path, files, "nway.jsonl", output_format="nway", max_score=0.7, range_max=8)
    data = mfiles.read_queries_corpus(*files)
    text_of = dict(zip(data.corpus_ids, data.corpus_texts, strict=True))
    full_rows = _read_jsonl(tmp_path / "full.jsonl")
    want_tri, want_nway = [], []
    for r, q in zip(full_rows, data.query_texts, strict=True):
        negs = [text_of[n] for n in r["negative_ids"]]
        for p in r["positive_ids"]:
            want_tri += [{"anchor": q, "positive": text_of[p], "negative": n} for n in negs]
            if len(negs) == 3:
                row = {"anchor": q, "positive": text_of[p]}
                row.update({f"negative_{j + 1}": n for j, n in enumerate(negs)})
                want_nway.append(row)
    assert _read_jsonl(tmp_path / "tri.jsonl") == want_tri
    got_nway = _read_jsonl(tmp_path / "nway.jsonl")
    assert got_nway == want_nway
    assert list(got_nway[0]) == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    short = sum(len(r["negative_ids"]) < 3 for r in full_rows)
    assert short > 0, "max_score should leave some queries short of negatives"
    assert nway.too_few_negatives == nway.skipped_queries == full.too_few_negatives == short
    assert full.skipped_queries == 0


def test_parquet_output_matches_jsonl(tmp_path: Path, files: tuple[Path, Path]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    for fmt in FORMATS:
        _mine(tmp_path, files, f"{fmt}.jsonl", output_format=fmt)
        _mine(tmp_path, files, f"{fmt}.parquet", output_format=fmt)
        table = pq.read_table(tmp_path / f"{fmt}.parquet")
        rows = _read_jsonl(tmp_path / f"{fmt}.jsonl")
        assert table.column_names == list(rows[0])
        got = table.to_pylist()
        if fmt == "full":  # scores stored as float32
            for r in [*got, *rows]:
                r["scores"] = [round(s, 5) for s in r["scores"]]
                r["positive_score"] = round(r["positive_score"], 5)
        assert got == rows


@pytest.mark.parametrize("fmt", ["triplets", "nway"])
def test_output_loads_as_sentence_transformers_training_data(
    tmp_path: Path, files: tuple[Path, Path], fmt: str
) -> None:
    datasets = pytest.importorskip("datasets")
    _mine(tmp_path, files, "out.jsonl", output_format=fmt)
    ds = datasets.load_dataset(
        "json",
        data_files=str(tmp_path / "out.jsonl"),
        split="train",
        cache_dir=str(tmp_path / "hf"),
    )
    negs = ["negative"] if fmt == "triplets" else ["negative_1", "negative_2", "negative_3"]
    assert ds.column_names == ["anchor", "positive", *negs]
    assert len(ds) == len(_read_jsonl(tmp_path / "out.jsonl")) > 0
    assert all(isinstance(ds[0][c], str) for c in ds.column_names)


def test_faiss_indexes_agree_with_exact(tmp_path: Path, files: tuple[Path, Path]) -> None:
    pytest.importorskip("faiss")
    kw: dict[str, Any] = {"output_format": "full", "range_max": 20}
    _mine(tmp_path, files, "exact.jsonl", index="exact", **kw)
    _mine(tmp_path, files, "flat.jsonl", index="faiss-flat", **kw)
    _mine(tmp_path, files, "ivf.jsonl", index="faiss-ivf", **kw)
    exact, flat = _read_jsonl(tmp_path / "exact.jsonl"), _read_jsonl(tmp_path / "flat.jsonl")
    for a, b in zip(exact, flat, strict=True):  # equal up to float rounding and tie order
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
        assert a["ranks"] == b["ranks"]
    assert len(_read_jsonl(tmp_path / "ivf.jsonl")) == len(exact)


def test_same_seed_same_bytes_and_seed_matters(tmp_path: Path, files: tuple[Path, Path]) -> None:
    kw: dict[str, Any] = {"output_format": "full", "sampling": "uniform", "range_max": 40}
    _mine(tmp_path, files, "a.jsonl", seed=1, **kw)
    _mine(tmp_path, files, "b.jsonl", seed=1, **kw)
    _mine(tmp_path, files, "c.jsonl", seed=2, **kw)
    a = (tmp_path / "a.jsonl").read_bytes()
    assert a == (tmp_path / "b.jsonl").read_bytes()
    assert a != (tmp_path / "c.jsonl").read_bytes()


def test_summary_file_and_default_cache_removed(tmp_path: Path, files: tuple[Path, Path]) -> None:
    summary, _ = _mine(tmp_path, files, "out.jsonl", margin=0.05, max_score=0.6)
    saved = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert saved["rows"] == summary.rows == len(_read_jsonl(tmp_path / "out.jsonl"))
    assert saved["removed"] == summary.removed
    assert summary.removed.get("positive", 0) > 0
    assert saved["config"]["margin"] == 0.05 and saved["config"]["cache_kept"] is False
    assert not (tmp_path / "out.jsonl.cache").exists()


def test_explicit_cache_is_kept_and_reused(tmp_path: Path, files: tuple[Path, Path]) -> None:
    cache = tmp_path / "emb"
    _, first = _mine(tmp_path, files, "a.jsonl", cache_dir=cache)
    assert cache.is_dir() and len(first.seen) == 61 + 20
    _, second = _mine(tmp_path, files, "b.jsonl", cache_dir=cache, margin=0.1)
    assert second.seen == []


# ---------------------------------------------------------------------------------------------
# the command: resume, atomic output, summary table
# ---------------------------------------------------------------------------------------------


def _argv(files: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    return ["mine", "--queries", str(files[0]), "--corpus", str(files[1]), "--out", str(out),
            "--num-negatives", "3", "--shard-size", "16", "--quiet", *extra]  # fmt: skip


def test_killed_run_resumes_byte_identical(
    tmp_path: Path,
    files: tuple[Path, Path],
    fake_factory: _Built,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref = tmp_path / "ref" / "out.jsonl"
    code, _, _ = run_main(_argv(files, ref), capsys)
    assert code == 0 and ref.is_file()

    out = tmp_path / "run" / "out.jsonl"
    fake_factory.state["fail_after"] = 40  # 61 corpus texts in shards of 16: dies in shard 3
    code, _, _ = run_main(_argv(files, out), capsys)
    assert code != 0
    assert not out.exists() and not (out.parent / "out.jsonl.summary.json").exists()
    assert len(fake_factory[-1].seen) <= 40
    assert (out.parent / "out.jsonl.cache").is_dir()  # the finished shards stay for the resume

    fake_factory.state["fail_after"] = None
    code, _, _ = run_main(_argv(files, out), capsys)
    assert code == 0
    assert out.read_bytes() == ref.read_bytes()
    corpus_texts = [r["text"] for r in _read_jsonl(files[1])]
    done = 32  # two whole shards of 16 were cached before the failure
    resumed = fake_factory[-1].seen
    # only the missing corpus shards, then the queries, are encoded again
    assert sorted(resumed[: len(resumed) - 20]) == sorted(corpus_texts[done:])
    assert len(resumed) == len(corpus_texts) - done + 20
    assert not (out.parent / "out.jsonl.cache").exists()


def test_failed_write_leaves_no_output_file(
    tmp_path: Path,
    files: tuple[Path, Path],
    fake_factory: _Built,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_rows = pipeline.output_rows

    def failing_rows(*args: Any) -> Any:
        for i, row in enumerate(real_rows(*args)):
            if i == 5:
                raise OSError("No space left on device")
            yield row

    monkeypatch.setattr(pipeline, "output_rows", failing_rows)
    out = tmp_path / "o" / "out.jsonl"
    code, _, err = run_main(_argv(files, out), capsys)
    assert_one_line_error(code, err, "No space left on device")
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.jsonl.cache"]  # no tmp left
    out.write_text("an earlier run\n")
    code, _, err = run_main(_argv(files, out), capsys)
    assert_one_line_error(code, err, "No space left on device")
    assert out.read_text() == "an earlier run\n"  # replaced only by a complete file


def test_command_prints_summary_table(
    tmp_path: Path,
    files: tuple[Path, Path],
    fake_factory: _Built,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a for a in _argv(files, tmp_path / "o.parquet", "--margin", "0.1") if a != "--quiet"]
    code, _, err = run_main(argv, capsys)
    assert code == 0, err
    assert "removed by filter: positive" in err and "rows written (triplets)" in err
    assert (tmp_path / "o.parquet").is_file() and (tmp_path / "o.parquet.summary.json").is_file()


def test_command_device_defaults_to_auto(
    tmp_path: Path,
    files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from posneg.mining.config import resolve_device

    asked: list[dict[str, Any]] = []

    def factory(model: str, **kwargs: Any) -> Any:
        asked.append(kwargs)
        return _encoder(FakeEncoder())

    monkeypatch.setattr(mine_command, "ENCODER_FACTORY", factory)
    out = tmp_path / "o.jsonl"
    code, _, err = run_main(_argv(files, out, "--batch-size", "8"), capsys)
    assert code == 0, err
    assert asked == [{"device": "auto", "batch_size": 8, "max_seq_length": None, "quiet": True}]
    saved = json.loads((tmp_path / "o.jsonl.summary.json").read_text())
    assert saved["config"]["device"] == str(resolve_device("auto"))
    assert saved["config"]["model"] == "all-MiniLM-L6-v2" and saved["config"]["batch_size"] == 8
    assert saved["config"]["queries"] == str(files[0])


# ---------------------------------------------------------------------------------------------
# errors: one line, exit code 2, the model never loaded
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def factory(model: str, **kwargs: Any) -> Any:
        raise AssertionError("the model must not be loaded for a user mistake")

    monkeypatch.setattr(mine_command, "ENCODER_FACTORY", factory)


def _err(argv: list[str], capsys: pytest.CaptureFixture[str], *fragments: str) -> None:
    code, _, err = run_main(argv, capsys)
    assert_one_line_error(code, err, *fragments)


def _qc(
    tmp: Path, queries: Sequence[dict[str, Any]], corpus: Sequence[dict[str, Any]]
) -> tuple[Path, Path]:
    return _write_jsonl(tmp / "q.jsonl", queries), _write_jsonl(tmp / "c.jsonl", corpus)


_C = [{"id": "a", "text": "alpha"}, {"id": "b", "text": "beta"}, {"id": "c", "text": "gamma"}]
_Q = [{"id": "q1", "text": "first", "positives": ["a"]}]


@pytest.mark.usefixtures("no_model")
@pytest.mark.parametrize(
    ("queries", "corpus", "fragments"),
    [
        (_Q, [{"id": "a", "text": "x"}, {"id": "b"}], ("c.jsonl: line 2", "missing field 'text'")),
        ([{"id": "q1", "positives": ["a"]}], _C, ("q.jsonl: line 1", "missing field 'text'")),
        ([{"id": "q1", "text": "t"}], _C, ("q.jsonl: line 1", "missing field 'positives'")),
        (_Q, [], ("c.jsonl", "corpus is empty")),
        ([], _C, ("q.jsonl", "no queries")),
        (
            [{"id": "q7", "text": "t", "positives": ["a", "zz"]}],
            _C,
            ("query 'q7'", "'zz'", "not in the corpus"),
        ),
        (
            _Q,
            [*_C, {"id": "b", "text": "again"}],
            ("c.jsonl: line 4", "duplicate id 'b'", "line 2"),
        ),
        (
            [*_Q, {"id": "q1", "text": "u", "positives": ["b"]}],
            _C,
            ("q.jsonl: line 2", "duplicate id 'q1'"),
        ),
        ([{"id": "q1", "text": "t", "positives": []}], _C, ("q.jsonl: line 1", "non-empty list")),
        (
            [{"id": "q1", "text": 5, "positives": ["a"]}],
            _C,
            ("q.jsonl: line 1", "'text' must be a string"),
        ),
        (_Q, [{"id": 1.5, "text": "x"}], ("c.jsonl: line 1", "'id' must be a string or integer")),
    ],
)
def test_input_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    queries: list[dict[str, Any]],
    corpus: list[dict[str, Any]],
    fragments: tuple[str, ...],
) -> None:
    _err(_argv(_qc(tmp_path, queries, corpus), tmp_path / "o.jsonl"), capsys, *fragments)
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.usefixtures("no_model")
@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--range-max", "3"], ("--range-max 3", "3 documents")),
        (["--range-min", "3"], ("--range-min 3", "3 documents")),
        (["--num-negatives", "5"], ("--num-negatives 5", "3 candidates")),
        (["--range-min", "2", "--range-max", "1"], ("--range-max 1", "smaller than --range-min")),
        (["--temperature", "0"], ("--temperature",)),
        (["--relative-margin", "-0.1"], ("--relative-margin",)),
        (["--margin", "-1"], ("--margin",)),
        (["--shard-size", "0"], ("--shard-size must be >= 1",)),
        (["--device", "tpu9"], ("--device",)),
    ],
)
def test_option_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragments: tuple[str, ...]
) -> None:
    files = _qc(tmp_path, _Q, _C)
    _err([*_argv(files, tmp_path / "o.jsonl"), *extra], capsys, *fragments)


@pytest.mark.usefixtures("no_model")
@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--format", "pairs"], ("--format", "'pairs'", "'triplets'", "'nway'", "'full'")),
        (["--sampling", "best"], ("--sampling", "'best'", "'softmax'")),
        (["--index", "hnsw"], ("--index", "'hnsw'", "'faiss-ivf'")),
        (["--batch-size", "0"], ("--batch-size",)),
        (["--max-seq-length", "0"], ("--max-seq-length",)),
    ],
)
def test_choice_and_range_flags_are_checked_by_typer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragments: tuple[str, ...]
) -> None:
    files = _qc(tmp_path, _Q, _C)
    code, out, err = run_main([*_argv(files, tmp_path / "o.jsonl"), *extra], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    # typer's boxed message, compared without box edges and whitespace (rich wraps it)
    text = "".join(err.replace("│", " ").split())
    assert "Invalidvaluefor" in text
    for f in fragments:
        assert "".join(f.split()) in text, err
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.usefixtures("no_model")
def test_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q, c = _qc(tmp_path, _Q, _C)
    out = tmp_path / "o.jsonl"
    _err(_argv((q, tmp_path / "nope.jsonl"), out), capsys, "--corpus", "not found", "nope.jsonl")
    _err(_argv((tmp_path, c), out), capsys, "--queries", "not a file")
    csv = tmp_path / "c.csv"
    csv.write_text("id,text\n")
    _err(_argv((q, csv), out), capsys, "c.csv", "unsupported file type '.csv'")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": \n')
    _err(_argv((q, bad), out), capsys, "bad.jsonl: line 2", "bad JSON", "column 21")
    bad.write_text('{"id": "a", "text": "x"}\n["b", "y"]\n')
    _err(_argv((q, bad), out), capsys, "bad.jsonl: line 2", "expected a JSON object")
    bad.write_bytes(b'{"id": "a", "text": "\xff"}\n')
    _err(_argv((q, bad), out), capsys, "bad.jsonl: line 1", "not UTF-8")
    fake_parquet = tmp_path / "c.parquet"
    fake_parquet.write_text("not parquet at all")
    _err(_argv((q, fake_parquet), out), capsys, "c.parquet", "not a readable Parquet file")
    _err(_argv((q, c), tmp_path), capsys, "--out", "is a folder")
    assert not out.exists()


@pytest.mark.usefixtures("no_model")
def test_parquet_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    q, _ = _qc(tmp_path, _Q, _C)
    c = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "a", "body": "x"}]), c)
    _err(_argv((q, c), tmp_path / "o.jsonl"), capsys, "c.parquet", "missing field 'text'", "body")


@pytest.mark.usefixtures("no_model")
def test_input_choice_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q, c = _qc(tmp_path, _Q, _C)
    p = _write_jsonl(tmp_path / "p.jsonl", [{"anchor": "a", "positive": "b"}])
    out = ["--out", str(tmp_path / "o.jsonl")]
    _err(["mine", "--pairs", str(p), "--queries", str(q), "--corpus", str(c), *out], capsys,
         "either --pairs or --queries", "not both")  # fmt: skip
    _err(["mine", *out], capsys, "no input", "--pairs")
    _err(["mine", "--queries", str(q), *out], capsys, "--queries needs --corpus")
    _err(["mine", "--corpus", str(c), *out], capsys, "--corpus needs --queries")
    _err(["mine", "--pairs", str(p)], capsys, "--out")
    _err(["mine", "--pairs", str(p), "--anchor-column", "question", *out], capsys,
         "p.jsonl: line 1", "missing field 'question'")  # fmt: skip
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n")
    _err(["mine", "--pairs", str(empty), *out], capsys, "e.jsonl", "empty corpus")


# ---------------------------------------------------------------------------------------------
# the real packaged model, end to end (one test: ~10-20 s, mostly the model load)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_pairs_to_triplets_train_one_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    datasets = pytest.importorskip("datasets")
    pairs = [
        ("how do I parse a json string", "json.loads(text) parses a JSON document"),
        ("read a file line by line", "for line in open(path): handle(line)"),
        ("sort a list of numbers", "sorted(values) returns a new sorted list"),
        ("join path components", "os.path.join(a, b) joins two path parts"),
        ("current time in utc", "datetime.now(timezone.utc) gives the current time"),
        ("hash bytes with sha256", "hashlib.sha256(data).hexdigest() hashes bytes"),
    ]
    path = _write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": a, "positive": p} for a, p in pairs])
    out = tmp_path / "train.jsonl"
    code, _, err = run_main(
        ["mine", "--pairs", str(path), "--out", str(out), "--num-negatives", "2", "--quiet"], capsys
    )
    assert code == 0, err
    ds = datasets.load_dataset(
        "json", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert ds.column_names == ["anchor", "positive", "negative"] and len(ds) == 12
    assert all(r["negative"] != r["positive"] for r in ds)

    from posneg.mining.encode import load_encoder

    try:  # sentence-transformers >= 6 moved the losses; older releases have the short path
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )
    except ImportError:  # pragma: no cover
        from sentence_transformers.losses import MultipleNegativesRankingLoss  # type: ignore[no-redef]

    model = load_encoder().model
    assert model is not None
    loss_fn = MultipleNegativesRankingLoss(model)
    features = [model.tokenize(ds[c]) for c in ds.column_names]
    loss = loss_fn(features, None)
    assert torch.isfinite(loss) and loss.item() > 0


@pytest.mark.usefixtures("fake_factory")
def test_sentence_transformers_flag_names_give_the_same_file(
    tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--format n-tuple|triplet``, ``--absolute-margin`` and ``--sampling random`` are
    sentence-transformers' names of ``nway``/``triplets``, ``--margin`` and ``uniform``."""
    pairs = [
        (["--format", "n-tuple", "--absolute-margin", "0.05", "--sampling", "random"],
         ["--format", "nway", "--margin", "0.05", "--sampling", "uniform"]),
        (["--format", "triplet", "--margin", "0.1", "--absolute-margin", "0.1"],
         ["--format", "triplets", "--margin", "0.1"]),
    ]  # fmt: skip
    for i, (st_names, ours) in enumerate(pairs):
        a, b = tmp_path / f"st{i}.jsonl", tmp_path / f"posneg{i}.jsonl"
        assert run_main(_argv(files, a, *st_names), capsys)[0] == 0
        assert run_main(_argv(files, b, *ours), capsys)[0] == 0
        assert a.read_bytes() == b.read_bytes() and a.stat().st_size > 0
        summary = json.loads(a.with_name(a.name + ".summary.json").read_text())
        assert summary["config"]["format"] == ours[1]
    code, _, err = run_main(
        _argv(files, tmp_path / "x.jsonl", "--margin", "0.1", "--absolute-margin", "0.2"), capsys
    )
    assert_one_line_error(code, err, "--absolute-margin 0.2 and --margin 0.1 differ")
