"""Random-field augmentations: per-pixel warp and colour parameters from Gaussian random fields.

Mansfield, Afkanpour, Morningstar, Singhal. Random Field Augmentations for Self-Supervised
Representation Learning. NeurIPS 2023 Workshop on Symmetry and Geometry in Neural
Representations (PMLR 228), arXiv 2311.03629.

The paper replaces the global parameter ``theta`` of an affine or colour transform with a
field ``theta(u, v)`` that varies smoothly from pixel to pixel. Each field here is

    theta(u, v) = strength * z(u, v),   z: a stationary Gaussian random field with unit variance
    and covariance  E[z(p) z(p + r)] = exp(-|r|^2 / (2 length_scale^2)),

made by filtering white noise in Fourier space with ``G(f) = exp(-pi^2 length_scale^2 |f|^2)``
(``f`` in cycles per pixel) and normalising to unit variance, ``z = IDFT(W G) / sqrt(mean
|G|^2)`` with ``W`` the DFT of white noise: a convolution of per-pixel noise with a Gaussian
kernel of std ``length_scale / sqrt(2)``. Since the DFT of white noise is itself white, the
spectrum ``W`` is drawn directly, and only on the band where ``G`` exceeds 1e-6 of its peak
(modes below carry less than 1e-12 of the variance); the inverse DFT of that band is one
batched pair of matrix products for every sample and field type of the batch, on the
params' device. This is the card's field in distribution (the covariance is checked exactly
and on draws), and much cheaper than a full-grid FFT for smooth fields: the band of a field
of length scale ``l`` has about ``2.4 / l`` of the frequencies per axis. (Measured on a loaded
2-core CPU, 224 x 224, 8 fields, l = 16: noise + full-grid ``rfft2``/``irfft2`` took 7.7 s for
B = 64; the band-limited draw takes 4.6 s for B = 256.)

Choice (card vs card): the card says "smooth the noise with a Gaussian kernel of std l" and,
as a test, "its autocorrelation at lag l is about exp(-1/2)". The two disagree (a kernel of std
``l`` gives a correlation of ``exp(-1/4)`` at lag ``l``); ``length_scale`` here is the field's
correlation length, so the second statement holds (tested exactly on the spectrum and
empirically on draws). Limits, as on the card: ``length_scale -> 0`` gives per-pixel noise;
``length_scale -> inf`` gives a field that is constant over the image (a global transform,
spatial std -> 0).

Fields (units in brackets; inactive fields, strength 0, are not drawn and come back as None):

- ``translation`` (B, 2, H, W) [pixels]: (dx, dy), content moves right/down by the field;
- ``rotation`` (B, H, W) [degrees]: counter-clockwise about the image centre;
- ``scale`` (B, H, W) [log zoom]: content magnified by ``exp(scale)`` about the image centre;
- ``brightness``, ``contrast``, ``saturation`` (B, H, W): factor ``1 + field`` (clamped at 0)
  of Pillow's ``ImageEnhance`` blends, per pixel;
- ``hue`` (B, H, W) [turns]: rotation of the chroma plane (YIQ) by ``2 pi field``.

The warp maps output pixel centre ``p = (j + 0.5, i + 0.5)`` to the input position
``c + R(theta(p)) (p - c - t(p)) / exp(s(p))`` (``c = (W / 2, H / 2)``, ``R`` Pillow's rotation
matrix as in :func:`posneg.augment.functional.rotation_matrix`), i.e. the global affine of
:mod:`posneg.augment.functional` with its parameters evaluated at each output pixel, and
resamples the batch with one ``grid_sample``. With constant fields it equals
:func:`posneg.augment.functional.affine` (tested). Note that a rotation or scale field moves a
pixel at distance ``r`` from the centre by about ``r * theta``: with a short length scale these
fields fold the image; keep their strength small or their length scale long.

Colour fields are applied after the warp, in the order brightness, contrast, saturation, hue,
each clipped to the image range as Pillow/torchvision's ``ColorJitter`` do (torchvision draws the
order at random; here it is fixed). With constant fields brightness, contrast and saturation
equal :func:`posneg.augment.functional.brightness` / ``contrast`` / ``color`` on float images
(tested). Hue is a YIQ chroma rotation (luma kept exactly), not the HSV hue shift of
torchvision: it is linear per pixel and vectorises; the two differ.

[unverified], searched on 2026-11-29 and not found: public code of the paper (public-code
index: repository names containing ``random-field-aug``, ``random_field_aug`` or
``randomfieldaug``; code and issue search for the method and the authors' names returned only
unrelated "random field" augmentations) and the paper's body (web-page search reached only
abstract pages: arxiv.org/abs/2311.03629, arxiv-vanity, huggingface.co/papers and paper
listings), so its amplitudes and length scales were not read. The defaults (mild: 2 px, 3
degrees, 3% zoom, 10% colour, 0.02 turn hue, length scale 16 px) are chosen here. Shear fields
(in the paper's figure) and the card's optional global offset are not implemented.

Randomness: only in :func:`sample_random_field_params` (``generator=`` honoured; one
``torch.randn`` call for the band coefficients of the K active field channels, in the order
of :data:`FIELDS`, ``translation`` counting two). CPU and CUDA generators give different
streams, so a seed gives different fields on each device type; replaying params gives the same
output on a device.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg.augment import functional as AF
from posneg.augment.functional import Fill

__all__ = [
    "FIELDS",
    "RandomField",
    "RandomFieldParams",
    "apply_random_field",
    "gaussian_random_fields",
    "sample_random_field_params",
]

CITATION = """
@inproceedings{mansfield2023randomfield,
  title     = {Random Field Augmentations for Self-Supervised Representation Learning},
  author    = {Mansfield, Philip Andrew and Afkanpour, Arash and Morningstar, Warren Richard
               and Singhal, Karan},
  booktitle = {Proceedings of the 2nd NeurIPS Workshop on Symmetry and Geometry in Neural
               Representations},
  series    = {Proceedings of Machine Learning Research},
  volume    = {228},
  pages     = {292--302},
  year      = {2024},
  eprint    = {2311.03629},
  archivePrefix = {arXiv}
}
"""

#: The field types, in draw order.
FIELDS: tuple[str, ...] = (
    "translation",
    "rotation",
    "scale",
    "brightness",
    "contrast",
    "saturation",
    "hue",
)
_GEOMETRIC = ("translation", "rotation", "scale")
_COLOUR = ("brightness", "contrast", "saturation", "hue")
_INTERPOLATIONS = ("bilinear", "nearest")
_PADDINGS = ("reflection", "border", "fill")

#: Defaults chosen here (mild settings; the paper's values could not be read, see the module
#: docstring) [unverified].
DEFAULT_STRENGTHS: dict[str, float] = {
    "translation": 2.0,
    "rotation": 3.0,
    "scale": 0.03,
    "brightness": 0.1,
    "contrast": 0.1,
    "saturation": 0.1,
    "hue": 0.02,
}
DEFAULT_LENGTH_SCALE = 16.0


@dataclass(frozen=True)
class RandomFieldParams:
    """One draw of per-pixel fields for a batch of (B, C, H, W) images.

    Every attribute is None (field not used) or a floating tensor on one device:

    Attributes:
        translation: (B, 2, H, W) displacement (dx, dy) in pixels; content moves by it.
        rotation: (B, H, W) counter-clockwise angle in degrees, about the image centre.
        scale: (B, H, W) log zoom: content magnified by ``exp(scale)`` about the centre.
        brightness: (B, H, W): brightness factor ``1 + brightness`` (clamped at 0).
        contrast: (B, H, W): contrast factor ``1 + contrast`` (clamped at 0).
        saturation: (B, H, W): saturation factor ``1 + saturation`` (clamped at 0).
        hue: (B, H, W): chroma rotation in turns (1 = a full turn).
    """

    translation: torch.Tensor | None = None
    rotation: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    brightness: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    saturation: torch.Tensor | None = None
    hue: torch.Tensor | None = None


# ---------------------------------------------------------------------------------------------
# the fields
# ---------------------------------------------------------------------------------------------


def _pad(n: int, ell: float) -> int:
    """Padding of the periodic frequency lattice so that opposite edges are not correlated
    (3 length scales, at most the image size: beyond that the field is nearly constant)."""
    return min(math.ceil(3.0 * ell), n)


#: Modes whose per-axis transfer ``exp(-pi^2 l^2 f^2)`` is below this are not drawn.
_CUTOFF = 1e-6


def _axis(n_lattice: int, ell: torch.Tensor, *, half: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One axis of the band: kept frequencies and per-field amplitudes.

    Returns ``(f, a)``: ``f`` (M,) frequencies in cycles per pixel of the lattice of period
    ``n_lattice`` (``fftfreq``; ``rfftfreq`` when ``half``) whose transfer exceeds
    :data:`_CUTOFF` for the shortest length scale, and ``a`` (K, M) float64 with
    ``a = g / sqrt(sum over the full lattice of g^2)`` (times ``sqrt(2)`` on the half axis,
    except at 0 and Nyquist, for the mode pairs ``k, -k``).
    """
    dev = ell.device
    full = torch.fft.fftfreq(n_lattice, device=dev, dtype=torch.float64)
    f = torch.fft.rfftfreq(n_lattice, device=dev, dtype=torch.float64) if half else full
    f_cut = math.sqrt(math.log(1.0 / _CUTOFF)) / (math.pi * float(ell.min()))
    f = f[f.abs() <= f_cut]
    e = ell.view(-1, 1)
    norm = torch.exp(-((math.pi * e * full) ** 2)).pow(2).sum(1, keepdim=True).sqrt()
    a = torch.exp(-((math.pi * e * f) ** 2)) / norm
    if half:
        paired = (f > 0) & (f < 0.5)
        one = torch.ones((), dtype=torch.float64, device=dev)
        a = a * torch.where(paired, math.sqrt(2.0) * one, one)
    return f, a


def _band(
    height: int, width: int, length_scales: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The random Fourier modes behind :func:`gaussian_random_fields`.

    The field is ``z(y, x) = sum_k s_k (a_k cos t_k + b_k sin t_k)``,
    ``t_k = 2 pi (fy_k y + fx_k x)``, ``a_k, b_k ~ N(0, 1)``, over ``fy`` (all signs) and
    ``fx >= 0`` on the lattice of periods ``(height + pad, width + pad)``, with
    ``s_k = ay[fy_k] ax[fx_k]``. ``sum_k s_k^2 cos(2 pi f_k . r)`` is then the covariance: the
    DFT of the normalised power ``|G|^2`` (unit variance at r = 0), i.e. the same distribution
    as white noise filtered by ``G`` in Fourier space, minus the modes below :data:`_CUTOFF`.

    Returns:
        ``fy`` (My,), ``ay`` (K, My), ``fx`` (Mx,), ``ax`` (K, Mx), float64.
    """
    ell_max = float(length_scales.max())
    fy, ay = _axis(height + _pad(height, ell_max), length_scales, half=False)
    fx, ax = _axis(width + _pad(width, ell_max), length_scales, half=True)
    return fy, ay, fx, ax


def gaussian_random_fields(
    batch: int,
    height: int,
    width: int,
    length_scales: list[float] | tuple[float, ...],
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Unit-variance Gaussian random fields, ``K = len(length_scales)`` per sample.

    Field ``k`` has covariance ``exp(-|r|^2 / (2 length_scales[k]^2))`` (see the module
    docstring): white noise filtered in Fourier space by ``G(f) = exp(-pi^2 l^2 |f|^2)``. The
    white spectrum is drawn directly (the DFT of white noise is white), only on the band where
    ``G`` exceeds ``1e-6`` of its peak, and brought to the pixel grid by a batched inverse DFT
    written as two matrix products (rows, then columns; no Python loop over samples or
    fields). A smooth field has a narrow band, so this costs far less than a full-grid FFT;
    the frequency lattice is that of the image padded by ``min(ceil(3 l_max), size)`` per axis,
    so opposite edges are not correlated.

    Args:
        batch: B >= 0.
        height, width: field size (>= 1).
        length_scales: K > 0 correlation lengths in pixels.
        device: where the fields are built (None: CPU).
        generator: drawn from (None: torch's global RNG); one ``torch.randn`` call of shape
            (B, K, My, Mx, 2) for the band's (cos, sin) coefficients.

    Returns:
        (B, K, height, width) float32.
    """
    fn = "gaussian_random_fields"
    b = _checks.check_int(fn, "batch", batch, min_value=0)
    h = _checks.check_int(fn, "height", height, min_value=1)
    w = _checks.check_int(fn, "width", width, min_value=1)
    ells = [_checks.check_positive(fn, "length_scales", v) for v in length_scales]
    dev = torch.device(device) if device is not None else torch.device("cpu")
    _checks.check_generator(fn, generator, dev)
    k = len(ells)
    if b == 0 or k == 0:
        return torch.zeros(b, k, h, w, device=dev)
    fy, ay, fx, ax = _band(h, w, torch.tensor(ells, dtype=torch.float64, device=dev))
    coef = torch.randn(
        (b, k, fy.numel(), fx.numel(), 2), device=dev, dtype=torch.float32, generator=generator
    )
    # z = sum_{ky,kx} ay ax (a cos(t_y + t_x) + b sin(t_y + t_x)), expanded by the angle-sum
    # formulas into two real matrix products: rows (over fy), then columns (over fx).
    ty = 2.0 * math.pi * torch.arange(h, device=dev, dtype=torch.float64).view(-1, 1) * fy
    ay_ = ay.unsqueeze(1)  # (K, 1, My)
    rows = torch.cat([ay_ * torch.cos(ty), ay_ * torch.sin(ty)], dim=2).to(torch.float32)
    a, b_ = coef[..., 0], coef[..., 1]  # (B, K, My, Mx)
    mix = torch.cat([torch.cat([a, b_], dim=3), torch.cat([b_, -a], dim=3)], dim=2)
    pq = torch.matmul(rows, mix)  # (B, K, h, 2 Mx): [sum ay (a cos + b sin), (b cos - a sin)]
    tx = 2.0 * math.pi * fx.view(-1, 1) * torch.arange(w, device=dev, dtype=torch.float64)
    ax_ = ax.unsqueeze(2)  # (K, Mx, 1)
    cols = torch.cat([ax_ * torch.cos(tx), ax_ * torch.sin(tx)], dim=1).to(torch.float32)
    return torch.einsum("bkhm,kmw->bkhw", pq, cols)


def _strengths(fn: str, values: Mapping[str, object]) -> dict[str, float]:
    return {name: _checks.check_nonnegative(fn, name, values[name]) for name in FIELDS}


def _length_scales(
    fn: str, length_scale: float | Mapping[str, float], active: list[str]
) -> dict[str, float]:
    """Per-field length scales: one number for all, or a mapping naming every active field."""
    if isinstance(length_scale, Mapping):
        unknown = sorted(set(length_scale) - set(FIELDS))
        if unknown:
            raise ValueError(
                f"{fn}: length_scale keys must be among {', '.join(FIELDS)}; got {unknown}"
            )
        missing = [name for name in active if name not in length_scale]
        if missing:
            raise ValueError(
                f"{fn}: length_scale must give a value for every field with strength > 0; "
                f"missing {missing}"
            )
        return {
            name: _checks.check_positive(fn, f"length_scale[{name!r}]", v)
            for name, v in length_scale.items()
        }
    ell = _checks.check_positive(fn, "length_scale", length_scale)
    return dict.fromkeys(FIELDS, ell)


def sample_random_field_params(
    batch: int,
    height: int,
    width: int,
    *,
    translation: float = DEFAULT_STRENGTHS["translation"],
    rotation: float = DEFAULT_STRENGTHS["rotation"],
    scale: float = DEFAULT_STRENGTHS["scale"],
    brightness: float = DEFAULT_STRENGTHS["brightness"],
    contrast: float = DEFAULT_STRENGTHS["contrast"],
    saturation: float = DEFAULT_STRENGTHS["saturation"],
    hue: float = DEFAULT_STRENGTHS["hue"],
    length_scale: float | Mapping[str, float] = DEFAULT_LENGTH_SCALE,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> RandomFieldParams:
    """Draw per-sample, per-pixel fields: ``field = strength * z``, ``z`` a unit GRF.

    Args:
        batch: B >= 0.
        height, width: image size.
        translation: std of the displacement fields dx and dy, in pixels (>= 0).
        rotation: std of the angle field, in degrees (>= 0).
        scale: std of the log-zoom field (>= 0).
        brightness, contrast, saturation: std of the factor offsets (>= 0).
        hue: std of the hue field, in turns (>= 0).
        length_scale: correlation length in pixels (> 0), one number for every field or a
            mapping ``{field name: length}`` covering every field with strength > 0.
        device: where the fields live (None: CPU).
        generator: drawn from (None: torch's global RNG).

    Returns:
        :class:`RandomFieldParams`; fields with strength 0 are None (not drawn).

    Raises:
        ValueError: negative strength, length scale <= 0, unknown or missing mapping keys.
        TypeError: non-numeric arguments, generator not a torch.Generator.
    """
    fn = "sample_random_field_params"
    b = _checks.check_int(fn, "batch", batch, min_value=0)
    h = _checks.check_int(fn, "height", height, min_value=1)
    w = _checks.check_int(fn, "width", width, min_value=1)
    strength = _strengths(
        fn,
        {
            "translation": translation,
            "rotation": rotation,
            "scale": scale,
            "brightness": brightness,
            "contrast": contrast,
            "saturation": saturation,
            "hue": hue,
        },
    )
    active = [name for name in FIELDS if strength[name] > 0]
    ells = _length_scales(fn, length_scale, active)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    _checks.check_generator(fn, generator, dev)
    channels = [name for name in active for _ in range(2 if name == "translation" else 1)]
    z = gaussian_random_fields(
        b, h, w, [ells[name] for name in channels], device=dev, generator=generator
    )
    out: dict[str, torch.Tensor] = {}
    k = 0
    for name in active:
        n = 2 if name == "translation" else 1
        field = z[:, k : k + n] * strength[name]
        out[name] = field if name == "translation" else field[:, 0]
        k += n
    return RandomFieldParams(**out)


# ---------------------------------------------------------------------------------------------
# the kernel
# ---------------------------------------------------------------------------------------------


def _check_params(fn: str, x: torch.Tensor, params: object) -> RandomFieldParams:
    if not isinstance(params, RandomFieldParams):
        raise TypeError(f"{fn}: params must be RandomFieldParams; got {type(params).__name__}")
    b, _, h, w = x.shape
    for f in fields(params):
        t = getattr(params, f.name)
        if t is None:
            continue
        expected = (b, 2, h, w) if f.name == "translation" else (b, h, w)
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{fn}: params.{f.name} must be a floating tensor or None")
        if tuple(t.shape) != expected:
            raise ValueError(
                f"{fn}: params.{f.name} must have shape {expected} for x of shape "
                f"{tuple(x.shape)}; got {tuple(t.shape)}"
            )
        if t.device != x.device:
            raise ValueError(
                f"{fn}: params.{f.name} is on {t.device} but x is on {x.device}; "
                "move them to one device"
            )
    return params


def _warp(
    xw: torch.Tensor,
    params: RandomFieldParams,
    *,
    interpolation: str,
    padding: str,
    fill_t: torch.Tensor | None,
) -> torch.Tensor:
    """Resample ``xw`` (work dtype) through the per-pixel inverse map, one grid_sample."""
    b, c, h, w = xw.shape
    dt, dev = xw.dtype, xw.device
    # Work in normalised coordinates (align_corners=False): n = 2 p / S - 1 = (p - S / 2) sx,
    # so the image centre is 0 and every step of the map is linear in (u, v).
    sx, sy = 2.0 / w, 2.0 / h
    u = ((torch.arange(w, dtype=dt, device=dev) + (0.5 - w / 2.0)) * sx).view(1, 1, w)
    v = ((torch.arange(h, dtype=dt, device=dev) + (0.5 - h / 2.0)) * sy).view(1, h, 1)
    u, v = u.expand(b, h, w), v.expand(b, h, w)
    if params.translation is not None:
        t = params.translation.to(dt)
        u, v = torch.sub(u, t[:, 0], alpha=sx), torch.sub(v, t[:, 1], alpha=sy)
    if params.rotation is not None:
        rad = params.rotation.to(dt) * (-math.pi / 180.0)
        cos, sin = torch.cos(rad), torch.sin(rad)
        # pixel-space rotation (u_pix = u / sx): u' = cos u + sin v (sx / sy), etc.
        u, v = (
            torch.addcmul(cos * u, sin, v, value=sx / sy),
            torch.addcmul(cos * v, sin, u, value=-sy / sx),
        )
    if params.scale is not None:
        shrink = torch.exp(-params.scale.to(dt))
        u, v = u * shrink, v * shrink
    grid = torch.stack([u, v], dim=3)
    if fill_t is None:
        mode = "reflection" if padding == "reflection" else "border"
        return F.grid_sample(xw, grid, mode=interpolation, padding_mode=mode, align_corners=False)
    ones = torch.ones(b, 1, h, w, dtype=dt, device=dev)
    sampled = F.grid_sample(
        torch.cat([xw, ones], dim=1),
        grid,
        mode=interpolation,
        padding_mode="zeros",
        align_corners=False,
    )
    return sampled[:, :c] + (1.0 - sampled[:, c:]) * fill_t


#: RGB -> YIQ (NTSC); the Y row is the luma of :func:`posneg.augment.functional._gray`.
_YIQ = (
    (0.299, 0.587, 0.114),
    (0.595716, -0.274453, -0.321263),
    (0.211456, -0.522591, 0.311135),
)


def _yiq(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB -> YIQ (3, 3) and its inverse."""
    t = torch.tensor(_YIQ, dtype=torch.float64)
    return t.to(dtype=dtype, device=device), torch.linalg.inv(t).to(dtype=dtype, device=device)


def _mix_channels(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``m`` (3, 3) applied to the channels of ``x`` (B, 3, H, W) (a batched matmul)."""
    b, c, h, w = x.shape
    return torch.matmul(m, x.reshape(b, c, h * w)).view(b, c, h, w)


def _colour(xw: torch.Tensor, params: RandomFieldParams, bound: float) -> torch.Tensor:
    """Per-pixel Pillow-style blends (clipped after each) and the YIQ hue rotation.

    Blends are ``lerp(degenerate, x, factor)`` = ``degenerate + factor (x - degenerate)``;
    every step returns a new tensor (clipped in place), so ``xw`` itself is never written.
    """
    dt = xw.dtype
    rgb = xw.shape[1] == 3

    def factor(field: torch.Tensor) -> torch.Tensor:
        return torch.add(field.to(dt), 1.0).clamp_min_(0.0).unsqueeze(1)

    if params.brightness is not None:
        xw = (xw * factor(params.brightness)).clamp_(0.0, bound)
    if params.contrast is not None:
        mean = AF._gray(xw, False).mean(dim=(1, 2, 3), keepdim=True)
        xw = torch.lerp(mean.expand_as(xw), xw, factor(params.contrast)).clamp_(0.0, bound)
    if params.saturation is not None and rgb:
        grey = AF._gray(xw, False)
        xw = torch.lerp(grey.expand_as(xw), xw, factor(params.saturation)).clamp_(0.0, bound)
    if params.hue is not None and rgb:
        to_yiq, from_yiq = _yiq(dt, xw.device)
        yiq = _mix_channels(to_yiq, xw)
        i, q = yiq[:, 1], yiq[:, 2]
        phi = params.hue.to(dt) * (2.0 * math.pi)
        cos, sin = torch.cos(phi), torch.sin(phi)
        rotated = torch.stack(
            [yiq[:, 0], torch.addcmul(cos * i, sin, q, value=-1.0), torch.addcmul(cos * q, sin, i)],
            dim=1,
        )
        xw = _mix_channels(from_yiq, rotated).clamp_(0.0, bound)
    return xw


def apply_random_field(
    x: torch.Tensor,
    params: RandomFieldParams,
    *,
    interpolation: str = "bilinear",
    padding: str = "reflection",
    fill: Fill = 0.0,
) -> torch.Tensor:
    """Apply drawn fields: the per-pixel warp (one ``grid_sample``), then the colour fields.

    Deterministic: the same params give the same output. Vectorised over the batch. Fields that
    are None are skipped, so params with every field None return ``x`` itself (exact identity).

    Args:
        x: (B, C, H, W) uint8 (0..255) or float (0..1) images. Brightness works for any C;
            contrast needs C in {1, 3}; saturation and hue act on C = 3 and leave C = 1 as is.
        params: from :func:`sample_random_field_params` for this B, H, W (or built by hand).
        interpolation: ``"bilinear"`` (default) or ``"nearest"`` for the warp.
        padding: where the warp reads outside the image: ``"reflection"`` (default),
            ``"border"`` (edge pixels) or ``"fill"`` (the value ``fill``, image scale).
        fill: value for ``padding="fill"`` (one value or C values).

    Returns:
        (B, C, H, W) tensor of x's dtype on x's device (uint8 results rounded; float16/bfloat16
        computed in float32). Colour fields clip to [0, 1] (floats) or [0, 255] (uint8).

    Raises:
        TypeError: x not uint8/floating, params not RandomFieldParams or a field not floating.
        ValueError: x not 4-D, a field's shape not matching x, fields on another device, bad
            interpolation/padding, colour fields other than brightness with C not in {1, 3}.

    Example:
        >>> x = torch.rand(4, 3, 32, 32)
        >>> p = sample_random_field_params(4, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> apply_random_field(x, p).shape
        torch.Size([4, 3, 32, 32])
    """
    fn = "apply_random_field"
    AF.check_images(fn, x)
    _checks.check_choice(fn, "interpolation", interpolation, _INTERPOLATIONS)
    _checks.check_choice(fn, "padding", padding, _PADDINGS)
    params = _check_params(fn, x, params)
    geometric = any(getattr(params, n) is not None for n in _GEOMETRIC)
    colour = any(getattr(params, n) is not None for n in _COLOUR)
    needs_luma = any(getattr(params, n) is not None for n in ("contrast", "saturation", "hue"))
    if needs_luma and x.shape[1] not in (1, 3):
        raise ValueError(
            f"{fn}: contrast, saturation and hue fields need 1 or 3 channels; got C={x.shape[1]}"
        )
    fill_t = AF._fill_tensor(fn, fill, x) if padding == "fill" else None
    if x.shape[0] == 0 or not (geometric or colour):
        return x
    xw = AF._to_work(x)
    if geometric:
        xw = _warp(xw, params, interpolation=interpolation, padding=padding, fill_t=fill_t)
    if colour:
        xw = _colour(xw, params, AF._bound(x))
    if x.dtype == torch.uint8:
        return AF._back(xw, x, rounding="round")
    return xw.to(x.dtype)


# ---------------------------------------------------------------------------------------------
# the module
# ---------------------------------------------------------------------------------------------


class RandomField(nn.Module):
    """Random-field augmentation: per-sample, per-pixel warp and colour fields (one batched
    inverse DFT, one ``grid_sample``).

    Mansfield, Afkanpour, Morningstar, Singhal. Random Field Augmentations for Self-Supervised
    Representation Learning. NeurIPS 2023 workshop (PMLR 228), arXiv 2311.03629.

    Each field is ``strength * z`` with ``z`` a unit-variance Gaussian random field of
    correlation length ``length_scale`` (covariance ``exp(-r^2 / (2 length_scale^2))``);
    ``length_scale -> inf`` recovers the global transform (random affine and colour jitter),
    ``length_scale -> 0`` per-pixel noise; ``strength = 0`` disables a field (exact identity
    when all are 0). See :mod:`posneg.augment.random_field` for the warp and colour formulas,
    the choice made where the card contradicts itself, and what is unverified (the defaults).

    Args:
        translation: displacement std in pixels.
        rotation: angle std in degrees (about the image centre).
        scale: log-zoom std.
        brightness, contrast, saturation: factor-offset stds (factor ``1 + field``).
        hue: hue std in turns.
        length_scale: correlation length in pixels, one for all fields or a mapping per field.
        interpolation: ``"bilinear"`` or ``"nearest"`` for the warp.
        padding: ``"reflection"``, ``"border"`` or ``"fill"``.
        fill: value for ``padding="fill"`` (image scale).

    Example:
        >>> aug = RandomField(translation=3.0, rotation=0.0, length_scale=8.0)
        >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
        >>> aug(x, generator=torch.Generator().manual_seed(0)).dtype
        torch.uint8
    """

    def __init__(
        self,
        translation: float = DEFAULT_STRENGTHS["translation"],
        rotation: float = DEFAULT_STRENGTHS["rotation"],
        scale: float = DEFAULT_STRENGTHS["scale"],
        brightness: float = DEFAULT_STRENGTHS["brightness"],
        contrast: float = DEFAULT_STRENGTHS["contrast"],
        saturation: float = DEFAULT_STRENGTHS["saturation"],
        hue: float = DEFAULT_STRENGTHS["hue"],
        *,
        length_scale: float | Mapping[str, float] = DEFAULT_LENGTH_SCALE,
        interpolation: str = "bilinear",
        padding: str = "reflection",
        fill: float | list[float] = 0.0,
    ) -> None:
        super().__init__()
        fn = "RandomField"
        s = _strengths(
            fn,
            {
                "translation": translation,
                "rotation": rotation,
                "scale": scale,
                "brightness": brightness,
                "contrast": contrast,
                "saturation": saturation,
                "hue": hue,
            },
        )
        self.translation, self.rotation, self.scale = s["translation"], s["rotation"], s["scale"]
        self.brightness, self.contrast = s["brightness"], s["contrast"]
        self.saturation, self.hue = s["saturation"], s["hue"]
        active = [name for name in FIELDS if s[name] > 0]
        _length_scales(fn, length_scale, active)
        self.length_scale: float | dict[str, float] = (
            {k: float(v) for k, v in length_scale.items()}
            if isinstance(length_scale, Mapping)
            else float(length_scale)
        )
        self.interpolation = _checks.check_choice(
            fn, "interpolation", interpolation, _INTERPOLATIONS
        )
        self.padding = _checks.check_choice(fn, "padding", padding, _PADDINGS)
        if isinstance(fill, numbers.Real) and not isinstance(fill, bool):
            self.fill: float | list[float] = float(fill)
        elif isinstance(fill, (list, tuple)):
            self.fill = [float(_checks.check_real(fn, "fill", v)) for v in fill]
        else:
            raise TypeError(f"{fn}: fill must be a number or a list; got {type(fill).__name__}")

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a (B, C, H, W) uint8 or float batch; returns the same shape and dtype."""
        fn = "RandomField"
        AF.check_images(fn, x)
        _checks.check_generator(fn, generator, x.device)
        params = sample_random_field_params(
            x.shape[0],
            x.shape[2],
            x.shape[3],
            translation=self.translation,
            rotation=self.rotation,
            scale=self.scale,
            brightness=self.brightness,
            contrast=self.contrast,
            saturation=self.saturation,
            hue=self.hue,
            length_scale=self.length_scale,
            device=x.device,
            generator=generator,
        )
        return apply_random_field(
            x, params, interpolation=self.interpolation, padding=self.padding, fill=self.fill
        )

    def extra_repr(self) -> str:
        return (
            f"translation={self.translation}, rotation={self.rotation}, scale={self.scale}, "
            f"brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue}, "
            f"length_scale={self.length_scale!r}, interpolation={self.interpolation!r}, "
            f"padding={self.padding!r}, fill={self.fill!r}"
        )
