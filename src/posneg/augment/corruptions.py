"""MedMNIST-C corruptions with five severities, and the augmentation that draws one per sample.

Di Salvo, Doerrich, Ledig. MedMNIST-C: Comprehensive benchmark and improved classifier
robustness by simulating realistic image corruptions. arXiv 2406.17536, 2024.

Formulas follow the MedMNIST-C card (image scaled to [0, 1], corrupted, clipped):
gaussian ``x + N(0, c^2)``; speckle ``x + x N(0, c^2)``; shot ``Poisson(x c) / c``; impulse
salt-and-pepper with amount ``c`` (per value, half salt, half pepper); pixelate: box
down-scale by ``c`` then box up-scale; JPEG at quality ``c``; defocus: disk of radius
``r`` smoothed by a Gaussian of std ``a``; motion: a one-sided line of Gaussian weights
(radius ``r``, std ``s``) at a random angle in +-45 degrees, built in code (ImageMagick's
motion blur in the original); Gaussian blur of std ``c``; brightness/contrast: Pillow
``ImageEnhance`` factor ``c`` (:mod:`posneg.augment.functional`, equal to Pillow on uint8);
saturate: ``c`` added to the HSV saturation; gamma: ``x ** c``.

Severity values: the official per-dataset lists (``medmnistc/corruptions/registry.py``) could
not be read here (no network); the values in :data:`SEVERITIES` are ImageNet-C's (Hendrycks and
Dietterich, 2019, from which MedMNIST-C derives its noises and blurs) and, for JPEG, the card's
PathMNIST list ``[50, 30, 15, 10, 7]``; enhancement and gamma lists are chosen here
[unverified against the registry]. Spatial parameters (blur radii) are given for 224 x 224 and
scaled by ``min(H, W) / 224``. Not implemented: zoom blur, and the task-specific corruptions
that need asset files or OpenCV (stain deposit, bubble, characters) or were left out for time
(black corner).

JPEG runs through Pillow one sample at a time (the only op with a loop over the batch; the
codec has no batched tensor form); every other corruption is vectorised over the batch.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from posneg import _checks, _rng
from posneg.augment import functional as AF

CITATION = """
@article{disalvo2024medmnistc,
  title   = {MedMNIST-C: Comprehensive benchmark and improved classifier robustness by
             simulating realistic image corruptions},
  author  = {Di Salvo, Francesco and Doerrich, Sebastian and Ledig, Christian},
  journal = {arXiv preprint arXiv:2406.17536},
  year    = {2024}
}
"""

#: Severity 1..5 parameters per corruption (tuples for two-parameter corruptions).
SEVERITIES: dict[str, tuple[float | tuple[float, float], ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "shot_noise": (60.0, 25.0, 12.0, 5.0, 3.0),
    "gaussian_blur": (1.0, 2.0, 3.0, 4.0, 6.0),
    "defocus_blur": ((3.0, 0.1), (4.0, 0.5), (6.0, 0.5), (8.0, 0.5), (10.0, 0.5)),
    "motion_blur": ((10.0, 3.0), (15.0, 5.0), (15.0, 8.0), (15.0, 12.0), (20.0, 15.0)),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "jpeg": (50.0, 30.0, 15.0, 10.0, 7.0),
    "brightness_up": (1.2, 1.4, 1.6, 1.8, 2.0),
    "brightness_down": (0.8, 0.65, 0.5, 0.35, 0.2),
    "contrast_up": (1.3, 1.6, 1.9, 2.2, 2.5),
    "contrast_down": (0.8, 0.65, 0.5, 0.35, 0.2),
    "saturate": (0.1, 0.2, 0.3, 0.4, 0.5),
    "gamma_up": (1.3, 1.6, 1.9, 2.2, 2.5),
    "gamma_down": (0.8, 0.65, 0.5, 0.4, 0.3),
}
CORRUPTIONS: tuple[str, ...] = tuple(SEVERITIES)
_SPATIAL = ("gaussian_blur", "defocus_blur", "motion_blur")
_NOISES = ("gaussian_noise", "speckle_noise", "impulse_noise", "shot_noise")

#: Corruptions per imaging modality (the card's per-dataset lists, without the ones not built).
MODALITIES: dict[str, tuple[str, ...]] = {
    "pathology": (
        "pixelate",
        "jpeg",
        "defocus_blur",
        "motion_blur",
        "brightness_up",
        "brightness_down",
        "contrast_up",
        "contrast_down",
        "saturate",
    ),
    "dermatoscopy": (
        "pixelate",
        "jpeg",
        *_NOISES,
        "defocus_blur",
        "motion_blur",
        "brightness_up",
        "brightness_down",
        "contrast_up",
        "contrast_down",
    ),
    "fundus": (
        "pixelate",
        "jpeg",
        "gaussian_noise",
        "speckle_noise",
        "defocus_blur",
        "motion_blur",
        "brightness_down",
        "contrast_down",
    ),
    "microscopy": (
        "pixelate",
        "jpeg",
        "impulse_noise",
        "gaussian_blur",
        "brightness_up",
        "brightness_down",
        "contrast_up",
        "contrast_down",
    ),
    "oct": ("pixelate", "jpeg", "speckle_noise", "defocus_blur", "motion_blur", "contrast_down"),
    "ultrasound": (
        "pixelate",
        "jpeg",
        "speckle_noise",
        "motion_blur",
        "brightness_up",
        "brightness_down",
        "contrast_down",
    ),
    "xray": (
        "pixelate",
        "jpeg",
        *_NOISES,
        "gaussian_blur",
        "brightness_up",
        "brightness_down",
        "contrast_up",
        "contrast_down",
        "gamma_up",
        "gamma_down",
    ),
    "all": CORRUPTIONS,
}


# ---------------------------------------------------------------------------------------------
# per-sample kernels on float work images in [0, 1]; p: (B,) or (B, 2) parameters
# ---------------------------------------------------------------------------------------------


def _depthwise(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve sample i with kernels[i] (B, k, k), all channels, reflect padding."""
    b, c, h, w = x.shape
    k = kernels.shape[-1]
    pad = k // 2
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    out = F.conv2d(xp.reshape(1, b * c, h + 2 * pad, w + 2 * pad), weight, groups=b * c)
    return out.view(b, c, h, w)


def _grid(radius: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    return r.view(1, -1, 1), r.view(1, 1, -1)  # yy, xx


def _gaussian_kernels(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * float(sigma.max())))
    yy, xx = _grid(radius, x)
    s = sigma.clamp_min(1e-3).view(-1, 1, 1)
    k = torch.exp(-(xx**2 + yy**2) / (2 * s**2))
    return k / k.sum(dim=(1, 2), keepdim=True)


def _gaussian_blur(x: torch.Tensor, p: torch.Tensor, scale: float) -> torch.Tensor:
    return _depthwise(x, _gaussian_kernels(p * scale, x))


def _defocus(x: torch.Tensor, p: torch.Tensor, scale: float) -> torch.Tensor:
    r = (p[:, 0] * scale).clamp_min(0.5).view(-1, 1, 1)
    a = (p[:, 1] * scale).clamp_min(1e-3)
    radius = math.ceil(float(r.max()) + 3.0 * float(a.max())) + 1
    yy, xx = _grid(radius, x)
    disk = (xx**2 + yy**2 <= r**2).to(x.dtype)
    disk = disk / disk.sum(dim=(1, 2), keepdim=True)
    # alias blur: the disk smoothed by a Gaussian of std a (one small conv per kernel stack)
    g = _gaussian_kernels(a, x)
    gk = g.shape[-1]
    smooth = F.conv2d(
        F.pad(disk.unsqueeze(0), (gk // 2,) * 4), g.unsqueeze(1), groups=disk.shape[0]
    ).squeeze(0)
    smooth = smooth / smooth.sum(dim=(1, 2), keepdim=True)
    return _depthwise(x, smooth)


def _motion(x: torch.Tensor, p: torch.Tensor, angle: torch.Tensor, scale: float) -> torch.Tensor:
    radius_f = (p[:, 0] * scale).clamp_min(1.0)
    sigma = (p[:, 1] * scale).clamp_min(0.5)
    radius = math.ceil(float(radius_f.max()))
    taps = torch.arange(radius + 1, dtype=x.dtype, device=x.device).view(1, -1)  # (1, T)
    weight = torch.exp(-(taps**2) / (2 * sigma.view(-1, 1) ** 2)) * (taps <= radius_f.view(-1, 1))
    rad = angle.view(-1, 1) * (math.pi / 180.0)
    px, py = taps * torch.cos(rad), taps * torch.sin(rad)  # (B, T) offsets from the centre
    yy, xx = _grid(radius, x)
    # bilinear splat of each tap onto the (2R+1)^2 grid
    wx = (1 - (xx.unsqueeze(-1) - px.view(-1, 1, 1, px.shape[1])).abs()).clamp_min(0)
    wy = (1 - (yy.unsqueeze(-1) - py.view(-1, 1, 1, py.shape[1])).abs()).clamp_min(0)
    kernel = (wx * wy * weight.view(-1, 1, 1, weight.shape[1])).sum(-1)
    kernel = kernel / kernel.sum(dim=(1, 2), keepdim=True)
    return _depthwise(x, kernel)


def _box_matrix(n_out: int, n_in: int, x: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) weights of Pillow's BOX resampling: output i averages the inputs j with
    ``(j + 0.5 - c_i) / max(s, 1)`` in ``(-0.5, 0.5]``, ``c_i = (i + 0.5) s``,
    ``s = n_in / n_out`` (so up-scaling picks the nearest pixel)."""
    s = n_in / n_out
    scale = max(s, 1.0)
    centre = (torch.arange(n_out, dtype=torch.float64, device=x.device).view(-1, 1) + 0.5) * s
    j = torch.arange(n_in, dtype=torch.float64, device=x.device).view(1, -1)
    t = (j - centre + 0.5) / scale
    weight = ((t > -0.5) & (t <= 0.5)).to(torch.float64)
    return (weight / weight.sum(dim=1, keepdim=True).clamp_min(1.0)).to(x.dtype)


def _box_resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    mh = _box_matrix(h, x.shape[2], x)
    mw = _box_matrix(w, x.shape[3], x)
    return torch.einsum("ij,bcjk,lk->bcil", mh, x, mw)


def _pixelate(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Box down-scale by factor p (per sample) and box up-scale (Pillow's BOX both ways)."""
    _, _, h, w = x.shape
    out = torch.empty_like(x)
    # group samples sharing a size (corrupt: one group; augmentation: a few distinct sizes)
    sizes = torch.stack(
        [(p * h).round().clamp_min(1).long(), (p * w).round().clamp_min(1).long()], 1
    )
    for hw in torch.unique(sizes, dim=0).tolist():
        idx = ((sizes[:, 0] == hw[0]) & (sizes[:, 1] == hw[1])).nonzero().squeeze(1)
        small = _box_resize(x.index_select(0, idx), hw[0], hw[1])
        out.index_copy_(0, idx, _box_resize(small, h, w))
    return out


def _jpeg(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Pillow JPEG at quality p[i], one sample at a time (see the module docstring)."""
    u8 = torch.round(x.clamp(0, 1) * 255).to(torch.uint8).cpu()
    outs = []
    for i in range(x.shape[0]):
        arr = u8[i].permute(1, 2, 0).numpy()
        img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=round(float(p[i])))
        dec = np.array(Image.open(buf))
        dec = dec.reshape(arr.shape[0], arr.shape[1], -1)
        outs.append(torch.from_numpy(dec.copy()).permute(2, 0, 1))
    return (torch.stack(outs).to(device=x.device, dtype=x.dtype)) / 255.0


def _saturate(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Add p to the HSV saturation, hue and value kept: rgb' = V - (V - rgb) S' / S."""
    if x.shape[1] != 3:
        return x
    v = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    s = torch.where(v > 0, (v - mn) / v.clamp_min(1e-12), torch.zeros_like(v))
    s_new = (s + p.view(-1, 1, 1, 1)).clamp(0.0, 1.0)
    ratio = torch.where(s > 0, s_new / s.clamp_min(1e-12), torch.ones_like(s))
    return v - (v - x) * ratio


def _kernel(
    name: str,
    x: torch.Tensor,
    p: torch.Tensor,
    *,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Corrupt float work images x in [0, 1] with per-sample parameters p; clipped output."""
    scale = min(x.shape[2], x.shape[3]) / 224.0
    pv = p.view(-1, 1, 1, 1) if p.dim() == 1 else p
    if name == "gaussian_noise":
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        out = x + noise * pv
    elif name == "speckle_noise":
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        out = x + x * noise * pv
    elif name == "shot_noise":
        out = torch.poisson((x * pv).clamp_min(0), generator=generator) / pv
    elif name == "impulse_noise":
        u = _rng.uniform(tuple(x.shape), device=x.device, dtype=x.dtype, generator=generator)
        salt = _rng.uniform(tuple(x.shape), device=x.device, dtype=x.dtype, generator=generator)
        hit = u < pv
        out = torch.where(hit, (salt < 0.5).to(x.dtype), x)
    elif name == "gaussian_blur":
        out = _gaussian_blur(x, p, scale)
    elif name == "defocus_blur":
        out = _defocus(x, p, scale)
    elif name == "motion_blur":
        angle = _rng.uniform(
            (x.shape[0],), low=-45.0, high=45.0, device=x.device, dtype=x.dtype, generator=generator
        )
        out = _motion(x, p, angle, scale)
    elif name == "pixelate":
        out = _pixelate(x, p)
    elif name == "jpeg":
        out = _jpeg(x, p)
    elif name in ("brightness_up", "brightness_down"):
        out = AF.brightness(x, p.clamp_min(0))
    elif name in ("contrast_up", "contrast_down"):
        out = AF.contrast(x, p.clamp_min(0)) if x.shape[1] in (1, 3) else x
    elif name == "saturate":
        out = _saturate(x, p)
    else:  # gamma
        out = x.clamp_min(0) ** pv
    return out.clamp(0.0, 1.0)


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    xw = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    return xw / 255.0 if x.dtype == torch.uint8 else xw


def _from_unit(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.dtype == torch.uint8:
        return torch.round(y * 255.0).to(torch.uint8)
    return y.to(like.dtype)


def _table(name: str, device: torch.device) -> torch.Tensor:
    """(5,) or (5, 2) float64 severity parameters."""
    return torch.tensor(SEVERITIES[name], dtype=torch.float64, device=device)


def corrupt(
    x: torch.Tensor,
    name: str,
    severity: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply MedMNIST-C corruption ``name`` at ``severity`` 1..5 to every image of the batch.

    Args:
        x: (B, C, H, W) uint8 (0..255) or float (0..1) images.
        name: one of :data:`CORRUPTIONS`.
        severity: 1 (mild) .. 5 (strong); the parameter is ``SEVERITIES[name][severity - 1]``.
        generator: for the noises and the motion-blur angle (None: torch's global RNG).

    Returns:
        (B, C, H, W) tensor of x's dtype (uint8 results are rounded).

    Raises:
        ValueError: unknown name, severity outside 1..5, x not 4-D.
        TypeError: x neither uint8 nor floating, severity not an int.

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> corrupt(x, "gaussian_noise", 3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 32, 32])
    """
    fn = "corrupt"
    AF.check_images(fn, x)
    _checks.check_choice(fn, "name", name, CORRUPTIONS)
    sev = _checks.check_int(fn, "severity", severity)
    if not 1 <= sev <= 5:
        raise ValueError(f"{fn}: severity must be in 1..5; got {sev}")
    _checks.check_generator(fn, generator, x.device)
    xw = _to_unit(x)
    p = _table(name, x.device)[sev - 1].to(xw.dtype)
    p = p.expand(x.shape[0], *p.shape)
    return _from_unit(_kernel(name, xw, p, generator=generator), x)


class Corruptions(nn.Module):
    """MedMNIST-C augmentation (``AugMedMNISTC``): one corruption and parameter per sample.

    Di Salvo, Doerrich, Ledig. MedMNIST-C. arXiv 2406.17536, 2024.

    Each sample picks uniformly one of the modality's corruptions plus ``identity`` (so identity
    has probability ``1 / (n + 1)``) and draws its parameter uniformly between its severity-1
    and severity-5 values (each of a two-parameter corruption's parameters independently;
    ranges may be decreasing, as in the original). Samples are grouped per corruption (a loop
    over corruptions, none over samples, except JPEG's per-sample codec call).

    Quirk not replicated: the original's impulse noise uses a fixed seed (99999) in
    augmentation mode, so its pattern repeats; here it is drawn from ``generator``.

    Args:
        modality: a key of :data:`MODALITIES` ("pathology", "dermatoscopy", "fundus",
            "microscopy", "oct", "ultrasound", "xray", "all").
        corruptions: an explicit list of names instead of the modality's list.

    Example:
        >>> aug = Corruptions(modality="xray")
        >>> aug(torch.rand(4, 1, 28, 28), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1, 28, 28])
    """

    def __init__(self, modality: str = "all", *, corruptions: list[str] | None = None) -> None:
        super().__init__()
        fn = "Corruptions"
        self.modality = _checks.check_choice(fn, "modality", modality, tuple(MODALITIES))
        if corruptions is None:
            self.corruptions: tuple[str, ...] = MODALITIES[self.modality]
        else:
            if not isinstance(corruptions, (list, tuple)) or not corruptions:
                raise ValueError(f"{fn}: corruptions must be a non-empty list of names")
            for c in corruptions:
                _checks.check_choice(fn, "corruptions", c, CORRUPTIONS)
            self.corruptions = tuple(corruptions)

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Corrupt each sample of a (B, C, H, W) uint8/float batch; same shape and dtype."""
        fn = "Corruptions"
        AF.check_images(fn, x)
        _checks.check_generator(fn, generator, x.device)
        b = x.shape[0]
        n = len(self.corruptions)
        choice = _rng.randint(n + 1, (b,), device=x.device, generator=generator)  # n: identity
        u = _rng.uniform((b, 2), device=x.device, dtype=torch.float64, generator=generator)
        xw = _to_unit(x)
        out = xw
        for k, name in enumerate(self.corruptions):
            idx = (choice == k).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            table = _table(name, x.device)
            lo, hi = table[0], table[4]
            uk = u.index_select(0, idx)
            if table.dim() == 1:
                p = lo + (hi - lo) * uk[:, 0]
            else:
                p = lo.view(1, 2) + (hi - lo).view(1, 2) * uk
            res = _kernel(name, xw.index_select(0, idx), p.to(xw.dtype), generator=generator)
            out = out.index_copy(0, idx, res)
        return _from_unit(out, x)

    def extra_repr(self) -> str:
        return f"modality={self.modality!r}, corruptions={list(self.corruptions)!r}"
