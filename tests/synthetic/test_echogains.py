"""EchoGAINS: the transforms against scikit-image, the validity rule, the keep mask, RePaint.

Official code ``GillesVanDeVyver/EchoGAINS`` at b16129a9: ``echogains/utils.py`` warps images
with ``skimage.transform.rotate`` / ``warp`` (order 1, constant 0) and label masks at order 0,
``get_repaint_mask`` is ``~cv2.dilate(image == 0, ones(k, k))``, and
``RePaint/guided_diffusion/scheduler.py`` holds ``get_schedule_jump_paper``; the transcriptions
below restate what that code computes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from skimage import transform as sk

from posneg.synthetic.echogains import (
    EchoGAINSAugment,
    EchoGAINSParams,
    apply_echogains_params,
    echogains_keep_mask,
    echogains_valid,
    repaint,
    repaint_schedule,
    sample_echogains_params,
)

F64 = torch.float64
H = W = 24


def _frame(n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A fan-shaped sector (apex at the top centre) with texture, and a blob label (1, 2)."""
    r = torch.arange(H, dtype=F64)[:, None]
    c = torch.arange(W, dtype=F64)[None, :]
    angle = torch.atan2(c - W // 2, r + 0.5)
    sector = (angle.abs() < 0.6) & (r < H - 2)
    tex = 0.4 + 0.3 * torch.sin(0.7 * r) * torch.cos(0.5 * c)
    img = torch.where(sector, tex, torch.zeros_like(tex))
    lab = torch.zeros(H, W, dtype=torch.long)
    lab[8:14, 9:15] = 1
    lab[14:17, 10:14] = 2
    return img.expand(n, H, W).clone(), lab.expand(n, H, W).clone()


def _params(
    n: int = 1,
    depth: int = 0,
    rot: float = 0.0,
    width: float = 1.0,
    shift: tuple[float, float] = (0, 0),
) -> EchoGAINSParams:
    return EchoGAINSParams(
        torch.full((n,), depth, dtype=torch.long),
        torch.full((n,), rot, dtype=F64),
        torch.full((n,), width, dtype=F64),
        torch.tensor([shift], dtype=F64).expand(n, 2),
    )


def _sk_labels(lab: np.ndarray, warp_one) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The official label-wise warp: each label's boolean mask at order 0, reassembled."""
    masks = [warp_one(lab == i).astype(bool) for i in range(1, 4)]
    out = np.zeros(masks[0].shape)
    for i, m in enumerate(masks, 1):
        out[m] = i
    return out


def test_identity_parameters_return_the_frame_unchanged() -> None:
    img, lab = _frame(3)
    got_img, got_lab = apply_echogains_params(img, lab, _params(3))
    assert torch.equal(got_img, img) and torch.equal(got_lab, lab)


def test_rotation_matches_skimage_about_the_apex() -> None:
    img, lab = _frame()
    got_img, got_lab = apply_echogains_params(img, lab, _params(rot=17.0))
    center = (W // 2, 0)
    ref = sk.rotate(img[0].numpy(), 17.0, center=center, order=1)
    ref_lab = _sk_labels(lab[0].numpy(), lambda m: sk.rotate(m, 17.0, center=center, order=0))
    assert np.abs(got_img[0].numpy() - ref)[1:-1, 1:-1].max() < 1e-6
    assert (got_lab[0].numpy() != ref_lab).mean() < 0.01


def test_translation_matches_skimage_warp() -> None:
    img, lab = _frame()
    got_img, got_lab = apply_echogains_params(img, lab, _params(shift=(3.0, -2.0)))
    tform = sk.AffineTransform(translation=(3.0, -2.0))
    ref = sk.warp(img[0].numpy(), tform, order=1)
    ref_lab = _sk_labels(lab[0].numpy(), lambda m: sk.warp(m, tform, order=0))
    assert np.abs(got_img[0].numpy() - ref).max() < 1e-6
    assert np.array_equal(got_lab[0].numpy(), ref_lab)


def test_sector_width_matches_the_official_resize_and_crop() -> None:
    """``get_repaint_input_sector_width`` for f > 1: resize the width to int(W f), crop the
    centre (skimage's resize at order 1; upsampling, so no anti-aliasing either way)."""
    img, lab = _frame()
    f = 1.4
    got_img, got_lab = apply_echogains_params(img, lab, _params(width=f))
    new_w = int(W * f)
    res = sk.resize(img[0].numpy(), (H, new_w), order=1, anti_aliasing=False)
    left = (new_w - W) // 2
    ref = res[:, left : left + W]
    assert np.abs(got_img[0].numpy() - ref)[:, 1:-1].max() < 1e-6
    res_lab = _sk_labels(lab[0].numpy(), lambda m: sk.resize(m, (H, new_w), order=0))
    assert np.array_equal(got_lab[0].numpy(), res_lab[:, left : left + W])


def test_narrower_sector_is_centre_padded() -> None:
    img, lab = _frame()
    got_img, _ = apply_echogains_params(img, lab, _params(width=0.5))
    pad = (W - W // 2) // 2
    assert bool((got_img[0, :, :pad] == 0).all()) and bool(
        (got_img[0, :, pad + W // 2 :] == 0).all()
    )


def test_depth_increase_matches_extend_then_resize() -> None:
    """``get_repaint_input_depth_increase``: add rows at the bottom, pad to a square, resize
    back (compared without skimage's anti-aliasing, which posneg omits)."""
    img, lab = _frame()
    delta = 8
    got_img, got_lab = apply_echogains_params(img, lab, _params(depth=delta))
    canvas = np.zeros((H + delta, H + delta))
    canvas[:H, delta // 2 : delta // 2 + W] = img[0].numpy()
    ref = sk.resize(canvas, (H, W), order=1, anti_aliasing=False, mode="constant")
    assert np.abs(got_img[0].numpy() - ref).max() < 1e-6
    lab_canvas = np.zeros_like(canvas, dtype=np.int64)
    lab_canvas[:H, delta // 2 : delta // 2 + W] = lab[0].numpy()
    ref_lab = _sk_labels(lab_canvas, lambda m: sk.resize(m, (H, W), order=0))
    assert (got_lab[0].numpy() != ref_lab).mean() < 0.02
    assert int(got_lab[0].ne(0).sum()) < int(lab[0].ne(0).sum())  # the heart shrinks


def test_label_values_are_preserved() -> None:
    img, lab = _frame(20)
    params = sample_echogains_params(
        20,
        depth_range=(0, 10),
        radius_range=(0, 5),
        prob=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    _, out = apply_echogains_params(img, lab, params)
    assert set(out.unique().tolist()) <= {0, 1, 2}


def test_validity_rejects_large_translations() -> None:
    img, lab = _frame(2)
    sector = img != 0
    _, small = apply_echogains_params(img[:1], lab[:1], _params(shift=(1.0, 1.0)))
    _, large = apply_echogains_params(img[:1], lab[:1], _params(shift=(10.0, 0.0)))
    assert echogains_valid(small, sector[:1]).tolist() == [True]
    assert echogains_valid(large, sector[:1]).tolist() == [False]
    empty = torch.zeros(1, H, W, dtype=torch.long)
    # a label moved entirely out of the frame passes, as in the official (0 < 0.5 * 0 is false)
    assert echogains_valid(empty, sector[:1]).tolist() == [True]


def _official_keep(image: np.ndarray, k: int) -> np.ndarray:
    """``get_repaint_mask``: ~dilate(image == 0) with cv2's k x k kernel anchored at k // 2."""
    missing = image == 0
    out = np.zeros_like(missing)
    h, w = missing.shape
    for y in range(h):
        for x in range(w):
            ys = slice(max(y - k // 2, 0), max(min(y + k - k // 2, h), 0))
            xs = slice(max(x - k // 2, 0), max(min(x + k - k // 2, w), 0))
            out[y, x] = missing[ys, xs].any()
    return ~out


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_keep_mask_matches_the_dilation_loop(k: int) -> None:
    img, _ = _frame()
    img[0, 5, 12] = 0.0  # an interior hole
    got = echogains_keep_mask(img, border=k)
    assert np.array_equal(got[0].numpy(), _official_keep(img[0].numpy(), k))


def _official_schedule_paper(
    t_T: int = 250, jump_length: int = 10, jump_n_sample: int = 10
) -> list[int]:
    """``get_schedule_jump_paper`` (scheduler.py), parametrised."""
    jumps = {}
    for j in range(0, t_T - jump_length, jump_length):
        jumps[j] = jump_n_sample - 1
    t = t_T
    ts = []
    while t >= 1:
        t = t - 1
        ts.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] = jumps[t] - 1
            for _ in range(jump_length):
                t = t + 1
                ts.append(t)
    ts.append(-1)
    return ts


@pytest.mark.parametrize(("t", "j", "n"), [(250, 10, 10), (20, 5, 3), (7, 10, 10), (5, 1, 1)])
def test_schedule_matches_the_official_and_moves_by_one(t: int, j: int, n: int) -> None:
    times = repaint_schedule(t, jump_length=j, jump_n_sample=n)
    assert times == _official_schedule_paper(t, j, n)
    assert all(abs(a - b) == 1 for a, b in itertools.pairwise(times))
    assert times[0] == t - 1 and times[-1] == -1


def _scheduler(steps: int = 10):  # type: ignore[no-untyped-def]
    from diffusers import DDPMScheduler

    s = DDPMScheduler(num_train_timesteps=100)
    s.set_timesteps(steps)
    return s


def test_repaint_with_full_keep_and_an_oracle_reproduces_the_known_image() -> None:
    """K = 1 and the exact noise prediction for the known image: x_0 is recovered at every step,
    so even without the final paste (the official behaviour) the output is the known image."""
    sched = _scheduler()
    acp = sched.alphas_cumprod.double()
    known = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=F64) * 2 - 1

    def oracle(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = acp[t][:, None, None, None]
        return (x - a.sqrt() * known) / (1 - a).sqrt()

    keep = torch.ones(2, 6, 6, dtype=torch.bool)
    out = repaint(
        oracle,
        sched,
        known,
        keep,
        jump_length=3,
        jump_n_sample=2,
        paste_known=False,
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.allclose(out, known, atol=1e-8)


def test_paste_known_differs_from_the_official_last_step() -> None:
    """With a poor denoiser (always 0) the official loop returns the model's sample on the known
    pixels; ``paste_known`` (posneg's default) returns the known pixels there exactly."""
    sched = _scheduler()
    known = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    keep = torch.zeros(2, 6, 6, dtype=torch.bool)
    keep[:, :3] = True

    def zero(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    g = torch.Generator().manual_seed(0)
    pasted = repaint(zero, sched, known, keep, generator=g, jump_length=3, jump_n_sample=2)
    g = torch.Generator().manual_seed(0)
    official = repaint(
        zero, sched, known, keep, generator=g, jump_length=3, jump_n_sample=2, paste_known=False
    )
    assert torch.equal(pasted[:, :, :3], known[:, :, :3])
    assert not torch.equal(official[:, :, :3], known[:, :, :3])
    assert torch.equal(pasted[:, :, 3:], official[:, :, 3:])


def test_repaint_ignores_the_known_image_where_keep_is_zero_and_is_seeded() -> None:
    sched = _scheduler()
    keep = torch.zeros(1, 6, 6, dtype=torch.bool)

    def den(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.1 * x

    a = repaint(
        den, sched, torch.zeros(1, 1, 6, 6), keep, generator=torch.Generator().manual_seed(5)
    )
    b = repaint(
        den, sched, torch.ones(1, 1, 6, 6), keep, generator=torch.Generator().manual_seed(5)
    )
    c = repaint(
        den, sched, torch.ones(1, 1, 6, 6), keep, generator=torch.Generator().manual_seed(6)
    )
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_masks_by_the_sector_and_keeps_the_original_when_nothing_is_valid() -> None:
    img, lab = _frame(4)
    sector = img != 0
    aug = EchoGAINSAugment(
        depth_range=(0, 6), rotation_range=(-20, 20), radius_range=(0, 4), border=2
    )
    out = aug(img, lab, generator=torch.Generator().manual_seed(0))
    assert bool((out.image[~sector] == 0).all())
    assert torch.equal(out.keep, echogains_keep_mask(out.image, border=2))
    assert bool(echogains_valid(out.label, sector).all())
    never = EchoGAINSAugment(
        depth_range=(0, 1),
        rotation_range=(0, 1),
        width_range=(1.0, 1.01),
        radius_range=(12, 13),
        prob=1.0,
        min_fraction=1.0,
        max_tries=3,
        border=2,
    )
    kept = never(img, lab, generator=torch.Generator().manual_seed(0))
    assert torch.equal(kept.image, img) and torch.equal(kept.label, lab)


def test_params_are_drawn_from_the_generator_only() -> None:
    state = torch.random.get_rng_state()
    a = sample_echogains_params(8, generator=torch.Generator().manual_seed(3))
    b = sample_echogains_params(8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    p = sample_echogains_params(4000, generator=torch.Generator().manual_seed(4))
    on = (p.depth != 0).double().mean()
    assert 0.45 < float(on) < 0.55  # prob 0.5 (randint may draw 0 while "on")
    assert float(p.rotation.min()) >= -30 and float(p.rotation.max()) <= 29


def test_errors() -> None:
    img, lab = _frame()
    with pytest.raises(ValueError, match="EchoGAINSAugment: depth_range must have low < high"):
        EchoGAINSAugment(depth_range=(5, 5))
    with pytest.raises(ValueError, match=r"EchoGAINSAugment: prob must be in \[0.0, 1.0\]"):
        EchoGAINSAugment(prob=1.5)
    with pytest.raises(TypeError, match="EchoGAINSAugment: label must be an integer tensor"):
        EchoGAINSAugment()(img, lab.float())
    with pytest.raises(ValueError, match="apply_echogains_params: image must have shape"):
        apply_echogains_params(img[0], lab[0], _params())
    with pytest.raises(ValueError, match="echogains_valid: label and sector must have one"):
        echogains_valid(lab, img[0] != 0)
    with pytest.raises(ValueError, match="echogains_keep_mask: border must be >= 1"):
        echogains_keep_mask(img, border=0)
    with pytest.raises(ValueError, match="repaint_schedule: jump_length must be >= 1"):
        repaint_schedule(10, jump_length=0)
    with pytest.raises(TypeError, match="repaint: scheduler must have alphas_cumprod"):
        repaint(lambda x, t: x, object(), img[:, None], img != 0)
    with pytest.raises(ValueError, match="repaint: keep must have shape"):
        repaint(lambda x, t: x, _scheduler(), img[:, None], torch.ones(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="repaint: denoiser must return a tensor"):
        repaint(lambda x, t: x[:, :, :2], _scheduler(), img[:, None].float(), img != 0)
