"""The `posneg` entry point: --version, list, cite, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import posneg
from cli_helpers import run_main
from posneg import registry


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"posneg {posneg.__version__}"


def test_version_from_a_fresh_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "posneg.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"posneg {posneg.__version__}"


def test_list_shows_registered_techniques(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # plain lines: the terminal width changes nothing
    code, out, _ = run_main(["list"], capsys)
    assert code == 0
    available = registry.available()
    assert available, "no registered technique is importable"
    rows = out.splitlines()
    assert len(rows) == len(available)  # one line per technique
    for row, tech in zip(rows, available, strict=True):
        assert len(row) <= 100, row
        assert row.split()[:2] == [tech.key, tech.family]
        assert tech.paper in row


def test_list_family_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["list", "--family", "negatives"], capsys)
    assert code == 0
    keys = [line.split()[0] for line in out.splitlines()]
    assert keys == [t.key for t in registry.available() if t.family == "negatives"]
    assert "moco" in keys and "feature_transform" in keys
    code, out, _ = run_main(["list", "--json"], capsys)
    assert code == 0
    records = json.loads(out)
    assert [r["key"] for r in records] == [t.key for t in registry.available()]
    dcl = next(r for r in records if r["key"] == "dcl")
    assert dcl["name"] == "DCLLoss" and dcl["module"] == "posneg.losses.dcl"
    assert dcl["paper"].endswith("2022") and dcl["arxiv"] == "2110.06848"


@pytest.mark.parametrize(("alias", "key"), [("ft", "feature_transform"), ("queue", "moco")])
def test_aliases_resolve_to_one_key(
    alias: str, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert registry.get(alias).key == key
    code, out, _ = run_main(["cite", alias], capsys)
    assert code == 0 and out.startswith("@")


def test_registry_keys_are_unique() -> None:
    names = [k for t in registry.TECHNIQUES for k in (t.key, *t.aliases)]
    assert len(names) == len(set(names))


def test_list_unknown_family(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["list", "--family", "nope"], capsys)
    assert code == 2
    assert err.strip().splitlines() == [err.strip()]
    assert "--family" in err and "Traceback" not in err
    assert "losses" in err and "mixing" in err  # the known families


@pytest.mark.parametrize("name", ["dcl", "DCLLoss", "nt_xent"])
def test_cite_prints_bibtex(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    if not any(name.lower() in (t.key, t.name.lower()) for t in registry.available()):
        pytest.skip(f"{name} is not built in this checkout")
    code, out, _ = run_main(["cite", name], capsys)
    assert code == 0
    text = out.strip()
    assert text.startswith("@")
    assert text.count("{") == text.count("}")
    assert "title" in text.lower()


def test_cite_dcl_names_the_paper(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["cite", "dcl"], capsys)
    assert code == 0
    assert "Decoupled" in out


def test_cite_unknown_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["cite", "nope"], capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("posneg: error: ") and "'nope'" in lines[0]
    assert "Traceback" not in err


def test_every_bench_is_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["bench", "--help"], capsys)
    assert code == 0
    assert "contrastive" in out
