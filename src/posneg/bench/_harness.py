"""The harness every bench runs on: spec strings, shared options, seeds, device, threads, grid.

A bench (``bench/<family>.py``) keeps only its recipe; this module gives it:

- **Spec strings** (``hcl:beta=1.0,tau_plus=0.1``). A :class:`SpecParser` names the keys a bench
  accepts: registry keys (:mod:`posneg.registry`, aliases such as ``ft`` resolved to the
  registry key) and the recipe's own *baselines* (``none``, ``random`` ...), which are declared
  explicitly. :func:`build` turns a spec into a unit and reports a bad argument as the unit's own
  ``ValueError``/``TypeError`` text, prefixed with the flag and the spec.
- **Shared options**: ``--seeds``, ``--first-seed``, ``--device`` (default ``auto``
  everywhere), ``--threads`` (``0`` = automatic, ``min(4, available cores)``; ``N`` = exactly
  N), ``--out``, ``--quiet``, as typer ``Annotated`` aliases (:data:`SeedsOption` ...), checked by
  :func:`check_common` and resolved by :func:`seed_list`, :func:`resolve_device` and
  :func:`torch_threads`.
- **The command** :func:`command`: the typer command of a bench, one option per field of its
  frozen config dataclass (help from the dataclass's ``Attributes:`` docstring).
- **The grid runner** :func:`run_grid`: runs jobs in order under rich progress bars (all runs,
  and the current run when a run has several steps).

Every user mistake raises :class:`UsageError` (an :class:`posneg._io.InputError`, so a
``ValueError``), which the CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import torch
import typer

from posneg import registry
from posneg._io import InputError
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
    "torch_threads",
]

C = TypeVar("C")
J = TypeVar("J")
R = TypeVar("R")


class UsageError(InputError):
    """A user mistake (bad spec, bad value, unreadable file): the CLI prints one line, exits 2."""


# ---------------------------------------------------------------------------------------------
# spec strings
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


def _normal(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def parse_spec(text: str, known: Iterable[str], aliases: Mapping[str, str] | None = None) -> Spec:
    """Parse ``name`` or ``name:arg=value,arg=value``; numbers, booleans and None are converted.

    Args:
        text: the spec.
        known: the accepted keys.
        aliases: other spellings -> key (``{"ft": "feature_transform"}``).

    Raises:
        UsageError: unknown name, a missing ``=``, an empty or repeated argument.
    """
    known = list(known)
    name, _, rest = text.strip().partition(":")
    name = _normal(name)
    name = (aliases or {}).get(name, name)
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


def parse_specs(
    texts: Sequence[str],
    known: Iterable[str],
    *,
    flag: str,
    what: str,
    aliases: Mapping[str, str] | None = None,
) -> list[Spec]:
    """Parse a repeatable spec flag: at least one spec, each valid, no spec given twice.

    Raises:
        UsageError: naming ``flag`` (``--objective``) for an empty list or a repeated spec, or
            from :func:`parse_spec` for a bad one.
    """
    if not texts:
        raise UsageError(f"{flag}: give at least one {what}")
    known = list(known)
    specs = [parse_spec(text, known, aliases) for text in texts]
    labels = [s.label() for s in specs]
    for lab in labels:
        if labels.count(lab) > 1:
            raise UsageError(f"{flag}: {lab!r} given twice")
    return specs


@dataclass(frozen=True)
class SpecParser:
    """The keys one bench flag accepts, read from the registry plus the recipe's baselines.

    Attributes:
        flag: the CLI flag (``--objective``), first word of every message.
        what: the noun of the flag (``objective``).
        keys: accepted keys in table order. Every key is a registry key unless it is listed in
            ``baselines``; a registry alias (``ft``) is accepted and becomes its key.
        baselines: the recipe's own entries that are not techniques (``none``, ``random``).

    Raises:
        ValueError: at construction, for a key that is neither a registry key nor a baseline
            (a recipe bug: the catalogue and the bench would disagree).

    Example:
        >>> p = SpecParser("--objective", "objective", ("dcl", "feature_transform"))
        >>> [s.label() for s in p.parse(["dcl:temperature=0.2", "ft"])]
        ['dcl:temperature=0.2', 'feature_transform']
    """

    flag: str
    what: str
    keys: tuple[str, ...]
    baselines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in self.keys:
            if key in self.baselines:
                continue
            try:
                tech = registry.get(key)
            except KeyError:
                raise ValueError(
                    f"SpecParser({self.flag}): {key!r} is neither a registry key nor a declared "
                    "baseline"
                ) from None
            if tech.key != key:
                raise ValueError(
                    f"SpecParser({self.flag}): {key!r} is an alias; use the registry key "
                    f"{tech.key!r}"
                )
        for key in self.baselines:
            if key not in self.keys:
                raise ValueError(f"SpecParser({self.flag}): baseline {key!r} is not in keys")

    def aliases(self) -> dict[str, str]:
        """Registry aliases of the accepted keys (``{"ft": "feature_transform"}``)."""
        out: dict[str, str] = {}
        for key in self.keys:
            if key not in self.baselines:
                out.update({a: key for a in registry.get(key).aliases if a not in self.keys})
        return out

    def parse(self, texts: Sequence[str]) -> list[Spec]:
        """Parse the flag's values (see :func:`parse_specs`)."""
        return parse_specs(texts, self.keys, flag=self.flag, what=self.what, aliases=self.aliases())

    def technique(self, key: str) -> registry.Technique | None:
        """The registry entry of ``key``, or ``None`` for a baseline."""
        return None if key in self.baselines else registry.get(key)

    def available(self) -> tuple[str, ...]:
        """The keys usable in this installation: baselines, and techniques whose module imports."""
        out = []
        for key in self.keys:
            tech = self.technique(key)
            try:
                if tech is not None:
                    tech.load()
            except (ImportError, AttributeError):
                continue
            out.append(key)
        return tuple(out)

    def where(self, spec: Spec) -> str:
        """``--objective 'hcl:beta=2'``: the prefix of messages about one spec."""
        return f"{self.flag} {spec.label()!r}"


def load_technique(key: str, where: str) -> Any:
    """The registered class of ``key``; a missing optional module becomes a UsageError."""
    try:
        return registry.get(key).load()
    except (KeyError, ImportError, AttributeError):
        raise UsageError(f"{where}: {key} is not available in this installation") from None


def build(
    factory: Callable[..., R],
    spec: Spec,
    where: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    forced: Mapping[str, Any] | None = None,
    reason: str = "",
) -> R:
    """Call ``factory(**{**defaults, **spec.kwargs, **forced})``; errors become one line.

    Args:
        factory: the unit's constructor (or a closure passing positional arguments).
        spec: the parsed spec.
        where: message prefix, usually ``SpecParser.where(spec)``.
        defaults: arguments the bench sets unless the spec gives them.
        forced: arguments the bench always sets; a spec may not give them.
        reason: why the bench sets ``forced`` (``the backbone width``), for the message.

    Raises:
        UsageError: a forced argument in the spec, or the unit's own ValueError/TypeError text.
    """
    forced = dict(forced or {})
    for name in forced:
        if name in spec.kwargs:
            why = f" ({reason})" if reason else ""
            raise UsageError(f"{where}: {name} is set by the bench{why}")
    kwargs = {**(defaults or {}), **spec.kwargs, **forced}
    try:
        return factory(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{where}: {exc}") from None


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
