"""RandomField: the Gaussian random fields (modes, covariance, smoothness, limits), the warp
against a naive float64 loop + scipy's bilinear interpolation, constant fields against the
global kernels of ``posneg.augment.functional``, identity, replay, generator, dtype, errors.

References:
- the field: a float64 loop summing the random Fourier modes from the same draws; its exact
  covariance (from the modes' weights) against ``exp(-r^2 / (2 l^2))`` and against the
  covariance of per-pixel white noise filtered by ``G`` with ``torch.fft`` (a Gaussian field is
  fixed by its covariance); empirical covariance and smoothness of draws;
- the warp: source coordinates from the module's formula in a Python loop (float64), read with
  ``scipy.ndimage.map_coordinates(order=1)`` (``mode="nearest"`` for border padding,
  ``"reflect"`` for reflection);
- constant fields: ``functional.affine`` (bilinear) and ``functional.brightness`` /
  ``contrast`` / ``color`` (checked against Pillow in ``test_functional.py``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from sklearn.datasets import load_sample_images
from torch.utils._python_dispatch import TorchDispatchMode

from posneg.augment import functional as AF
from posneg.augment.random_field import (
    FIELDS,
    RandomField,
    RandomFieldParams,
    _band,
    _pad,
    apply_random_field,
    gaussian_random_fields,
    sample_random_field_params,
)

_PHOTO = torch.from_numpy(load_sample_images().images[1][::8, ::8].copy()).permute(2, 0, 1)
PHOTOS = torch.stack([_PHOTO, _PHOTO.flip(2)])  # (2, 3, 54, 80) uint8
NONE = dict.fromkeys(FIELDS, 0.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # type: ignore[no-untyped-def]
    """Inputs here are tiny: intra-op threads only add overhead on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _only(**strengths: float) -> dict[str, float]:
    """Strength kwargs with every field off except those given."""
    return {**NONE, **strengths}


# ---------------------------------------------------------------------------------------------
# formula: the random field
# ---------------------------------------------------------------------------------------------


def _modes(h: int, w: int, ells: list[float]) -> tuple[np.ndarray, ...]:
    """The band of ``gaussian_random_fields`` as float64 arrays: fy (My,), ay (K, My),
    fx (Mx,), ax (K, Mx)."""
    fy, ay, fx, ax = _band(h, w, torch.tensor(ells, dtype=torch.float64))
    return fy.numpy(), ay.numpy(), fx.numpy(), ax.numpy()


@pytest.mark.parametrize("ells", [[2.0, 5.0], [0.7, 0.7], [40.0, 3.0]])
def test_field_equals_naive_sum_of_random_modes(ells: list[float]) -> None:
    """z(y, x) = sum_k ay ax (a_k cos t_k + b_k sin t_k), t_k = 2 pi (fy y + fx x), written as
    a float64 loop over modes from the same draws."""
    h, w, b = 7, 9, 2
    z = gaussian_random_fields(b, h, w, ells, generator=_gen(3))
    fy, ay, fx, ax = _modes(h, w, ells)
    coef = torch.randn((b, len(ells), fy.size, fx.size, 2), generator=_gen(3)).double().numpy()
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for s in range(b):
        for k in range(len(ells)):
            ref = np.zeros((h, w))
            for iy in range(fy.size):
                for ix in range(fx.size):
                    t = 2 * math.pi * (fy[iy] * yy + fx[ix] * xx)
                    a, bb = coef[s, k, iy, ix]
                    ref += ay[k, iy] * ax[k, ix] * (a * np.cos(t) + bb * np.sin(t))
            np.testing.assert_allclose(z[s, k].double().numpy(), ref, atol=2e-5)


def _mode_covariance(h: int, w: int, ell: float, lags: np.ndarray, axis: int) -> np.ndarray:
    """sum_k s_k^2 cos(2 pi f_k . r) at lags r along one axis: the fields' covariance."""
    fy, ay, fx, ax = _modes(h, w, [ell])
    s2 = (ay[0].reshape(-1, 1) * ax[0].reshape(1, -1)) ** 2
    f = fy.reshape(-1, 1) if axis == 0 else fx.reshape(1, -1)
    return np.array([(s2 * np.cos(2 * math.pi * f * r)).sum() for r in lags])


@pytest.mark.parametrize("ell", [1.5, 3.0, 6.0, 12.0])
def test_covariance_is_squared_exponential(ell: float) -> None:
    """The card's test: autocorrelation at lag l ~ exp(-1/2); exactly, from the modes'
    weights, at every lag up to 3 l (unit variance at lag 0), along both axes."""
    n = 200
    lags = np.arange(0, 3 * math.ceil(ell))
    expected = np.exp(-(lags**2) / (2 * ell**2))
    # the power spectrum is cut at Nyquist (where it is exp(-pi^2 l^2 / 2)) and below 1e-12
    tol = 1e-9 + 2 * math.exp(-(math.pi**2) * ell**2 / 2)
    for axis in (0, 1):
        cov = _mode_covariance(n, n, ell, lags, axis)
        np.testing.assert_allclose(cov, expected, atol=tol)
    lo, frac = math.floor(ell), ell - math.floor(ell)
    cov = _mode_covariance(n, n, ell, np.array([lo, lo + 1]), 1)
    c_ell = (1 - frac) * cov[0] + frac * cov[1]  # linear interpolation: small bias if frac
    assert c_ell == pytest.approx(math.exp(-0.5), abs=0.01 if frac else 1e-6)


@pytest.mark.parametrize("ell", [0.5, 2.0, 7.0])
def test_same_distribution_as_filtered_white_noise(ell: float) -> None:
    """A zero-mean Gaussian field is fixed by its covariance: the modes' covariance equals that
    of per-pixel white noise filtered by G in Fourier space (irfft2 of the normalised |G|^2 on
    the same padded lattice), up to the dropped modes (< 1e-12 of the variance)."""
    h, w = 20, 26
    hp, wp = h + _pad(h, ell), w + _pad(w, ell)
    fy = torch.fft.fftfreq(hp, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.rfftfreq(wp, dtype=torch.float64).view(1, -1)
    power = torch.exp(-2 * math.pi**2 * ell**2 * (fy**2 + fx**2))
    fy_full = torch.fft.fftfreq(hp, dtype=torch.float64).view(-1, 1)
    fx_full = torch.fft.fftfreq(wp, dtype=torch.float64).view(1, -1)
    mean_power = torch.exp(-2 * math.pi**2 * ell**2 * (fy_full**2 + fx_full**2)).mean()
    cov_fft = torch.fft.irfft2(power / mean_power, s=(hp, wp)).numpy()
    lags = np.arange(0, 8)
    np.testing.assert_allclose(_mode_covariance(h, w, ell, lags, 0), cov_fft[lags, 0], atol=1e-9)
    np.testing.assert_allclose(_mode_covariance(h, w, ell, lags, 1), cov_fft[0, lags], atol=1e-9)


def test_covariance_empirical() -> None:
    ell = 4.0
    z = gaussian_random_fields(400, 24, 24, [ell], generator=_gen(1)).double()
    assert float(z.var()) == pytest.approx(1.0, abs=0.05)
    c = float((z[..., :, 4:] * z[..., :, :-4]).mean())
    assert c == pytest.approx(math.exp(-0.5), abs=0.05)
    c_y = float((z[..., 4:, :] * z[..., :-4, :]).mean())
    assert c_y == pytest.approx(math.exp(-0.5), abs=0.05)


def test_smoothness_grows_with_length_scale() -> None:
    """Mean squared finite difference falls as l grows (fixed generator) and matches
    2 (1 - exp(-1 / (2 l^2))) for a unit-variance field."""
    msd = []
    for ell in (0.5, 1.0, 2.0, 4.0, 8.0):
        z = gaussian_random_fields(64, 32, 32, [ell], generator=_gen(5)).double()
        d = float(((z[..., :, 1:] - z[..., :, :-1]) ** 2).mean())
        msd.append(d)
        if ell >= 1.0:
            assert d == pytest.approx(2 * (1 - math.exp(-1 / (2 * ell**2))), rel=0.1)
    assert all(a > b for a, b in itertools.pairwise(msd)), msd


def test_limits_global_and_white() -> None:
    """l -> inf: constant per sample (spatial std -> 0) with unit variance across samples;
    l -> 0: uncorrelated per-pixel noise."""
    z = gaussian_random_fields(2000, 8, 8, [1e5], generator=_gen(2)).double()
    assert float(z.std(dim=(2, 3)).max()) < 1e-4
    assert float(z[:, 0, 0, 0].var()) == pytest.approx(1.0, abs=0.1)
    z = gaussian_random_fields(64, 32, 32, [1e-3], generator=_gen(2)).double()
    assert float(z.var()) == pytest.approx(1.0, abs=0.05)
    assert abs(float((z[..., :, 1:] * z[..., :, :-1]).mean())) < 0.03


def test_fields_scale_with_strength_and_differ_per_sample() -> None:
    a = sample_random_field_params(3, 16, 16, **_only(rotation=1.0), generator=_gen(7))
    b = sample_random_field_params(3, 16, 16, **_only(rotation=5.0), generator=_gen(7))
    assert a.rotation is not None and b.rotation is not None
    torch.testing.assert_close(b.rotation, 5.0 * a.rotation)
    assert a.translation is None and a.hue is None
    assert not torch.equal(a.rotation[0], a.rotation[1])
    # per-field length scales: a mapping
    p = sample_random_field_params(
        2,
        16,
        16,
        **_only(translation=1.0, hue=0.1),
        length_scale={"translation": 2.0, "hue": 50.0},
        generator=_gen(0),
    )
    assert p.translation is not None and p.hue is not None
    assert p.translation.shape == (2, 2, 16, 16)
    assert float(p.hue.std(dim=(1, 2)).max()) < 0.2 * float(p.translation.std(dim=(2, 3)).min())


# ---------------------------------------------------------------------------------------------
# formula + reference: the warp
# ---------------------------------------------------------------------------------------------


def _naive_source(p: RandomFieldParams, b: int, i: int, j: int, h: int, w: int) -> tuple:
    """Input index coordinates (row, col) read by output pixel (i, j): the module's formula."""
    cx, cy = w / 2, h / 2
    u, v = j + 0.5 - cx, i + 0.5 - cy
    if p.translation is not None:
        u -= float(p.translation[b, 0, i, j])
        v -= float(p.translation[b, 1, i, j])
    if p.rotation is not None:
        rad = -math.radians(float(p.rotation[b, i, j]))
        u, v = math.cos(rad) * u + math.sin(rad) * v, -math.sin(rad) * u + math.cos(rad) * v
    if p.scale is not None:
        z = math.exp(float(p.scale[b, i, j]))
        u, v = u / z, v / z
    return v + cy - 0.5, u + cx - 0.5


@pytest.mark.parametrize(
    ("padding", "scipy_mode"), [("border", "nearest"), ("reflection", "reflect")]
)
def test_warp_equals_naive_loop_and_scipy(padding: str, scipy_mode: str) -> None:
    x = PHOTOS[:, :, :20, :26].double() / 255
    b, c, h, w = x.shape
    p = sample_random_field_params(
        b,
        h,
        w,
        **_only(translation=2.5, rotation=6.0, scale=0.1),
        length_scale=5.0,
        generator=_gen(11),
    )
    ours = apply_random_field(x, p, padding=padding)
    ref = torch.empty_like(x)
    for s in range(b):
        coords = np.zeros((2, h, w))
        for i in range(h):
            for j in range(w):
                coords[:, i, j] = _naive_source(p, s, i, j, h, w)
        for ch in range(c):
            ref[s, ch] = torch.from_numpy(
                ndimage.map_coordinates(x[s, ch].numpy(), coords, order=1, mode=scipy_mode)
            )
    # fields are float32: source coordinates agree to ~1e-5 px
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=0)


def test_constant_fields_equal_global_affine() -> None:
    """With constant fields the warp is the global affine of functional.affine (bilinear)."""
    x = PHOTOS.double() / 255
    b, _, h, w = x.shape
    angle, zoom, tx, ty = torch.tensor([7.0, -12.0]), torch.tensor([0.1, -0.2]), 3.25, -1.5
    p = RandomFieldParams(
        translation=torch.tensor([tx, ty]).view(1, 2, 1, 1).expand(b, 2, h, w).float(),
        rotation=angle.view(b, 1, 1).expand(b, h, w).float(),
        scale=zoom.view(b, 1, 1).expand(b, h, w).float(),
    )
    ours = apply_random_field(x, p, padding="fill", fill=0.25)
    # inverse map p_in = c + R (p - c - t) / s  ->  [[A, c - A (c + t)]]
    m = AF.rotation_matrix(angle.double(), h, w)
    a = m[:, :, :2] / torch.exp(zoom.double()).view(b, 1, 1)
    centre = torch.tensor([w / 2, h / 2], dtype=torch.float64)
    t = torch.tensor([tx, ty], dtype=torch.float64)
    offset = centre.view(1, 2) - (a @ (centre + t).view(1, 2, 1).expand(b, 2, 1)).squeeze(2)
    ref = AF.affine(x, torch.cat([a, offset.unsqueeze(2)], 2), fill=0.25, interpolation="bilinear")
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float64])
def test_constant_integer_translation_is_a_plain_shift(dtype: torch.dtype) -> None:
    x = PHOTOS if dtype == torch.uint8 else PHOTOS.double() / 255
    b, _, h, w = x.shape
    shifts = [(3, -2), (-5, 4)]
    trans = torch.tensor(shifts, dtype=torch.float32).view(b, 2, 1, 1).expand(b, 2, h, w)
    p = RandomFieldParams(translation=trans)
    for padding in ("fill", "border"):
        out = apply_random_field(x, p, padding=padding, fill=0.0)
        for s, (dx, dy) in enumerate(shifts):
            # content moves right by dx and down by dy: out[i, j] = x[i - dy, j - dx]
            rows = torch.arange(h) - dy
            cols = torch.arange(w) - dx
            ref = x[s][:, rows.clamp(0, h - 1)][:, :, cols.clamp(0, w - 1)]
            if padding == "fill":
                outside = ((rows < 0) | (rows >= h)).view(-1, 1) | ((cols < 0) | (cols >= w))
                ref = torch.where(outside, torch.zeros((), dtype=x.dtype), ref)
            if dtype == torch.uint8:
                assert torch.equal(out[s], ref)
            else:
                torch.testing.assert_close(out[s], ref, atol=1e-9, rtol=0)
        # the same as functional's translate kernels
        if padding == "fill":
            ref_all = AF.translate_y(AF.translate_x(x, trans[:, 0, 0, 0]), trans[:, 1, 0, 0])
            if dtype == torch.uint8:
                assert torch.equal(out, ref_all)
            else:
                torch.testing.assert_close(out, ref_all, atol=1e-9, rtol=0)


# ---------------------------------------------------------------------------------------------
# reference: colour fields
# ---------------------------------------------------------------------------------------------


def _const(b: int, h: int, w: int, values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(b, 1, 1).expand(b, h, w)


@pytest.mark.parametrize(
    ("name", "kernel"),
    [("brightness", AF.brightness), ("contrast", AF.contrast), ("saturation", AF.color)],
)
def test_constant_colour_fields_equal_functional(name: str, kernel: object) -> None:
    x = PHOTOS.double() / 255
    b, _, h, w = x.shape
    offsets = [-0.4, 0.6]
    ours = apply_random_field(x, RandomFieldParams(**{name: _const(b, h, w, offsets)}))
    ref = kernel(x, torch.tensor(offsets, dtype=torch.float64) + 1.0)  # type: ignore[operator]
    torch.testing.assert_close(ours, ref, atol=1e-7, rtol=0)


def test_hue_keeps_luma_and_greys_and_composes() -> None:
    g = _gen(4)
    x = 0.4 + 0.2 * torch.rand(3, 3, 10, 12, generator=g, dtype=torch.float64)  # in gamut
    b, _, h, w = x.shape
    hue = 0.08 * torch.randn(b, h, w, generator=g)
    out = apply_random_field(x, RandomFieldParams(hue=hue))
    torch.testing.assert_close(AF._gray(out, False), AF._gray(x, False), atol=1e-9, rtol=0)
    assert float((out - x).abs().max()) > 0.01
    grey = x[:, :1].expand(-1, 3, -1, -1).contiguous()
    torch.testing.assert_close(apply_random_field(grey, RandomFieldParams(hue=hue)), grey)
    full = apply_random_field(x, RandomFieldParams(hue=torch.ones(b, h, w)))
    torch.testing.assert_close(full, x, atol=1e-9, rtol=0)
    small = 0.05 * torch.ones(b, h, w)
    twice = apply_random_field(
        apply_random_field(x, RandomFieldParams(hue=small)), RandomFieldParams(hue=small)
    )
    torch.testing.assert_close(
        twice, apply_random_field(x, RandomFieldParams(hue=2 * small)), atol=1e-9, rtol=0
    )


def test_greyscale_images_skip_saturation_and_hue() -> None:
    x = torch.rand(2, 1, 8, 8, generator=_gen(0))
    f = torch.full((2, 8, 8), 0.5)
    assert torch.equal(apply_random_field(x, RandomFieldParams(saturation=f, hue=f)), x)


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_zero_strength_is_exact_identity(dtype: torch.dtype) -> None:
    x = PHOTOS if dtype == torch.uint8 else (PHOTOS.double() / 255).to(dtype)
    out = RandomField(**NONE)(x, generator=_gen(0))
    assert torch.equal(out, x) and out.dtype == dtype
    p = sample_random_field_params(2, 54, 80, **NONE, generator=_gen(0))
    assert all(getattr(p, f) is None for f in FIELDS)
    assert torch.equal(apply_random_field(x, p), x)


def test_determinism_and_generator() -> None:
    aug = RandomField(translation=2.0, rotation=4.0, hue=0.05, length_scale=6.0)
    x = PHOTOS
    a = aug(x, generator=_gen(0))
    assert torch.equal(a, aug(x, generator=_gen(0)))
    assert not torch.equal(a, aug(x, generator=_gen(1)))
    before = torch.get_rng_state()
    aug(x, generator=_gen(2))
    assert torch.equal(before, torch.get_rng_state())
    # None uses the global RNG
    torch.manual_seed(5)
    c = aug(x)
    torch.manual_seed(5)
    assert torch.equal(c, aug(x))


def test_replay_params_and_module_equals_sample_then_apply() -> None:
    x = PHOTOS.float() / 255
    kw = dict(
        translation=1.5,
        rotation=2.0,
        scale=0.05,
        brightness=0.2,
        contrast=0.1,
        saturation=0.3,
        hue=0.03,
    )
    p = sample_random_field_params(2, 54, 80, **kw, length_scale=9.0, generator=_gen(8))
    a = apply_random_field(x, p)
    assert torch.equal(a, apply_random_field(x, p))
    mod = RandomField(**kw, length_scale=9.0)
    assert torch.equal(a, mod(x, generator=_gen(8)))


@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64]
)
def test_dtype_shape_range_kept(dtype: torch.dtype) -> None:
    x = PHOTOS if dtype == torch.uint8 else (PHOTOS.double() / 255).to(dtype)
    out = RandomField(brightness=0.5, contrast=0.5)(x, generator=_gen(0))
    assert out.shape == x.shape and out.dtype == dtype
    if dtype != torch.uint8:
        assert float(out.float().min()) >= 0.0 and float(out.float().max()) <= 1.0
    assert not torch.equal(out, x)


@settings(max_examples=20, deadline=None)
@given(
    b=st.integers(0, 4),
    c=st.sampled_from([1, 3]),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    ell=st.floats(0.1, 30.0),
)
def test_shapes(b: int, c: int, h: int, w: int, ell: float) -> None:
    x = torch.rand(b, c, h, w, generator=_gen(0))
    out = RandomField(length_scale=ell)(x, generator=_gen(1))
    assert out.shape == x.shape and bool(torch.isfinite(out).all())


def test_gradient_flows_to_input() -> None:
    x = torch.rand(2, 3, 6, 7, generator=_gen(0), dtype=torch.float64).requires_grad_(True)
    p = sample_random_field_params(2, 6, 7, brightness=0.0, contrast=0.0, generator=_gen(0))
    assert torch.autograd.gradcheck(lambda t: apply_random_field(t, p), (x,))


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.n += 1
        return func(*args, **(kwargs or {}))


def test_no_python_loop_over_the_batch() -> None:
    counts = []
    for b in (3, 40):
        x = torch.rand(b, 3, 8, 8)
        with _CountOps() as mode:
            p = sample_random_field_params(b, 8, 8, generator=_gen(0))
        n_sample = mode.n
        with _CountOps() as mode:
            apply_random_field(x, p, padding="fill", fill=0.5)
        counts.append((n_sample, mode.n))
    assert counts[0] == counts[1]


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors() -> None:
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"RandomField: x must have shape \(B, C, H, W\)"):
        RandomField()(x[0])
    with pytest.raises(TypeError, match=r"RandomField: x must be a torch\.Tensor"):
        RandomField()(x.numpy())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x must be uint8"):
        RandomField()(x.to(torch.int32))
    with pytest.raises(ValueError, match="RandomField: rotation must be >= 0"):
        RandomField(rotation=-1.0)
    with pytest.raises(ValueError, match="sample_random_field_params: hue must be >= 0"):
        sample_random_field_params(2, 8, 8, hue=-0.1)
    with pytest.raises(ValueError, match="RandomField: length_scale must be > 0"):
        RandomField(length_scale=0.0)
    with pytest.raises(ValueError, match="sample_random_field_params: length_scale must be > 0"):
        sample_random_field_params(2, 8, 8, length_scale=-3.0)
    with pytest.raises(ValueError, match=r"length_scale\['hue'\] must be > 0"):
        RandomField(length_scale=dict.fromkeys(FIELDS, 1.0) | {"hue": 0.0})
    with pytest.raises(ValueError, match="missing"):
        RandomField(translation=1.0, length_scale={"rotation": 2.0})
    with pytest.raises(ValueError, match="keys must be among"):
        RandomField(length_scale={"shear": 2.0})
    with pytest.raises(ValueError, match="length_scales must be > 0"):
        gaussian_random_fields(1, 4, 4, [1.0, 0.0])
    with pytest.raises(TypeError, match="RandomField: translation must be a real number"):
        RandomField(translation="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RandomField: interpolation must be one of"):
        RandomField(interpolation="bicubic")
    with pytest.raises(ValueError, match="RandomField: padding must be one of"):
        RandomField(padding="wrap")
    with pytest.raises(TypeError, match="RandomField: fill must be a number or a list"):
        RandomField(fill="red")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"RandomField: generator must be a torch\.Generator"):
        RandomField()(x, generator=0)  # type: ignore[arg-type]
    p = sample_random_field_params(2, 8, 8, generator=_gen(0))
    with pytest.raises(TypeError, match="apply_random_field: params must be RandomFieldParams"):
        apply_random_field(x, {"hue": None})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"params.translation must have shape \(3, 2, 8, 8\)"):
        apply_random_field(torch.rand(3, 3, 8, 8), p)
    with pytest.raises(ValueError, match=r"params.rotation must have shape \(2, 9, 8\)"):
        apply_random_field(torch.rand(2, 3, 9, 8), RandomFieldParams(rotation=p.rotation))
    with pytest.raises(TypeError, match=r"params\.hue must be a floating tensor"):
        apply_random_field(x, RandomFieldParams(hue=torch.zeros(2, 8, 8, dtype=torch.long)))
    with pytest.raises(ValueError, match="need 1 or 3 channels"):
        apply_random_field(torch.rand(2, 2, 8, 8), p)
    with pytest.raises(ValueError, match="apply_random_field: padding must be one of"):
        apply_random_field(x, p, padding="zeros")
    with pytest.raises(ValueError, match="fill must have 1 or C=3 values"):
        apply_random_field(x, p, padding="fill", fill=[0.0, 1.0])
    # brightness alone works for any channel count
    q = RandomFieldParams(brightness=torch.zeros(2, 8, 8))
    assert apply_random_field(torch.rand(2, 5, 8, 8), q).shape == (2, 5, 8, 8)
