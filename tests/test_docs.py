"""The documentation stays true: README's Python tour runs, the catalogue equals the registry,
and the README keeps exactly the two set-up commands.

After changing ``posneg.registry``, rewrite the catalogue's registry columns with::

    .venv/bin/python tests/test_docs.py --fix
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from posneg import registry

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "docs" / "techniques.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_tour_runs() -> None:
    blocks = _python_blocks((ROOT / "README.md").read_text())
    assert blocks, "README.md has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set-up", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^make (\w+)", setup, flags=re.M)
    assert commands == ["demo", "test"]


def _rows(text: str) -> list[list[str]]:
    """Cells of every catalogue row (``| key | technique | paper | module | status | ... |``).

    The claims table at the end of the file is not part of the catalogue."""
    out = []
    for line in text.split("\n## Claims checked by the benches", 1)[0].splitlines():
        if line.startswith("| ") and not line.startswith(("| key |", "|---")):
            out.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return out


def _registered(key: str) -> registry.Technique | None:
    try:
        return registry.get(key)
    except KeyError:
        return None


def sync_catalogue(text: str) -> str:
    """``text`` with the paper and module cells of every registered row taken from the registry."""
    marker = "\n## Claims checked by the benches"
    claims: str | None = None
    if marker in text:
        text, claims = text.split(marker, 1)
    lines = []
    for line in text.splitlines():
        cells = line.strip().strip("|").split(" | ") if line.startswith("| ") else []
        tech = _registered(cells[0]) if len(cells) >= 4 else None
        if tech is not None:
            cells[0] = tech.key
            cells[2] = tech.reference()
            cells[3] = f"`{tech.module}`"
            line = "| " + " | ".join(c.strip() for c in cells) + " |"
        lines.append(line)
    synced = "\n".join(lines) + "\n"
    return synced if claims is None else synced.rstrip("\n") + "\n" + marker + claims


def test_catalogue_equals_registry() -> None:
    rows = _rows(CATALOGUE.read_text())
    keyed = [r for r in rows if r[0] != "-"]
    keys = [r[0] for r in keyed]
    registered = [t.key for t in registry.TECHNIQUES]
    assert sorted(keys) == sorted(registered), (
        f"catalogue keys {sorted(set(keys) ^ set(registered))} disagree with posneg.registry"
    )
    for key, technique, paper, module, *_ in keyed:
        tech = registry.get(key)
        assert f"`{tech.name}`" in technique, (key, technique)
        assert paper == tech.reference(), (key, paper, tech.reference())
        assert module == f"`{tech.module}`", (key, module)


def test_registry_years_match_citations() -> None:
    """The year in each registry paper is the year of the module's BibTeX entry."""
    for tech in registry.available():
        bib = tech.citation()
        year = re.search(r"year\s*=\s*[{\"]?(\d{4})", bib)
        if year is None:
            continue
        assert year.group(1) in tech.paper, (tech.key, tech.paper, year.group(1))


if __name__ == "__main__" and sys.argv[1:] == ["--fix"]:
    CATALOGUE.write_text(sync_catalogue(CATALOGUE.read_text()))
