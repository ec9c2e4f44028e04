"""IRAD's basic image resampling defence: re-render each image on a shifted sampling grid.

Cao, Li, Cao, Tsang, Liu, Guo. IRAD: Implicit Representation-driven Image Resampling against
Adversarial Attacks. ICLR 2024, arXiv 2310.11890.

IRAD's Sec. 3.2 ("naive implementation") resamples an image ``I`` by reading a reconstruction
``phi`` of it (bilinear, Eq. 5, or nearest, Eq. 6) at shifted pixel coordinates
``U = G + SAMPLER`` (Eq. 4), ``G[i, j] = [i, j]``, with two samplers:

- spatial-invariant, ``SAMPLER(d)`` (Eq. 7): every pixel shifted by ``[d, d]``; here
  ``sampler="fixed"`` with ``shift = d`` (nothing is drawn);
- spatial-variant, ``SAMPLER(gamma)`` (Eq. 8): pixel ``[i, j]`` shifted by ``[d1, d2]``,
  ``d1, d2 ~ U(0, gamma)``; here ``sampler="uniform"`` with ``shift = gamma`` and
  ``per_pixel=True`` (the default).

Its Tables 1 and 8 use ``d = gamma = 1.5`` with both reconstructions; the paper then replaces the
reconstruction by an implicit representation and the sampler by SampleNet (IRAD proper, not
implemented here). So, in input pixel units with pixel centres at integer indices:

    out[i, j] = phi(x)(i + delta_y[i, j], j + delta_x[i, j])
    fixed:   delta_x = delta_y = shift
    uniform: delta_x, delta_y ~ U[0, shift], independent per pixel (or per sample with
             ``per_pixel=False``) and per sample

A positive offset reads further right/down, i.e. content moves left/up, as ``U = G + shift``.

Checked against the official code, github.com/tsingqguo/irad (commit 5523e85, 2024-04-17), on
2026-11-29:

- ``utils.py`` ``make_coord`` builds pixel-centre coordinates in [-1, 1] (``align_corners=False``
  in ``grid_sample``): the grid convention here. ``make_coord_shift`` adds the same offset to
  both coordinates of every pixel (Eq. 7), ``make_coord_uniform_random`` adds per-pixel draws
  ``random.uniform(0, r)``, independent per axis (Eq. 8): the distributions here.
- Units differ: those helpers take ``shift_scale`` and add ``shift_scale * r`` in [-1, 1]
  coordinates with ``r = 1 / n`` (half a pixel; ``n`` the last axis' size, used for both
  axes), i.e. ``shift_scale / 2`` pixels. The paper's equations shift the integer pixel grid
  ``G``, i.e. pixels. The helpers are not called anywhere in the released code (only
  ``make_coord``, by IRAD's LIIF/SampleNet path), and the scripts that produced Tables 1 and 8
  are not released, so whether ``d = 1.5`` there meant 1.5 px or 0.75 px cannot be read off.
  ``shift`` here is in pixels, as in the paper's equations (``shift = shift_scale / 2``).
- The released code has no bilinear/nearest resampling function for the basic methods, so
  the padding is not given; ``make_coord_shift_reg`` clamps shifted coordinates to the image's
  outer edge, and IRAD's LIIF queries (``models/liif.py``, ``models/samplenet.py``) clamp them
  inside the image. Default here: ``padding="border"`` (edge pixels), the clamp's counterpart.
- The helpers build one coordinate grid (no batch axis); here every sample of a batch gets
  its own draw. ``utils.py`` also has Gaussian variants (``make_coord_normal``,
  ``make_coord_normal2``), not in the paper and not implemented here.

Additions of this module, not in IRAD: ``per_pixel=False`` (one uniform offset per sample),
``scale`` (shifted grid of ``(round(s H), round(s W))`` pixels, read at
``s^-1 (p + 1/2) - 1/2 + delta``, then resampled back to (H, W) on the unshifted grid with the
same rule; ``scale=1``, the default, is the paper's same-size grid) and ``padding`` choices.

Ties under ``mode="nearest"`` (a source coordinate exactly on a pixel boundary, e.g. the
half-pixel offset ``shift=1.5`` with ``sampler="fixed"``, or ``scale = 0.5``) go to the
right/lower pixel, as in :func:`posneg.augment.functional.affine`; the paper's Eq. 6 ("the
integer coordinate nearest") does not say.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks, _rng
from posneg.augment import functional as AF

__all__ = [
    "DEFAULT_SHIFT",
    "Resample",
    "ResampleParams",
    "apply_resample",
    "resample",
    "sample_resample_params",
]

CITATION = """
@inproceedings{cao2024irad,
  title     = {{IRAD}: Implicit Representation-driven Image Resampling against Adversarial
               Attacks},
  author    = {Cao, Yue and Li, Tianlin and Cao, Xiaofeng and Tsang, Ivor and Liu, Yang and
               Guo, Qing},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2024},
  eprint    = {2310.11890},
  archivePrefix = {arXiv}
}
"""

_MODES = ("bilinear", "nearest")
_PADDINGS = ("border", "reflection", "zeros")
_SAMPLERS = ("uniform", "fixed")

#: IRAD's shift magnitude, ``d = gamma = 1.5`` (Tables 1 and 8), in pixels (see the module
#: docstring for the official helpers' half-pixel unit).
DEFAULT_SHIFT = 1.5


@dataclass(frozen=True)
class ResampleParams:
    """One draw of resampling offsets for a batch.

    Attributes:
        offsets: None (no shift) or the offsets ``(dx, dy)`` in input pixels: (B, 2) per
            sample (also ``sampler="fixed"``), or (B, 2, h, w) per pixel of the resampling
            grid.
        size: (h, w), the resampling grid (``round(scale * H), round(scale * W)``); the
            output is brought back to the input's size when it differs.
    """

    offsets: torch.Tensor | None
    size: tuple[int, int]


def _grid_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return (max(1, math.floor(height * scale + 0.5)), max(1, math.floor(width * scale + 0.5)))


def sample_resample_params(
    batch: int,
    height: int,
    width: int,
    *,
    shift: float = DEFAULT_SHIFT,
    sampler: str = "uniform",
    per_pixel: bool = True,
    scale: float = 1.0,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> ResampleParams:
    """IRAD's samplers: offsets ``U[0, shift]`` per pixel (Eq. 8) or ``(shift, shift)`` (Eq. 7).

    Args:
        batch: B >= 0.
        height, width: image size.
        shift: ``gamma`` (uniform) or ``d`` (fixed), in input pixels (>= 0; 0 gives
            ``offsets=None``, nothing drawn). Default 1.5, IRAD's value.
        sampler: ``"uniform"`` (spatial-variant: ``dx, dy ~ U[0, shift]`` independently) or
            ``"fixed"`` (spatial-invariant: ``dx = dy = shift``; nothing drawn, ``per_pixel``
            not used, offsets (B, 2)).
        per_pixel: uniform offsets drawn per pixel of the grid (IRAD's Eq. 8; default) or one
            per sample (``False``, an addition of this module).
        scale: resampling grid size relative to the image (> 0; 1 = IRAD's same-size grid).
        device: where the offsets live (None: CPU).
        generator: drawn from (None: torch's global RNG); one ``torch.rand`` call.

    Returns:
        :class:`ResampleParams`.
    """
    fn = "sample_resample_params"
    b = _checks.check_int(fn, "batch", batch, min_value=0)
    h = _checks.check_int(fn, "height", height, min_value=1)
    w = _checks.check_int(fn, "width", width, min_value=1)
    s = _checks.check_nonnegative(fn, "shift", shift)
    kind = _checks.check_choice(fn, "sampler", sampler, _SAMPLERS)
    _checks.check_bool(fn, "per_pixel", per_pixel)
    sc = _checks.check_positive(fn, "scale", scale)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    _checks.check_generator(fn, generator, dev)
    size = _grid_size(h, w, sc)
    if s == 0:
        return ResampleParams(offsets=None, size=size)
    if kind == "fixed":
        return ResampleParams(offsets=torch.full((b, 2), s, device=dev), size=size)
    shape = (b, 2, *size) if per_pixel else (b, 2)
    offsets = _rng.uniform(shape, low=0.0, high=s, device=dev, generator=generator)
    return ResampleParams(offsets=offsets, size=size)


def _centres(n_out: int, n_in: int, device: torch.device) -> torch.Tensor:
    """Input pixel coordinates (pixel ``k`` covers [k, k + 1)) of the ``n_out`` grid centres."""
    return (torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) * (n_in / n_out)


def _sample(
    xw: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
    offsets: torch.Tensor | None = None,
    *,
    mode: str,
    padding: str,
) -> torch.Tensor:
    """grid_sample at input pixel coordinates ``px + dx``, ``py + dy``.

    ``px`` (1, 1, w) and ``py`` (1, h, 1) are float64 grid centres, normalised in float64;
    ``offsets`` (B, 2, 1, 1) or (B, 2, h, w) pixels are scaled and added in the work dtype
    (per-pixel offsets would otherwise cost a float64 pass over B x h x w x 2 values).
    """
    _, _, h_in, w_in = xw.shape
    dt = xw.dtype
    if mode == "nearest":  # ties to floor(.) as functional.affine
        px, py = px + AF._TIE_EPS, py + AF._TIE_EPS
    gx, gy = (2.0 * px / w_in - 1.0).to(dt), (2.0 * py / h_in - 1.0).to(dt)
    if offsets is not None:
        o = offsets.to(dt)
        gx = torch.add(gx, o[:, 0], alpha=2.0 / w_in)
        gy = torch.add(gy, o[:, 1], alpha=2.0 / h_in)
    gx, gy = torch.broadcast_tensors(gx, gy)
    grid = torch.stack([gx, gy], dim=-1)
    if grid.shape[0] != xw.shape[0]:
        grid = grid.expand(xw.shape[0], *grid.shape[1:])
    return F.grid_sample(xw, grid, mode=mode, padding_mode=padding, align_corners=False)


def apply_resample(
    x: torch.Tensor,
    params: ResampleParams,
    *,
    mode: str = "bilinear",
    padding: str = "border",
) -> torch.Tensor:
    """Resample each image on its shifted grid (one ``grid_sample``; a second one back to the
    input size when the grid size differs). Deterministic and vectorised over the batch.

    Args:
        x: (B, C, H, W) uint8 (0..255) or float images.
        params: from :func:`sample_resample_params` for this B, H, W.
        mode: ``"bilinear"`` or ``"nearest"``.
        padding: what is read outside the image: ``"border"`` (edge pixels, default),
            ``"reflection"`` or ``"zeros"``.

    Returns:
        (B, C, H, W) of x's dtype (uint8 rounded; float16/bfloat16 computed in float32).
        Params without offsets and with the input's size return ``x`` itself.

    Raises:
        TypeError: x not uint8/floating, params not ResampleParams, offsets not floating.
        ValueError: x not 4-D, offsets of the wrong shape or device, bad mode/padding.
    """
    fn = "apply_resample"
    AF.check_images(fn, x)
    _checks.check_choice(fn, "mode", mode, _MODES)
    _checks.check_choice(fn, "padding", padding, _PADDINGS)
    if not isinstance(params, ResampleParams):
        raise TypeError(f"{fn}: params must be ResampleParams; got {type(params).__name__}")
    b, _, h, w = x.shape
    size = tuple(params.size)
    if len(size) != 2 or not all(
        isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in size
    ):
        raise ValueError(f"{fn}: params.size must be two ints >= 1; got {params.size!r}")
    gh, gw = (int(n) for n in size)
    off = params.offsets
    if off is not None:
        if not isinstance(off, torch.Tensor) or not off.is_floating_point():
            raise TypeError(f"{fn}: params.offsets must be a floating tensor or None")
        if tuple(off.shape) not in ((b, 2), (b, 2, gh, gw)):
            raise ValueError(
                f"{fn}: params.offsets must have shape ({b}, 2) or ({b}, 2, {gh}, {gw}); "
                f"got {tuple(off.shape)}"
            )
        if off.device != x.device:
            raise ValueError(
                f"{fn}: params.offsets is on {off.device} but x is on {x.device}; "
                "move them to one device"
            )
    if b == 0 or (off is None and (gh, gw) == (h, w)):
        return x
    xw = AF._to_work(x)
    px = _centres(gw, w, x.device).view(1, 1, gw)
    py = _centres(gh, h, x.device).view(1, gh, 1)
    o = off.view(b, 2, 1, 1) if off is not None and off.dim() == 2 else off
    out = _sample(xw, px, py, o, mode=mode, padding=padding)
    if (gh, gw) != (h, w):
        px = _centres(w, gw, x.device).view(1, 1, w)
        py = _centres(h, gh, x.device).view(1, h, 1)
        out = _sample(out, px, py, mode=mode, padding=padding)
    if x.dtype == torch.uint8:
        return AF._back(out, x, rounding="round")
    return out.to(x.dtype)


def resample(
    x: torch.Tensor,
    *,
    mode: str = "bilinear",
    scale: float = 1.0,
    shift: float = DEFAULT_SHIFT,
    sampler: str = "uniform",
    per_pixel: bool = True,
    padding: str = "border",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """IRAD's basic resampling: ``IR(mode, SAMPLER(shift))``, Eqs. 4-8 of the paper.

    ``sample_resample_params`` then ``apply_resample``; see the module docstring for the
    formula and how it compares with the official code. The defaults are IRAD's
    spatial-variant sampler with ``gamma = 1.5`` px and bilinear reconstruction,
    ``IR(bil, SAMPLER(gamma=1.5))``; ``sampler="fixed"`` is ``IR(bil, SAMPLER(d=1.5))``.
    ``shift=0`` and ``scale=1`` return ``x`` unchanged.

    Args:
        x: (B, C, H, W) uint8 or float images.
        mode: ``"bilinear"`` (Eq. 5) or ``"nearest"`` (Eq. 6).
        scale: resampling grid size relative to the image (> 0; 1 = same grid, as in IRAD).
        shift: ``gamma`` or ``d`` in input pixels (>= 0).
        sampler: ``"uniform"`` (offsets ``U[0, shift]``, Eq. 8) or ``"fixed"``
            (``(shift, shift)``, Eq. 7; draws nothing).
        per_pixel: uniform offsets per pixel (IRAD) or per sample (``False``).
        padding: ``"border"``, ``"reflection"`` or ``"zeros"``.
        generator: for the offsets (None: torch's global RNG).

    Returns:
        (B, C, H, W) tensor of x's dtype.

    Raises:
        ValueError: x not 4-D, shift < 0, scale <= 0, bad mode/padding/sampler.
        TypeError: x not uint8/floating, per_pixel not a bool, generator of the wrong type.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> resample(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 16, 16])
        >>> resample(x, sampler="fixed", mode="nearest", shift=1.0).shape
        torch.Size([2, 3, 16, 16])
    """
    fn = "resample"
    AF.check_images(fn, x)
    _checks.check_choice(fn, "mode", mode, _MODES)
    _checks.check_choice(fn, "padding", padding, _PADDINGS)
    _checks.check_generator(fn, generator, x.device)
    params = sample_resample_params(
        x.shape[0],
        x.shape[2],
        x.shape[3],
        shift=shift,
        sampler=sampler,
        per_pixel=per_pixel,
        scale=scale,
        device=x.device,
        generator=generator,
    )
    return apply_resample(x, params, mode=mode, padding=padding)


class Resample(nn.Module):
    """IRAD's basic resampling defence as a module: coordinate shifts (random per pixel, or
    fixed), bilinear or nearest interpolation, optional down/up scaling.

    Cao, Li, Cao, Tsang, Liu, Guo. IRAD: Implicit Representation-driven Image Resampling
    against Adversarial Attacks. ICLR 2024, arXiv 2310.11890. (The basic methods of the paper,
    not the implicit representation or SampleNet; see :mod:`posneg.augment.resample`.)
    Defaults: ``IR(bil, SAMPLER(gamma=1.5))``, per-pixel offsets ``U[0, 1.5]`` px.

    Args:
        mode: ``"bilinear"`` or ``"nearest"``.
        scale: resampling grid size relative to the image (> 0; 1 = IRAD's same-size grid).
        shift: ``gamma`` (uniform) or ``d`` (fixed) in input pixels (>= 0).
        sampler: ``"uniform"`` (spatial-variant, Eq. 8) or ``"fixed"`` (spatial-invariant,
            Eq. 7; then the module draws nothing).
        per_pixel: uniform offsets per pixel (IRAD) or per sample (``False``).
        padding: ``"border"``, ``"reflection"`` or ``"zeros"``.

    Example:
        >>> defence = Resample(mode="nearest", shift=1.0)
        >>> x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
        >>> defence(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 3, 16, 16])
    """

    def __init__(
        self,
        mode: str = "bilinear",
        scale: float = 1.0,
        shift: float = DEFAULT_SHIFT,
        *,
        sampler: str = "uniform",
        per_pixel: bool = True,
        padding: str = "border",
    ) -> None:
        super().__init__()
        fn = "Resample"
        self.mode = _checks.check_choice(fn, "mode", mode, _MODES)
        self.scale = _checks.check_positive(fn, "scale", scale)
        self.shift = _checks.check_nonnegative(fn, "shift", shift)
        self.sampler = _checks.check_choice(fn, "sampler", sampler, _SAMPLERS)
        self.per_pixel = _checks.check_bool(fn, "per_pixel", per_pixel)
        self.padding = _checks.check_choice(fn, "padding", padding, _PADDINGS)

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Resample a (B, C, H, W) uint8 or float batch; returns the same shape and dtype."""
        fn = "Resample"
        AF.check_images(fn, x)
        _checks.check_generator(fn, generator, x.device)
        return resample(
            x,
            mode=self.mode,
            scale=self.scale,
            shift=self.shift,
            sampler=self.sampler,
            per_pixel=self.per_pixel,
            padding=self.padding,
            generator=generator,
        )

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode!r}, scale={self.scale}, shift={self.shift}, "
            f"sampler={self.sampler!r}, per_pixel={self.per_pixel}, padding={self.padding!r}"
        )
