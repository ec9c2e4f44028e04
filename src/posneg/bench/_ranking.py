"""The summary of `posneg bench retrieval`'s runs: mean/std over seeds and the table rows.

Kept apart from the recipe (:mod:`posneg.bench.retrieval`) so that it reads as data, train
step, report and plot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from posneg.bench._report import fmt, mean_std
from posneg.mining.training import METRICS

__all__ = ["HEADER", "aggregate", "table_row"]

#: The summary table's header: the strategy, every metric of :data:`METRICS`, training time.
HEADER: tuple[str, ...] = ("strategy", "MRR@10", "nDCG@10", "R@1", "R@10", "R@100", "train s / run")


def aggregate(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy (in run order): its key, seeds, mean and sample std of every metric.

    Args:
        runs: run records with ``strategy``, ``key``, ``seed``, ``metrics`` (a dict holding
            every metric of :data:`METRICS`) and ``train_seconds``.

    Returns:
        One row per strategy label: ``strategy``, ``key``, ``seeds``, ``<metric>_mean`` and
        ``<metric>_std`` for every metric, ``train_seconds_mean``.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r["strategy"], []).append(r)
    out = []
    for label, rs in groups.items():
        row: dict[str, Any] = {"strategy": label, "key": rs[0]["key"]}
        row["seeds"] = [r["seed"] for r in rs]
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std([r["metrics"][m] for r in rs])
        row["train_seconds_mean"] = mean_std([r["train_seconds"] for r in rs])[0]
        out.append(row)
    return out


def _cell(a: Mapping[str, Any], metric: str) -> str:
    mean, sd = a[f"{metric}_mean"], a[f"{metric}_std"]
    if len(a["seeds"]) > 1:
        return fmt(mean, sd)
    return "n/a" if math.isnan(mean) else f"{mean:.3f}"


def table_row(a: Mapping[str, Any]) -> tuple[str, ...]:
    """The table row of one :func:`aggregate` row, in :data:`HEADER` order.

    Metrics as ``mean ± std`` over several seeds, the mean alone for one (``n/a`` when the runs
    diverged); training seconds per run (``-`` for ``untrained``).
    """
    secs = "-" if a["key"] == "untrained" else f"{a['train_seconds_mean']:.1f}"
    return (a["strategy"], *(_cell(a, m) for m in METRICS), secs)
