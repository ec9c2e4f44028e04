"""The frozen-feature evaluation of self-supervised benches: linear probe and kNN accuracy.

- :func:`linear_probe_accuracy`: multinomial logistic regression (scikit-learn, L-BFGS,
  deterministic) fitted on standardised frozen train features, scored on the test features.
- :func:`knn_accuracy`: a k-nearest-neighbour vote under cosine similarity.
- :func:`evaluate`: both, for a feature function on a :class:`~posneg.data.Dataset` split.
- :func:`train_supervised`, :func:`supervised_reference`: the supervised reference of a bench:
  an encoder's backbone and a linear classifier trained with cross-entropy on the same views
  (the scale of the table), then probed like the self-supervised runs.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from posneg.bench._models import Encoder
from posneg.data import Dataset

__all__ = ["REFERENCE", "evaluate", "knn_accuracy", "linear_probe_accuracy"]
__all__ += ["supervised_reference", "train_supervised"]

#: The row name of the supervised reference.
REFERENCE = "supervised CE (reference)"


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


def train_supervised(
    backbone: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    view: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    *,
    shape: tuple[int, int],
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    generator: torch.Generator,
    tick: Callable[[], None],
) -> list[float]:
    """Train ``backbone`` and a linear classifier on top with cross-entropy, on ``view`` of ``x``.

    The classifier's initial weights are drawn on a fork of torch's global generator seeded from
    ``generator``; batch order and views come from ``generator``. Full batches only.

    Args:
        backbone: ``(B, ...) -> (B, feat)``; trained in place, left in eval mode.
        x, y: the train inputs and labels (0..C-1).
        view: ``view(batch, generator)``, one augmented view per step.
        shape: ``(feat, n_classes)`` of the linear classifier.
        epochs, batch_size: passes over ``x`` and samples per step.
        lr, weight_decay: Adam's.
        generator: the run's generator.
        tick: called once per epoch.

    Returns:
        The mean loss of every epoch.
    """
    with torch.random.fork_rng(devices=[]):
        g = generator
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g, device=g.device)))
        clf = torch.nn.Linear(*shape).to(x.device)
    params = [*backbone.parameters(), *clf.parameters()]
    optim = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    n, steps = x.shape[0], x.shape[0] // batch_size
    losses = []
    backbone.train()
    for _ in range(epochs):
        perm = torch.randperm(n, device=x.device, generator=generator)
        total = 0.0
        for step in range(steps):
            idx = perm[step * batch_size : (step + 1) * batch_size]
            logits = clf(backbone(view(x[idx], generator)))
            loss = torch.nn.functional.cross_entropy(logits, y[idx])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            total += float(loss.detach())
        losses.append(total / steps)
        tick()
    backbone.eval()
    return losses


def supervised_reference(
    model: Encoder,
    data: Dataset,
    view: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    epochs: int,
    batch_size: int,
    opt: tuple[float, float],
    seed: int,
    tick: Callable[[], None],
) -> dict[str, Any]:
    """One run record of the supervised reference (:func:`train_supervised`, then :func:`evaluate`).

    ``model.backbone`` is trained with a linear classifier on top; ``opt`` is Adam's
    ``(lr, weight_decay)``; the run's generator is seeded with ``seed`` on the model's device.
    The record has the fields of a bench run (``objective`` is :data:`REFERENCE`, ``supervised``
    true).
    """
    backbone = model.backbone
    device = next(backbone.parameters()).device
    x, y = (torch.as_tensor(a, device=device) for a in (data.x_train, data.y_train))
    gen = torch.Generator(device=device).manual_seed(seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    losses = train_supervised(
        backbone,
        x,
        y,
        view,
        shape=(model.feat_dim, data.n_classes),
        epochs=epochs,
        batch_size=batch_size,
        lr=opt[0],
        weight_decay=opt[1],
        generator=gen,
        tick=tick,
    )
    train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "objective": REFERENCE,
        "key": "cross_entropy",
        "supervised": True,
        "batch_size": batch_size,
        "seed": seed,
        "loss_module": "CrossEntropyLoss()",
        **evaluate(backbone, data, device),
        "final_loss": losses[-1],
        "epoch_losses": losses,
        "diverged_at_epoch": None,
        "steps": len(losses) * (len(x) // batch_size),
        "train_seconds": round(train_s, 3),
        "train_cpu_seconds": round(cpu_s, 3),
    }
