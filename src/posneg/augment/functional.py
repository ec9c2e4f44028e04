"""Deterministic per-sample image kernels on (B, C, H, W) batches: RandAugment's 14 operations.

Every kernel takes a batch ``x`` of shape (B, C, H, W), either ``torch.uint8`` (values 0..255)
or floating point (values in [0, 1]), and, where the op has a parameter, one value per sample as
a (B,) tensor (a Python number or a 0-d tensor is broadcast to the batch). Kernels are
vectorised over the batch (no Python loop over samples), keep the input's dtype, shape and
device, and draw nothing. float16/bfloat16 inputs are computed in float32 and cast back (the
AMP dtype is kept); uint8 inputs are computed in float32 and converted back exactly as Pillow
does (truncation after clipping for blends, rounding for the smoothing filter).

Conventions follow Pillow (``ImageOps``/``ImageEnhance``/``Image.transform``), which is what
torchvision's RandAugment calls on PIL images:

- parameters are in the image's own scale: a solarize threshold is 0..255 for uint8 and 0..1
  for floats; ``fill`` likewise;
- geometric ops map output pixel centres ``(x + 0.5, y + 0.5)`` through an inverse affine matrix
  in pixel coordinates (as ``PIL.Image.transform(size, AFFINE, data)``) and take the nearest
  input pixel ``floor(.)``; pixels mapped outside the image get ``fill``. They run as one
  batched ``grid_sample`` on an affine grid (nearest by default, bilinear on request);
- colour ops use Pillow's luma ``L = (19595 R + 38470 G + 7471 B + 2^15) >> 16`` on uint8
  (``0.299 R + 0.587 G + 0.114 B`` on floats) and Pillow's blend
  ``degenerate + factor * (image - degenerate)``.

Measured agreement with Pillow 13 on scikit-learn's sample photographs (tests in
``tests/augment/test_functional.py``): identical for the point ops (solarize, posterize,
auto-contrast, equalize, brightness, colour, contrast), and for translate; sharpness differs
by at most 1 grey level on a few pixels; rotate and shear agree except on pixels whose source
coordinate lies within float32 rounding of a pixel boundary (a fraction of a percent of
pixels, each then off by one pixel position).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "affine",
    "auto_contrast",
    "brightness",
    "color",
    "contrast",
    "equalize",
    "identity",
    "posterize",
    "rotate",
    "sharpness",
    "shear_x",
    "shear_y",
    "solarize",
    "translate_x",
    "translate_y",
]

Fill = float | Sequence[float]

#: Offset (in pixels) added to nearest-neighbour source coordinates so that exact ties
#: ``c = k`` resolve to ``floor(c) = k`` as in Pillow (grid_sample rounds half to even).
_TIE_EPS = 1.0 / 1024.0


# ---------------------------------------------------------------------------------------------
# validation and dtype helpers
# ---------------------------------------------------------------------------------------------


def check_images(fn: str, x: object) -> torch.Tensor:
    """A (B, C, H, W) uint8 or floating tensor (TypeError / ValueError otherwise)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: x must be a torch.Tensor; got {type(x).__name__}")
    if x.dtype != torch.uint8 and not x.dtype.is_floating_point:
        raise TypeError(f"{fn}: x must be uint8 (0..255) or floating point (0..1); got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"{fn}: x must have shape (B, C, H, W); got {tuple(x.shape)}")
    return x


def _bound(x: torch.Tensor) -> float:
    return 255.0 if x.dtype == torch.uint8 else 1.0


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _to_work(x: torch.Tensor) -> torch.Tensor:
    return x.to(_work_dtype(x))


def _back(y: torch.Tensor, like: torch.Tensor, *, rounding: str = "trunc") -> torch.Tensor:
    """Clip to the image range and return in ``like``'s dtype (uint8: trunc or round)."""
    y = y.clamp(0.0, _bound(like))
    if like.dtype == torch.uint8:
        y = torch.round(y) if rounding == "round" else torch.floor(y)
    return y.to(like.dtype)


def _back_(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """:func:`_back` (trunc) in place on the temporary ``y``."""
    y.clamp_(0.0, _bound(like))
    if like.dtype == torch.uint8:
        y.floor_()
    return y.to(like.dtype)


def per_sample(
    fn: str,
    name: str,
    value: float | torch.Tensor,
    x: torch.Tensor,
    *,
    low: float | None = None,
    high: float | None = None,
) -> torch.Tensor:
    """``value`` as a (B,) tensor in x's work dtype on x's device, checked against [low, high]."""
    b = x.shape[0]
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            value = value.expand(b)
        if value.dim() != 1 or value.shape[0] != b:
            raise ValueError(f"{fn}: {name} must have shape ({b},) or (); got {tuple(value.shape)}")
        if value.device != x.device:
            raise ValueError(
                f"{fn}: {name} is on {value.device} but x is on {x.device}; move them to one device"
            )
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{fn}: {name} must be a real tensor; got {value.dtype}")
        v = value.to(_work_dtype(x))
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = torch.full((b,), float(value), dtype=_work_dtype(x), device=x.device)
    else:
        raise TypeError(f"{fn}: {name} must be a number or a tensor; got {type(value).__name__}")
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{fn}: {name} must be finite")
    if low is not None and bool((v < low).any()):
        raise ValueError(f"{fn}: {name} must be >= {low}; got min {float(v.min())}")
    if high is not None and bool((v > high).any()):
        raise ValueError(f"{fn}: {name} must be <= {high}; got max {float(v.max())}")
    return v


def _fill_tensor(fn: str, fill: Fill, x: torch.Tensor) -> torch.Tensor:
    """``fill`` as a (1, C, 1, 1) tensor in the work dtype."""
    c = x.shape[1]
    if isinstance(fill, numbers.Real) and not isinstance(fill, bool):
        values = [float(fill)] * c
    elif isinstance(fill, Sequence) and not isinstance(fill, str):
        values = [float(v) for v in fill]
        if len(values) == 1:
            values = values * c
        if len(values) != c:
            raise ValueError(f"{fn}: fill must have 1 or C={c} values; got {len(values)}")
    else:
        raise TypeError(f"{fn}: fill must be a number or a sequence; got {type(fill).__name__}")
    return torch.tensor(values, dtype=_work_dtype(x), device=x.device).view(1, c, 1, 1)


def _gray(xw: torch.Tensor, uint8: bool) -> torch.Tensor:
    """Pillow's luma (B, 1, H, W) of a work-dtype RGB batch (integer formula for uint8)."""
    if xw.shape[1] == 1:
        return xw
    r, g, b = xw[:, 0:1], xw[:, 1:2], xw[:, 2:3]
    if uint8:
        return torch.floor((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536)
    return 0.299 * r + 0.587 * g + 0.114 * b


def _check_rgb_or_gray(fn: str, x: torch.Tensor) -> None:
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{fn}: x must have 1 or 3 channels; got C={x.shape[1]}")


def _blend(
    degenerate: torch.Tensor, xw: torch.Tensor, factor: torch.Tensor, like: torch.Tensor
) -> torch.Tensor:
    """Pillow's ``Image.blend(degenerate, image, factor)``, per-sample factor."""
    f = factor.view(-1, 1, 1, 1)
    # degenerate + f * (xw - degenerate), evaluated in place on one temporary (same rounding).
    out = torch.sub(xw, degenerate)
    out.mul_(f).add_(degenerate)
    return _back_(out, like)


# ---------------------------------------------------------------------------------------------
# point and histogram ops
# ---------------------------------------------------------------------------------------------


def identity(x: torch.Tensor) -> torch.Tensor:
    """Return ``x`` unchanged (the RandAugment op that does nothing)."""
    check_images("identity", x)
    return x


def solarize(x: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Invert every value ``>= threshold`` (``ImageOps.solarize``): ``v -> bound - v``.

    Args:
        x: (B, C, H, W) uint8 or float images.
        threshold: (B,) thresholds in the image's scale (0..255 uint8, 0..1 float).
    """
    fn = "solarize"
    check_images(fn, x)
    bound = _bound(x)
    t = per_sample(fn, "threshold", threshold, x, low=0.0, high=bound)
    xw = _to_work(x)
    out = torch.where(xw >= t.view(-1, 1, 1, 1), bound - xw, xw)
    return out.to(x.dtype)


def posterize(x: torch.Tensor, bits: int | torch.Tensor) -> torch.Tensor:
    """Keep the ``bits`` most significant bits per channel (``ImageOps.posterize``).

    uint8: ``v & ~(2^(8 - bits) - 1)``. Floats: ``floor(v 2^bits)`` clipped to ``2^bits - 1``,
    divided by ``2^bits`` (torchvision v2's rule for ``bits < 8``); ``bits = 8`` leaves floats
    unchanged, where torchvision still quantises them to 256 levels (``tests/peers/``).

    Args:
        x: (B, C, H, W) uint8 or float images.
        bits: (B,) integers in 0..8.
    """
    fn = "posterize"
    check_images(fn, x)
    bv = per_sample(fn, "bits", bits, x, low=0, high=8)
    if bool((bv != torch.round(bv)).any()):
        raise ValueError(f"{fn}: bits must be integers in 0..8")
    bi = bv.to(torch.int64).view(-1, 1, 1, 1)
    if x.dtype == torch.uint8:
        mask = (255 - ((1 << (8 - bi)) - 1)).to(torch.uint8)
        return torch.bitwise_and(x, mask)
    xw = _to_work(x)
    levels = (1 << bi).to(xw.dtype)
    q = torch.minimum(torch.floor(xw * levels), levels - 1) / levels
    return torch.where(bi >= 8, xw, q).to(x.dtype)


def auto_contrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each channel to the full range (``ImageOps.autocontrast``, cutoff 0).

    Per sample and channel with minimum ``lo`` < maximum ``hi``:
    ``v -> (v - lo) * bound / (hi - lo)`` (uint8: Pillow's ``int(v * scale + offset)``);
    constant channels are unchanged.
    """
    fn = "auto_contrast"
    check_images(fn, x)
    bound = _bound(x)
    xw = _to_work(x)
    lo = xw.amin(dim=(2, 3), keepdim=True)
    hi = xw.amax(dim=(2, 3), keepdim=True)
    flat = hi <= lo
    scale = bound / torch.where(flat, torch.ones_like(hi), hi - lo)
    out = xw * scale - lo * scale
    out = torch.where(flat, xw, out)
    return _back(out, x)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Equalise each channel's histogram (``ImageOps.equalize``), per sample and channel.

    Pillow's rule on 256 levels: with histogram ``h``, ``step = (sum(h) - h[last]) // 255``
    (``last``: the highest occupied level) and ``lut[i] = (step // 2 + sum(h[:i])) // step``;
    a channel with one occupied level or ``step = 0`` is unchanged. Float images are
    quantised to ``round(255 v)`` first and returned as ``lut / 255``.
    """
    fn = "equalize"
    check_images(fn, x)
    b, c, h, w = x.shape
    if x.dtype == torch.uint8:
        q = x.to(torch.int64)
    else:
        q = torch.round(_to_work(x).clamp(0.0, 1.0) * 255.0).to(torch.int64)
    q = q.reshape(b * c, h * w)
    offsets = torch.arange(b * c, device=x.device).view(-1, 1) * 256
    hist = torch.bincount((q + offsets).reshape(-1), minlength=b * c * 256).view(b * c, 256)
    levels = torch.arange(256, device=x.device)
    occupied = hist > 0
    last = torch.where(occupied, levels, torch.zeros_like(levels)).amax(dim=1)
    last_count = hist.gather(1, last.view(-1, 1)).squeeze(1)
    step = (hist.sum(dim=1) - last_count) // 255
    keep = (occupied.sum(dim=1) <= 1) | (step == 0)
    safe = torch.where(keep, torch.ones_like(step), step).view(-1, 1)
    before = torch.cumsum(hist, dim=1) - hist
    lut = ((safe // 2 + before) // safe).clamp(0, 255)
    lut = torch.where(keep.view(-1, 1), levels.view(1, -1), lut)
    out = lut.gather(1, q).view(b, c, h, w)
    if x.dtype == torch.uint8:
        return out.to(torch.uint8)
    return (out.to(_work_dtype(x)) / 255.0).to(x.dtype)


# ---------------------------------------------------------------------------------------------
# enhancers (ImageEnhance)
# ---------------------------------------------------------------------------------------------


def brightness(x: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Brightness``: blend with black, ``factor * v`` (1 = unchanged).

    Args:
        x: (B, C, H, W) uint8 or float images.
        factor: (B,) factors >= 0.
    """
    fn = "brightness"
    check_images(fn, x)
    f = per_sample(fn, "factor", factor, x, low=0.0)
    xw = _to_work(x)
    return _blend(torch.zeros_like(xw), xw, f, x)


def color(x: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Color``: blend with the image's greyscale (0 = grey, 1 = unchanged).

    Greyscale (C = 1) images are returned unchanged.

    Args:
        x: (B, C, H, W) uint8 or float images with C in {1, 3}.
        factor: (B,) factors >= 0.
    """
    fn = "color"
    check_images(fn, x)
    _check_rgb_or_gray(fn, x)
    f = per_sample(fn, "factor", factor, x, low=0.0)
    if x.shape[1] == 1:
        return x
    xw = _to_work(x)
    return _blend(_gray(xw, x.dtype == torch.uint8).expand_as(xw), xw, f, x)


def contrast(x: torch.Tensor, factor: float | torch.Tensor, *, grey: str = "luma") -> torch.Tensor:
    """``ImageEnhance.Contrast``: blend with the mean grey level (0 = flat grey, 1 = unchanged).

    The degenerate image is the mean of the luma; on uint8 Pillow rounds it to an integer
    (``int(mean + 0.5)``), and so does this kernel.

    Args:
        x: (B, C, H, W) uint8 or float images; C in {1, 3} with ``grey="luma"``.
        factor: (B,) factors >= 0.
        grey: ``"luma"`` (Pillow: the mean of the luma, defined for grey and RGB images) or
            ``"mean"``: the mean over all channels and pixels, for any channel count (the same
            as ``"luma"`` for one channel; not a Pillow mode).

    Raises:
        ValueError: ``grey="luma"`` with C not in {1, 3}; an unknown ``grey``.
    """
    fn = "contrast"
    check_images(fn, x)
    if grey not in ("luma", "mean"):
        raise ValueError(f"{fn}: grey must be 'luma' or 'mean'; got {grey!r}")
    if grey == "luma":
        _check_rgb_or_gray(fn, x)
    f = per_sample(fn, "factor", factor, x, low=0.0)
    xw = _to_work(x)
    level = _gray(xw, x.dtype == torch.uint8) if grey == "luma" else xw
    mean = level.mean(dim=(1, 2, 3), keepdim=True)
    if x.dtype == torch.uint8:
        mean = torch.floor(mean + 0.5)
    return _blend(mean.expand_as(xw), xw, f, x)


def sharpness(x: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Sharpness``: blend with ``ImageFilter.SMOOTH`` (0 = smooth, 2 = sharper).

    The degenerate image is the 3x3 filter ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`` on the
    interior (rounded on uint8) with the one-pixel border copied from the input, as in Pillow.

    Args:
        x: (B, C, H, W) uint8 or float images.
        factor: (B,) factors >= 0.
    """
    fn = "sharpness"
    check_images(fn, x)
    f = per_sample(fn, "factor", factor, x, low=0.0)
    xw = _to_work(x)
    h, w = x.shape[2], x.shape[3]
    if h < 3 or w < 3:
        return x
    # 3x3 box sum from shifted slices (exact integers on uint8), plus 4x the centre, / 13.
    rows = xw[..., :-2] + xw[..., 1:-1]
    rows += xw[..., 2:]
    smooth = rows[:, :, :-2] + rows[:, :, 1:-1]
    smooth += rows[:, :, 2:]
    smooth.add_(xw[:, :, 1:-1, 1:-1], alpha=4.0).div_(13.0)
    if x.dtype == torch.uint8:
        smooth.round_()
    degenerate = xw.clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth
    return _blend(degenerate, xw, f, x)


# ---------------------------------------------------------------------------------------------
# geometric ops
# ---------------------------------------------------------------------------------------------


def affine(
    x: torch.Tensor,
    matrix: torch.Tensor,
    *,
    fill: Fill = 0.0,
    interpolation: str = "nearest",
) -> torch.Tensor:
    """Resample each image through its own inverse affine map, in one batched ``grid_sample``.

    ``matrix[i] = [[a, b, c], [d, e, f]]`` maps an output position ``(x, y)`` (pixel units,
    pixel ``j`` covering ``[j, j + 1)``) to the input position
    ``(a x + b y + c, d x + e y + f)``: the ``data`` of ``PIL.Image.transform(size, AFFINE,
    data)``. Output pixel ``(j, i)`` reads the input at its centre's image ``(j + .5, i + .5)``:
    the pixel ``floor(.)`` under nearest interpolation (Pillow's rule), or the bilinear blend.
    Outputs whose source lies outside the image get ``fill`` (image scale, one value or C).

    Args:
        x: (B, C, H, W) uint8 or float images.
        matrix: (B, 2, 3) floating inverse maps, in pixel coordinates.
        fill: value for pixels mapped from outside the image.
        interpolation: ``"nearest"`` (exact on uint8) or ``"bilinear"``.
    """
    fn = "affine"
    check_images(fn, x)
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(
            f"{fn}: interpolation must be one of 'nearest', 'bilinear'; got {interpolation!r}"
        )
    b, c, h, w = x.shape
    if not isinstance(matrix, torch.Tensor) or not matrix.dtype.is_floating_point:
        raise TypeError(f"{fn}: matrix must be a floating torch.Tensor of shape (B, 2, 3)")
    if tuple(matrix.shape) != (b, 2, 3):
        raise ValueError(f"{fn}: matrix must have shape ({b}, 2, 3); got {tuple(matrix.shape)}")
    if b == 0:
        return x
    fill_t = _fill_tensor(fn, fill, x)
    xw = _to_work(x)
    m = matrix.to(device=x.device, dtype=torch.float64)
    # pixel -> normalised coordinates (align_corners=False): n = 2 p / S - 1.
    size = torch.tensor([w, h], dtype=torch.float64, device=x.device)
    a = m[:, :, :2] * size.view(1, 1, 2) / size.view(1, 2, 1)
    t = a.sum(dim=2) + 2.0 * m[:, :, 2] / size.view(1, 2) - 1.0
    if interpolation == "nearest":
        t = t + 2.0 * _TIE_EPS / size.view(1, 2)
    # the grid is built in float64 so that source coordinates near pixel boundaries round as
    # in Pillow (which works in double), then cast to the sampling dtype. It is affine_grid's
    # grid (align_corners=False base coordinates), built by broadcasting instead of a bmm.
    xs = _base_coords(w, x.device)
    ys = _base_coords(h, x.device)
    grid = torch.empty(b, h, w, 2, dtype=xw.dtype, device=x.device)
    for k in range(2):
        row = a[:, k, 0].view(b, 1, 1) * xs.view(1, 1, w)
        row = row + (a[:, k, 1].view(b, 1, 1) * ys.view(1, h, 1) + t[:, k].view(b, 1, 1))
        grid[..., k] = row
    zero_fill = not bool(fill_t.any())
    src = xw if zero_fill else torch.cat([xw, torch.ones_like(xw[:, :1])], dim=1)
    sampled = F.grid_sample(
        src,
        grid,
        mode=interpolation,
        padding_mode="zeros",
        align_corners=False,
    )
    if zero_fill:  # out-of-image pixels are already 0 (grid_sample's zero padding)
        out = sampled
    else:
        img, inside = sampled[:, :c], sampled[:, c:]
        out = img + (1.0 - inside) * fill_t
    if x.dtype == torch.uint8:
        return _back(out, x, rounding="round")
    return out.to(x.dtype)


def _base_coords(n: int, device: torch.device) -> torch.Tensor:
    """affine_grid's normalised pixel centres (align_corners=False), float64."""
    if n <= 1:
        return torch.zeros(n, dtype=torch.float64, device=device)
    return torch.linspace(-1.0, 1.0, n, dtype=torch.float64, device=device) * ((n - 1) / n)


def _matrix(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    d: torch.Tensor,
    e: torch.Tensor,
    f: torch.Tensor,
) -> torch.Tensor:
    return torch.stack([torch.stack([a, b, c], 1), torch.stack([d, e, f], 1)], 1)


def rotation_matrix(angle: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse maps (B, 2, 3) of a counter-clockwise rotation by ``angle`` degrees about the
    image centre ``(W / 2, H / 2)``, as ``PIL.Image.rotate(angle)``."""
    rad = -angle.to(torch.float64) * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    cx, cy = width / 2.0, height / 2.0
    zero = torch.zeros_like(rad)
    # p_in = R (p_out - centre) + centre, R = [[cos, sin], [-sin, cos]] (Pillow's matrix)
    tx = cx - (cos * cx + sin * cy)
    ty = cy - (-sin * cx + cos * cy)
    return _matrix(cos, sin, tx + zero, -sin, cos, ty + zero)


def shear_matrix(factor: torch.Tensor, axis: str) -> torch.Tensor:
    """Inverse maps (B, 2, 3) of torchvision's RandAugment shear (centre at the origin):
    ``x_in = x + factor * y`` (axis ``"x"``) or ``y_in = y + factor * x`` (axis ``"y"``)."""
    s = factor.to(torch.float64)
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    if axis == "x":
        return _matrix(one, s, zero, zero, one, zero)
    return _matrix(one, zero, zero, s, one, zero)


def translate_matrix(pixels: torch.Tensor, axis: str) -> torch.Tensor:
    """Inverse maps (B, 2, 3) of a translation by ``pixels`` (positive: content moves right
    or down): ``x_in = x - pixels``."""
    p = pixels.to(torch.float64)
    one, zero = torch.ones_like(p), torch.zeros_like(p)
    if axis == "x":
        return _matrix(one, zero, -p, zero, one, zero)
    return _matrix(one, zero, zero, zero, one, -p)


def rotate(
    x: torch.Tensor,
    angle: float | torch.Tensor,
    *,
    fill: Fill = 0.0,
    interpolation: str = "nearest",
) -> torch.Tensor:
    """Rotate counter-clockwise by ``angle`` (B,) degrees about the centre (``Image.rotate``)."""
    check_images("rotate", x)
    a = per_sample("rotate", "angle", angle, x)
    m = rotation_matrix(a, x.shape[2], x.shape[3])
    return affine(x, m, fill=fill, interpolation=interpolation)


def shear_x(
    x: torch.Tensor,
    factor: float | torch.Tensor,
    *,
    fill: Fill = 0.0,
    interpolation: str = "nearest",
) -> torch.Tensor:
    """Shear along x: output ``(x, y)`` reads input ``(x + factor * y, y)`` (factor (B,))."""
    check_images("shear_x", x)
    s = per_sample("shear_x", "factor", factor, x)
    return affine(x, shear_matrix(s, "x"), fill=fill, interpolation=interpolation)


def shear_y(
    x: torch.Tensor,
    factor: float | torch.Tensor,
    *,
    fill: Fill = 0.0,
    interpolation: str = "nearest",
) -> torch.Tensor:
    """Shear along y: output ``(x, y)`` reads input ``(x, y + factor * x)`` (factor (B,))."""
    check_images("shear_y", x)
    s = per_sample("shear_y", "factor", factor, x)
    return affine(x, shear_matrix(s, "y"), fill=fill, interpolation=interpolation)


def translate_x(
    x: torch.Tensor,
    pixels: float | torch.Tensor,
    *,
    fill: Fill = 0.0,
    interpolation: str = "nearest",
) -> torch.Tensor:
    """Move the content right by ``pixels`` (B,) (negative: left)."""
    check_images("translate_x", x)
    p = per_sample("translate_x", "pixels", pixels, x)
    return affine(x, translate_matrix(p, "x"), fill=fill, interpolation=interpolation)


def translate_y(
    x: torch.Tensor,
    pixels: float | torch.Tensor,
    *,
    fill: Fill = 0.0,
    interpolation: str = "nearest",
) -> torch.Tensor:
    """Move the content down by ``pixels`` (B,) (negative: up)."""
    check_images("translate_y", x)
    p = per_sample("translate_y", "pixels", pixels, x)
    return affine(x, translate_matrix(p, "y"), fill=fill, interpolation=interpolation)
