"""Former home of the bench helpers, kept as a thin re-export for existing imports.

New code imports from where things live: :mod:`posneg.bench._harness` (spec strings, shared
options, seeds, device, threads, grid runner), :mod:`posneg.bench._report` (results.json,
results.md, PNGs, summary tables), :mod:`posneg.bench._terminal` (console, progress bars, rich
tables) and :mod:`posneg._io` (atomic files).
"""

from __future__ import annotations

from posneg._io import atomic_target, atomic_write_bytes, atomic_write_text
from posneg.bench._harness import (
    Spec,
    UsageError,
    parse_spec,
    parse_specs,
    resolve_device,
)
from posneg.bench._report import (
    DemoSummary,
    environment,
    fmt,
    markdown_table,
    mean_std,
    write_report,
)
from posneg.bench._report import save_figure as atomic_save_figure
from posneg.bench._terminal import console, progress_bar, rich_table

__all__ = [
    "DemoSummary",
    "Spec",
    "UsageError",
    "atomic_save_figure",
    "atomic_target",
    "atomic_write_bytes",
    "atomic_write_text",
    "console",
    "environment",
    "fmt",
    "markdown_table",
    "mean_std",
    "parse_spec",
    "parse_specs",
    "progress_bar",
    "resolve_device",
    "rich_table",
    "write_report",
]
