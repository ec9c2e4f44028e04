"""Comparing techniques over many data sets: mean ranks, the Friedman test and Nemenyi's critical
difference (Demšar, "Statistical comparisons of classifiers over multiple data sets", JMLR 2006).

For one metric (higher is better) and a table ``score[data set][technique]``, each data set ranks
the techniques (1 = best, ties share the mean rank); the mean rank of a technique over the data
sets is compared with the Friedman test (:func:`scipy.stats.friedmanchisquare`, k >= 3
techniques), and two techniques differ at level ``alpha`` by the Nemenyi post-hoc test when their
mean ranks differ by more than the critical difference ``CD = q_alpha sqrt(k (k + 1) / (6 N))``,
``q_alpha`` the studentised range quantile over sqrt(2) (Demšar's Table 5: 2.343 for k = 3,
2.728 for k = 5 at alpha = 0.05).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posneg.bench import _report as rep

__all__ = ["RankTest", "cd_plot", "nemenyi_cd", "rank_test"]


@dataclass(frozen=True)
class RankTest:
    """Mean ranks and the Friedman test of ``k`` techniques over ``n`` data sets.

    Attributes:
        techniques: the techniques, in the order given.
        mean_ranks: their mean ranks (1 = best).
        n_sets: the data sets used (those where every technique has a finite score).
        statistic, p_value: Friedman's chi-square and its p-value (nan when k < 3 or n < 2).
        cd: Nemenyi's critical difference at ``alpha`` (nan when n < 1 or k < 2).
    """

    techniques: tuple[str, ...]
    mean_ranks: tuple[float, ...]
    n_sets: int
    statistic: float
    p_value: float
    cd: float


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of mean ranks for ``k`` techniques over ``n`` data sets."""
    from scipy.stats import studentized_range

    if k < 2 or n < 1:
        return math.nan
    q = float(studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n))


def rank_test(
    scores: Mapping[str, Mapping[str, float]], techniques: Sequence[str], alpha: float = 0.05
) -> RankTest:
    """Rank ``techniques`` on every data set of ``scores`` (higher score = better = rank 1).

    Args:
        scores: data set -> technique -> score; data sets missing a technique's finite score
            are left out.
        techniques: the techniques to compare.
        alpha: the level of the critical difference.
    """
    from scipy.stats import friedmanchisquare, rankdata

    rows = []
    for by_tech in scores.values():
        row = [by_tech.get(t, math.nan) for t in techniques]
        if all(math.isfinite(v) for v in row):
            rows.append(row)
    k, n = len(techniques), len(rows)
    if n == 0:
        nan = tuple(math.nan for _ in techniques)
        return RankTest(tuple(techniques), nan, 0, math.nan, math.nan, math.nan)
    ranks = np.vstack([rankdata(-np.asarray(r, dtype=np.float64)) for r in rows])
    stat = p = math.nan
    if k >= 3 and n >= 2 and np.ptp(ranks, axis=1).any():
        res = friedmanchisquare(*np.asarray(rows, dtype=np.float64).T)
        stat, p = float(res.statistic), float(res.pvalue)
    means = tuple(float(v) for v in ranks.mean(axis=0))
    return RankTest(tuple(techniques), means, n, stat, p, nemenyi_cd(k, n, alpha))


def _cliques(ranks: Sequence[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs ``(i, j)`` of the sorted ranks whose spread is at most ``cd``."""
    out: list[tuple[int, int]] = []
    for i in range(len(ranks)):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] - ranks[i] <= cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in out):
            out.append((i, j))
    return out


def cd_plot(
    path: str | os.PathLike[str], panels: Sequence[tuple[str, RankTest]], *, title: str
) -> Path:
    """Critical-difference diagrams, one panel per ``(title, test)``: each technique at its mean
    rank, the CD as a bar, and a thick line under each group the Nemenyi test cannot separate."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.6 * len(panels)), squeeze=False)
    for ax, (name, test) in zip(axes[:, 0], panels, strict=True):
        k = len(test.techniques)
        ax.set_xlim(0.5, k + 0.5)
        ax.set_ylim(-0.1 * (k + 2), 1.2)
        ax.axhline(1.0, color="black", lw=1)
        ax.set_yticks([])
        ax.set_xticks(range(1, k + 1))
        ax.tick_params(axis="x", bottom=False, labelbottom=False, top=True, labeltop=True)
        for side in ("left", "right", "bottom", "top"):
            ax.spines[side].set_visible(False)
        p = f"{test.p_value:.2g}" if math.isfinite(test.p_value) else "n/a"
        ax.set_title(f"{name}: N = {test.n_sets} data sets, Friedman p = {p}", fontsize=9)
        if test.n_sets == 0:
            continue
        order = sorted(range(k), key=lambda i: test.mean_ranks[i])
        ranks = [test.mean_ranks[i] for i in order]
        for pos, i in enumerate(order):
            y = -0.1 * (pos + 1)
            ax.plot([ranks[pos]] * 2, [1.0, y], color="grey", lw=0.8)
            ax.text(ranks[pos] + 0.05, y, f"{test.techniques[i]} ({ranks[pos]:.2f})", fontsize=7)
        if math.isfinite(test.cd):
            ax.plot([1, 1 + test.cd], [1.12, 1.12], color="red", lw=2)
            ax.text(1 + test.cd + 0.05, 1.1, f"CD = {test.cd:.2f}", fontsize=7, color="red")
            for n_clique, (i, j) in enumerate(_cliques(ranks, test.cd)):
                y = 0.9 - 0.06 * n_clique
                ax.plot([ranks[i] - 0.03, ranks[j] + 0.03], [y, y], color="black", lw=3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (2.6 * len(panels))))
    return rep.save_figure(fig, path)
