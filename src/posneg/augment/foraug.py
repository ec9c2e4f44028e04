"""ForAug: paste a masked foreground onto another background, with the paper's size and position.

Nauen et al. *ForAug: Recombining Foregrounds and Backgrounds to Improve Vision Transformer
Training with Bias Mitigation* (ForNet). arXiv 2503.09399, 2025.

Transcribed from the released code, tobna/ForAug at 07acfe0, ``fornet.py``
(``ForNet.__init__`` for background pruning and ``'same'`` fallbacks, ``ForNet.__getitem__`` for
size, crop, position, edge smoothing and pasting). The offline stages (segmentation,
inpainting) are replaced by the caller's masks: any ``alpha`` in [0, 1] (a segmentation, or
:func:`threshold_mask`, a brightness-threshold stand-in that suits dark-background images such
as digits, whose strokes are the foreground).

Per sample (:func:`sample_foraug_params`, then the deterministic :func:`apply_foraug`):

1. size: ``a = mean(alpha)``; ``rho ~ U(lo (1 - j), hi (1 + j))`` with ``lo, hi`` the min and
   max of the foreground's and background's foreground ratios r (mode ``'range'``; ``'max'``,
   ``'min'``, ``'mean'`` use one point), ``s = rho / a``, resize the (h0, w0) crop to
   ``h = round(sqrt(H W s h0 / w0))``, ``w = round(sqrt(H W s w0 / h0))``;
2. larger than the background: a random crop (``center_crop=True``: the val CenterCrop);
3. position: ``z = mean of |n| uniforms`` per axis (Bates(n); n = 0 the centre; n < 0
   ``z + 0.5 - floor(z + 0.5)``, edge-biased), ``offset = round(z (max - min) + min)`` with
   ``min = -rel_jut_out * side``, ``max = H - side (1 - rel_jut_out)``;
4. edge: ``sigma = U(0.1, 1.0) * mask_sigma``, Gaussian-blur the alpha, then
   ``a -> 2a - 1 if a > 128/255 else 0`` (re-hardened, slightly eroded); paste
   ``bg (1 - m) + fg m``.

:func:`choose_backgrounds` picks the background of every foreground (``'all'``, ``'same'``,
``'original'``) after pruning backgrounds with ``r >= pruning_ratio``; :func:`original_prob`
is the p_orig schedule.

Deliberate differences from the code (each shown in tests/augment/test_foraug.py):
  * tensors instead of PIL: bicubic antialiased resizing (PIL's default for RGBA), a Gaussian
    blur with standard deviation sigma and replicated borders (PIL's ``GaussianBlur(radius)``
    approximates it with box blurs), no rounding to 8 bits;
  * a resized side is at least 1 pixel (PIL raises on a 0-pixel resize);
  * ``'revlinear'`` returns originals with probability ``1 - e / E`` (the code's
    ``(e - E) / E <= 0`` never does: bug 4 on the card); p_orig > 0 works (bugs 1 and 2);
  * ``size_fact`` is not a parameter: scaling both ratios by it is the same draw;
    ``fg_in_nonant`` (the 3x3 placement grid for the centre-bias metric) is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks

__all__ = [
    "CITATION",
    "ForAug",
    "ForAugParams",
    "apply_foraug",
    "choose_backgrounds",
    "original_prob",
    "sample_foraug_params",
    "threshold_mask",
]

CITATION = """
@article{nauen2025foraug,
  title   = {ForAug: Recombining Foregrounds and Backgrounds to Improve Vision Transformer
             Training with Bias Mitigation},
  author  = {Nauen, Tobias Christian and Moser, Brian and Raue, Federico and Frolov, Stanislav
             and Dengel, Andreas},
  journal = {arXiv preprint arXiv:2503.09399},
  year    = {2025},
  eprint  = {2503.09399},
  archivePrefix = {arXiv}
}
"""

SIZE_MODES = ("range", "max", "min", "mean")
BACKGROUND_MODES = ("all", "same", "original")
SCHEDULES = ("linear", "cos", "revlinear")
_HARD = 128.0 / 255.0


@dataclass(frozen=True)
class ForAugParams:
    """One draw of ForAug's randomness for a batch.

    Attributes:
        sizes: (B, 2) int64 ``(h, w)`` of the resized foreground.
        crops: (B, 4) int64 ``(y0, x0, h, w)``: the window of the resized foreground pasted
            (the whole of it unless it exceeds the background).
        offsets: (B, 2) int64 ``(y, x)`` of the window's top-left corner on the background
            (negative or past the border only with ``rel_jut_out > 0``; clipped on paste).
        sigmas: (B,) float32 edge-blur sigmas (0: no smoothing and no re-hardening).
        bg_size: ``(H, W)``.
    """

    sizes: torch.Tensor
    crops: torch.Tensor
    offsets: torch.Tensor
    sigmas: torch.Tensor
    bg_size: tuple[int, int]


def _rand(*shape: int, generator: torch.Generator | None) -> torch.Tensor:
    """float64 uniforms drawn on the generator's device (CPU or CUDA), returned on the CPU."""
    dev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(*shape, generator=generator, dtype=torch.float64, device=dev).cpu()


def _pair(fn: str, name: str, v: object) -> tuple[int, int]:
    if (
        not isinstance(v, (tuple, list))
        or len(v) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in v)
    ):
        raise ValueError(f"{fn}: {name} must be a pair of ints >= 1 (h, w); got {v!r}")
    return int(v[0]), int(v[1])


def _ratio(fn: str, name: str, v: torch.Tensor, b: int | None) -> torch.Tensor:
    _checks.check_tensor(fn, name, v)
    if v.dim() != 1 or (b is not None and v.numel() != b):
        raise ValueError(
            f"{fn}: {name} must be 1-D with one entry per sample; got shape {tuple(v.shape)}"
        )
    if not bool(((v > 0) & (v <= 1)).all()):
        raise ValueError(f"{fn}: {name} must lie in (0, 1]")
    return v.to(torch.float64)


def sample_foraug_params(
    *,
    fg_size: tuple[int, int],
    bg_size: tuple[int, int],
    fg_ratio: torch.Tensor,
    bg_ratio: torch.Tensor,
    alpha_mean: torch.Tensor,
    jitter: float = 0.3,
    size_mode: str = "range",
    bates_n: int = 1,
    rel_jut_out: float = 0.0,
    mask_sigma: float = 4.0,
    center_crop: bool = False,
    generator: torch.Generator | None = None,
) -> ForAugParams:
    """Draw sizes, crops, positions and edge sigmas as ``ForNet.__getitem__`` does.

    Args:
        fg_size: (h0, w0) of the foreground crops.
        bg_size: (H, W) of the backgrounds.
        fg_ratio: (B,) foreground area / image area of each foreground's source image, in (0, 1].
        bg_ratio: (B,) the same ratio of each chosen background's source image.
        alpha_mean: (B,) mean alpha of each foreground crop, in (0, 1].
        jitter: ``fg_scale_jitter`` j >= 0 (0.3).
        size_mode: ``'range'`` (default), ``'max'``, ``'min'`` or ``'mean'``.
        bates_n: Bates parameter (1: uniform, 0: centre, < 0: edge-biased).
        rel_jut_out: share of the foreground allowed outside the background (0).
        mask_sigma: ``mask_smoothing_sigma`` (4.0; 0 turns smoothing off).
        center_crop: crop oversized foregrounds at the centre (the code's val mode).
        generator: the source of every draw (order: rho, crop, position, sigma).

    Returns:
        :class:`ForAugParams`.

    Example:
        >>> r = torch.full((2,), 0.2)
        >>> p = sample_foraug_params(fg_size=(8, 8), bg_size=(32, 32), fg_ratio=r,
        ...     bg_ratio=r, alpha_mean=r, jitter=0.0, bates_n=0)
        >>> p.sizes[0].tolist(), p.offsets[0].tolist()
        ([32, 32], [0, 0])
    """
    fn = "sample_foraug_params"
    h0, w0 = _pair(fn, "fg_size", fg_size)
    hb, wb = _pair(fn, "bg_size", bg_size)
    rf = _ratio(fn, "fg_ratio", fg_ratio, None)
    b = rf.numel()
    rb = _ratio(fn, "bg_ratio", bg_ratio, b)
    a = _ratio(fn, "alpha_mean", alpha_mean, b)
    if size_mode not in SIZE_MODES:
        raise ValueError(f"{fn}: size_mode must be one of {SIZE_MODES}; got {size_mode!r}")
    for name, v in (("jitter", jitter), ("rel_jut_out", rel_jut_out), ("mask_sigma", mask_sigma)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"{fn}: {name} must be a number >= 0; got {v!r}")
    if isinstance(bates_n, bool) or not isinstance(bates_n, int):
        raise ValueError(f"{fn}: bates_n must be an int; got {bates_n!r}")
    lo, hi = torch.minimum(rf, rb), torch.maximum(rf, rb)
    if size_mode == "max":
        lo = hi
    elif size_mode == "min":
        hi = lo
    elif size_mode == "mean":
        lo = hi = (rf + rb) / 2
    u = _rand(b, generator=generator)
    rho = lo * (1 - jitter) + u * (hi * (1 + jitter) - lo * (1 - jitter))
    s = rho / a
    area = float(hb * wb)
    gh = torch.round(torch.sqrt(area * s * h0 / w0)).clamp_min(1).to(torch.int64)
    gw = torch.round(torch.sqrt(area * s * w0 / h0)).clamp_min(1).to(torch.int64)
    th, tw = gh.clamp_max(hb), gw.clamp_max(wb)
    uc = _rand(b, 2, generator=generator)
    if center_crop:
        y0 = torch.round((gh - th).double() / 2).to(torch.int64)
        x0 = torch.round((gw - tw).double() / 2).to(torch.int64)
    else:
        y0 = torch.floor(uc[:, 0] * (gh - th + 1)).to(torch.int64)
        x0 = torch.floor(uc[:, 1] * (gw - tw + 1)).to(torch.int64)
    if bates_n == 0:
        z = torch.full((b, 2), 0.5, dtype=torch.float64)
    else:
        z = _rand(b, 2, abs(bates_n), generator=generator).mean(-1)
        if bates_n < 0:
            z = z + 0.5 - torch.floor(z + 0.5)
    offs = []
    for k, (side, full) in enumerate(((th, hb), (tw, wb))):
        mn = -rel_jut_out * side.double()
        mx = full - side.double() * (1 - rel_jut_out)
        mid = (mn + mx) / 2
        bad = mn > mx
        mn, mx = torch.where(bad, mid, mn), torch.where(bad, mid, mx)
        offs.append(torch.round(z[:, k] * (mx - mn) + mn).to(torch.int64))
    sig = (_rand(b, generator=generator) * 0.9 + 0.1) * float(mask_sigma)
    return ForAugParams(
        sizes=torch.stack([gh, gw], 1),
        crops=torch.stack([y0, x0, th, tw], 1),
        offsets=torch.stack(offs, 1),
        sigmas=sig.to(torch.float32),
        bg_size=(hb, wb),
    )


def _blur(m: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (std ``sigma``, radius ceil(3 sigma)) of (1, 1, h, w), replicate."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=m.dtype, device=m.device)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    k = k / k.sum()
    m = F.conv2d(F.pad(m, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(m, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def apply_foraug(
    fg: torch.Tensor, alpha: torch.Tensor, bg: torch.Tensor, params: ForAugParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste each foreground onto its background as ``params`` says (no randomness).

    Args:
        fg: (B, C, h0, w0) foreground crops.
        alpha: (B, 1, h0, w0) or (B, h0, w0) masks in [0, 1].
        bg: (B, C, H, W) backgrounds (one per foreground; see :func:`choose_backgrounds`).
        params: from :func:`sample_foraug_params` with matching sizes.

    Returns:
        ``(images (B, C, H, W), pasted masks (B, 1, H, W))``.
    """
    fn = "apply_foraug"
    for name, t in (("fg", fg), ("alpha", alpha), ("bg", bg)):
        _checks.check_tensor(fn, name, t)
        if not t.dtype.is_floating_point:
            raise TypeError(f"{fn}: {name} must be a float tensor; got {t.dtype}")
    if alpha.dim() == 3:
        alpha = alpha[:, None]
    if fg.dim() != 4 or bg.dim() != 4 or alpha.dim() != 4 or alpha.shape[1] != 1:
        raise ValueError(
            f"{fn}: fg and bg must be (B, C, h, w) and alpha (B, 1, h, w); got "
            f"{tuple(fg.shape)}, {tuple(bg.shape)}, {tuple(alpha.shape)}"
        )
    b = fg.shape[0]
    if alpha.shape[0] != b or bg.shape[0] != b or alpha.shape[2:] != fg.shape[2:]:
        raise ValueError(f"{fn}: fg, alpha and bg must share the batch and fg/alpha the size")
    if bg.shape[1] != fg.shape[1]:
        raise ValueError(
            f"{fn}: fg and bg must have the same channels; got {fg.shape[1]} and {bg.shape[1]}"
        )
    if tuple(bg.shape[2:]) != params.bg_size or params.sizes.shape[0] != b:
        raise ValueError(
            f"{fn}: params were drawn for bg_size {params.bg_size} and batch "
            f"{params.sizes.shape[0]}; got bg {tuple(bg.shape)}"
        )
    hb, wb = params.bg_size
    out = bg.clone()
    masks = torch.zeros(b, 1, hb, wb, dtype=bg.dtype, device=bg.device)
    for i in range(b):
        gh, gw = (int(v) for v in params.sizes[i])
        y0, x0, th, tw = (int(v) for v in params.crops[i])
        work = torch.promote_types(fg.dtype, torch.float32)
        rgba = torch.cat([fg[i : i + 1], alpha[i : i + 1]], 1).to(work)
        rgba = F.interpolate(
            rgba, size=(gh, gw), mode="bicubic", align_corners=False, antialias=True
        )[:, :, y0 : y0 + th, x0 : x0 + tw]
        img, m = rgba[:, :-1], rgba[:, -1:].clamp(0.0, 1.0)
        sigma = float(params.sigmas[i])
        if sigma > 0:
            m = _blur(m, sigma)
            m = torch.where(m > _HARD, 2 * m - 1, torch.zeros_like(m))
        oy, ox = (int(v) for v in params.offsets[i])
        ys, xs = max(oy, 0), max(ox, 0)
        ye, xe = min(oy + th, hb), min(ox + tw, wb)
        if ye <= ys or xe <= xs:
            continue
        mm = m[0, :, ys - oy : ye - oy, xs - ox : xe - ox].to(bg.dtype)
        src = img[0, :, ys - oy : ye - oy, xs - ox : xe - ox].to(bg.dtype)
        region = out[i, :, ys:ye, xs:xe]
        out[i, :, ys:ye, xs:xe] = region * (1 - mm) + src * mm
        masks[i, :, ys:ye, xs:xe] = mm
    return out, masks


def threshold_mask(x: torch.Tensor, *, threshold: float = 0.3) -> torch.Tensor:
    """A saliency stand-in: ``alpha = 1`` where the channel-mean intensity, min-max scaled per
    image, exceeds ``threshold`` (the strokes of dark-background digits), else 0.

    Args:
        x: (B, C, h, w) images.
        threshold: in [0, 1).

    Returns:
        (B, 1, h, w) float masks.
    """
    fn = "threshold_mask"
    _checks.check_tensor(fn, "x", x)
    if x.dim() != 4 or not x.dtype.is_floating_point:
        raise ValueError(f"{fn}: x must be a (B, C, h, w) float tensor; got {tuple(x.shape)}")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not (0 <= threshold < 1)
    ):
        raise ValueError(f"{fn}: threshold must be in [0, 1); got {threshold!r}")
    v = x.mean(1, keepdim=True)
    lo = v.amin((2, 3), keepdim=True)
    hi = v.amax((2, 3), keepdim=True)
    v = (v - lo) / (hi - lo).clamp_min(1e-12)
    return (v > threshold).to(x.dtype)


def choose_backgrounds(
    *,
    fg_labels: torch.Tensor,
    bg_labels: torch.Tensor,
    bg_ratios: torch.Tensor,
    mode: str = "all",
    pruning_ratio: float = 0.8,
    fg_index: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices into the background bank, one per foreground (``ForNet`` background choice).

    Pruning (``pruning_ratio <= 1``) keeps the backgrounds with ``r < pruning_ratio``.
    ``'all'``: uniform over the kept ones; ``'same'``: uniform over the kept ones of the
    foreground's class, or the class's last background in bank order if none is kept (the
    code's ``backup_backgrounds``); ``'original'``: ``fg_index`` (default ``arange(B)``), the
    foreground's own background, pruned or not.

    Args:
        fg_labels: (B,) int classes of the foregrounds.
        bg_labels: (M,) int classes of the backgrounds' source images.
        bg_ratios: (M,) foreground ratios r of the backgrounds' source images.
        mode: ``'all'``, ``'same'`` or ``'original'``.
        pruning_ratio: the pruning threshold (0.8; > 1 disables pruning).
        fg_index: (B,) bank index of each foreground's own background (``'original'``).
        generator: the source of the uniform draws.

    Returns:
        (B,) int64 indices into the bank.
    """
    fn = "choose_backgrounds"
    if mode not in BACKGROUND_MODES:
        raise ValueError(f"{fn}: mode must be one of {BACKGROUND_MODES}; got {mode!r}")
    _checks.check_tensor(fn, "fg_labels", fg_labels)
    _checks.check_tensor(fn, "bg_labels", bg_labels)
    _checks.check_tensor(fn, "bg_ratios", bg_ratios)
    b, m = fg_labels.numel(), bg_labels.numel()
    if bg_ratios.numel() != m:
        raise ValueError(
            f"{fn}: bg_ratios must have one entry per background ({m}); got {bg_ratios.numel()}"
        )
    if mode == "original":
        idx = torch.arange(b) if fg_index is None else fg_index.to(torch.int64).cpu()
        if idx.numel() != b or (b and (int(idx.min()) < 0 or int(idx.max()) >= m)):
            raise ValueError(f"{fn}: fg_index must hold {b} indices in [0, {m})")
        return idx
    keep = (
        (bg_ratios.cpu() < pruning_ratio)
        if pruning_ratio <= 1.0
        else torch.ones(m, dtype=torch.bool)
    )
    u = _rand(b, generator=generator)
    if mode == "all":
        pool = torch.nonzero(keep).flatten()
        if pool.numel() == 0:
            raise ValueError(f"{fn}: pruning_ratio={pruning_ratio} removes every background")
        return pool[torch.floor(u * pool.numel()).to(torch.int64)]
    out = torch.empty(b, dtype=torch.int64)
    bl, fl = bg_labels.cpu(), fg_labels.cpu()
    for i in range(b):
        same = bl == fl[i]
        pool = torch.nonzero(same & keep).flatten()
        if pool.numel() == 0:
            allc = torch.nonzero(same).flatten()
            if allc.numel() == 0:
                raise ValueError(f"{fn}: no background of class {int(fl[i])} for mode 'same'")
            pool = allc[-1:]
        out[i] = pool[int(u[i] * pool.numel())]
    return out


def original_prob(schedule: float | str, epoch: int, epochs: int) -> float:
    """p_orig at ``epoch`` of ``epochs``: a constant, ``'linear'`` e/E, ``'cos'``
    ``1 - cos(pi e / 2E)``, or ``'revlinear'`` ``1 - e/E`` (the intended decrease)."""
    fn = "original_prob"
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(
                f"{fn}: schedule must be a probability or one of {SCHEDULES}; got {schedule!r}"
            )
        if not 0 <= epoch < epochs:
            raise ValueError(f"{fn}: need 0 <= epoch < epochs; got {epoch}, {epochs}")
        t = epoch / epochs
        return {"linear": t, "cos": 1 - math.cos(math.pi * t / 2), "revlinear": 1 - t}[schedule]
    if (
        isinstance(schedule, bool)
        or not isinstance(schedule, (int, float))
        or not (0 <= schedule <= 1)
    ):
        raise ValueError(f"{fn}: schedule must be in [0, 1]; got {schedule!r}")
    return float(schedule)


class ForAug(nn.Module):
    """Recombine foregrounds with backgrounds: ``forward(fg, alpha, bg, ...) -> (images, masks)``.

    Stores the size/position/edge hyperparameters and ``orig_prob`` (a constant p_orig; per
    sample, with that probability the ``original`` image is returned unchanged, with an all-zero
    mask, as the code returns no mask there). ``fg_ratio`` defaults
    to ``mean(alpha)`` (the crop is its whole source image); ``bg_ratio`` to ``fg_ratio``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> fg, bg = torch.rand(4, 3, 8, 8, generator=g), torch.rand(4, 3, 32, 32, generator=g)
        >>> alpha = threshold_mask(fg, threshold=0.5)
        >>> x, m = ForAug()(fg, alpha, bg, generator=g)
        >>> x.shape, m.shape
        (torch.Size([4, 3, 32, 32]), torch.Size([4, 1, 32, 32]))
    """

    def __init__(
        self,
        *,
        jitter: float = 0.3,
        size_mode: str = "range",
        bates_n: int = 1,
        rel_jut_out: float = 0.0,
        mask_sigma: float = 4.0,
        orig_prob: float = 0.0,
    ) -> None:
        super().__init__()
        one = torch.full((1,), 0.5)
        try:  # validate once by a dry draw
            sample_foraug_params(
                fg_size=(2, 2),
                bg_size=(2, 2),
                fg_ratio=one,
                bg_ratio=one,
                alpha_mean=one,
                jitter=jitter,
                size_mode=size_mode,
                bates_n=bates_n,
                rel_jut_out=rel_jut_out,
                mask_sigma=mask_sigma,
                generator=torch.Generator(),
            )
            original_prob(orig_prob, 0, 1)
        except ValueError as e:
            raise ValueError(f"ForAug: {str(e).split(': ', 1)[1]}") from None
        self.jitter, self.size_mode, self.bates_n = float(jitter), size_mode, bates_n
        self.rel_jut_out, self.mask_sigma = float(rel_jut_out), float(mask_sigma)
        self.orig_prob = float(orig_prob)

    def extra_repr(self) -> str:
        return (
            f"jitter={self.jitter}, size_mode={self.size_mode!r}, bates_n={self.bates_n}, "
            f"rel_jut_out={self.rel_jut_out}, mask_sigma={self.mask_sigma}, "
            f"orig_prob={self.orig_prob}"
        )

    def forward(
        self,
        fg: torch.Tensor,
        alpha: torch.Tensor,
        bg: torch.Tensor,
        *,
        fg_ratio: torch.Tensor | None = None,
        bg_ratio: torch.Tensor | None = None,
        original: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        a4 = alpha if alpha.dim() == 4 else alpha[:, None]
        a_mean = a4.flatten(1).mean(1).clamp(1e-6, 1.0).cpu()
        rf = a_mean if fg_ratio is None else fg_ratio.cpu()
        rb = rf if bg_ratio is None else bg_ratio.cpu()
        params = sample_foraug_params(
            fg_size=(int(fg.shape[-2]), int(fg.shape[-1])),
            bg_size=(int(bg.shape[-2]), int(bg.shape[-1])),
            fg_ratio=rf,
            bg_ratio=rb,
            alpha_mean=a_mean,
            jitter=self.jitter,
            size_mode=self.size_mode,
            bates_n=self.bates_n,
            rel_jut_out=self.rel_jut_out,
            mask_sigma=self.mask_sigma,
            generator=generator,
        )
        x, m = apply_foraug(fg, alpha, bg, params)
        if self.orig_prob > 0:
            if original is None or original.shape != x.shape:
                raise ValueError("ForAug: orig_prob > 0 needs original images shaped like bg")
            take = _rand(x.shape[0], generator=generator) < self.orig_prob
            take = take.to(x.device)
            x = torch.where(take[:, None, None, None], original.to(x.dtype), x)
            m = torch.where(take[:, None, None, None], torch.zeros_like(m), m)
        return x, m
