"""`posneg mine` under careless and hostile use (issue 22): it loses nothing and trusts no file.

Each test reproduces one finding of the issue end to end through the command (``posneg.cli.main``)
with the fake trigram encoder of ``test_mine_cli`` (no model load). A process killed at a chosen
moment is a child ``python`` that ends itself with ``os._exit`` there: like ``SIGKILL``, no
``finally`` block, ``except`` clause or ``atexit`` hook runs.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_mine_cli import FakeEncoder, _argv, _dataset, _encoder, _read_jsonl, _write_jsonl

import posneg.cli.mine as mine_command
from cli_helpers import assert_one_line_error, run_main
from posneg import _io
from posneg.mining.pipeline import summary_matches

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return _dataset(tmp_path, n_docs=30, n_queries=8)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[FakeEncoder]:
    """The command builds fake encoders (no model load); the list holds them."""
    built: list[FakeEncoder] = []

    def factory(model: str, **kwargs: Any) -> Any:
        built.append(FakeEncoder())
        return _encoder(built[-1])

    monkeypatch.setattr(mine_command, "ENCODER_FACTORY", factory)
    return built


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def factory(model: str, **kwargs: Any) -> Any:
        raise AssertionError("the model must not be loaded for a user mistake")

    monkeypatch.setattr(mine_command, "ENCODER_FACTORY", factory)


def _ok(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(argv, capsys)
    assert code == 0, err


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


_KILLER = """
import os, sys
sys.path[:0] = [{tests!r}, {mining!r}]
from posneg import _io, cli
import posneg.cli.mine as command
import posneg.mining.pipeline as pipeline
from test_mine_cli import FakeEncoder, _encoder

command.ENCODER_FACTORY = lambda model, **kw: _encoder(FakeEncoder())
moment, argv = sys.argv[1], sys.argv[2:]
rename = _io._rename

def hooked(src, dst):
    if moment == "between_renames" and dst.name.endswith(".summary.json"):
        os._exit(9)
    if moment == "writing_shard" and dst.name.startswith("shard_00001-"):
        os._exit(9)
    rename(src, dst)

_io._rename = hooked
rows = pipeline.output_rows

def dying_rows(*args):
    for i, row in enumerate(rows(*args)):
        if i == 5:
            os._exit(9)
        yield row

if moment == "writing_output":
    pipeline.output_rows = dying_rows
cli.main(argv)
"""


def _killed_run(tmp: Path, moment: str, argv: list[str]) -> None:
    script = tmp / "killer.py"
    script.write_text(_KILLER.format(tests=str(TESTS.parent), mining=str(TESTS)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script), moment, *argv], env=env, capture_output=True, text=True
    )
    assert done.returncode == 9, done.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# data loss and corruption
# ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_model")
def test_1_out_equal_to_an_input_is_refused(
    tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"anchor": f"question {i}", "positive": f"answer {i}"} for i in range(4)]
    pairs = _write_jsonl(tmp_path / "v.jsonl", rows)
    before = pairs.read_bytes()
    argv = ["mine", "--pairs", str(pairs), "--out", str(pairs), "--num-negatives", "2"]
    code, _, err = run_main(argv, capsys)
    assert_one_line_error(code, err, "--out", "is the input file", "v.jsonl")
    q, c = files
    corpus = c.read_bytes()
    for out in (c, tmp_path / "sub" / ".." / c.name):  # the same file under another spelling
        code, _, err = run_main(_argv(files, out), capsys)
        assert_one_line_error(code, err, "--out", "destroy the input")
    os.link(c, tmp_path / "hard.jsonl")  # a hard link is the same file too
    code, _, err = run_main(_argv(files, tmp_path / "hard.jsonl"), capsys)
    assert_one_line_error(code, err, "--out", "is the input file")
    # the summary would replace an input: <out>.summary.json given as the corpus
    summary_named = tmp_path / "x.jsonl.summary.json"
    summary_named.write_bytes(corpus)
    code, _, err = run_main(_argv((q, summary_named), tmp_path / "x.jsonl"), capsys)
    assert_one_line_error(code, err, "--out", "the summary", "is the input file")
    assert pairs.read_bytes() == before and c.read_bytes() == corpus
    assert summary_named.read_bytes() == corpus


@pytest.mark.usefixtures("no_model")
def test_2_summary_path_taken_by_a_folder_is_refused_before_anything(
    tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("OLD\n")
    (tmp_path / "out.jsonl.summary.json").mkdir()
    code, _, err = run_main(_argv(files, out), capsys)
    assert_one_line_error(code, err, "--out", "out.jsonl.summary.json", "folder")
    assert out.read_text() == "OLD\n"


def test_2_failure_between_output_and_summary_renames_changes_nothing(
    tmp_path: Path,
    files: tuple[Path, Path],
    fake: list[FakeEncoder],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "o" / "out.jsonl"
    summary = tmp_path / "o" / "out.jsonl.summary.json"
    _ok(_argv(files, out, "--seed", "1", "--sampling", "uniform"), capsys)
    old_out, old_summary = out.read_bytes(), summary.read_bytes()
    assert summary_matches(out)
    real = _io._rename

    def fail_summary_rename(src: Path, dst: Path) -> None:
        if dst == summary:
            raise OSError(f"injected: cannot rename onto {dst}")
        real(src, dst)

    monkeypatch.setattr(_io, "_rename", fail_summary_rename)
    code, _, err = run_main(_argv(files, out, "--seed", "2", "--sampling", "uniform"), capsys)
    assert_one_line_error(code, err, "injected: cannot rename")
    assert out.read_bytes() == old_out and summary.read_bytes() == old_summary
    assert _names(out.parent) == ["out.jsonl", "out.jsonl.cache", "out.jsonl.summary.json"]
    monkeypatch.setattr(_io, "_rename", real)
    _ok(_argv(files, out, "--seed", "2", "--sampling", "uniform"), capsys)
    assert out.read_bytes() != old_out and summary_matches(out)


def test_2_kill_between_the_renames_is_detected_and_a_rerun_repairs(
    tmp_path: Path,
    files: tuple[Path, Path],
    fake: list[FakeEncoder],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.jsonl"
    summary = tmp_path / "out.jsonl.summary.json"
    _ok(_argv(files, out, "--seed", "1", "--sampling", "uniform"), capsys)
    old_summary = summary.read_bytes()
    argv = _argv(files, out, "--seed", "2", "--sampling", "uniform")
    _killed_run(tmp_path, "between_renames", argv)
    assert summary.read_bytes() == old_summary  # new output beside the old summary ...
    assert not summary_matches(out)  # ... which the recorded hash reveals
    leftovers = [n for n in _names(tmp_path) if n.endswith(".tmp")]
    assert leftovers  # the summary's temporary file (and the old output's backup link)
    _ok(argv, capsys)
    assert summary_matches(out)
    assert json.loads(summary.read_text())["config"]["seed"] == 2
    assert not [n for n in _names(tmp_path) if n.endswith(".tmp")]


@pytest.mark.usefixtures("no_model")
def test_3_a_foreign_folder_at_the_default_cache_is_never_deleted(
    tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    mine = tmp_path / "out.jsonl.cache"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    code, _, err = run_main(_argv(files, out), capsys)
    assert_one_line_error(code, err, "--out", "out.jsonl.cache", "did not write", "--cache-dir")
    assert (mine / "thesis.tex").read_text() == "years of work" and not out.exists()
    mine.rename(tmp_path / "elsewhere")
    (tmp_path / "out.jsonl.cache").write_text("a file")
    code, _, err = run_main(_argv(files, out), capsys)
    assert_one_line_error(code, err, "out.jsonl.cache exists and is not a folder")


def test_3_only_what_posneg_wrote_is_removed(
    tmp_path: Path,
    files: tuple[Path, Path],
    fake: list[FakeEncoder],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.jsonl"
    cache = tmp_path / "out.jsonl.cache"
    cache.mkdir()  # an empty folder that was already there is left in place
    _ok(_argv(files, out), capsys)
    assert cache.is_dir() and list(cache.iterdir()) == []
    cache.rmdir()
    _ok(_argv(files, out), capsys)
    assert not cache.exists()


def test_4_damaged_cache_shards_are_recomputed_end_to_end(
    tmp_path: Path,
    files: tuple[Path, Path],
    fake: list[FakeEncoder],
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref = tmp_path / "ref.jsonl"
    _ok(_argv(files, ref, "--format", "full"), capsys)
    cache = tmp_path / "emb"
    out = tmp_path / "out.jsonl"
    _ok(_argv(files, out, "--format", "full", "--cache-dir", str(cache)), capsys)
    shards = sorted(cache.glob("*/shard_*.npy"))
    assert len(shards) == 3  # 31 corpus texts in shards of 16, 8 queries
    flipped = bytearray(shards[0].read_bytes())
    flipped[-5] ^= 0x10  # a payload byte: still a valid float32 array
    shards[0].write_bytes(bytes(flipped))
    shards[1].write_bytes(b"\0" * shards[1].stat().st_size)
    data = shards[2].read_bytes()
    shards[2].write_bytes(data.replace(b"'fortran_order': False", b"'fortran_order': True "))
    _ok(_argv(files, out, "--format", "full", "--cache-dir", str(cache)), capsys)
    assert out.read_bytes() == ref.read_bytes()
    assert len(fake[-1].seen) == 31 + 8  # every damaged shard was encoded again


def test_5_overwriting_keeps_the_output_and_summary_modes(
    tmp_path: Path,
    files: tuple[Path, Path],
    fake: list[FakeEncoder],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.jsonl"
    summary = tmp_path / "out.jsonl.summary.json"
    _ok(_argv(files, out), capsys)
    os.chmod(out, 0o600)
    os.chmod(summary, 0o640)
    _ok(_argv(files, out, "--seed", "3"), capsys)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(summary.stat().st_mode) == 0o640


def test_6_temporaries_of_killed_runs_are_removed_by_the_next_run(
    tmp_path: Path,
    files: tuple[Path, Path],
    fake: list[FakeEncoder],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "o" / "out.jsonl"
    cache = tmp_path / "emb"
    argv = _argv(files, out, "--cache-dir", str(cache))
    _killed_run(tmp_path, "writing_shard", argv)
    assert [p.name[:13] for p in cache.glob("*/.shard_*.tmp")] == [".shard_00001-"]
    _killed_run(tmp_path, "writing_output", argv)
    left = _names(out.parent)
    assert not out.exists() and len([n for n in left if n.endswith(".tmp")]) == 2, left
    _ok(argv, capsys)
    assert _names(out.parent) == ["out.jsonl", "out.jsonl.summary.json"]
    assert list(cache.glob("*/.*.tmp")) == []
    assert summary_matches(out)


# ---------------------------------------------------------------------------------------------
# crashes: one line, exit 2, before the model loads
# ---------------------------------------------------------------------------------------------

_C = [{"id": "a", "text": "alpha"}, {"id": "b", "text": "beta"}, {"id": "c", "text": "gamma"}]
_Q = [{"id": "q1", "text": "first", "positives": ["a"]}]


def _qc(tmp: Path, queries: Any = _Q, corpus: Any = _C) -> tuple[Path, Path]:
    return _write_jsonl(tmp / "q.jsonl", queries), _write_jsonl(tmp / "c.jsonl", corpus)


@pytest.mark.usefixtures("no_model")
def test_deeply_nested_json_and_lone_surrogates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q, c = _qc(tmp_path)
    deep = "[" * 200_000 + "]" * 200_000
    c.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y", "extra": ' + deep + "}\n")
    code, _, err = run_main(_argv((q, c), tmp_path / "o.jsonl", "--num-negatives", "1"), capsys)
    assert_one_line_error(code, err, "c.jsonl: line 2", "nested too deeply")
    c.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "bad \\ud800 text"}\n')
    code, _, err = run_main(_argv((q, c), tmp_path / "o.jsonl", "--num-negatives", "1"), capsys)
    assert_one_line_error(code, err, "c.jsonl: line 2", "'text'", "lone surrogate", "\\ud800")
    _write_jsonl(c, _C)
    q.write_text('{"id": "q\\udc00", "text": "t", "positives": ["a"]}\n')
    code, _, err = run_main(_argv((q, c), tmp_path / "o.jsonl", "--num-negatives", "1"), capsys)
    assert_one_line_error(code, err, "q.jsonl: line 1", "'id'", "lone surrogate")


@pytest.mark.usefixtures("no_model")
@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--device", "meta"], ("--device", "'meta' cannot compute embeddings")),
        (["--margin", "nan"], ("--margin must be a finite number; got nan",)),
        (["--temperature", "inf"], ("--temperature must be a finite number; got inf",)),
        (["--max-score", "inf"], ("--max-score must be a finite number",)),
        (["--seed", str(2**64)], ("--seed must be between -2**63 and 2**64 - 1",)),
    ],
)
def test_options_are_checked_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragments: tuple[str, ...]
) -> None:
    code, _, err = run_main([*_argv(_qc(tmp_path), tmp_path / "o.jsonl"), *extra], capsys)
    assert_one_line_error(code, err, *fragments)


def test_parquet_full_ids_beyond_int64_and_mixed_types(
    tmp_path: Path, fake: list[FakeEncoder], capsys: pytest.CaptureFixture[str]
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    big = 2**70
    corpus = [{"id": big, "text": "alpha beta"}, {"id": "s1", "text": "beta gamma"},
              {"id": 7, "text": "gamma delta"}, {"id": 8, "text": "delta alpha"}]  # fmt: skip
    queries = [{"id": big + 1, "text": "alpha", "positives": [big]},
               {"id": 2, "text": "gamma", "positives": [7]}]  # fmt: skip
    q, c = _qc(tmp_path, queries, corpus)
    out = tmp_path / "full.parquet"
    _ok(_argv((q, c), out, "--format", "full", "--num-negatives", "2"), capsys)
    rows = pq.read_table(out).to_pylist()
    assert [r["query_id"] for r in rows] == [str(big + 1), "2"]  # every id as a string
    assert rows[0]["positive_ids"] == [str(big)]
    assert set(rows[1]["negative_ids"]) <= {str(big), "s1", "8"}
    # integer query ids with a string corpus id among the negatives (inferred from queries before)
    corpus = [{"id": 1, "text": "alpha beta"}, {"id": "s", "text": "alpha beta gamma"},
              {"id": 3, "text": "zeta"}]  # fmt: skip
    q, c = _qc(tmp_path, [{"id": 1, "text": "alpha beta", "positives": [1]}], corpus)
    _ok(_argv((q, c), out, "--format", "full", "--num-negatives", "2"), capsys)
    rows = pq.read_table(out).to_pylist()
    assert rows[0]["query_id"] == "1" and rows[0]["negative_ids"] == ["s", "3"]


# ---------------------------------------------------------------------------------------------
# misleading messages
# ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_model")
def test_a_json_array_given_as_json_lines_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q, c = _qc(tmp_path)
    c.write_text(json.dumps(_C, indent=2))
    code, _, err = run_main(_argv((q, c), tmp_path / "o.jsonl", "--num-negatives", "1"), capsys)
    assert_one_line_error(code, err, "c.jsonl: line 1", "JSON array, not JSON Lines")


def test_a_utf8_byte_order_mark_is_accepted(
    tmp_path: Path, fake: list[FakeEncoder], capsys: pytest.CaptureFixture[str]
) -> None:
    q, c = _qc(tmp_path)
    c.write_bytes(b"\xef\xbb\xbf" + c.read_bytes())
    out = tmp_path / "o.jsonl"
    _ok(_argv((q, c), out, "--num-negatives", "1"), capsys)
    assert len(_read_jsonl(out)) == 1
