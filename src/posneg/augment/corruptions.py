"""MedMNIST-C corruptions with the official per-dataset severities, and the augmentation that
draws one per sample.

Di Salvo, Doerrich, Ledig. MedMNIST-C: Comprehensive benchmark and improved classifier
robustness by simulating realistic image corruptions. arXiv 2406.17536, 2024.

Severity values: :data:`DATASETS` holds, for each of the twelve MedMNIST data sets, the official
parameter lists of ``CORRUPTIONS_DS`` in ``medmnistc/corruptions/registry.py`` of
``francescodisalvo05/medmnistc-api`` (read 2026-11-29, commit 8acfd27), transcribed value by
value. Severity ``s`` (1..5) uses entry ``s - 1``; the augmentation mode draws each parameter
uniformly between the *first and last* entries, so the sixth entries of RetinaMNIST's defocus
and Chest/PneumoniaMNIST's Gaussian blur only widen the augmentation range, as in the original.

Formulas (image in [0, 1], clipped after each corruption), following the official
``corruptions/{noise,compression,filter,enhance,microscopy}.py``:

- ``gaussian_noise``: ``x + N(0, c^2)``; ``speckle_noise``: ``x + x N(0, c^2)``;
  ``shot_noise``: ``Poisson(x c) / c``; ``impulse_noise``: salt and pepper with amount ``c``
  per value, half salt, half pepper (scikit-image ``random_noise(mode="s&p")``).
- ``pixelate``: Pillow BOX down-scale to ``int(c W) x int(c H)``, then BOX up-scale.
- ``jpeg_compression``: Pillow JPEG at quality ``int(c)``.
- ``gaussian_blur``: torchvision ``gaussian_blur`` with kernel size ``k = c`` (forced odd),
  ``sigma = 0.3 ((k - 1) / 2 - 1) + 0.8``, reflect padding.
- ``defocus_blur`` ``(r, a)``: the ImageNet-C disk: ``X^2 + Y^2 <= r^2`` on the grid
  ``arange(-8, 9)`` (``arange(-r, r + 1)`` when ``r > 8``), normalised, smoothed by OpenCV's 3 x 3
  (5 x 5 when ``r > 8``) Gaussian of std ``a`` with reflect-101 borders, then correlated with
  the image (reflect-101 borders), as ``cv2.filter2D`` does.
- ``motion_blur`` ``(r, s)``: ImageMagick's ``MotionBlurImage`` (the original calls it through
  Wand): ``2 ceil(r) + 1`` taps with weights ``exp(-i^2 / 2 s^2)`` (normalised), tap ``i`` read at
  ``(ceil(i cos t - 1/2), ceil(i sin t - 1/2))`` pixels from the output pixel (edge pixels
  repeated), angle ``t ~ U(-45, 45)`` degrees per image.
- ``zoom_blur`` ``(stop, step)``: the average of the image and its clipped zooms by the factors
  ``numpy.arange(1, stop, step)`` (centre crop of ``ceil(H / z)`` rows, linear zoom as
  ``scipy.ndimage.zoom(order=1)``, centre trim back to ``H``). In augmentation mode the stop is
  drawn from ``U(1, numpy.arange(1, stop_5, step_5)[-1])`` (DermaMNIST: ``U(1, 1.30)``) and the
  step from ``U(step_1, step_5)``, as the original's ``ZoomBlur`` does with its arrays.
- ``brightness_*`` / ``contrast_*``: Pillow ``ImageEnhance`` factor ``c``
  (:mod:`posneg.augment.functional`; uint8 inputs go through the uint8 kernels, equal to Pillow).
  Pillow's contrast blends with the mean luma, defined for grey and RGB images; for other channel
  counts (2, 4, ...) the grey level is the mean over all channels and pixels
  (``functional.contrast(grey="mean")``), a generalisation the original does not have (its
  images are RGB).
- ``saturate``: ``c`` added to the HSV saturation (scikit-image ``rgb2hsv``/``hsv2rgb``); as
  there, a grey pixel has hue 0, so it turns red-tinted. Images with one channel are unchanged.
- ``gamma_corr_*``: torchvision ``adjust_gamma`` on a PIL image, i.e. the lookup table
  ``floor(255.999 x^c)`` for uint8 inputs; ``x^c`` for float inputs.
- ``black_corner``: zero outside the centred circle of radius ``int(c min(W // 2, H // 2))``
  (a disk test ``dx^2 + dy^2 <= R^2``; OpenCV's rasterised circle may differ on boundary pixels).
- ``bubble`` ``(max_radius, max_bubbles)``: ``randint(7, max_bubbles)`` bubbles, each of radius
  ``randint(3, max_radius)`` at a centre ``randint(r, W - r)``; a white layer with alpha 130 on
  the disk of radius ``r + 2`` and 100 on the disk of radius ``r`` (later bubbles drawn over
  earlier ones) is composited over the image, as the original's Pillow drawing and paste (its
  ellipses match the disk test ``dx^2 + dy^2 <= (r + 1/2)^2`` up to a few boundary pixels).

Deliberate differences from the official code:

- Results are rounded back to uint8 (the official noise, blur and saturate code truncates with
  ``astype(np.uint8)``): at most one grey level apart.
- None by default for spatial parameters: like the original, blur radii, the motion kernel,
  the Gaussian blur's kernel and bubble radii are used in pixels at the image's own size (a
  28 x 28 MedMNIST image is blurred with the same kernels as a 224 x 224 one, so relatively
  much more). ``reference_size=224`` (an option of :func:`corrupt` and :class:`Corruptions`)
  scales them by ``min(H, W) / 224`` instead, i.e. keeps their size relative to the image; at
  28 x 28 that makes the smaller blurs vanish (ChestMNIST's Gaussian blur and PathMNIST's and
  OCTMNIST's defocus blur are the identity at every severity).
- Bubbles larger than the image: the original's ``random.randint(r, W - r)`` raises when
  ``W < 2 r`` (PathMNIST's radii up to 17 on 28 x 28); here the centre is then ``r``.
- ``motion_blur`` does not hard-code 224 x 224; ``zoom_blur`` crops each axis by its own size
  (the original uses the height for both; equal for square images).
- In augmentation mode the impulse noise is drawn from ``generator``; the original fixes its
  seed (99999), so its pattern repeats on every call.
- Not built: ``stain_deposit`` (needs the original's ink asset file) and ``characters`` (needs
  OpenCV's Hershey font). :data:`NOT_BUILT` lists them per data set; the augmentation mode draws
  among the built corruptions plus identity, so identity's probability is ``1 / (n + 1)`` with
  ``n`` the number of built ones (PathMNIST, BloodMNIST and DermaMNIST lose one corruption).

JPEG runs through Pillow one sample at a time (the codec has no batched tensor form); every other
corruption is vectorised over the batch (motion and zoom blur loop over taps and zoom factors,
bubbles over the bubble index, never over samples).
"""

from __future__ import annotations

import io
import math
from concurrent.futures import ThreadPoolExecutor

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

Param = float | tuple[float, ...]

_ZOOM_DERMA: tuple[tuple[float, float], ...] = (
    (1.11, 0.01),
    (1.16, 0.01),
    (1.21, 0.02),
    (1.26, 0.02),
    (1.31, 0.03),
)

#: The official severity lists per MedMNIST data set (``CORRUPTIONS_DS``), built corruptions only.
#: Two-parameter corruptions hold tuples: defocus ``(radius, alias_blur)``, motion ``(radius,
#: sigma)``, zoom ``(stop, step)`` of ``numpy.arange(1, stop, step)``, bubble ``(max_radius,
#: max_bubbles)``.
DATASETS: dict[str, dict[str, tuple[Param, ...]]] = {
    "pathmnist": {
        "pixelate": (0.8, 0.6, 0.40, 0.30, 0.25),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "defocus_blur": ((3, 0.1), (4, 0.1), (5, 0.2), (6, 0.2), (7, 0.3)),
        "motion_blur": ((5, 5), (10, 5), (15, 5), (15, 8), (15, 12)),
        "brightness_up": (1.1, 1.15, 1.2, 1.22, 1.25),
        "brightness_down": (0.85, 0.80, 0.75, 0.72, 0.70),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.8, 0.7, 0.6, 0.55, 0.5),
        "saturate": (0.05, 0.10, 0.15, 0.20, 0.25),
        "bubble": ((7, 15), (10, 15), (12, 15), (15, 20), (17, 25)),
    },
    "bloodmnist": {
        "pixelate": (0.6, 0.5, 0.40, 0.30, 0.25),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "defocus_blur": ((2, 0.01), (3, 0.1), (4, 0.1), (5, 0.1), (6, 0.1)),
        "motion_blur": ((3, 3), (5, 5), (10, 5), (10, 7), (10, 9)),
        "brightness_up": (1.1, 1.2, 1.3, 1.35, 1.4),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_up": (1.1, 1.15, 1.2, 1.25, 1.3),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "saturate": (0.05, 0.10, 0.15, 0.17, 0.20),
        "bubble": ((5, 10), (7, 10), (10, 10), (12, 12), (15, 12)),
    },
    "dermamnist": {
        "pixelate": (0.7, 0.5, 0.40, 0.30, 0.25),
        "jpeg_compression": (30, 20, 15, 10, 7),
        "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),
        "speckle_noise": (0.05, 0.15, 0.2, 0.35, 0.45),
        "impulse_noise": (0.01, 0.03, 0.06, 0.09, 0.17),
        "shot_noise": (60, 25, 18, 10, 5),
        "defocus_blur": ((4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)),
        "motion_blur": ((10, 5), (15, 5), (15, 8), (15, 12), (20, 15)),
        "zoom_blur": _ZOOM_DERMA,
        "brightness_up": (1.1, 1.2, 1.3, 1.4, 1.5),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.8, 0.7, 0.6, 0.5, 0.4),
        "black_corner": (1.10, 1.05, 1.00, 0.90, 0.95),
    },
    "retinamnist": {
        "pixelate": (0.8, 0.60, 0.50, 0.40, 0.35),
        "jpeg_compression": (30, 25, 20, 10, 5),
        "gaussian_noise": (0.04, 0.08, 0.12, 0.16, 0.20),
        "speckle_noise": (0.10, 0.15, 0.20, 0.25, 0.30),
        "defocus_blur": ((4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5), (9, 0.6)),
        "motion_blur": ((8, 5), (15, 5), (15, 8), (15, 12), (20, 15)),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "tissuemnist": {
        "pixelate": (0.40, 0.30, 0.20, 0.15, 0.10),
        "jpeg_compression": (25, 20, 15, 10, 7),
        "impulse_noise": (0.01, 0.015, 0.02, 0.025, 0.03),
        "gaussian_blur": (13, 15, 17, 21, 25),
        "brightness_up": (1.3, 1.4, 1.5, 1.6, 1.7),
        "brightness_down": (0.8, 0.7, 0.6, 0.5, 0.4),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "octmnist": {
        "pixelate": (0.30, 0.25, 0.20, 0.15, 0.10),
        "jpeg_compression": (30, 15, 10, 7, 5),
        "speckle_noise": (0.15, 0.30, 0.40, 0.50, 0.60),
        "defocus_blur": ((0.5, 0.6), (1, 0.5), (1.5, 0.1), (2.0, 0.5), (2.5, 0.1)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "contrast_down": (0.6, 0.4, 0.3, 0.2, 0.15),
    },
    "breastmnist": {
        "pixelate": (0.30, 0.25, 0.20, 0.15, 0.10),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "speckle_noise": (0.10, 0.15, 0.20, 0.25, 0.30),
        "motion_blur": ((5, 5), (9, 7), (9, 10), (13, 10), (17, 12)),
        "brightness_up": (1.4, 1.5, 1.6, 1.8, 2.0),
        "brightness_down": (0.55, 0.5, 0.45, 0.4, 0.3),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "chestmnist": {
        "pixelate": (0.30, 0.25, 0.20, 0.15, 0.10),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),
        "speckle_noise": (0.05, 0.15, 0.2, 0.35, 0.45),
        "impulse_noise": (0.01, 0.03, 0.06, 0.09, 0.17),
        "shot_noise": (60, 25, 18, 10, 5),
        "gaussian_blur": (3, 5, 7, 9, 11, 13),
        "brightness_up": (1.1, 1.2, 1.3, 1.4, 1.5),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
        "gamma_corr_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "gamma_corr_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "pneumoniamnist": {
        "pixelate": (0.8, 0.7, 0.6, 0.5, 0.40),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "gaussian_noise": (0.04, 0.05, 0.06, 0.07, 0.08),
        "speckle_noise": (0.05, 0.07, 0.10, 0.15, 0.20),
        "impulse_noise": (0.005, 0.01, 0.013, 0.017, 0.02),
        "shot_noise": (300, 200, 150, 100, 80),
        "gaussian_blur": (3, 5, 7, 9, 11, 13),
        "brightness_up": (1.1, 1.2, 1.3, 1.4, 1.5),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
        "gamma_corr_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "gamma_corr_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
}
_ORGAN: dict[str, tuple[Param, ...]] = {
    "pixelate": (0.7, 0.6, 0.5, 0.40, 0.35),
    "jpeg_compression": (50, 30, 15, 10, 7),
    "gaussian_noise": (0.04, 0.08, 0.12, 0.16, 0.20),
    "speckle_noise": (0.05, 0.10, 0.20, 0.30, 0.40),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.08),
    "shot_noise": (200, 100, 50, 25, 15),
    "gaussian_blur": (11, 13, 15, 17, 21),
    "brightness_up": (1.2, 1.3, 1.4, 1.5, 1.6),
    "brightness_down": (0.8, 0.75, 0.7, 0.65, 0.60),
    "contrast_up": (1.3, 1.4, 1.6, 1.7, 1.8),
    "contrast_down": (0.8, 0.7, 0.6, 0.55, 0.5),
    "gamma_corr_up": (1.3, 1.4, 1.6, 1.8, 2.0),
    "gamma_corr_down": (0.9, 0.8, 0.7, 0.6, 0.4),
}
for _organ in ("organamnist", "organcmnist", "organsmnist"):
    DATASETS[_organ] = dict(_ORGAN)

#: Official corruptions not built here, per data set (see the module docstring).
NOT_BUILT: dict[str, tuple[str, ...]] = {
    "pathmnist": ("stain_deposit",),
    "bloodmnist": ("stain_deposit",),
    "dermamnist": ("characters",),
}

#: Imaging modality -> the MedMNIST data set whose list and severities it uses.
MODALITIES: dict[str, str] = {
    "pathology": "pathmnist",
    "blood": "bloodmnist",
    "dermatoscopy": "dermamnist",
    "fundus": "retinamnist",
    "microscopy": "tissuemnist",
    "oct": "octmnist",
    "ultrasound": "breastmnist",
    "xray": "chestmnist",
    "ct": "organamnist",
}

#: The official folds (``CORRUPTIONS_DS_FOLDS``), restricted to the built corruptions.
FOLDS: dict[str, tuple[str, ...]] = {
    "digital": ("pixelate", "jpeg_compression"),
    "noise": ("gaussian_noise", "speckle_noise", "impulse_noise", "shot_noise"),
    "blur": ("defocus_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "color": ("brightness_up", "brightness_down", "contrast_up", "contrast_down", "saturate"),
    "task-specific": ("bubble", "black_corner", "gamma_corr_up", "gamma_corr_down"),
}

#: Every built corruption.
CORRUPTIONS: tuple[str, ...] = tuple(name for fold in FOLDS.values() for name in fold)

#: Names accepted for ``dataset``: the MedMNIST data sets and the modality aliases.
DATASET_NAMES: tuple[str, ...] = (*DATASETS, *MODALITIES)


def resolve_dataset(fn: str, dataset: str, modality: str | None = None) -> str:
    """A MedMNIST data-set name from a data-set name or a modality alias; ``modality`` (one of
    :data:`MODALITIES`), when given, takes precedence over ``dataset``."""
    if modality is not None:
        _checks.check_choice(fn, "modality", modality, tuple(MODALITIES))
        return MODALITIES[modality]
    _checks.check_choice(fn, "dataset", dataset, DATASET_NAMES)
    return MODALITIES.get(dataset, dataset)


def severity_table(dataset: str, name: str) -> tuple[Param, ...]:
    """The official parameter list of corruption ``name`` for ``dataset`` (name or modality)."""
    fn = "severity_table"
    ds = resolve_dataset(fn, dataset)
    _checks.check_choice(fn, "name", name, tuple(DATASETS[ds]))
    return DATASETS[ds][name]


# ---------------------------------------------------------------------------------------------
# shared helpers: per-sample separable and 2-D correlations
# ---------------------------------------------------------------------------------------------


def _pad_mode(pad: int, h: int, w: int) -> str:
    """Reflect-101 padding (OpenCV's and torchvision's default) where the image is big enough."""
    return "reflect" if pad < min(h, w) else "replicate"


def _correlate2d(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlate sample i with kernels[i] (B, k, k), k odd, centre anchor, reflect-101 borders."""
    b, c, h, w = x.shape
    k = kernels.shape[-1]
    pad = k // 2
    xp = F.pad(x, (pad, pad, pad, pad), mode=_pad_mode(pad, h, w))
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    out = F.conv2d(xp.reshape(1, b * c, h + 2 * pad, w + 2 * pad), weight, groups=b * c)
    return out.view(b, c, h, w)


def _correlate_separable(x: torch.Tensor, k1d: torch.Tensor) -> torch.Tensor:
    """Correlate sample i with the outer product of k1d[i] (B, k) with itself, k odd."""
    b, c, h, w = x.shape
    k = k1d.shape[-1]
    pad = k // 2
    xp = F.pad(x, (pad, pad, pad, pad), mode=_pad_mode(pad, h, w))
    weight = k1d.to(x.dtype).repeat_interleave(c, dim=0)  # (B*C, k)
    flat = xp.reshape(1, b * c, h + 2 * pad, w + 2 * pad)
    rows = F.conv2d(flat, weight.view(b * c, 1, k, 1), groups=b * c)
    out = F.conv2d(rows, weight.view(b * c, 1, 1, k), groups=b * c)
    return out.view(b, c, h, w)


# ---------------------------------------------------------------------------------------------
# per-sample kernels on float work images in [0, 1]; p: (B,) or (B, 2) float64 parameters
# ---------------------------------------------------------------------------------------------


def _gaussian_blur(x: torch.Tensor, p: torch.Tensor, scale: float) -> torch.Tensor:
    """torchvision ``gaussian_blur(kernel_size=k)`` with its default sigma, k forced odd (sigma
    and half-width times ``scale``: 1 unless a ``reference_size`` is given)."""
    k = p.floor()
    k = torch.where(k.remainder(2) == 0, k - 1, k).clamp_min(1)
    sigma = (0.3 * ((k - 1) * 0.5 - 1) + 0.8) * scale
    half = torch.round((k - 1) * 0.5 * scale)  # exactly (k - 1) / 2 at 224
    big = int(half.max())
    if big == 0:
        return x
    t = torch.arange(-big, big + 1, dtype=torch.float64, device=x.device).view(1, -1)
    pdf = torch.exp(-0.5 * (t / sigma.view(-1, 1)) ** 2) * (t.abs() <= half.view(-1, 1))
    return _correlate_separable(x, pdf / pdf.sum(1, keepdim=True))


def _cv2_gaussian_1d(ksize: int, sigma: torch.Tensor) -> torch.Tensor:
    """(B, ksize) ``cv2.getGaussianKernel(ksize, sigma)`` for sigma > 0."""
    t = torch.arange(ksize, dtype=torch.float64, device=sigma.device) - (ksize - 1) / 2
    g = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    return g / g.sum(1, keepdim=True)


def _defocus_kernels(r: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """(B, n, n) ImageNet-C / MedMNIST-C ``disk(r, a)`` kernels for one group sharing n.

    ``r <= 8``: grid ``arange(-8, 9)`` (n = 17), 3 x 3 alias blur; ``r > 8``: grid
    ``arange(-r, r + 1)`` (n = ceil(2 r + 1), not centred on 0 when r is fractional), 5 x 5.
    """
    big = bool((r > 8).any())
    if big:
        r0 = float(r[0])
        n = math.ceil(2 * r0 + 1)
        grid = torch.arange(n, dtype=torch.float64, device=r.device) - r0
        ksize = 5
    else:
        n = 17
        grid = torch.arange(-8, 9, dtype=torch.float64, device=r.device)
        ksize = 3
    yy, xx = grid.view(1, -1, 1), grid.view(1, 1, -1)
    disk = (xx**2 + yy**2 <= r.view(-1, 1, 1) ** 2).to(torch.float64)
    disk = disk / disk.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)
    g = _cv2_gaussian_1d(ksize, a.clamp_min(1e-12))  # (B, ksize)
    pad = ksize // 2
    d = F.pad(disk.unsqueeze(0), (pad, pad, pad, pad), mode="reflect")  # reflect-101
    nb = disk.shape[0]
    d = F.conv2d(d, g.view(nb, 1, ksize, 1), groups=nb)
    d = F.conv2d(d, g.view(nb, 1, 1, ksize), groups=nb)
    return d.squeeze(0)


def _defocus(x: torch.Tensor, p: torch.Tensor, scale: float) -> torch.Tensor:
    r = p[:, 0] * scale
    a = p[:, 1] * scale
    out = torch.empty_like(x)
    # one group for every r <= 8 (the fixed 17 x 17 grid), one per grid size above
    n = torch.where(r > 8, torch.ceil(2 * r + 1), torch.full_like(r, 17.0))
    r_key = torch.where(r > 8, r, torch.zeros_like(r))
    for key in torch.unique(torch.stack([n, r_key], 1), dim=0).tolist():
        idx = ((n == key[0]) & (r_key == key[1])).nonzero().squeeze(1)
        k = _defocus_kernels(r[idx], a[idx])
        size = k.shape[-1]
        if size % 2 == 0:  # cv2 anchors an even kernel at size // 2: pad the far side
            k = F.pad(k, (0, 1, 0, 1))
        # drop all-zero outer rings (the 17 x 17 grid around a small disk)
        nz = k.abs().amax(0) > 0
        used = torch.cat([nz.any(0).nonzero(), nz.any(1).nonzero()]).squeeze(1)
        ring = min(int(used.min()), k.shape[-1] - 1 - int(used.max()))
        lo, hi = ring, k.shape[-1] - ring
        k = k[:, lo:hi, lo:hi]
        out[idx] = _correlate2d(x.index_select(0, idx), k)
    return out


def _motion(x: torch.Tensor, p: torch.Tensor, angle: torch.Tensor, scale: float) -> torch.Tensor:
    """ImageMagick ``MotionBlurImage(radius, sigma, angle)`` per sample (see module docstring)."""
    radius = p[:, 0] * scale
    sigma = (p[:, 1] * scale).clamp_min(1e-12)
    width = 2 * torch.ceil(radius) + 1  # GetOptimalKernelWidth1D for radius > 0
    taps = int(width.max())
    i = torch.arange(taps, dtype=torch.float64, device=x.device).view(1, -1)
    weight = torch.exp(-(i**2) / (2 * sigma.view(-1, 1) ** 2)) * (i < width.view(-1, 1))
    weight = weight / weight.sum(1, keepdim=True)
    t = angle.to(torch.float64).view(-1, 1) * (math.pi / 180.0)
    ox = torch.ceil(i * torch.cos(t) - 0.5).long()
    oy = torch.ceil(i * torch.sin(t) - 0.5).long()
    wx = weight.to(x.dtype)
    b, c, h, w = x.shape
    # edge pixels repeated: a replicate pad by the largest offset, then one flat gather per tap
    pad = int(torch.maximum(ox.abs().max(), oy.abs().max())) if taps else 0
    pad = min(pad, max(h, w))
    ox, oy = ox.clamp(-pad, pad), oy.clamp(-pad, pad)  # farther reads are edge pixels too
    flat = F.pad(x, (pad, pad, pad, pad), mode="replicate").reshape(b, c, -1)
    wp = w + 2 * pad
    grid = (
        torch.arange(h, device=x.device).view(-1, 1) * wp + torch.arange(w, device=x.device)
    ).view(1, 1, -1)
    base = (oy + pad) * wp + (ox + pad)  # (B, taps)
    out = torch.zeros((b, c, h * w), dtype=x.dtype, device=x.device)
    for k in range(taps):
        idx = (grid + base[:, k].view(b, 1, 1)).expand(b, c, h * w)
        out.addcmul_(flat.gather(2, idx), wx[:, k].view(b, 1, 1))
    return out.view(b, c, h, w)


def _zoom_axis(
    n: int, z: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source rows (i0, i1) and weight of i1 for each output index of ``clipped_zoom`` along one
    axis of length n, per sample zoom factor z (B,): crop ``ceil(n / z)`` centred, linear zoom to
    ``round(ceil(n / z) z)`` as scipy (``in = out (c - 1) / (m - 1)``), centre trim to n."""
    ch = torch.ceil(n / z)
    top = torch.div(n - ch, 2, rounding_mode="floor")
    m = torch.round(ch * z)  # scipy: int(round(ch * z)); ties are measure zero here
    trim = torch.div(m - n, 2, rounding_mode="floor")
    j = torch.arange(n, dtype=torch.float64, device=device).view(1, -1) + trim.view(-1, 1)
    u = j * ((ch - 1) / (m - 1).clamp_min(1)).view(-1, 1)
    u0 = torch.floor(u).clamp(max=(ch - 1).view(-1, 1))
    frac = u - u0
    i0 = (top.view(-1, 1) + u0).long()
    i1 = (i0 + 1).clamp(max=(top + ch - 1).view(-1, 1).long())
    return i0, i1, frac


#: Most elements of the (B, factors, C, H, W) zoom stack built at once (16 Mi: 64 MB float32).
_ZOOM_BLOCK = 1 << 24


def _zoom(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Average of x and its clipped zooms by ``1 + k step`` for k < ceil((stop - 1) / step),
    several zoom factors per step (as many as fit ``_ZOOM_BLOCK`` elements)."""
    b, c, h, w = x.shape
    stop, step = p[:, 0], p[:, 1]
    count = torch.ceil((stop - 1.0) / step).clamp_min(0)  # len(numpy.arange(1, stop, step))
    n_factors = int(count.max()) if b else 0
    per = max(1, min(n_factors, _ZOOM_BLOCK // max(1, x.numel())))
    total = x.clone()
    for k0 in range(0, n_factors, per):
        k = torch.arange(k0, min(n_factors, k0 + per), device=x.device, dtype=torch.float64)
        kk = k.numel()
        active = k.view(1, -1) < count.view(-1, 1)  # (B, K)
        z = torch.where(
            active,
            1.0 + k.view(1, -1) * step.view(-1, 1),
            torch.ones_like(active, dtype=torch.float64),
        )
        r0, r1, fr = _zoom_axis(h, z.reshape(-1), x.device)  # (B*K, H)
        c0, c1, fc = _zoom_axis(w, z.reshape(-1), x.device)
        shape = (b, kk, c, h, w)
        xs = x.unsqueeze(1).expand(shape)
        ri = (r0.view(b, kk, 1, h, 1).expand(shape), r1.view(b, kk, 1, h, 1).expand(shape))
        mid = torch.lerp(
            xs.gather(3, ri[0]), xs.gather(3, ri[1]), fr.to(x.dtype).view(b, kk, 1, h, 1)
        )
        ci = (c0.view(b, kk, 1, 1, w).expand(shape), c1.view(b, kk, 1, 1, w).expand(shape))
        zoomed = torch.lerp(
            mid.gather(4, ci[0]), mid.gather(4, ci[1]), fc.to(x.dtype).view(b, kk, 1, 1, w)
        )
        total += (zoomed * active.to(x.dtype).view(b, kk, 1, 1, 1)).sum(1)
    return total / (count.to(x.dtype) + 1).view(b, 1, 1, 1)


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


def _pixelate(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Pillow BOX down-scale to ``int(p W) x int(p H)`` and BOX up-scale, per sample.

    The down-scale is two small matrix products (BOX weights), the up-scale picks one pixel per
    output pixel (an index select). Samples are grouped by target size: one group in
    :func:`corrupt`, a few in the augmentation mode.
    """
    _, _, h, w = x.shape
    sizes = torch.stack([(p * h).floor().clamp_min(1), (p * w).floor().clamp_min(1)], 1).long()
    distinct, which = torch.unique(sizes, dim=0, return_inverse=True)
    out = torch.empty_like(x) if distinct.shape[0] > 1 else x
    for g, (hs, ws) in enumerate(distinct.tolist()):
        idx = (which == g).nonzero().squeeze(1) if distinct.shape[0] > 1 else None
        xs = x if idx is None else x.index_select(0, idx)
        small = torch.matmul(torch.matmul(_box_matrix(hs, h, x), xs), _box_matrix(ws, w, x).T)
        up_h = _box_matrix(h, hs, x).argmax(1)  # up-scaling picks one pixel
        up_w = _box_matrix(w, ws, x).argmax(1)
        res = small.index_select(2, up_h).index_select(3, up_w)
        if idx is None:
            return res
        out.index_copy_(0, idx, res)
    return out


def _jpeg_u8(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Pillow JPEG at quality int(p[i]) of a uint8 batch, one sample at a time (see the module
    docstring); one layout change for the batch each way. Images with other than 1 or 3
    channels are compressed channel by channel as grey images."""
    b, c, h, w = x.shape
    if c not in (1, 3):  # JPEG holds grey or RGB images: other channel counts, one by one
        grey = _jpeg_u8(x.reshape(b * c, 1, h, w), p.repeat_interleave(c))
        return grey.view(b, c, h, w)
    hwc = x.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    out = np.empty_like(hwc)
    quality = p.floor().clamp(1, 100).long().tolist()

    def run(rows: range) -> None:
        for i in rows:
            img = Image.fromarray(hwc[i, :, :, 0] if c == 1 else hwc[i])
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality[i])
            out[i] = np.asarray(Image.open(buf)).reshape(h, w, c)

    # Pillow's codec releases the GIL: torch's intra-op thread count of Python threads, each on
    # a contiguous share of the images (the result does not depend on the split)
    workers = max(1, min(torch.get_num_threads(), b))
    if workers == 1:
        run(range(b))
    else:
        step = -(-b // workers)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, [range(i, min(b, i + step)) for i in range(0, b, step)]))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(x.device)


def _jpeg(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """:func:`_jpeg_u8` of float work images in [0, 1]."""
    u8 = torch.round(x.clamp(0, 1) * 255).to(torch.uint8)
    return _jpeg_u8(u8, p).to(x.dtype) / 255.0


def _saturate(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """scikit-image HSV round trip with ``S' = clip(S + p, 0, 1)``: for S > 0,
    ``rgb' = V - (V - rgb) S' / S`` (hue and value kept); a grey pixel (S = 0) has hue 0 there,
    so it becomes ``(V, V (1 - S'), V (1 - S'))``."""
    if x.shape[1] != 3:
        return x
    v = x.amax(dim=1, keepdim=True)
    delta = v - x.amin(dim=1, keepdim=True)
    tiny = torch.finfo(x.dtype).tiny
    s = torch.where(delta > 0, delta / v.clamp_min(tiny), torch.zeros_like(v))
    s_new = (s + p.to(x.dtype).view(-1, 1, 1, 1)).clamp(0.0, 1.0)
    ratio = s_new / s.clamp_min(tiny)
    coloured = v - (v - x) * ratio
    red = torch.ones_like(x)
    red[:, 1:] = 0.0
    grey = v * (1 - s_new * (1 - red))  # hue 0: (V, V(1 - S'), V(1 - S'))
    return torch.where(delta > 0, coloured, grey)


def _black_corner(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    cx, cy = w // 2, h // 2
    base = min(cx, cy, w - cx, h - cy)
    radius = torch.floor(base * p).view(b, 1, 1)
    yy = torch.arange(h, device=x.device, dtype=torch.float64).view(1, -1, 1) - cy
    xx = torch.arange(w, device=x.device, dtype=torch.float64).view(1, 1, -1) - cx
    inside = (xx**2 + yy**2 <= radius**2).unsqueeze(1)
    return x * inside.to(x.dtype)


def _randint_between(
    low: torch.Tensor, high: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Per-entry integers uniform on [low, high] (inclusive, ``random.randint``), float64."""
    u = _rng.uniform(tuple(low.shape), device=low.device, dtype=torch.float64, generator=generator)
    return torch.minimum(low + torch.floor(u * (high - low + 1)), high)


#: Most (sample, bubble, patch pixel) entries handled at once when drawing bubbles.
_BUBBLE_BLOCK = 1 << 22


def _bubble_alpha(
    h: int,
    w: int,
    cx: torch.Tensor,
    cy: torch.Tensor,
    r: torch.Tensor,
    n: torch.Tensor,
    border: float,
) -> torch.Tensor:
    """(B, H, W) float32 alpha (0..255) of the bubble layer: bubble j < n[b] of sample b, drawn
    in order, sets alpha 130 on the disk of radius ``r + border`` and then 100 on the disk of
    radius ``r`` around (cx, cy) (disks ``d^2 <= (radius + 1/2)^2``, Pillow's ellipses).

    Each bubble only touches a square patch around its centre: per pixel, the last bubble whose
    outer disk covers it wins (a ``scatter_reduce`` max of ``2 j + inside inner disk``).
    """
    b, slots = r.shape
    reach = math.ceil(float(r.max()) + border + 0.5) if r.numel() else 0
    d = torch.arange(-reach, reach + 1, device=r.device, dtype=torch.float32)
    d2 = (d.view(-1, 1) ** 2 + d.view(1, -1) ** 2).view(1, 1, -1)  # (1, 1, P*P)
    dy = d.view(-1, 1).expand(d.numel(), d.numel()).reshape(1, 1, -1)
    dx = d.view(1, -1).expand(d.numel(), d.numel()).reshape(1, 1, -1)
    keys = torch.full((b, h * w), -1, dtype=torch.long, device=r.device)
    per = max(1, _BUBBLE_BLOCK // max(1, b * d2.shape[-1]))
    for j0 in range(0, slots, per):
        sl = slice(j0, min(slots, j0 + per))
        rj, xj, yj = (t[:, sl, None].float() for t in (r, cx, cy))  # (B, S, 1)
        j = torch.arange(j0, sl.stop, device=r.device).view(1, -1, 1)
        yy, xx = yj + dy, xj + dx  # (B, S, P*P)
        ok = (d2 <= (rj + border + 0.5) ** 2) & (j < n.view(-1, 1, 1))
        ok &= (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        key = torch.where(ok, 2 * j + (d2 <= (rj + 0.5) ** 2).long(), -1)
        pix = torch.where(ok, yy * w + xx, 0).long()
        keys.scatter_reduce_(1, pix.view(b, -1), key.view(b, -1), reduce="amax")
    alpha = torch.where(keys < 0, 0.0, torch.where(keys % 2 == 1, 100.0, 130.0))
    return alpha.view(b, h, w)


def _bubble(
    x: torch.Tensor, p: torch.Tensor, scale: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Translucent white bubbles (see the module docstring); geometry times ``scale``."""
    b, _, h, w = x.shape
    max_r = p[:, 0].floor()
    max_n = p[:, 1].floor()
    n = _randint_between(torch.full_like(max_n, 7.0), max_n.clamp_min(7), generator)
    slots = int(n.max()) if b else 0
    ones = torch.ones((b, slots), dtype=torch.float64, device=x.device)
    r = _randint_between(3 * ones, max_r.clamp_min(3).view(-1, 1) * ones, generator)
    rp = r * scale  # radius in pixels
    edge = torch.ceil(rp)
    cx = _randint_between(edge, (w - edge).clamp_min(edge), generator)
    cy = _randint_between(edge, (h - edge).clamp_min(edge), generator)
    alpha = _bubble_alpha(h, w, cx, cy, rp, n, 2.0 * scale)
    a = alpha.div_(255.0).to(x.dtype).unsqueeze(1)
    return torch.lerp(x, torch.ones((), dtype=x.dtype, device=x.device), a)


def _enhance(kind: str, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Pillow ``ImageEnhance`` brightness/contrast on float work images or, through the uint8
    kernels of :mod:`posneg.augment.functional` (equal to Pillow), on uint8 batches."""
    f = p.clamp_min(0).to(torch.float32 if x.dtype == torch.uint8 else x.dtype)
    if kind == "brightness":
        return AF.brightness(x, f)
    return AF.contrast(x, f, grey="luma" if x.shape[1] in (1, 3) else "mean")


def _kernel(
    name: str,
    x: torch.Tensor,
    p: torch.Tensor,
    *,
    quantized: bool,
    scale: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Corrupt float work images x in [0, 1] with per-sample float64 parameters p; clipped.

    ``quantized``: x holds uint8 levels / 255 (the caller's input was uint8). ``scale``: the
    factor on spatial parameters (1: the official pixels; see :func:`_spatial_scale`).
    """
    pv = p.to(x.dtype).view(-1, 1, 1, 1) if p.dim() == 1 else p
    if name == "gaussian_noise":
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        out = x + noise * pv
    elif name == "speckle_noise":
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        out = x + x * noise * pv
    elif name == "shot_noise":
        out = torch.poisson((x * pv).clamp_min(0), generator=generator) / pv
    elif name == "impulse_noise":
        # one draw per value: hit when u < c, and salt for the lower half of the hits, so
        # P(hit) = c and P(salt | hit) = 1/2, as scikit-image's two draws
        u = _rng.uniform(tuple(x.shape), device=x.device, dtype=x.dtype, generator=generator)
        out = torch.where(u < pv, (u < pv * 0.5).to(x.dtype), x)
    elif name == "gaussian_blur":
        out = _gaussian_blur(x, p, scale)
    elif name == "defocus_blur":
        out = _defocus(x, p, scale)
    elif name == "motion_blur":
        angle = _rng.uniform(
            (x.shape[0],), low=-45.0, high=45.0, device=x.device, dtype=x.dtype, generator=generator
        )
        out = _motion(x, p, angle, scale)
    elif name == "zoom_blur":
        out = _zoom(x, p)
    elif name == "pixelate":
        out = _pixelate(x, p)
    elif name == "jpeg_compression":
        out = _jpeg(x, p)
    elif name in ("brightness_up", "brightness_down"):
        out = _enhance("brightness", x, p)
    elif name in ("contrast_up", "contrast_down"):
        out = _enhance("contrast", x, p)
    elif name == "saturate":
        out = _saturate(x, p)
    elif name in ("gamma_corr_up", "gamma_corr_down"):
        out = x.clamp_min(0) ** pv
        if quantized:  # torchvision's PIL lookup table
            out = torch.floor((255 + 1 - 1e-3) * out) / 255.0
    elif name == "black_corner":
        out = _black_corner(x, p)
    else:  # bubble
        out = _bubble(x, p, scale, generator)
    return out.clamp(0.0, 1.0)


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    xw = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    return xw.div_(255.0) if x.dtype == torch.uint8 else xw


def _from_unit(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """y (a temporary, changed in place for uint8) back to like's dtype."""
    if like.dtype == torch.uint8:
        return y.mul_(255.0).round_().to(torch.uint8)
    return y.to(like.dtype)


#: Corruptions computed on uint8 batches directly (Pillow's own arithmetic; no float round trip).
_UINT8_KERNELS = {
    "jpeg_compression": _jpeg_u8,
    "brightness_up": lambda x, p: _enhance("brightness", x, p),
    "brightness_down": lambda x, p: _enhance("brightness", x, p),
    "contrast_up": lambda x, p: _enhance("contrast", x, p),
    "contrast_down": lambda x, p: _enhance("contrast", x, p),
}


#: Image values per block on the CPU (4 Mi: 16 MB in float32, 27 images of 3 x 224 x 224):
#: corrupting a batch block by block keeps each pass over the pixels within the caches, where
#: whole-batch passes over B = 256 images (154 MB per float32 copy) are bound by memory traffic.
#: On 2 cores at B = 256 this took contrast from 710 to about 130 ms, Gaussian noise from 900
#: to about 450 ms and motion blur from 7.2 to 1.8 s (1, 2 and 8 Mi values were slower).
_CPU_BLOCK_VALUES = 1 << 22


def _spatial_scale(x: torch.Tensor, reference_size: int | None) -> float:
    """The factor on spatial parameters: 1 (the official pixels at any size) without a
    reference size, else ``min(H, W) / reference_size``."""
    return 1.0 if reference_size is None else min(x.shape[2], x.shape[3]) / reference_size


def _check_reference_size(fn: str, reference_size: object) -> int | None:
    if reference_size is None:
        return None
    return _checks.check_int(fn, "reference_size", reference_size, min_value=1)


def _apply(
    name: str,
    x: torch.Tensor,
    p: torch.Tensor,
    generator: torch.Generator | None,
    scale: float = 1.0,
) -> torch.Tensor:
    """Corruption ``name`` with per-sample float64 parameters p on x (uint8 or float); x's dtype.

    On the CPU the batch is corrupted in blocks of samples (:data:`_CPU_BLOCK_VALUES` values
    each), draws taken block after block from ``generator``; on other devices in one block.
    ``scale`` multiplies the spatial parameters (:func:`_spatial_scale`).
    """
    b = x.shape[0]
    per_image = max(1, x[:1].numel())
    rows = b if x.device.type != "cpu" else max(1, _CPU_BLOCK_VALUES // per_image)
    if rows >= b:
        return _apply_block(name, x, p, generator, scale)
    out = torch.empty_like(x)
    for start in range(0, b, rows):
        stop = min(b, start + rows)
        out[start:stop] = _apply_block(name, x[start:stop], p[start:stop], generator, scale)
    return out


def _apply_block(
    name: str, x: torch.Tensor, p: torch.Tensor, generator: torch.Generator | None, scale: float
) -> torch.Tensor:
    if x.dtype == torch.uint8 and name in _UINT8_KERNELS:
        return _UINT8_KERNELS[name](x, p)
    quantized = x.dtype == torch.uint8
    out = _kernel(name, _to_unit(x), p, quantized=quantized, scale=scale, generator=generator)
    return _from_unit(out, x)


def _table(dataset: str, name: str, device: torch.device) -> torch.Tensor:
    """(S,) or (S, 2) float64 official parameters (S = 5, or 6 for the longer lists)."""
    return torch.tensor(DATASETS[dataset][name], dtype=torch.float64, device=device)


def corrupt(
    x: torch.Tensor,
    name: str,
    severity: int,
    *,
    dataset: str = "dermamnist",
    modality: str | None = None,
    reference_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply MedMNIST-C corruption ``name`` at ``severity`` 1..5 to every image of the batch.

    Args:
        x: (B, C, H, W) uint8 (0..255) or float (0..1) images.
        name: one of the corruptions the data set lists (``DATASETS[dataset]``).
        severity: 1 (mild) .. 5 (strong); the parameter is ``DATASETS[dataset][name][severity-1]``.
        dataset: a MedMNIST data set (``"pathmnist"``, ..., ``"organsmnist"``) or a modality
            alias of :data:`MODALITIES` (``"xray"`` is ChestMNIST); its official severities are
            used. Default ``"dermamnist"``, the list with the most generic corruptions (every
            noise, three blurs, digital, brightness/contrast, black corner).
        modality: instead of ``dataset``, an imaging modality of :data:`MODALITIES` (``"xray"``
            is ChestMNIST's list); takes precedence when given.
        reference_size: None (default, the original's behaviour): blur kernels, motion radius
            and bubble radii are the official values in pixels at any image size. An int R:
            they scale by ``min(H, W) / R`` (``R = 224`` keeps their size relative to the
            MedMNIST+ 224 x 224 images the official values were chosen on).
        generator: for the noises, the motion-blur angle and the bubbles (None: torch's global
            RNG).

    Returns:
        (B, C, H, W) tensor of x's dtype (uint8 results are rounded).

    Raises:
        ValueError: unknown dataset, a name the data set does not list, severity outside 1..5,
            x not 4-D.
        TypeError: x neither uint8 nor floating, severity not an int.

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> g = torch.Generator().manual_seed(0)
        >>> corrupt(x, "gaussian_noise", 3, dataset="chestmnist", generator=g).shape
        torch.Size([2, 3, 32, 32])
    """
    fn = "corrupt"
    AF.check_images(fn, x)
    ds = resolve_dataset(fn, dataset, modality)
    _checks.check_choice(fn, "name", name, tuple(DATASETS[ds]))
    sev = _checks.check_int(fn, "severity", severity)
    if not 1 <= sev <= 5:
        raise ValueError(f"{fn}: severity must be in 1..5; got {sev}")
    ref = _check_reference_size(fn, reference_size)
    _checks.check_generator(fn, generator, x.device)
    p = _table(ds, name, x.device)[sev - 1]
    return _apply(name, x, p.expand(x.shape[0], *p.shape), generator, _spatial_scale(x, ref))


def augmentation_params(
    dataset: str,
    name: str,
    n: int,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Parameters of ``AugMedMNISTC`` for ``n`` samples: each drawn uniformly between the first
    and last entries of the official list (independently per parameter; ranges may decrease).
    For ``zoom_blur`` the original's lists are the arrays ``numpy.arange(1, stop, step)``: it
    draws the stop from ``U(1, last factor of the last array)`` (DermaMNIST:
    ``numpy.arange(1, 1.31, 0.03)[-1]``, 1.30) and the step between the first and last steps;
    so does this.

    Returns:
        (n,) or (n, 2) float64.
    """
    fn = "augmentation_params"
    ds = resolve_dataset(fn, dataset)
    _checks.check_choice(fn, "name", name, tuple(DATASETS[ds]))
    table = _table(ds, name, torch.device("cpu") if device is None else torch.device(device))
    lo, hi = table[0].clone(), table[-1].clone()
    if name == "zoom_blur":
        lo[0] = 1.0
        hi[0] = float(np.arange(1.0, float(hi[0]), float(hi[1]))[-1])
    k = 1 if table.dim() == 1 else table.shape[1]
    u = _rng.uniform((n, k), device=table.device, dtype=torch.float64, generator=generator)
    p = lo.view(1, -1) + (hi - lo).view(1, -1) * u
    return p[:, 0] if table.dim() == 1 else p


class Corruptions(nn.Module):
    """MedMNIST-C augmentation (``AugMedMNISTC``): one corruption and parameter per sample.

    Di Salvo, Doerrich, Ledig. MedMNIST-C. arXiv 2406.17536, 2024.

    Each sample picks uniformly one of the data set's corruptions plus ``identity`` (identity has
    probability ``1 / (n + 1)``) and draws its parameter with :func:`augmentation_params`:
    uniformly between the first and last official values (kernel sizes, JPEG qualities and
    bubble counts are then truncated to integers, kernel sizes forced odd, as in the original).
    Samples are grouped per corruption (a loop over corruptions, none over samples, except
    JPEG's per-sample codec call).

    Differences from the original: the impulse noise is drawn from ``generator`` (the original
    fixes its seed, so its pattern repeats); ``stain_deposit`` and ``characters`` are not built
    (:data:`NOT_BUILT`), so PathMNIST, BloodMNIST and DermaMNIST draw among one corruption fewer.
    Spatial parameters are the official pixels at the image's own size, as in the original,
    unless ``reference_size`` is given (see :func:`corrupt`).

    Args:
        dataset: a MedMNIST data set or modality alias (see :func:`corrupt`; default
            ``"dermamnist"``).
        modality: instead of ``dataset``, an imaging modality of :data:`MODALITIES`
            (``Corruptions(modality="xray")`` is ``Corruptions("chestmnist")``).
        corruptions: a subset of the data set's corruptions instead of all of them.
        reference_size: None (default: the official pixels at any size) or R to scale spatial
            parameters by ``min(H, W) / R`` (see :func:`corrupt`).

    Example:
        >>> aug = Corruptions("xray")
        >>> aug(torch.rand(4, 1, 28, 28), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1, 28, 28])
    """

    def __init__(
        self,
        dataset: str = "dermamnist",
        *,
        modality: str | None = None,
        corruptions: list[str] | None = None,
        reference_size: int | None = None,
    ) -> None:
        super().__init__()
        fn = "Corruptions"
        self.dataset = resolve_dataset(fn, dataset, modality)
        self.reference_size = _check_reference_size(fn, reference_size)
        listed = tuple(DATASETS[self.dataset])
        if corruptions is None:
            self.corruptions: tuple[str, ...] = listed
        else:
            if not isinstance(corruptions, (list, tuple)) or not corruptions:
                raise ValueError(f"{fn}: corruptions must be a non-empty list of names")
            for c in corruptions:
                _checks.check_choice(fn, "corruptions", c, listed)
            self.corruptions = tuple(corruptions)

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Corrupt each sample of a (B, C, H, W) uint8/float batch; same shape and dtype."""
        fn = "Corruptions"
        AF.check_images(fn, x)
        _checks.check_generator(fn, generator, x.device)
        b = x.shape[0]
        n = len(self.corruptions)
        choice = _rng.randint(n + 1, (b,), device=x.device, generator=generator)  # n: identity
        scale = _spatial_scale(x, self.reference_size)
        out = x.clone()
        for k, name in enumerate(self.corruptions):
            idx = (choice == k).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            p = augmentation_params(
                self.dataset, name, idx.numel(), device=x.device, generator=generator
            )
            out.index_copy_(0, idx, _apply(name, x.index_select(0, idx), p, generator, scale))
        return out

    def extra_repr(self) -> str:
        text = f"dataset={self.dataset!r}, corruptions={list(self.corruptions)!r}"
        if self.reference_size is not None:
            text += f", reference_size={self.reference_size}"
        return text
