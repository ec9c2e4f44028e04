"""FMix (Harris et al., arXiv 2002.12047): formula, properties, errors.

No installed package implements FMix; the references are numpy transcriptions of the card's
steps (``np.fft.irfftn`` of the 1/f^delta complex spectrum, the official ``binarise_mask`` with
its linspace ramp), of the official ``make_low_freq_image`` as written (ecs-vlc/FMix ``fmix.py``
at commit e5991dca018882734c8ea63599f10dfbe67fa0ae; the transcription below was checked to give
bit-identical images to that file under the same ``np.random`` seed for 1-D, 2-D and 3-D shapes
and decay powers 1 to 100), and naive loops of the mixing equation, in float64.
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

from posneg import _rng
from posneg.mixing import (
    FMix,
    FMixParams,
    MixedSegBatch,
    apply_fmix,
    fmix_masks,
    low_frequency_images,
    sample_fmix_params,
)
from posneg.mixing.fmix import _freqs, _raw_images, _spectrum_scale, _top_n

SIZES = [(40,), (12, 17), (6, 7, 5)]


def naive_grey(parts: torch.Tensor, size: tuple[int, ...], delta: float) -> np.ndarray:
    """The card's steps 1-3 in numpy float64 from the same Gaussian draws (n, *freq, 2)."""
    axes = [np.fft.fftfreq(s) for s in size[:-1]] + [np.fft.rfftfreq(size[-1])]
    grids = np.meshgrid(*axes, indexing="ij")
    f = np.sqrt(sum(g * g for g in grids))
    scale = 1.0 / np.maximum(f, 1.0 / max(size)) ** delta
    p = parts.double().numpy()
    spectrum = scale * (p[..., 0] + 1j * p[..., 1])
    grey = np.fft.irfftn(spectrum, s=size, axes=tuple(range(-len(size), 0)))
    flat = grey.reshape(grey.shape[0], -1)
    flat = (flat - flat.min(1, keepdims=True)) / np.ptp(flat, axis=1, keepdims=True)
    return flat.reshape(grey.shape)


def naive_binarise(grey: np.ndarray, lam: float, coin: float, max_soft: float) -> np.ndarray:
    """The official ``binarise_mask`` for one mask, with the coin drawn outside."""
    flat = grey.reshape(-1).copy()
    idx = flat.argsort(kind="stable")[::-1]
    num = math.ceil(lam * flat.size) if coin > 0.5 else math.floor(lam * flat.size)
    eff_soft = max_soft
    if max_soft > lam or max_soft > (1 - lam):
        eff_soft = min(lam, 1 - lam)
    soft = int(flat.size * eff_soft)
    num_low, num_high = num - soft, num + soft
    flat[idx[:num_high]] = 1
    flat[idx[num_low:]] = 0
    flat[idx[num_low:num_high]] = np.linspace(1, 0, num_high - num_low)
    return flat.reshape(grey.shape)


def _freq_shape(size: tuple[int, ...]) -> tuple[int, ...]:
    return (*size[:-1], size[-1] // 2 + 1)


def official_freqs(shape: tuple[int, ...]) -> np.ndarray:
    """The official ``fftfreqnd(*shape)``: |f| with ``fftfreq(h)`` on the first axis, the first
    ``w // 2 + 1`` (``+ 2`` for odd w) entries of ``fftfreq(w)`` on the last one and, for 3-D
    shapes, ``fftfreq(z)`` on the middle axis (grid shape (h, z, w // 2 + 1))."""
    fy: np.ndarray = np.fft.fftfreq(shape[0])
    fx: np.ndarray | float = 0.0
    fz: np.ndarray | float = 0.0
    if len(shape) >= 2:
        w = shape[1]
        fy = fy[:, None]
        fx = np.fft.fftfreq(w)[: w // 2 + (2 if w % 2 else 1)]
    if len(shape) == 3:
        fy = fy[:, None]
        fz = np.fft.fftfreq(shape[2])[:, None]
    return np.asarray(np.sqrt(fx * fx + fy * fy + fz * fz))


def official_low_freq_image(decay: float, shape: tuple[int, ...], param: np.ndarray) -> np.ndarray:
    """The official ``make_low_freq_image(decay, shape)`` in float64, with its Gaussian draws
    ``param`` (1, *official_freqs(shape).shape, 2) given: ``get_spectrum``'s scale
    ``1 / max(f, 1 / max(shape))^decay`` times the draws, then the complex spectrum
    ``spectrum[:, 0] + 1j * spectrum[:, 1]`` (rows 0 and 1 of the first frequency axis),
    ``irfftn`` to ``shape`` over the last ``len(shape)`` axes, min-max normalised."""
    scale = 1.0 / np.maximum(official_freqs(shape), 1.0 / max(shape)) ** decay
    spectrum = scale[None, ..., None] * param
    axes = tuple(range(-len(shape), 0))  # what numpy does with s and no axes
    grey = np.real(np.fft.irfftn(spectrum[:, 0] + 1j * spectrum[:, 1], shape, axes=axes))
    grey = grey - grey.min()
    return np.asarray(grey / grey.max())


# ---------------------------------------------------------------------------------------------
# formula
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("delta", [1.0, 3.0])
def test_low_frequency_images_match_numpy(size: tuple[int, ...], delta: float) -> None:
    grey = low_frequency_images(
        5, size, decay_power=delta, generator=torch.Generator().manual_seed(0)
    )
    g = torch.Generator().manual_seed(0)
    parts = torch.randn((5, *_freq_shape(size), 2), generator=g)
    np.testing.assert_allclose(grey.numpy(), naive_grey(parts, size, delta), atol=2e-5)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("max_soft", [0.0, 0.1, 0.45])
def test_masks_match_the_official_binarisation(size: tuple[int, ...], max_soft: float) -> None:
    n = 12
    lam = torch.rand(n, generator=torch.Generator().manual_seed(7))
    lam[0], lam[1] = 0.0, 1.0
    masks = fmix_masks(lam, size, max_soft=max_soft, generator=torch.Generator().manual_seed(3))
    # replay the same draws: the coins, then the spectra (the grey images before min-max)
    g = torch.Generator().manual_seed(3)
    coin = _rng.uniform((n,), dtype=torch.float64, generator=g)
    grey = _raw_images(n, size, 3.0, torch.device("cpu"), g).view(n, *size)
    for i in range(n):
        want = naive_binarise(grey[i].double().numpy(), float(lam[i]), float(coin[i]), max_soft)
        np.testing.assert_allclose(masks[i].double().numpy(), want, atol=1e-6)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("max_soft", [0.0, 0.2])
def test_cpu_blocks_match_the_card(
    size: tuple[int, ...], max_soft: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Masks built over several CPU blocks (here 3 images per block, 10 images) are the card's
    masks of the spectra drawn block after block: no image is skipped, repeated or misaligned."""
    per_image = 2 * math.prod(_freq_shape(size))
    monkeypatch.setattr("posneg.mixing.fmix._CPU_BLOCK_VALUES", 3 * per_image)
    n = 10
    lam = torch.rand(n, generator=torch.Generator().manual_seed(4))
    masks = fmix_masks(lam, size, max_soft=max_soft, generator=torch.Generator().manual_seed(6))
    grey_all = low_frequency_images(n, size, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(6)
    coin = _rng.uniform((n,), dtype=torch.float64, generator=g)
    g9 = torch.Generator().manual_seed(9)
    for start in range(0, n, 3):
        rows = min(3, n - start)
        parts = torch.randn((rows, *_freq_shape(size), 2), generator=g)
        grey = naive_grey(parts, size, 3.0)
        parts9 = torch.randn((rows, *_freq_shape(size), 2), generator=g9)
        np.testing.assert_allclose(
            grey_all[start : start + rows].numpy(), naive_grey(parts9, size, 3.0), atol=2e-5
        )
        for i in range(rows):
            k = start + i
            want = naive_binarise(grey[i], float(lam[k]), float(coin[k]), max_soft)
            got = masks[k].double().numpy()
            if max_soft == 0.0:  # float32 vs float64 greys may swap the two pixels at the edge
                assert got.sum() == want.sum()
                assert (got != want).sum() <= 2
            else:
                np.testing.assert_allclose(got, want, atol=1e-6)


def test_top_n_selects_exactly_the_largest() -> None:
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(30, 500, generator=g)
    grey[3] = 0.5  # a constant row: ties everywhere
    grey[5] *= 1e-30  # a tiny span
    grey[6] += 1e6  # a large offset
    grey[4, ::2] = grey[4, 1]  # many ties
    count = torch.randint(0, 501, (30,), generator=g)
    count[:3] = torch.tensor([0, 500, 1])
    keep = _top_n(grey, count)
    assert torch.equal(keep.sum(1), count)
    for i in range(30):  # every kept value >= every dropped value
        if 0 < int(count[i]) < 500:
            assert float(grey[i][keep[i]].min()) >= float(grey[i][~keep[i]].max())


@pytest.mark.parametrize("per_sample", [False, True])
def test_apply_matches_naive_loop(per_sample: bool) -> None:
    x = torch.rand(5, 2, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1])
    for max_soft in (0.0, 0.2):
        p = sample_fmix_params(
            5,
            (6, 7),
            max_soft=max_soft,
            per_sample=per_sample,
            generator=torch.Generator().manual_seed(2),
        )
        out = apply_fmix(x, y, p, num_classes=3)
        for i in range(5):
            j = int(p.index[i])
            m = p.masks[i].double()
            torch.testing.assert_close(out.x[i], m * x[i] + (1 - m) * x[j])
            lam = float(m.mean())
            want = torch.zeros(3, dtype=torch.float64)
            want[int(y[i])] += lam
            want[int(y[j])] += 1 - lam
            torch.testing.assert_close(out.targets[i], want)


@pytest.mark.parametrize("shape", [(40,), (41,), (12, 16), (12, 17), (6, 6, 6), (224, 224)])
@pytest.mark.parametrize("delta", [1.0, 3.0, 17.0, 50.0, 100.0])
def test_spectrum_scale_is_the_officials_up_to_a_constant(
    shape: tuple[int, ...], delta: float
) -> None:
    """On the real-FFT grid posneg's scale is the official ``get_spectrum`` scale (float64) up to
    one positive constant, at every decay power up to 100 (the official float64 scale is finite
    there); entries below float32's range relative to the peak may underflow to 0."""
    off = 1.0 / np.maximum(official_freqs(shape), 1.0 / max(shape)) ** delta
    # the official grid restricted to the bins irfftn reads: rfft bins of the last axis (a 3-D
    # cube's grid (h, z, w') is (h, w, w') there)
    if len(shape) == 1:
        off = off[: shape[0] // 2 + 1]
    else:
        off = off[..., : shape[-1] // 2 + 1]
    got = _spectrum_scale(_freqs(shape, torch.device("cpu")), shape, delta).double().numpy()
    assert got.shape == off.shape and np.isfinite(got).all() and float(got.max()) > 0
    rel_off, rel_got = off / off.max(), got / got.max()
    big = rel_off > 1e-30
    np.testing.assert_allclose(rel_got[big], rel_off[big], rtol=1e-6)
    assert bool((rel_got[~big] <= 1e-30).all())


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("delta", [17.0, 50.0, 100.0])
def test_large_decay_power_matches_float64_card(size: tuple[int, ...], delta: float) -> None:
    """The grey images at large decay powers equal the card's float64 computation."""
    grey = low_frequency_images(
        5, size, decay_power=delta, generator=torch.Generator().manual_seed(0)
    )
    parts = torch.randn((5, *_freq_shape(size), 2), generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(grey.numpy(), naive_grey(parts, size, delta), atol=1e-4)


@pytest.mark.parametrize("size", [(224,), (224, 224), (24, 24, 24), (17, 9, 5)])
@pytest.mark.parametrize("delta", [17.0, 20.0, 60.0, 100.0])
def test_large_decay_power_gives_finite_random_masks(size: tuple[int, ...], delta: float) -> None:
    """At decay powers where the card's float32 scale overflowed (17 on 224 x 224 gave NaN
    images, 20 a bincount error, soft edges a fixed band), images are finite in [0, 1], hard
    masks keep exactly ceil|floor(lam N) pixels and soft masks still differ from seed to seed."""
    n = 4
    grey = low_frequency_images(
        n, size, decay_power=delta, generator=torch.Generator().manual_seed(1)
    )
    flat = grey.reshape(n, -1)
    assert bool(torch.isfinite(grey).all())
    assert bool((flat.amin(1) == 0).all()) and bool((flat.amax(1) == 1).all())
    lam = torch.tensor([0.1, 0.35, 0.5, 0.9])
    hard = fmix_masks(lam, size, decay_power=delta, generator=torch.Generator().manual_seed(2))
    npix = math.prod(size)
    err = (hard.reshape(n, -1).double().mean(1) - lam.double()).abs()
    assert bool((err <= 1.0 / npix + 1e-7).all())
    soft = [
        fmix_masks(
            lam, size, decay_power=delta, max_soft=0.1, generator=torch.Generator().manual_seed(s)
        )
        for s in (3, 4)
    ]
    for m in soft:
        assert bool(torch.isfinite(m).all())
        merr = (m.reshape(n, -1).double().mean(1) - lam.double()).abs()
        assert bool((merr <= 1.0 / npix + 1e-6).all())
    assert not torch.equal(soft[0], soft[1])


@pytest.mark.parametrize("shape", [(40,), (41,), (16, 16), (12, 17), (6, 6, 6), (5, 7, 4)])
@pytest.mark.parametrize("delta", [1.0, 3.0, 17.0, 100.0])
def test_official_make_low_freq_image_as_transcribed(shape: tuple[int, ...], delta: float) -> None:
    """The official function, as written: finite in float64 up to decay power 100 on 1-D, 2-D
    and 3-D shapes, and built from rows 0 and 1 of its frequency grid, so its images hold only
    frequencies 0 and 1 along the last axis (a 1-D image is one sinusoid of period L)."""
    rng = np.random.default_rng(0)
    param = rng.standard_normal((1, *official_freqs(shape).shape, 2))
    grey = official_low_freq_image(delta, shape, param)
    assert grey.shape == (1, *shape) and np.isfinite(grey).all()
    assert grey.min() == 0 and grey.max() == 1
    power = np.abs(np.fft.rfft(grey - grey.mean(), axis=-1)) ** 2
    assert power[..., 2:].sum() <= 1e-20 * power.sum()


def test_deliberate_difference_card_spectrum_is_isotropic() -> None:
    """posneg follows the card (a complex Gaussian on the whole grid): unlike the official
    image, its images have power beyond frequency 1 along the last axis, about as much as along
    the first axis."""
    shape = (32, 32)
    grey = low_frequency_images(
        64, shape, decay_power=3.0, generator=torch.Generator().manual_seed(0)
    ).double()
    grey = (grey - grey.mean((1, 2), keepdim=True)).numpy()
    last = (np.abs(np.fft.rfft(grey, axis=2)) ** 2).mean((0, 1))  # power per bin, last axis
    first = (np.abs(np.fft.rfft(grey, axis=1)) ** 2).mean((0, 2))  # the same along the first
    assert last[2:].sum() > 1e-3 * last.sum()
    np.testing.assert_allclose(last[1:6] / last[1], first[1:6] / first[1], rtol=0.3)
    rng = np.random.default_rng(0)
    off = np.stack(
        [
            official_low_freq_image(
                3.0, shape, rng.standard_normal((1, *official_freqs(shape).shape, 2))
            )[0]
            for _ in range(64)
        ]
    )
    off_last = (np.abs(np.fft.rfft(off - off.mean((1, 2), keepdims=True), axis=2)) ** 2).mean(
        (0, 1)
    )
    assert off_last[2:].sum() <= 1e-20 * off_last.sum()


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [*SIZES, (32, 32)])
@pytest.mark.parametrize("per_sample", [False, True])
def test_binary_masks_mean_within_one_pixel_of_lambda(
    size: tuple[int, ...], per_sample: bool
) -> None:
    b = 16
    # lambda as drawn: replay the sampler's first draw (Beta(alpha, alpha))
    p = sample_fmix_params(
        b, size, alpha=0.7, per_sample=per_sample, generator=torch.Generator().manual_seed(5)
    )
    lam = _rng.beta(0.7, 0.7, (b if per_sample else 1,), generator=torch.Generator().manual_seed(5))
    lam = lam if per_sample else lam.expand(b)
    assert p.masks.dtype == torch.bool and p.masks.shape == (b, *size)
    npix = math.prod(size)
    err = (p.masks.double().reshape(b, -1).mean(1) - lam.double()).abs()
    assert bool((err <= 1.0 / npix + 1e-7).all())
    torch.testing.assert_close(p.lam.double(), p.masks.double().reshape(b, -1).mean(1))


def test_soft_masks_keep_the_mean_and_range() -> None:
    lam = torch.linspace(0.05, 0.95, 10)
    m = fmix_masks(lam, (20, 20), max_soft=0.3, generator=torch.Generator().manual_seed(0))
    assert m.dtype == torch.float32 and float(m.min()) >= 0 and float(m.max()) <= 1
    err = (m.double().mean((1, 2)) - lam.double()).abs()
    assert bool((err <= 1 / 400 + 1e-6).all())
    assert bool(((m > 0) & (m < 1)).any())


def test_larger_decay_power_gives_fewer_components() -> None:
    lam = torch.full((16,), 0.5)
    means = []
    for delta in (0.5, 1.0, 2.0, 3.0):
        masks = fmix_masks(
            lam, (64, 64), decay_power=delta, generator=torch.Generator().manual_seed(0)
        )
        means.append(np.mean([ndimage.label(m.numpy())[1] for m in masks]))
    assert all(a > b for a, b in itertools.pairwise(means)), means


def test_same_seed_same_mask_and_shape_of_input() -> None:
    a = sample_fmix_params(4, (9, 11), per_sample=True, generator=torch.Generator().manual_seed(1))
    b = sample_fmix_params(4, (9, 11), per_sample=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.masks, b.masks) and torch.equal(a.index, b.index)
    assert a.masks.shape == (4, 9, 11)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 6),
    c=st.integers(1, 3),
    size=st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.uint8]),
    per_sample=st.booleans(),
    max_soft=st.sampled_from([0.0, 0.25]),
    seed=st.integers(0, 2**31 - 1),
)
def test_shapes_dtypes_and_targets(
    b: int,
    c: int,
    size: tuple[int, ...],
    dtype: torch.dtype,
    per_sample: bool,
    max_soft: float,
    seed: int,
) -> None:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (b, c, *size), generator=g, dtype=torch.uint8)
    else:
        x = torch.rand(b, c, *size, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, 3, (b,), generator=g)
    out = FMix(per_sample=per_sample, max_soft=max_soft, num_classes=3)(
        x, y, generator=torch.Generator().manual_seed(seed)
    )
    assert out.x.shape == x.shape and out.x.dtype == x.dtype
    assert out.targets is not None and out.targets.shape == (b, 3)
    torch.testing.assert_close(out.targets.float().sum(1), torch.ones(b), atol=1e-2, rtol=0)
    if max_soft == 0.0:  # hard masks copy: every output pixel is one of the two inputs
        p = sample_fmix_params(
            b, size, per_sample=per_sample, generator=torch.Generator().manual_seed(seed)
        )
        partner = x[p.index]
        assert bool(((out.x == x) | (out.x == partner)).all())


def test_masks_mixed_with_the_same_geometry() -> None:
    b, h, w = 6, 10, 12
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 2, h, w).contiguous()
    seg = torch.arange(b).view(b, 1, 1).expand(b, h, w).contiguous()
    out = FMix(per_sample=True)(x, None, masks=seg, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, MixedSegBatch) and torch.equal(out.masks, out.x[:, 0].long())
    soft = torch.nn.functional.one_hot(seg, b).movedim(-1, 1).double()
    p = sample_fmix_params(
        b, (h, w), max_soft=0.3, per_sample=True, generator=torch.Generator().manual_seed(1)
    )
    out_soft = apply_fmix(x.double(), None, p, masks=soft)
    recon = (out_soft.masks * torch.arange(b, dtype=torch.float64).view(1, b, 1, 1)).sum(1)
    torch.testing.assert_close(recon, out_soft.x[:, 0])
    # class maps under a soft edge take the class of the image weighted >= 0.5
    ids = apply_fmix(x, None, p, masks=seg).masks
    want = torch.where(p.masks >= 0.5, seg, seg[p.index])
    assert torch.equal(ids, want)


@pytest.mark.parametrize("size", [(50,), (5, 6, 7)])
def test_one_and_three_dimensional_inputs(size: tuple[int, ...]) -> None:
    x = torch.rand(4, 2, *size)
    seg = torch.randint(0, 3, (4, *size))
    out = FMix(per_sample=True)(x, None, masks=seg, generator=torch.Generator().manual_seed(0))
    assert out.x.shape == x.shape and out.masks.shape == seg.shape


def test_batch_of_one_replay_and_rng() -> None:
    x = torch.rand(1, 3, 8, 8)
    out = FMix(num_classes=2)(x, torch.tensor([1]), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.x, x)
    torch.testing.assert_close(out.targets, torch.tensor([[0.0, 1.0]]))
    x = torch.rand(5, 3, 8, 8)
    p = sample_fmix_params(5, (8, 8), per_sample=True, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 1, 0, 1])
    first, again = apply_fmix(x, y, p, num_classes=2), apply_fmix(x, y, p, num_classes=2)
    assert all(torch.equal(s, t) for s, t in zip(first, again, strict=True))
    state = torch.get_rng_state()
    FMix(per_sample=True)(x, None, generator=torch.Generator().manual_seed(1))
    assert torch.equal(state, torch.get_rng_state())


def test_repr() -> None:
    text = repr(FMix(0.5, decay_power=2.0, max_soft=0.1, per_sample=True))
    assert "decay_power=2.0" in text and "max_soft=0.1" in text and "per_sample=True" in text


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors() -> None:
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(ValueError, match=r"FMix: alpha must be > 0; got -1"):
        FMix(alpha=-1)
    with pytest.raises(ValueError, match=r"FMix: decay_power must be > 0; got 0"):
        FMix(decay_power=0)
    with pytest.raises(ValueError, match=r"FMix: max_soft must be in \[0.0, 0.5\]; got 0.6"):
        FMix(max_soft=0.6)
    with pytest.raises(
        ValueError,
        match=r"FMix: x must be a 3-D or 4-D or 5-D tensor \(B, C, \*spatial\); got shape \(4, 8\)",
    ):
        FMix()(torch.rand(4, 8), None)
    with pytest.raises(ValueError, match=r"size must have 1 or 2 or 3 entries; got \(2, 2, 2, 2\)"):
        sample_fmix_params(4, (2, 2, 2, 2))
    with pytest.raises(ValueError, match=r"params.masks must have shape \(B, \*spatial\)"):
        apply_fmix(x, None, sample_fmix_params(4, (8, 7)))
    with pytest.raises(TypeError, match=r"params.masks must be bool or floating"):
        apply_fmix(x, None, FMixParams(torch.arange(4), torch.zeros(4, 8, 8, dtype=torch.long)))
    with pytest.raises(
        ValueError, match=r"targets given as class ids must have shape \(B,\) with B=4"
    ):
        FMix(num_classes=2)(x, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"num_classes is required"):
        FMix()(x, torch.tensor([0, 1, 1, 0]))
    with pytest.raises(ValueError, match=r"masks must have shape \(4, 8, 8\)"):
        FMix()(x, None, masks=torch.zeros(4, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"fmix_masks: lam must have shape \(n,\)"):
        fmix_masks(torch.rand(2, 2), (4, 4))
