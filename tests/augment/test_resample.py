"""IRAD's basic resampling: the paper's Eqs. 4-8 in a float64 loop (both samplers, both
reconstructions), the official helpers' grid, identity, integer shifts (nearest), the analytic
ramp (bilinear, with and without down/up scaling and per-pixel offsets), scipy and
``F.interpolate`` references, offset distribution, defaults, generator, dtype, errors.

References: ``scipy.ndimage.map_coordinates(order=1, mode="nearest")`` at the shifted pixel
centres (the same rule as border padding); ``torch.nn.functional.interpolate(bilinear,
align_corners=False)`` for the unshifted down/up resampling; ``grid_sample`` on the grid of
tsingqguo/irad ``utils.py`` (``make_coord`` plus ``shift_scale`` half-pixels), rebuilt here from
its description.
"""

from __future__ import annotations

import inspect
import math

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
    DEFAULT_SHIFT,
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
    p = sample_resample_params(3, h, w, shift=1.5, per_pixel=False, generator=_gen(1))
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
    p = sample_resample_params(3, h, w, shift=1.0, scale=scale, per_pixel=False, generator=_gen(2))
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
    p = sample_resample_params(b, h, w, shift=2.0, per_pixel=False, generator=_gen(4))
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


@pytest.mark.parametrize("per_pixel", [True, False])
def test_offsets_uniform_on_zero_to_shift(per_pixel: bool) -> None:
    """Eq. 8: d1, d2 ~ U(0, gamma), independent per axis (and per pixel with per_pixel)."""
    n = 2500 if per_pixel else 40000
    p = sample_resample_params(n, 4, 4, shift=0.75, per_pixel=per_pixel, generator=_gen(5))
    assert p.offsets is not None
    assert p.offsets.shape == ((n, 2, 4, 4) if per_pixel else (n, 2))
    o = p.offsets.double()
    assert float(o.min()) >= 0.0 and float(o.max()) <= 0.75
    for axis in (0, 1):
        a = o[:, axis].flatten()
        assert float(a.mean()) == pytest.approx(0.75 / 2, abs=0.005)
        assert float(a.var()) == pytest.approx(0.75**2 / 12, rel=0.03)
    # independent axes (and, per pixel, independent neighbours): correlations near 0
    pairs = [(o[:, 0], o[:, 1])]
    if per_pixel:
        pairs += [(o[:, 0, :, :-1], o[:, 0, :, 1:]), (o[:, 1, :-1], o[:, 1, 1:])]
    for u, v in pairs:
        c = torch.corrcoef(torch.stack([u.flatten(), v.flatten()]))[0, 1]
        assert abs(float(c)) < 0.02
    # every sample draws its own offsets
    assert not torch.equal(o[0], o[1])
    assert sample_resample_params(3, 4, 4, shift=0.0).offsets is None


def test_fixed_sampler_is_eq7_and_draws_nothing() -> None:
    """Eq. 7: U[i, j] = G[i, j] + [d, d] for every pixel; no random number is drawn."""
    g = _gen(7)
    state = g.get_state()
    before = torch.get_rng_state()
    p = sample_resample_params(3, 5, 6, shift=1.25, sampler="fixed", generator=g)
    assert p.offsets is not None and p.offsets.shape == (3, 2)
    assert torch.equal(p.offsets, torch.full((3, 2), 1.25))
    assert torch.equal(g.get_state(), state) and torch.equal(torch.get_rng_state(), before)
    assert sample_resample_params(3, 5, 6, shift=0.0, sampler="fixed").offsets is None
    # per_pixel has no effect on the fixed sampler; the module is deterministic
    q = sample_resample_params(3, 5, 6, shift=1.25, sampler="fixed", per_pixel=False)
    assert q.offsets is not None and torch.equal(q.offsets, p.offsets)
    mod = Resample(shift=1.5, sampler="fixed")
    assert torch.equal(mod(PHOTOS, generator=_gen(0)), mod(PHOTOS, generator=_gen(1)))


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
# formula: the paper's Eqs. 4-8, pixel by pixel in float64
# ---------------------------------------------------------------------------------------------


def _phi(img: np.ndarray, u: float, v: float, mode: str) -> float:
    """The reconstruction read at (row u, column v): bilinear (Eq. 5) over the four
    neighbouring pixels or the nearest pixel (Eq. 6; ties up), indices clamped to the image
    (border padding)."""
    h, w = img.shape
    if mode == "nearest":
        i = min(max(math.floor(u + 0.5), 0), h - 1)
        j = min(max(math.floor(v + 0.5), 0), w - 1)
        return float(img[i, j])
    u = min(max(u, 0.0), h - 1.0)
    v = min(max(v, 0.0), w - 1.0)
    i0, j0 = math.floor(u), math.floor(v)
    i1, j1 = min(i0 + 1, h - 1), min(j0 + 1, w - 1)
    a, b = u - i0, v - j0
    return float(
        (1 - a) * (1 - b) * img[i0, j0]
        + (1 - a) * b * img[i0, j1]
        + a * (1 - b) * img[i1, j0]
        + a * b * img[i1, j1]
    )


def _naive(x: torch.Tensor, offsets: torch.Tensor, mode: str) -> torch.Tensor:
    """out[s, c, i, j] = phi(x[s, c])(i + dy, j + dx), offsets (B, 2) or (B, 2, H, W)."""
    b, c, h, w = x.shape
    xn, on = x.numpy(), offsets.double().numpy()
    out = np.zeros((b, c, h, w))
    for s in range(b):
        for i in range(h):
            for j in range(w):
                dx, dy = (on[s, 0], on[s, 1]) if on.ndim == 2 else (on[s, 0, i, j], on[s, 1, i, j])
                for ch in range(c):
                    out[s, ch, i, j] = _phi(xn[s, ch], i + dy, j + dx, mode)
    return torch.from_numpy(out)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("sampler", ["fixed", "uniform"])
def test_paper_equations_naive_loop(mode: str, sampler: str) -> None:
    """IR(mode, SAMPLER(d or gamma)) with the defaults (per-pixel offsets, 1.5 px)."""
    x = torch.rand(2, 2, 7, 9, generator=_gen(8), dtype=torch.float64)
    g = _gen(9)
    out = resample(x, mode=mode, sampler=sampler, generator=g)
    p = sample_resample_params(2, 7, 9, sampler=sampler, generator=_gen(9))
    assert p.offsets is not None
    assert p.offsets.shape == ((2, 2) if sampler == "fixed" else (2, 2, 7, 9))
    ref = _naive(x, p.offsets, mode)
    if mode == "nearest":
        # exact except where a source lies within posneg's tie nudge (1/1024 px) below a
        # pixel boundary: there the module rounds up by design, the loop may round down
        o = p.offsets.double()
        o = o.view(2, 2, 1, 1) if o.dim() == 2 else o
        cols, rows = o[:, 0] + torch.arange(9.0), o[:, 1] + torch.arange(7.0).view(7, 1)
        frac = torch.stack(torch.broadcast_tensors(cols, rows))
        near_tie = ((frac + 0.5) % 1.0 > 1.0 - 1.0 / 1024).any(0).unsqueeze(1).expand_as(out)
        assert torch.equal(out[~near_tie], ref[~near_tie])
        assert float(near_tie.double().mean()) < 0.05
    else:
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_fixed_sampler_matches_official_grid(mode: str) -> None:
    """tsingqguo/irad utils.py: pixel centres -1 + (2k + 1) / n in [-1, 1] plus
    shift_scale * (1 / n) on both coordinates (make_coord_shift), read by grid_sample with
    align_corners=False. That is shift_scale / 2 pixels: shift = shift_scale / 2 here."""
    n = 11
    x = torch.rand(2, 3, n, n, generator=_gen(10), dtype=torch.float64)
    for shift_scale in (1.0, 3.0):
        centres = -1.0 + (2.0 * torch.arange(n, dtype=torch.float64) + 1.0) / n
        shifted = centres + shift_scale / n
        gy, gx = torch.meshgrid(shifted, shifted, indexing="ij")
        grid = torch.stack([gx, gy], dim=-1).expand(2, n, n, 2)
        if mode == "nearest":  # posneg breaks ties up (a 1/1024 px nudge)
            grid = grid + (2.0 / 1024) / n
        ref = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
        out = resample(x, mode=mode, sampler="fixed", shift=shift_scale / 2)
        torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


def test_defaults_are_irads_values() -> None:
    """IRAD Tables 1 and 8: d = gamma = 1.5; Eq. 8: per-pixel U(0, gamma); Eq. 5: bilinear;
    Eq. 4: the same-size grid (scale 1)."""
    assert DEFAULT_SHIFT == 1.5
    expected = {
        "mode": "bilinear",
        "scale": 1.0,
        "shift": 1.5,
        "sampler": "uniform",
        "per_pixel": True,
        "padding": "border",
    }
    for fn in (resample, sample_resample_params, Resample.__init__):
        params = inspect.signature(fn).parameters
        for name, value in expected.items():
            if name in params:
                assert params[name].default == value, (fn, name)
    mod = Resample()
    assert (mod.mode, mod.scale, mod.shift, mod.sampler, mod.per_pixel, mod.padding) == tuple(
        expected.values()
    )
    assert "sampler='uniform'" in repr(mod) and "shift=1.5" in repr(mod)
    p = sample_resample_params(2, 6, 7, generator=_gen(0))
    assert p.offsets is not None and p.offsets.shape == (2, 2, 6, 7) and p.size == (6, 7)


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
    with pytest.raises(
        ValueError, match="sample_resample_params: sampler must be one of 'uniform', 'fixed'"
    ):
        resample(x, sampler="normal")
    with pytest.raises(ValueError, match="sample_resample_params: sampler must be one of"):
        sample_resample_params(2, 8, 8, sampler="gaussian")
    with pytest.raises(ValueError, match="Resample: sampler must be one of 'uniform', 'fixed'"):
        Resample(sampler="invariant")
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
