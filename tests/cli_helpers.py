"""Helpers shared by the CLI tests: run ``posneg.cli.main`` in-process and check that a user
mistake is one readable line with exit code 2. Importable from every test folder because
``tests/conftest.py`` puts this folder on ``sys.path`` (pytest's default import mode)."""

from __future__ import annotations

import pytest

from posneg import cli


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``posneg.cli.main(argv)``; return (exit code, stdout, stderr)."""
    code = 0
    try:
        cli.main(argv)
    except SystemExit as exc:
        code = 0 if exc.code is None else int(exc.code)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    """Exit code 2, one ``posneg: error: ...`` line holding every fragment, no traceback."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("posneg: error: ")
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]
