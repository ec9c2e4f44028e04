"""Multiple observer labels, frame labels, the pre-screen gate and the segmentation metrics.

Reference: liamchalcroft/RectAngle @ 4859d9d (Chalcroft et al., ASMUS 2021):

- ``src/rectangle/utils/io.py``, ``H5DataLoader.__getitem__``: ``label_ix = random.randint(0, 2)``
  per fetch; ``random``: ``label_%05d_%02d % (subj, label_ix)``; ``vote``:
  ``torch.round(torch.mean(cat([L0, L1, L2]), dim=0)).int()``; ``mean``: the mean itself.
- ``ClassifyDataLoader.__getitem__``: ``label_vote = torch.sum(label_batch, dim=(1, 2))``,
  ``sum_vote = torch.sum(label_vote != 0)``, label 1.0 iff ``sum_vote >= 2``.
- ``PreScreenLoader.__getitem__``: accepts a frame iff ``screen_pred.item() > self.threshold``.
- ``train.py``: ``threshRange = np.linspace(0, 0.6, 20)``.
- ``src/rectangle/utils/metrics.py``: ``DiceLoss`` flattens the whole batch
  (``inputs.view(-1)``), ``1 - (2 sum(p y) + 1e-7) / (sum p + sum y + 1e-7)``; ``Precision``:
  ``(TP + eps) / (TP + FP + eps)`` with ``TP = sum(p y)``, ``FP = sum((p == 1) & (y == 0))``;
  ``Recall``: the same with ``sum((p == 0) & (y == 1))`` (named ``FP`` in the code).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from posneg.losses.dice import dice
from posneg.selection.observers import (
    PRESCREEN_THRESHOLDS,
    ObserverLabelFusion,
    batch_soft_dice,
    draw_observers,
    frame_labels,
    frame_outcomes,
    fuse_observer_labels,
    prescreen_gate,
    prescreen_thresholds,
    segmentation_scores,
)


def _masks(seed: int, n: int = 6, k: int = 3, side: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = (torch.rand(n, k, side, side, generator=g) > 0.6).double()
    m[0] = 0.0  # an all-empty frame
    m[1, 1:] = 0.0  # one observer only
    return m


# --- formulas against naive float64 loops ---------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_vote_and_mean_match_a_pixel_loop(seed: int, k: int) -> None:
    m = _masks(seed, k=k)
    vote = fuse_observer_labels(m, strategy="vote")
    mean = fuse_observer_labels(m, strategy="mean")
    for i, r, c in itertools.product(range(m.shape[0]), range(5), range(5)):
        count = sum(float(m[i, j, r, c]) for j in range(k))
        assert float(mean[i, r, c]) == pytest.approx(count / k, abs=1e-12)
        # strict majority; a tie (count == k/2) rounds half to even, i.e. to 0
        assert float(vote[i, r, c]) == (1.0 if count > k / 2 else 0.0)


@pytest.mark.parametrize("min_observers", [1, 2, 3])
def test_frame_labels_match_a_loop(min_observers: int) -> None:
    m = _masks(3)
    got = frame_labels(m, min_observers=min_observers)
    for i in range(m.shape[0]):
        drawn = sum(1 for j in range(3) if float(m[i, j].abs().sum()) != 0.0)
        assert bool(got[i]) == (drawn >= min_observers)


def test_segmentation_scores_match_a_loop() -> None:
    g = torch.Generator().manual_seed(0)
    p = (torch.rand(5, 4, 4, generator=g) > 0.5).double()
    y = (torch.rand(5, 4, 4, generator=g) > 0.5).double()
    p[0] = 0.0
    y[0] = 0.0  # empty on empty
    s = segmentation_scores(p, y)
    eps = 1e-7
    for i in range(5):
        pv, yv = p[i].flatten().tolist(), y[i].flatten().tolist()
        tp = sum(a * b for a, b in zip(pv, yv, strict=True))
        fp = sum(1 for a, b in zip(pv, yv, strict=True) if a == 1 and b == 0)
        fn = sum(1 for a, b in zip(pv, yv, strict=True) if a == 0 and b == 1)
        assert float(s.dice[i]) == pytest.approx((2 * tp + eps) / (sum(pv) + sum(yv) + eps))
        assert float(s.precision[i]) == pytest.approx((tp + eps) / (tp + fp + eps))
        assert float(s.recall[i]) == pytest.approx((tp + eps) / (tp + fn + eps))
    assert float(s.dice[0]) == 1.0 and float(s.precision[0]) == 1.0  # eps / eps


# --- transcription of the official code ----------------------------------------------------


def test_batch_soft_dice_is_the_official_whole_batch_formula() -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.rand(3, 1, 6, 6, generator=g, dtype=torch.float64)
    y = fuse_observer_labels((torch.rand(3, 3, 6, 6, generator=g) > 0.5).double(), strategy="mean")
    y = y.unsqueeze(1)
    pf, yf = p.reshape(-1), y.reshape(-1)  # inputs.view(-1): every frame in one sum
    official = 1 - (2 * (pf * yf).sum() + 1e-7) / (pf.sum() + yf.sum() + 1e-7)
    assert float(batch_soft_dice(p, y)) == pytest.approx(float(official), rel=1e-12)
    per_frame = torch.stack([batch_soft_dice(p[i], y[i]) for i in range(3)]).mean()
    assert abs(float(per_frame) - float(official)) > 1e-4  # not a per-frame mean
    logits = torch.logit(p)
    assert float(batch_soft_dice(logits, y, from_logits=True)) == pytest.approx(
        float(official), rel=1e-9
    )


def test_posneg_dice_defaults_differ_from_the_code() -> None:
    """posneg.losses.dice defaults to the per-instance squared form; the code's is the set form."""
    g = torch.Generator().manual_seed(2)
    p = torch.rand(2, 8, 8, generator=g, dtype=torch.float64)
    y = (torch.rand(2, 8, 8, generator=g) > 0.5).double()
    pinned = dice(p, y, form="set", alpha=0.0, gamma=1e-7, square_denominator=False,
                  from_logits=False)  # fmt: skip
    assert float(batch_soft_dice(p, y)) == float(pinned)
    default = dice(p, y, from_logits=False)
    assert abs(float(default) - float(pinned)) > 1e-3


def test_random_is_one_observer_per_fetch_and_redrawn_each_call() -> None:
    m = torch.arange(3.0).reshape(1, 3, 1).expand(400, 3, 2).clone()  # observer j marks value j
    g = torch.Generator().manual_seed(0)
    a = fuse_observer_labels(m, strategy="random", generator=g)
    assert bool((a[:, 0] == a[:, 1]).all())  # the whole mask of one observer
    b = fuse_observer_labels(m, strategy="random", generator=g)
    assert not torch.equal(a, b)  # each epoch can see a different observer


def test_official_sweep_and_strict_gate() -> None:
    ref = np.linspace(0, 0.6, 20)
    np.testing.assert_allclose(prescreen_thresholds().numpy(), ref, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.array(PRESCREEN_THRESHOLDS), ref, rtol=0, atol=1e-15)
    p = torch.tensor([0.0, 0.3, 0.30001, 1.0])
    assert prescreen_gate(p, threshold=0.3).tolist() == [False, False, True, True]  # strict >


# --- properties on the card -----------------------------------------------------------------


def test_vote_of_identical_masks_and_of_one_mask() -> None:
    a = (torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(4)) > 0.5).float()
    same = torch.stack([a, a, a], dim=1)
    assert torch.equal(fuse_observer_labels(same, strategy="vote"), a)
    alone = torch.stack([a, torch.zeros_like(a), torch.zeros_like(a)], dim=1)
    assert not bool(fuse_observer_labels(alone, strategy="vote").any())


def test_mean_takes_thirds() -> None:
    vals = fuse_observer_labels(_masks(5), strategy="mean").unique().tolist()
    assert set(round(v, 6) for v in vals) <= {0.0, round(1 / 3, 6), round(2 / 3, 6), 1.0}


def test_vote_tie_rounds_half_to_even() -> None:
    """The code's torch.round: 2 of 4 observers give 0.5 -> 0 (a ">= half" rule would give 1)."""
    m = torch.tensor([[[1.0], [1.0], [0.0], [0.0]]])  # (1, K=4, 1)
    assert float(fuse_observer_labels(m, strategy="vote")) == 0.0
    m2 = torch.tensor([[[2.0], [1.0]]])  # non-binary: mean 1.5 rounds to 2
    assert float(fuse_observer_labels(m2, strategy="vote")) == 2.0


def test_frame_label_is_two_of_three() -> None:
    m = torch.zeros(4, 3, 3, 3)
    m[1, 0, 0, 0] = 1
    m[2, :2, 1, 1] = 1
    m[3, :, 2, 2] = 1
    assert frame_labels(m).tolist() == [False, False, True, True]
    assert frame_labels(m.bool()).tolist() == [False, False, True, True]


def test_random_observer_frequency_tends_to_a_third() -> None:
    r = draw_observers(30000, 3, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(r, minlength=3).double() / 30000
    assert torch.allclose(freq, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.01)


def test_theta_zero_accepts_all_and_above_one_none() -> None:
    p = torch.rand(50, generator=torch.Generator().manual_seed(0)).clamp_min(1e-6)
    assert bool(prescreen_gate(p, threshold=0.0).all())
    assert not bool(prescreen_gate(p, threshold=1.01).any())


def test_dice_loss_of_identical_binary_masks_is_zero() -> None:
    y = (torch.rand(3, 9, 9, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    assert float(batch_soft_dice(y, y)) == pytest.approx(0.0, abs=1e-7)


def test_all_negative_batch_has_vanishing_gradient() -> None:
    p = torch.full((2, 4, 4), 0.2, dtype=torch.float64, requires_grad=True)
    loss = batch_soft_dice(p, torch.zeros(2, 4, 4, dtype=torch.float64))
    loss.backward()
    assert float(loss.detach()) == pytest.approx(1.0, abs=1e-7)
    assert p.grad is not None and float(p.grad.abs().max()) < 1e-8


def test_frame_outcomes_count_gate_and_empty_predictions() -> None:
    pred = torch.tensor([[1, 0], [0, 0], [1, 1], [0, 1], [0, 0]])
    pos = torch.tensor([True, True, False, True, False])
    out = frame_outcomes(pred, pos)
    assert (out.tp, out.fp, out.fn, out.tn, out.screened_out_positives) == (2, 1, 1, 1, 0)
    gate = torch.tensor([True, True, False, False, True])
    gated = frame_outcomes(pred, pos, accepted=gate)
    assert (gated.tp, gated.fp, gated.fn, gated.tn) == (1, 0, 2, 2)
    assert gated.screened_out_positives == 1
    assert gated.segmented.tolist() == [True, False, False, False, False]


def test_generator_is_the_only_randomness() -> None:
    m = _masks(0, n=50)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = fuse_observer_labels(m, strategy="random", generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    b = ObserverLabelFusion(strategy="random")(m, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_module_repr_and_dtypes() -> None:
    assert "strategy='mean'" in repr(ObserverLabelFusion(strategy="mean"))
    m = _masks(0).to(torch.int64)
    assert fuse_observer_labels(m, strategy="vote").dtype == torch.float32
    assert fuse_observer_labels(m.double(), strategy="mean").dtype == torch.float64


# --- errors ---------------------------------------------------------------------------------


def test_errors_name_function_and_argument() -> None:
    m = _masks(0)
    with pytest.raises(ValueError, match="fuse_observer_labels: strategy"):
        fuse_observer_labels(m, strategy="staple")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fuse_observer_labels: labels must have shape"):
        fuse_observer_labels(torch.zeros(4))
    with pytest.raises(TypeError, match="fuse_observer_labels: generator"):
        fuse_observer_labels(m, strategy="random", generator=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frame_labels: min_observers must be <= K = 3"):
        frame_labels(m, min_observers=4)
    with pytest.raises(TypeError, match="frame_labels: min_observers"):
        frame_labels(m, min_observers=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prescreen_gate: probabilities must be in"):
        prescreen_gate(torch.tensor([1.5]), threshold=0.5)
    with pytest.raises(TypeError, match="prescreen_gate: threshold"):
        prescreen_gate(torch.tensor([0.5]), threshold="0.5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="frame_outcomes: positive must be a bool"):
        frame_outcomes(torch.zeros(2, 3), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="frame_outcomes: accepted must have shape"):
        frame_outcomes(
            torch.zeros(2, 3), torch.tensor([True, False]), accepted=torch.ones(3).bool()
        )
    with pytest.raises(ValueError, match="segmentation_scores: target"):
        segmentation_scores(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="batch_soft_dice: eps"):
        batch_soft_dice(torch.zeros(2), torch.zeros(2), eps=0.0)
    with pytest.raises(ValueError, match="batch_soft_dice: target"):
        batch_soft_dice(torch.zeros(2, 1, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="ObserverLabelFusion: strategy"):
        ObserverLabelFusion(strategy="max")  # type: ignore[arg-type]
