"""The frozen-feature evaluation of self-supervised benches: linear probe and kNN accuracy.

- :func:`linear_probe_accuracy`: multinomial logistic regression (scikit-learn, L-BFGS,
  deterministic) fitted on standardised frozen train features, scored on the test features.
- :func:`knn_accuracy`: a k-nearest-neighbour vote under cosine similarity.
- :func:`evaluate`: both, for a feature function on a :class:`~posneg.data.Dataset` split.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from posneg.data import Dataset

__all__ = ["evaluate", "knn_accuracy", "linear_probe_accuracy"]


def knn_accuracy(
    train_feats: torch.Tensor,
    train_y: torch.Tensor,
    test_feats: torch.Tensor,
    test_y: torch.Tensor,
    *,
    k: int = 20,
    n_classes: int,
) -> float:
    """Accuracy of a k-nearest-neighbour majority vote under cosine similarity.

    Ties between classes go to the class whose voters are more similar in total.
    """
    a = torch.nn.functional.normalize(test_feats.double(), dim=1)
    b = torch.nn.functional.normalize(train_feats.double(), dim=1)
    k = min(k, b.shape[0])
    sims, idx = (a @ b.T).topk(k, dim=1)
    labels = train_y[idx]
    votes = torch.zeros(a.shape[0], n_classes, dtype=torch.float64, device=a.device)
    votes.scatter_add_(1, labels, torch.ones_like(sims))
    tie = torch.zeros_like(votes).scatter_add_(1, labels, sims + 1.0)  # in (0, 2k]
    pred = (votes + tie / (4.0 * k)).argmax(dim=1)  # tie-break term < 1/2 of a vote
    return float((pred == test_y).double().mean())


def linear_probe_accuracy(
    train_feats: np.ndarray, train_y: np.ndarray, test_feats: np.ndarray, test_y: np.ndarray
) -> float:
    """Accuracy of logistic regression (L-BFGS, deterministic) on standardised frozen features."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    mean = train_feats.mean(axis=0)
    std = train_feats.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    xtr = (train_feats - mean) / std
    xte = (test_feats - mean) / std
    clf = LogisticRegression(C=1.0, max_iter=1000)
    # one BLAS thread: a problem this small only loses time to thread hand-offs
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, train_y)
        pred = clf.predict(xte)
    return float((pred == test_y).mean())


@torch.no_grad()
def _features(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(chunk) for chunk in x.split(1024)])


def evaluate(
    features: Callable[[torch.Tensor], torch.Tensor], data: Dataset, device: torch.device
) -> dict[str, float]:
    """Linear-probe and kNN accuracy of ``features`` (standardised inputs -> (N, d)) on ``data``."""
    xtr = data.scaler(torch.as_tensor(data.x_train, device=device))
    xte = data.scaler(torch.as_tensor(data.x_test, device=device))
    ftr, fte = _features(features, xtr), _features(features, xte)
    ytr = torch.as_tensor(data.y_train, device=device)
    yte = torch.as_tensor(data.y_test, device=device)
    knn = knn_accuracy(ftr, ytr, fte, yte, k=20, n_classes=data.n_classes)
    f_tr = ftr.double().cpu().numpy()
    f_te = fte.double().cpu().numpy()
    probe = linear_probe_accuracy(f_tr, data.y_train, f_te, data.y_test)
    return {"linear_probe": probe, "knn": knn}
