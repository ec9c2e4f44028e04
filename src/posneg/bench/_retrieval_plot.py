"""The plot of `posneg bench retrieval`: MRR@10 bars and Recall@k curves, mean ± std."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posneg.bench import _report

__all__ = ["plot"]


def plot(out: Path, agg: Sequence[Mapping[str, Any]], mode: str) -> list[Path]:
    from matplotlib.figure import Figure

    labels = [a["strategy"] for a in agg]
    xs = np.arange(len(labels))
    fig = Figure(figsize=(max(6.0, 0.9 * len(labels) + 3), 7.0))
    ax1, ax2 = fig.subplots(2, 1)
    means, sds = [a["mrr@10_mean"] for a in agg], [a["mrr@10_std"] for a in agg]
    colors = ["grey" if a["key"] == "untrained" else "C0" for a in agg]
    ax1.bar(xs, means, yerr=sds, capsize=3, color=colors)
    base = [a for a in agg if a["key"] == "untrained"]
    if base:
        ax1.axhline(base[0]["mrr@10_mean"], color="grey", ls="--", lw=1, label="untrained")
        ax1.legend(fontsize=8, loc="lower right")
    ax1.set_xticks(xs, labels, rotation=25, ha="right", fontsize=8)
    ax1.set_ylabel("test MRR@10")
    finite = [m for m in means if not math.isnan(m)]
    if finite:
        ax1.set_ylim(max(0.0, min(finite) - 0.1), min(1.0, max(finite) + 0.05))
    ax1.grid(axis="y", alpha=0.3)
    ks = [1, 10, 100]
    for i, a in enumerate(agg):
        ys, es = [a[f"recall@{k}_mean"] for k in ks], [a[f"recall@{k}_std"] for k in ks]
        color = "grey" if a["key"] == "untrained" else f"C{i % 10}"
        ax2.errorbar(ks, ys, yerr=es, marker="o", capsize=2, label=a["strategy"], color=color)
    ax2.set_xscale("log")
    ax2.set_xticks(ks, [str(k) for k in ks])
    ax2.set_xlabel("k")
    ax2.set_ylabel("test Recall@k")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7, ncol=2)
    fig.suptitle(f"posneg bench retrieval ({mode} mode): mean ± std over seeds")
    fig.tight_layout()
    return [_report.save_figure(fig, out / "retrieval.png")]
