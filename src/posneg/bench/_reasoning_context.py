"""What every section of `posneg bench reasoning` is given: the arithmetic task and a tiny GPT-2.

`posneg bench reasoning` builds one :class:`ReasoningContext` per seed: train and held-out
problems of the multi-step arithmetic task (:mod:`posneg.bench._arith`), the tiny GPT-2
pretrained on it by SFT (:mod:`posneg.bench._tiny_gpt`, cached), its tokenizer, and helpers to
sample completions and to build a fresh copy of the pretrained policy. A section is a function
``section(ctx, generator) -> dict[str, Any]`` returning its metrics for that seed (floats, or
lists of floats for curves). Sections live in ``posneg/bench/_reasoning_<part>.py`` files, each
exporting ``SECTIONS: dict[str, Section]``; the bench collects them (an absent file is
skipped), so a paper is added in its own file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from posneg.bench._arith import ArithProblems
from posneg.bench._tiny_gpt import CharTokenizer

__all__ = ["ReasoningContext", "Section"]


@dataclass(frozen=True)
class ReasoningContext:
    """The shared protocol of one run (one seed); read-only by convention.

    Attributes:
        train: training problems (:class:`~posneg.bench._arith.ArithProblems`).
        test: held-out problems (never trained on).
        model: the pretrained tiny GPT-2 (``transformers.GPT2LMHeadModel``), eval mode; do not
            train it in place: take ``fresh_policy()``.
        fresh_policy: a deep copy of ``model`` to fine-tune.
        tokenizer: the character tokenizer (``encode``/``decode``, ``pad_id``, ``eos_id``).
        sample: ``sample(model, problems, num_samples, generator) -> list[str]``: sampled
            completions, problem-major (``num_samples`` per problem, in order).
        temperature: the sampling temperature the bench uses.
        fpr: false-positive rate of the bench's noisy verifier.
        fnr: false-negative rate of the bench's noisy verifier.
        preset: ``"demo"`` or ``"default"`` (sections may shrink their work for ``"demo"``).
        seed: the run's seed.
        device: where the model lives.
        out: the bench's output folder (sections may save extra files there), or None.
        extra: anything else the set-up provides.
    """

    train: ArithProblems
    test: ArithProblems
    model: nn.Module
    fresh_policy: Callable[[], nn.Module]
    tokenizer: CharTokenizer
    sample: Callable[[nn.Module, ArithProblems, int, torch.Generator | None], list[str]]
    temperature: float = 1.0
    fpr: float = 0.2
    fnr: float = 0.1
    preset: str = "default"
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    out: Path | None = None
    extra: Mapping[str, object] = field(default_factory=dict)


#: A bench section: metrics for one seed (floats or lists of floats).
Section = Callable[[ReasoningContext, torch.Generator], dict[str, Any]]
