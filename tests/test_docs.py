"""The documentation stays true: README's Python tour runs, the catalogue lists every technique,
and the README keeps exactly the two set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

from posneg import registry

ROOT = Path(__file__).resolve().parents[1]


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


def test_catalogue_lists_every_registered_technique() -> None:
    catalogue = (ROOT / "docs" / "techniques.md").read_text()
    missing = [t.key for t in registry.TECHNIQUES if f"| {t.key} |" not in catalogue]
    assert not missing, f"docs/techniques.md lacks rows for {missing}"
    for t in registry.TECHNIQUES:
        assert t.module in catalogue, t.module
