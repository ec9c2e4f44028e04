"""Out-of-distribution detection metrics: AUROC, AUPR-in/out, FPR at a TPR, detection accuracy.

Every function takes the scores of the in-distribution samples and of the out-of-distribution
samples, **higher = more out-of-distribution** (the convention of every `posneg.ood` detector),
as 1-D tensors or arrays, and computes in float64 numpy.

Conventions (Lee et al.'s ``calculate_log.py`` in pokaxpoka/deep_Mahalanobis_detector, commit
f128c35, reports TNR@TPR95, AUROC, detection accuracy, AUPR-in and AUPR-out):

- Thresholds are the distinct score values; tied scores move together, exactly as
  ``sklearn.metrics.roc_curve`` / ``average_precision_score`` (the tests compare with them on
  random and on tied scores).
- :func:`auroc`: P(score_ood > score_id) + ½ P(tie). Symmetric: which side is "positive" does
  not matter.
- :func:`aupr_in`: average precision with the in-distribution samples as positives ranked by
  ``-score``; :func:`aupr_out`: out-of-distribution positives ranked by ``score``. Average
  precision is sklearn's step sum ``Σ_n (R_n − R_{n−1}) P_n`` (no trapezoid); the official
  ``calculate_log`` integrates with ``np.trapz``, which differs slightly.
- :func:`fpr_at_tpr`: the **in-distribution sample is the positive** (as in the official
  TNR@TPR95): a threshold accepts as in-distribution every sample whose score is at or below
  it; TPR = share of in-distribution accepted, FPR = share of OOD accepted; the result is the
  FPR at the first threshold (lowest) whose TPR reaches ``tpr``. ``1 - fpr_at_tpr`` is the
  TNR@TPR95. The official code takes the threshold whose TPR is *nearest* to 0.95 (possibly
  just below it); here TPR >= 0.95 is guaranteed, the common convention.
- :func:`detection_accuracy`: ``max_t ½ (TPR(t) + 1 − FPR(t))`` over all thresholds, the
  endpoints (accept nothing / everything) included, as the official DTACC.

Example:
    >>> import torch
    >>> auroc(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.25, 0.9]))
    0.8333333333333334
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "OOD_METRICS",
    "aupr_in",
    "aupr_out",
    "auroc",
    "detection_accuracy",
    "fpr_at_tpr",
    "ood_metrics",
]

CITATION = """
@inproceedings{lee2018mahalanobis,
  title     = {A Simple Unified Framework for Detecting Out-of-Distribution Samples and
               Adversarial Attacks},
  author    = {Lee, Kimin and Lee, Kibok and Lee, Honglak and Shin, Jinwoo},
  booktitle = {Advances in Neural Information Processing Systems 31 (NeurIPS 2018)},
  year      = {2018},
  note      = {arXiv:1807.03888}
}
"""

#: The metric names :func:`ood_metrics` returns.
OOD_METRICS: tuple[str, ...] = ("auroc", "aupr_in", "aupr_out", "fpr95", "detection_accuracy")


def _scores(fn: str, name: str, x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {name} must be a 1-D tensor or array of numbers") from None
    if a.ndim != 1:
        raise ValueError(f"{fn}: {name} must be 1-D; got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{fn}: {name} must not be empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{fn}: {name} contains NaN or inf values")
    return a


def _curve(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true/false positive counts at each distinct threshold, high to low.

    Positives are ranked by ``pos``/``neg`` values descending; a threshold ``t`` counts every
    sample with value >= t (sklearn's ``_binary_clf_curve``).
    """
    s = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    return tps, fps


def auroc(scores_id: Any, scores_ood: Any) -> float:
    """Area under the ROC curve of OOD-vs-in-distribution (0.5: chance, 1: perfect).

    Args:
        scores_id: ``(N_in,)`` scores of in-distribution samples (higher = more OOD).
        scores_ood: ``(N_out,)`` scores of out-of-distribution samples.
    """
    fn = "auroc"
    a, b = _scores(fn, "scores_id", scores_id), _scores(fn, "scores_ood", scores_ood)
    tps, fps = _curve(b, a)
    tpr = np.r_[0.0, tps / b.size]
    fpr = np.r_[0.0, fps / a.size]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def _average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    tps, fps = _curve(pos, neg)
    precision = tps / (tps + fps)
    recall = np.r_[0.0, tps / pos.size]
    return float(np.sum(np.diff(recall) * precision))


def aupr_in(scores_id: Any, scores_ood: Any) -> float:
    """Average precision with the in-distribution samples as positives (ranked by ``-score``)."""
    fn = "aupr_in"
    a, b = _scores(fn, "scores_id", scores_id), _scores(fn, "scores_ood", scores_ood)
    return _average_precision(-a, -b)


def aupr_out(scores_id: Any, scores_ood: Any) -> float:
    """Average precision with the out-of-distribution samples as positives (ranked by score)."""
    fn = "aupr_out"
    a, b = _scores(fn, "scores_id", scores_id), _scores(fn, "scores_ood", scores_ood)
    return _average_precision(b, a)


def _roc_id_positive(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(TPR, FPR) with in-distribution positive, from accept-nothing to accept-everything."""
    tps, fps = _curve(-a, -b)
    return np.r_[0.0, tps / a.size], np.r_[0.0, fps / b.size]


def fpr_at_tpr(scores_id: Any, scores_ood: Any, *, tpr: float = 0.95) -> float:
    """Share of OOD samples accepted when a share ``tpr`` of in-distribution samples is accepted.

    In-distribution is the positive class (the official TNR@TPR95 is ``1 - fpr_at_tpr``). The
    threshold is the first one (from strict to lenient) whose TPR is >= ``tpr``.

    Args:
        scores_id: ``(N_in,)`` in-distribution scores (higher = more OOD).
        scores_ood: ``(N_out,)`` out-of-distribution scores.
        tpr: the target true-positive rate in ``(0, 1]``.
    """
    fn = "fpr_at_tpr"
    a, b = _scores(fn, "scores_id", scores_id), _scores(fn, "scores_ood", scores_ood)
    if isinstance(tpr, bool) or not isinstance(tpr, int | float) or not 0.0 < tpr <= 1.0:
        raise ValueError(f"{fn}: tpr must be a number in (0, 1]; got {tpr!r}")
    tp, fp = _roc_id_positive(a, b)
    i = int(np.argmax(tp >= tpr - 1e-12))
    return float(fp[i])


def detection_accuracy(scores_id: Any, scores_ood: Any) -> float:
    """Best balanced accuracy over thresholds: ``max_t ½ (TPR + 1 − FPR)`` (official DTACC)."""
    fn = "detection_accuracy"
    a, b = _scores(fn, "scores_id", scores_id), _scores(fn, "scores_ood", scores_ood)
    tp, fp = _roc_id_positive(a, b)
    return float(np.max(0.5 * (tp + 1.0 - fp)))


def ood_metrics(scores_id: Any, scores_ood: Any) -> dict[str, float]:
    """All of :data:`OOD_METRICS` at once (``fpr95`` is :func:`fpr_at_tpr` at 0.95)."""
    return {
        "auroc": auroc(scores_id, scores_ood),
        "aupr_in": aupr_in(scores_id, scores_ood),
        "aupr_out": aupr_out(scores_id, scores_ood),
        "fpr95": fpr_at_tpr(scores_id, scores_ood, tpr=0.95),
        "detection_accuracy": detection_accuracy(scores_id, scores_ood),
    }
