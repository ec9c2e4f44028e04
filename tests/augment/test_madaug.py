"""MADAug: curriculum, policy outputs, exploit sampling, straight-through explore, bi-level step.

Official behaviour transcribed from github.com/JackHck/MADAug (``adaptive_augmentor.py`` at commit
376f8c885433572251f4f4346b70cf3c8a1148c3: ``predict_aug_params``, ``stop_gradient``,
``perturb_param``, ``get_training_aug_images``; ``main_higher.py``: the ``higher`` inner step and
the ``tanh`` split).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posneg.augment import functional as AF
from posneg.augment.madaug import (
    IMAGE_OPS,
    SEQUENCE_OPS,
    MADAugPolicy,
    apply_ops,
    bilevel_validation_loss,
    curriculum_split,
    explore_mix,
    perturb_magnitudes,
    policy_outputs,
    sample_exploit_params,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ formula
@pytest.mark.parametrize("epoch", [0, 1, 7, 40, 200])
def test_curriculum_split_formula(epoch: int) -> None:
    assert curriculum_split(epoch) == pytest.approx(min(math.tanh(epoch / 40) + 0.01, 1.0))
    assert curriculum_split(epoch, scale=5.0) == pytest.approx(
        min(math.tanh(epoch / 5) + 0.01, 1.0)
    )


def test_policy_outputs_match_predict_aug_params() -> None:
    h = torch.randn(5, 2 * 7, dtype=torch.float64)
    m, w = policy_outputs(h, temperature=3.0)
    for i in range(5):
        for k in range(7):
            assert m[i, k].item() == pytest.approx(1 / (1 + math.exp(-h[i, k].item())))
        e = [math.exp(h[i, 7 + k].item() / 3.0) for k in range(7)]
        for k in range(7):
            assert w[i, k].item() == pytest.approx(e[k] / sum(e))


def test_explore_mix_against_naive_loop() -> None:
    x = torch.randn(3, 1, 20, dtype=torch.float64)
    k = len(SEQUENCE_OPS)
    m = torch.rand(3, k, dtype=torch.float64)
    w = torch.softmax(torch.randn(3, k, dtype=torch.float64), 1)
    got = explore_mix(x, m, w, generator=_gen(1))
    signs = torch.randint(2, (k, 3), generator=_gen(1)) * 2 - 1  # the same draw
    for i in range(3):
        want = torch.zeros_like(x[i])
        for j in range(k):
            one = apply_ops(
                x[i : i + 1], torch.tensor([j]), m[i, j : j + 1], signs[j, i : i + 1].double()
            )
            want += w[i, j] * one[0]
        torch.testing.assert_close(got[i], want)


def test_sequence_ops_against_naive_loops() -> None:
    x = torch.randn(2, 1, 10, dtype=torch.float64)
    one, half = torch.ones(2, dtype=torch.float64), torch.full((2,), 0.5, dtype=torch.float64)
    # translate at m = 1 (+0.25 L = 2.5 steps): linear interpolation, zero fill
    out = apply_ops(x, torch.full((2,), 1), one, one)
    for b in range(2):
        for t in range(10):
            s = t - 2.5
            lo = math.floor(s)
            val = 0.0
            for idx, wt in ((lo, 1 - (s - lo)), (lo + 1, s - lo)):
                if 0 <= idx < 10:
                    val += wt * x[b, 0, idx].item()
            assert out[b, 0, t].item() == pytest.approx(val)
    flip = apply_ops(x, torch.full((2,), SEQUENCE_OPS.index("flip")), half, one)
    torch.testing.assert_close(flip, x.flip(-1))
    amp = apply_ops(x, torch.full((2,), SEQUENCE_OPS.index("amplitude")), one, one)
    torch.testing.assert_close(amp, 1.5 * x)
    shear = apply_ops(x, torch.full((2,), SEQUENCE_OPS.index("shear")), one, -one)
    ramp = torch.tensor([-1 + 2 * t / 9 for t in range(10)], dtype=torch.float64)
    torch.testing.assert_close(shear, x - ramp)


# ------------------------------------------------------------------ official behaviour
def test_half_magnitude_is_identity_for_signed_ops() -> None:
    x = torch.rand(4, 3, 12, 12)
    half, signs = torch.full((4,), 0.5), torch.tensor([1.0, -1.0, 1.0, -1.0])
    for name in ("shear_x", "shear_y", "translate_x", "translate_y", "rotate"):
        out = apply_ops(x, torch.full((4,), IMAGE_OPS.index(name)), half, signs)
        torch.testing.assert_close(out, x)
    s = torch.randn(4, 1, 16)
    for name in ("translate", "shear", "scale", "amplitude"):
        out = apply_ops(s, torch.full((4,), SEQUENCE_OPS.index(name)), half, signs)
        torch.testing.assert_close(out, s)


def test_image_ops_use_madaug_ranges() -> None:
    x = torch.rand(2, 3, 12, 12)
    one, pos = torch.ones(2), torch.ones(2)
    out = apply_ops(x, torch.full((2,), IMAGE_OPS.index("shear_x")), one, pos)
    torch.testing.assert_close(out, AF.shear_x(x, 0.3))
    out = apply_ops(x, torch.full((2,), IMAGE_OPS.index("rotate")), torch.zeros(2), pos)
    torch.testing.assert_close(out, AF.rotate(x, -30.0))
    out = apply_ops(x, torch.full((2,), IMAGE_OPS.index("brightness")), torch.zeros(2), pos)
    torch.testing.assert_close(out, AF.brightness(x, 0.1))
    out = apply_ops(x, torch.full((2,), IMAGE_OPS.index("posterize")), torch.zeros(2), pos)
    torch.testing.assert_close(out, AF.posterize(x, 4))
    out = apply_ops(x, torch.full((2,), IMAGE_OPS.index("invert")), one, pos)
    torch.testing.assert_close(out, 1.0 - x)


def test_straight_through_gradient_equals_weight() -> None:
    x = torch.randn(2, 1, 12, dtype=torch.float64)
    k = len(SEQUENCE_OPS)
    m = torch.rand(2, k, dtype=torch.float64, requires_grad=True)
    w = torch.softmax(torch.randn(2, k, dtype=torch.float64), 1)
    out = explore_mix(x, m, w, generator=_gen())
    g = torch.zeros_like(out)
    g[0, 0, 3] = 1.0  # d out[0, 0, 3] / d m
    (grad,) = torch.autograd.grad(out, m, g)
    torch.testing.assert_close(grad[0], w[0])
    torch.testing.assert_close(grad[1], torch.zeros(k, dtype=torch.float64))


def test_sampled_ops_are_distinct() -> None:
    w = torch.softmax(torch.randn(500, 7) * 3, 1)
    p = sample_exploit_params(torch.rand(500, 7), w, k_ops=2, generator=_gen())
    assert bool((p.ops[0] != p.ops[1]).all())
    full = sample_exploit_params(torch.rand(50, 7), w[:50], k_ops=7, generator=_gen())
    assert bool((full.ops.sort(0).values == torch.arange(7).view(7, 1)).all())


def test_sampled_ops_follow_weights() -> None:
    w = torch.tensor([[0.7, 0.2, 0.1, 0.0, 0.0, 0.0, 0.0]]).expand(20000, 7).contiguous()
    p = sample_exploit_params(torch.rand(20000, 7), w, k_ops=1, generator=_gen())
    freq = torch.bincount(p.ops[0], minlength=7).double() / 20000
    torch.testing.assert_close(freq, w[0].double(), atol=0.015, rtol=0)


def test_zero_delta_leaves_magnitudes_unchanged() -> None:
    m = torch.rand(40, 7)
    assert perturb_magnitudes(m, delta=0.0, generator=_gen()) is m
    w = torch.softmax(torch.randn(40, 7), 1)
    p = sample_exploit_params(m, w, k_ops=2, delta=0.0, generator=_gen())
    torch.testing.assert_close(p.magnitudes, m.gather(1, p.ops.T).T)


def test_perturbation_is_clipped_and_bounded() -> None:
    m = torch.tensor([0.0, 0.05, 0.5, 0.95, 1.0]).repeat(4000)
    out = perturb_magnitudes(m, delta=0.3, generator=_gen())
    assert bool(((out - m).abs() <= 0.3 + 1e-6).all())
    assert bool(((out >= 0) & (out <= 1)).all())
    mid = out[m == 0.5]
    assert abs(float((mid < 0.5).double().mean()) - 0.5) < 0.03  # sign 1/2
    assert float((out[m == 0.0] == 0.0).double().mean()) == pytest.approx(0.5, abs=0.03)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh())
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_bilevel_loss_against_manual_unrolled_step() -> None:
    torch.manual_seed(0)
    model = _Tiny().double()
    x_bar = torch.randn(4, 1, 12, dtype=torch.float64)
    y, vx, vy = (
        torch.tensor([0, 1, 2, 0]),
        torch.randn(5, 1, 12, dtype=torch.float64),
        torch.tensor([1, 1, 0, 2, 0]),
    )
    got = bilevel_validation_loss(model, x_bar, y, vx, vy, inner_lr=0.5)
    ref = copy.deepcopy(model)
    inner = F.cross_entropy(ref(x_bar), y, label_smoothing=0.1)
    inner.backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.5 * p.grad
    want = F.cross_entropy(ref(vx), vy, label_smoothing=0.1)
    assert got.item() == pytest.approx(want.item(), rel=1e-10)


def test_policy_gets_gradient_only_through_explore() -> None:
    torch.manual_seed(0)
    model = _Tiny().double()
    pol = MADAugPolicy(5, kind="sequence").double()
    x = torch.randn(6, 1, 12, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    feats = model.features(x).detach()
    exploit = pol(x, feats, generator=_gen())
    assert not exploit.requires_grad  # exploit images carry no gradient to h
    x_bar = pol.explore(x, feats, generator=_gen())
    val = bilevel_validation_loss(model, x_bar, y, x, y, inner_lr=0.5)
    grads = torch.autograd.grad(val, list(pol.parameters()))
    assert sum(float(g.abs().sum()) for g in grads) > 0
    # without the unrolled step (inner_lr = 0) the validation loss does not depend on h
    val0 = bilevel_validation_loss(
        model, pol.explore(x, feats, generator=_gen()), y, x, y, inner_lr=0.0
    )
    grads0 = torch.autograd.grad(val0, list(pol.parameters()), allow_unused=True)
    assert all(g is None or float(g.abs().sum()) == 0.0 for g in grads0)


def test_policy_module_and_repr() -> None:
    pol = MADAugPolicy(8, kind="image", temperature=2.0, k_ops=3, delta=0.1)
    assert "temperature=2.0" in repr(pol) and "k_ops=3" in repr(pol)
    x = torch.rand(3, 3, 10, 10)
    a = pol(x, torch.randn(3, 8), generator=_gen(3))
    b = pol(x, torch.randn(3, 8).zero_() + 0, generator=_gen(3))
    assert a.shape == b.shape == x.shape


# ------------------------------------------------------------------ errors
def test_errors_name_function_and_argument() -> None:
    with pytest.raises(ValueError, match="curriculum_split: epoch"):
        curriculum_split(-1)
    with pytest.raises(ValueError, match="apply_ops: ops"):
        apply_ops(torch.randn(2, 1, 8), torch.tensor([0]), torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="apply_ops: ops must be in"):
        apply_ops(torch.randn(2, 1, 8), torch.tensor([0, 99]), torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="sample_exploit_params: k_ops"):
        sample_exploit_params(torch.rand(2, 3), torch.full((2, 3), 1 / 3), k_ops=4)
    with pytest.raises(ValueError, match="MADAugPolicy: kind"):
        MADAugPolicy(4, kind="audio")
    with pytest.raises(TypeError, match="MADAugPolicy: feature_dim"):
        MADAugPolicy(4.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="policy_outputs: logits"):
        policy_outputs(torch.randn(2, 5))
    with pytest.raises(ValueError, match="explore_mix: magnitudes"):
        explore_mix(torch.randn(2, 1, 8), torch.rand(2, 3), torch.rand(2, 3))
