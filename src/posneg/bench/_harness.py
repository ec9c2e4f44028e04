"""The harness every bench runs on: spec strings, shared options, seeds, device, threads, grid.

A bench (``bench/<family>.py``) keeps only its recipe; this module gives it:

- **Spec strings** (``hcl:beta=1.0,tau_plus=0.1``): :class:`Spec`, :class:`SpecParser`,
  :func:`build` and :class:`UsageError` live in :mod:`posneg.bench._specs` and are re-exported
  here, so that a bench imports its whole harness from one module.
- **Shared options**: ``--seeds``, ``--first-seed``, ``--device`` (default ``auto``
  everywhere), ``--threads`` (``0`` = automatic, ``min(4, available cores)``; ``N`` = exactly
  N), ``--out``, ``--quiet``, as typer ``Annotated`` aliases (:data:`SeedsOption` ...), checked by
  :func:`check_common` and resolved by :func:`seed_list`, :func:`resolve_device` and
  :func:`torch_threads`; :func:`seeded` draws a run's weights from its seed without touching
  the caller's random state.
- **The command** :func:`command`: the typer command of a bench, one option per field of its
  frozen config dataclass (help from the dataclass's ``Attributes:`` docstring).
- **The grid runner** :func:`run_grid`: runs jobs in order under rich progress bars (all runs,
  and the current run when a run has several steps).

Every user mistake raises :class:`UsageError` (an :class:`posneg._io.InputError`, so a
``ValueError``), which the CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import os
import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, TypeVar

import torch
import typer

from posneg.bench._specs import (
    Spec,
    SpecParser,
    UsageError,
    build,
    load_technique,
    parse_spec,
    parse_specs,
)
from posneg.bench._terminal import progress_bar

__all__ = [
    "DeviceOption",
    "FirstSeedOption",
    "OutOption",
    "QuietOption",
    "SeedsOption",
    "Spec",
    "SpecParser",
    "ThreadsOption",
    "UsageError",
    "auto_threads",
    "build",
    "check_common",
    "check_number",
    "command",
    "load_technique",
    "parse_spec",
    "parse_specs",
    "resolve_device",
    "run_grid",
    "seed_list",
    "seeded",
    "torch_threads",
]

C = TypeVar("C")
J = TypeVar("J")
R = TypeVar("R")

# ---------------------------------------------------------------------------------------------
# shared options
# ---------------------------------------------------------------------------------------------

SeedsOption = Annotated[
    int, typer.Option("--seeds", help="Number of seeds (first-seed, first-seed+1, ...).")
]
FirstSeedOption = Annotated[int, typer.Option("--first-seed", help="First seed.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
ThreadsOption = Annotated[
    int,
    typer.Option("--threads", help="CPU threads for torch (0: automatic, min(4, cores))."),
]
OutOption = Annotated[Path, typer.Option("--out", help="Output folder.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no table.")]


def check_number(
    flag: str, value: float, *, low: float, high: float = math.inf, closed: str = "low"
) -> None:
    """Raise a UsageError unless ``value`` is finite and in the interval.

    Args:
        flag: the flag named in the message.
        value: the value.
        low, high: the bounds.
        closed: which bounds belong to the interval: ``low``, ``high``, ``both`` or ``none``.
    """
    lo_ok = value >= low if closed in ("low", "both") else value > low
    hi_ok = value <= high if closed in ("high", "both") else value < high
    if not (math.isfinite(value) and lo_ok and hi_ok):
        left = "[" if closed in ("low", "both") else "("
        right = "]" if closed in ("high", "both") else ")"
        raise UsageError(f"{flag}: must be in {left}{low:g}, {high:g}{right}; got {value}")


def check_known(
    flag: str, given: Sequence[str], known: Sequence[str], *, label: str = "known"
) -> None:
    """Raise a UsageError naming ``flag`` and listing ``known`` if any of ``given`` is not in it.

    The message reads ``"--flag: unknown a, b; <label>: x, y"``.
    """
    unknown = [g for g in given if g not in known]
    if unknown:
        raise UsageError(
            f"{flag}: unknown {', '.join(unknown)}; {label}: {', '.join(known) or '(none)'}"
        )


def check_data_file(flag: str, path: str | None) -> None:
    """Raise a UsageError naming ``flag`` unless ``path`` is None or an existing file."""
    if path is None or Path(path).is_file():
        return
    if Path(path).is_dir():
        raise UsageError(f"{flag}: {path} is a folder; give an .npz file")
    raise UsageError(f"{flag}: no such file: {path}")


def check_common(cfg: Any) -> None:
    """Check the shared fields of a bench config: seeds, first_seed, threads, device, out.

    Raises:
        UsageError: naming the flag.
    """
    if cfg.seeds < 1:
        raise UsageError(f"--seeds: must be >= 1 (the number of seeds); got {cfg.seeds}")
    if cfg.first_seed < 0:
        raise UsageError(f"--first-seed: must be >= 0; got {cfg.first_seed}")
    if cfg.threads < 0:
        raise UsageError(f"--threads: must be >= 0 (0: automatic); got {cfg.threads}")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise UsageError(f"--out: {cfg.out} exists and is not a folder")


def seed_list(cfg: Any) -> list[int]:
    """``[first_seed, first_seed + 1, ...]``, ``seeds`` of them."""
    return list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:1``, ``mps`` or ``auto`` to a torch.device, with a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"--device: unknown device {name!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device: {name!r} requested but CUDA is not available here")
    return dev


def auto_threads(threads: int) -> int:
    """The one meaning of ``--threads``: ``0`` is ``min(4, available cores)``, else ``threads``."""
    if threads:
        return threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


@contextmanager
def torch_threads(threads: int, device: torch.device) -> Iterator[int]:
    """Run the block with torch's intra-op threads set to :func:`auto_threads` on a CPU device.

    Torch's previous thread count is restored on exit, failures included. Yields the count in
    force inside the block (torch's own on a GPU device), for the report.
    """
    old = torch.get_num_threads()
    n = auto_threads(threads) if device.type == "cpu" else old
    try:
        if device.type == "cpu":
            torch.set_num_threads(n)
        yield n
    finally:
        torch.set_num_threads(old)


@contextmanager
def seeded(device: torch.device, seed: int | None = None) -> Iterator[None]:
    """Run the block on a fork of torch's global generators, seeded with ``seed`` if given.

    The CPU generator (and the CUDA one on a CUDA device) is restored on exit, so that what the
    block draws (a model's initial weights) depends on ``seed`` alone and the caller's random
    state is untouched.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        yield


# ---------------------------------------------------------------------------------------------
# the grid
# ---------------------------------------------------------------------------------------------


def run_grid(
    jobs: Sequence[J],
    run_one: Callable[[J, Callable[[], None]], R],
    *,
    describe: Callable[[J], str],
    steps: int = 1,
    quiet: bool = False,
) -> list[R]:
    """Run ``run_one(job, tick)`` for every job in order, under rich progress bars.

    Args:
        jobs: the runs (any objects), in order.
        run_one: runs one job and returns its result; it may call ``tick()`` once per step
            (an epoch). Steps it does not tick (an early stop) are counted when it returns.
        describe: the label of a job on the progress display (``dcl b=128 seed=0``).
        steps: steps per job. With more than one, a second bar follows the current run.
        quiet: no progress display.

    Returns:
        The results, in job order.
    """
    results: list[R] = []
    with progress_bar(disable=quiet) as progress:
        overall = progress.add_task("all runs", total=len(jobs) * steps)
        current = progress.add_task("", total=steps) if steps > 1 else None
        for job in jobs:
            done = [0]
            if current is not None:
                progress.reset(current, total=steps, description=describe(job))
            else:
                progress.update(overall, description=describe(job))

            def tick(done: list[int] = done) -> None:
                if done[0] >= steps:
                    return
                done[0] += 1
                progress.advance(overall)
                if current is not None:
                    progress.advance(current)

            results.append(run_one(job, tick))
            while done[0] < steps:
                tick()
    return results


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------

#: Help of the shared options (the same in every bench).
SHARED_HELP: dict[str, str] = {
    "seeds": "Number of seeds (first-seed, first-seed+1, ...).",
    "first_seed": "First seed.",
    "device": "auto, cpu, cuda or cuda:N.",
    "threads": "CPU threads for torch (0: automatic, min(4, cores)).",
    "out": "Output folder.",
    "quiet": "No progress, no table.",
}


def _attribute_help(config: type) -> dict[str, str]:
    """``name: text`` entries of the ``Attributes:`` section of a dataclass docstring."""
    doc = inspect.getdoc(config) or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    out: dict[str, str] = {}
    names: list[str] = []
    for line in section.splitlines():
        m = re.match(r"^    ([\w, ]+): (.*)$", line)
        if m:
            names = [n.strip() for n in m.group(1).split(",")]
            for n in names:
                out[n] = m.group(2).strip()
        elif line.startswith("        ") and names:
            for n in names:
                out[n] += " " + line.strip()
        elif line.strip():
            break
    return {k: v[0].upper() + v[1:] for k, v in out.items()}


def command(
    config: type[C],
    run: Callable[[C], Mapping[str, Any]],
    *,
    doc: str,
    flags: Mapping[str, tuple[str, ...]] | None = None,
    help: Mapping[str, str] | None = None,
    finish: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Callable[..., None]:
    """The typer command of a bench: one option per field of its config dataclass.

    A field ``batch_size`` becomes ``--batch-size`` (``flags`` renames it and adds short
    names); its default is the field's; a ``tuple[X, ...]`` field becomes a repeatable option
    whose absence means the field's default; ``quiet`` is the flag ``--quiet/-q``. The help of a
    field is its entry in ``help``, else the shared help (:data:`SHARED_HELP`), else its entry in
    the dataclass's ``Attributes:`` docstring. The command builds the config (after
    ``finish(values)``, which may fill absent repeatable options, given as ``None``), runs it,
    and with ``--quiet`` prints the report's path.

    Args:
        config: the bench's frozen config dataclass.
        run: the bench's ``run(cfg)``; returns a mapping with ``"report"``.
        doc: the command's help (its first line is the summary in ``posneg bench --help``).
        flags: field -> option names (``{"objectives": ("--objective", "-o")}``).
        help: field -> help text overriding the docstring's.
        finish: adjusts the values before the config is built.
    """
    hints = typing.get_type_hints(config)
    docs = {**_attribute_help(config), **SHARED_HELP, **(help or {})}
    params: list[inspect.Parameter] = []
    repeatable: set[str] = set()
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        kind = hints[f.name]
        names = (flags or {}).get(f.name) or ("--" + f.name.replace("_", "-"),)
        if f.name == "quiet":
            names = ("--quiet", "-q")
        default = f.default
        if typing.get_origin(kind) is tuple:
            repeatable.add(f.name)
            kind = list[typing.get_args(kind)[0]] | None  # type: ignore[misc]
            default = None
        option = typer.Option(*names, help=docs.get(f.name, ""))
        annotation = Annotated[kind, option]  # type: ignore[valid-type]
        params.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )

    def cli(**values: Any) -> None:
        for name in repeatable:
            values[name] = tuple(values[name]) if values[name] else None
        if finish is not None:
            values = finish(values)
        values = {k: v for k, v in values.items() if v is not None or k not in repeatable}
        result = run(config(**values))
        if values.get("quiet"):
            typer.echo(str(result["report"]))

    cli.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    cli.__doc__ = doc
    cli.__annotations__ = {p.name: p.annotation for p in params}
    return cli


def present_modules(names: Sequence[str]) -> list[ModuleType]:
    """The modules ``posneg.bench.<name>`` of ``names`` that exist, in order.

    A bench with several methods lists its runner/section modules by name; a module absent
    from this checkout is skipped, while an import error *inside* a present module is raised.
    """
    found = []
    for name in names:
        full = f"posneg.bench.{name}"
        try:
            found.append(importlib.import_module(full))
        except ModuleNotFoundError as exc:
            if exc.name != full:
                raise
    return found


def collect(names: Sequence[str], attr: str) -> dict[str, Any]:
    """The merged ``attr`` dicts (``RUNNERS``, ``SECTIONS``) of :func:`present_modules`."""
    out: dict[str, Any] = {}
    for module in present_modules(names):
        out.update(getattr(module, attr, {}))
    return out
