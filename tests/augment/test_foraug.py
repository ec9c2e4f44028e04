"""Tests of posneg.augment.foraug against tobna/ForAug at 07acfe0, ``fornet.py``
(``ForNet.__init__``: pruning, ``'same'`` fallback; ``ForNet.__getitem__``: size, crop, Bates
position, edge smoothing, paste)."""

from __future__ import annotations

import math

import pytest
import torch

from posneg.augment.foraug import (
    ForAug,
    apply_foraug,
    choose_backgrounds,
    original_prob,
    sample_foraug_params,
    threshold_mask,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _naive_params(
    rf: float,
    rb: float,
    a: float,
    u: float,
    fg: tuple[int, int],
    bg: tuple[int, int],
    jitter: float,
) -> tuple[int, int]:
    """``__getitem__``'s size formula in plain Python floats (mode 'range')."""
    lo, hi = min(rf, rb), max(rf, rb)
    scale = (lo * (1 - jitter) + u * (hi * (1 + jitter) - lo * (1 - jitter))) / a
    area = bg[0] * bg[1]
    return round(math.sqrt(area * scale * fg[0] / fg[1])), round(
        math.sqrt(area * scale * fg[1] / fg[0])
    )


def test_size_formula_matches_naive() -> None:
    rf, rb, a = (
        torch.tensor([0.1, 0.3, 0.05]),
        torch.tensor([0.4, 0.2, 0.05]),
        torch.tensor([0.5, 0.2, 0.3]),
    )
    p = sample_foraug_params(
        fg_size=(10, 6), bg_size=(40, 30), fg_ratio=rf, bg_ratio=rb, alpha_mean=a, generator=_gen(1)
    )
    u = torch.rand(3, generator=_gen(1), dtype=torch.float64)  # rho is the first draw
    for i in range(3):
        want = _naive_params(
            float(rf[i]), float(rb[i]), float(a[i]), float(u[i]), (10, 6), (40, 30), 0.3
        )
        assert tuple(p.sizes[i].tolist()) == want


@pytest.mark.parametrize("mode", ["max", "min", "mean"])
def test_point_size_modes(mode: str) -> None:
    rf, rb = torch.tensor([0.1]), torch.tensor([0.3])
    rho = {"max": 0.3, "min": 0.1, "mean": 0.2}[mode]
    p = sample_foraug_params(
        fg_size=(8, 8),
        bg_size=(64, 64),
        fg_ratio=rf,
        bg_ratio=rb,
        alpha_mean=torch.tensor([1.0]),
        jitter=0.0,
        size_mode=mode,
    )
    assert p.sizes[0].tolist() == [round(math.sqrt(4096 * rho))] * 2


def test_bates_zero_is_exact_centre_and_output_size_is_background() -> None:
    r = torch.full((3,), 0.1)
    p = sample_foraug_params(
        fg_size=(8, 8),
        bg_size=(33, 41),
        fg_ratio=r,
        bg_ratio=r,
        alpha_mean=torch.full((3,), 0.4),
        bates_n=0,
        generator=_gen(2),
    )
    th, tw = p.crops[:, 2], p.crops[:, 3]
    torch.testing.assert_close(p.offsets[:, 0], torch.round((33 - th) / 2).long())
    torch.testing.assert_close(p.offsets[:, 1], torch.round((41 - tw) / 2).long())
    x, m = apply_foraug(torch.rand(3, 3, 8, 8), torch.ones(3, 1, 8, 8), torch.rand(3, 3, 33, 41), p)
    assert x.shape == (3, 3, 33, 41) and m.shape == (3, 1, 33, 41)


def test_negative_bates_is_edge_biased_and_uniform_fills_range() -> None:
    r = torch.full((2000,), 0.05)
    kw = dict(
        fg_size=(4, 4),
        bg_size=(64, 64),
        fg_ratio=r,
        bg_ratio=r,
        alpha_mean=torch.ones(2000),
        jitter=0.0,
    )
    edge = sample_foraug_params(bates_n=-3, generator=_gen(3), **kw).offsets[:, 1].double()  # type: ignore[arg-type]
    centre = sample_foraug_params(bates_n=3, generator=_gen(3), **kw).offsets[:, 1].double()  # type: ignore[arg-type]
    mid = (64 - 14) / 2  # side = round(sqrt(4096 * 0.05)) = 14
    assert (edge - mid).abs().mean() > (centre - mid).abs().mean() + 5
    uni = sample_foraug_params(bates_n=1, generator=_gen(3), **kw).offsets[:, 1]  # type: ignore[arg-type]
    assert int(uni.min()) == 0 and int(uni.max()) == 50


def test_pasted_area_is_rho_without_crop_or_smoothing() -> None:
    # Full-alpha foreground: pasted area / A_bg = h w / (H W) ~= rho.
    rf = torch.tensor([0.1, 0.2])
    p = sample_foraug_params(
        fg_size=(8, 8),
        bg_size=(64, 64),
        fg_ratio=rf,
        bg_ratio=rf,
        alpha_mean=torch.ones(2),
        jitter=0.0,
        mask_sigma=0.0,
        generator=_gen(4),
    )
    _, m = apply_foraug(
        torch.rand(2, 1, 8, 8), torch.ones(2, 1, 8, 8), torch.zeros(2, 1, 64, 64), p
    )
    area = m.flatten(1).sum(1) / 4096
    torch.testing.assert_close(area, rf, atol=0.01, rtol=0.0)


def test_oversized_foreground_is_cropped_to_background() -> None:
    r = torch.tensor([0.9])
    p = sample_foraug_params(
        fg_size=(8, 8),
        bg_size=(16, 16),
        fg_ratio=r,
        bg_ratio=r,
        alpha_mean=torch.tensor([0.1]),
        generator=_gen(5),
    )
    assert int(p.sizes[0, 0]) > 16 and p.crops[0, 2:].tolist() == [16, 16]
    pc = sample_foraug_params(
        fg_size=(8, 8),
        bg_size=(16, 16),
        fg_ratio=r,
        bg_ratio=r,
        alpha_mean=torch.tensor([0.1]),
        jitter=0.0,
        center_crop=True,
    )
    gh = int(pc.sizes[0, 0])
    assert int(pc.crops[0, 0]) == round((gh - 16) / 2)


def test_edge_rehardening_map() -> None:
    # After the blur: a -> 2a - 1 above 128/255, else 0 (the code's p -> 2p - 255 if p > 128).
    one = torch.tensor([1.0])
    p = sample_foraug_params(
        fg_size=(48, 48),
        bg_size=(48, 48),
        fg_ratio=one,
        bg_ratio=one,
        alpha_mean=one,
        jitter=0.0,
        generator=_gen(6),
    )
    assert 0.4 <= float(p.sigmas[0]) <= 4.0
    alpha = torch.zeros(1, 1, 48, 48)
    alpha[..., 8:40, 8:40] = 1
    _, m = apply_foraug(torch.ones(1, 1, 48, 48), alpha, torch.zeros(1, 1, 48, 48), p)
    assert float(m[0, 0, 24, 24]) == pytest.approx(1.0, abs=1e-3)
    assert float(m[0, 0, 0, 0]) == 0.0
    # the first inside pixel blurs to Phi(0.5 / sigma) < 0.75, so 2a - 1 < 0.5: eroded edge
    assert float(m[0, 0, 8, 24]) < 0.5 and float(m[0, 0, 7, 24]) == 0.0
    assert float(m.sum()) < float(alpha.sum())


def test_paste_is_alpha_blend() -> None:
    p = sample_foraug_params(
        fg_size=(4, 4),
        bg_size=(4, 4),
        fg_ratio=torch.tensor([1.0]),
        bg_ratio=torch.tensor([1.0]),
        alpha_mean=torch.tensor([1.0]),
        jitter=0.0,
        mask_sigma=0.0,
    )
    fg, bg = torch.full((1, 1, 4, 4), 1.0), torch.full((1, 1, 4, 4), 0.2)
    alpha = torch.full((1, 1, 4, 4), 0.25)
    x, _ = apply_foraug(fg, alpha, bg, p)
    torch.testing.assert_close(x, torch.full((1, 1, 4, 4), 0.2 * 0.75 + 0.25))


def test_choose_backgrounds_pruning_same_original() -> None:
    bl = torch.tensor([0, 0, 1, 1, 2])
    br = torch.tensor([0.1, 0.9, 0.85, 0.8, 0.2])
    fl = torch.tensor([0, 1, 2] * 50)
    allb = choose_backgrounds(
        fg_labels=fl, bg_labels=bl, bg_ratios=br, mode="all", generator=_gen(7)
    )
    assert set(allb.tolist()) == {0, 4}  # r >= 0.8 pruned
    same = choose_backgrounds(
        fg_labels=fl, bg_labels=bl, bg_ratios=br, mode="same", generator=_gen(7)
    )
    assert (bl[same] == fl).all()
    assert set(same[fl == 1].tolist()) == {3}  # class 1 fully pruned: its last background
    orig = choose_backgrounds(
        fg_labels=fl[:3],
        bg_labels=bl,
        bg_ratios=br,
        mode="original",
        fg_index=torch.tensor([1, 2, 3]),
    )
    assert orig.tolist() == [1, 2, 3]  # own backgrounds, pruned or not
    unpruned = choose_backgrounds(
        fg_labels=fl, bg_labels=bl, bg_ratios=br, pruning_ratio=1.5, generator=_gen(7)
    )
    assert set(unpruned.tolist()) == {0, 1, 2, 3, 4}


def test_original_prob_schedules() -> None:
    assert original_prob("linear", 5, 10) == 0.5
    assert original_prob("cos", 0, 10) == 0.0
    assert original_prob("cos", 5, 10) == pytest.approx(1 - math.cos(math.pi / 4))
    assert original_prob(0.3, 3, 10) == 0.3


def test_revlinear_differs_from_code_deliberately() -> None:
    # Code: rand < (e - E) / E <= 0, never true. Here: the intended 1 - e/E.
    e, big_e = 2, 10
    assert (e - big_e) / big_e <= 0
    assert original_prob("revlinear", e, big_e) == pytest.approx(0.8)


def test_module_label_free_and_orig_prob_one_returns_originals() -> None:
    g = _gen(8)
    fg, bg, orig = (
        torch.rand(5, 3, 8, 8, generator=g),
        torch.rand(5, 3, 16, 16, generator=g),
        torch.rand(5, 3, 16, 16, generator=g),
    )
    alpha = threshold_mask(fg, threshold=0.5)
    x, m = ForAug(orig_prob=1.0)(fg, alpha, bg, original=orig, generator=g)
    torch.testing.assert_close(x, orig)
    assert float(m.abs().sum()) == 0
    mod = ForAug(bates_n=0)
    assert "bates_n=0" in repr(mod)
    a1, _ = mod(fg, alpha, bg, generator=_gen(9))
    a2, _ = mod(fg, alpha, bg, generator=_gen(9))
    torch.testing.assert_close(a1, a2)


def test_threshold_mask_digit_strokes() -> None:
    x = torch.zeros(1, 1, 4, 4)
    x[..., 1:3, 1:3] = 0.8
    x[..., 0, 0] = 0.1
    m = threshold_mask(x, threshold=0.3)
    assert m.sum() == 4 and m[0, 0, 1, 1] == 1 and m[0, 0, 0, 0] == 0


def test_errors_name_function_and_argument() -> None:
    r = torch.full((2,), 0.1)
    with pytest.raises(ValueError, match="sample_foraug_params: size_mode"):
        sample_foraug_params(
            fg_size=(2, 2), bg_size=(4, 4), fg_ratio=r, bg_ratio=r, alpha_mean=r, size_mode="x"
        )
    with pytest.raises(ValueError, match="sample_foraug_params: bg_ratio"):
        sample_foraug_params(
            fg_size=(2, 2), bg_size=(4, 4), fg_ratio=r, bg_ratio=torch.zeros(2), alpha_mean=r
        )
    with pytest.raises(ValueError, match="choose_backgrounds: mode"):
        choose_backgrounds(fg_labels=r.long(), bg_labels=r.long(), bg_ratios=r, mode="orig")
    with pytest.raises(ValueError, match="ForAug: jitter"):
        ForAug(jitter=-1.0)
    with pytest.raises(TypeError, match="apply_foraug: alpha"):
        p = sample_foraug_params(
            fg_size=(2, 2), bg_size=(4, 4), fg_ratio=r, bg_ratio=r, alpha_mean=r
        )
        apply_foraug(
            torch.rand(2, 1, 2, 2),
            torch.ones(2, 1, 2, 2, dtype=torch.int64),
            torch.rand(2, 1, 4, 4),
            p,
        )
