"""What every detector of `posneg bench ood` is given: one trained classifier and the data sets.

`posneg bench ood` trains one in-distribution classifier, builds the evaluation sets (in-domain
test, near-OOD, far-OOD, adversarial) and hands an :class:`OODContext` to every detector runner.
A runner is a function ``runner(ctx, generator) -> dict[str, torch.Tensor]`` that returns one 1-D
score tensor per name in ``ctx.eval_sets`` (higher = more out-of-distribution, as for every
`posneg.ood` detector). Runners live in ``posneg/bench/_ood_<method>.py`` files, each exporting
``RUNNERS: dict[str, Runner]``; the bench collects them, so a method is added in its own file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

__all__ = ["LayeredClassifier", "OODContext", "Runner"]


class LayeredClassifier(Protocol):
    """The in-distribution classifier: logits, plus the features of every probed layer.

    ``layer_features(x)`` returns one ``(N, C_l)`` tensor per probed layer, shallow to deep (the
    last is the penultimate representation); spatial maps are already mean-pooled.
    """

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]: ...

    def eval(self) -> nn.Module: ...


@dataclass(frozen=True)
class OODContext:
    """Everything a detector runner may use; read-only by convention.

    Attributes:
        model: the trained classifier (in eval mode), see :class:`LayeredClassifier`.
        train_x: in-distribution training inputs ``(N, ...)``, as the model consumes them.
        train_y: their labels ``(N,)`` int64 in ``[0, num_classes)``.
        val_x: held-out in-distribution inputs for a detector's own tuning (never test data).
        val_y: their labels.
        eval_sets: name -> inputs; ``"id"`` is the in-distribution test set, every other entry
            an out-of-distribution set (``"near"``, ``"far_photo"``, ``"far_noise"``,
            ``"fgsm"``, ``"pgd"`` when present).
        num_classes: number of in-distribution classes.
        input_std: per-channel standard deviation of the input normalisation (for an
            input-space step of size epsilon in pixel units); 1.0 where inputs are not normalised.
        seed: the run's seed (runners build their own generators from it).
        device: where the model and tensors live.
        extra: anything else a set-up provides (for example raw images for a two-tower model).
    """

    model: LayeredClassifier
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    eval_sets: Mapping[str, torch.Tensor]
    num_classes: int
    input_std: float = 1.0
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    extra: Mapping[str, object] = field(default_factory=dict)


#: A detector runner: scores for every evaluation set, higher = more out-of-distribution.
Runner = Callable[[OODContext, torch.Generator], dict[str, torch.Tensor]]
