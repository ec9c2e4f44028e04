"""What every augmentation-policy runner of `posneg bench policies` is given, and what it returns.

`posneg bench policies` compares learned augmentation policies (AdAutoMix, MADAug,
invariance-constrained sampling, the policy-gradient noise mask, ...) with the fixed ones (no
augmentation, MixUp, CutMix, RandAugment) under one protocol: the same data split, the same
classifier architecture (built fresh by ``ctx.make_model()``), the same epoch budget and optimiser
settings. A runner trains one classifier its way and returns its metrics on ``ctx.test_x``.
Runners live in ``posneg/bench/_policies_<method>.py`` files, each exporting
``RUNNERS: dict[str, PolicyRunner]``; the bench collects them, so a method is added in its own file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

__all__ = ["PolicyContext", "PolicyResult", "PolicyRunner"]


@dataclass(frozen=True)
class PolicyContext:
    """The shared protocol of one run (one data set, one seed); read-only by convention.

    Attributes:
        train_x: training inputs, ``(N, C, H, W)`` images or ``(N, C, L)`` sequences, float in
            the range the model expects.
        train_y: training labels ``(N,)`` int64.
        val_x: held-out inputs a policy may use for its own outer loop (MADAug's validation
            loss, ...); never the test set.
        val_y: their labels.
        test_x: test inputs, used only for the reported metrics.
        test_y: their labels.
        kind: ``"image"`` or ``"sequence"``: which kernels apply.
        num_classes: number of classes.
        make_model: builds a fresh classifier (same architecture for every runner); the runner
            initialises it under its own generator/seed.
        epochs: the training budget in epochs over ``train_x`` (a policy's inner steps count).
        batch_size: mini-batch size.
        lr: learning rate of the classifier's optimiser (Adam with a cosine decay, as
            `posneg bench mixing`).
        seed: the run's seed.
        device: where to train.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    kind: Literal["image", "sequence"]
    num_classes: int
    make_model: Callable[[], nn.Module]
    epochs: int
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@dataclass(frozen=True)
class PolicyResult:
    """What a runner returns.

    Attributes:
        accuracy: test accuracy in [0, 1].
        ece: expected calibration error (15 bins) on the test set.
        seconds: wall time of the training, policy included.
        curve: optional per-epoch test (or validation) accuracy, for the plot.
        notes: anything the report should say about this run (for example what the stand-in
            model changes with respect to the paper).
    """

    accuracy: float
    ece: float
    seconds: float
    curve: tuple[float, ...] = ()
    notes: str = ""


#: A policy runner: trains one classifier under its policy and scores it on the test set.
PolicyRunner = Callable[[PolicyContext, torch.Generator], PolicyResult]
