"""posneg._io and posneg._progress: atomic writes, line-numbered records, npz, progress."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from posneg import _io, _npz, _progress
from posneg._io import InputError

# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------


def test_atomic_write_has_umask_permissions_and_never_touches_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mask = 0o027
    old = os.umask(mask)
    try:

        def forbidden(_: int) -> int:
            raise AssertionError("os.umask called")

        monkeypatch.setattr(os, "umask", forbidden)
        path = _io.atomic_write_text(tmp_path / "a.txt", "hello")
        monkeypatch.undo()
        assert path.read_text() == "hello"
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    finally:
        os.umask(old)


def test_atomic_failure_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), _io.atomic_open_text(target) as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_atomic_writes_from_many_threads_each_land_whole(tmp_path: Path) -> None:
    def write(i: int) -> None:
        for j in range(20):
            _io.atomic_write_text(tmp_path / f"f{i}.txt", f"{i}:{j}\n" * 100)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        assert (tmp_path / f"f{i}.txt").read_text() == f"{i}:19\n" * 100
    assert len(list(tmp_path.iterdir())) == 8  # no temporary file left behind


def test_overwriting_keeps_the_existing_mode(tmp_path: Path) -> None:
    """Issue 22, item 5: replacing a 0600 file made it 0644."""
    target = tmp_path / "secret.jsonl"
    target.write_text("old\n")
    os.chmod(target, 0o600)
    _io.atomic_write_text(target, "new\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "new\n"
    os.chmod(target, 0o640)
    with _io.atomic_targets(target, tmp_path / "other.txt") as (a, b):
        a.write_text("newer\n")
        b.write_text("x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_atomic_targets_commit_all_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "out.jsonl", tmp_path / "out.jsonl.summary.json"
    first.write_text("old out\n")
    second.write_text("old summary\n")
    real = _io._rename

    def fail_on_second(src: Path, dst: Path) -> None:
        if dst == second:
            raise OSError("disk gone")
        real(src, dst)

    monkeypatch.setattr(_io, "_rename", fail_on_second)
    with pytest.raises(OSError, match="disk gone"), _io.atomic_targets(first, second) as (a, b):
        a.write_text("new out\n")
        b.write_text("new summary\n")
    assert first.read_text() == "old out\n" and second.read_text() == "old summary\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, second.name]
    first.unlink()  # a target that did not exist is removed again
    with pytest.raises(OSError, match="disk gone"), _io.atomic_targets(first, second) as (a, b):
        a.write_text("new out\n")
        b.write_text("new summary\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [second.name]
    monkeypatch.undo()
    with _io.atomic_targets(first, second) as (a, b):
        a.write_text("new out\n")
        b.write_text("new summary\n")
    assert first.read_text() == "new out\n" and second.read_text() == "new summary\n"


def test_remove_stale_temps_only_removes_dead_writers_files(tmp_path: Path) -> None:
    """Issue 22, item 6: a killed writer's temporary file stayed forever."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.jsonl.{dead.pid}-0123456789ab.tmp"
    legacy = tmp_path / ".out.jsonl.0123456789ab.tmp"  # earlier versions: no pid
    mine = tmp_path / f".out.jsonl.{os.getpid()}-0123456789ab.tmp"  # a live writer
    other = tmp_path / f".other.jsonl.{dead.pid}-0123456789ab.tmp"
    keep = [tmp_path / "out.jsonl", tmp_path / ".out.jsonl.notes.tmp", tmp_path / "x.tmp"]
    for p in [stale, legacy, mine, other, *keep]:
        p.write_text("x")
    removed = _io.remove_stale_temps(tmp_path, "out.jsonl")
    assert sorted(removed) == sorted([stale, legacy])
    assert _io.remove_stale_temps(tmp_path) == [other]
    assert sorted(tmp_path.iterdir()) == sorted([mine, *keep])
    assert _io.remove_stale_temps(tmp_path / "missing") == []


def test_atomic_target_creates_the_folder(tmp_path: Path) -> None:
    path = _io.atomic_write_bytes(tmp_path / "a" / "b" / "c.bin", b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"


# ---------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------


def test_jsonl_records_skip_blank_lines_and_name_lines(tmp_path: Path) -> None:
    p = tmp_path / "q.jsonl"
    p.write_text('{"id": 1, "text": "a", "x": 0}\n\n{"id": "b", "text": "c"}\n')
    got = list(_io.iter_records(p, ["id", "text"], flag="--queries"))
    assert got == [(f"{p}: line 1", [1, "a"]), (f"{p}: line 3", ["b", "c"])]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"id": 1}\n', "line 1: missing field 'text'"),
        (b'{"id": 1, "text": "a"}\n{"id": 2, \n', r"line 2: bad JSON \("),
        (b'{"id": 1, "text": "a"}\n[1, 2]\n', "line 2: expected a JSON object; got list"),
        (b"[1, 2]\n", "line 1: this is a JSON array, not JSON Lines"),
        (b'[\n  {"id": 1, "text": "a"}\n]\n', "line 1: this is a JSON array, not JSON Lines"),
        (
            b'\n{"id": 1, "text": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
            r"line 2: bad JSON \(nested too deeply\)",
        ),
        (b'{"id": ' + b"9" * 5000 + b', "text": "a"}\n', r"line 1: bad JSON \(.*digits"),
        (b'{"id": 1, "text": "\xff"}\n', "line 1: not UTF-8 text"),
    ],
)
def test_jsonl_errors_name_the_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "q.jsonl"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        list(_io.iter_records(p, ["id", "text"], flag="--queries"))


def test_jsonl_accepts_a_utf8_byte_order_mark(tmp_path: Path) -> None:
    """Issue 22: a BOM at the start of the file was reported as bad JSON."""
    p = tmp_path / "q.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"id": 1, "text": "a"}\n{"id": 2, "text": "\xef\xbb\xbfb"}\n')
    got = [values for _, values in _io.iter_records(p, ["id", "text"], flag="--queries")]
    assert got == [[1, "a"], [2, "\ufeffb"]]  # only the file's leading mark is dropped


def test_record_kind_errors_name_the_flag(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--corpus: file not found"):
        _io.record_kind(tmp_path / "nope.jsonl", "--corpus")
    with pytest.raises(InputError, match="--corpus: not a file"):
        _io.record_kind(tmp_path, "--corpus")
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(InputError, match=r"--corpus: .*unsupported file type '\.csv'"):
        _io.record_kind(tmp_path / "a.csv", "--corpus")


def test_parquet_records_and_missing_column(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    p = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [1, 2], "text": ["a", "b"]}), str(p))
    got = list(_io.iter_records(p, ["text", "id"], flag="--corpus"))
    assert got == [(f"{p}: row 1", ["a", 1]), (f"{p}: row 2", ["b", 2])]
    with pytest.raises(InputError, match="missing field 'positives' \\(columns: id, text\\)"):
        list(_io.iter_records(p, ["positives"], flag="--corpus"))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        list(_io.iter_records(bad, ["id"], flag="--corpus"))


# ---------------------------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------------------------


def test_read_npz_reads_named_arrays(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, X=np.ones((3, 2)), y=np.arange(3), extra=np.zeros(1))
    arrays = _npz.read_npz(p, ("X", "y"), fn="load")
    assert sorted(arrays) == ["X", "y"]
    np.testing.assert_array_equal(arrays["y"], np.arange(3))


def test_read_npz_refuses_object_arrays_and_names_missing_ones(tmp_path: Path) -> None:
    p = tmp_path / "obj.npz"
    np.savez(p, X=np.array([{"a": 1}], dtype=object), y=np.arange(1))
    with pytest.raises(ValueError, match=r"load: cannot read .* as \.npz"):
        _npz.read_npz(p, ("X", "y"), fn="load")
    q = tmp_path / "x.npz"
    np.savez(q, X=np.ones(2))
    with pytest.raises(ValueError, match=r"load: .* must hold arrays 'X' and 'y'; missing 'y'"):
        _npz.read_npz(q, ("X", "y"), fn="load")
    npy = tmp_path / "a.npy"
    np.save(npy, np.ones(2))
    with pytest.raises(ValueError, match=r"single \.npy array"):
        _npz.read_npz(npy, ("X", "y"), fn="load")
    with pytest.raises(FileNotFoundError, match="load: no such file"):
        _npz.read_npz(tmp_path / "none.npz", ("X",), fn="load")


def test_integer_labels() -> None:
    assert _npz.integer_labels(np.array([1.0, 2.0]), fn="f").dtype == np.int64
    assert _npz.integer_labels(np.array([True, False]), fn="f").tolist() == [1, 0]
    with pytest.raises(ValueError, match="f: y must hold integer class labels; got dtype float64"):
        _npz.integer_labels(np.array([0.5]), fn="f")


# ---------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------


def test_tracker_reports_running_counts_to_a_callback() -> None:
    seen: list[tuple[str, int, int]] = []
    with _progress.tracker(lambda d, n, t: seen.append((d, n, t)), "encode", 5) as advance:
        advance(3)
        advance(2)
    assert seen == [("encode", 0, 5), ("encode", 3, 5), ("encode", 5, 5)]


def test_tracker_false_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    with _progress.tracker(False, "x", 2) as advance:
        advance(2)
    assert capsys.readouterr() == ("", "")


def test_check_progress_names_the_function() -> None:
    _progress.check_progress("mine", True)
    _progress.check_progress("mine", lambda d, n, t: None)
    with pytest.raises(TypeError, match="mine: progress must be a bool or a callable"):
        _progress.check_progress("mine", "yes")
