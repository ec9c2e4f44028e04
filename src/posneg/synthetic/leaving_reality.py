"""Leaving Reality to Imagination: train on real plus one generated image per real image.

Bansal and Grover, "Leaving Reality to Imagination: Robust Classification via Generated
Datasets", RTML workshop at ICLR 2023 (arXiv 2302.02503).

For every real training image ``(x_i, y_i)`` a generator makes one image with the same label
(``ratio`` = 1; any ``ratio >= 0`` here), conditioned on a text prompt, the real image, or
both; the classifier trains on real ∪ generated. The prompt is one of the 80 CLIP ImageNet
templates drawn uniformly per image with the class name (``--diversity``), else
``"a photo of a {class}"``. Robustness is reported as **effective robustness** against a line
fitted over models trained on real data only:

    ER = acc_shift - f^-1(a f(acc_id) + b),   (a, b) = least squares of f(ref_shift) on f(ref_id)

with ``f`` = logit (the paper's axis scaling is unverified: ``scale`` is a parameter). The
calculation is :func:`posneg.ood.counteranimal.effective_robustness` (CounterAnimal uses the
same fit), reused here under the names of this paper.

Transcribed from the official code, ``Hritikbansal/generative-robustness``:
``generation/data.py`` (``PromptDataset.__getitem__``: ``random.randint(0, len(templates) - 1)``
per item when ``diversity`` is set) and ``generation/generate_images_captions.py`` (one
generated image per real image, same label), commit ``3a61ca8f9813deb540949787394d5233e5825c01``;
``train/write_imagenet.py`` concatenates real and generated sets. The templates live in a
``classes.py`` beside the data that the repository does not ship; the list here is the
80-template set of CLIP's ImageNet prompt-engineering notebook (Radford et al., 2021), which
the card names. For ``ratio`` not an integer, the remainder is a random subset of the real
images (the paper studies the amount separately; the code only has 1:1).

The generator is any callable ``generate(images=..., labels=..., prompts=..., generator=...)
-> images`` (a diffusers text-to-image, image-variation or img2img pipeline wrapped by the
user; a class-conditional model ignores ``prompts``).

Example:
    >>> import torch
    >>> aug = LeavingRealityAugmentation(class_names=("zero", "one"))
    >>> def generate(*, images, labels, prompts, generator):
    ...     return torch.zeros_like(images)
    >>> x, y = torch.ones(3, 2), torch.tensor([0, 1, 1])
    >>> out = aug(x, y, generate=generate, generator=torch.Generator().manual_seed(0))
    >>> out.images.shape, out.labels.tolist(), out.generated.tolist()
    (torch.Size([6, 2]), [0, 1, 1, 0, 1, 1], [False, False, False, True, True, True])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from posneg import _checks
from posneg.ood.counteranimal import effective_robustness as _effective_robustness
from posneg.ood.counteranimal import fit_reference_line

__all__ = [
    "CLIP_TEMPLATES",
    "GeneratedDataset",
    "LeavingRealityAugmentation",
    "effective_robustness",
    "fit_reference_line",
    "generation_plan",
    "sample_prompts",
]

CITATION = """
@article{bansal2023leaving,
  title   = {Leaving Reality to Imagination: Robust Classification via Generated Datasets},
  author  = {Bansal, Hritik and Grover, Aditya},
  journal = {arXiv preprint arXiv:2302.02503},
  year    = {2023}
}
"""

#: The 80 CLIP ImageNet prompt templates, in the notebook's order.
CLIP_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.",
    "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.",
    "a dark photo of the {}.", "a drawing of a {}.", "a photo of my {}.", "the plastic {}.",
    "a photo of the cool {}.", "a close-up photo of a {}.", "a black and white photo of the {}.",
    "a painting of the {}.", "a painting of a {}.", "a pixelated photo of the {}.",
    "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.",
    "a rendering of the {}.", "a {} in a video game.", "a photo of one {}.",
    "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.",
    "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.",
    "a photo of a nice {}.", "a photo of a weird {}.", "a blurry photo of a {}.",
    "a cartoon {}.", "art of a {}.", "a sketch of the {}.", "a embroidered {}.",
    "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.",
    "a photo of the small {}.", "a photo of the weird {}.", "the cartoon {}.", "art of the {}.",
    "a drawing of the {}.", "a photo of the large {}.", "a black and white photo of a {}.",
    "the plushie {}.", "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.",
    "a toy {}.", "itap of my {}.", "a photo of a cool {}.", "a photo of a small {}.",
    "a tattoo of the {}.",
)  # fmt: skip

#: The prompt without ``diversity``.
PLAIN_TEMPLATE = "a photo of a {}"


def sample_prompts(
    labels: torch.Tensor,
    class_names: Sequence[str],
    *,
    templates: Sequence[str] = CLIP_TEMPLATES,
    diversity: bool = True,
    generator: torch.Generator | None = None,
) -> list[str]:
    """One prompt per label: a uniformly drawn template filled with the class name.

    Args:
        labels: ``(N,)`` int class ids indexing ``class_names``.
        class_names: the class names.
        templates: format strings with one ``{}`` (default the 80 CLIP templates).
        diversity: draw a template per sample; ``False``: ``"a photo of a {class}"`` for all
            (no draws).
        generator: draws the template indices (on CPU).
    """
    fn = "sample_prompts"
    _checks.check_tensor(fn, "labels", labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dim() != 1:
        raise TypeError(f"{fn}: labels must be a 1-D integer tensor; got {labels.dtype}")
    names = list(class_names)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(names)):
        raise ValueError(f"{fn}: labels must index class_names (0..{len(names) - 1})")
    _checks.check_bool(fn, "diversity", diversity)
    _checks.check_generator(fn, generator, torch.device("cpu"))
    lab = labels.cpu().tolist()
    if not diversity:
        return [PLAIN_TEMPLATE.format(names[i]) for i in lab]
    tpl = list(templates)
    if not tpl or any(t.count("{}") != 1 for t in tpl):
        raise ValueError(f"{fn}: templates must be non-empty format strings with one '{{}}'")
    pick = torch.randint(len(tpl), (len(lab),), generator=generator).tolist()
    return [tpl[j].format(names[i]) for i, j in zip(lab, pick, strict=True)]


def generation_plan(
    n: int, *, ratio: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Indices of the real images each generated image is made from: ``floor(ratio * n)`` of them.

    ``ratio = 1``: ``arange(n)`` (one-to-one, no draws). Otherwise ``floor(ratio)`` full passes
    and a random subset (without replacement) for the remainder, sorted.
    """
    fn = "generation_plan"
    n = _checks.check_int(fn, "n", n, min_value=0)
    ratio = _checks.check_nonnegative(fn, "ratio", ratio)
    _checks.check_generator(fn, generator, torch.device("cpu"))
    full, total = int(ratio), int(ratio * n)
    idx = torch.arange(n).repeat(full)
    rest = total - full * n
    if rest > 0:
        extra = torch.randperm(n, generator=generator)[:rest].sort().values
        idx = torch.cat([idx, extra])
    return idx


class Generate(Protocol):
    """``generate(images=(M, ...), labels=(M,), prompts=[M str], generator=g) -> (M, ...)``."""

    def __call__(
        self,
        *,
        images: torch.Tensor,
        labels: torch.Tensor,
        prompts: list[str],
        generator: torch.Generator | None,
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class GeneratedDataset:
    """Real ∪ generated: ``images`` ``(N + M, ...)``, ``labels``, ``generated`` (bool mask),
    ``source`` (the real index each row comes from) and the ``prompts`` of the generated rows."""

    images: torch.Tensor
    labels: torch.Tensor
    generated: torch.Tensor
    source: torch.Tensor
    prompts: list[str]


class LeavingRealityAugmentation(nn.Module):
    """Builds real ∪ generated (``ratio`` generated images per real one, same labels).

    Args:
        ratio: generated images per real image (the paper: 1).
        class_names: names filled into the prompt templates (default ``"0"``, ``"1"``, ...).
        diversity: one of the 80 CLIP templates per image (``--diversity``), else
            ``"a photo of a {class}"``.
        templates: the template list (default :data:`CLIP_TEMPLATES`).

    Randomness: the remainder subset of a fractional ``ratio`` and the template choices come
    from ``generator`` (CPU); the generated images from the caller's ``generate`` (which is
    passed the same generator). See the module docstring for the example.
    """

    def __init__(
        self,
        *,
        ratio: float = 1.0,
        class_names: Sequence[str] | None = None,
        diversity: bool = True,
        templates: Sequence[str] = CLIP_TEMPLATES,
    ) -> None:
        super().__init__()
        fn = "LeavingRealityAugmentation"
        self.ratio = _checks.check_nonnegative(fn, "ratio", ratio)
        if class_names is not None and (
            isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names)
        ):
            raise TypeError(f"{fn}: class_names must be a sequence of str or None")
        self.class_names = None if class_names is None else tuple(class_names)
        self.diversity = _checks.check_bool(fn, "diversity", diversity)
        self.templates = tuple(templates)
        if not self.templates or any(t.count("{}") != 1 for t in self.templates):
            raise ValueError(f"{fn}: templates must be non-empty format strings with one '{{}}'")

    def forward(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        generate: Generate,
        generator: torch.Generator | None = None,
    ) -> GeneratedDataset:
        """Generate for :func:`generation_plan` and concatenate after the real images.

        Args:
            images: ``(N, ...)`` real images (floating).
            labels: ``(N,)`` int labels.
            generate: the generator callable (see :class:`Generate`).
            generator: a CPU ``torch.Generator`` for the plan, the prompts and ``generate``.
        """
        fn = "LeavingRealityAugmentation"
        _checks.check_float(fn, "images", images)
        _checks.check_labels(fn, "labels", labels, images.shape[0], images.device)
        if not callable(generate):
            raise TypeError(f"{fn}: generate must be callable; got {type(generate).__name__}")
        src = generation_plan(images.shape[0], ratio=self.ratio, generator=generator)
        src = src.to(images.device)
        lab = labels[src]
        n_cls = int(labels.max()) + 1 if labels.numel() else 0
        names = self.class_names or tuple(str(i) for i in range(n_cls))
        prompts = sample_prompts(
            lab, names, templates=self.templates, diversity=self.diversity, generator=generator
        )
        fake = generate(images=images[src], labels=lab, prompts=prompts, generator=generator)
        if not isinstance(fake, torch.Tensor) or fake.shape != images[src].shape:
            raise ValueError(
                f"{fn}: generate must return a tensor of shape {tuple(images[src].shape)}; got "
                f"{tuple(fake.shape) if isinstance(fake, torch.Tensor) else type(fake).__name__}"
            )
        n, m = images.shape[0], src.shape[0]
        mask = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(m, dtype=torch.bool)])
        return GeneratedDataset(
            images=torch.cat([images, fake.to(images.dtype)]),
            labels=torch.cat([labels, lab]),
            generated=mask.to(images.device),
            source=torch.cat([torch.arange(n, device=images.device), src]),
            prompts=prompts,
        )

    def extra_repr(self) -> str:
        return (
            f"ratio={self.ratio}, class_names={self.class_names}, "
            f"diversity={self.diversity}, templates={len(self.templates)}"
        )


def effective_robustness(
    *, acc_id: Any, acc_shift: Any, ref_id: Any, ref_shift: Any, scale: str = "logit"
) -> torch.Tensor:
    """``ER = acc_shift - f^-1(a f(acc_id) + b)``, the line fitted over real-only ``ref_*`` models.

    The computation of :func:`posneg.ood.counteranimal.effective_robustness` (ID accuracy in
    the role of its ``common`` group, shifted accuracy in that of ``counter``).

    Args:
        acc_id: in-distribution accuracies of the evaluated models (scalar or ``(K,)``).
        acc_shift: their accuracies under the shift.
        ref_id: ID accuracies of the reference models (``M >= 2``, trained on real data only).
        ref_shift: their accuracies under the shift.
        scale: ``"logit"`` (default), ``"probit"`` or ``"linear"``.

    Returns:
        ``(K,)`` float64; 0 on the line, > 0 above it.

    Example:
        >>> float(effective_robustness(acc_id=0.8, acc_shift=0.6, ref_id=[0.7, 0.9],
        ...                            ref_shift=[0.5, 0.7], scale="linear")[0])
        0.0
    """
    return _effective_robustness(
        acc_common=acc_id, acc_counter=acc_shift, ref_common=ref_id, ref_counter=ref_shift,
        scale=scale,
    )  # fmt: skip
