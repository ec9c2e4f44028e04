"""The terminal side of the top layer (benches and CLI): one stderr console, rich progress bars,
tables, and an adapter that turns a rich bar into a library ``progress=`` callback.

Library packages never import this module; they report through
:class:`posneg._progress.ProgressCallback`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from posneg._progress import ProgressCallback

#: Progress, messages and errors go to stderr; tables and results to stdout.
console = Console(stderr=True)


@contextmanager
def progress_bar(*, disable: bool = False) -> Iterator[Progress]:
    """A rich progress display with a bar, count, elapsed and remaining time (on stderr)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=disable,
    )
    with progress:
        yield progress


@contextmanager
def progress_callback(*, disable: bool = False) -> Iterator[ProgressCallback | bool]:
    """A library ``progress=`` value drawing rich bars: one bar per distinct ``desc``.

    Yields ``False`` when ``disable`` is set, so the library stays silent.
    """
    if disable:
        yield False
        return
    with progress_bar() as bar:
        tasks: dict[str, TaskID] = {}

        def report(desc: str, done: int, total: int) -> None:
            if desc not in tasks:
                tasks[desc] = bar.add_task(desc, total=total)
            bar.update(tasks[desc], completed=done, total=total)

        yield report


def rich_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A terminal table: first column left-aligned, the others right-aligned."""
    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[str(c) for c in row])
    return table
