"""The `posneg` command line: benches, mining, the demo tour, the catalogue and citations.

The CLI depends on the library, never the reverse. Every user mistake (a bad spec, a bad value,
an unreadable file) and every validation error raised by the library becomes one readable line on
stderr and exit code 2, never a traceback (set ``POSNEG_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

try:
    import rich  # noqa: F401
    import typer
except ModuleNotFoundError as _missing:  # installed without the [cli] extra
    raise SystemExit(
        f"posneg: the command line needs {_missing.name}, from the [cli] extra: "
        "pip install 'posneg[cli]' (or 'posneg[all]')"
    ) from None

import posneg
from posneg import registry
from posneg._io import atomic_write_text
from posneg.bench._harness import UsageError, present_modules
from posneg.bench._report import DemoSummary, markdown_table
from posneg.bench._terminal import console, rich_table
from posneg.cli.mine import mine_cmd

app = typer.Typer(
    name="posneg",
    help="Positives, negatives and the objectives that consume them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(
    help="Quality benches: train and evaluate techniques side by side on embedded real data "
    "(speed against peer libraries is measured by the scripts in benchmarks/).",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")

#: The benches, in demo order. Each module defines ``cli`` (a typer command) and ``demo``.
#: A module name with an underscore is the command with a hyphen (``image_text`` -> ``image-text``).
BENCHES: tuple[str, ...] = (
    "contrastive",
    "mixing",
    "imbalance",
    "retrieval",
    "verification",
    "graph",
    "image_text",
    "recsys",
    "superres",
    "ood",
    "adversarial",
    "policies",
    "semisup",
    "selection",
    "pruning",
    "segmentation",
    "generative",
    "reasoning",
    "detection",
    "synthetic",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"posneg {posneg.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print version."),
    ] = False,
) -> None:
    """posneg: build what a model trains on."""


@app.command("list")
def list_cmd(
    family: Annotated[
        str | None, typer.Option("--family", help="Only this family (losses, mixing, ...).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Full records (class, module, paper, arXiv) as JSON.")
    ] = False,
) -> None:
    """List the techniques this installation provides: key, family, paper (one line each)."""
    if family is not None and family not in registry.FAMILIES:
        known = ", ".join(registry.FAMILIES)
        raise UsageError(f"--family: unknown family {family!r}; known: {known}")
    techniques = [t for t in registry.available() if family is None or t.family == family]
    if as_json:
        typer.echo(json.dumps([t.record() for t in techniques], indent=2))
        return
    for tech in techniques:
        typer.echo(tech.line())


@app.command("cite")
def cite_cmd(
    name: Annotated[str, typer.Argument(help="Technique name or key, e.g. DCLLoss or dcl.")],
) -> None:
    """Print a technique's BibTeX entry."""
    try:
        tech = registry.find(name)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    typer.echo(tech.citation())


app.command("mine")(mine_cmd)


def _command(module: Any) -> str:
    """The command of a bench module: its name with hyphens (``image_text`` -> ``image-text``)."""
    return str(module.__name__).rsplit(".", 1)[1].replace("_", "-")


for _mod in present_modules(BENCHES):  # a family not built yet in this checkout is skipped
    _help = (_mod.cli.__doc__ or "").strip().split("\n")[0]
    bench_app.command(_command(_mod), help=_help)(_mod.cli)


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Folder for the reports.")] = Path("runs/demo"),
) -> None:
    """A quick tour: every family's bench at a small preset, then one summary table."""
    start = time.perf_counter()
    summaries: list[DemoSummary] = []
    for mod in present_modules(BENCHES):
        console.rule(f"[bold]posneg bench {_command(mod)} (demo preset)")
        summaries.append(mod.demo(out / str(mod.__name__).rsplit(".", 1)[1]))
    header = ["family", "technique", "metric", "value"]
    rows = [(s.family, *r) for s in summaries for r in s.rows]
    console.print(rich_table("posneg demo: summary", header, rows))
    lines = ["# posneg demo", "", markdown_table(header, rows), "", "Reports:", ""]
    lines += [f"- {s.family}: {s.report}" for s in summaries]
    report = atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    elapsed = time.perf_counter() - start
    console.print(f"demo finished in {elapsed:.0f} s; summary report: [bold]{report}[/bold]")
    for s in summaries:
        console.print(f"  {s.family}: {s.report}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn user errors into one line and exit code 2."""
    debug = os.environ.get("POSNEG_DEBUG") == "1"
    try:
        app(args=argv)
    except (UsageError, ValueError, TypeError, KeyError, OSError) as exc:
        if debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"posneg: error: {msg}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
