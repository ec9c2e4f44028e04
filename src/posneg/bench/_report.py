"""The one report writer of every bench: results.json, results.md, PNG plots, terminal table.

:func:`write_report` writes ``results.json`` (title, resolved configuration, environment:
machine, versions, command; results) and ``results.md`` (the table, notes, configuration,
environment) into the output folder; :func:`save_figure` writes a PNG. Every file is written
atomically through :mod:`posneg._io` (temporary file + rename), so an interrupted run never
leaves a half-written report. :func:`resolved_config` records the shared options as they were
resolved; :func:`show` prints the table and notes to stdout.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from posneg._io import atomic_write_bytes, atomic_write_text
from posneg.bench._terminal import console, rich_table

__all__ = [
    "DemoSummary",
    "environment",
    "fmt",
    "markdown_table",
    "mean_std",
    "resolved_config",
    "save_figure",
    "show",
    "write_report",
]


@dataclass(frozen=True)
class DemoSummary:
    """What a family's quick preset returns to ``posneg demo``.

    Attributes:
        family: the bench name (``contrastive``).
        rows: one row per technique: (technique, metric name, value as text).
        report: path of the family's ``results.md``.
    """

    family: str
    rows: Sequence[tuple[str, str, str]]
    report: Path


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; NaN for none)."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, math.nan
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return statistics.fmean(vals), sd


def fmt(mean: float, sd: float, *, pct: bool = False, digits: int = 3) -> str:
    """``0.912 ± 0.004`` (or percentages with ``pct``)."""
    if math.isnan(mean):
        return "n/a"
    if pct:
        return f"{100 * mean:.1f} ± {100 * sd:.1f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """Machine and package versions recorded in every report."""
    import numpy
    import torch

    import posneg

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "posneg": posneg.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def resolved_config(
    cfg: Any, *, seeds: Sequence[int], device: Any, threads: int, **extra: Any
) -> dict[str, Any]:
    """The configuration recorded in a report: the bench config's fields, then the shared options
    as resolved (``seed_list``, ``resolved_device``, ``torch_threads``), then ``extra``."""
    return {
        **asdict(cfg),
        "seed_list": list(seeds),
        "resolved_device": str(device),
        "torch_threads": threads,
        **extra,
    }


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Save a matplotlib figure to PNG atomically (120 dpi, tight box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def write_report(
    out: str | os.PathLike[str],
    *,
    title: str,
    config: Mapping[str, Any],
    results: Any,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    notes: str = "",
) -> Path:
    """Write ``results.json`` and ``results.md`` atomically into ``out``; return the .md path."""
    out = Path(out)
    env = environment()
    payload = {"title": title, "config": dict(config), "environment": env, "results": results}
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2, default=str) + "\n")
    md = [f"# {title}", ""]
    md += [markdown_table(header, rows), ""]
    if notes:
        md += [notes.strip(), ""]
    cfg = json.dumps(dict(config), indent=2, default=str)
    md += ["## Configuration", "", "```json", cfg, "```"]
    md += ["", "## Environment", ""]
    md += [f"- {k}: {v}" for k, v in env.items()]
    return atomic_write_text(out / "results.md", "\n".join(md) + "\n")


def show(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    notes: Sequence[str] = (),
    *,
    report: Path,
    elapsed: float,
    keep_first_column: bool = False,
) -> None:
    """Print the table and notes to stdout and the report's path to stderr.

    Args:
        title: the table title.
        header, rows: the table.
        notes: lines printed under the table (empty lines skipped).
        report: the ``results.md`` path.
        elapsed: seconds the bench took.
        keep_first_column: never wrap the first column (spec labels) nor the numbers; a piped
            stdout gets 160 columns instead of 80.
    """
    table = rich_table(title, header, rows)
    stdout = Console()
    if keep_first_column:
        table.columns[0].min_width = max((len(str(r[0])) for r in rows), default=0)
        for column in table.columns[1:]:
            column.no_wrap = True
        if not stdout.is_terminal:
            stdout = Console(width=160)
    stdout.print(table)
    for line in notes:
        if line:
            stdout.print(line, soft_wrap=keep_first_column)
    console.print(f"finished in {elapsed:.0f} s; report: [bold]{report}[/bold]")
