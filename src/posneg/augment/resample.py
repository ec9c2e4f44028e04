"""IRAD's basic image resampling defence: resample each image on a randomly shifted grid.

Cao, Li, Cao, Tsang, Liu, Guo. IRAD: Implicit Representation-driven Image Resampling against
Adversarial Attacks. ICLR 2024, arXiv 2310.11890.

IRAD first studies *basic* resampling: the image is re-rendered on a grid whose coordinates are
shifted, read back with an interpolation rule (nearest or bilinear); the paper reports that this
partly removes adversarial perturbations at some cost in clean accuracy, and then learns the
shifts (SampleNet) on an implicit representation. This module is the basic method only (no
implicit representation, no SampleNet):

    out(p) = interp(x, s^-1 (p + 1/2) - 1/2 + delta),   delta ~ U[-shift, shift]^2

in pixel units, pixel centres at integer indices: output pixel ``p`` of a grid of size
``(round(s H), round(s W))`` reads the input at its own centre mapped back to the input plus the
random offset ``delta`` (per sample, or per pixel with ``per_pixel=True``); with ``scale != 1``
the result is then resampled back to (H, W) on the unshifted grid, with the same rule. So the
output keeps x's shape: ``scale < 1`` is a down-then-up resampling (loses detail), ``scale > 1``
an up-then-down one. A positive offset reads further right/down, i.e. content moves left/up.

[unverified]: the paper's text was not available here beyond its abstract; the grid convention
(pixel centres, ``align_corners=False``), the offset distribution (uniform, per sample by
default) and the defaults (``shift=0.5`` px, ``scale=1``, edge padding) are choices made here.
The paper names interpolation strategies and "coordinate shifting magnitudes" as its two knobs;
both are exposed (``mode``, ``shift``), and ``per_pixel=True`` gives pixel-wise random shifts,
the form SampleNet's learned shifts take.

Ties under ``mode="nearest"`` (a source coordinate exactly on a pixel boundary, e.g. half-pixel
offsets or ``scale = 0.5``) go to the right/lower pixel, as in
:func:`posneg.augment.functional.affine`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks, _rng
from posneg.augment import functional as AF

__all__ = ["Resample", "ResampleParams", "apply_resample", "resample", "sample_resample_params"]

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


@dataclass(frozen=True)
class ResampleParams:
    """One draw of resampling offsets for a batch.

    Attributes:
        offsets: None (no shift) or the offsets ``(dx, dy)`` in input pixels: (B, 2) per
            sample, or (B, 2, h, w) per pixel of the resampling grid.
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
    shift: float = 0.5,
    scale: float = 1.0,
    per_pixel: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> ResampleParams:
    """Draw uniform offsets in ``[-shift, shift]`` (pixels) per sample or per pixel.

    Args:
        batch: B >= 0.
        height, width: image size.
        shift: largest offset in input pixels (>= 0; 0 draws nothing: ``offsets=None``).
        scale: resampling grid size relative to the image (> 0).
        per_pixel: one offset per pixel of the grid instead of one per sample.
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
    sc = _checks.check_positive(fn, "scale", scale)
    _checks.check_bool(fn, "per_pixel", per_pixel)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    _checks.check_generator(fn, generator, dev)
    size = _grid_size(h, w, sc)
    if s == 0:
        return ResampleParams(offsets=None, size=size)
    shape = (b, 2, *size) if per_pixel else (b, 2)
    offsets = _rng.uniform(shape, low=-s, high=s, device=dev, generator=generator)
    return ResampleParams(offsets=offsets, size=size)


def _centres(n_out: int, n_in: int, device: torch.device) -> torch.Tensor:
    """Input pixel coordinates (pixel ``k`` covers [k, k + 1)) of the ``n_out`` grid centres."""
    return (torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) * (n_in / n_out)


def _sample(
    xw: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
    *,
    mode: str,
    padding: str,
) -> torch.Tensor:
    """grid_sample at input pixel coordinates px, py (float64, broadcastable to (B, h, w))."""
    _, _, h_in, w_in = xw.shape
    if mode == "nearest":  # ties to floor(.) as functional.affine
        px, py = px + AF._TIE_EPS, py + AF._TIE_EPS
    gx, gy = torch.broadcast_tensors(2.0 * px / w_in - 1.0, 2.0 * py / h_in - 1.0)
    grid = torch.stack([gx, gy], dim=-1).to(xw.dtype)
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
    if len(size) != 2 or not all(isinstance(n, int) and n >= 1 for n in size):
        raise ValueError(f"{fn}: params.size must be two ints >= 1; got {params.size!r}")
    gh, gw = size
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
    if off is not None:
        o = off.to(torch.float64)
        if o.dim() == 2:
            o = o.view(b, 2, 1, 1)
        px, py = px + o[:, 0], py + o[:, 1]
    out = _sample(xw, px, py, mode=mode, padding=padding)
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
    shift: float = 0.5,
    per_pixel: bool = False,
    padding: str = "border",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """IRAD's basic resampling: draw offsets in ``[-shift, shift]`` and resample.

    ``sample_resample_params`` then ``apply_resample``; see the module docstring for the
    formula. ``shift=0`` and ``scale=1`` return ``x`` unchanged.

    Args:
        x: (B, C, H, W) uint8 or float images.
        mode: ``"bilinear"`` or ``"nearest"``.
        scale: resampling grid size relative to the image (> 0; 1 = same grid).
        shift: largest coordinate offset in input pixels (>= 0).
        per_pixel: independent offsets per pixel instead of per sample.
        padding: ``"border"``, ``"reflection"`` or ``"zeros"``.
        generator: for the offsets (None: torch's global RNG).

    Returns:
        (B, C, H, W) tensor of x's dtype.

    Raises:
        ValueError: x not 4-D, shift < 0, scale <= 0, bad mode/padding.
        TypeError: x not uint8/floating, per_pixel not a bool, generator of the wrong type.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> resample(x, shift=1.0, generator=torch.Generator().manual_seed(0)).shape
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
        scale=scale,
        per_pixel=per_pixel,
        device=x.device,
        generator=generator,
    )
    return apply_resample(x, params, mode=mode, padding=padding)


class Resample(nn.Module):
    """IRAD's basic resampling defence as a module: random coordinate shifts, optional down/up
    scaling, bilinear or nearest interpolation.

    Cao, Li, Cao, Tsang, Liu, Guo. IRAD: Implicit Representation-driven Image Resampling
    against Adversarial Attacks. ICLR 2024, arXiv 2310.11890. (The basic methods of the paper,
    not the implicit representation or SampleNet; see :mod:`posneg.augment.resample`.)

    Args:
        mode: ``"bilinear"`` or ``"nearest"``.
        scale: resampling grid size relative to the image (> 0).
        shift: largest offset in input pixels (>= 0).
        per_pixel: offsets per pixel instead of per sample.
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
        shift: float = 0.5,
        *,
        per_pixel: bool = False,
        padding: str = "border",
    ) -> None:
        super().__init__()
        fn = "Resample"
        self.mode = _checks.check_choice(fn, "mode", mode, _MODES)
        self.scale = _checks.check_positive(fn, "scale", scale)
        self.shift = _checks.check_nonnegative(fn, "shift", shift)
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
            per_pixel=self.per_pixel,
            padding=self.padding,
            generator=generator,
        )

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode!r}, scale={self.scale}, shift={self.shift}, "
            f"per_pixel={self.per_pixel}, padding={self.padding!r}"
        )
