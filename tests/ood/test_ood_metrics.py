"""posneg.ood.metrics against scikit-learn (roc_auc_score, average_precision_score, roc_curve)
on random and on tied scores, and the official calculate_log conventions
(pokaxpoka/deep_Mahalanobis_detector, commit f128c35: ID positive for TNR@TPR95, DTACC)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from posneg.ood.metrics import (
    aupr_in,
    aupr_out,
    auroc,
    detection_accuracy,
    fpr_at_tpr,
    ood_metrics,
)


def _sets(seed: int, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, 60), rng.normal(0.8, 1, 45)
    if tied:
        a, b = np.round(a), np.round(b)
    return a, b


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn(seed: int, tied: bool) -> None:
    a, b = _sets(seed, tied)
    y_out = np.r_[np.zeros(a.size), np.ones(b.size)]
    s = np.r_[a, b]
    assert auroc(a, b) == pytest.approx(roc_auc_score(y_out, s), abs=1e-12)
    assert aupr_out(a, b) == pytest.approx(average_precision_score(y_out, s), abs=1e-12)
    assert aupr_in(a, b) == pytest.approx(average_precision_score(1 - y_out, -s), abs=1e-12)
    fpr, tpr, _ = roc_curve(1 - y_out, -s, drop_intermediate=False)
    i = int(np.argmax(tpr >= 0.95))
    assert fpr_at_tpr(a, b) == pytest.approx(fpr[i], abs=1e-12)
    assert detection_accuracy(a, b) == pytest.approx(np.max(0.5 * (tpr + 1 - fpr)), abs=1e-12)


def test_naive_auroc_pairs() -> None:
    a, b = _sets(3, True)
    naive = np.mean([(y > x) + 0.5 * (y == x) for x in a for y in b])
    assert auroc(torch.tensor(a), torch.tensor(b)) == pytest.approx(naive, abs=1e-12)


def test_perfect_and_reversed() -> None:
    a, b = np.arange(10.0), np.arange(10.0) + 100
    m = ood_metrics(a, b)
    assert m == {
        "auroc": 1.0,
        "aupr_in": 1.0,
        "aupr_out": 1.0,
        "fpr95": 0.0,
        "detection_accuracy": 1.0,
    }
    assert auroc(b, a) == 0.0 and fpr_at_tpr(b, a) == 1.0


def test_fpr_guarantees_tpr() -> None:
    """TPR >= 0.95 always (the official argmin |TPR - .95| may land just below)."""
    a, b = _sets(4, False)
    thr = np.sort(a)[int(np.ceil(0.95 * a.size)) - 1]
    assert fpr_at_tpr(a, b) == pytest.approx(np.mean(b <= thr))


def test_errors() -> None:
    with pytest.raises(ValueError, match="auroc: scores_id must not be empty"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        aupr_in(np.zeros((2, 2)), [1.0])
    with pytest.raises(ValueError, match="NaN"):
        aupr_out([float("nan")], [1.0])
    with pytest.raises(ValueError, match="fpr_at_tpr: tpr"):
        fpr_at_tpr([0.0], [1.0], tpr=1.5)
