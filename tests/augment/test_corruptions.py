"""MedMNIST-C corruptions: the official tables, each formula against its reference (OpenCV,
scikit-image, SciPy, Pillow, or a float64 transcription where the original calls a library that
is not installed: ImageMagick's motion blur, torchvision's Gaussian blur), severity monotone on
real photographs, the per-sample augmentation mode, dtype/shape, generator, errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageEnhance
from sklearn.datasets import load_sample_images

from posneg.augment import corruptions as C
from posneg.augment.corruptions import (
    CORRUPTIONS,
    DATASETS,
    MODALITIES,
    NOT_BUILT,
    Corruptions,
    augmentation_params,
    corrupt,
    severity_table,
)

cv2 = pytest.importorskip("cv2")
skcolor = pytest.importorskip("skimage.color")
ndimage = pytest.importorskip("scipy.ndimage")

S = 224  # the size the official parameters are defined for
_IMAGES = load_sample_images().images
PHOTO_224 = np.array(Image.fromarray(_IMAGES[0]).resize((S, S), Image.BILINEAR))
X224 = torch.from_numpy(PHOTO_224).permute(2, 0, 1).unsqueeze(0).double() / 255
H, W = 84, 112
PHOTOS = [Image.fromarray(a).resize((W, H), Image.BILINEAR) for a in _IMAGES]
X = torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in PHOTOS])
#: Both photographs at 224 x 224, uint8: the spatial parameters are the official ones there.
X_FULL = torch.stack(
    [
        torch.from_numpy(np.array(Image.fromarray(a).resize((S, S), Image.BILINEAR))).permute(
            2, 0, 1
        )
        for a in _IMAGES
    ]
)

PAIRS = [(ds, name) for ds, table in DATASETS.items() for name in table]


def _photos(size: int) -> torch.Tensor:
    """Both photographs resized (bilinear) to size x size, uint8 (B, 3, size, size)."""
    return torch.stack(
        [
            torch.from_numpy(
                np.array(Image.fromarray(a).resize((size, size), Image.BILINEAR))
            ).permute(2, 0, 1)
            for a in _IMAGES
        ]
    )


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).numpy()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.double() - b.double()) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return 10 * torch.log10(255.0**2 / mse)


def _p(*values: float) -> torch.Tensor:
    """One sample's parameters: (1,) for one value, (1, k) for k values."""
    t = torch.tensor([values], dtype=torch.float64)
    return t[:, 0] if len(values) == 1 else t


# ---------------------------------------------------------------------------------------------
# the official tables
# ---------------------------------------------------------------------------------------------


def test_tables_are_the_official_registry() -> None:
    assert len(DATASETS) == 12
    for table in DATASETS.values():
        for values in table.values():
            assert len(values) in (5, 6)
    # spot checks against medmnistc/corruptions/registry.py
    assert DATASETS["pathmnist"]["jpeg_compression"] == (50, 30, 15, 10, 7)
    assert DATASETS["dermamnist"]["black_corner"] == (1.10, 1.05, 1.00, 0.90, 0.95)
    assert DATASETS["retinamnist"]["defocus_blur"][5] == (9, 0.6)
    assert DATASETS["chestmnist"]["gaussian_blur"] == (3, 5, 7, 9, 11, 13)
    assert DATASETS["pneumoniamnist"]["shot_noise"] == (300, 200, 150, 100, 80)
    assert DATASETS["organsmnist"] == DATASETS["organamnist"] == DATASETS["organcmnist"]
    assert set(CORRUPTIONS) == {n for t in DATASETS.values() for n in t}
    assert NOT_BUILT["pathmnist"] == ("stain_deposit",)
    assert severity_table("xray", "gamma_corr_up") == DATASETS["chestmnist"]["gamma_corr_up"]
    assert set(MODALITIES.values()) <= set(DATASETS)


def test_zoom_factors_are_numpy_arange() -> None:
    """The (stop, step) pairs give exactly ``numpy.arange(1, stop, step)``: the registry's lists
    (their lengths include float round-up, e.g. 12 factors for arange(1, 1.11, 0.01))."""
    for stop, step in DATASETS["dermamnist"]["zoom_blur"]:
        count = math.ceil((stop - 1.0) / step)
        assert count == len(np.arange(1, stop, step))


# ---------------------------------------------------------------------------------------------
# formulas against references, at 224 x 224
# ---------------------------------------------------------------------------------------------


def _official_disk(radius: float, alias_blur: float) -> np.ndarray:
    if radius <= 8:
        grid, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        grid, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(grid, grid)
    disk = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    disk /= np.sum(disk)
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


@pytest.mark.parametrize("r,a", [(3, 0.1), (0.5, 0.6), (8, 0.5), (9, 0.6), (8.3, 0.2)])
def test_defocus_equals_opencv(r: float, a: float) -> None:
    k = _official_disk(r, a)
    img = _hwc(X224).astype(np.float32)
    ref = np.stack([cv2.filter2D(img[:, :, d], -1, k) for d in range(3)], -1)
    got = _hwc(C._defocus(X224, _p(r, a), 1.0))
    np.testing.assert_allclose(got, ref, atol=1e-6)


@pytest.mark.parametrize("ds", ["pathmnist", "octmnist", "dermamnist", "retinamnist"])
@pytest.mark.parametrize("size", [28, 64])
def test_defocus_at_medmnist_size_is_the_official_kernel(ds: str, size: int) -> None:
    """By default the official disk is applied at the image's own size, as the original's
    ``DefocusBlur`` does (``cv2.filter2D`` with ``disk(r, a)`` whatever the image size)."""
    x = _photos(size).double() / 255
    for sev in (1, 5):
        r, a = DATASETS[ds]["defocus_blur"][sev - 1]  # type: ignore[misc]
        k = _official_disk(r, a)
        got = corrupt(x, "defocus_blur", sev, dataset=ds)
        for i in range(x.shape[0]):
            img = x[i].permute(1, 2, 0).numpy().astype(np.float32)
            ref = np.stack([cv2.filter2D(img[:, :, d], -1, k) for d in range(3)], -1)
            np.testing.assert_allclose(
                got[i].permute(1, 2, 0).numpy(), np.clip(ref, 0, 1), atol=1e-6
            )


def _official_clipped_zoom(img: np.ndarray, z: float) -> np.ndarray:
    h = img.shape[0]
    ch = int(np.ceil(h / z))
    top = (h - ch) // 2
    out = ndimage.zoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


@pytest.mark.parametrize("stop,step", DATASETS["dermamnist"]["zoom_blur"][::2])
def test_zoom_blur_equals_scipy(stop: float, step: float) -> None:
    img = _hwc(X224).astype(np.float32)
    factors = np.arange(1, stop, step)
    ref = (img + sum(_official_clipped_zoom(img, z) for z in factors)) / (len(factors) + 1)
    got = _hwc(C._zoom(X224.float(), _p(stop, step)))
    np.testing.assert_allclose(got, ref, atol=1e-6)


def _magick_motion(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's MotionBlurImage (effect.c), float64, edge virtual pixels."""
    width = 2 * math.ceil(radius) + 1
    kernel = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    px = width * math.sin(math.radians(angle))
    py = width * math.cos(math.radians(angle))
    hyp = math.hypot(px, py)
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    for i in range(width):
        ox = math.ceil(i * py / hyp - 0.5)
        oy = math.ceil(i * px / hyp - 0.5)
        rows = np.clip(np.arange(h) + oy, 0, h - 1)
        cols = np.clip(np.arange(w) + ox, 0, w - 1)
        out += kernel[i] * img[rows][:, cols]
    return out


@pytest.mark.parametrize("r,s,angle", [(15, 5, 30.0), (10, 3, -44.0), (5.5, 5, 12.3)])
def test_motion_blur_equals_imagemagick_loop(r: float, s: float, angle: float) -> None:
    got = C._motion(X224, _p(r, s), torch.tensor([angle], dtype=torch.float64), 1.0)
    np.testing.assert_allclose(_hwc(got), _magick_motion(_hwc(X224), r, s, angle), atol=1e-12)


def _torchvision_gaussian_blur(img: np.ndarray, k: int) -> np.ndarray:
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    t = np.linspace(-(k - 1) * 0.5, (k - 1) * 0.5, k)
    k1 = np.exp(-0.5 * (t / sigma) ** 2)
    k1 /= k1.sum()
    p = k // 2
    xp = np.pad(img, ((p, p), (p, p), (0, 0)), mode="reflect")
    h, w = img.shape[:2]
    rows = sum(k1[i] * xp[i : i + h] for i in range(k))
    return sum(k1[j] * rows[:, j : j + w] for j in range(k))  # type: ignore[no-any-return]


@pytest.mark.parametrize("k", [3, 13, 25])
def test_gaussian_blur_equals_torchvision_formula(k: int) -> None:
    got = _hwc(C._gaussian_blur(X224, _p(float(k)), 1.0))
    np.testing.assert_allclose(got, _torchvision_gaussian_blur(_hwc(X224), k), atol=1e-12)


def test_gaussian_blur_even_size_made_odd() -> None:
    even = C._gaussian_blur(X224, _p(12.0), 1.0)
    torch.testing.assert_close(even, C._gaussian_blur(X224, _p(11.0), 1.0))


@pytest.mark.parametrize("c", [0.05, 0.25])
def test_saturate_equals_skimage(c: float) -> None:
    img = _hwc(X224).copy()
    img[:8, :8] = 0.4  # grey pixels: hue 0 in scikit-image, so they turn red-tinted
    hsv = skcolor.rgb2hsv(img)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] + c, 0, 1)
    ref = np.clip(skcolor.hsv2rgb(hsv), 0, 1)
    x = torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0)
    np.testing.assert_allclose(_hwc(C._saturate(x, _p(c))), ref, atol=1e-12)


@pytest.mark.parametrize("c", [1.10, 0.95, 0.5])
def test_black_corner_equals_opencv_circle(c: float) -> None:
    for h, w in ((S, S), (31, 40)):
        cx, cy = w // 2, h // 2
        radius = min(cx, cy, w - cx, h - cy)
        circle = np.zeros((h, w), np.uint8)
        cv2.circle(circle, (cx, cy), int(radius * c), 255, thickness=-1)
        ones = torch.ones(1, 1, h, w, dtype=torch.float64)
        got = C._black_corner(ones, _p(c))[0, 0].numpy() > 0
        assert int(((circle == 255) != got).sum()) == 0


def test_bubble_layer_equals_pillow_drawing() -> None:
    """Given the same bubbles, the alpha layer and the composite equal the original's Pillow
    drawing and paste up to the ellipse rasteriser (a few boundary pixels) and rounding."""
    g = np.random.default_rng(0)
    img = Image.fromarray(PHOTO_224)
    n_b = 12
    r = g.integers(3, 18, n_b).astype(float)
    cx = np.array([g.integers(int(ri), S - int(ri) + 1) for ri in r], dtype=float)
    cy = np.array([g.integers(int(ri), S - int(ri) + 1) for ri in r], dtype=float)
    layer = Image.new("RGBA", img.size, (255, 255, 255, 0))
    draw = ImageDraw.Draw(layer)
    for x0, y0, ri in zip(cx, cy, r, strict=True):
        draw.ellipse(
            (x0 - ri - 2, y0 - ri - 2, x0 + ri + 2, y0 + ri + 2), fill=(255, 255, 255, 130)
        )
        draw.ellipse((x0 - ri, y0 - ri, x0 + ri, y0 + ri), fill=(255, 255, 255, 100))
    out = img.copy()
    out.paste(layer, (0, 0), layer)
    ref_alpha = np.array(layer)[:, :, 3].astype(float)
    t = lambda a: torch.from_numpy(a).view(1, -1)  # noqa: E731
    alpha = C._bubble_alpha(S, S, t(cx), t(cy), t(r), torch.tensor([float(n_b)]), 2.0)[0].numpy()
    assert float((alpha != ref_alpha).mean()) < 0.01
    a = torch.from_numpy(ref_alpha / 255).view(1, 1, S, S)
    composite = torch.round((X224 * (1 - a) + a) * 255)[0].permute(1, 2, 0).numpy()
    assert np.abs(composite - np.array(out, dtype=float)).max() <= 1


def test_bubble_draws() -> None:
    """7..max_bubbles bubbles of radius 3..max_radius inside the image; three alpha levels."""
    flat = torch.zeros(64, 1, S, S, dtype=torch.float64)
    out = C._bubble(flat, _p(10, 9).expand(64, 2), 1.0, torch.Generator().manual_seed(0))
    levels = set(torch.unique(torch.round(out * 255)).tolist())
    assert levels <= {0.0, 100.0, 130.0}
    assert {100.0, 130.0} <= levels


def test_gamma_uint8_equals_torchvision_lookup_table() -> None:
    """torchvision adjust_gamma on a PIL image: ``int(255.999 (v / 255)^gamma)`` per level."""
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    for gamma in (1.6, 0.4):
        out = corrupt(
            levels, "gamma_corr_up" if gamma > 1 else "gamma_corr_down", 5, dataset="xray"
        )
        ref = [int((255 + 1 - 1e-3) * pow(v / 255.0, gamma)) for v in range(256)]
        assert out[0, 0].flatten().tolist() == ref


def test_brightness_contrast_and_jpeg_equal_pillow() -> None:
    for name, enh in (
        ("brightness_down", ImageEnhance.Brightness),
        ("contrast_up", ImageEnhance.Contrast),
    ):
        for sev in (1, 5):
            out = corrupt(X, name, sev, dataset="pathmnist")
            f = DATASETS["pathmnist"][name][sev - 1]
            ref = np.stack([np.array(enh(i).enhance(f)) for i in PHOTOS])  # type: ignore[arg-type]
            assert torch.equal(out.permute(0, 2, 3, 1), torch.from_numpy(ref))
    out = corrupt(X, "jpeg_compression", 3, dataset="pathmnist")
    for k, img in enumerate(PHOTOS):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=15)
        ref = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1)
        assert torch.equal(out[k], ref)


def test_pixelate_close_to_pillow_box() -> None:
    out = corrupt(X, "pixelate", 4, dataset="pathmnist")  # factor 0.30: int(112 * 0.3) = 33
    w, h = int(W * 0.30), int(H * 0.30)
    ref = [
        np.array(i.resize((w, h), Image.BOX).resize((W, H), Image.BOX), dtype=np.int32)
        for i in PHOTOS
    ]
    diff = (out.permute(0, 2, 3, 1).int() - torch.from_numpy(np.stack(ref))).abs().float()
    assert float(diff.mean()) < 1.0 and float((diff > 2).float().mean()) < 0.02


def test_noise_formulas() -> None:
    x = torch.full((2, 3, 64, 64), 0.5, dtype=torch.float64)
    for sev, c in enumerate(DATASETS["dermamnist"]["gaussian_noise"][:3], start=1):
        out = corrupt(x, "gaussian_noise", sev, generator=torch.Generator().manual_seed(2))
        assert float((out - x).mean()) == pytest.approx(0.0, abs=0.01)
        assert float((out - x).std()) == pytest.approx(float(c), rel=0.05)  # type: ignore[arg-type]
    out = corrupt(x, "speckle_noise", 3, generator=torch.Generator().manual_seed(2))
    assert float((out - x).std()) == pytest.approx(0.5 * 0.2, rel=0.05)
    out = corrupt(x, "shot_noise", 4, generator=torch.Generator().manual_seed(3))
    counts = out * 10.0  # Poisson(0.5 * 10) / 10
    assert float(counts.mean()) == pytest.approx(5.0, rel=0.03)
    assert float(counts.var()) == pytest.approx(5.0, rel=0.1)
    assert torch.allclose(counts, counts.round())
    out = corrupt(x, "impulse_noise", 5, generator=torch.Generator().manual_seed(3))
    hit = out != 0.5
    assert float(hit.double().mean()) == pytest.approx(0.17, abs=0.01)
    assert float((out[hit] == 1).double().mean()) == pytest.approx(0.5, abs=0.03)


def test_blurs_preserve_constant_images() -> None:
    flat = torch.full((2, 3, 40, 40), 0.4, dtype=torch.float64)
    for ds, name, sev in [
        ("chestmnist", "gaussian_blur", 5),
        # severity 3 (r = 6): from r = 7 the alias-blurred disk reaches the edge of its 17 x 17
        # grid, where OpenCV's reflect-101 border folds mass back, so the official kernel sums
        # to more than 1 (1.013 at r = 8, a = 0.5): posneg, like the original, brightens then
        ("dermamnist", "defocus_blur", 3),
        ("dermamnist", "motion_blur", 5),
        ("dermamnist", "zoom_blur", 5),
        ("dermamnist", "pixelate", 5),
    ]:
        out = corrupt(flat, name, sev, dataset=ds, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, flat)
    k = _official_disk(8, 0.5)
    out = corrupt(flat, "defocus_blur", 5, dataset="dermamnist")
    torch.testing.assert_close(out, (flat * float(k.sum())).clamp(0, 1))


@pytest.mark.parametrize(
    "ds,name",
    [("dermamnist", n) for n in ("defocus_blur", "zoom_blur", "pixelate", "contrast_up")]
    + [("pathmnist", "saturate"), ("chestmnist", "gaussian_blur"), ("xray", "gamma_corr_up")],
)
def test_cpu_blocks_equal_one_block(ds: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Corrupting the batch in CPU blocks of samples (here one image per block) gives the same
    images as one block, for the corruptions that draw nothing."""
    xf = X.float() / 255
    whole, whole_f = corrupt(X, name, 4, dataset=ds), corrupt(xf, name, 4, dataset=ds)
    monkeypatch.setattr(C, "_CPU_BLOCK_VALUES", X[0].numel())
    assert torch.equal(corrupt(X, name, 4, dataset=ds), whole)
    torch.testing.assert_close(corrupt(xf, name, 4, dataset=ds), whole_f)


def test_cpu_blocks_draws_are_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "_CPU_BLOCK_VALUES", X[0].numel())
    for name in ("gaussian_noise", "motion_blur"):
        a = corrupt(X, name, 3, generator=torch.Generator().manual_seed(3))
        b = corrupt(X, name, 3, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, b) and not torch.equal(a, X)


# ---------------------------------------------------------------------------------------------
# properties on real photographs, every data set
# ---------------------------------------------------------------------------------------------

#: Official lists that are not monotone in strength (the card's quirk 3), and bubbles (a random
#: number of them per call, so PSNR per seed need not fall).
NOT_MONOTONE = {("dermamnist", "black_corner"), *((d, "bubble") for d in DATASETS)}


@pytest.mark.parametrize("size", [28, 64, 128, 224])
@pytest.mark.parametrize("ds,name", PAIRS)
def test_severity_monotone_psnr(ds: str, name: str, size: int) -> None:
    """PSNR to the clean photo does not rise from one severity to the next and falls from 1 to 5
    (each photo, fixed seed), at MedMNIST's sizes 28, 64, 128 and 224 with the default
    (official pixel) spatial parameters."""
    x = X_FULL if size == S else _photos(size)
    psnr = torch.stack(
        [
            _psnr(
                corrupt(x, name, s, dataset=ds, generator=torch.Generator().manual_seed(0)),
                x,
            )
            for s in range(1, 6)
        ]
    )  # (5, 2)
    if (ds, name) in NOT_MONOTONE:
        assert bool((psnr[-1] < 60).all())  # still a visible corruption
        return
    assert bool((psnr[-1] < psnr[0]).all()), psnr.T.tolist()
    if size == 28 and name == "pixelate":
        # int(c 28) blocks alias differently from one size to the next (22, 16, 11, 8, 7 pixels
        # for PathMNIST): the original's Pillow BOX pixelate is not monotone at 28 x 28
        return
    # 0.01 dB slack: lists that only grow a motion radius far beyond 3 sigma (PathMNIST 10 -> 15
    # at sigma 5) add taps of weight ~1e-4, a change of 1e-4 dB either way. At 28 x 28, 0.05 dB:
    # motion radii over half the image (BreastMNIST 13 -> 17) add taps that read replicated
    # edge pixels, and the impulse noise hits only a few dozen values
    slack = 0.05 if size == 28 else 0.01
    assert bool((psnr[1:] <= psnr[:-1] + slack).all()), psnr.T.tolist()


@pytest.mark.parametrize(
    "ds,name",
    [
        ("chestmnist", "gaussian_blur"),
        ("pathmnist", "defocus_blur"),
        ("octmnist", "defocus_blur"),
        ("dermamnist", "motion_blur"),
        ("pathmnist", "bubble"),
    ],
)
def test_reference_size_scales_spatial_parameters(ds: str, name: str) -> None:
    """``reference_size=R`` is the kernels with spatial parameters times min(H, W) / R; without
    it (default) they are the official pixels; at 224 x 224 both agree with R = 224."""
    x = _photos(28).double() / 255
    p = C._table(ds, name, x.device)[2].expand(2, *C._table(ds, name, x.device)[2].shape)

    def run(scale: float) -> torch.Tensor:
        return C._apply(name, x, p, torch.Generator().manual_seed(0), scale)

    def kw(ref: int | None) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return corrupt(x, name, 3, dataset=ds, reference_size=ref, generator=g)

    torch.testing.assert_close(kw(None), run(1.0))
    torch.testing.assert_close(kw(224), run(28 / 224))
    torch.testing.assert_close(kw(56), run(0.5))
    g = torch.Generator
    assert torch.equal(
        corrupt(X_FULL, name, 3, dataset=ds, generator=g().manual_seed(0)),
        corrupt(X_FULL, name, 3, dataset=ds, reference_size=224, generator=g().manual_seed(0)),
    )


def test_small_blurs_vanish_only_with_reference_size_224() -> None:
    """The issue's figures: with spatial parameters scaled to 224 (the former default), 28 x 28
    images are left unchanged by ChestMNIST's Gaussian blur and by PathMNIST's and OCTMNIST's
    defocus blur at every severity; with the official pixels (default) none is."""
    x = _photos(28)
    for ds, name in [
        ("chestmnist", "gaussian_blur"),
        ("pathmnist", "defocus_blur"),
        ("octmnist", "defocus_blur"),
    ]:
        for sev in range(1, 6):
            assert torch.equal(corrupt(x, name, sev, dataset=ds, reference_size=224), x)
            assert not torch.equal(corrupt(x, name, sev, dataset=ds), x)


def test_bubble_coverage_grows_with_severity() -> None:
    flat = torch.zeros(32, 3, 64, 64)
    cover = [
        float(
            (
                corrupt(
                    flat,
                    "bubble",
                    s,
                    dataset="pathmnist",
                    generator=torch.Generator().manual_seed(1),
                )
                > 0
            )
            .double()
            .mean()
        )
        for s in (1, 5)
    ]
    assert cover[1] > cover[0] > 0


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_dtype_shape_kept(name: str, dtype: torch.dtype) -> None:
    ds = next(d for d, t in DATASETS.items() if name in t)
    x = X[:, :, :24, :32]
    if dtype != torch.uint8:
        x = (x.double() / 255).to(dtype)
    out = corrupt(x, name, 3, dataset=ds, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == dtype
    if dtype != torch.uint8:
        assert float(out.float().min()) >= 0 and float(out.float().max()) <= 1


def test_jpeg_of_other_channel_counts_is_per_channel() -> None:
    x4 = torch.cat([X, X[:, :1]], 1)  # 4 channels
    out = corrupt(x4, "jpeg_compression", 2, dataset="pathmnist")
    for ch in range(4):
        grey = corrupt(x4[:, ch : ch + 1], "jpeg_compression", 2, dataset="pathmnist")
        assert torch.equal(out[:, ch : ch + 1], grey)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 19),
    w=st.integers(1, 19),
    c=st.sampled_from([1, 2, 3, 4]),
    b=st.integers(1, 3),
    dtype=st.sampled_from([torch.uint8, torch.float32, torch.float64]),
    severity=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_any_shape_every_corruption(
    h: int, w: int, c: int, b: int, dtype: torch.dtype, severity: int, seed: int
) -> None:
    """Every corruption of every data set, and the augmentation mode, on tiny and odd shapes,
    1-4 channels, uint8 and float: same shape and dtype, values in range, no error."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g, dtype=torch.float64)
    x = (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)
    for ds, table in DATASETS.items():
        for name in table:
            out = corrupt(x, name, severity, dataset=ds, generator=g)
            assert out.shape == x.shape and out.dtype == dtype, (ds, name)
            if dtype != torch.uint8:
                assert 0 <= float(out.min()) and float(out.max()) <= 1, (ds, name)
        assert Corruptions(ds)(x, generator=g).shape == x.shape


def test_one_channel_images() -> None:
    grey = X[:, :1]
    for name in ("saturate", "contrast_up", "bubble", "defocus_blur"):
        ds = next(d for d, t in DATASETS.items() if name in t)
        out = corrupt(grey, name, 2, dataset=ds, generator=torch.Generator().manual_seed(0))
        assert out.shape == grey.shape
    assert torch.equal(corrupt(grey, "saturate", 5, dataset="pathmnist"), grey)


# ---------------------------------------------------------------------------------------------
# augmentation mode
# ---------------------------------------------------------------------------------------------


def _rng_uniform_replay(n: int, k: int, *, seed: int) -> torch.Tensor:
    """The (n, k) float64 uniforms :func:`augmentation_params` draws from a fresh generator."""
    from posneg import _rng

    g = torch.Generator().manual_seed(seed)
    return _rng.uniform((n, k), dtype=torch.float64, generator=g)


def test_augmentation_params_ranges() -> None:
    g = torch.Generator().manual_seed(0)
    p = augmentation_params("chestmnist", "gaussian_blur", 4000, generator=g)
    assert float(p.min()) >= 3 and float(p.max()) <= 13  # first and sixth entries
    assert float(p.max()) > 11.5
    p = augmentation_params("dermamnist", "black_corner", 4000, generator=g)  # decreasing range
    assert 0.95 <= float(p.min()) and float(p.max()) <= 1.10
    p = augmentation_params("dermamnist", "zoom_blur", 4000, generator=g)
    assert p.shape == (4000, 2)
    # the original: stop ~ U(1, numpy.arange(1, 1.31, .03)[-1]) = U(1, 1.30), step ~ U(.01, .03)
    top = float(np.arange(1, 1.31, 0.03)[-1])
    assert top == pytest.approx(1.30, abs=1e-12)
    assert float(p[:, 0].min()) < 1.02 and 1.29 < float(p[:, 0].max()) <= top
    assert 0.01 <= float(p[:, 1].min()) and float(p[:, 1].max()) <= 0.03
    u = _rng_uniform_replay(4000, 2, seed=11)
    q = augmentation_params("dermamnist", "zoom_blur", 4000, generator=g.manual_seed(11))
    torch.testing.assert_close(q[:, 0], 1.0 + (top - 1.0) * u[:, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(q[:, 1], 0.01 + 0.02 * u[:, 1], rtol=0, atol=1e-12)
    p = augmentation_params("pathmnist", "motion_blur", 4000, generator=g)
    assert float(p[:, 0].min()) >= 5 and float(p[:, 0].max()) <= 15
    assert float(p[:, 1].min()) >= 5 and float(p[:, 1].max()) <= 12


def test_augmentation_mode_per_sample_identity_share_and_determinism() -> None:
    aug = Corruptions("xray")
    n = len(DATASETS["chestmnist"])
    x = torch.full((3000, 1, 8, 8), 0.5)
    before = torch.get_rng_state()
    a = aug(x, generator=torch.Generator().manual_seed(4))
    b = aug(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a, b)
    assert not torch.equal(a, aug(x, generator=torch.Generator().manual_seed(5)))
    unchanged = (a == x).flatten(1).all(1).double().mean()
    # identity has probability 1/(n+1); some corruptions leave a flat 0.5 image unchanged
    # (blurs, pixelate) so the share is at least that
    assert float(unchanged) >= 1.0 / (n + 1) - 0.03
    changed_kinds = {round(float(v), 3) for v in a.flatten(1).std(1)}
    assert len(changed_kinds) > 10  # parameters really differ per sample


def test_identity_share_at_28_pixels() -> None:
    """``Corruptions("xray")`` on 28 x 28 images leaves a sample unchanged with probability
    1 / 14 (identity among 13 corruptions) by default; with the former scaling to 224
    (``reference_size=224``) the Gaussian blur is a second identity, about 2 / 14."""
    low = torch.rand(4000, 1, 7, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.nn.functional.interpolate(low, size=(28, 28), mode="bicubic", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    n = len(DATASETS["chestmnist"])
    share = {}
    for ref in (None, 224):
        out = Corruptions("xray", reference_size=ref)(x, generator=torch.Generator().manual_seed(1))
        share[ref] = float((out == x).flatten(1).all(1).double().mean())
    assert share[None] == pytest.approx(1 / (n + 1), abs=0.015)
    assert share[224] == pytest.approx(2 / (n + 1), abs=0.02)


def test_contrast_other_channel_counts_blend_with_the_channel_mean() -> None:
    """Contrast on 2 or 4 channels blends with the mean over all channels and pixels (Pillow's
    luma is defined for 1 and 3 channels only); it no longer returns the image unchanged."""
    for c in (2, 4):
        x = torch.rand(3, c, 9, 11, generator=torch.Generator().manual_seed(c), dtype=torch.float64)
        f = DATASETS["dermamnist"]["contrast_down"][4]
        out = corrupt(x, "contrast_down", 5)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        torch.testing.assert_close(out, (mean + f * (x - mean)).clamp(0, 1))  # type: ignore[operator]
        x8 = (x * 255).round().to(torch.uint8)
        out8 = corrupt(x8, "contrast_down", 5)
        m8 = torch.floor(x8.double().mean(dim=(1, 2, 3), keepdim=True) + 0.5)
        want = (m8 + f * (x8.double() - m8)).round().clamp(0, 255)  # type: ignore[operator]
        assert (out8.double() - want).abs().max() <= 1


def test_augmentation_mode_every_dataset_and_custom_list() -> None:
    x = X[:, :, :40, :40]
    for ds in DATASETS:
        out = Corruptions(ds)(x, generator=torch.Generator().manual_seed(6))
        assert out.dtype == torch.uint8 and out.shape == x.shape
    aug = Corruptions("pathology", corruptions=["jpeg_compression", "motion_blur", "bubble"])
    out = aug(X, generator=torch.Generator().manual_seed(6))
    assert out.shape == X.shape
    assert "dataset='pathmnist', corruptions=['jpeg_compression'" in repr(aug)
    # modality= (the spelling) selects the modality's data set
    assert Corruptions(modality="xray").dataset == "chestmnist"
    assert Corruptions("xray").corruptions == Corruptions(modality="xray").corruptions
    g = torch.Generator
    assert torch.equal(
        corrupt(X, "gamma_corr_up", 2, modality="xray", generator=g().manual_seed(0)),
        corrupt(X, "gamma_corr_up", 2, dataset="chestmnist", generator=g().manual_seed(0)),
    )


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"corrupt: name must be one of .*; got 'fog'"):
        corrupt(X, "fog", 1)
    with pytest.raises(ValueError, match=r"corrupt: name must be one of .*; got 'gamma_corr_up'"):
        corrupt(X, "gamma_corr_up", 1, dataset="pathmnist")  # not in PathMNIST's list
    with pytest.raises(ValueError, match=r"corrupt: dataset must be one of .*; got 'mri'"):
        corrupt(X, "jpeg_compression", 1, dataset="mri")
    with pytest.raises(ValueError, match=r"corrupt: severity must be in 1\.\.5; got 6"):
        corrupt(X, "jpeg_compression", 6)
    with pytest.raises(TypeError, match="corrupt: severity must be an int"):
        corrupt(X, "jpeg_compression", 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"corrupt: x must have shape \(B, C, H, W\)"):
        corrupt(X[0], "jpeg_compression", 1)
    with pytest.raises(TypeError, match="corrupt: x must be uint8"):
        corrupt(X.long(), "jpeg_compression", 1)
    with pytest.raises(ValueError, match="Corruptions: dataset must be one of"):
        Corruptions("mri")
    with pytest.raises(ValueError, match="Corruptions: corruptions must be one of"):
        Corruptions("xray", corruptions=["gaussian_noise", "bubble"])
    with pytest.raises(ValueError, match="Corruptions: corruptions must be a non-empty list"):
        Corruptions(corruptions=[])
    with pytest.raises(ValueError, match="Corruptions: modality must be one of"):
        Corruptions(modality="chestmnist")  # a data set, not a modality
    with pytest.raises(ValueError, match="corrupt: modality must be one of"):
        corrupt(X, "jpeg_compression", 1, modality="mri")
    with pytest.raises(ValueError, match="severity_table: name must be one of"):
        severity_table("octmnist", "saturate")
    with pytest.raises(ValueError, match="corrupt: reference_size must be >= 1; got 0"):
        corrupt(X, "defocus_blur", 1, reference_size=0)
    with pytest.raises(TypeError, match="Corruptions: reference_size must be an int; got float"):
        Corruptions("xray", reference_size=224.0)  # type: ignore[arg-type]
