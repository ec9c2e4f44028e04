"""posneg.augment RandAugment ops against torchvision.transforms.v2.RandAugment on tensors.

torchvision 0.29 (``torchvision/transforms/v2/_auto_augment.py``): ``_AUGMENTATION_SPACE`` holds
the magnitude bins, ``_apply_image_or_video_transform(image, op, magnitude, ...)`` applies one op
to a tensor batch through ``torchvision.transforms.v2.functional`` (affine with
``shear=degrees(atan(m))`` about the corner for shears, ``translate=int(m)``, ``rotate``,
``adjust_brightness/saturation/contrast/sharpness(1 + m)``, ``posterize(int(m))``,
``solarize(bound * m)``, ``autocontrast``, ``equalize``). posneg gets the same op and magnitude as
a hand-built ``RandAugmentParams`` (every sample the same op) through ``apply_randaugment``.

posneg's kernels follow Pillow (what torchvision's RandAugment runs on PIL images); the
tensor kernels of torchvision agree exactly on most ops. Where they differ, a test below shows
by how much and why: the luma weights of colour/contrast, uint8 auto-contrast rounding, the
float quantisation of equalize, posterize to 8 bits on floats, and nearest-neighbour ties in
rotate.
"""

from __future__ import annotations

import math

import pytest
import torch
from _peer import peer

from posneg.augment import randaugment as R

v2 = peer("torchvision.transforms.v2")

B, C, H, W = 4, 3, 32, 40
BINS = 31
TV_NAME = {
    "identity": "Identity",
    "shear_x": "ShearX",
    "shear_y": "ShearY",
    "translate_x": "TranslateX",
    "translate_y": "TranslateY",
    "rotate": "Rotate",
    "brightness": "Brightness",
    "color": "Color",
    "contrast": "Contrast",
    "sharpness": "Sharpness",
    "posterize": "Posterize",
    "solarize": "Solarize",
    "auto_contrast": "AutoContrast",
    "equalize": "Equalize",
}
ENHANCE = ("brightness", "color", "contrast", "sharpness")


def _images(dtype: torch.dtype, *, red: bool = True) -> torch.Tensor:
    """Smooth photographs-like images (bilinear upsampling of noise); uint8 or float on the
    1/255 grid. ``red=False`` zeroes the red channel."""
    g = torch.Generator().manual_seed(3)
    low = torch.rand(B, C, 8, 10, generator=g, dtype=torch.float64)
    x = torch.nn.functional.interpolate(low, size=(H, W), mode="bilinear", align_corners=False)
    u8 = (x * 255).round().to(torch.uint8)
    if not red:
        u8[:, 0] = 0
    return u8 if dtype == torch.uint8 else (u8.to(torch.float64) / 255).to(dtype)


def _both(
    x: torch.Tensor, name: str, m: int, sign: int, fill: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's op at bin ``m`` (signed) and posneg's, on the same batch."""
    ra = v2.RandAugment(num_magnitude_bins=BINS, fill=fill)
    mags_fn, _ = ra._AUGMENTATION_SPACE[TV_NAME[name]]
    mags = mags_fn(BINS, H, W)
    tv_mag = 0.0 if mags is None else float(mags[m]) * sign
    out_tv = ra._apply_image_or_video_transform(
        x, TV_NAME[name], tv_mag, interpolation=ra.interpolation, fill=ra._fill
    )
    value = float(R.magnitude_table(BINS, H, W)[name][m]) * sign
    if name in ("translate_x", "translate_y"):
        value = float(math.trunc(value))
    if name in ENHANCE:
        value = 1.0 + value
    params = R.RandAugmentParams(
        ops=torch.full((1, B), R.OPS.index(name)),
        values=torch.full((1, B), value, dtype=torch.float32),
    )
    pn_fill = 0.0 if fill is None else fill
    return out_tv, R.apply_randaugment(x, params, fill=pn_fill)


def test_op_list_and_magnitude_bins_equal_torchvision() -> None:
    """Same 14 ops, same signed set, same bins (solarize: posneg on the 0..255 scale,
    torchvision on 0..1; posterize: integer bits) for several bin counts and sizes."""
    space = v2.RandAugment._AUGMENTATION_SPACE
    assert {TV_NAME[n] for n in R.OPS} == set(space)
    assert {n for n in R.OPS if space[TV_NAME[n]][1]} == set(R.SIGNED)
    for bins, h, w in ((2, 5, 7), (10, 32, 32), (31, 224, 160)):
        table = R.magnitude_table(bins, h, w)
        for name in R.OPS:
            tv = space[TV_NAME[name]][0](bins, h, w)
            got = table[name]
            if tv is None:
                assert torch.equal(got, torch.zeros(bins, dtype=torch.float64))
                continue
            want = tv.to(torch.float64) * (255.0 if name == "solarize" else 1.0)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-4, msg=name)


EXACT = {
    torch.uint8: (
        "identity", "shear_x", "shear_y", "translate_x", "translate_y", "brightness",
        "sharpness", "posterize", "solarize", "equalize",
    ),
    torch.float64: (
        "identity", "shear_x", "shear_y", "translate_x", "translate_y", "brightness",
        "sharpness", "solarize", "auto_contrast", "equalize",
    ),
}  # fmt: skip
CASES = [
    (dtype, name, m, sign)
    for dtype, names in EXACT.items()
    for name in names
    for m in (0, 9, 30)
    for sign in ((1, -1) if name in R.SIGNED else (1,))
]


@pytest.mark.parametrize(("dtype", "name", "m", "sign"), CASES)
def test_ops_equal_torchvision(dtype: torch.dtype, name: str, m: int, sign: int) -> None:
    """Identical outputs (uint8 exactly; float64 to 1e-6, posneg passing factors as float32)."""
    x = _images(dtype)
    out_tv, out_pn = _both(x, name, m, sign)
    if dtype == torch.uint8:
        assert torch.equal(out_pn, out_tv)
    else:
        torch.testing.assert_close(out_pn, out_tv, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["shear_x", "shear_y", "translate_x", "translate_y"])
@pytest.mark.parametrize("fill", [0.0, 128.0])
def test_geometric_fill_equal_torchvision(name: str, fill: float) -> None:
    x = _images(torch.uint8)
    out_tv, out_pn = _both(x, name, 30, -1, fill=fill)
    assert torch.equal(out_pn, out_tv)


def test_posterize_float_below_8_bits_equals_torchvision() -> None:
    x = _images(torch.float64)
    for m in (9, 30):  # 7 and 4 bits
        out_tv, out_pn = _both(x, "posterize", m, 1)
        torch.testing.assert_close(out_pn, out_tv, rtol=0, atol=1e-12)


def test_posterize_float_8_bits_differs() -> None:
    """Deliberate difference. At 8 bits (bin 0) posneg leaves float images unchanged, as Pillow
    and both libraries leave uint8 images; torchvision's float kernel still quantises to
    ``floor(256 v) / 256`` (a shift of up to 1/256)."""
    x = _images(torch.float64)
    out_tv, out_pn = _both(x, "posterize", 0, 1)
    assert torch.equal(out_pn, x)
    torch.testing.assert_close(out_tv, torch.floor(x * 256).clamp(max=255) / 256)
    assert 0 < (out_tv - out_pn).abs().max().item() <= 1 / 256


@pytest.mark.parametrize("name", ["color", "contrast"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float64])
def test_luma_ops_equal_without_red(name: str, dtype: torch.dtype) -> None:
    """Colour and contrast blend with a grey image. With the red channel at 0 both libraries'
    greys agree (same G and B weights): identical outputs (float to 1e-6). uint8 still differs
    by at most one level: torchvision floors its float grey, posneg uses Pillow's integer luma."""
    x = _images(dtype, red=False)
    for m, sign in ((9, 1), (30, -1)):
        out_tv, out_pn = _both(x, name, m, sign)
        if dtype == torch.uint8:
            assert (out_pn.int() - out_tv.int()).abs().max().item() <= 1
        else:
            torch.testing.assert_close(out_pn, out_tv, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["color", "contrast"])
def test_luma_weights_differ(name: str) -> None:
    """Deliberate difference. posneg's grey is Pillow's ``0.299 R + 0.587 G + 0.114 B``;
    torchvision's tensor kernels use ``0.2989 R``: float outputs differ by < 1e-4 (and by at
    most one level on uint8)."""
    x = _images(torch.float64)
    out_tv, out_pn = _both(x, name, 30, -1)
    diff = (out_pn - out_tv).abs().max().item()
    assert 1e-7 < diff < 1e-4
    xu = _images(torch.uint8)
    out_tv, out_pn = _both(xu, name, 30, -1)
    assert (out_pn.int() - out_tv.int()).abs().max().item() == 1


def test_auto_contrast_uint8_differs_by_at_most_one_level() -> None:
    """Deliberate difference. posneg computes Pillow's lookup ``int(v * scale + offset)``;
    torchvision truncates ``(v - lo) * scale``: a few pixels one level apart (float: equal)."""
    x = _images(torch.uint8)
    out_tv, out_pn = _both(x, "auto_contrast", 0, 1)
    diff = (out_pn.int() - out_tv.int()).abs()
    assert diff.max().item() == 1
    assert diff.double().mean().item() < 0.1


def test_equalize_float_off_grid_differs() -> None:
    """Deliberate difference. Off the 1/255 grid posneg quantises floats with ``round(255 v)``,
    torchvision with ``floor(255.999 v)`` (its float -> uint8 conversion); on the grid (above,
    ``test_ops_equal_torchvision``) they agree exactly."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(B, C, H, W, generator=g, dtype=torch.float64)
    out_tv, out_pn = _both(x, "equalize", 0, 1)
    assert not torch.allclose(out_pn, out_tv)
    snapped = torch.round(x * 255) / 255
    torch.testing.assert_close(out_pn, _both(snapped, "equalize", 0, 1)[1])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float64])
@pytest.mark.parametrize(("m", "sign"), [(9, 1), (9, -1), (30, 1), (30, -1)])
def test_rotate_agrees_but_for_nearest_ties(dtype: torch.dtype, m: int, sign: int) -> None:
    """Rotation about the centre agrees on all but a fraction of a percent of the pixels:
    those whose source coordinate falls within rounding of a pixel boundary, where posneg
    follows Pillow's ``floor`` and torchvision's ``grid_sample`` its own rounding."""
    x = _images(dtype)
    out_tv, out_pn = _both(x, "rotate", m, sign)
    differ = (out_pn.double() - out_tv.double()).abs() > 1e-6
    assert differ.double().mean().item() < 0.005
