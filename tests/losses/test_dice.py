"""Self-adjusting Dice loss: formula loops, the card's checks, properties, errors.

No installed peer implements the self-adjusting Dice loss (kornia and MONAI, which have soft
segmentation Dice, are not test dependencies); the reference here is the paper's equation and
the released code's set-level formula, both written as float64 loops.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score

from posneg.losses import DiceLoss, dice

F64 = torch.float64


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _randint(high: int, *shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(high, shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------
# naive loops written from the equations
# ------------------------------------------------------------------------------------------


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _softmax(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def _q(p: float, alpha: float) -> float:
    return (1.0 - p) ** alpha * p


def naive_instance(
    ps: list[float], ys: list[float], alpha: float, gamma: float, sq: bool
) -> list[float]:
    """DSC_i = 1 - (2 q y + g) / (q + y + g)  (or q^2 + y^2 + g), q = (1 - p)^alpha p."""
    out = []
    for p, y in zip(ps, ys, strict=True):
        q = _q(p, alpha)
        den = q * q + y * y if sq else q + y
        out.append(1.0 - (2.0 * q * y + gamma) / (den + gamma))
    return out


def naive_set(ps: list[float], ys: list[float], alpha: float, gamma: float, sq: bool) -> float:
    """DSC = 1 - (2 sum q y + g) / (sum q + sum y + g)  (or sums of squares)."""
    qs = [_q(p, alpha) for p in ps]
    inter = sum(q * y for q, y in zip(qs, ys, strict=True))
    den = sum(q * q for q in qs) + sum(y * y for y in ys) if sq else sum(qs) + sum(ys)
    return 1.0 - (2.0 * inter + gamma) / (den + gamma)


# ------------------------------------------------------------------------------------------
# formula
# ------------------------------------------------------------------------------------------

HYPER = [
    (0.0, 1.0, False),
    (1.0, 1.0, False),
    (0.01, 1.0, True),
    (0.5, 1e-4, False),
    (2.0, 0.3, True),
]


@pytest.mark.parametrize(("alpha", "gamma", "sq"), HYPER)
def test_binary_instance_matches_loop(alpha: float, gamma: float, sq: bool) -> None:
    z = _randn(11) * 2
    y = (_randn(11, seed=1) > 0.3).to(F64)
    ps = [_sigmoid(float(v)) for v in z]
    expected = torch.tensor(naive_instance(ps, y.tolist(), alpha, gamma, sq), dtype=F64)
    kw = {"alpha": alpha, "gamma": gamma, "square_denominator": sq}
    got = dice(z, y, reduction="none", **kw)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dice(z, y, **kw), expected.mean(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        dice(z, y, reduction="sum", **kw), expected.sum(), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize(("alpha", "gamma", "sq"), HYPER)
def test_binary_set_matches_loop(alpha: float, gamma: float, sq: bool) -> None:
    z = _randn(4, 6) * 2  # token tagging (B, T), one logit per token: sums run over all tokens
    y = (_randn(4, 6, seed=2) > 0.5).to(F64)
    ps = [_sigmoid(float(v)) for v in z.flatten()]
    expected = naive_set(ps, y.flatten().tolist(), alpha, gamma, sq)
    kw = {"alpha": alpha, "gamma": gamma, "square_denominator": sq, "form": "set"}
    got = dice(z, y, **kw)
    assert got.shape == ()
    assert float(got) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert dice(z, y, reduction="none", **kw).shape == (1,)


@pytest.mark.parametrize(("alpha", "gamma", "sq"), HYPER)
def test_multiclass_instance_matches_loop(alpha: float, gamma: float, sq: bool) -> None:
    z = _randn(7, 4) * 2
    t = _randint(4, 7, seed=3)
    expected = []
    for i in range(7):
        p = _softmax(z[i].tolist())
        ys = [1.0 if c == int(t[i]) else 0.0 for c in range(4)]
        expected.append(sum(naive_instance(p, ys, alpha, gamma, sq)))  # one-vs-rest, summed
    kw = {"alpha": alpha, "gamma": gamma, "square_denominator": sq}
    got = dice(z, t, reduction="none", **kw)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=F64), rtol=1e-10, atol=1e-12)
    assert float(dice(z, t, **kw)) == pytest.approx(sum(expected) / 7, rel=1e-10)


@pytest.mark.parametrize(("alpha", "gamma", "sq"), HYPER)
def test_multiclass_set_matches_loop(alpha: float, gamma: float, sq: bool) -> None:
    z = _randn(9, 3) * 2
    t = _randint(3, 9, seed=4)
    probs = [_softmax(z[i].tolist()) for i in range(9)]
    per_class = []
    for c in range(3):
        ps = [probs[i][c] for i in range(9)]
        ys = [1.0 if int(t[i]) == c else 0.0 for i in range(9)]
        per_class.append(naive_set(ps, ys, alpha, gamma, sq))
    kw = {"alpha": alpha, "gamma": gamma, "square_denominator": sq, "form": "set"}
    got = dice(z, t, reduction="none", **kw)
    torch.testing.assert_close(got, torch.tensor(per_class, dtype=F64), rtol=1e-10, atol=1e-12)
    assert float(dice(z, t, reduction="sum", **kw)) == pytest.approx(sum(per_class), rel=1e-10)
    assert float(dice(z, t, **kw)) == pytest.approx(sum(per_class) / 3, rel=1e-10)


@pytest.mark.parametrize("form", ["instance", "set"])
def test_token_tagging_with_mask_and_ignore_index_matches_loop(form: str) -> None:
    b, t_len, c = 3, 5, 4
    z = _randn(b, t_len, c)
    tags = _randint(c, b, t_len, seed=5)
    tags[0, 4] = -100  # padding by ignore_index
    mask = torch.ones(b, t_len, dtype=torch.bool)
    mask[2, 3:] = False  # padding by mask
    kept = [(i, j) for i in range(b) for j in range(t_len) if mask[i, j] and tags[i, j] != -100]
    probs = {(i, j): _softmax(z[i, j].tolist()) for i, j in kept}
    kw = {
        "alpha": 0.3,
        "gamma": 0.5,
        "form": form,
        "ignore_index": -100,
        "square_denominator": False,
    }
    got = dice(z, tags, mask=mask, **kw)
    if form == "instance":
        per = [
            sum(
                naive_instance(
                    probs[k],
                    [1.0 if cc == int(tags[k]) else 0.0 for cc in range(c)],
                    0.3,
                    0.5,
                    False,
                )
            )
            for k in kept
        ]
        assert float(got) == pytest.approx(sum(per) / len(per), rel=1e-10)
        none = dice(z, tags, mask=mask, reduction="none", **kw)
        assert none.shape == (b, t_len)
        assert float(none[0, 4]) == 0.0 and float(none[2, 3]) == 0.0
    else:
        per_class = [
            naive_set(
                [probs[k][cc] for k in kept],
                [1.0 if int(tags[k]) == cc else 0.0 for k in kept],
                0.3,
                0.5,
                False,
            )
            for cc in range(c)
        ]
        assert float(got) == pytest.approx(sum(per_class) / c, rel=1e-10)


# ------------------------------------------------------------------------------------------
# the card's checks and other properties
# ------------------------------------------------------------------------------------------


def test_set_level_hard_predictions_give_one_minus_f1() -> None:
    """Card check 1: alpha = 0, gamma -> 0 (here exactly 0), set form, hard p: 1 - F1."""
    g = torch.Generator().manual_seed(6)
    y = (torch.rand(200, generator=g) < 0.1).to(F64)
    pred = (torch.rand(200, generator=g) < 0.15).to(F64)
    loss = dice(pred, y, alpha=0.0, gamma=0.0, form="set", from_logits=False)
    f1 = f1_score(y.numpy(), pred.numpy())
    assert float(loss) == pytest.approx(1.0 - f1, abs=1e-14)
    # gamma -> 0: the smoothed value approaches it
    near = dice(pred, y, alpha=0.0, gamma=1e-9, form="set", from_logits=False)
    assert float(near) == pytest.approx(1.0 - f1, abs=1e-9)


def test_multiclass_set_level_hard_predictions_give_one_minus_macro_f1() -> None:
    g = torch.Generator().manual_seed(7)
    t = torch.randint(4, (120,), generator=g)
    pred = torch.where(torch.rand(120, generator=g) < 0.7, t, torch.randint(4, (120,), generator=g))
    onehot = torch.nn.functional.one_hot(pred, 4).to(F64)
    loss = dice(onehot, t, alpha=0.0, gamma=0.0, form="set", from_logits=False)
    macro = f1_score(t.numpy(), pred.numpy(), average="macro")
    assert float(loss) == pytest.approx(1.0 - macro, abs=1e-14)


@pytest.mark.parametrize("form", ["instance", "set"])
@pytest.mark.parametrize("sq", [False, True])
def test_zero_loss_when_p_equals_y(form: str, sq: bool) -> None:
    """Card check 2: the loss is 0 when p = y exactly (alpha = 0)."""
    y = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0], dtype=F64)
    kw = {"alpha": 0.0, "gamma": 1.0, "form": form, "square_denominator": sq, "from_logits": False}
    assert float(dice(y.clone(), y, **kw)) == 0.0
    t = torch.tensor([2, 0, 1, 1])
    assert float(dice(torch.nn.functional.one_hot(t, 3).to(F64), t, **kw)) == 0.0


def test_alpha_zero_is_plain_dice_and_alpha_changes_the_loss() -> None:
    z = _randn(20)
    y = (_randn(20, seed=8) > 0).to(F64)
    p = torch.sigmoid(z)
    plain = 1.0 - (2.0 * p * y + 1.0) / (p + y + 1.0)
    kw = {"square_denominator": False, "reduction": "none"}
    torch.testing.assert_close(dice(z, y, alpha=0.0, **kw), plain)
    assert not torch.allclose(dice(z, y, alpha=0.5, **kw), plain)
    squared = 1.0 - (2.0 * p * y + 1.0) / (p * p + y * y + 1.0)
    torch.testing.assert_close(dice(z, y, alpha=0.0, reduction="none"), squared)


@pytest.mark.parametrize("p0", [0.01, 0.05, 0.1, 0.2])
def test_alpha_reduces_gradient_of_confident_negatives(p0: float) -> None:
    """Card check 3: a larger alpha gives an easy negative (small p, y = 0) less gradient."""
    z0 = math.log(p0 / (1.0 - p0))
    grads = []
    for alpha in (0.0, 0.5, 1.0):
        z = torch.tensor([z0], dtype=F64, requires_grad=True)
        dice(z, torch.zeros(1, dtype=F64), alpha=alpha).backward()
        assert z.grad is not None
        grads.append(abs(float(z.grad[0])))
    assert grads[0] > grads[1] > grads[2] > 0


@pytest.mark.parametrize("alpha", [0.01, 0.5, 1.0])
def test_saturated_logits_keep_gradients_finite(alpha: float) -> None:
    z = torch.tensor([60.0, -60.0, 200.0, 0.3], requires_grad=True)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    for form in ("instance", "set"):
        loss = dice(z, y, alpha=alpha, form=form)
        (grad,) = torch.autograd.grad(loss, z)
        assert bool(torch.isfinite(loss)) and bool(torch.isfinite(grad).all())


def test_hard_probabilities_with_alpha_are_exact() -> None:
    """p = 1 gives (1 - p)^alpha p = 0 for alpha > 0 (no clamping artefact)."""
    p = torch.tensor([1.0, 0.0], dtype=F64)
    y = torch.tensor([1.0, 0.0], dtype=F64)
    got = dice(p, y, alpha=0.01, gamma=1.0, from_logits=False, reduction="none")
    # q = 0 for both: y = 1 -> 1 - 1/2; y = 0 -> 0
    torch.testing.assert_close(got, torch.tensor([0.5, 0.0], dtype=F64))


@pytest.mark.parametrize("form", ["instance", "set"])
def test_mask_equals_dropping_entries(form: str) -> None:
    z = _randn(10)
    y = (_randn(10, seed=9) > 0).to(F64)
    mask = torch.tensor([True, False] * 5)
    full = dice(z, y, mask=mask, form=form, alpha=0.2)
    sub = dice(z[mask], y[mask], form=form, alpha=0.2)
    torch.testing.assert_close(full, sub)
    y_ign = torch.where(mask, y, torch.full_like(y, -1.0))
    torch.testing.assert_close(dice(z, y_ign, ignore_index=-1, form=form, alpha=0.2), sub)


def test_ignored_entries_get_no_gradient_and_all_ignored_is_zero() -> None:
    z = _randn(6, 3).requires_grad_(True)
    t = torch.tensor([0, 1, -100, 2, -100, 1])
    dice(z, t, ignore_index=-100, gamma=0.0).backward()
    assert z.grad is not None
    assert float(z.grad[2].abs().sum()) == 0.0 and float(z.grad[4].abs().sum()) == 0.0
    assert bool(torch.isfinite(z.grad).all())
    z2 = _randn(4).requires_grad_(True)
    loss = dice(z2, torch.ones(4, dtype=F64), mask=torch.zeros(4, dtype=torch.bool))
    assert float(loss.detach()) == 0.0
    loss.backward()  # graph connected


def test_binary_targets_may_be_int_or_bool() -> None:
    z = _randn(8)
    y = (_randn(8, seed=10) > 0).long()
    ref = dice(z, y.to(F64))
    torch.testing.assert_close(dice(z, y), ref)
    torch.testing.assert_close(dice(z, y.bool()), ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype: torch.dtype) -> None:
    z = _randn(5, 4).to(dtype)
    t = _randint(4, 5)
    out = dice(z, t)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out))
    torch.testing.assert_close(out, dice(z.float(), t), rtol=1e-6, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 4),
    t_len=st.integers(1, 6),
    c=st.integers(2, 5),
    alpha=st.sampled_from([0.0, 0.01, 1.0]),
    form=st.sampled_from(["instance", "set"]),
    seed=st.integers(0, 1000),
)
def test_shapes_and_bounds(b: int, t_len: int, c: int, alpha: float, form: str, seed: int) -> None:
    z = _randn(b, t_len, c, seed=seed) * 3
    t = _randint(c, b, t_len, seed=seed + 1)
    none = dice(z, t, alpha=alpha, form=form, reduction="none")
    assert none.shape == ((b, t_len) if form == "instance" else (c,))
    assert bool((none >= -1e-12).all()) and bool((none <= c + 1e-12).all())
    mean = dice(z, t, alpha=alpha, form=form)
    torch.testing.assert_close(mean, none.mean())


def test_module_matches_function_and_repr() -> None:
    z = _randn(6, 3)
    t = _randint(3, 6)
    mask = torch.tensor([True, True, False, True, True, True])
    mod = DiceLoss(alpha=0.3, gamma=0.5, form="set", square_denominator=True, reduction="sum")
    ref = dice(z, t, alpha=0.3, gamma=0.5, form="set", square_denominator=True, reduction="sum",
               mask=mask)  # fmt: skip
    torch.testing.assert_close(mod(z, t, mask), ref)
    text = repr(mod)
    for part in ("alpha=0.3", "gamma=0.5", "form='set'", "square_denominator=True"):
        assert part in text


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"alpha": -0.1}, ValueError, "dice: alpha must be >= 0"),
        ({"gamma": -1.0}, ValueError, "dice: gamma must be >= 0"),
        ({"alpha": "x"}, TypeError, "dice: alpha must be a real number"),
        ({"form": "batch"}, ValueError, "dice: form must be one of 'instance', 'set'"),
        ({"square_denominator": 1}, TypeError, "dice: square_denominator must be a bool"),
        ({"from_logits": "yes"}, TypeError, "dice: from_logits must be a bool"),
        ({"ignore_index": 1.5}, TypeError, "dice: ignore_index must be an int or None"),
        ({"reduction": "avg"}, ValueError, "dice: reduction must be one of"),
    ],
)
def test_bad_hyperparameters(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        dice(_randn(4), torch.ones(4), **kwargs)


def test_module_validates_in_init() -> None:
    with pytest.raises(ValueError, match="DiceLoss: alpha must be >= 0"):
        DiceLoss(alpha=-1.0)
    with pytest.raises(ValueError, match="DiceLoss: form must be one of"):
        DiceLoss(form="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="DiceLoss: reduction must be one of"):
        DiceLoss(reduction="avg")  # type: ignore[arg-type]


def test_bad_tensors() -> None:
    z = _randn(4, 3)
    with pytest.raises(TypeError, match=r"dice: input must be a torch\.Tensor"):
        dice([1.0, 2.0], torch.ones(2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dice: input must be a floating-point tensor"):
        dice(torch.ones(4, dtype=torch.long), torch.ones(4))
    with pytest.raises(TypeError, match=r"dice: target must be a torch\.Tensor"):
        dice(z, [0, 1, 2, 0])  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"dice: target must have shape \(4, 3\) \(binary\) or \(4,\)"
    ):
        dice(z, torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="dice: multi-class target must hold integer class indices"):
        dice(z, torch.zeros(4))
    with pytest.raises(ValueError, match="dice: multi-class input must have C >= 2"):
        dice(_randn(4, 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"dice: target class indices must be in \[0, 2\]"):
        dice(z, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match=r"dice: binary target values must be in \[0, 1\]"):
        dice(_randn(3), torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"dice: input must hold probabilities in \[0, 1\]"):
        dice(torch.tensor([0.2, 1.5]), torch.ones(2), from_logits=False)
    with pytest.raises(ValueError, match="dice: input contains NaN or inf"):
        dice(torch.tensor([0.2, float("nan")]), torch.ones(2))
    with pytest.raises(TypeError, match="dice: mask must be a bool tensor"):
        dice(_randn(3), torch.ones(3), mask=torch.ones(3))
    with pytest.raises(ValueError, match=r"dice: mask must have the target's shape \(3,\)"):
        dice(_randn(3), torch.ones(3), mask=torch.ones(2, dtype=torch.bool))
    with pytest.raises(TypeError, match="dice: target must be a real tensor"):
        dice(_randn(2), torch.ones(2, dtype=torch.complex64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_mismatch() -> None:
    with pytest.raises(ValueError, match="dice: target is on"):
        dice(_randn(3).cuda(), torch.ones(3))
