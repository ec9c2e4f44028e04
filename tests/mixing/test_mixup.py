"""MixUp (Zhang et al., ICLR 2018): formula, reference, properties, errors.

timm, torchvision and kornia do not load against the CPU torch of ``make test``; they are
compared in ``tests/peers/`` (``make test-peers``, docs/peers.md). Here the references are a
naive float64 loop from the paper's equation and torch's own label smoothing and cross-entropy
(the MixUp loss identity). This file also holds the cross-technique check that
no apply kernel loops over the batch in Python.
"""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch.utils._python_dispatch import TorchDispatchMode

from posneg.mixing import (
    MixedBatch,
    MixedSegBatch,
    MixUp,
    MixUpParams,
    apply_cutmix,
    apply_fmix,
    apply_minority_mix,
    apply_mixup,
    apply_resizemix,
    fmix_masks,
    sample_cutmix_params,
    sample_fmix_params,
    sample_minority_mix_params,
    sample_mixup_params,
    sample_resizemix_params,
)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8]


def _images(b: int, c: int, h: int, w: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    return torch.rand(b, c, h, w, generator=g, dtype=torch.float64).to(dtype)


def naive_mixup(
    x: torch.Tensor, y: torch.Tensor, k: int, lam: torch.Tensor, index: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper equation, one sample at a time, float64."""
    xs, ys = [], []
    x64 = x.to(torch.float64)
    for i in range(x.shape[0]):
        j = int(index[i])
        li = float(lam[i])
        yi = torch.full((k,), eps / k, dtype=torch.float64)
        yj = torch.full((k,), eps / k, dtype=torch.float64)
        yi[int(y[i])] += 1 - eps
        yj[int(y[j])] += 1 - eps
        xs.append(li * x64[i] + (1 - li) * x64[j])
        ys.append(li * yi + (1 - li) * yj)
    return torch.stack(xs), torch.stack(ys)


# ---------------------------------------------------------------------------------------------
# formula
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_matches_naive_loop_float64(per_sample: bool, eps: float) -> None:
    g = torch.Generator().manual_seed(3)
    x = _images(7, 3, 5, 4, torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 2])
    p = sample_mixup_params(7, alpha=0.4, per_sample=per_sample, generator=g)
    out = apply_mixup(x, y, p, num_classes=5, label_smoothing=eps)
    ex, ey = naive_mixup(x, y, 5, p.lam, p.index, eps)
    torch.testing.assert_close(out.x, ex, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.targets, ey, rtol=1e-12, atol=1e-12)


def test_uint8_is_the_rounded_float_blend() -> None:
    g = torch.Generator().manual_seed(0)
    x = _images(6, 3, 8, 8, torch.uint8)
    p = sample_mixup_params(6, per_sample=True, generator=g)
    out = apply_mixup(x, None, p)
    ex, _ = naive_mixup(x, torch.zeros(6, dtype=torch.long), 1, p.lam, p.index, 0.0)
    assert out.x.dtype == torch.uint8
    # float32 blend then round-half-even vs float64: identical except possibly exact .5 ties
    assert int((out.x.to(torch.int16) - ex.round().to(torch.int16)).abs().max()) <= 1
    assert float((out.x.to(torch.float64) - ex).abs().max()) <= 0.5 + 1e-4


def test_soft_and_multi_hot_targets_mix_linearly() -> None:
    g = torch.Generator().manual_seed(1)
    x = _images(5, 1, 3, 3, torch.float64)
    multi = (torch.rand(5, 6, generator=g) > 0.5).to(torch.float64)
    p = sample_mixup_params(5, per_sample=True, generator=g)
    out = apply_mixup(x, multi, p)
    lam = p.lam.to(torch.float64)[:, None]
    torch.testing.assert_close(out.targets, lam * multi + (1 - lam) * multi[p.index])
    out_bool = apply_mixup(x, multi.bool(), p)
    torch.testing.assert_close(out_bool.targets, out.targets)


def test_masks_become_soft_maps_mixed_like_images() -> None:
    g = torch.Generator().manual_seed(2)
    x = _images(4, 2, 5, 6, torch.float64)
    seg = torch.randint(0, 3, (4, 5, 6), generator=g)
    seg[0, 0, 0] = 255
    p = sample_mixup_params(4, per_sample=True, generator=g)
    out = apply_mixup(x, None, p, masks=seg, num_mask_classes=3, ignore_index=255)
    assert isinstance(out, MixedSegBatch) and out.masks.shape == (4, 3, 5, 6)
    for i in range(4):
        j, li = int(p.index[i]), float(p.lam[i])
        for r in range(5):
            for c in range(6):
                want = torch.zeros(3, dtype=torch.float64)
                if int(seg[i, r, c]) != 255:
                    want[int(seg[i, r, c])] += li
                if int(seg[j, r, c]) != 255:
                    want[int(seg[j, r, c])] += 1 - li
                torch.testing.assert_close(out.masks[i, :, r, c], want)


# ---------------------------------------------------------------------------------------------
# reference: torch's label smoothing and the MixUp loss identity of the official code
# ---------------------------------------------------------------------------------------------


def test_smoothed_targets_equal_torch_label_smoothing() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 4, 2, 2, 1, 3])
    identity = MixUpParams(lam=torch.ones(6), index=torch.arange(6))
    out = apply_mixup(
        torch.zeros(6, 1, dtype=torch.float64), y, identity, num_classes=5, label_smoothing=0.2
    )
    ours = -(out.targets * F.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(ours, F.cross_entropy(logits, y, label_smoothing=0.2))


def test_mixed_target_loss_equals_mixup_criterion() -> None:
    """CE with the mixed soft target equals lam CE(y_i) + (1 - lam) CE(y_j) (official code)."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(8, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (8,), generator=g)
    p = sample_mixup_params(8, generator=g)
    out = apply_mixup(torch.zeros(8, 2, dtype=torch.float64), y, p, num_classes=4)
    lam = float(p.lam[0])
    ours = F.cross_entropy(logits, out.targets)
    official = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[p.index])
    torch.testing.assert_close(ours, official)


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 7),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    dtype=st.sampled_from(DTYPES),
    per_sample=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_shapes_dtypes_and_targets_sum_to_one(
    b: int, c: int, h: int, w: int, dtype: torch.dtype, per_sample: bool, seed: int
) -> None:
    x = _images(b, c, h, w, dtype, seed)
    y = torch.randint(0, 5, (b,), generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    out = MixUp(alpha=0.7, per_sample=per_sample, num_classes=5, label_smoothing=0.1)(
        x, y, generator=g
    )
    assert isinstance(out, MixedBatch)
    assert out.x.shape == x.shape and out.x.dtype == x.dtype
    assert out.targets is not None and out.targets.shape == (b, 5)
    assert out.targets.dtype == (dtype if dtype.is_floating_point else torch.float32)
    tol = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-5
    torch.testing.assert_close(out.targets.float().sum(1), torch.ones(b), atol=tol, rtol=0)
    if x.is_floating_point():  # each pixel lies between the two mixed values
        lo = torch.minimum(x, x[out_index(seed, b, per_sample)]).float()
        hi = torch.maximum(x, x[out_index(seed, b, per_sample)]).float()
        slack = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-6
        assert bool((out.x.float() >= lo - slack).all() and (out.x.float() <= hi + slack).all())


def out_index(seed: int, b: int, per_sample: bool) -> torch.Tensor:
    """The permutation MixUp drew from a generator seeded with ``seed`` (replayed)."""
    g = torch.Generator().manual_seed(seed)
    return sample_mixup_params(b, alpha=0.7, per_sample=per_sample, generator=g).index


def test_batch_of_one_is_unchanged() -> None:
    x = _images(1, 3, 4, 4, torch.float32)
    out = MixUp(num_classes=3)(x, torch.tensor([2]), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.x, x)
    torch.testing.assert_close(out.targets, torch.tensor([[0.0, 0.0, 1.0]]))


def test_odd_batch_every_sample_mixed() -> None:
    p = sample_mixup_params(9, generator=torch.Generator().manual_seed(0))
    assert sorted(p.index.tolist()) == list(range(9))  # a permutation, whatever the parity


def test_replaying_params_reproduces_output() -> None:
    x = _images(6, 3, 7, 7, torch.float32)
    seg = torch.randint(0, 4, (6, 7, 7))
    p = sample_mixup_params(6, per_sample=True, generator=torch.Generator().manual_seed(5))
    a = apply_mixup(x, torch.arange(6) % 4, p, masks=seg, num_classes=4, num_mask_classes=4)
    b = apply_mixup(x, torch.arange(6) % 4, p, masks=seg, num_classes=4, num_mask_classes=4)
    for s, t in zip(a, b, strict=True):
        assert torch.equal(s, t)


def test_module_equals_sampler_then_kernel() -> None:
    x = _images(5, 2, 4, 4, torch.float32)
    y = torch.tensor([0, 1, 1, 0, 2])
    out = MixUp(alpha=0.3, per_sample=True, num_classes=3)(
        x, y, generator=torch.Generator().manual_seed(9)
    )
    p = sample_mixup_params(
        5, alpha=0.3, per_sample=True, generator=torch.Generator().manual_seed(9)
    )
    ref = apply_mixup(x, y, p, num_classes=3)
    assert torch.equal(out.x, ref.x) and torch.equal(out.targets, ref.targets)


def test_generator_honoured_and_global_rng_untouched() -> None:
    x = _images(8, 3, 4, 4, torch.float32)
    mix = MixUp(per_sample=True)
    state = torch.get_rng_state()
    a = mix(x, None, generator=torch.Generator().manual_seed(1)).x
    b = mix(x, None, generator=torch.Generator().manual_seed(1)).x
    c = mix(x, None, generator=torch.Generator().manual_seed(2)).x
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_lambda_per_batch_or_per_sample() -> None:
    g = torch.Generator().manual_seed(0)
    shared = sample_mixup_params(16, generator=g).lam
    assert bool((shared == shared[0]).all())
    own = sample_mixup_params(16, per_sample=True, generator=g).lam
    assert own.unique().numel() == 16


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_lambda_follows_beta_alpha_alpha(alpha: float) -> None:
    lam = sample_mixup_params(
        4000, alpha=alpha, per_sample=True, generator=torch.Generator().manual_seed(0)
    ).lam
    assert stats.kstest(lam.double().numpy(), stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_mixed_sample_and_mask_share_weights() -> None:
    """Images built as constants i and class maps i: the mask's soft value is the image weight."""
    b = 5
    x = torch.arange(b, dtype=torch.float64).view(b, 1, 1, 1).expand(b, 1, 3, 3).contiguous()
    seg = torch.arange(b).view(b, 1, 1).expand(b, 3, 3).contiguous()
    p = sample_mixup_params(b, per_sample=True, generator=torch.Generator().manual_seed(3))
    out = apply_mixup(x, None, p, masks=seg, num_mask_classes=b)
    recon = (out.masks * torch.arange(b, dtype=torch.float64).view(1, b, 1, 1)).sum(1)
    torch.testing.assert_close(recon, out.x[:, 0])


def test_pickle_and_repr() -> None:
    mix = MixUp(0.2, per_sample=True, num_classes=10, label_smoothing=0.1)
    assert "alpha=0.2" in repr(mix) and "per_sample=True" in repr(mix)
    clone = pickle.loads(pickle.dumps(mix))
    x = _images(4, 3, 4, 4, torch.float32)
    a = mix(x, torch.arange(4), generator=torch.Generator().manual_seed(0))
    b = clone(x, torch.arange(4), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.x, b.x) and torch.equal(a.targets, b.targets)


def test_gradients_flow_to_inputs() -> None:
    x = _images(4, 2, 3, 3, torch.float64).requires_grad_(True)
    p = sample_mixup_params(4, per_sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(lambda t: apply_mixup(t, None, p).x, (x,), fast_mode=True)


class _CountOps(TorchDispatchMode):
    """Counts the aten calls made inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.n += 1
        return func(*args, **(kwargs or {}))


def _op_count(run, b: int) -> int:  # type: ignore[no-untyped-def]
    """Number of aten calls made by ``run(b)``: the params are drawn outside the count."""
    args = run(b)
    with _CountOps() as mode:
        args()
    return mode.n


def _kernels():  # type: ignore[no-untyped-def]
    """name -> (b -> a closure that applies the kernel to a batch of b with drawn params)."""

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    def seg(b: int) -> torch.Tensor:
        return torch.zeros(b, 8, 8, dtype=torch.long)

    def mixup(b: int):  # type: ignore[no-untyped-def]
        p = sample_mixup_params(b, per_sample=True, generator=gen())
        x, y = torch.rand(b, 3, 8, 8), torch.arange(b) % 3
        return lambda: apply_mixup(x, y, p, num_classes=3, masks=seg(b), num_mask_classes=3)

    def cutmix(b: int):  # type: ignore[no-untyped-def]
        p = sample_cutmix_params(b, (8, 8), per_sample=True, generator=gen())
        x, y = torch.rand(b, 3, 8, 8), torch.arange(b) % 3
        return lambda: apply_cutmix(x, y, p, num_classes=3, masks=seg(b))

    def fmix(b: int):  # type: ignore[no-untyped-def]
        p = sample_fmix_params(b, (8, 8), per_sample=True, generator=gen())
        x, y = torch.rand(b, 3, 8, 8), torch.arange(b) % 3
        return lambda: apply_fmix(x, y, p, num_classes=3, masks=seg(b))

    def fmix_mask_building(b: int):  # type: ignore[no-untyped-def]
        lam = torch.full((b,), 0.5)
        return lambda: fmix_masks(lam, (8, 8), generator=gen())

    def resizemix(b: int):  # type: ignore[no-untyped-def]
        p = sample_resizemix_params(b, (8, 8), per_sample=True, generator=gen())
        x, y = torch.rand(b, 3, 8, 8), torch.arange(b) % 3
        return lambda: apply_resizemix(x, y, p, num_classes=3, masks=seg(b))

    def minority(b: int):  # type: ignore[no-untyped-def]
        y = torch.arange(b) % 3
        p = sample_minority_mix_params(y, num_classes=3, per_sample=True, generator=gen())
        x = torch.rand(b, 5)
        return lambda: apply_minority_mix(x, y, p, num_classes=3)

    return {
        "mixup": mixup,
        "cutmix": cutmix,
        "fmix": fmix,
        "fmix_mask_building": fmix_mask_building,
        "resizemix": resizemix,
        "minority": minority,
    }


@pytest.mark.parametrize(
    "name", ["mixup", "cutmix", "fmix", "fmix_mask_building", "resizemix", "minority"]
)
def test_no_python_loop_over_the_batch(name: str) -> None:
    """Each apply kernel (and FMix's batched mask building) dispatches the same number of
    tensor ops for B = 3 and B = 40: nothing loops over the samples in Python."""
    run = _kernels()[name]
    assert _op_count(run, 3) == _op_count(run, 40)


@pytest.mark.parametrize("per_sample", [False, True])
def test_alpha_zero_is_lambda_one_as_official(per_sample: bool) -> None:
    """The official ``mixup_data`` (facebookresearch/mixup-cifar10 ``train.py``, commit eaff31a)
    sets ``lam = 1`` when ``alpha`` is not > 0 and still permutes: the batch comes back
    unchanged, targets one-hot (label-smoothed if asked); the permutation is the one a fresh
    generator draws first."""
    g = torch.Generator().manual_seed(3)
    p = sample_mixup_params(6, alpha=0.0, per_sample=per_sample, generator=g)
    assert torch.equal(p.lam, torch.ones(6))
    assert torch.equal(p.index, torch.randperm(6, generator=torch.Generator().manual_seed(3)))
    x = torch.rand(6, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    for xx in (x, (x * 255).round().to(torch.uint8)):
        out = MixUp(alpha=0, per_sample=per_sample, num_classes=3, label_smoothing=0.3)(
            xx, y, generator=torch.Generator().manual_seed(2)
        )
        assert torch.equal(out.x, xx)
        torch.testing.assert_close(out.targets, torch.eye(3)[y] * 0.7 + 0.1)
    assert "alpha=0.0" in repr(MixUp(alpha=0))


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors_hyperparameters() -> None:
    with pytest.raises(ValueError, match=r"MixUp: alpha must be >= 0; got -0.5"):
        MixUp(alpha=-0.5)
    with pytest.raises(ValueError, match=r"sample_mixup_params: alpha must be >= 0; got -1"):
        sample_mixup_params(4, alpha=-1.0)
    with pytest.raises(TypeError, match=r"alpha must be a real number"):
        MixUp(alpha="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0.0, 1.0\)"):
        MixUp(label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"num_classes must be >= 1"):
        MixUp(num_classes=0)
    with pytest.raises(ValueError, match=r"batch must be >= 1; got 0"):
        sample_mixup_params(0)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None"):
        sample_mixup_params(4, generator=3)  # type: ignore[arg-type]


def test_errors_inputs() -> None:
    mix = MixUp(num_classes=3)
    x = torch.rand(4, 3, 5, 5)
    with pytest.raises(TypeError, match=r"MixUp: x must be a torch.Tensor; got list"):
        mix([1.0], None)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"x must be a floating-point or uint8 tensor; got torch.int32"
    ):
        mix(x.to(torch.int32), None)
    with pytest.raises(ValueError, match=r"MixUp: x must be a at least 2-D tensor \(B, ...\)"):
        mix(torch.rand(4), None)
    with pytest.raises(
        ValueError, match=r"targets given as class ids must have shape \(B,\) with B=4"
    ):
        mix(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"num_classes is required when targets are class ids"):
        MixUp()(x, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(
        ValueError, match=r"targets must be class ids in \[0, 3\); got values in \[0, 3\]"
    ):
        mix(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"targets must have K=3 columns"):
        mix(x, torch.rand(4, 5))
    with pytest.raises(ValueError, match=r"soft or multi-hot labels must have shape \(B, K\)"):
        mix(x, torch.rand(3, 3))
    with pytest.raises(
        ValueError, match=r"masks must have shape \(4, 5, 5\) \(class ids\) or \(4, K, 5, 5\)"
    ):
        MixUp(num_mask_classes=2)(x, None, masks=torch.zeros(4, 5, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"num_mask_classes is required"):
        mix(x, None, masks=torch.zeros(4, 5, 5, dtype=torch.long))
    with pytest.raises(TypeError, match=r"masks must be integer class maps or floating soft maps"):
        mix(x, None, masks=torch.zeros(4, 5, 5, dtype=torch.bool))


def test_errors_params() -> None:
    x = torch.rand(4, 3)
    with pytest.raises(ValueError, match=r"params.index must have shape \(4,\) matching the batch"):
        apply_mixup(x, None, sample_mixup_params(5))
    with pytest.raises(ValueError, match=r"params.index entries must be in \[0, 4\)"):
        apply_mixup(x, None, MixUpParams(torch.ones(4), torch.tensor([0, 1, 2, 4])))
    with pytest.raises(ValueError, match=r"params.lam values must be in \[0, 1\]"):
        apply_mixup(x, None, MixUpParams(torch.full((4,), 1.5), torch.arange(4)))
    with pytest.raises(TypeError, match=r"params must be MixUpParams; got tuple"):
        apply_mixup(x, None, (torch.ones(4), torch.arange(4)))  # type: ignore[arg-type]
