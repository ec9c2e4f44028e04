"""The one report writer of every bench: results.json, results.md, PNG plots, terminal table.

:func:`write_report` writes ``results.json`` (title, resolved configuration, environment:
machine, versions, command; results) and ``results.md`` (the table, notes, configuration,
environment) into the output folder; :func:`save_figure` writes a PNG. Every file is written
atomically through :mod:`posneg._io` (temporary file + rename), so an interrupted run never
leaves a half-written report. :func:`resolved_config` records the shared options as they were
resolved; :func:`show` prints the table and notes to stdout; :func:`publish` does all of it at the
end of a bench's ``run``.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from posneg._io import atomic_write_bytes, atomic_write_text
from posneg.bench._terminal import console, rich_table

__all__ = [
    "DemoSummary",
    "MetricPlot",
    "aggregate",
    "environment",
    "fmt",
    "markdown_table",
    "mean_std",
    "paired",
    "pct_cell",
    "pp_cell",
    "publish",
    "resolved_config",
    "save_figure",
    "show",
    "sweep_plot",
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
    """Mean and sample standard deviation (0 for a single value; NaN for none).

    Any NaN value (a diverged run, a metric that does not apply) makes both NaN, never an error.
    """
    vals = [float(v) for v in values]
    if not vals or any(math.isnan(v) for v in vals):
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


def pct_cell(mean: float, sd: float, n: int) -> str:
    """A share as a percentage table cell: ``91.2`` for one seed, ``91.2 ± 0.4`` for several."""
    return f"{100 * mean:.1f}" if n == 1 and not math.isnan(mean) else fmt(mean, sd, pct=True)


def pp_cell(mean: float, sd: float, n: int) -> str:
    """A difference in percentage points: ``+1.2`` for one seed, ``+1.2 ± 0.3`` for several."""
    if math.isnan(mean):
        return "n/a"
    return f"{100 * mean:+.1f}" + (f" ± {100 * sd:.1f}" if n > 1 else "")


def aggregate(
    runs: Sequence[Mapping[str, Any]],
    *,
    by: Sequence[str],
    metrics: Sequence[str],
    keep: Sequence[str] = (),
    means: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Group runs by the fields ``by`` (first-seen order) and summarise each group over seeds.

    Each row holds the ``by`` fields, the ``keep`` fields of the group's first run, ``seeds``,
    ``<metric>_mean`` and ``<metric>_std`` for every metric (:func:`mean_std`) and
    ``<field>_mean`` for every field of ``means`` (timings).
    """
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    out = []
    for rs in groups.values():
        row: dict[str, Any] = {k: rs[0][k] for k in (*by, *keep)}
        row["seeds"] = [r["seed"] for r in rs]
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std([r[m] for r in rs])
        for m in means:
            row[f"{m}_mean"] = mean_std([r[m] for r in rs])[0]
        out.append(row)
    return out


def paired(
    runs: Sequence[Mapping[str, Any]], a: str, b: str, *, metric: str, label: str, group: str
) -> list[dict[str, Any]]:
    """Per value of ``group``, the per-seed difference ``a - b`` of ``metric`` and its wins.

    Args:
        runs: run records with ``seed``, ``label``, ``group`` and ``metric`` fields.
        a, b: the two values of ``label`` (technique labels) compared.
        metric: the compared field.
        label: the field naming the technique (``technique``, ``objective``).
        group: the field runs are paired within (``dataset``, ``batch_size``).

    Returns:
        One dict per group holding both: ``{group: value, "metric", "seeds", "diff_mean",
        "diff_std", "wins", "ties", "losses"}``, in first-seen order.
    """
    by = {(r[group], r[label], r["seed"]): r[metric] for r in runs}
    out = []
    for g in dict.fromkeys(r[group] for r in runs):
        seeds = sorted(s for (gg, t, s) in by if gg == g and t == a and (g, b, s) in by)
        if not seeds:
            continue
        diffs = [by[(g, a, s)] - by[(g, b, s)] for s in seeds]
        m, sd = mean_std(diffs)
        out.append(
            {
                group: g,
                "metric": metric,
                "seeds": seeds,
                "diff_mean": m,
                "diff_std": sd,
                "wins": sum(d > 0 for d in diffs),
                "ties": sum(d == 0 for d in diffs),
                "losses": sum(d < 0 for d in diffs),
            }
        )
    return out


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


@dataclass(frozen=True)
class MetricPlot:
    """One figure: a panel per metric, techniques along x, one series per group, mean ± std.

    Attributes:
        title: the figure title.
        label: the field of an aggregate row naming the technique (x axis).
        group: the field naming a series (``batch_size``, ``dataset``).
        metrics: ``(field, axis title)`` per panel; rows hold ``<field>_mean``/``_std``.
        kind: ``bar`` (bars from 0) or ``point`` (points with error bars).
        scale: multiplies every value (100 for percentages); the axis tops at ``scale``.
        margin: room under the lowest value, as a share of ``scale``.
        baseline: a dashed reference line per metric (``raw input``), in unscaled units.
        series: the legend text of a group value.
        ticks: the tick text of a label.
    """

    title: str
    label: str
    group: str
    metrics: Sequence[tuple[str, str]]
    kind: str = "bar"
    scale: float = 1.0
    margin: float = 0.05
    baseline: Mapping[str, float] = field(default_factory=dict)
    series: Callable[[Any], str] = str
    ticks: Callable[[str], str] = str

    def save(self, path: str | os.PathLike[str], agg: Sequence[Mapping[str, Any]]) -> Path:
        """Draw ``agg`` (rows of :func:`aggregate`) and write the PNG atomically."""
        import numpy as np
        from matplotlib.figure import Figure

        labels = list(dict.fromkeys(a[self.label] for a in agg))
        groups = list(dict.fromkeys(a[self.group] for a in agg))
        by = {(a[self.label], a[self.group]): a for a in agg}
        k = self.scale
        fig = Figure(figsize=(max(7.0, 0.9 * len(labels) * len(groups) ** 0.5 + 3), 8.5))
        axes = np.atleast_1d(fig.subplots(len(self.metrics), 1, sharex=True))
        width = 0.8 / max(1, len(groups))
        xs = np.arange(len(labels))
        for ax, (key, title) in zip(axes, self.metrics, strict=True):
            for j, g in enumerate(groups):
                rows = [by.get((lab, g)) for lab in labels]
                means = [k * r[f"{key}_mean"] if r else math.nan for r in rows]
                sds = [k * r[f"{key}_std"] if r else 0.0 for r in rows]
                at = xs + (j - (len(groups) - 1) / 2) * width
                if self.kind == "bar":
                    ax.bar(at, means, width, yerr=sds, capsize=2, label=self.series(g))
                else:
                    ax.errorbar(at, means, yerr=sds, fmt="o", capsize=3, label=self.series(g))
            lows = [
                a[f"{key}_mean"] - (a[f"{key}_std"] if self.kind == "point" else 0.0)
                for a in agg
                if math.isfinite(a[f"{key}_mean"])
            ]
            if key in self.baseline:
                ax.axhline(k * self.baseline[key], color="grey", ls="--", lw=1, label="raw input")
                lows.append(self.baseline[key])
            ax.set_ylim(max(0.0, k * (min(lows, default=0.0) - self.margin)), k)
            ax.set_ylabel(title)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        axes[-1].set_xticks(xs, [self.ticks(lab) for lab in labels], rotation=30, ha="right")
        fig.suptitle(self.title)
        return save_figure(fig, path)


def sweep_plot(
    path: str | os.PathLike[str],
    agg: Sequence[Mapping[str, Any]],
    *,
    x: str,
    series: str,
    metrics: Sequence[tuple[str, str]],
    title: str,
    name: Callable[[Any], str] = str,
    scale: float = 100.0,
) -> Path:
    """Metric against a numeric setting (``batch_size``, log2 axis), a line per ``series`` value.

    One panel per ``(field, axis title)`` of ``metrics``, side by side, mean ± std error bars.
    """
    from matplotlib.figure import Figure

    xs = sorted({a[x] for a in agg})
    fig = Figure(figsize=(5 * len(metrics), 4.5))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, (key, ylabel) in zip(axes, metrics, strict=True):
        for value in dict.fromkeys(a[series] for a in agg):
            pts = [a for a in agg if a[series] == value]
            ax.errorbar(
                [a[x] for a in pts],
                [scale * a[f"{key}_mean"] for a in pts],
                yerr=[scale * a[f"{key}_std"] for a in pts],
                marker="o",
                capsize=3,
                label=name(value),
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.set(xlabel=x.replace("_", " "), ylabel=ylabel)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


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


def publish(
    out: str | os.PathLike[str],
    *,
    title: str,
    config: Mapping[str, Any],
    results: Mapping[str, Any],
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    notes: Sequence[str],
    plots: Callable[[Path], Sequence[Path]],
    quiet: bool,
    elapsed: float,
    keep_first_column: bool = False,
) -> dict[str, Any]:
    """The end of a bench's ``run``: the report, the plots, then the table unless ``quiet``.

    Args:
        out: the output folder.
        title, config, results, header, rows: as in :func:`write_report`.
        notes: lines under the table; the first (the setup, long) goes to ``results.md`` only.
        plots: draws the plots into the folder it is given and returns their paths.
        quiet: no table on the terminal.
        elapsed, keep_first_column: as in :func:`show`.

    Returns:
        ``{**results, "report": path of results.md, "plots": [...], "config": config}``.
    """
    kw: dict[str, Any] = {"header": header, "rows": rows, "notes": "\n".join(notes)}
    report = write_report(out, title=title, config=config, results=results, **kw)
    paths = list(plots(Path(out)))
    if not quiet:
        show(
            title,
            header,
            rows,
            notes[1:],
            report=report,
            elapsed=elapsed,
            keep_first_column=keep_first_column,
        )
    return {**results, "report": report, "plots": paths, "config": config}
