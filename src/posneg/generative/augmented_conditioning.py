"""Augmented conditioning: augment a generator's *conditioning* within a class, not its output.

Chen, Zhang, Romero-Soriano, "Augmented Conditioning Is Enough For Effective Training Image
Generation", arXiv 2502.04475 (2025). No official code was found; the operations follow the
paper's description (abstract and method section as summarised on the card) and are marked
**[paper, unverified]** where the paper leaves a detail open.

To make a synthetic training image of class ``c``, take two real images ``x1, x2`` of class
``c`` and augment the conditioning the generator sees (an image, or its embedding such as a CLIP
image embedding for Stable unCLIP):

- **mixup**: ``lam * x1 + (1 - lam) * x2``, ``lam ~ Beta(alpha, alpha)`` (pixels or embeddings);
- **cutmix**: a box of ``x2`` pasted into ``x1``, box side ratio ``sqrt(1 - lam)``, centre
  uniform, clipped (images only; the realised area share is ``params.cut_lam``);
- **dropout**: ``x1 * keep / (1 - p)`` with ``keep ~ Bernoulli(1 - p)`` per element (torch's
  inverted dropout; whether the paper rescales is unverified; ``rescale=False`` turns it off).

The partner ``x2`` is always of the same class (mixing across classes would change the label:
that is a different method). The generated image keeps the clean label ``c``. Each sample gets
one mode, uniform over the enabled ``modes``. Randomness sits in
:func:`sample_augmented_conditioning_params`; :func:`apply_augmented_conditioning` is
deterministic, so the same params replay the same conditioning (and apply to a mask alongside).

The generator is not part of this module: any conditional generator (a diffusers unCLIP
pipeline's ``image_embeds``, the bench's small DDPM conditioned on a PCA embedding) consumes
the output.

Example:
    >>> import torch
    >>> from posneg.generative.augmented_conditioning import AugmentedConditioning
    >>> emb = torch.randn(6, 16)
    >>> labels = torch.tensor([0, 0, 0, 1, 1, 2])
    >>> aug = AugmentedConditioning(modes=("mixup", "dropout"), p_drop=0.1)
    >>> out = aug(emb, labels, generator=torch.Generator().manual_seed(0))
    >>> out.shape
    torch.Size([6, 16])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from posneg import _checks, _rng

__all__ = [
    "CITATION",
    "MODES",
    "AugCondParams",
    "AugmentedConditioning",
    "apply_augmented_conditioning",
    "same_class_partners",
    "sample_augmented_conditioning_params",
]

CITATION = """@article{chen2025augmented,
  title   = {Augmented Conditioning Is Enough For Effective Training Image Generation},
  author  = {Chen, Jiahui and Zhang, Amy and Romero-Soriano, Adriana},
  journal = {arXiv preprint arXiv:2502.04475},
  year    = {2025}
}"""

#: The conditioning augmentations, in the order of :attr:`AugCondParams.mode` codes 0, 1, 2.
MODES = ("mixup", "cutmix", "dropout")


@dataclass(frozen=True)
class AugCondParams:
    """One draw of augmented conditioning's randomness for a batch of B conditionings.

    Attributes:
        partner: (B,) int64, the same-class sample each conditioning is mixed with (itself
            when its class has a single member).
        mode: (B,) int64, index into :data:`MODES` (0 mixup, 1 cutmix, 2 dropout).
        lam: (B,) float32, mixup's weight of the sample itself, ``Beta(alpha, alpha)``.
        boxes: (B, 4) int64 ``(y0, x0, y1, x1)`` half-open cutmix boxes over the last two
            dims, or None when the conditioning has no spatial dims.
        keep: bool mask of the conditioning's shape for dropout.
        p_drop: the dropout probability the mask was drawn with.
        rescale: whether kept entries are divided by ``1 - p_drop``.
    """

    partner: torch.Tensor
    mode: torch.Tensor
    lam: torch.Tensor
    boxes: torch.Tensor | None
    keep: torch.Tensor
    p_drop: float
    rescale: bool

    @property
    def cut_lam(self) -> torch.Tensor:
        """(B,) the share of each conditioning that stays its own under cutmix."""
        if self.boxes is None:
            raise ValueError("AugCondParams.cut_lam: no boxes (the conditioning is not spatial)")
        h, w = self.keep.shape[-2], self.keep.shape[-1]
        area = (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])
        return 1.0 - area.float() / float(h * w)


def _check_labels(fn: str, labels: object) -> torch.Tensor:
    labels = _checks.check_tensor(fn, "labels", labels)
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(
            f"{fn}: labels must be a (B,) integer tensor; got {labels.dtype} {tuple(labels.shape)}"
        )
    if labels.numel() == 0:
        raise ValueError(f"{fn}: labels must not be empty")
    return labels


def same_class_partners(
    labels: torch.Tensor, *, exclude_self: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A uniform same-class partner for every sample, vectorised (one uniform draw per sample).

    Sample ``i`` of class ``c`` (``n_c`` members) gets member ``floor(u_i * m)`` of its class in
    index order, with ``m = n_c - 1`` skipping itself (``exclude_self``) or ``m = n_c``; a class
    of one gets itself.

    Returns:
        (B,) int64 with ``labels[partner] == labels``.
    """
    fn = "same_class_partners"
    labels = _check_labels(fn, labels)
    _checks.check_generator(fn, generator, labels.device)
    b = labels.shape[0]
    u = torch.rand(b, generator=generator, device=labels.device, dtype=torch.float64)
    order = torch.sort(labels, stable=True).indices
    sorted_labels = labels[order]
    _, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    group = torch.repeat_interleave(torch.arange(len(counts), device=labels.device), counts)
    rank_sorted = torch.arange(b, device=labels.device) - starts[group]
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted  # each sample's position within its class
    start = torch.empty_like(rank_sorted)
    start[order] = starts[group]
    n = torch.empty_like(rank_sorted)
    n[order] = counts[group]
    m = (n - 1).clamp(min=1) if exclude_self else n
    pick = torch.floor(u * m.double()).long().clamp(max=m - 1)
    if exclude_self:
        pick = torch.where((pick >= rank) & (n > 1), pick + 1, pick)
        pick = torch.where(n == 1, rank, pick)
    return order[start + pick]


def sample_augmented_conditioning_params(
    labels: torch.Tensor,
    shape: Sequence[int],
    *,
    modes: Sequence[str] = ("mixup", "dropout"),
    alpha: float = 1.0,
    p_drop: float = 0.1,
    rescale: bool = True,
    exclude_self: bool = True,
    generator: torch.Generator | None = None,
) -> AugCondParams:
    """Draw augmented conditioning's randomness (functional form of :class:`AugmentedConditioning`).

    Draw order (fixed whatever ``modes``): partner uniforms, mode, mixup lambda, cutmix lambda,
    box centre rows, box centre columns, dropout uniforms.

    Args:
        labels: (B,) integer class of each conditioning.
        shape: the conditioning's shape ``(B, ...)``; cutmix needs at least 3 dims (the last
            two are the box's rows and columns).
        modes: non-empty subset of :data:`MODES`; each sample gets one, uniformly.
        alpha: Beta concentration of mixup's and cutmix's lambda, > 0 **[paper, unverified]**.
        p_drop: dropout probability in ``[0, 1]``.
        rescale: divide kept entries by ``1 - p_drop`` (torch's dropout).
        exclude_self: partners are other members of the class where it has any.
        generator: drawn from (None: torch's global RNG); its device is the labels' device.

    Returns:
        :class:`AugCondParams`.
    """
    fn = "sample_augmented_conditioning_params"
    labels = _check_labels(fn, labels)
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or shape[0] != labels.shape[0]:
        raise ValueError(
            f"{fn}: shape must be (B, ...) with B = {labels.shape[0]} labels; got {shape}"
        )
    chosen = _check_modes(fn, modes, ndim=len(shape))
    a = _checks.check_positive(fn, "alpha", alpha)
    p = _checks.check_range(fn, "p_drop", p_drop, low=0.0, high=1.0)
    rescale = _checks.check_bool(fn, "rescale", rescale)
    _checks.check_generator(fn, generator, labels.device)
    dev = labels.device
    b = shape[0]
    partner = same_class_partners(labels, exclude_self=exclude_self, generator=generator)
    which = torch.randint(len(chosen), (b,), device=dev, generator=generator)
    mode = torch.tensor([MODES.index(m) for m in chosen], device=dev)[which]
    lam = _rng.beta(a, a, (b,), device=dev, generator=generator)
    lam_cut = _rng.beta(a, a, (b,), device=dev, generator=generator)
    boxes = None
    if len(shape) >= 3:
        h, w = shape[-2], shape[-1]
        cy = torch.randint(h, (b,), device=dev, generator=generator)
        cx = torch.randint(w, (b,), device=dev, generator=generator)
        ratio = torch.sqrt(1.0 - lam_cut.double())
        cut_h, cut_w = torch.floor(h * ratio).long(), torch.floor(w * ratio).long()
        y0, x0 = cy - cut_h // 2, cx - cut_w // 2
        boxes = torch.stack(
            [y0.clamp(0, h), x0.clamp(0, w), (y0 + cut_h).clamp(0, h), (x0 + cut_w).clamp(0, w)],
            dim=1,
        )
    keep = torch.rand(shape, device=dev, generator=generator) >= p
    return AugCondParams(partner, mode, lam.float(), boxes, keep, p, rescale)


def _check_modes(fn: str, modes: object, *, ndim: int) -> tuple[str, ...]:
    if isinstance(modes, str) or not isinstance(modes, Sequence) or not modes:
        raise TypeError(f"{fn}: modes must be a non-empty sequence of {MODES}; got {modes!r}")
    for m in modes:
        _checks.check_choice(fn, "modes", m, MODES)
    if "cutmix" in modes and ndim < 3:
        raise ValueError(
            f"{fn}: modes contains 'cutmix', which needs a spatial conditioning (B, ..., H, W); "
            f"got {ndim} dims"
        )
    return tuple(str(m) for m in modes)


def apply_augmented_conditioning(cond: torch.Tensor, params: AugCondParams) -> torch.Tensor:
    """Deterministic kernel of :class:`AugmentedConditioning` (replays ``params``).

    Row ``i``, partner ``j = params.partner[i]``: mixup ``lam_i cond_i + (1 - lam_i) cond_j``;
    cutmix ``cond_i`` with ``params.boxes[i]`` taken from ``cond_j``; dropout
    ``cond_i * keep_i / (1 - p)`` (``p = 1``: zeros; ``rescale=False``: no division).

    Args:
        cond: (B, ...) floating conditioning (images or embeddings).
        params: from :func:`sample_augmented_conditioning_params` for this shape.

    Returns:
        Tensor of ``cond``'s shape and dtype.
    """
    fn = "apply_augmented_conditioning"
    _checks.check_float(fn, "cond", cond)
    if not isinstance(params, AugCondParams):
        raise TypeError(f"{fn}: params must be AugCondParams; got {type(params).__name__}")
    if tuple(params.keep.shape) != tuple(cond.shape):
        raise ValueError(
            f"{fn}: params were drawn for shape {tuple(params.keep.shape)}; "
            f"cond has {tuple(cond.shape)}"
        )
    _checks.check_same_device(fn, "params.partner", params.partner, "cond", cond)
    view = (-1,) + (1,) * (cond.dim() - 1)
    other = cond[params.partner]
    lam = params.lam.to(cond.dtype).view(view)
    mixed = lam * cond + (1 - lam) * other
    out = torch.where((params.mode == 0).view(view), mixed, cond)
    if params.boxes is not None and bool((params.mode == 1).any()):
        h, w = cond.shape[-2], cond.shape[-1]
        rows = torch.arange(h, device=cond.device).view(1, h, 1)
        cols = torch.arange(w, device=cond.device).view(1, 1, w)
        y0, x0, y1, x1 = (params.boxes[:, i].view(-1, 1, 1) for i in range(4))
        inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)  # (B, H, W)
        inside = inside.view((cond.shape[0],) + (1,) * (cond.dim() - 3) + (h, w))
        paste = inside & (params.mode == 1).view(view)
        out = torch.where(paste, other, out)
    if params.p_drop >= 1.0:
        dropped = torch.zeros_like(cond)
    else:
        scale = 1.0 / (1.0 - params.p_drop) if params.rescale else 1.0
        dropped = cond * params.keep.to(cond.dtype) * scale
    return torch.where((params.mode == 2).view(view), dropped, out)


class AugmentedConditioning(nn.Module):
    """Same-class mixup / cutmix / dropout of a generator's conditioning (Chen et al., 2025).

    Functional form: :func:`sample_augmented_conditioning_params` +
    :func:`apply_augmented_conditioning`. Stateless: stores the validated hyperparameters.

    Args:
        modes: subset of ``("mixup", "cutmix", "dropout")``; cutmix needs a spatial
            conditioning. Default: the embedding-level pair.
        alpha: Beta concentration of lambda, > 0.
        p_drop: dropout probability in ``[0, 1]``.
        rescale: torch-style inverted dropout scaling.
        exclude_self: partners are other members of the class where it has any.

    Example:
        >>> import torch
        >>> aug = AugmentedConditioning(modes=("cutmix",))
        >>> x = torch.randn(4, 1, 8, 8)
        >>> aug(x, torch.tensor([3, 3, 7, 7]), generator=torch.Generator()).shape
        torch.Size([4, 1, 8, 8])
    """

    def __init__(
        self,
        modes: Sequence[str] = ("mixup", "dropout"),
        alpha: float = 1.0,
        p_drop: float = 0.1,
        rescale: bool = True,
        exclude_self: bool = True,
    ) -> None:
        super().__init__()
        fn = "AugmentedConditioning"
        self.modes = _check_modes(fn, modes, ndim=4)
        self.alpha = _checks.check_positive(fn, "alpha", alpha)
        self.p_drop = _checks.check_range(fn, "p_drop", p_drop, low=0.0, high=1.0)
        self.rescale = _checks.check_bool(fn, "rescale", rescale)
        self.exclude_self = _checks.check_bool(fn, "exclude_self", exclude_self)

    def forward(
        self,
        cond: torch.Tensor,
        labels: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(B, ...) conditioning and (B,) labels -> augmented conditioning of the same shape."""
        _checks.check_float("AugmentedConditioning", "cond", cond)
        params = sample_augmented_conditioning_params(
            labels,
            tuple(cond.shape),
            modes=self.modes,
            alpha=self.alpha,
            p_drop=self.p_drop,
            rescale=self.rescale,
            exclude_self=self.exclude_self,
            generator=generator,
        )
        return apply_augmented_conditioning(cond, params)

    def extra_repr(self) -> str:
        return (
            f"modes={self.modes}, alpha={self.alpha}, p_drop={self.p_drop}, "
            f"rescale={self.rescale}, exclude_self={self.exclude_self}"
        )
