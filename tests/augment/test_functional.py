"""posneg.augment.functional: each kernel against Pillow on real photographs, per-sample
parameters, dtype/shape policy, errors.

Reference: Pillow's ``ImageOps``/``ImageEnhance``/``Image.transform``/``Image.rotate`` (what
torchvision's RandAugment runs on PIL images) on scikit-learn's bundled photographs
(china.jpg, flower.jpg), downscaled to 160x120.

Tolerances (uint8, per op; measured 0 differences where the bound says 0):
- solarize, posterize, equalize, brightness, color, contrast, sharpness, translate: identical
  to Pillow;
- shear: identical except where a source coordinate is an exact pixel boundary (e.g. factor
  0.2 on row 7: ``x + 0.5 + 0.2 * 7.5 = x + 2``): Pillow's nearest affine path rounds the
  coefficients to 16.16 fixed point (``0.2 -> 0.19999695``) and reads one pixel to the left,
  the kernel reads ``floor`` of the exact value. Bound: at most 5% of values (over four
  factors) differ, mean |diff| < 0.5 grey levels; the exact rule is checked separately
  against a float64 loop;
- auto_contrast: at most 1 grey level on at most 0.01% of values (Pillow computes the LUT in
  double, the kernel in float32);
- rotate: mean |diff| < 0.05 grey levels and at most 0.3% of values off by more than 1: Pillow
  rotates with 16.16 fixed-point source coordinates, the kernel in double then float32, so a
  pixel whose source lies within ~1e-5 px of a pixel boundary may read the neighbour.
Float images in [0, 1] agree with Pillow's uint8 result / 255 within 1.5 / 255.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageEnhance, ImageOps
from sklearn.datasets import load_sample_images

from posneg.augment import functional as AF

H, W = 120, 160


def _photos() -> list[Image.Image]:
    return [Image.fromarray(a).resize((W, H), Image.BILINEAR) for a in load_sample_images().images]


PHOTOS = _photos()


def _to_tensor(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in images])


X = _to_tensor(PHOTOS)  # (2, 3, 120, 160) uint8


def _batch(values: list[float]) -> tuple[torch.Tensor, list[Image.Image], torch.Tensor]:
    """Photos repeated so that sample k gets values[k] (photo k % 2)."""
    imgs = [PHOTOS[k % 2] for k in range(len(values))]
    return _to_tensor(imgs), imgs, torch.tensor(values, dtype=torch.float32)


def _diff_stats(ours: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, int]:
    d = (ours.to(torch.int32) - ref.to(torch.int32)).abs()
    return float(d.float().mean()), float((d > 1).float().mean()), int(d.max())


def _pil(
    images: list[Image.Image], fns: list[Callable[[Image.Image], Image.Image]]
) -> torch.Tensor:
    return _to_tensor([f(i) for i, f in zip(images, fns, strict=True)])


# name -> (kernel, per-sample values, Pillow op for one value, tolerance kind)
def _rot(v: float) -> Callable[[Image.Image], Image.Image]:
    return lambda i: i.rotate(v, Image.NEAREST, fillcolor=(128, 128, 128))


def _aff(data: tuple[float, ...]) -> Callable[[Image.Image], Image.Image]:
    return lambda i: i.transform(i.size, Image.AFFINE, data, Image.NEAREST)


def _enh(cls: type, v: float) -> Callable[[Image.Image], Image.Image]:
    return lambda i: cls(i).enhance(v)


PARAMETRIC: dict[
    str,
    tuple[
        Callable[..., torch.Tensor],
        list[float],
        Callable[[float], Callable[[Image.Image], Image.Image]],
    ],
] = {
    "solarize": (
        AF.solarize,
        [0.0, 77.0, 128.0, 255.0],
        lambda v: lambda i: ImageOps.solarize(i, int(v)),
    ),
    "posterize": (
        AF.posterize,
        [1.0, 4.0, 6.0, 8.0],
        lambda v: lambda i: ImageOps.posterize(i, int(v)),
    ),
    "brightness": (
        AF.brightness,
        [0.1, 0.73, 1.0, 1.9],
        lambda v: _enh(ImageEnhance.Brightness, v),
    ),
    "color": (AF.color, [0.0, 0.55, 1.27, 1.9], lambda v: _enh(ImageEnhance.Color, v)),
    "contrast": (AF.contrast, [0.1, 0.73, 1.0, 1.9], lambda v: _enh(ImageEnhance.Contrast, v)),
    "sharpness": (AF.sharpness, [0.1, 0.73, 1.27, 1.9], lambda v: _enh(ImageEnhance.Sharpness, v)),
    "shear_x": (AF.shear_x, [-0.3, -0.09, 0.2, 0.3], lambda v: _aff((1, v, 0, 0, 1, 0))),
    "shear_y": (AF.shear_y, [-0.3, -0.09, 0.2, 0.3], lambda v: _aff((1, 0, 0, v, 1, 0))),
    "translate_x": (AF.translate_x, [-72.0, -13.0, 0.0, 21.0], lambda v: _aff((1, 0, -v, 0, 1, 0))),
    "translate_y": (AF.translate_y, [-54.0, -13.0, 0.0, 21.0], lambda v: _aff((1, 0, 0, 0, 1, -v))),
}


# ---------------------------------------------------------------------------------------------
# reference: Pillow on real photographs, a different value per sample in one call
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PARAMETRIC))
def test_kernel_equals_pillow_per_sample(name: str) -> None:
    kernel, values, pil_op = PARAMETRIC[name]
    x, imgs, v = _batch(values)
    ref = _pil(imgs, [pil_op(val) for val in values])
    ours = kernel(x, v)
    assert ours.dtype == torch.uint8 and ours.shape == x.shape
    if name.startswith("shear"):
        mean, _, _ = _diff_stats(ours, ref)
        frac = float((ours != ref).float().mean())
        assert mean < 0.5 and frac < 0.05, (mean, frac)
        # values that put no source coordinate on an exact boundary: identical
        assert torch.equal(ours[[0, 1, 3]], ref[[0, 1, 3]])
    else:
        assert torch.equal(ours, ref), _diff_stats(ours, ref)


def _naive_affine(x: torch.Tensor, m: list[list[float]], fill: float) -> torch.Tensor:
    """The nearest rule in float64: out[i, j] = x[floor(y' + eps), floor(x' + eps)] (eps: the
    kernel's documented 1/1024-pixel tie offset)."""
    c, h, w = x.shape
    out = torch.full((c, h, w), fill, dtype=x.dtype)
    for i in range(h):
        for j in range(w):
            sx = m[0][0] * (j + 0.5) + m[0][1] * (i + 0.5) + m[0][2]
            sy = m[1][0] * (j + 0.5) + m[1][1] * (i + 0.5) + m[1][2]
            fx, fy = int(np.floor(sx + AF._TIE_EPS)), int(np.floor(sy + AF._TIE_EPS))
            if 0 <= fx < w and 0 <= fy < h:
                out[:, i, j] = x[:, fy, fx]
    return out


def test_affine_equals_float64_loop() -> None:
    x = X[:, :, 40:64, 50:82]  # (2, 3, 24, 32)
    mats = [[[1.0, 0.2, 0.0], [0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0], [-0.3, 1.0, 0.0]]]
    ours = AF.affine(x, torch.tensor(mats, dtype=torch.float64), fill=7.0)
    for k in range(2):
        assert torch.equal(ours[k], _naive_affine(x[k], mats[k], 7.0))
    angles = torch.tensor([17.0, -23.0], dtype=torch.float64)
    rot = AF.rotation_matrix(angles, 24, 32).tolist()
    ours = AF.rotate(x, angles.float())
    for k in range(2):
        assert torch.equal(ours[k], _naive_affine(x[k], rot[k], 0.0))


def test_rotate_matches_pillow_within_tolerance() -> None:
    values = [-30.0, -9.0, 0.0, 27.0]
    x, imgs, v = _batch(values)
    ref = _pil(imgs, [_rot(a) for a in values])
    ours = AF.rotate(x, v, fill=128.0)
    mean, frac, _ = _diff_stats(ours, ref)
    assert mean < 0.05 and frac < 0.003, (mean, frac)
    assert torch.equal(ours[2], x[2])  # 0 degrees: exact identity


def test_auto_contrast_and_equalize_match_pillow() -> None:
    ref = _pil(PHOTOS, [ImageOps.autocontrast] * 2)
    _, _, mx = _diff_stats(AF.auto_contrast(X), ref)
    assert mx <= 1 and float(((AF.auto_contrast(X).int() - ref.int()) != 0).float().mean()) < 1e-4
    assert torch.equal(AF.equalize(X), _pil(PHOTOS, [ImageOps.equalize] * 2))
    # low-contrast input: the stretch is visible
    dim = (X // 4 + 60).to(torch.uint8)
    dim_imgs = [Image.fromarray(a.permute(1, 2, 0).numpy()) for a in dim]
    ref = _pil(dim_imgs, [ImageOps.autocontrast] * 2)
    assert _diff_stats(AF.auto_contrast(dim), ref)[2] <= 1
    assert torch.equal(AF.equalize(dim), _pil(dim_imgs, [ImageOps.equalize] * 2))


@pytest.mark.parametrize("name", sorted(PARAMETRIC))
def test_float_kernel_matches_pillow_scaled(name: str) -> None:
    kernel, values, pil_op = PARAMETRIC[name]
    x, imgs, v = _batch(values)
    ref = _pil(imgs, [pil_op(val) for val in values]).double() / 255.0
    if name.startswith("shear"):  # Pillow's fixed-point ties (see module docstring)
        ref = kernel(x, v).double() / 255.0
    if name == "solarize":
        v = v.double() / 255.0
    ours = kernel(x.double() / 255.0, v)
    assert ours.dtype == torch.float64
    assert float((ours - ref).abs().max()) <= 1.5 / 255.0


def test_float_histogram_ops_match_pillow_scaled() -> None:
    xf = X.float() / 255.0
    ref = _pil(PHOTOS, [ImageOps.equalize] * 2).float() / 255.0
    assert float((AF.equalize(xf) - ref).abs().max()) < 1e-6
    ref = _pil(PHOTOS, [ImageOps.autocontrast] * 2).float() / 255.0
    assert float((AF.auto_contrast(xf) - ref).abs().max()) <= 1.0 / 255.0 + 1e-6


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel", "neutral"),
    [
        (AF.brightness, 1.0),
        (AF.color, 1.0),
        (AF.contrast, 1.0),
        (AF.sharpness, 1.0),
        (AF.posterize, 8),
        (AF.rotate, 0.0),
        (AF.shear_x, 0.0),
        (AF.shear_y, 0.0),
        (AF.translate_x, 0.0),
        (AF.translate_y, 0.0),
    ],
)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_neutral_value_is_identity(
    kernel: Callable[..., torch.Tensor], neutral: float, dtype: torch.dtype
) -> None:
    x = X if dtype == torch.uint8 else X.float() / 255.0
    torch.testing.assert_close(kernel(x, neutral), x, rtol=0, atol=1e-6)


def test_solarize_threshold_above_range_and_identity_kernel() -> None:
    small = (X // 2).to(torch.uint8)  # max 127
    assert torch.equal(AF.solarize(small, 128.0), small)
    assert AF.identity(X) is X


def test_batched_call_equals_per_sample_calls() -> None:
    """Vectorisation: one call with per-sample values equals B calls with one value each."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 3, 17, 23), dtype=torch.uint8, generator=g)
    cases: list[tuple[Callable[..., torch.Tensor], torch.Tensor]] = [
        (AF.rotate, torch.tensor([-30.0, -5.0, 0.0, 12.0, 30.0])),
        (AF.shear_x, torch.tensor([-0.3, -0.1, 0.0, 0.15, 0.3])),
        (AF.translate_y, torch.tensor([-7.0, -1.0, 0.0, 3.0, 9.0])),
        (AF.contrast, torch.tensor([0.1, 0.5, 1.0, 1.5, 1.9])),
        (AF.sharpness, torch.tensor([0.1, 0.5, 1.0, 1.5, 1.9])),
        (AF.posterize, torch.tensor([1.0, 3.0, 5.0, 7.0, 8.0])),
    ]
    for kernel, v in cases:
        together = kernel(x, v)
        alone = torch.cat([kernel(x[i : i + 1], v[i : i + 1]) for i in range(5)])
        assert torch.equal(together, alone), kernel.__name__
    for kernel0 in (AF.auto_contrast, AF.equalize):
        assert torch.equal(kernel0(x), torch.cat([kernel0(x[i : i + 1]) for i in range(5)]))


def test_fill_value_and_per_channel_fill() -> None:
    x = torch.full((1, 3, 8, 8), 200, dtype=torch.uint8)
    out = AF.translate_x(x, 3.0, fill=[1.0, 2.0, 3.0])
    assert out[0, :, :, :3].flatten(1).tolist() == [[1] * 24, [2] * 24, [3] * 24]
    assert bool((out[0, :, :, 3:] == 200).all())
    xb = AF.translate_y(x.float() / 255, -2.0, interpolation="bilinear", fill=0.5)
    assert torch.allclose(xb[0, :, -2:], torch.full((3, 2, 8), 0.5))


def test_posterize_uint8_formula() -> None:
    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    for bits in range(9):
        keep = 0xFF & ~((1 << (8 - bits)) - 1)
        expected = torch.tensor([v & keep for v in range(256)], dtype=torch.uint8).view(
            1, 1, 16, 16
        )
        assert torch.equal(AF.posterize(values, bits), expected)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3),
    c=st.sampled_from([1, 3]),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    dtype=st.sampled_from(
        [torch.uint8, torch.float32, torch.float64, torch.float16, torch.bfloat16]
    ),
)
def test_shape_dtype_kept(b: int, c: int, h: int, w: int, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(b * 100 + h * 10 + w)
    x = torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    if dtype != torch.uint8:
        x = (x.double() / 255).to(dtype)
    v = torch.linspace(0.2, 1.8, b)
    outs = [
        AF.identity(x),
        AF.auto_contrast(x),
        AF.equalize(x),
        AF.solarize(x, 0.5 if dtype != torch.uint8 else 128.0),
        AF.posterize(x, torch.full((b,), 4.0)),
        AF.brightness(x, v),
        AF.color(x, v),
        AF.contrast(x, v),
        AF.sharpness(x, v),
        AF.rotate(x, v * 10),
        AF.shear_x(x, v / 6),
        AF.shear_y(x, v / 6),
        AF.translate_x(x, v.round()),
        AF.translate_y(x, v.round()),
    ]
    for out in outs:
        assert out.shape == x.shape and out.dtype == x.dtype
        if dtype != torch.uint8:
            assert bool(torch.isfinite(out.float()).all())
            assert float(out.float().min()) >= 0.0 and float(out.float().max()) <= 1.0


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_contrast_grey_mean_for_any_channel_count() -> None:
    """``grey="mean"`` blends with the mean over all channels and pixels (rounded on uint8 as
    Pillow rounds its grey level); for one channel it is Pillow's contrast."""
    g = torch.Generator().manual_seed(0)
    for c in (1, 2, 4):
        x = torch.randint(0, 256, (3, c, 6, 7), generator=g, dtype=torch.uint8)
        f = torch.tensor([0.0, 0.5, 1.7])
        mean = torch.floor(x.double().mean(dim=(1, 2, 3), keepdim=True) + 0.5)
        want = (mean + f.double().view(-1, 1, 1, 1) * (x.double() - mean)).round().clamp(0, 255)
        got = AF.contrast(x, f, grey="mean")
        assert (got.double() - want).abs().max() <= 1
        xf = x.double() / 255
        mf = xf.mean(dim=(1, 2, 3), keepdim=True)
        want_f = (mf + f.double().view(-1, 1, 1, 1) * (xf - mf)).clamp(0, 1)
        torch.testing.assert_close(AF.contrast(xf, f, grey="mean"), want_f)
        if c == 1:
            assert torch.equal(got, AF.contrast(x, f))


def test_errors() -> None:
    with pytest.raises(
        ValueError, match=r"rotate: x must have shape \(B, C, H, W\); got \(3, 120, 160\)"
    ):
        AF.rotate(X[0], 10.0)
    with pytest.raises(TypeError, match="solarize: x must be uint8"):
        AF.solarize(X.to(torch.int32), 10.0)
    with pytest.raises(TypeError, match=r"equalize: x must be a torch\.Tensor"):
        AF.equalize(X.numpy())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"brightness: factor must have shape \(2,\) or \(\)"):
        AF.brightness(X, torch.ones(3))
    with pytest.raises(ValueError, match=r"brightness: factor must be >= 0\.0"):
        AF.brightness(X, -0.5)
    with pytest.raises(ValueError, match="posterize: bits must be <= 8"):
        AF.posterize(X, 9)
    with pytest.raises(ValueError, match="posterize: bits must be integers"):
        AF.posterize(X, 3.5)
    with pytest.raises(ValueError, match=r"solarize: threshold must be <= 1\.0"):
        AF.solarize(X.float() / 255, 100.0)
    with pytest.raises(ValueError, match="rotate: angle must be finite"):
        AF.rotate(X, float("nan"))
    with pytest.raises(TypeError, match="shear_x: factor must be a number or a tensor"):
        AF.shear_x(X, "0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="color: x must have 1 or 3 channels; got C=4"):
        AF.color(torch.zeros(1, 4, 5, 5), 0.5)
    with pytest.raises(ValueError, match="contrast: x must have 1 or 3 channels; got C=4"):
        AF.contrast(torch.zeros(1, 4, 5, 5), 0.5)
    with pytest.raises(ValueError, match="contrast: grey must be 'luma' or 'mean'; got 'max'"):
        AF.contrast(X, 0.5, grey="max")
    with pytest.raises(ValueError, match="affine: fill must have 1 or C=3 values; got 2"):
        AF.translate_x(X, 1.0, fill=[1.0, 2.0])
    with pytest.raises(ValueError, match="affine: interpolation must be one of"):
        AF.translate_x(X, 1.0, interpolation="bicubic")
    with pytest.raises(ValueError, match=r"affine: matrix must have shape \(2, 2, 3\)"):
        AF.affine(X, torch.zeros(2, 3, 3))
