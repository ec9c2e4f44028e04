"""RandAugment: torchvision's magnitude table, per-sample op choice, Pillow reference, contracts.

torchvision does not load against the CPU torch of ``make test``: its table is written out below
from torchvision's documented formula (``RandAugment._augmentation_space``), independently of the
library's code. The op kernels and bins are compared with torchvision itself in ``tests/peers/``
(``make test-peers``, docs/peers.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from sklearn.datasets import load_sample_images

from posneg.augment import functional as AF
from posneg.augment.randaugment import (
    OPS,
    RandAugment,
    RandAugmentParams,
    apply_randaugment,
    magnitude_table,
    sample_randaugment_params,
)

H, W = 96, 128
PHOTOS = [Image.fromarray(a).resize((W, H), Image.BILINEAR) for a in load_sample_images().images]


def _to_tensor(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in images])


# ---------------------------------------------------------------------------------------------
# formula: torchvision's table
# ---------------------------------------------------------------------------------------------


def test_magnitude_table_equals_torchvision() -> None:
    n = 31
    table = magnitude_table(n, height=H, width=W)
    for m in range(n):
        assert table["shear_x"][m] == pytest.approx(0.3 * m / 30)
        assert table["shear_y"][m] == pytest.approx(0.3 * m / 30)
        assert table["translate_x"][m] == pytest.approx(150 / 331 * W * m / 30)
        assert table["translate_y"][m] == pytest.approx(150 / 331 * H * m / 30)
        assert table["rotate"][m] == pytest.approx(30.0 * m / 30)
        for e in ("brightness", "color", "contrast", "sharpness"):
            assert table[e][m] == pytest.approx(0.9 * m / 30)
        assert table["solarize"][m] == pytest.approx(255.0 - 8.5 * m)
    # 8 - round(m / 7.5): bits 8, 7, 6, 5, 4 over bins 0-3, 4-11, 12-18, 19-26, 27-30
    bits = [8] * 4 + [7] * 8 + [6] * 7 + [5] * 8 + [4] * 4
    assert table["posterize"].tolist() == bits
    assert set(table) == set(OPS) and len(OPS) == 14


def test_sampled_values_follow_table_with_random_signs() -> None:
    g = torch.Generator().manual_seed(0)
    p = sample_randaugment_params(4000, height=H, width=W, num_ops=2, magnitude=9, generator=g)
    expected = {
        "identity": 0.0,
        "shear_x": 0.09,
        "shear_y": 0.09,
        "translate_x": float(int(150 / 331 * W * 9 / 30)),  # torchvision: int(magnitude)
        "translate_y": float(int(150 / 331 * H * 9 / 30)),
        "rotate": 9.0,
        "posterize": 7.0,
        "solarize": 255.0 - 8.5 * 9,
        "auto_contrast": 0.0,
        "equalize": 0.0,
    }
    for k, name in enumerate(OPS):
        v = p.values[p.ops == k]
        assert v.numel() > 400
        if name in ("brightness", "color", "contrast", "sharpness"):
            dev = (v - 1.0).abs()
            assert torch.allclose(dev, torch.full_like(dev, 0.27), atol=1e-6)
            assert bool((v > 1).any()) and bool((v < 1).any())  # both signs
        elif name in ("shear_x", "shear_y", "translate_x", "translate_y", "rotate"):
            assert torch.allclose(v.abs(), torch.full_like(v, expected[name]), atol=1e-6)
            frac_neg = float((v < 0).float().mean())
            assert 0.4 < frac_neg < 0.6
        else:
            assert torch.allclose(v, torch.full_like(v, expected[name]), atol=1e-6)


def test_op_choice_varies_per_sample_and_is_uniform() -> None:
    g = torch.Generator().manual_seed(1)
    p = sample_randaugment_params(14000, height=8, width=8, num_ops=1, generator=g)
    counts = torch.bincount(p.ops[0], minlength=14).double()
    chi2 = float(((counts - 1000.0) ** 2 / 1000.0).sum())
    assert chi2 < 40.0  # 13 dof: p(chi2 > 40) < 1e-4
    # within one small call the samples really get different ops
    x = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8, generator=g)
    q = sample_randaugment_params(16, height=12, width=12, generator=g)
    assert len(set(q.ops[0].tolist())) >= 5
    out = apply_randaugment(x, q)
    assert out.shape == x.shape


def test_random_magnitude_draws_bins_up_to_m() -> None:
    g = torch.Generator().manual_seed(2)
    p = sample_randaugment_params(
        3000, height=H, width=W, num_ops=1, magnitude=10, random_magnitude=True, generator=g
    )
    rot = p.values[p.ops == OPS.index("rotate")].abs()
    assert set(torch.round(rot).tolist()) == set(range(11))


# ---------------------------------------------------------------------------------------------
# reference: a naive per-sample loop over Pillow, as torchvision runs it on PIL images
# ---------------------------------------------------------------------------------------------


def _pil_op(name: str, v: float) -> Callable[[Image.Image], Image.Image]:
    aff = lambda d: lambda i: i.transform(i.size, Image.AFFINE, d, Image.NEAREST)  # noqa: E731
    ops: dict[str, Callable[[Image.Image], Image.Image]] = {
        "identity": lambda i: i,
        "shear_x": aff((1, v, 0, 0, 1, 0)),
        "shear_y": aff((1, 0, 0, v, 1, 0)),
        "translate_x": aff((1, 0, -v, 0, 1, 0)),
        "translate_y": aff((1, 0, 0, 0, 1, -v)),
        "rotate": lambda i: i.rotate(v, Image.NEAREST),
        "brightness": lambda i: ImageEnhance.Brightness(i).enhance(v),
        "color": lambda i: ImageEnhance.Color(i).enhance(v),
        "contrast": lambda i: ImageEnhance.Contrast(i).enhance(v),
        "sharpness": lambda i: ImageEnhance.Sharpness(i).enhance(v),
        "posterize": lambda i: ImageOps.posterize(i, int(v)),
        "solarize": lambda i: ImageOps.solarize(i, v),
        "auto_contrast": ImageOps.autocontrast,
        "equalize": ImageOps.equalize,
    }
    return ops[name]


@pytest.mark.parametrize("magnitude", [9, 17])
def test_apply_matches_pillow_loop(magnitude: int) -> None:
    b = 12
    imgs = [PHOTOS[k % 2] for k in range(b)]
    x = _to_tensor(imgs)
    g = torch.Generator().manual_seed(magnitude)
    p = sample_randaugment_params(b, height=H, width=W, num_ops=2, magnitude=magnitude, generator=g)
    ours = apply_randaugment(x, p)
    ref_imgs = []
    for i in range(b):
        img = imgs[i]
        for n in range(2):
            img = _pil_op(OPS[int(p.ops[n, i])], float(p.values[n, i]))(img)
        ref_imgs.append(img)
    ref = _to_tensor(ref_imgs)
    d = (ours.int() - ref.int()).abs()
    # tolerance of the geometric kernels (see test_functional.py): Pillow's 16.16 fixed point
    assert float(d.float().mean()) < 1.0
    assert float((d > 1).float().mean()) < 0.02
    same = [(d[i] == 0).all().item() for i in range(b)]
    assert sum(same) >= b // 2  # most samples are bit-identical


def test_apply_equals_kernels_per_sample() -> None:
    """The grouped apply equals a naive loop calling the kernels one sample at a time."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(20, 3, 10, 14, generator=g, dtype=torch.float64)
    p = sample_randaugment_params(20, height=10, width=14, num_ops=3, magnitude=20, generator=g)
    kernels: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "identity": lambda t, v: t,
        "auto_contrast": lambda t, v: AF.auto_contrast(t),
        "equalize": lambda t, v: AF.equalize(t),
        "solarize": lambda t, v: AF.solarize(t, v / 255.0),
    }
    for name in OPS:
        kernels.setdefault(name, getattr(AF, name))
    expected = []
    for i in range(20):
        t = x[i : i + 1]
        for n in range(3):
            t = kernels[OPS[int(p.ops[n, i])]](t, p.values[n, i : i + 1].double())
        expected.append(t)
    assert torch.equal(apply_randaugment(x, p), torch.cat(expected))


# ---------------------------------------------------------------------------------------------
# properties and contracts
# ---------------------------------------------------------------------------------------------


def test_magnitude_zero_is_identity_for_parametric_ops() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 255, (64, 3, 9, 9), dtype=torch.uint8, generator=g)  # max 254
    p = sample_randaugment_params(64, height=9, width=9, num_ops=2, magnitude=0, generator=g)
    out = apply_randaugment(x, p)
    histogram_ops = torch.tensor([OPS.index("auto_contrast"), OPS.index("equalize")])
    plain = ~torch.isin(p.ops, histogram_ops).any(dim=0)
    assert int(plain.sum()) > 20
    assert torch.equal(out[plain], x[plain])


@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.float32, torch.float64, torch.float16, torch.bfloat16]
)
def test_dtype_shape_kept_and_generator_determinism(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 256, (12, 3, 16, 20), dtype=torch.uint8, generator=g)
    if dtype != torch.uint8:
        x = (x.float() / 255).to(dtype)
    aug = RandAugment(num_ops=2, magnitude=15, fill=[0.0, 0.0, 0.0])
    before = torch.get_rng_state()
    a = aug(x, generator=torch.Generator().manual_seed(7))
    b = aug(x, generator=torch.Generator().manual_seed(7))
    c = aug(x, generator=torch.Generator().manual_seed(8))
    assert torch.equal(before, torch.get_rng_state())
    assert a.dtype == dtype and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    # params replay
    p = sample_randaugment_params(
        12, height=16, width=20, magnitude=15, generator=torch.Generator().manual_seed(7)
    )
    assert torch.equal(apply_randaugment(x, p), a)


def test_greyscale_and_empty_batch() -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8, generator=g)
    assert RandAugment()(x, generator=g).shape == x.shape
    assert RandAugment()(x[:0], generator=g).shape == (0, 1, 8, 8)
    assert torch.equal(RandAugment(num_ops=0)(x, generator=g), x)


def test_repr() -> None:
    text = repr(RandAugment(3, 12, 21, random_magnitude=True, fill=128.0, interpolation="bilinear"))
    for part in ("num_ops=3", "magnitude=12", "num_magnitude_bins=21", "fill=128.0", "bilinear"):
        assert part in text


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors() -> None:
    x = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"RandAugment: magnitude must be in \[0, 30\].*got 31"):
        RandAugment(magnitude=31)
    with pytest.raises(ValueError, match=r"RandAugment: magnitude must be in \[0, 9\]"):
        RandAugment(magnitude=-1, num_magnitude_bins=10)
    with pytest.raises(TypeError, match="RandAugment: magnitude must be an int"):
        RandAugment(magnitude=9.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RandAugment: num_ops must be >= 0"):
        RandAugment(num_ops=-1)
    with pytest.raises(ValueError, match="RandAugment: interpolation must be one of"):
        RandAugment(interpolation="bicubic")
    with pytest.raises(ValueError, match=r"RandAugment: x must have shape \(B, C, H, W\)"):
        RandAugment()(x[0])
    with pytest.raises(TypeError, match="RandAugment: x must be uint8"):
        RandAugment()(x.to(torch.int16))
    with pytest.raises(TypeError, match=r"RandAugment: generator must be a torch\.Generator"):
        RandAugment()(x, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="apply_randaugment: x must have 1 or 3 channels"):
        apply_randaugment(torch.zeros(2, 4, 8, 8), sample_randaugment_params(2, height=8, width=8))
    p = sample_randaugment_params(3, height=8, width=8)
    with pytest.raises(
        ValueError,
        match=r"apply_randaugment: params.ops and params.values must have shape \(N, 2\)",
    ):
        apply_randaugment(x, p)
    with pytest.raises(TypeError, match="apply_randaugment: params must be RandAugmentParams"):
        apply_randaugment(x, (p.ops, p.values))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_randaugment_params: batch must be >= 0"):
        sample_randaugment_params(-1, height=8, width=8)
    assert isinstance(p, RandAugmentParams)
