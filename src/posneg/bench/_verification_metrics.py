"""Verification metrics of `posneg bench verification`: pair scores, TAR at FAR, ROC plot.

A pair is accepted when its cosine similarity is ``>= t``. For a threshold ``t``,
``FAR(t) = #{negative pairs >= t} / #negative`` and ``TAR(t) = #{positive pairs >= t} / #positive``;
``TAR@FAR=f`` is the largest TAR over the thresholds with ``FAR(t) <= f`` (the sweep runs over
every distinct score and +inf). This is the point sklearn's ``roc_curve`` gives as
``max(tpr[fpr <= f])`` (checked in tests/bench/test_verification.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from posneg.bench import _report

__all__ = ["pair_scores", "plot_roc", "reportable_fars", "roc_sweep", "tar_at_far"]

#: A FAR is reported only when at least this many negative pairs may be accepted at it.
MIN_FALSE_ACCEPTS = 10


def pair_scores(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of every unordered pair (a < b): (positive scores, negative scores)."""
    x = F.normalize(embeddings.double(), dim=1)
    a, b = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
    sim = (x @ x.T)[a, b]
    same = labels[a] == labels[b]
    return sim[same].cpu().numpy(), sim[~same].cpu().numpy()


def roc_sweep(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at every threshold: each distinct score and +inf, thresholds descending."""
    if pos.size == 0 or neg.size == 0:
        raise ValueError("roc_sweep: need at least one positive and one negative pair")
    thresholds = np.concatenate([[np.inf], np.unique(np.concatenate([pos, neg]))[::-1]])
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    accepted_neg = neg.size - np.searchsorted(neg_sorted, thresholds, side="left")
    accepted_pos = pos.size - np.searchsorted(pos_sorted, thresholds, side="left")
    return accepted_neg / neg.size, accepted_pos / pos.size


def tar_at_far(pos: np.ndarray, neg: np.ndarray, fars: Sequence[float]) -> dict[float, float]:
    """``{f: max TAR over thresholds with FAR <= f}`` for every ``f`` in ``fars``."""
    far, tar = roc_sweep(pos, neg)
    return {f: float(tar[far <= f].max()) for f in fars}


def reportable_fars(n_negative: int, fars: Sequence[float]) -> list[float]:
    """The FARs at which at least :data:`MIN_FALSE_ACCEPTS` negative pairs may be accepted."""
    return [f for f in fars if f * n_negative >= MIN_FALSE_ACCEPTS]


def roc_points(pos: np.ndarray, neg: np.ndarray, n: int = 200) -> dict[str, list[float]]:
    """The ROC thinned to ``n`` log-spaced FARs (for results.json and the plot)."""
    far, tar = roc_sweep(pos, neg)
    grid = np.logspace(np.log10(max(1.0 / neg.size, 1e-6)), 0.0, n)
    return {
        "far": grid.tolist(),
        "tar": [float(tar[far <= f].max()) for f in grid],
    }


def plot_roc(
    out: Path,
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    fars: Sequence[float],
    title: str,
) -> Path:
    """ROC (TAR against log FAR) per technique: the mean over seeds, a band of +-1 std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for label, runs in curves.items():
        far = np.asarray(runs[0]["far"])
        tars = np.asarray([r["tar"] for r in runs])
        mean, sd = tars.mean(axis=0), tars.std(axis=0)
        ax.plot(far, mean, label=label, lw=1.6)
        ax.fill_between(far, mean - sd, mean + sd, alpha=0.15)
    for f in fars:
        ax.axvline(f, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("FAR (false accept rate, negative pairs)")
    ax.set_ylabel("TAR (true accept rate, positive pairs)")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    path = _report.save_figure(fig, out / "roc.png")
    plt.close(fig)
    return path
