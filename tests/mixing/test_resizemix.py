"""ResizeMix (Qin et al., arXiv 2012.11101): reference, formula, properties, errors.

The reference for the pasted patch is torch's own ``F.interpolate`` (bilinear,
``align_corners=False``, as mmpretrain and OpenMixup call it; nearest-exact for class maps),
applied one sample at a time; labels follow the paper's pasted-area rule.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg import _rng
from posneg.mixing import (
    MixedSegBatch,
    ResizeMix,
    ResizeMixParams,
    apply_resizemix,
    sample_resizemix_params,
)


def _images(b: int, c: int, h: int, w: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    return torch.rand(b, c, h, w, generator=g, dtype=torch.float64).to(dtype)


def naive_resizemix(
    x: torch.Tensor, y: torch.Tensor, k: int, p: ResizeMixParams, mode: str = "bilinear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample at a time: interpolate the whole partner into its box; area-weighted labels."""
    b, _, h, w = x.shape
    out = x.clone()
    ys = []
    for i in range(b):
        j = int(p.index[i])
        y0, x0, y1, x1 = (int(v) for v in p.boxes[i])
        kw = {"align_corners": False} if mode == "bilinear" else {}
        patch = F.interpolate(x[j : j + 1], size=(y1 - y0, x1 - x0), mode=mode, **kw)[0]
        out[i, :, y0:y1, x0:x1] = patch
        src_share = (y1 - y0) * (x1 - x0) / (h * w)  # the paper's lambda, tau^2 realised
        t = torch.zeros(k, dtype=torch.float64)
        t[int(y[i])] += 1 - src_share
        t[int(y[j])] += src_share
        ys.append(t)
    return out, torch.stack(ys)


# ---------------------------------------------------------------------------------------------
# reference and formula
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_pasted_patch_equals_interpolate(per_sample: bool, dtype: torch.dtype, tol: float) -> None:
    x = _images(6, 3, 23, 31, dtype)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    for seed in range(4):
        p = sample_resizemix_params(
            6, (23, 31), per_sample=per_sample, generator=torch.Generator().manual_seed(seed)
        )
        out = apply_resizemix(x, y, p, num_classes=4)
        ex, ey = naive_resizemix(x, y, 4, p)
        torch.testing.assert_close(out.x, ex, atol=tol, rtol=0)
        torch.testing.assert_close(out.targets, ey.to(dtype), atol=1e-6, rtol=0)


def test_class_maps_resized_nearest_exact() -> None:
    x = _images(8, 1, 20, 24, torch.float32)
    seg = torch.randint(0, 7, (8, 20, 24), generator=torch.Generator().manual_seed(1))
    for seed in range(5):
        p = sample_resizemix_params(
            8, (20, 24), per_sample=True, generator=torch.Generator().manual_seed(seed)
        )
        out = apply_resizemix(x, None, p, masks=seg)
        ex, _ = naive_resizemix(
            seg[:, None].float(), torch.zeros(8, dtype=torch.long), 1, p, mode="nearest-exact"
        )
        assert torch.equal(out.masks, ex[:, 0].long())


def test_uint8_is_the_rounded_float_result() -> None:
    x = _images(5, 3, 16, 16, torch.uint8)
    p = sample_resizemix_params(
        5, (16, 16), per_sample=True, generator=torch.Generator().manual_seed(0)
    )
    out = apply_resizemix(x, None, p).x
    ex, _ = naive_resizemix(x.double(), torch.zeros(5, dtype=torch.long), 1, p)
    assert out.dtype == torch.uint8
    assert int((out.double() - ex.round()).abs().max()) <= 1  # float32 vs float64 at .5 ties


def test_sampler_follows_the_paper() -> None:
    """tau ~ U(low, high), size round(tau H) x round(tau W), corner inside: same draws replayed."""
    h, w, b = 50, 40, 20
    p = sample_resizemix_params(
        b, (h, w), scale=(0.2, 0.7), per_sample=True, generator=torch.Generator().manual_seed(3)
    )
    g = torch.Generator().manual_seed(3)
    tau = _rng.uniform((b,), low=0.2, high=0.7, dtype=torch.float64, generator=g)
    uy = _rng.uniform((b,), dtype=torch.float64, generator=g)
    ux = _rng.uniform((b,), dtype=torch.float64, generator=g)
    for i in range(b):
        ph = min(max(int(float(tau[i]) * h + 0.5), 1), h)
        pw = min(max(int(float(tau[i]) * w + 0.5), 1), w)
        y0 = min(int(float(uy[i]) * (h - ph + 1)), h - ph)
        x0 = min(int(float(ux[i]) * (w - pw + 1)), w - pw)
        assert p.boxes[i].tolist() == [y0, x0, y0 + ph, x0 + pw]


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------


def test_label_weight_is_the_pasted_area_and_tau_range() -> None:
    h = w = 100
    p = sample_resizemix_params(
        500, (h, w), per_sample=True, generator=torch.Generator().manual_seed(0)
    )
    area = (p.boxes[:, 2] - p.boxes[:, 0]) * (p.boxes[:, 3] - p.boxes[:, 1])
    assert torch.equal(p.lam, (1 - area.double() / (h * w)).float())
    src_share = 1 - p.lam.double()  # the paper's lambda = tau^2, realised
    assert float(src_share.min()) >= 0.01 - 1e-7 and float(src_share.max()) <= 0.64 + 1e-7
    assert bool((p.boxes[:, :2] >= 0).all() and (p.boxes[:, 2] <= h).all())
    assert bool((p.boxes[:, 3] <= w).all())


def test_outside_the_box_is_untouched() -> None:
    x = _images(6, 3, 18, 18, torch.float32)
    p = sample_resizemix_params(
        6, (18, 18), per_sample=True, generator=torch.Generator().manual_seed(2)
    )
    out = apply_resizemix(x, None, p).x
    for i in range(6):
        y0, x0, y1, x1 = p.boxes[i].tolist()
        inside = torch.zeros(18, 18, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert torch.equal(out[i][:, ~inside], x[i][:, ~inside])


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 6),
    c=st.integers(1, 3),
    h=st.integers(1, 14),
    w=st.integers(1, 14),
    dtype=st.sampled_from(
        [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8]
    ),
    per_sample=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_shapes_dtypes_and_targets(
    b: int, c: int, h: int, w: int, dtype: torch.dtype, per_sample: bool, seed: int
) -> None:
    x = _images(b, c, h, w, dtype, seed)
    y = torch.randint(0, 3, (b,), generator=torch.Generator().manual_seed(seed))
    seg = torch.randint(0, 3, (b, h, w), generator=torch.Generator().manual_seed(seed))
    out = ResizeMix(per_sample=per_sample, num_classes=3)(
        x, y, masks=seg, generator=torch.Generator().manual_seed(seed)
    )
    assert out.x.shape == x.shape and out.x.dtype == x.dtype
    assert out.masks.shape == seg.shape and out.masks.dtype == seg.dtype
    assert out.targets is not None
    torch.testing.assert_close(out.targets.float().sum(1), torch.ones(b), atol=1e-2, rtol=0)


def test_masks_and_images_share_the_geometry() -> None:
    """Constant images i and class maps i: a pasted constant image stays constant."""
    b, h, w = 7, 21, 19
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 2, h, w).contiguous()
    seg = torch.arange(b).view(b, 1, 1).expand(b, h, w).contiguous()
    out = ResizeMix(per_sample=True)(x, None, masks=seg, generator=torch.Generator().manual_seed(5))
    assert isinstance(out, MixedSegBatch)
    assert torch.equal(out.masks, out.x[:, 0].round().long())
    soft = torch.nn.functional.one_hot(seg, b).movedim(-1, 1).float()
    out_soft = ResizeMix(per_sample=True)(
        x, None, masks=soft, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(out_soft.masks.argmax(1), out.masks)


def test_batch_of_one_replay_and_rng() -> None:
    x = _images(1, 3, 12, 12, torch.float32)
    p = sample_resizemix_params(1, (12, 12), generator=torch.Generator().manual_seed(0))
    assert p.index.tolist() == [0]
    out = apply_resizemix(x, torch.tensor([1]), p, num_classes=2)
    torch.testing.assert_close(out.targets, torch.tensor([[0.0, 1.0]]))  # both labels are y_0
    x = _images(5, 3, 12, 12, torch.float32)
    p = sample_resizemix_params(
        5, (12, 12), per_sample=True, generator=torch.Generator().manual_seed(0)
    )
    a, b = apply_resizemix(x, None, p), apply_resizemix(x, None, p)
    assert torch.equal(a.x, b.x)
    state = torch.get_rng_state()
    ResizeMix()(x, None, generator=torch.Generator().manual_seed(1))
    assert torch.equal(state, torch.get_rng_state())


def test_repr_and_gradients() -> None:
    assert "scale=(0.2, 0.5)" in repr(ResizeMix((0.2, 0.5), per_sample=True))
    x = _images(2, 1, 5, 5, torch.float64).requires_grad_(True)
    p = sample_resizemix_params(
        2, (5, 5), scale=(0.5, 0.8), per_sample=True, generator=torch.Generator().manual_seed(0)
    )
    assert torch.autograd.gradcheck(lambda t: apply_resizemix(t, None, p).x, (x,), fast_mode=True)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors() -> None:
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(
        ValueError, match=r"ResizeMix: scale must satisfy 0 < low <= high <= 1; got \(0.5, 0.2\)"
    ):
        ResizeMix((0.5, 0.2))
    with pytest.raises(
        ValueError, match=r"scale must satisfy 0 < low <= high <= 1; got \(0.0, 0.5\)"
    ):
        sample_resizemix_params(4, (8, 8), scale=(0.0, 0.5))
    with pytest.raises(TypeError, match=r"scale must be a pair \(low, high\)"):
        ResizeMix(0.5)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError,
        match=r"ResizeMix: x must be a 3-D or 4-D tensor \(B, C, H, W\) or \(B, C, L\); "
        r"got shape \(4, 8\)",
    ):
        ResizeMix()(torch.rand(4, 8), None)
    with pytest.raises(
        ValueError, match=r"targets given as class ids must have shape \(B,\) with B=4"
    ):
        ResizeMix(num_classes=2)(x, torch.tensor([0, 1, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"num_classes is required"):
        ResizeMix()(x, torch.tensor([0, 1, 1, 0]))
    with pytest.raises(ValueError, match=r"masks must have shape \(4, 8, 8\)"):
        ResizeMix()(x, None, masks=torch.zeros(4, 9, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"params were drawn for spatial size \(9, 8\)"):
        apply_resizemix(x, None, sample_resizemix_params(4, (9, 8)))
    with pytest.raises(TypeError, match=r"params must be ResizeMixParams"):
        apply_resizemix(x, None, sample_resizemix_params(4, (8, 8)).boxes)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# sequences (B, C, L): the 1-D form
# ---------------------------------------------------------------------------------------------


def _sequences(b: int, c: int, n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    return _images(b, c, 1, n, dtype, seed)[:, :, 0].contiguous()


def naive_resizemix_1d(
    x: torch.Tensor, y: torch.Tensor | None, k: int, p: ResizeMixParams, mode: str = "linear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample at a time: ``F.interpolate`` (linear, align_corners=False) of the whole
    partner into its segment; labels by the pasted share of the length."""
    b, n = x.shape[0], x.shape[-1]
    out = x.clone()
    ys = []
    for i in range(b):
        j = int(p.index[i])
        x0, x1 = (int(v) for v in p.boxes[i])
        kw = {"align_corners": False} if mode == "linear" else {}
        src = x[j : j + 1] if x.dim() == 3 else x[j : j + 1, None].double()
        patch = F.interpolate(src, size=x1 - x0, mode=mode, **kw)[0]
        out[i, ..., x0:x1] = patch if x.dim() == 3 else patch[0].to(x.dtype)
        share = (x1 - x0) / n
        t = torch.zeros(k, dtype=torch.float64)
        if y is not None:
            t[int(y[i])] += 1 - share
            t[int(y[j])] += share
        ys.append(t)
    return out, torch.stack(ys)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_sequence_matches_interpolate_linear_per_sample(
    per_sample: bool, dtype: torch.dtype, tol: float
) -> None:
    x = _sequences(6, 3, 40, dtype)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for seed in range(4):
        p = sample_resizemix_params(
            6, (40,), per_sample=per_sample, generator=torch.Generator().manual_seed(seed)
        )
        out = apply_resizemix(x, y, p, num_classes=3)
        ex, ey = naive_resizemix_1d(x, y, 3, p)
        torch.testing.assert_close(out.x, ex, rtol=tol, atol=tol)
        torch.testing.assert_close(out.targets, ey.to(out.targets.dtype), rtol=1e-6, atol=1e-6)


def test_sequence_masks_class_maps_nearest_exact_and_soft_maps_linear() -> None:
    b, n = 5, 31
    x = _sequences(b, 2, n, torch.float64, seed=2)
    seg = torch.randint(0, 4, (b, n), generator=torch.Generator().manual_seed(3))
    soft = torch.rand(b, 4, n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    p = sample_resizemix_params(b, n, per_sample=True, generator=torch.Generator().manual_seed(1))
    out = apply_resizemix(x, None, p, masks=seg)
    assert isinstance(out, MixedSegBatch) and out.masks.dtype == seg.dtype
    want, _ = naive_resizemix_1d(seg, None, 1, p, mode="nearest-exact")
    assert torch.equal(out.masks, want)
    out_soft = apply_resizemix(x, None, p, masks=soft)
    want_soft, _ = naive_resizemix_1d(soft, None, 1, p)
    torch.testing.assert_close(out_soft.masks, want_soft, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("n", [40, 9, 1])
def test_sequence_segments_follow_the_rule_and_lambda_is_exact(per_sample: bool, n: int) -> None:
    """From the sampler's draws (order: tau, start, permutation): ``l = clip(round(tau L), 1,
    L)``, start ``min(floor(u (L - l + 1)), L - l)``; lam = 1 - l / L exactly."""
    for seed in range(5):
        p = sample_resizemix_params(
            8,
            (n,),
            scale=(0.1, 0.8),
            per_sample=per_sample,
            generator=torch.Generator().manual_seed(seed),
        )
        g = torch.Generator().manual_seed(seed)
        k = 8 if per_sample else 1
        tau = _rng.uniform((k,), low=0.1, high=0.8, dtype=torch.float64, generator=g)
        u = _rng.uniform((k,), dtype=torch.float64, generator=g)
        for i in range(8):
            j = i if per_sample else 0
            length = min(max(int(float(tau[j]) * n + 0.5), 1), n)
            x0 = min(int(float(u[j]) * (n - length + 1)), n - length)
            assert p.boxes[i].tolist() == [x0, x0 + length]
        length_t = p.boxes[:, 1] - p.boxes[:, 0]
        assert torch.equal(p.lam, (1 - length_t.double() / n).float())
        assert p.size == (n,)


def test_sequence_limit_cases() -> None:
    x = _sequences(4, 2, 20, torch.float64, seed=5)
    y = torch.tensor([0, 1, 2, 3])
    # tau = 1: the whole sequence becomes its partner (a resize to the same length is the
    # identity) and so does the label
    out = ResizeMix((1.0, 1.0), num_classes=4)(x, y, generator=torch.Generator().manual_seed(0))
    p = sample_resizemix_params(4, 20, scale=(1.0, 1.0), generator=torch.Generator().manual_seed(0))
    assert torch.equal(p.lam, torch.zeros(4))
    torch.testing.assert_close(out.x, x[p.index], rtol=1e-12, atol=1e-12)
    assert torch.equal(out.targets, torch.eye(4, dtype=out.targets.dtype)[y[p.index]])
    # B = 1: the sequence pasted, downscaled, onto itself; its label unchanged
    one = ResizeMix(num_classes=4)(x[:1], y[:1], generator=torch.Generator().manual_seed(0))
    assert torch.equal(one.targets, torch.eye(4, dtype=one.targets.dtype)[y[:1]])
    # L = 1: the segment is the one step, the partner's value
    tiny = _sequences(3, 2, 1, torch.float32)
    pt = sample_resizemix_params(3, 1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(apply_resizemix(tiny, None, pt).x, tiny[pt.index])


def test_sequence_module_replays_the_params_and_dtypes() -> None:
    for dtype in (torch.float32, torch.uint8, torch.bfloat16):
        x = _sequences(7, 2, 40, dtype, seed=4)
        y = torch.arange(7) % 3
        out = ResizeMix(per_sample=True, num_classes=3)(
            x, y, generator=torch.Generator().manual_seed(9)
        )
        p = sample_resizemix_params(
            7, (40,), per_sample=True, generator=torch.Generator().manual_seed(9)
        )
        want = apply_resizemix(x, y, p, num_classes=3)
        assert out.x.shape == x.shape and out.x.dtype == dtype
        assert all(torch.equal(s, t) for s, t in zip(out, want, strict=True))


def test_sequence_errors() -> None:
    x = torch.rand(4, 2, 8)
    with pytest.raises(
        ValueError,
        match=r"apply_resizemix: params were drawn for spatial size \(8, 8\) but x has \(8,\)",
    ):
        apply_resizemix(x, None, sample_resizemix_params(4, (8, 8)))
    with pytest.raises(ValueError, match=r"params.boxes of a sequence must have shape \(4, 2\)"):
        apply_resizemix(
            x, None, ResizeMixParams(torch.arange(4), torch.zeros(4, 4, dtype=torch.long), (8,))
        )
    with pytest.raises(ValueError, match=r"apply_resizemix: params.boxes must satisfy 0 <= x0"):
        apply_resizemix(x, None, ResizeMixParams(torch.arange(4), torch.tensor([[2, 9]] * 4), (8,)))
    with pytest.raises(ValueError, match=r"masks must have shape \(4, 8\) \(class ids\)"):
        ResizeMix()(x, None, masks=torch.zeros(4, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"size must have 1 or 2 entries; got \(8, 8, 8\)"):
        sample_resizemix_params(4, (8, 8, 8))
