"""Atomic file writes shared by every bench and by ``posneg mine`` (:mod:`posneg._io`).

What tests/test_io.py does not already cover: permissions equal to an ordinary ``open()``,
an interrupt inside the block, and a target that changes only when the block ends.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from posneg._io import atomic_target, atomic_write_bytes, atomic_write_text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_written_file_has_normal_permissions_not_temporary_0600(tmp_path: Path) -> None:
    out = atomic_write_text(tmp_path / "sub" / "r.md", "hello\n")
    assert out.read_text() == "hello\n"
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what an ordinary open() creates under the same umask
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()


def test_failure_inside_the_block_leaves_no_file_and_keeps_an_old_one(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="boom"), atomic_target(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too

    atomic_write_bytes(target, b"old")
    with pytest.raises(KeyboardInterrupt), atomic_target(target) as tmp:
        tmp.write_text("new but interrupted")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_success_replaces_the_target(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"one")
    with atomic_target(target) as tmp:
        tmp.write_bytes(b"two")
        assert target.read_bytes() == b"one"  # not visible before the block ends
    assert target.read_bytes() == b"two"
