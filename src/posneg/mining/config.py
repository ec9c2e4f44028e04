"""The options of ``posneg mine`` as one frozen, validated object: :class:`MineConfig`.

One field per option of the command (``--format`` is ``output_format``); the encoder options
(``--model``, ``--batch-size``, ``--max-seq-length``) are not here, since a Python caller passes
any :class:`~posneg.mining.encode.TextEncoder`. Every check that does not need the data runs when
the object is built, and its message names the command's flag (``--temperature must be > 0; got
0.0``), so the command and Python callers see the same one-line :class:`~posneg._io.InputError`.
:func:`check_window` checks the rank window once the corpus size is known.

Example:
    >>> from posneg.mining.config import MineConfig, check_window
    >>> config = MineConfig(out="hard.jsonl", num_negatives=3, margin=0.05)
    >>> config.output_format, config.sampling
    ('triplets', 'top')
    >>> check_window(50, num_negatives=3, range_min=0, range_max=None)
    49
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from posneg._io import InputError

__all__ = [
    "DEFAULT_RANGE_MAX",
    "DEVICE_TYPES",
    "FORMATS",
    "FORMAT_ALIASES",
    "INDEXES",
    "SAMPLINGS",
    "SAMPLING_ALIASES",
    "SEED_RANGE",
    "IndexName",
    "MineConfig",
    "OutputFormat",
    "OutputFormatArg",
    "SamplingArg",
    "SamplingRule",
    "canonical_format",
    "canonical_sampling",
    "check_window",
    "resolve_device",
]

#: Output formats of ``--format``.
OutputFormat = Literal["triplets", "nway", "full"]
#: Sampling rules of ``--sampling``.
SamplingRule = Literal["top", "uniform", "softmax"]
#: ``--format`` values with sentence-transformers' names accepted too.
OutputFormatArg = Literal["triplets", "nway", "full", "triplet", "n-tuple"]
#: ``--sampling`` values with sentence-transformers' name accepted too.
SamplingArg = Literal["top", "uniform", "softmax", "random"]
#: Search indexes of ``--index``.
IndexName = Literal["exact", "faiss-flat", "faiss-ivf", "sharded"]

FORMATS: tuple[str, ...] = get_args(OutputFormat)
SAMPLINGS: tuple[str, ...] = get_args(SamplingRule)
INDEXES: tuple[str, ...] = get_args(IndexName)
#: sentence-transformers' ``output_format`` names -> posneg's (``mine_hard_negatives``).
FORMAT_ALIASES: dict[str, str] = {"triplet": "triplets", "n-tuple": "nway"}
#: sentence-transformers' ``sampling_strategy`` names -> posneg's: ``random`` draws uniformly
#: without replacement among the candidates that survive the filters, as ``uniform`` does.
SAMPLING_ALIASES: dict[str, str] = {"random": "uniform"}
#: ``--range-max`` when not given, capped to the corpus.
DEFAULT_RANGE_MAX = 100

PathArg = str | os.PathLike[str]


#: Device types that can embed texts and search (``meta`` has no data; others are untested).
DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda", "mps")
#: ``--seed`` range: what ``torch.Generator.manual_seed`` takes.
SEED_RANGE: tuple[int, int] = (-(2**63), 2**64 - 1)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:1``, ``mps`` or ``auto`` (CUDA when present) to a torch.device.

    Raises:
        InputError: naming ``--device``: an unknown device, a device type that cannot compute
            embeddings (``meta``, ...), or CUDA or MPS asked for where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"--device: unknown device {name!r}") from exc
    if dev.type not in DEVICE_TYPES:
        raise InputError(
            f"--device: {name!r} cannot compute embeddings; use auto, cpu, cuda, cuda:N or mps"
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device: {name!r} requested but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device: {name!r} requested but MPS is not available here")
    return dev


def _int(flag: str, value: Any, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{flag} must be an integer; got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InputError(f"{flag} must be >= {minimum}; got {value}")
    return value


def _real(flag: str, value: Any) -> float:
    """A finite real number (NaN and infinities are refused: every filter needs a real bound)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{flag} must be a number; got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{flag} must be a finite number; got {value}")
    return value


def _choice(
    flag: str, what: str, value: Any, known: tuple[str, ...], aliases: dict[str, str] | None = None
) -> str:
    if aliases and isinstance(value, str) and value in aliases:
        return aliases[value]
    if value not in known:
        also = f" (or sentence-transformers' {', '.join(aliases)})" if aliases else ""
        raise InputError(f"{flag}: unknown {what} {value!r}; known: {', '.join(known)}{also}")
    return str(value)


def canonical_format(value: str) -> str:
    """posneg's name of an output format (``triplet`` -> ``triplets``, ``n-tuple`` -> ``nway``).

    Raises:
        InputError: naming ``--format``, for an unknown format.
    """
    return _choice("--format", "format", value, FORMATS, FORMAT_ALIASES)


def canonical_sampling(value: str) -> str:
    """posneg's name of a sampling rule (``random`` -> ``uniform``).

    Raises:
        InputError: naming ``--sampling``, for an unknown rule.
    """
    return _choice("--sampling", "rule", value, SAMPLINGS, SAMPLING_ALIASES)


def _path(flag: str, value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise InputError(f"{flag} must be a file path; got {type(value).__name__}")
    return Path(value)


@dataclass(frozen=True)
class MineConfig:
    """Everything ``posneg mine`` takes apart from the encoder: inputs, output, window, filters.

    Paths are stored as :class:`~pathlib.Path`. Building the object validates every field that
    does not depend on the data; :func:`check_window` checks the window against the corpus.

    Attributes:
        out: output file: JSON Lines, or Parquet when it ends in ``.parquet`` (``--out``).
        queries: queries file (``id``, ``text``, ``positives``); with ``corpus``.
        corpus: corpus file (``id``, ``text``).
        pairs: instead of queries + corpus, a file of (anchor, positive) pairs.
        anchor_column: the anchor column of ``pairs``.
        positive_column: the positive column of ``pairs``.
        output_format: ``triplets``, ``nway`` or ``full`` (``--format``); sentence-transformers'
            ``triplet`` and ``n-tuple`` are accepted and stored as ``triplets`` and ``nway``.
        num_negatives: negatives per query (>= 1).
        range_min: first rank of the window (0-based, inclusive, >= 0).
        range_max: last rank of the window (inclusive); None: ``min(100, corpus - 1)``.
        max_score: drop candidates scoring above this (finite).
        margin: drop candidates with ``score > positive_score - margin`` (finite, >= 0).
        absolute_margin: sentence-transformers' name of ``margin`` (``--absolute-margin``);
            give either, or both with the same value. Both fields hold the resolved value.
        relative_margin: drop candidates with ``score > positive_score * (1 - relative_margin)``
            (finite, >= 0).
        sampling: ``top``, ``uniform`` or ``softmax`` within the filtered window;
            sentence-transformers' ``random`` is accepted and stored as ``uniform``.
        temperature: softmax sampling temperature (finite, > 0).
        seed: seed of the sampling generator (-2**63 .. 2**64 - 1).
        index: ``exact``, ``faiss-flat``, ``faiss-ivf`` or ``sharded`` (exact, the corpus split
            over the ranks of ``torchrun``; in one process the same as ``exact``).
        device: device of the exact index (``cpu``, ``cuda``, ``cuda:N``, ``auto``).
        cache_dir: folder for the embedding shards (kept); None: ``<out>.cache``, removed after
            a successful run.
        shard_size: texts per cached embedding shard (>= 1).

    Raises:
        InputError: naming the flag, for a value out of range, an unknown choice, a wrong type
            or an unknown or unavailable device.
    """

    out: PathArg
    queries: PathArg | None = None
    corpus: PathArg | None = None
    pairs: PathArg | None = None
    anchor_column: str = "anchor"
    positive_column: str = "positive"
    output_format: OutputFormatArg = "triplets"
    num_negatives: int = 5
    range_min: int = 0
    range_max: int | None = None
    max_score: float | None = None
    margin: float | None = None
    relative_margin: float | None = None
    sampling: SamplingArg = "top"
    temperature: float = 1.0
    seed: int = 0
    index: IndexName = "exact"
    device: str = "cpu"
    cache_dir: PathArg | None = None
    shard_size: int = 2048
    absolute_margin: float | None = None

    def __post_init__(self) -> None:
        values = self._validated()
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _validated(self) -> dict[str, Any]:
        """The fields checked and normalised (paths as Path, numbers as int or float)."""
        v: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        v["out"] = _path("--out", self.out)
        for name in ("queries", "corpus", "pairs", "cache_dir"):
            if v[name] is not None:
                v[name] = _path(f"--{name.replace('_', '-')}", v[name])
        for name in ("anchor_column", "positive_column"):
            if not isinstance(v[name], str):
                flag = f"--{name.replace('_', '-')}"
                raise InputError(f"{flag} must be a string; got {type(v[name]).__name__}")
        v["output_format"] = canonical_format(self.output_format)
        v["sampling"] = canonical_sampling(self.sampling)
        v["index"] = _choice("--index", "index", self.index, INDEXES)
        v["temperature"] = _real("--temperature", self.temperature)
        if not v["temperature"] > 0:
            raise InputError(f"--temperature must be > 0; got {v['temperature']}")
        for name in ("margin", "absolute_margin", "relative_margin"):
            if v[name] is not None:
                flag = f"--{name.replace('_', '-')}"
                v[name] = _real(flag, v[name])
                if not v[name] >= 0:
                    raise InputError(f"{flag} must be >= 0; got {v[name]}")
        if v["absolute_margin"] is not None:
            if v["margin"] is not None and v["margin"] != v["absolute_margin"]:
                raise InputError(
                    f"--absolute-margin {v['absolute_margin']} and --margin {v['margin']} differ; "
                    "they are the same option (sentence-transformers' name and posneg's): "
                    "give one"
                )
            v["margin"] = v["absolute_margin"]
        elif v["margin"] is not None:
            v["absolute_margin"] = v["margin"]
        if self.max_score is not None:
            v["max_score"] = _real("--max-score", self.max_score)
        v["shard_size"] = _int("--shard-size", self.shard_size, minimum=1)
        v["num_negatives"] = _int("--num-negatives", self.num_negatives, minimum=1)
        v["range_min"] = _int("--range-min", self.range_min, minimum=0)
        if self.range_max is not None:
            v["range_max"] = _int("--range-max", self.range_max)
        v["seed"] = _int("--seed", self.seed)
        if not SEED_RANGE[0] <= v["seed"] <= SEED_RANGE[1]:
            raise InputError(f"--seed must be between -2**63 and 2**64 - 1; got {v['seed']}")
        if not isinstance(self.device, str):
            raise InputError(f"--device must be a string; got {type(self.device).__name__}")
        resolve_device(self.device)
        return v

    @property
    def out_path(self) -> Path:
        """``out`` as a Path."""
        return Path(self.out)

    def inputs(self) -> dict[str, str]:
        """The input files by flag name, as recorded in the summary (``pairs`` or both others)."""
        if self.pairs is not None:
            return {"pairs": str(self.pairs)}
        return {"queries": str(self.queries), "corpus": str(self.corpus)}


def check_window(
    corpus_size: int, *, num_negatives: int, range_min: int, range_max: int | None
) -> int:
    """Validate the rank window against the corpus; return the resolved ``range_max``.

    The window is the ranks ``range_min..range_max`` (0-based, inclusive) of each query's full
    ranking of the corpus, positives included. ``range_max=None`` means
    ``min(DEFAULT_RANGE_MAX, corpus_size - 1)``.

    Raises:
        InputError: naming the option, for a window that does not fit inside the corpus or
            holds fewer ranks than ``num_negatives``.
    """
    if num_negatives < 1:
        raise InputError(f"--num-negatives must be >= 1; got {num_negatives}")
    if range_min < 0:
        raise InputError(f"--range-min must be >= 0; got {range_min}")
    if range_min >= corpus_size:
        raise InputError(
            f"--range-min {range_min} is outside the corpus ({corpus_size} documents: "
            f"ranks 0..{corpus_size - 1})"
        )
    if range_max is None:
        range_max = min(DEFAULT_RANGE_MAX, corpus_size - 1)
        range_max = max(range_max, range_min)
    elif range_max >= corpus_size:
        raise InputError(
            f"--range-max {range_max} is larger than the corpus allows ({corpus_size} documents: "
            f"ranks 0..{corpus_size - 1}); the window must fit inside the corpus"
        )
    if range_max < range_min:
        raise InputError(f"--range-max {range_max} is smaller than --range-min {range_min}")
    width = range_max - range_min + 1
    if num_negatives > width:
        raise InputError(
            f"--num-negatives {num_negatives} exceeds the window ranks {range_min}..{range_max} "
            f"({width} candidates)"
        )
    return range_max
