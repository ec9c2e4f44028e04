"""`posneg bench ood` runners of the post-hoc baselines: MSP, MaxLogit, Energy, k-NN.

Each runner scores every evaluation set of the :class:`OODContext` with the trained classifier's
logits (MSP, MaxLogit, Energy at T = 1) or its penultimate features (k-NN, k = 10 over the
normalised training features; the paper's k = 50 is for 50 000 CIFAR-10 images, the digits
train split has about 650).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from posneg.bench._ood_context import OODContext, Runner
from posneg.ood.baselines import EnergyScore, KNNDistance, MaxLogit, MaxSoftmax

__all__ = ["KNN_K", "RUNNERS"]

KNN_K = 10


def _on_logits(make: Callable[[], torch.nn.Module]) -> Runner:
    def run(ctx: OODContext, generator: torch.Generator) -> dict[str, torch.Tensor]:
        det: Any = make()
        with torch.no_grad():
            return {k: det.score(ctx.model(x)).detach() for k, x in ctx.eval_sets.items()}

    return run


def _knn(ctx: OODContext, generator: torch.Generator) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        det = KNNDistance(k=KNN_K).fit(ctx.model.layer_features(ctx.train_x)[-1])
        return {k: det.score(ctx.model.layer_features(x)[-1]) for k, x in ctx.eval_sets.items()}


RUNNERS: dict[str, Runner] = {
    "msp": _on_logits(MaxSoftmax),
    "maxlogit": _on_logits(MaxLogit),
    "energy": _on_logits(EnergyScore),
    "knn": _knn,
}
