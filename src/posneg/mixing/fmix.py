"""FMix: mix with binary masks obtained by thresholding low-frequency Fourier images.

Harris, Marcu, Painter, Niranjan, Prügel-Bennett, Hare. FMix: Enhancing Mixed Sample Data
Augmentation. arXiv 2002.12047, 2020.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import overload

import torch
from torch import nn

from posneg import _checks, _rng
from posneg.mixing import _common, _targets
from posneg.mixing._common import MixedBatch, MixedSegBatch

CITATION = """
@article{harris2020fmix,
  title   = {FMix: Enhancing Mixed Sample Data Augmentation},
  author  = {Harris, Ethan and Marcu, Antonia and Painter, Matthew and Niranjan, Mahesan and
             Pr{\\"u}gel-Bennett, Adam and Hare, Jonathon},
  journal = {arXiv preprint arXiv:2002.12047},
  year    = {2020}
}
"""

#: Most buckets of the per-mask histogram used to find the top-n threshold without a full sort
#: (about 16 pixels per bucket below that, so the bucket holding the threshold stays small).
_BINS = 4096


@dataclass(frozen=True)
class FMixParams:
    """One draw of FMix's randomness.

    Attributes:
        index: (B,) int64, the partner of each sample.
        masks: (B, *spatial): bool for hard masks (True: the pixel keeps ``x_i``), float32 in
            [0, 1] for soft-edged masks (the weight of ``x_i``). A mask drawn per batch is one
            mask expanded over B (a stride-0 view).

    ``lam`` (property): (B,) float32, the mask means, i.e. the realised share of ``x_i``; the
    targets use it. It is within ``1 / N`` (N = number of pixels) of the sampled lambda.
    """

    index: torch.Tensor
    masks: torch.Tensor

    @property
    def lam(self) -> torch.Tensor:
        m = self.masks.reshape(self.masks.shape[0], -1)
        if m.dtype == torch.bool:  # exact integer counts; summing bytes is 2x faster than bool
            total = m.view(torch.uint8).sum(1, dtype=torch.int32).to(torch.float64)
        else:
            total = m.sum(1, dtype=torch.float64)
        return (total / max(m.shape[1], 1)).to(torch.float32)


def _freqs(size: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """|f| on the rfft grid of ``size``: full fftfreq on leading axes, rfftfreq on the last."""
    axes = [torch.fft.fftfreq(n, device=device, dtype=torch.float64) for n in size[:-1]]
    axes.append(torch.fft.rfftfreq(size[-1], device=device, dtype=torch.float64))
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(grids).pow(2).sum(0).sqrt()


#: Largest ``log2`` of the spectrum scale computed as ``1 / max(f, f_min)^delta`` (the card's
#: form); above it the scale is divided by its maximum ``max(size)^delta`` (see
#: :func:`_spectrum_scale`). 2^64 times a Gaussian draw summed over a few million pixels stays far
#: inside float32's range (about 2^128).
_SCALE_LOG2_MAX = 64.0


def _spectrum_scale(f: torch.Tensor, size: tuple[int, ...], decay_power: float) -> torch.Tensor:
    """The float32 spectrum scale ``1 / max(f, 1 / max(size))^decay_power``, up to a constant.

    The card's scale peaks at ``max(size)^decay_power``, which passes float32's maximum (about
    3.4e38) at ``decay_power = 17`` for 224 x 224 and float64's at about 131: the grey images
    became NaN. Up to ``2^64`` (:data:`_SCALE_LOG2_MAX`) the scale is the card's expression
    as written (so masks drawn at the usual decay powers are unchanged bit for bit); above it,
    it is computed divided by its peak, ``(f_min / max(f, f_min))^decay_power`` in float64,
    which lies in [0, 1] for any decay power (high frequencies underflow to 0, far below
    float32 rounding of the low ones). A positive constant factor on the whole spectrum scales
    the grey image by the same constant: the min-max normalised image and the top-n selection
    are the same up to rounding.
    """
    f_min = 1.0 / max(size)
    if decay_power * math.log2(max(size)) <= _SCALE_LOG2_MAX:
        return (1.0 / torch.clamp(f, min=f_min) ** decay_power).to(torch.float32)
    return (f_min / torch.clamp(f, min=f_min)).pow(decay_power).to(torch.float32)


#: Spectrum values (float32 pairs) drawn and transformed per block of masks on the CPU (2 Mi:
#: 8 MB, e.g. 41 masks of 224 x 224). Blocks stay in cache and reuse one buffer, which took the
#: B = 256, 224 x 224 mask build from about 0.66 s to 0.28 s on 2 cores; on CUDA all masks are
#: one block (one batched FFT).
_CPU_BLOCK_VALUES = 1 << 21


def low_frequency_images(
    n: int,
    size: tuple[int, ...],
    *,
    decay_power: float = 3.0,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` grey images of ``size`` with a ``1 / f^decay_power`` spectrum, in batched FFTs.

    The FMix card, step by step: ``f = sqrt(fx^2 + fy^2 (+ fz^2))`` on the real-FFT grid (the
    last axis has ``size[-1] // 2 + 1`` bins); a complex Gaussian spectrum ``a + i b``,
    ``a, b ~ N(0, 1)``, scaled by ``1 / max(f, 1 / max(size))^decay_power``; an inverse real FFT
    to ``size``; min-max normalised to [0, 1] per image.

    The scale is computed stably (:func:`_spectrum_scale`): any finite ``decay_power > 0``
    gives finite images (the card's expression overflows float32 at ``decay_power = 17`` on
    224 x 224).

    Deliberate difference from the official code (ecs-vlc/FMix ``fmix.py``, commit e5991dc,
    ``make_low_freq_image``): it draws a parameter array of shape ``(1, *freqs, 2)`` and builds
    its complex spectrum as ``spectrum[:, 0] + 1j * spectrum[:, 1]``, which indexes the *first
    frequency axis*, not the trailing pair: the real parts are the first row of the scaled draws
    (``fy = 0``), the imaginary parts the second row (``fy = 1/h``), and the trailing pair becomes
    the last spatial axis of ``irfftn``. Its images therefore hold only frequencies 0 and 1
    along the last axis (a 1-D mask is one sinusoid of period L), and its 3-D frequency grid is
    ordered (h, z, w). This follows the paper and the card (a complex Gaussian on the full
    grid), so masks are isotropic; ``tests/mixing/test_fmix.py`` transcribes the official
    function and tests both.

    Returns:
        (n, *size) float32 on ``device``, values in [0, 1].
    """
    dev = _common.resolve_device(device)
    out = torch.empty((n, math.prod(size)), device=dev, dtype=torch.float32)
    for start, grey in _raw_blocks(n, size, decay_power, dev, generator):
        lo = grey.amin(1, keepdim=True)
        span = (grey.amax(1, keepdim=True) - lo).clamp_min(torch.finfo(grey.dtype).tiny)
        torch.div(grey - lo, span, out=out[start : start + grey.shape[0]])
    return out.view(n, *size)


def _raw_blocks(
    n: int,
    size: tuple[int, ...],
    decay_power: float,
    device: torch.device,
    generator: torch.Generator | None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """The un-normalised grey images behind :func:`low_frequency_images`, as ``(start, block)``
    pairs with block (rows, N) float32 for images ``start:start + rows``.

    The spectra are drawn block after block from ``generator`` into one reused buffer (on the CPU
    a block holds about ``_CPU_BLOCK_VALUES`` values; on other devices all ``n`` images are one
    block), scaled in place, and inverted with one batched inverse FFT per block (a complex FFT
    over the leading axes, then a real one over the last). A block's tensor is valid until the
    next block is produced.
    """
    f = _freqs(size, device)
    scale = _spectrum_scale(f, size, decay_power)
    per_image = 2 * f.numel()
    rows = max(1, n if device.type != "cpu" else min(n, _CPU_BLOCK_VALUES // per_image))
    buf = torch.empty((rows, *f.shape, 2), device=device, dtype=torch.float32)
    lead = tuple(range(1, len(size)))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        spectrum = torch.view_as_complex(buf[: stop - start].normal_(generator=generator))
        spectrum.mul_(scale)
        if lead:
            spectrum = torch.fft.ifftn(spectrum, dim=lead)
        grey = torch.fft.irfft(spectrum, n=size[-1], dim=-1)
        yield start, grey.reshape(stop - start, -1)


def _raw_images(
    n: int,
    size: tuple[int, ...],
    decay_power: float,
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """All un-normalised grey images (n, N) at once (the same draws as :func:`_raw_blocks`)."""
    out = torch.empty((n, math.prod(size)), device=device, dtype=torch.float32)
    for start, grey in _raw_blocks(n, size, decay_power, device, generator):
        out[start : start + grey.shape[0]] = grey
    return out


def _top_n(grey: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """(n, N) bool with exactly ``count[r]`` True entries per row, at the row's largest values.

    Exact selection without a full sort: a per-row histogram over [min, max] finds the bucket
    that holds the threshold; entries above it are taken, and the missing ones are the largest
    entries inside that bucket (a ``topk`` over that bucket only). Ties are broken by topk.
    """
    n, npix = grey.shape
    bins = max(1, min(_BINS, npix // 16))
    lo = grey.amin(1, keepdim=True)
    span = grey.amax(1, keepdim=True) - lo
    # bucket ids in [0, bins): (grey - lo) * step is monotone in grey, >= 0, and below bins
    # (the factor leaves a margin for rounding); truncation toward zero floors it. A constant
    # row (span 0) is one bucket.
    step = torch.where(span > 0, (bins * (1.0 - 2.0**-20)) / span, torch.zeros_like(span))
    q = (grey - lo).mul_(step).to(torch.int32)
    # row r's buckets are numbered r * bins ... r * bins + bins - 1 from here on
    offsets = torch.arange(n, device=grey.device, dtype=torch.int32).unsqueeze(1) * bins
    q += offsets
    hist = torch.bincount(q.view(-1), minlength=n * bins).view(n, bins)
    # suffix[r, k] = number of entries of row r in buckets >= k
    suffix = hist.flip(1).cumsum(1).flip(1)
    kb = (suffix >= count.unsqueeze(1)).sum(1) - 1  # the threshold bucket (>= 0 since count <= N)
    above = torch.cat([suffix, torch.zeros_like(suffix[:, :1])], 1).gather(1, (kb + 1)[:, None])
    need = count - above.squeeze(1)
    kb32 = kb.to(torch.int32).unsqueeze(1) + offsets
    keep = q > kb32
    m = int(need.max()) if n else 0
    if m > 0:
        inside = grey.masked_fill(q != kb32, -torch.inf)
        idx = torch.topk(inside, m, dim=1).indices
        take = torch.arange(m, device=grey.device).unsqueeze(0) < need.unsqueeze(1)
        keep |= torch.zeros_like(keep).scatter_(1, idx, take)
    return keep


def _soft_ranked(grey: torch.Tensor, count: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """(n, N) float32 soft masks: rank r < count - soft -> 1, a linear ramp from 1 to 0 over
    the ``2 soft`` ranks around ``count``, 0 beyond (the official ``binarise_mask``)."""
    n, npix = grey.shape
    order = torch.argsort(grey, dim=1, descending=True)
    r = torch.arange(npix, device=grey.device, dtype=torch.float64).unsqueeze(0)
    low = (count - soft).to(torch.float64).unsqueeze(1)
    length = (2 * soft).to(torch.float64).unsqueeze(1)
    ramp = 1.0 - (r - low) / (length - 1).clamp_min(1.0)
    vals = torch.where(r < low, 1.0, torch.where(r >= low + length, 0.0, ramp))
    out = torch.empty((n, npix), device=grey.device, dtype=torch.float32)
    return out.scatter_(1, order, vals.to(torch.float32))


def fmix_masks(
    lam: torch.Tensor,
    size: tuple[int, ...],
    *,
    decay_power: float = 3.0,
    max_soft: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One FMix mask per entry of ``lam`` (n,), built with batched FFTs on lam's device.

    No loop over the masks: on CUDA all masks come from one batched FFT; on the CPU they are built
    in blocks of masks (each block one batched FFT and one batched selection), which keeps the
    working set in cache.

    Binarisation (the card): the top ``n_pix`` pixels of each grey image are 1, the rest 0, with
    ``n_pix = ceil(lam N)`` or ``floor(lam N)`` with probability 1/2 each (N pixels), so the mask
    mean is within ``1 / N`` of ``lam``. With ``max_soft > 0`` the edge is a linear ramp over
    ``2 s`` ranks around the threshold, ``s = int(N min(max_soft, lam, 1 - lam))``; the mean is
    unchanged. Hard masks use a histogram select (no sort); soft masks need a full argsort.

    Args:
        lam: (n,) float in [0, 1].
        size: spatial size, 1 to 3 entries ((L,), (H, W) or (D, H, W)).
        decay_power: delta > 0; larger gives smoother, blobbier masks (default 3).
        max_soft: in [0, 0.5]; 0 gives binary masks.
        generator: drawn from: the ceil/floor coins, then the spectra.

    Returns:
        (n, *size): bool when ``max_soft == 0``, else float32 in [0, 1].
    """
    fn = "fmix_masks"
    size = _common.check_size(fn, size, ndim=(1, 2, 3))
    delta = _checks.check_positive(fn, "decay_power", decay_power)
    soft_max = _checks.check_range(fn, "max_soft", max_soft, 0.0, 0.5)
    _checks.check_float(fn, "lam", lam)
    if lam.dim() != 1:
        raise ValueError(f"{fn}: lam must have shape (n,); got {tuple(lam.shape)}")
    n = lam.shape[0]
    npix = math.prod(size)
    coin = _rng.uniform((n,), device=lam.device, dtype=torch.float64, generator=generator)
    target = lam.to(torch.float64) * npix
    count = torch.where(coin > 0.5, torch.ceil(target), torch.floor(target)).long()
    count = count.clamp_(0, npix)
    if soft_max == 0.0:
        out = torch.empty((n, npix), device=lam.device, dtype=torch.bool)
    else:
        lam64 = lam.to(torch.float64)
        eff = torch.minimum(torch.full_like(lam64, soft_max), torch.minimum(lam64, 1 - lam64))
        soft = torch.floor(npix * eff).long()
        out = torch.empty((n, npix), device=lam.device, dtype=torch.float32)
    for start, grey in _raw_blocks(n, size, delta, lam.device, generator):
        rows = slice(start, start + grey.shape[0])
        if soft_max == 0.0:
            out[rows] = _top_n(grey, count[rows])
        else:
            out[rows] = _soft_ranked(grey, count[rows], soft[rows])
    return out.view(n, *size)


def sample_fmix_params(
    batch: int,
    size: int | tuple[int, ...],
    *,
    alpha: float = 1.0,
    decay_power: float = 3.0,
    max_soft: float = 0.0,
    per_sample: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> FMixParams:
    """Draw FMix parameters: ``lam ~ Beta(alpha, alpha)``, masks from :func:`fmix_masks`, and a
    random permutation.

    Args:
        batch: B >= 1 (B = 1: identity permutation, the sample is unchanged).
        size: spatial size of the inputs: (L,), (H, W) or (D, H, W) (an int means (L,)).
        alpha: Beta concentration, > 0 (default 1, the paper's).
        decay_power: delta > 0 (default 3, the paper's).
        max_soft: soft-edge width in [0, 0.5] (0: binary masks).
        per_sample: one lambda and mask per sample (True; all B masks come from one batched FFT)
            or one for the batch (False: the official code).
        device: where draws happen, masks are built and the params live.
        generator: drawn from (None: global RNG). Order: lambda, coins, spectra, permutation.

    Returns:
        :class:`FMixParams`.
    """
    fn = "sample_fmix_params"
    b = _common.check_batch(fn, "batch", batch)
    sz = _common.check_size(fn, size, ndim=(1, 2, 3))
    a = _common.check_alpha(fn, alpha)
    _checks.check_positive(fn, "decay_power", decay_power)
    _checks.check_range(fn, "max_soft", max_soft, 0.0, 0.5)
    _common.check_generator(fn, generator, device)
    n = b if per_sample else 1
    lam = _common.draw_lambda(a, a, n, per_sample=True, device=device, generator=generator)
    masks = fmix_masks(lam, sz, decay_power=decay_power, max_soft=max_soft, generator=generator)
    index = _common.draw_permutation(b, device=device, generator=generator)
    if not per_sample:
        masks = masks.expand(b, *sz)
    return FMixParams(index=index, masks=masks)


@overload
def apply_fmix(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: FMixParams,
    *,
    masks: None = None,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> MixedBatch: ...


@overload
def apply_fmix(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: FMixParams,
    *,
    masks: torch.Tensor,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> MixedSegBatch: ...


def apply_fmix(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: FMixParams,
    *,
    masks: torch.Tensor | None = None,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> MixedBatch | MixedSegBatch:
    """Mix with given FMix masks (deterministic; vectorised over the batch).

    With ``m_i = params.masks[i]`` (broadcast over channels) and ``j = params.index[i]``::

        x_mixed[i] = m_i * x[i] + (1 - m_i) * x[j]
        y_mixed[i] = lam[i] * y[i] + (1 - lam[i]) * y[j],   lam[i] = mean(m_i)

    The official losses weight by the *sampled* lambda; this uses the mask mean (the realised
    share, within one pixel of it), as CutMix and ResizeMix do here.

    Args:
        x: (B, C, L), (B, C, H, W) or (B, C, D, H, W), float or uint8. Hard masks copy pixels
            exactly; soft masks blend (uint8 in float32, rounded).
        targets: class ids (B,) int (needs ``num_classes``), soft or multi-hot (B, K), or None.
        params: from :func:`sample_fmix_params` for x's spatial size.
        masks: optional segmentation masks mixed with the same geometry: class maps
            (B, *spatial) int (returned as class maps; with a soft edge a pixel takes the class of
            the image whose weight is >= 0.5, ``x_i`` on ties) or soft maps (B, K, *spatial)
            float (blended with the mask weights).
        num_classes: K for class-id targets.
        label_smoothing: eps in [0, 1).

    Returns:
        :class:`MixedBatch` ``(x, targets)``, or :class:`MixedSegBatch` ``(x, targets, masks)``.

    Raises:
        TypeError / ValueError: as for the other mixing kernels; masks drawn for another size.

    Example:
        >>> import torch
        >>> from posneg.mixing import sample_fmix_params, apply_fmix
        >>> g = torch.Generator().manual_seed(0)
        >>> p = sample_fmix_params(4, (16, 16), per_sample=True, generator=g)
        >>> out = apply_fmix(torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3]), p,
        ...                  num_classes=4)
        >>> out.targets.shape
        torch.Size([4, 4])
    """
    return _apply_fmix(
        x, targets, params, masks=masks, num_classes=num_classes, label_smoothing=label_smoothing
    )


def _apply_fmix(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: FMixParams,
    *,
    masks: torch.Tensor | None,
    num_classes: int | None,
    label_smoothing: float,
) -> MixedBatch | MixedSegBatch:
    fn = "apply_fmix"
    x = _common.check_images(fn, x, ranks=(3, 4, 5), layout="(B, C, *spatial)")
    if not isinstance(params, FMixParams):
        raise TypeError(f"{fn}: params must be FMixParams; got {type(params).__name__}")
    index = _common.check_index(fn, params.index, x)
    pm = _checks.check_tensor(fn, "params.masks", params.masks)
    if tuple(pm.shape) != (x.shape[0], *x.shape[2:]):
        raise ValueError(
            f"{fn}: params.masks must have shape (B, *spatial) = "
            f"{(x.shape[0], *x.shape[2:])} matching x {tuple(x.shape)}; got {tuple(pm.shape)}"
        )
    _checks.check_same_device(fn, "params.masks", pm, "x", x)
    if pm.dtype != torch.bool and not pm.is_floating_point():
        raise TypeError(f"{fn}: params.masks must be bool or floating; got {pm.dtype}")
    k = _targets.check_num_classes(fn, num_classes)
    eps = _targets.check_label_smoothing(fn, label_smoothing)
    y = None
    if targets is not None:
        y = _targets.soft_targets(fn, targets, x, num_classes=k, label_smoothing=eps)
    seg = None if masks is None else _common.check_masks(fn, masks, x)
    hard = pm.dtype == torch.bool
    if hard:
        x_mixed = _common.where_rows(pm, x, index)
    else:
        x_mixed = _common.blend_rows(pm, x, index)
    y_mixed = None if y is None else _targets.mix_targets(y, index, params.lam.to(x.device))
    if seg is None:
        return MixedBatch(x_mixed, y_mixed)
    if hard:
        seg_mixed = _common.where_rows(pm, seg, index)
    elif seg.is_floating_point():
        seg_mixed = _common.blend_rows(pm, seg, index)
    else:
        seg_mixed = _common.where_rows(pm >= 0.5, seg, index)
    return MixedSegBatch(x_mixed, y_mixed, seg_mixed)


class FMix(nn.Module):
    """FMix as a module: draws :class:`FMixParams` and applies :func:`apply_fmix`.

    Harris et al. FMix: Enhancing Mixed Sample Data Augmentation. arXiv 2002.12047, 2020.
    ``lam ~ Beta(alpha, alpha)``; a grey image with a ``1 / f^decay_power`` Fourier spectrum is
    binarised by keeping its top ``ceil|floor(lam N)`` pixels (optionally with a soft edge);
    ``x~ = m x_i + (1 - m) x_j`` with ``j`` a random permutation; targets are mixed by the
    mask mean. The official code draws one mask per batch (``per_sample=False``); with
    ``per_sample=True`` every sample gets its own lambda and mask, all built in one batched FFT
    on x's device. The "reformulate" variant of the official code (``lam ~ Beta(alpha+1,
    alpha)`` with unmixed targets) is not provided.

    Args:
        alpha: Beta concentration, > 0 (default 1).
        decay_power: delta > 0 (default 3).
        max_soft: soft-edge width in [0, 0.5] (default 0: binary masks).
        per_sample: one mask per sample (True) or per batch (False: official).
        num_classes: K when targets are class ids.
        label_smoothing: eps in [0, 1).

    Shapes:
        ``forward(x, targets, *, masks=None, generator=None)``: x (B, C, L), (B, C, H, W) or
        (B, C, D, H, W) float or uint8; targets (B,) ids, (B, K) soft, or None; masks
        (B, *spatial) ids or (B, K, *spatial) soft. Returns :class:`MixedBatch` or, with masks,
        :class:`MixedSegBatch` (masks in their input format).

    Randomness: draws on x's device from ``generator`` (None: global RNG); CPU and CUDA give
    different streams (the same params give the same result on both).

    Example:
        >>> import torch
        >>> from posneg.mixing import FMix
        >>> fmix = FMix(num_classes=10, per_sample=True)
        >>> out = fmix(torch.rand(6, 1, 64), torch.randint(0, 10, (6,)),
        ...            generator=torch.Generator().manual_seed(0))
        >>> out.x.shape
        torch.Size([6, 1, 64])
    """

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        decay_power: float = 3.0,
        max_soft: float = 0.0,
        per_sample: bool = False,
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        fn = "FMix"
        self.alpha = _common.check_alpha(fn, alpha)
        self.decay_power = _checks.check_positive(fn, "decay_power", decay_power)
        self.max_soft = _checks.check_range(fn, "max_soft", max_soft, 0.0, 0.5)
        self.per_sample = bool(per_sample)
        self.num_classes = _targets.check_num_classes(fn, num_classes)
        self.label_smoothing = _targets.check_label_smoothing(fn, label_smoothing)

    @overload
    def forward(
        self,
        x: torch.Tensor,
        targets: torch.Tensor | None,
        *,
        masks: None = None,
        generator: torch.Generator | None = None,
    ) -> MixedBatch: ...

    @overload
    def forward(
        self,
        x: torch.Tensor,
        targets: torch.Tensor | None,
        *,
        masks: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> MixedSegBatch: ...

    def forward(
        self,
        x: torch.Tensor,
        targets: torch.Tensor | None,
        *,
        masks: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MixedBatch | MixedSegBatch:
        """Draw params on x's device and mix (see the class docstring for shapes)."""
        x = _common.check_images("FMix", x, ranks=(3, 4, 5), layout="(B, C, *spatial)")
        params = sample_fmix_params(
            x.shape[0],
            tuple(x.shape[2:]),
            alpha=self.alpha,
            decay_power=self.decay_power,
            max_soft=self.max_soft,
            per_sample=self.per_sample,
            device=x.device,
            generator=generator,
        )
        return _apply_fmix(
            x,
            targets,
            params,
            masks=masks,
            num_classes=self.num_classes,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, decay_power={self.decay_power}, max_soft={self.max_soft}, "
            f"per_sample={self.per_sample}, num_classes={self.num_classes}, "
            f"label_smoothing={self.label_smoothing}"
        )
