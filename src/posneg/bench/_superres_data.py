"""Data, model and metrics of `posneg bench superres` (x2 super-resolution on bundled photos).

Images: scikit-learn's two sample photographs and the photographs scikit-image ships inside its
wheel (nothing is downloaded), as luma ``Y' = 0.299 R + 0.587 G + 0.114 B`` in [0, 1].
Training crops come from :data:`TRAIN_IMAGES`, held-out crops from the other images,
:data:`TEST_IMAGES`. LR = bicubic x2 downscale with antialiasing (PyTorch's, like MATLAB's
``imresize``), clamped to [0, 1].
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posneg.losses.pcl_sr import haar_highpass

__all__ = [
    "TEST_IMAGES",
    "TRAIN_IMAGES",
    "SRData",
    "SmallSR",
    "downscale",
    "load_crops",
    "load_image",
    "metrics",
    "psnr",
    "ssim",
]

#: Training images: sklearn ``china``, ``flower``; skimage ``camera``, ``astronaut``, ``coffee``,
#: ``rocket``, ``brick``, ``grass``.
TRAIN_IMAGES: tuple[str, ...] = (
    "china",
    "flower",
    "camera",
    "astronaut",
    "coffee",
    "rocket",
    "brick",
    "grass",
)
#: Held-out images (never cropped for training): skimage ``chelsea``, ``gravel``, ``coins``,
#: ``immunohistochemistry``.
TEST_IMAGES: tuple[str, ...] = ("chelsea", "gravel", "coins", "immunohistochemistry")

SHAVE = 2  # border pixels left out of PSNR/SSIM (the scale, as EDSR's calc_psnr)


#: The file of each image inside its installed package (read with Pillow: no download, and no
#: import of scikit-learn's or scikit-image's heavy modules).
FILES: dict[str, tuple[str, str]] = {
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "camera": ("skimage", "data/camera.png"),
    "astronaut": ("skimage", "data/astronaut.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "brick": ("skimage", "data/brick.png"),
    "grass": ("skimage", "data/grass.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "gravel": ("skimage", "data/gravel.png"),
    "coins": ("skimage", "data/coins.png"),
    "immunohistochemistry": ("skimage", "data/ihc.png"),
}


@functools.cache
def load_image(name: str) -> np.ndarray:
    """One bundled photograph as a float32 (H, W) luma image in [0, 1] (cached; read-only)."""
    import importlib.util
    from pathlib import Path

    from PIL import Image

    package, rel = FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"superres: {package} is not installed (image {name!r})")
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    with Image.open(path) as im:
        x = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    x = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = np.ascontiguousarray(x)
    x.flags.writeable = False
    return x


def downscale(hr: torch.Tensor) -> torch.Tensor:
    """x2 bicubic downscale with antialiasing, clamped to [0, 1]."""
    size = (hr.shape[-2] // 2, hr.shape[-1] // 2)
    return F.interpolate(hr, size=size, mode="bicubic", antialias=True).clamp(0.0, 1.0)


@dataclass(frozen=True)
class SRData:
    """HR crops (N, 1, P, P) and their LR (N, 1, P/2, P/2), train and held-out."""

    hr_train: torch.Tensor
    lr_train: torch.Tensor
    hr_test: torch.Tensor
    lr_test: torch.Tensor

    def summary(self) -> dict[str, object]:
        return {
            "train_images": list(TRAIN_IMAGES),
            "test_images": list(TEST_IMAGES),
            "train_crops": int(self.hr_train.shape[0]),
            "test_crops": int(self.hr_test.shape[0]),
            "patch": int(self.hr_train.shape[-1]),
        }


def _crops(names: tuple[str, ...], n: int, patch: int, g: torch.Generator) -> torch.Tensor:
    images = [torch.tensor(load_image(k)) for k in names]
    which = torch.randint(len(images), (n,), generator=g)
    out = torch.empty(n, 1, patch, patch)
    for i, k in enumerate(which.tolist()):
        img = images[k]
        top = int(torch.randint(img.shape[0] - patch + 1, (1,), generator=g))
        left = int(torch.randint(img.shape[1] - patch + 1, (1,), generator=g))
        out[i, 0] = img[top : top + patch, left : left + patch]
    return out


def load_crops(n_train: int, n_test: int, *, patch: int = 32, seed: int = 0) -> SRData:
    """Random crops (fixed ``seed``, the same for every training seed) and their LR."""
    g = torch.Generator().manual_seed(seed)
    hr_train = _crops(TRAIN_IMAGES, n_train, patch, g)
    hr_test = _crops(TEST_IMAGES, n_test, patch, g)
    return SRData(hr_train, downscale(hr_train), hr_test, downscale(hr_test))


class SmallSR(nn.Module):
    """A ~48k-parameter residual x2 SR CNN working at LR size (ESPCN-like output).

    ``out = bicubic(lr) + PixelShuffle(tail(body(head(lr))))``; head conv3x3 1->32, two residual
    blocks (conv-ReLU-conv), one conv, tail conv3x3 32->4, pixel shuffle x2.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.head = nn.Conv2d(1, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1),
            )
            for _ in range(2)
        )
        self.body = nn.Conv2d(width, width, 3, padding=1)
        self.tail = nn.Conv2d(width, 4, 3, padding=1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h = self.head(lr)
        f = h
        for block in self.blocks:
            f = f + block(f)
        f = self.body(F.relu(f)) + h
        up = F.interpolate(lr, scale_factor=2, mode="bicubic", align_corners=False)
        return up + F.pixel_shuffle(self.tail(f), 2)


def psnr(sr: torch.Tensor, hr: torch.Tensor, *, shave: int = SHAVE) -> torch.Tensor:
    """Per-image PSNR (dB) for data range 1 after shaving ``shave`` border pixels: (N,)."""
    s = (slice(None), slice(None), slice(shave, -shave or None), slice(shave, -shave or None))
    mse = (sr[s].double() - hr[s].double()).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-20))


def ssim(sr: torch.Tensor, hr: torch.Tensor, *, shave: int = SHAVE) -> torch.Tensor:
    """Per-image SSIM for data range 1, as scikit-image's ``structural_similarity`` defaults on
    grey images (7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance, the mean over
    the positions where the window fits inside the image), after shaving ``shave`` pixels: (N,).
    """
    s = (slice(None), slice(None), slice(shave, -shave or None), slice(shave, -shave or None))
    x, y = sr[s].double(), hr[s].double()
    win = 7
    cov_norm = win * win / (win * win - 1.0)

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, win, stride=1)

    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return (num / den).mean(dim=(1, 2, 3))


def metrics(sr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
    """Held-out metrics of SR outputs (clamped to [0, 1]): PSNR (dB, mean over crops), SSIM,
    mean |HH(sr) - HH(hr)| and mean |high-pass(sr) - high-pass(hr)| over the three Haar
    detail bands (x 1000)."""
    sr = sr.detach().cpu().clamp(0.0, 1.0)
    hr = hr.detach().cpu()
    hp_sr, hp_hr = haar_highpass(sr.double()), haar_highpass(hr.double())
    hh = (hp_sr[:, 2] - hp_hr[:, 2]).abs().mean()
    hf = (hp_sr - hp_hr).abs().mean()
    p = psnr(sr, hr)
    return {
        "psnr": float(p.mean()),
        "ssim": float(ssim(sr, hr).mean()),
        "hh_error": 1000.0 * float(hh),
        "hf_error": 1000.0 * float(hf),
        "psnr_median": float(p.median()) if not math.isnan(float(p.mean())) else math.nan,
    }
