"""Shared pieces of every bench: spec strings, atomic files, reports, tables, progress, plots.

A bench resolves its configuration, runs techniques side by side with rich progress bars, and
writes ``results.json`` (resolved config, seeds, versions, machine, metrics), ``results.md`` and
PNG plots into its output folder. Every file is written atomically (temporary file + rename), so
an interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


class UsageError(ValueError):
    """A user mistake (bad spec, bad value, unreadable file): the CLI prints one line, exits 2."""


# ---------------------------------------------------------------------------------------------
# spec strings: "hcl:beta=1.0,tau_plus=0.1"
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A parsed technique spec: a key and keyword arguments."""

    key: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        """The spec written back as text (used as the row name in tables)."""
        if not self.kwargs:
            return self.key
        args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.key}:{args}"


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_spec(text: str, known: Iterable[str]) -> Spec:
    """Parse ``name`` or ``name:arg=value,arg=value``; numbers and booleans are converted.

    Raises:
        UsageError: unknown name, a missing ``=``, an empty or repeated argument.
    """
    known = list(known)
    name, _, rest = text.strip().partition(":")
    name = name.strip().lower().replace("-", "_")
    if name not in known:
        raise UsageError(f"unknown technique {name!r} in spec {text!r}; known: {', '.join(known)}")
    kwargs: dict[str, Any] = {}
    if rest.strip():
        for part in rest.split(","):
            k, eq, v = part.partition("=")
            k = k.strip()
            if not eq or not k or not v.strip():
                raise UsageError(f"bad argument {part!r} in spec {text!r}: expected name=value")
            if k in kwargs:
                raise UsageError(f"argument {k!r} given twice in spec {text!r}")
            kwargs[k] = _parse_value(v.strip())
    return Spec(name, kwargs)


def parse_specs(texts: Sequence[str], known: Iterable[str], *, flag: str, what: str) -> list[Spec]:
    """Parse a repeatable spec flag: at least one spec, each valid, no spec given twice.

    Raises:
        UsageError: naming ``flag`` (``--objective``) for an empty list or a repeated spec, or
            from :func:`parse_spec` for a bad one.
    """
    if not texts:
        raise UsageError(f"{flag}: give at least one {what}")
    known = list(known)
    specs = [parse_spec(text, known) for text in texts]
    labels = [s.label() for s in specs]
    for lab in labels:
        if labels.count(lab) > 1:
            raise UsageError(f"{flag}: {lab!r} given twice")
    return specs


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary file path in ``path``'s folder, renamed over ``path`` when the block succeeds
    and deleted on any failure (``KeyboardInterrupt`` included): readers never see a partial
    file, and a failed run leaves no output. The file gets the permissions of a normally created
    one (0666 less the umask), not the 0600 of a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_target(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomic text write (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Save a matplotlib figure to PNG atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


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


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def rich_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    """The same table for the terminal."""
    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[str(c) for c in row])
    return table


def write_report(
    out: str | os.PathLike[str],
    *,
    title: str,
    config: Mapping[str, Any],
    results: Any,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
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


# ---------------------------------------------------------------------------------------------
# terminal
# ---------------------------------------------------------------------------------------------

console = Console(stderr=True)


@contextmanager
def progress_bar(*, disable: bool = False) -> Any:
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


def resolve_device(name: str) -> Any:
    """``cpu``, ``cuda``, ``cuda:1``, ``mps`` or ``auto`` to a torch.device, with a clear error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"--device: unknown device {name!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device: {name!r} requested but CUDA is not available here")
    return dev


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
