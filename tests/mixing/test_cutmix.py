"""CutMix (Yun et al., ICCV 2019): formula, properties, errors.

timm, torchvision and kornia do not load against the CPU torch of ``make test``; they are
compared in ``tests/peers/`` (``make test-peers``). Here the reference is a naive loop from the
paper's box rule and equation, in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg import _rng
from posneg.mixing import (
    CutMix,
    CutMixParams,
    MixedSegBatch,
    apply_cutmix,
    sample_cutmix_params,
)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8]


def _images(b: int, c: int, h: int, w: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    return torch.rand(b, c, h, w, generator=g, dtype=torch.float64).to(dtype)


def naive_boxes(b: int, h: int, w: int, alpha: float, per_sample: bool, seed: int) -> list:
    """The paper's box rule, one sample at a time, from the sampler's draws (same order)."""
    g = torch.Generator().manual_seed(seed)
    n = b if per_sample else 1
    lam = _rng.beta(alpha, alpha, (n,), generator=g)
    cy = _rng.randint(h, (n,), generator=g)
    cx = _rng.randint(w, (n,), generator=g)
    out = []
    for i in range(b):
        k = i if per_sample else 0
        ratio = math.sqrt(1.0 - float(lam[k]))
        ch, cw = int(h * ratio), int(w * ratio)
        y0, x0 = int(cy[k]) - ch // 2, int(cx[k]) - cw // 2
        out.append(
            (
                min(max(y0, 0), h),
                min(max(x0, 0), w),
                min(max(y0 + ch, 0), h),
                min(max(x0 + cw, 0), w),
            )
        )
    return out


def naive_cutmix(
    x: torch.Tensor, y: torch.Tensor, k: int, boxes: list, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's equation, one pixel at a time (numpy float64)."""
    b, _, h, w = x.shape
    src = x.to(torch.float64).numpy()
    out = src.copy()
    ys = np.zeros((b, k))
    for i in range(b):
        j = int(index[i])
        y0, x0, y1, x1 = boxes[i]
        for r in range(y0, y1):
            for c in range(x0, x1):
                out[i, :, r, c] = src[j, :, r, c]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
        ys[i, int(y[i])] += lam
        ys[i, int(y[j])] += 1 - lam
    return torch.from_numpy(out), torch.from_numpy(ys)


# ---------------------------------------------------------------------------------------------
# formula
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("size", [(9, 9), (7, 12)])
def test_boxes_follow_the_paper_rule(per_sample: bool, size: tuple[int, int]) -> None:
    h, w = size
    for seed in range(5):
        p = sample_cutmix_params(
            6, size, alpha=0.8, per_sample=per_sample, generator=torch.Generator().manual_seed(seed)
        )
        assert p.boxes.tolist() == [list(b) for b in naive_boxes(6, h, w, 0.8, per_sample, seed)]


@pytest.mark.parametrize("per_sample", [False, True])
def test_matches_naive_loop_float64(per_sample: bool) -> None:
    x = _images(5, 2, 8, 10, torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0])
    p = sample_cutmix_params(
        5, (8, 10), per_sample=per_sample, generator=torch.Generator().manual_seed(1)
    )
    out = apply_cutmix(x, y, p, num_classes=3)
    ex, ey = naive_cutmix(x, y, 3, p.boxes.tolist(), p.index)
    assert torch.equal(out.x, ex)
    torch.testing.assert_close(out.targets, ey, rtol=1e-7, atol=1e-7)


def test_label_smoothing_before_mixing() -> None:
    x = _images(4, 1, 6, 6, torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    p = sample_cutmix_params(4, (6, 6), per_sample=True, generator=torch.Generator().manual_seed(0))
    plain = apply_cutmix(x, y, p, num_classes=4).targets
    smooth = apply_cutmix(x, y, p, num_classes=4, label_smoothing=0.2).targets
    torch.testing.assert_close(smooth, plain * 0.8 + 0.2 / 4)


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 32), (17, 29), (1, 5)])
def test_box_area_equals_lambda_exactly(size: tuple[int, int]) -> None:
    h, w = size
    p = sample_cutmix_params(200, size, per_sample=True, generator=torch.Generator().manual_seed(0))
    area = (p.boxes[:, 2] - p.boxes[:, 0]) * (p.boxes[:, 3] - p.boxes[:, 1])
    # lam is the realised share after clipping: 1 - area / (H W), to float32 rounding, and
    # (1 - lam) H W recovers the box's pixel count exactly
    assert torch.equal(p.lam, (1 - area.double() / (h * w)).float())
    assert torch.equal(((1 - p.lam.double()) * h * w).round().long(), area)
    assert bool((p.boxes[:, :2] >= 0).all() and (p.boxes[:, 2] <= h).all())
    assert bool((p.boxes[:, 3] <= w).all() and (p.boxes[:, :2] <= p.boxes[:, 2:]).all())


def test_pasted_pixels_count_equals_area() -> None:
    """Each image holds its own index; the pixels that changed are exactly its box area."""
    b, h, w = 64, 13, 21
    p = sample_cutmix_params(b, (h, w), per_sample=True, generator=torch.Generator().manual_seed(2))
    marks = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 1, h, w).contiguous()
    out = apply_cutmix(marks, None, p).x
    changed = (out != marks).float().sum((1, 2, 3))
    area = ((1 - p.lam.double()) * h * w).round()
    self_paired = p.index == torch.arange(b)
    assert torch.equal(changed[~self_paired].double(), area[~self_paired])


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 7),
    c=st.integers(1, 3),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    dtype=st.sampled_from(DTYPES),
    per_sample=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_shapes_dtypes_targets_and_exact_copies(
    b: int, c: int, h: int, w: int, dtype: torch.dtype, per_sample: bool, seed: int
) -> None:
    x = _images(b, c, h, w, dtype, seed)
    y = torch.randint(0, 4, (b,), generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    out = CutMix(alpha=0.5, per_sample=per_sample, num_classes=4)(x, y, generator=g)
    p = sample_cutmix_params(
        b, (h, w), alpha=0.5, per_sample=per_sample, generator=torch.Generator().manual_seed(seed)
    )
    assert out.x.shape == x.shape and out.x.dtype == x.dtype
    assert out.targets is not None
    torch.testing.assert_close(out.targets.float().sum(1), torch.ones(b), atol=1e-2, rtol=0)
    ex, _ = naive_cutmix(x, y, 4, p.boxes.tolist(), p.index)
    assert torch.equal(out.x, ex.to(dtype))  # copies are exact for every dtype


def test_masks_mixed_with_the_same_geometry() -> None:
    b, h, w = 6, 11, 9
    g = torch.Generator().manual_seed(4)
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, h, w).contiguous()
    seg = torch.arange(b).view(b, 1, 1).expand(b, h, w).contiguous()
    soft = torch.nn.functional.one_hot(seg, b).movedim(-1, 1).float()
    out = CutMix(per_sample=True)(x, None, masks=seg, generator=g)
    assert isinstance(out, MixedSegBatch) and out.masks.dtype == seg.dtype
    assert torch.equal(out.masks, out.x[:, 0].long())
    g = torch.Generator().manual_seed(4)
    out_soft = CutMix(per_sample=True)(x, None, masks=soft, generator=g)
    assert torch.equal(out_soft.masks.argmax(1), out.masks)


def test_batch_of_one_and_odd_batches() -> None:
    x = _images(1, 3, 8, 8, torch.float32)
    out = CutMix(num_classes=2)(x, torch.tensor([1]), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.x, x)
    torch.testing.assert_close(out.targets, torch.tensor([[0.0, 1.0]]))
    p = sample_cutmix_params(7, (8, 8), generator=torch.Generator().manual_seed(0))
    assert sorted(p.index.tolist()) == list(range(7))


def test_replaying_params_reproduces_output() -> None:
    x = _images(5, 3, 10, 10, torch.uint8)
    seg = torch.randint(0, 3, (5, 10, 10))
    p = sample_cutmix_params(
        5, (10, 10), per_sample=True, generator=torch.Generator().manual_seed(8)
    )
    a = apply_cutmix(x, torch.arange(5) % 2, p, masks=seg, num_classes=2)
    b = apply_cutmix(x, torch.arange(5) % 2, p, masks=seg, num_classes=2)
    assert all(torch.equal(s, t) for s, t in zip(a, b, strict=True))


def test_generator_honoured_and_global_rng_untouched() -> None:
    x = _images(8, 3, 16, 16, torch.float32)
    mix = CutMix(per_sample=True)
    state = torch.get_rng_state()
    a = mix(x, None, generator=torch.Generator().manual_seed(1)).x
    b = mix(x, None, generator=torch.Generator().manual_seed(1)).x
    c = mix(x, None, generator=torch.Generator().manual_seed(2)).x
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_per_batch_draws_one_box() -> None:
    p = sample_cutmix_params(9, (20, 20), generator=torch.Generator().manual_seed(0))
    assert bool((p.boxes == p.boxes[0]).all())
    q = sample_cutmix_params(
        9, (20, 20), per_sample=True, generator=torch.Generator().manual_seed(0)
    )
    assert q.boxes.unique(dim=0).shape[0] > 1


@pytest.mark.parametrize("per_sample", [False, True])
def test_prob_is_the_official_per_batch_coin(per_sample: bool) -> None:
    """The official ``cutmix_prob`` (clovaai/CutMix-PyTorch ``train.py``, commit 2d8eb68): one
    ``r ~ U(0, 1)`` per batch, drawn first; the batch is mixed when ``r < prob`` (then the rest
    of the draws as without ``prob``), else returned unmixed with one-hot targets."""
    x = _images(6, 3, 10, 12, torch.float32, seed=3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    mod = CutMix(prob=0.5, per_sample=per_sample, num_classes=3)
    mixed = 0
    for seed in range(40):
        out = mod(x, y, generator=torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        r = float(_rng.uniform((1,), dtype=torch.float64, generator=g)[0])
        if r < 0.5:
            mixed += 1
            p = sample_cutmix_params(6, (10, 12), per_sample=per_sample, generator=g)
            want = apply_cutmix(x, y, p, num_classes=3)
            assert torch.equal(out.x, want.x) and torch.equal(out.targets, want.targets)
        else:
            assert torch.equal(out.x, x)
            assert torch.equal(out.targets, torch.eye(3)[y])
    assert 10 < mixed < 30


def test_prob_one_draws_no_coin_and_prob_zero_never_mixes() -> None:
    """``prob = 1`` (default) is CutMix as before, draw for draw; ``prob = 0`` never mixes (masks
    and label smoothing kept in their formats)."""
    x = _images(5, 3, 8, 8, torch.uint8, seed=1)
    y = torch.tensor([0, 1, 2, 1, 0])
    a = CutMix(prob=1.0, num_classes=3)(x, y, generator=torch.Generator().manual_seed(4))
    b = CutMix(num_classes=3)(x, y, generator=torch.Generator().manual_seed(4))
    p = sample_cutmix_params(5, (8, 8), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.x, b.x) and torch.equal(a.x, apply_cutmix(x, y, p, num_classes=3).x)
    seg = torch.randint(0, 4, (5, 8, 8), generator=torch.Generator().manual_seed(2))
    never = CutMix(prob=0.0, num_classes=3, label_smoothing=0.3)
    for seed in range(5):
        out = never(x, y, masks=seg, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(out.x, x) and torch.equal(out.masks, seg)
        torch.testing.assert_close(out.targets, torch.eye(3)[y] * 0.7 + 0.1)


def test_repr() -> None:
    text = repr(CutMix(0.5, per_sample=True, num_classes=4, label_smoothing=0.1))
    assert "CutMix(" in text and "alpha=0.5" in text and "per_sample=True" in text
    assert "prob=1.0" in text and "prob=0.25" in repr(CutMix(prob=0.25))


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors() -> None:
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(ValueError, match=r"CutMix: alpha must be > 0; got 0.0"):
        CutMix(alpha=0.0)
    with pytest.raises(ValueError, match=r"sample_cutmix_params: alpha must be > 0"):
        sample_cutmix_params(4, (8, 8), alpha=-0.5)
    with pytest.raises(ValueError, match=r"CutMix: prob must be in \[0.0, 1.0\]; got 1.5"):
        CutMix(prob=1.5)
    with pytest.raises(TypeError, match=r"CutMix: prob must be a real number"):
        CutMix(prob="0.5")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError,
        match=r"CutMix: x must be a 3-D or 4-D tensor \(B, C, H, W\) or \(B, C, L\); "
        r"got shape \(8, 8\)",
    ):
        CutMix()(x[0, 0], None)
    with pytest.raises(ValueError, match=r"apply_cutmix: x must be a 3-D or 4-D tensor"):
        apply_cutmix(torch.rand(4, 3, 8, 8, 8), None, sample_cutmix_params(4, (8, 8)))
    with pytest.raises(
        ValueError, match=r"targets given as class ids must have shape \(B,\) with B=4"
    ):
        CutMix(num_classes=3)(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"num_classes is required when targets are class ids"):
        CutMix()(x, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"masks must have shape \(4, 8, 8\)"):
        CutMix()(x, None, masks=torch.zeros(4, 8, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"params were drawn for spatial size \(8, 9\)"):
        apply_cutmix(x, None, sample_cutmix_params(4, (8, 9)))
    with pytest.raises(ValueError, match=r"params.boxes must satisfy 0 <= y0 <= y1 <= 8"):
        apply_cutmix(
            x, None, CutMixParams(torch.arange(4), torch.tensor([[0, 0, 9, 1]] * 4), (8, 8))
        )
    with pytest.raises(ValueError, match=r"params.boxes must have shape \(4, 4\)"):
        apply_cutmix(
            x, None, CutMixParams(torch.arange(4), torch.zeros(4, 3, dtype=torch.long), (8, 8))
        )
    with pytest.raises(ValueError, match=r"size must have 1 or 2 entries; got \(8, 8, 8\)"):
        sample_cutmix_params(4, (8, 8, 8))
    with pytest.raises(TypeError, match=r"params must be CutMixParams"):
        apply_cutmix(x, None, object())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# sequences (B, C, L): the 1-D form
# ---------------------------------------------------------------------------------------------


def _sequences(b: int, c: int, n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    return _images(b, c, 1, n, dtype, seed)[:, :, 0].contiguous()


def naive_segments(b: int, n: int, alpha: float, per_sample: bool, seed: int) -> list:
    """The 1-D rule, one sample at a time, from the sampler's draws (order: lambda, centre):
    a cut of ``int(L (1 - lam))`` (the official ``np.int(W * cut_rat)`` with the area share
    ``1 - lam`` as the ratio, as a segment's length share is its area share) around the centre,
    clipped to the sequence."""
    g = torch.Generator().manual_seed(seed)
    k = b if per_sample else 1
    lam = _rng.beta(alpha, alpha, (k,), generator=g)
    cx = _rng.randint(n, (k,), generator=g)
    out = []
    for i in range(b):
        j = i if per_sample else 0
        cut = int(n * (1.0 - float(lam[j])))
        x0 = int(cx[j]) - cut // 2
        out.append((min(max(x0, 0), n), min(max(x0 + cut, 0), n)))
    return out


def naive_cutmix_1d(
    x: torch.Tensor, y: torch.Tensor, k: int, segments: list, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's equation on sequences, one time step at a time (numpy float64)."""
    b, _, n = x.shape
    src = x.to(torch.float64).numpy()
    out = src.copy()
    ys = np.zeros((b, k))
    for i in range(b):
        j = int(index[i])
        x0, x1 = segments[i]
        for t in range(x0, x1):
            out[i, :, t] = src[j, :, t]
        lam = 1.0 - (x1 - x0) / n
        ys[i, int(y[i])] += lam
        ys[i, int(y[j])] += 1 - lam
    return torch.from_numpy(out), torch.from_numpy(ys)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("n", [40, 7, 1])
def test_sequence_segments_follow_the_1d_rule(per_sample: bool, n: int) -> None:
    for seed in range(5):
        p = sample_cutmix_params(
            6, (n,), alpha=0.8, per_sample=per_sample, generator=torch.Generator().manual_seed(seed)
        )
        assert p.size == (n,) and p.boxes.shape == (6, 2)
        assert p.boxes.tolist() == [list(s) for s in naive_segments(6, n, 0.8, per_sample, seed)]
    # an int size means (L,)
    a = sample_cutmix_params(6, n, generator=torch.Generator().manual_seed(3))
    b = sample_cutmix_params(6, (n,), generator=torch.Generator().manual_seed(3))
    assert a.size == b.size and torch.equal(a.boxes, b.boxes) and torch.equal(a.index, b.index)


@pytest.mark.parametrize("per_sample", [False, True])
def test_sequence_matches_naive_loop_float64(per_sample: bool) -> None:
    x = _sequences(6, 2, 40, torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    p = sample_cutmix_params(
        6, (40,), per_sample=per_sample, generator=torch.Generator().manual_seed(1)
    )
    out = apply_cutmix(x, y, p, num_classes=3)
    ex, ey = naive_cutmix_1d(x, y, 3, p.boxes.tolist(), p.index)
    assert torch.equal(out.x, ex)
    torch.testing.assert_close(out.targets, ey, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("n", [40, 13, 1])
def test_sequence_lambda_is_the_realised_length_share_exactly(n: int) -> None:
    p = sample_cutmix_params(300, (n,), per_sample=True, generator=torch.Generator().manual_seed(0))
    length = p.boxes[:, 1] - p.boxes[:, 0]
    assert bool((p.boxes[:, 0] >= 0).all() and (p.boxes[:, 1] <= n).all() and (length >= 0).all())
    assert torch.equal(p.lam, (1 - length.double() / n).float())
    assert torch.equal(((1 - p.lam.double()) * n).round().long(), length)


def test_sequence_clipping_is_corrected_unclipped_segments_have_the_drawn_length() -> None:
    """Segments away from the ends keep ``int(L (1 - lam_drawn))`` steps; clipped ones are
    shorter and their ``lam`` is raised to the share actually kept (never the drawn one)."""
    n, b, seed = 40, 400, 5
    g = torch.Generator().manual_seed(seed)
    drawn = _rng.beta(1.0, 1.0, (b,), generator=g)
    p = sample_cutmix_params(
        b, (n,), per_sample=True, generator=torch.Generator().manual_seed(seed)
    )
    cut = torch.floor(n * (1 - drawn.double())).long()
    length = p.boxes[:, 1] - p.boxes[:, 0]
    assert bool((length <= cut).all())
    clipped = length < cut
    assert 0 < int(clipped.sum()) < b
    assert bool((p.lam[clipped].double() > 1 - cut[clipped].double() / n).all())


def test_sequence_pasted_steps_count_equals_length() -> None:
    b, n = 64, 33
    p = sample_cutmix_params(b, (n,), per_sample=True, generator=torch.Generator().manual_seed(2))
    marks = torch.arange(b, dtype=torch.float32).view(b, 1, 1).expand(b, 2, n).contiguous()
    out = apply_cutmix(marks, None, p).x
    changed = (out != marks).float().sum((1, 2)) / 2
    self_paired = p.index == torch.arange(b)
    want = ((1 - p.lam.double()) * n).round()
    assert torch.equal(changed[~self_paired].double(), want[~self_paired])


def test_sequence_limit_cases() -> None:
    x = _sequences(4, 3, 10, torch.float32, seed=1)
    y = torch.tensor([0, 1, 2, 3])
    idx = torch.tensor([1, 2, 3, 0])
    # lam = 1: an empty segment keeps x and one-hot targets
    keep = apply_cutmix(
        x, y, CutMixParams(idx, torch.zeros(4, 2, dtype=torch.long), (10,)), num_classes=4
    )
    assert torch.equal(keep.x, x) and torch.equal(keep.targets, torch.eye(4)[y])
    # lam = 0: the whole sequence is the partner's, and so is the label
    full = CutMixParams(idx, torch.tensor([[0, 10]] * 4), (10,))
    assert torch.equal(full.lam, torch.zeros(4))
    whole = apply_cutmix(x, y, full, num_classes=4)
    assert torch.equal(whole.x, x[idx]) and torch.equal(whole.targets, torch.eye(4)[y[idx]])
    # B = 1: its own partner, unchanged; prob = 0: never mixed
    one = CutMix(num_classes=4)(x[:1], y[:1], generator=torch.Generator().manual_seed(0))
    assert torch.equal(one.x, x[:1]) and torch.equal(one.targets, torch.eye(4)[y[:1]])
    never = CutMix(prob=0.0, num_classes=4)(x, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(never.x, x) and torch.equal(never.targets, torch.eye(4)[y])
    # alpha -> 0: lambda mostly near 0 or 1: the segment empty or long (clipped: >= L / 2)
    p = sample_cutmix_params(
        200, (10,), alpha=0.01, per_sample=True, generator=torch.Generator().manual_seed(0)
    )
    cut_drawn = p.boxes[:, 1] - p.boxes[:, 0]
    assert float(((cut_drawn == 0) | (cut_drawn >= 5)).float().mean()) > 0.9


def test_sequence_module_replays_the_params() -> None:
    x = _sequences(7, 2, 40, torch.uint8, seed=4)
    y = torch.arange(7) % 3
    seg = torch.randint(0, 3, (7, 40), generator=torch.Generator().manual_seed(1))
    for per_sample in (False, True):
        out = CutMix(0.7, per_sample=per_sample, num_classes=3)(
            x, y, masks=seg, generator=torch.Generator().manual_seed(9)
        )
        p = sample_cutmix_params(
            7, (40,), alpha=0.7, per_sample=per_sample, generator=torch.Generator().manual_seed(9)
        )
        want = apply_cutmix(x, y, p, masks=seg, num_classes=3)
        again = apply_cutmix(x, y, p, masks=seg, num_classes=3)
        assert all(torch.equal(s, t) for s, t in zip(out, want, strict=True))
        assert all(torch.equal(s, t) for s, t in zip(want, again, strict=True))


def test_sequence_masks_mixed_with_the_same_segment() -> None:
    b, n = 6, 25
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1).expand(b, 3, n).contiguous()
    seg = torch.arange(b).view(b, 1).expand(b, n).contiguous()
    soft = torch.nn.functional.one_hot(seg, b).movedim(-1, 1).float()
    out = CutMix(per_sample=True)(x, None, masks=seg, generator=torch.Generator().manual_seed(4))
    assert isinstance(out, MixedSegBatch) and out.masks.shape == (b, n)
    assert torch.equal(out.masks, out.x[:, 0].long())
    out_soft = CutMix(per_sample=True)(
        x, None, masks=soft, generator=torch.Generator().manual_seed(4)
    )
    assert out_soft.masks.shape == (b, b, n) and torch.equal(out_soft.masks.argmax(1), out.masks)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 7),
    c=st.integers(1, 3),
    n=st.integers(1, 30),
    dtype=st.sampled_from(DTYPES),
    per_sample=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_sequence_shapes_dtypes_and_exact_copies(
    b: int, c: int, n: int, dtype: torch.dtype, per_sample: bool, seed: int
) -> None:
    x = _sequences(b, c, n, dtype, seed)
    y = torch.randint(0, 4, (b,), generator=torch.Generator().manual_seed(seed))
    out = CutMix(alpha=0.5, per_sample=per_sample, num_classes=4)(
        x, y, generator=torch.Generator().manual_seed(seed)
    )
    p = sample_cutmix_params(
        b, n, alpha=0.5, per_sample=per_sample, generator=torch.Generator().manual_seed(seed)
    )
    assert out.x.shape == x.shape and out.x.dtype == x.dtype and out.targets is not None
    torch.testing.assert_close(out.targets.float().sum(1), torch.ones(b), atol=1e-2, rtol=0)
    ex, _ = naive_cutmix_1d(x, y, 4, p.boxes.tolist(), p.index)
    assert torch.equal(out.x, ex.to(dtype))


def test_sequence_errors() -> None:
    x = torch.rand(4, 2, 8)
    with pytest.raises(
        ValueError,
        match=r"apply_cutmix: params were drawn for spatial size \(8, 8\) but x has \(8,\)",
    ):
        apply_cutmix(x, None, sample_cutmix_params(4, (8, 8)))
    with pytest.raises(
        ValueError,
        match=r"apply_cutmix: params were drawn for spatial size \(8,\) but x has \(8, 8\)",
    ):
        apply_cutmix(torch.rand(4, 2, 8, 8), None, sample_cutmix_params(4, 8))
    with pytest.raises(
        ValueError, match=r"apply_cutmix: params.boxes of a sequence must have shape \(4, 2\)"
    ):
        apply_cutmix(
            x, None, CutMixParams(torch.arange(4), torch.zeros(4, 4, dtype=torch.long), (8,))
        )
    with pytest.raises(
        ValueError, match=r"apply_cutmix: params.boxes must satisfy 0 <= x0 <= x1 <= 8"
    ):
        apply_cutmix(x, None, CutMixParams(torch.arange(4), torch.tensor([[3, 9]] * 4), (8,)))
    with pytest.raises(ValueError, match=r"params.boxes must satisfy 0 <= x0 <= x1 <= 8"):
        apply_cutmix(x, None, CutMixParams(torch.arange(4), torch.tensor([[5, 2]] * 4), (8,)))
    with pytest.raises(TypeError, match=r"apply_cutmix: params.boxes must be an integer tensor"):
        apply_cutmix(x, None, CutMixParams(torch.arange(4), torch.zeros(4, 2), (8,)))
    with pytest.raises(
        ValueError, match=r"apply_cutmix: masks must have shape \(4, 8\) \(class ids\)"
    ):
        CutMix()(x, None, masks=torch.zeros(4, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"sample_cutmix_params: size entries must be >= 1"):
        sample_cutmix_params(4, (0,))
    with pytest.raises(ValueError, match=r"CutMix: x must be a 3-D or 4-D tensor"):
        CutMix()(torch.rand(4, 8), None)
