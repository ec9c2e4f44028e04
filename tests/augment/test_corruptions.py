"""MedMNIST-C corruptions: severity monotone on real photographs, formulas, Pillow references,
the per-sample augmentation mode, dtype/shape, generator, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance
from sklearn.datasets import load_sample_images

from posneg.augment.corruptions import CORRUPTIONS, MODALITIES, SEVERITIES, Corruptions, corrupt

H, W = 84, 112
PHOTOS = [Image.fromarray(a).resize((W, H), Image.BILINEAR) for a in load_sample_images().images]
X = torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in PHOTOS])


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.double() - b.double()) ** 2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(255.0**2 / mse)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_severity_monotone_psnr(name: str) -> None:
    """PSNR to the clean photo falls strictly from severity 1 to 5 (each photo, fixed seed)."""
    psnr = torch.stack(
        [
            _psnr(corrupt(X, name, s, generator=torch.Generator().manual_seed(0)), X)
            for s in range(1, 6)
        ]
    )  # (5, 2)
    assert bool((psnr[1:] < psnr[:-1]).all()), psnr.T.tolist()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_dtype_shape_kept(name: str, dtype: torch.dtype) -> None:
    x = X[:, :, :24, :32]
    if dtype != torch.uint8:
        x = (x.double() / 255).to(dtype)
    out = corrupt(x, name, 3, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == dtype
    if dtype != torch.uint8:
        assert float(out.float().min()) >= 0 and float(out.float().max()) <= 1


def test_gaussian_and_speckle_noise_formula() -> None:
    x = torch.full((2, 3, 64, 64), 0.5, dtype=torch.float64)
    for sev, c in enumerate(SEVERITIES["gaussian_noise"][:3], start=1):
        out = corrupt(x, "gaussian_noise", sev, generator=torch.Generator().manual_seed(2))
        assert float((out - x).mean()) == pytest.approx(0.0, abs=0.01)
        assert float((out - x).std()) == pytest.approx(float(c), rel=0.05)  # type: ignore[arg-type]
    out = corrupt(x, "speckle_noise", 1, generator=torch.Generator().manual_seed(2))
    assert float((out - x).std()) == pytest.approx(0.5 * 0.15, rel=0.05)


def test_shot_and_impulse_noise_formula() -> None:
    x = torch.full((2, 3, 64, 64), 0.5, dtype=torch.float64)
    out = corrupt(x, "shot_noise", 3, generator=torch.Generator().manual_seed(3))
    counts = out * 12.0  # Poisson(0.5 * 12) / 12
    assert float(counts.mean()) == pytest.approx(6.0, rel=0.03)
    assert float(counts.var()) == pytest.approx(6.0, rel=0.1)
    assert torch.allclose(counts, counts.round())
    out = corrupt(x, "impulse_noise", 4, generator=torch.Generator().manual_seed(3))
    hit = out != 0.5
    assert float(hit.double().mean()) == pytest.approx(0.17, abs=0.01)
    assert float((out[hit] == 1).double().mean()) == pytest.approx(0.5, abs=0.03)


def test_brightness_contrast_equal_pillow_and_jpeg_equals_pillow() -> None:
    for sev in (1, 5):
        out = corrupt(X, "brightness_down", sev)
        f = SEVERITIES["brightness_down"][sev - 1]
        ref = [np.array(ImageEnhance.Brightness(i).enhance(f)) for i in PHOTOS]  # type: ignore[arg-type]
        diff = (out.permute(0, 2, 3, 1).int() - torch.from_numpy(np.stack(ref)).int()).abs()
        assert int(diff.max()) <= 1  # float [0, 1] path, rounded back to uint8
    out = corrupt(X, "jpeg", 3)
    for k, img in enumerate(PHOTOS):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=15)
        ref = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1)
        assert torch.equal(out[k], ref)


def test_pixelate_close_to_pillow_box() -> None:
    out = corrupt(X, "pixelate", 3)  # factor 0.4
    h, w = round(H * 0.4), round(W * 0.4)
    ref = [
        np.array(i.resize((w, h), Image.BOX).resize((W, H), Image.BOX), dtype=np.int32)
        for i in PHOTOS
    ]
    diff = (out.permute(0, 2, 3, 1).int() - torch.from_numpy(np.stack(ref))).abs().float()
    assert float(diff.mean()) < 1.0 and float((diff > 2).float().mean()) < 0.02


def test_saturate_keeps_value_and_hue_order() -> None:
    x = X.double() / 255
    out = corrupt(x, "saturate", 3)
    torch.testing.assert_close(out.amax(1), x.amax(1))  # V kept
    assert torch.equal(out.argmax(1), x.argmax(1))
    grey = torch.full((1, 3, 4, 4), 0.3, dtype=torch.float64)
    assert torch.equal(corrupt(grey, "saturate", 5), grey)


def test_blurs_preserve_constant_images() -> None:
    flat = torch.full((2, 3, 40, 40), 0.4, dtype=torch.float64)
    for name in ("gaussian_blur", "defocus_blur", "motion_blur", "pixelate"):
        out = corrupt(flat, name, 5, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, flat)


# ---------------------------------------------------------------------------------------------
# augmentation mode
# ---------------------------------------------------------------------------------------------


def test_augmentation_mode_per_sample_identity_share_and_determinism() -> None:
    aug = Corruptions(modality="xray")
    n = len(MODALITIES["xray"])
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


def test_augmentation_mode_dtype_and_custom_list() -> None:
    aug = Corruptions(corruptions=["jpeg", "gaussian_noise", "motion_blur", "defocus_blur"])
    out = aug(X, generator=torch.Generator().manual_seed(6))
    assert out.dtype == torch.uint8 and out.shape == X.shape
    assert "corruptions=['jpeg'" in repr(aug)
    assert "modality='pathology'" in repr(Corruptions("pathology"))


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"corrupt: name must be one of .*; got 'fog'"):
        corrupt(X, "fog", 1)
    with pytest.raises(ValueError, match=r"corrupt: severity must be in 1\.\.5; got 6"):
        corrupt(X, "jpeg", 6)
    with pytest.raises(TypeError, match="corrupt: severity must be an int"):
        corrupt(X, "jpeg", 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"corrupt: x must have shape \(B, C, H, W\)"):
        corrupt(X[0], "jpeg", 1)
    with pytest.raises(TypeError, match="corrupt: x must be uint8"):
        corrupt(X.long(), "jpeg", 1)
    with pytest.raises(ValueError, match="Corruptions: modality must be one of"):
        Corruptions("mri")
    with pytest.raises(ValueError, match="Corruptions: corruptions must be one of"):
        Corruptions(corruptions=["gaussian_noise", "snow"])
    with pytest.raises(ValueError, match="Corruptions: corruptions must be a non-empty list"):
        Corruptions(corruptions=[])
