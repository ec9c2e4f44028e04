"""IRAD's basic resampling: identity, integer shifts (nearest), the analytic ramp (bilinear, with
and without down/up scaling and per-pixel offsets), scipy and ``F.interpolate`` references,
offset distribution, generator, dtype, errors.

References: ``scipy.ndimage.map_coordinates(order=1, mode="nearest")`` at the shifted pixel
centres (the same rule as border padding), and ``torch.nn.functional.interpolate(bilinear,
align_corners=False)`` for the unshifted down/up resampling.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from sklearn.datasets import load_sample_images
from torch.utils._python_dispatch import TorchDispatchMode

from posneg.augment.resample import (
    Resample,
    ResampleParams,
    apply_resample,
    resample,
    sample_resample_params,
)

_PHOTO = torch.from_numpy(load_sample_images().images[0][::8, ::8].copy()).permute(2, 0, 1)
PHOTOS = torch.stack([_PHOTO, _PHOTO.flip(1)])  # (2, 3, 54, 80) uint8


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # type: ignore[no-untyped-def]
    """Inputs here are tiny: intra-op threads only add overhead on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ramp(b: int, h: int, w: int, coef: list[tuple[float, float, float]]) -> torch.Tensor:
    """(b, 1, h, w) float64 ramps ``a j + c i + d`` (j column, i row)."""
    i = torch.arange(h, dtype=torch.float64).view(h, 1)
    j = torch.arange(w, dtype=torch.float64).view(1, w)
    return torch.stack([(a * j + c * i + d).unsqueeze(0) for a, c, d in coef])


COEF = [(0.7, -0.3, 2.0), (-1.1, 0.45, -5.0), (0.2, 0.9, 0.0)]


# ---------------------------------------------------------------------------------------------
# formula: bilinear reproduces linear functions, so a ramp has an analytic answer
# ---------------------------------------------------------------------------------------------


def test_bilinear_ramp_is_shifted_analytically() -> None:
    h, w = 15, 19
    x = _ramp(3, h, w, COEF)
    p = sample_resample_params(3, h, w, shift=1.5, generator=_gen(1))
    assert p.offsets is not None
    out = apply_resample(x, p, mode="bilinear")
    m = 2  # interior: sources stay inside the image
    for s, (a, c, d) in enumerate(COEF):
        dx, dy = (float(v) for v in p.offsets[s])
        i = torch.arange(h, dtype=torch.float64).view(h, 1)
        j = torch.arange(w, dtype=torch.float64).view(1, w)
        expected = a * (j + dx) + c * (i + dy) + d
        torch.testing.assert_close(out[s, 0, m:-m, m:-m], expected[m:-m, m:-m], atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [0.5, 0.73, 1.6, 2.0])
def test_bilinear_ramp_with_down_up_scaling(scale: float) -> None:
    """Down (or up) to round(scale H) x round(scale W) with the shift, back to H x W: pixel
    centres map to pixel centres, so a ramp comes back shifted by the offset (interior)."""
    h, w = 24, 30
    x = _ramp(3, h, w, COEF)
    p = sample_resample_params(3, h, w, shift=1.0, scale=scale, generator=_gen(2))
    assert p.offsets is not None and p.size == (round(h * scale), round(w * scale))
    out = apply_resample(x, p)
    # each axis is a composition of two centre-preserving linear maps: out(j) = ramp(j + dx)
    m = 5
    for s, (a, c, d) in enumerate(COEF):
        dx, dy = (float(v) for v in p.offsets[s])
        i = torch.arange(h, dtype=torch.float64).view(h, 1)
        j = torch.arange(w, dtype=torch.float64).view(1, w)
        expected = a * (j + dx) + c * (i + dy) + d
        torch.testing.assert_close(out[s, 0, m:-m, m:-m], expected[m:-m, m:-m], atol=1e-5, rtol=0)


def test_bilinear_ramp_with_per_pixel_offsets() -> None:
    h, w = 12, 14
    x = _ramp(3, h, w, COEF)
    p = sample_resample_params(3, h, w, shift=0.8, per_pixel=True, generator=_gen(3))
    assert p.offsets is not None and p.offsets.shape == (3, 2, h, w)
    out = apply_resample(x, p)
    i = torch.arange(h, dtype=torch.float64).view(h, 1)
    j = torch.arange(w, dtype=torch.float64).view(1, w)
    for s, (a, c, d) in enumerate(COEF):
        o = p.offsets[s].double()
        expected = a * (j + o[0]) + c * (i + o[1]) + d
        torch.testing.assert_close(out[s, 0, 1:-1, 1:-1], expected[1:-1, 1:-1], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------
# reference: scipy and F.interpolate
# ---------------------------------------------------------------------------------------------


def test_bilinear_equals_scipy_map_coordinates() -> None:
    x = PHOTOS.double() / 255
    b, c, h, w = x.shape
    p = sample_resample_params(b, h, w, shift=2.0, generator=_gen(4))
    assert p.offsets is not None
    out = apply_resample(x, p, mode="bilinear", padding="border")
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for s in range(b):
        dx, dy = (float(v) for v in p.offsets[s])
        coords = np.stack([rows + dy, cols + dx]).astype(np.float64)
        for ch in range(c):
            ref = ndimage.map_coordinates(x[s, ch].numpy(), coords, order=1, mode="nearest")
            np.testing.assert_allclose(out[s, ch].numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("scale", [0.5, 0.6, 1.5])
def test_unshifted_down_up_equals_interpolate(scale: float) -> None:
    x = PHOTOS.double() / 255
    _, _, h, w = x.shape
    out = resample(x, scale=scale, shift=0.0)
    size = (round(h * scale), round(w * scale))
    small = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    ref = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, ref, atol=1e-9, rtol=0)


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_zero_shift_scale_one_is_identity(dtype: torch.dtype, mode: str) -> None:
    x = PHOTOS if dtype == torch.uint8 else (PHOTOS.double() / 255).to(dtype)
    out = resample(x, mode=mode, shift=0.0, scale=1.0, generator=_gen(0))
    assert torch.equal(out, x) and out.dtype == dtype
    assert torch.equal(Resample(mode=mode, shift=0.0)(x), x)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float64])
@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_nearest_integer_shift_is_roll_with_border(dtype: torch.dtype, padding: str) -> None:
    x = PHOTOS if dtype == torch.uint8 else PHOTOS.double() / 255
    _, _, h, w = x.shape
    shifts = [(3, -2), (-4, 5)]
    offsets = torch.tensor(shifts, dtype=torch.float32)
    for mode in ("nearest", "bilinear"):
        out = apply_resample(x, ResampleParams(offsets, (h, w)), mode=mode, padding=padding)
        for s, (dx, dy) in enumerate(shifts):
            rolled = torch.roll(x[s], shifts=(-dy, -dx), dims=(1, 2))  # out[i, j] = x[i+dy, j+dx]
            rows, cols = torch.arange(h) + dy, torch.arange(w) + dx
            outside = ((rows < 0) | (rows >= h)).view(-1, 1) | ((cols < 0) | (cols >= w))
            if padding == "border":
                edge = x[s][:, rows.clamp(0, h - 1)][:, :, cols.clamp(0, w - 1)]
                ref = torch.where(outside, edge, rolled)
            else:
                ref = torch.where(outside, torch.zeros((), dtype=x.dtype), rolled)
            if dtype == torch.uint8 or mode == "nearest":
                assert torch.equal(out[s], ref), (mode, s)
            else:
                torch.testing.assert_close(out[s], ref, atol=1e-9, rtol=0)


def test_nearest_ties_go_to_the_lower_right_pixel() -> None:
    x = torch.arange(6, dtype=torch.float64).view(1, 1, 1, 6)
    out = apply_resample(x, ResampleParams(torch.tensor([[0.5, 0.0]]), (1, 6)), mode="nearest")
    assert out.flatten().tolist() == [1, 2, 3, 4, 5, 5]


def test_offsets_uniform_in_range() -> None:
    p = sample_resample_params(20000, 4, 4, shift=0.75, generator=_gen(5))
    assert p.offsets is not None
    o = p.offsets.double()
    assert float(o.abs().max()) <= 0.75
    assert float(o.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(o.var()) == pytest.approx(0.75**2 / 3, rel=0.03)
    assert sample_resample_params(3, 4, 4, shift=0.0).offsets is None


def test_determinism_generator_and_global_rng() -> None:
    x = PHOTOS
    mod = Resample(mode="bilinear", scale=0.7, shift=1.0, per_pixel=True)
    a = mod(x, generator=_gen(0))
    assert torch.equal(a, mod(x, generator=_gen(0)))
    assert not torch.equal(a, mod(x, generator=_gen(1)))
    before = torch.get_rng_state()
    mod(x, generator=_gen(2))
    assert torch.equal(before, torch.get_rng_state())
    p = sample_resample_params(2, 54, 80, shift=1.0, scale=0.7, per_pixel=True, generator=_gen(0))
    assert torch.equal(a, apply_resample(x, p))  # module = sample then apply; replay


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float32])
def test_dtype_and_shape_kept(dtype: torch.dtype) -> None:
    x = PHOTOS if dtype == torch.uint8 else (PHOTOS.double() / 255).to(dtype)
    out = resample(x, scale=0.5, shift=1.0, generator=_gen(0))
    assert out.shape == x.shape and out.dtype == dtype and not torch.equal(out, x)


@settings(max_examples=20, deadline=None)
@given(
    b=st.integers(0, 3),
    h=st.integers(1, 10),
    w=st.integers(1, 10),
    scale=st.floats(0.05, 3.0),
    shift=st.floats(0.0, 3.0),
    per_pixel=st.booleans(),
    mode=st.sampled_from(["bilinear", "nearest"]),
)
def test_shapes(
    b: int, h: int, w: int, scale: float, shift: float, per_pixel: bool, mode: str
) -> None:
    x = torch.rand(b, 2, h, w, generator=_gen(0))
    out = resample(x, mode=mode, scale=scale, shift=shift, per_pixel=per_pixel, generator=_gen(1))
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    if out.numel():
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_gradient_flows_bilinear() -> None:
    x = torch.rand(2, 2, 5, 6, generator=_gen(0), dtype=torch.float64).requires_grad_(True)
    p = sample_resample_params(2, 5, 6, shift=0.7, scale=0.8, generator=_gen(0))
    assert torch.autograd.gradcheck(lambda t: apply_resample(t, p), (x,))


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.n += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("per_pixel", [False, True])
def test_no_python_loop_over_the_batch(per_pixel: bool) -> None:
    counts = []
    for b in (3, 40):
        x = torch.rand(b, 3, 8, 8)
        p = sample_resample_params(b, 8, 8, shift=1.0, scale=0.5, per_pixel=per_pixel)
        with _CountOps() as mode:
            apply_resample(x, p)
        counts.append(mode.n)
    assert counts[0] == counts[1]


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors() -> None:
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"resample: x must have shape \(B, C, H, W\)"):
        resample(x[0])
    with pytest.raises(TypeError, match="resample: x must be uint8"):
        resample(x.to(torch.int64))
    with pytest.raises(ValueError, match="resample: mode must be one of"):
        resample(x, mode="bicubic")
    with pytest.raises(ValueError, match="resample: padding must be one of"):
        resample(x, padding="wrap")
    with pytest.raises(ValueError, match="sample_resample_params: shift must be >= 0"):
        resample(x, shift=-0.5)
    with pytest.raises(ValueError, match="sample_resample_params: scale must be > 0"):
        resample(x, scale=0.0)
    with pytest.raises(TypeError, match="sample_resample_params: per_pixel must be a bool"):
        resample(x, per_pixel=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"resample: generator must be a torch\.Generator"):
        resample(x, generator=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Resample: scale must be > 0"):
        Resample(scale=-1.0)
    with pytest.raises(ValueError, match="Resample: shift must be >= 0"):
        Resample(shift=-1.0)
    with pytest.raises(ValueError, match="Resample: mode must be one of"):
        Resample(mode="area")
    with pytest.raises(ValueError, match=r"Resample: x must have shape \(B, C, H, W\)"):
        Resample()(x.view(2, 3, 64))
    with pytest.raises(TypeError, match="apply_resample: params must be ResampleParams"):
        apply_resample(x, (None, (8, 8)))  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"params.offsets must have shape \(2, 2\) or \(2, 2, 4, 4\)"
    ):
        apply_resample(x, ResampleParams(torch.zeros(3, 2), (4, 4)))
    with pytest.raises(TypeError, match=r"params\.offsets must be a floating tensor"):
        apply_resample(x, ResampleParams(torch.zeros(2, 2, dtype=torch.long), (8, 8)))
    with pytest.raises(ValueError, match=r"params\.size must be two ints >= 1"):
        apply_resample(x, ResampleParams(None, (0, 8)))
