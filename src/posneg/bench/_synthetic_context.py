"""What every section of `posneg bench synthetic` is given: digits, a judge, a conditional sampler.

`posneg bench synthetic` builds one :class:`SyntheticContext` per seed: the 8x8 digits (scaled
to ``[-1, 1]``, the fixed 75/25 split of :func:`posneg.bench._judge.digit_split`), a digit
classifier as the judge, and a class-conditional generator handle (:class:`DigitSampler`)
around the cached stand-in DDPM of `posneg bench generative` (:mod:`posneg.bench._ddpm`: trained
once on the train side, cached under ``~/.cache/posneg/generative``), sampled with DDIM and
classifier-free guidance. ``ctx.sampler.sample(labels, generator=g)`` returns one image per
label. Sections that need digits with a class-correlated spurious attribute call
``ctx.spurious_digits(seed)`` (:func:`posneg.bench._spurious.load_spurious_digits`, imported
lazily).

A section is a function ``section(ctx, generator) -> dict[str, Any]`` returning one seed's
metrics (numbers; strings are descriptions shown once; ``"_images"`` ``(K, 1, 8, 8)`` in
``[-1, 1]`` and ``"_grid_rows"`` feed the sample grid). Sections live in
``posneg/bench/_synthetic_<part>.py`` files listed in :data:`posneg.bench.synthetic.PARTS`, each
exporting ``SECTIONS: dict[str, Section]`` and optionally ``claims(aggregate) -> list[str]``
(``aggregate`` maps ``"<section>/<metric>"`` to ``(mean, std)`` over seeds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["DigitSampler", "Section", "SyntheticContext"]


class DigitSampler:
    """A class-conditional generator handle: ``sample(labels, generator=g) -> (N, 1, 8, 8)``.

    Deterministic DDIM (eta 0) on the stand-in DDPM with classifier-free guidance
    ``eps = eps_u + guidance * (eps_c - eps_u)``; images in ``[-1, 1]``. Sampling runs in
    chunks of ``chunk`` images (the conditional and unconditional branches in one batch).

    Args:
        ddpm: denoiser with the diffusers ``UNet2DModel`` signature
            ``ddpm(x, t, class_labels=y).sample``; label ``null_class`` is unconditional.
        scheduler: a diffusers ``DDIMScheduler`` configured like the DDPM's training.
        steps: DDIM steps.
        guidance: classifier-free guidance scale (1: plain conditional).
        null_class: the unconditional label id.
        chunk: images per denoiser batch.
    """

    def __init__(
        self,
        ddpm: nn.Module,
        scheduler: Any,
        *,
        steps: int = 20,
        guidance: float = 2.0,
        null_class: int = 10,
        chunk: int = 512,
    ) -> None:
        self.ddpm = ddpm
        self.scheduler = scheduler
        self.steps = steps
        self.guidance = guidance
        self.null_class = null_class
        self.chunk = chunk

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """One image per label: ``(N, 1, 8, 8)`` float32 in ``[-1, 1]`` (``N = len(labels)``)."""
        from posneg.bench._ddpm import ddim_sample

        labels = torch.as_tensor(labels, dtype=torch.int64).flatten()
        out = []
        for part in labels.split(self.chunk):
            n = len(part)
            null = torch.full_like(part, self.null_class)

            both = torch.cat([part, null])

            def eps_fn(x: torch.Tensor, t: torch.Tensor, both: torch.Tensor = both) -> torch.Tensor:
                e = self.ddpm(torch.cat([x, x]), torch.cat([t, t]), class_labels=both)
                ec, eu = e.sample.chunk(2)
                return eu + self.guidance * (ec - eu)

            out.append(
                ddim_sample(
                    eps_fn, n, scheduler=self.scheduler, steps=self.steps, generator=generator
                )
            )
        return torch.cat(out) if out else torch.empty(0, 1, 8, 8)


def _spurious_digits(seed: int) -> dict[str, dict[str, torch.Tensor]]:
    from posneg.bench._spurious import load_spurious_digits

    return load_spurious_digits(seed=seed)


@dataclass(frozen=True)
class SyntheticContext:
    """The shared protocol of one run (one seed); read-only by convention.

    Attributes:
        train_x: training digits ``(N, 1, 8, 8)`` float32 in ``[-1, 1]`` (the DDPM's data).
        train_y: their labels ``(N,)`` int64 in ``[0, 10)``.
        test_x: held-out digits ``(M, 1, 8, 8)`` in ``[-1, 1]`` (neither the DDPM nor the
            judge saw them).
        test_y: their labels.
        sampler: the class-conditional generator handle (:class:`DigitSampler`):
            ``sampler.sample(labels, generator=g)`` -> ``(len(labels), 1, 8, 8)`` in ``[-1, 1]``.
        judge: a digit CNN trained on the train side, eval mode: ``judge(x)`` -> ``(N, 10)``
            logits; ``judge.features(x)`` -> ``(N, 64)`` (fidelity checks of samples).
        ddpm: the stand-in denoiser itself (``ddpm(x, t, class_labels=y).sample``), for
            sections that need more than ``sampler.sample`` (inpainting, guidance variants).
        scheduler: a diffusers ``DDIMScheduler`` like the DDPM's training; copy it
            (``from_config``) before changing its state.
        spurious_digits: ``spurious_digits(seed)`` -> the digits with a class-correlated
            border (:func:`posneg.bench._spurious.load_spurious_digits`: ``correlated``,
            ``balanced`` and ``test`` splits, 10x10 images in ``[0, 1]``).
        num_classes: 10.
        null_class: the unconditional label id of the DDPM (10).
        trained: False when the DDPM is untrained (demo / smoke tests: plumbing only).
        preset: ``"default"`` or ``"demo"`` (sections shrink their work for ``"demo"``).
        seed: the run's seed (sections build their own generators from it).
        device: where models and tensors live.
        out: the bench's output folder (sections may save extra files there), or None.
        extra: anything else the set-up provides (``samples``: a per-section sample count
            override, 0 = the section's default).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    sampler: DigitSampler
    judge: nn.Module
    ddpm: nn.Module
    scheduler: Any
    spurious_digits: Callable[[int], dict[str, dict[str, torch.Tensor]]] = _spurious_digits
    num_classes: int = 10
    null_class: int = 10
    trained: bool = True
    preset: str = "default"
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    out: Path | None = None
    extra: Mapping[str, object] = field(default_factory=dict)


#: A bench section: metrics for one seed (floats; strings shown once; "_images" for the grid).
Section = Callable[[SyntheticContext, torch.Generator], dict[str, Any]]


def make_context(
    *,
    seed: int = 0,
    preset: str = "demo",
    ddpm_steps: int = 0,
    judge_epochs: int = 1,
    sample_steps: int = 3,
    out: Path | None = None,
    extra: Mapping[str, object] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SyntheticContext:
    """Build a context the way the bench does (the bench and section tests call this).

    Args:
        seed: the run's seed.
        preset: ``"demo"`` or ``"default"``.
        ddpm_steps: training steps of the stand-in DDPM (0: untrained, plumbing only; the
            default 800 is loaded from the cache when present).
        judge_epochs: epochs of the judge CNN (seeded with 0).
        sample_steps: DDIM steps of the sampler.
        out: the output folder, or None.
        extra: the context's ``extra``.
        progress: ``progress(step, total)`` while the DDPM trains.

    Example:
        >>> ctx = make_context()  # untrained DDPM, 1-epoch judge: seconds
        >>> ctx.sampler.sample(torch.arange(3), generator=torch.Generator()).shape
        torch.Size([3, 1, 8, 8])
    """
    from posneg.bench._ddpm import DDPMConfig, make_scheduler, pretrained_ddpm
    from posneg.bench._judge import digit_split, train_judge

    tx, ty, vx, vy = digit_split()
    judge = train_judge(tx, ty, epochs=judge_epochs)
    for p in judge.parameters():
        p.requires_grad_(False)
    ddpm, _ = pretrained_ddpm(
        tx, ty, DDPMConfig(steps=ddpm_steps), cache=ddpm_steps > 0, progress=progress
    )
    for p in ddpm.parameters():
        p.requires_grad_(False)
    scheduler = make_scheduler(DDPMConfig().num_train_timesteps)
    return SyntheticContext(
        train_x=tx,
        train_y=ty,
        test_x=vx,
        test_y=vy,
        sampler=DigitSampler(ddpm, scheduler, steps=sample_steps),
        judge=judge,
        ddpm=ddpm,
        scheduler=scheduler,
        trained=ddpm_steps > 0,
        preset=preset,
        seed=seed,
        out=out,
        extra=dict(extra or {}),
    )
