"""What every section of `posneg bench generative` is given: digits, a judge, the stand-in DDPM.

`posneg bench generative` builds one :class:`GenerativeContext` per seed: the 8x8 digits (scaled
to ``[-1, 1]``), a digit classifier trained separately as the judge, and the cached
class-conditional DDPM (a diffusers ``UNet2DModel`` with a class embedding and self-attention at
4x4, trained with label dropout for classifier-free guidance). A section is a function
``section(ctx, generator) -> dict[str, Any]`` returning its metrics for that seed (numbers,
plus optional ``"_images"`` tensors for the sample grid). Sections live in
``posneg/bench/_generative_<part>.py`` files, each exporting
``SECTIONS: dict[str, Section]``; the bench collects them, so a paper is added in its own file.

Sampling helpers for the DDPM (a DDIM loop with any guidance rule) are in
:mod:`posneg.bench._ddpm`; the judge's helpers in :mod:`posneg.bench._judge`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["GenerativeContext", "Section"]


@dataclass(frozen=True)
class GenerativeContext:
    """The shared protocol of one run (one seed); read-only by convention.

    Attributes:
        train_x: training digits ``(N, 1, 8, 8)`` float32 in ``[-1, 1]`` (the DDPM's data).
        train_y: their labels ``(N,)`` int64 in ``[0, 10)``.
        test_x: held-out digits ``(M, 1, 8, 8)`` in ``[-1, 1]`` (the judge never saw them).
        test_y: their labels.
        judge: the digit classifier, eval mode: ``judge(x)`` gives ``(N, 10)`` logits for images
            in ``[-1, 1]``; ``judge.features(x)`` gives ``(N, F)`` penultimate features (for
            diversity and Frechet distances).
        ddpm: the trained stand-in denoiser, eval mode, with the diffusers ``UNet2DModel``
            signature ``ddpm(x, t, class_labels=y).sample`` -> predicted noise; class
            ``null_class`` is the unconditional (dropped) label.
        scheduler: a fresh diffusers ``DDIMScheduler`` configured like the DDPM's training
            (``num_train_timesteps``, beta schedule); copy it (``from_config``) before changing
            its state.
        make_unet: builds a fresh, untrained ``UNet2DModel`` of the same architecture (for
            sections that train their own diffusion model, e.g. ANT).
        num_classes: 10.
        null_class: the label id of the unconditional branch (``num_classes``).
        sample_steps: DDIM steps the bench samples with.
        preset: ``"demo"``, ``"default"`` (sections may shrink their work for ``"demo"``).
        seed: the run's seed (sections build their own generators from it).
        device: where models and tensors live.
        out: the bench's output folder (sections may save extra files there), or None.
        extra: anything else the set-up provides.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    judge: nn.Module
    ddpm: nn.Module
    scheduler: Any
    make_unet: Callable[[], nn.Module]
    num_classes: int = 10
    null_class: int = 10
    sample_steps: int = 25
    preset: str = "default"
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    out: Path | None = None
    extra: Mapping[str, object] = field(default_factory=dict)


#: A bench section: metrics for one seed (floats; "_images" -> (K, 1, 8, 8) for the grid).
Section = Callable[[GenerativeContext, torch.Generator], dict[str, Any]]
