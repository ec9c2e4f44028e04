"""Old home of ``posneg mine``'s library side, kept so that existing imports keep working.

The pieces now live in their own modules:

- :mod:`posneg.mining.config`: :class:`MineConfig` (the options, validated), :func:`check_window`;
- :mod:`posneg.mining.files`: :func:`read_queries_corpus`, :func:`read_pairs`, the writers;
- :mod:`posneg.mining.pipeline`: :func:`mine_files`, :func:`mine_data`, :class:`MineSummary`;
- :mod:`posneg.cli.mine`: the typer command ``mine_cmd``.

:func:`mine_files` and :func:`mine_data` now take one :class:`MineConfig` instead of one keyword
argument per option::

    summary = mine_files(MineConfig(queries="q.jsonl", corpus="c.jsonl", out="hard.jsonl",
                                    num_negatives=5, margin=0.05), encoder=load_encoder())

This module is part of the library: it imports neither typer nor rich.
"""

from __future__ import annotations

from posneg.mining.config import (
    DEFAULT_RANGE_MAX,
    FORMATS,
    INDEXES,
    SAMPLINGS,
    MineConfig,
    check_window,
)
from posneg.mining.files import MiningData, read_pairs, read_queries_corpus
from posneg.mining.pipeline import MineSummary, mine_data, mine_files

__all__ = [
    "DEFAULT_RANGE_MAX",
    "FORMATS",
    "INDEXES",
    "SAMPLINGS",
    "MineConfig",
    "MineSummary",
    "MiningData",
    "check_window",
    "mine_data",
    "mine_files",
    "read_pairs",
    "read_queries_corpus",
]
