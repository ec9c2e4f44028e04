"""Grounded Teacher (posneg.detection.grounded_teacher).

Reference: ``Tajamul21/Grounded_Teacher`` at commit 678031b. The ``_released_*`` helpers below
are loop transcriptions, written here, of what ``GT/rcm.py`` (``RCM.get_matches``,
``RCM.mix_crop_new``), ``GT/modeling/roi_heads/fast_rcnn.py`` (``FastRCNNOutputLayers.losses``
with ``class_info``, ``LOG_LOSS = True``, ``DIA_LOSS = False``) and ``GT/engine/trainer.py``
(``threshold_bbox``, ``add_label`` in ``run_step_full_semisup``) compute.
"""

from __future__ import annotations

import math

import pytest
import torch

from posneg.detection.grounded_teacher import (
    CropBank,
    RelationGuidedMix,
    RelationMixParams,
    RelationWeightedLoss,
    apply_relation_mix,
    expert_guidance,
    relation_counts,
    relation_loss_weights,
    relation_momentum,
    relation_weight_matrix,
    relation_weighted_cross_entropy,
    sample_relation_mix,
    update_relation,
)
from posneg.detection.metrics import Detections

# ------------------------------------------------------------------ released transcriptions


def _released_get_matches(
    info: torch.Tensor, gt: torch.Tensor, pred: torch.Tensor, k: int, alpha: float
) -> torch.Tensor:
    """``RCM.get_matches``: pairs without background, counts, row-normalised, EMA on rows."""
    counts = torch.zeros(k, k)
    for g, p in zip(gt.tolist(), pred.tolist(), strict=True):
        if g != k and p != k:
            counts[g, p] += 1.0
    out = info.clone()
    for r in range(k):
        total = float(counts[r].sum())
        if total != 0:
            out[r] = out[r] * alpha + (counts[r] / total) * (1 - alpha)
    return out


def _released_alpha(it: int, burn: int, alpha: float, target: bool) -> float:
    a = alpha
    if it < burn / 2:
        a = 0.5 + (alpha - 0.5) * (it / (burn / 2)) ** 3
    if target and it < burn * 1.5:
        a = 0.5 + (alpha - 0.5) * ((it - (burn - 1)) / (burn / 2)) ** 3
    return a


def _released_weights(
    class_info: torch.Tensor, gt: list[int], pred: list[int], oht_sums: list[float], k: int
) -> list[float]:
    """``losses(..., class_info)`` weight computation, element by element."""
    ci = class_info.clone().double()
    for i in range(k):
        if float(ci[i].sum()) == 0:
            ci[i] = 1.0 / k
    for i in range(k):
        if ci[i, i] == 0:
            ci[i, i] = 1.0 / k
    ci[ci == 0] = 0.001
    for i in range(k):
        if float(ci[i].sum()) > 1:
            continue
        d = float(ci[i, i])
        for j in range(k):
            if j != i:
                ci[i, j] = (float(ci[i, j]) / d) ** 0.5
        ci[i, i] = 1 - (1 - d) ** 0.5
    w = [1.0] * len(gt)
    sel = []
    for n, (g, p) in enumerate(zip(gt, pred, strict=True)):
        if g == p and p != k and g != k:
            w[n] = 1 - float(ci[g, g])
            sel.append(n)
        elif g != p and p != k and g != k:
            w[n] = float(ci[g, p])
            sel.append(n)
    mean = sum(w[n] for n in sel) / len(sel) if sel else 1.0
    if mean == 0:
        mean = 1.0
    w = [1e-5 if (v == 0 or math.isnan(v)) else v for v in w]
    for n in sel:
        w[n] = w[n] / mean
    for n, s in enumerate(oht_sums):
        if s != 1:  # the released mix_mask
            w[n] = 1.0
    return [(v + 1.0) / 2.0 for v in w]


def _dets(scores: list[float], label: int = 0) -> Detections:
    n = len(scores)
    return Detections(
        torch.arange(4 * n, dtype=torch.float32).view(n, 4),
        torch.tensor(scores),
        torch.full((n,), label, dtype=torch.int64),
    )


# ------------------------------------------------------------------------------ relation


def test_relation_counts_and_ema_match_released_get_matches() -> None:
    g = torch.Generator().manual_seed(0)
    k = 4
    info = torch.zeros(k, k)
    ref = info.clone()
    for it in range(6):
        gt = torch.randint(0, k + 1, (40,), generator=g)
        pred = torch.randint(0, k + 1, (40,), generator=g)
        gt[:3] = 2  # row 3 may stay absent in some batches; row 2 always present
        a = relation_momentum(it, burn_up=10)
        ref = _released_get_matches(ref, gt, pred, k, a)
        info = update_relation(info, gt, pred, momentum=a)
        torch.testing.assert_close(info, ref)


def test_relation_counts_drop_background_and_absent_rows() -> None:
    m, present = relation_counts(
        torch.tensor([0, 0, 0, 2]), torch.tensor([1, 2, 1, 0]), num_classes=2
    )
    assert present.tolist() == [True, False]
    torch.testing.assert_close(m, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))


@pytest.mark.parametrize("target", [False, True])
def test_relation_momentum_matches_released_ramp(target: bool) -> None:
    for it in (0, 3, 10, 25, 49, 50, 99, 100, 120, 150, 400):
        assert relation_momentum(it, burn_up=100, target=target) == pytest.approx(
            _released_alpha(it, 100, 0.99, target)
        )
    assert relation_momentum(0, burn_up=100) == 0.5
    assert relation_momentum(10_000, burn_up=100) == 0.99


# ------------------------------------------------------------------------- weighted loss


def test_weights_match_released_loop() -> None:
    g = torch.Generator().manual_seed(1)
    k = 3
    for trial in range(20):
        c = torch.rand(k, k, generator=g)
        c = c / c.sum(1, keepdim=True) * 0.9  # an EMA row: sum below 1
        if trial % 3 == 0:
            c[1] = 0  # an empty row -> uniform
        if trial % 4 == 0:
            c[0, 2] = 0  # a zero -> 0.001: row sum above 1 unless small
        if trial % 5 == 0:
            c[2, 2] = 0  # a zero diagonal -> 1/K
        gt = torch.randint(0, k + 1, (30,), generator=g)
        pred = torch.randint(0, k + 1, (30,), generator=g)
        mixed = torch.rand(30, generator=g) < 0.2
        expected = _released_weights(
            c, gt.tolist(), pred.tolist(), [0.7 if m else 1.0 for m in mixed.tolist()], k
        )
        cw = relation_weight_matrix(c.double())
        got = relation_loss_weights(cw, gt, pred, mixed=mixed)
        torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_weight_matrix_skips_rows_above_one_as_released() -> None:
    c = torch.tensor([[0.6, 0.0], [0.3, 0.5]], dtype=torch.float64)
    cw = relation_weight_matrix(c)
    # row 0: the zero becomes 0.001, sum 0.601 <= 1: transformed
    assert cw[0, 1] == pytest.approx((0.001 / 0.6) ** 0.5)
    assert cw[0, 0] == pytest.approx(1 - 0.4**0.5)
    # a row summing above 1 after the fill is left as is
    c2 = torch.tensor([[0.9995, 0.0], [0.5, 0.5]], dtype=torch.float64)
    assert relation_weight_matrix(c2)[0].tolist() == pytest.approx([0.9995, 0.001])
    assert relation_weight_matrix(c2, log_loss=False)[1].tolist() == pytest.approx([0.5, 0.5])


def test_weighted_cross_entropy_against_float64_loop() -> None:
    g = torch.Generator().manual_seed(2)
    k, n = 3, 12
    logits = torch.randn(n, k + 1, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, k + 1, (n,), generator=g)
    rel = torch.rand(k, k, generator=g, dtype=torch.float64)
    rel = rel / rel.sum(1, keepdim=True) * 0.95
    soft = torch.nn.functional.one_hot(labels, k + 1).double()
    soft[0] = 0
    soft[0, 0], soft[0, 1] = 0.3, 0.7  # a mixed ROI
    pred = logits.argmax(1).tolist()
    w = _released_weights(rel, labels.tolist(), pred, [0.0] + [1.0] * (n - 1), k)
    total = 0.0
    for i in range(n):
        lse = math.log(sum(math.exp(float(v)) for v in logits[i].detach()))
        ce = -sum(float(soft[i, j]) * (float(logits[i, j].detach()) - lse) for j in range(k + 1))
        total += w[i] * ce
    got = relation_weighted_cross_entropy(logits, labels, rel, soft_targets=soft)
    assert float(got.detach()) == pytest.approx(total / n, rel=1e-10)
    got.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    summed = RelationWeightedLoss(reduction="sum")(logits, labels, rel, soft)
    assert float(summed.detach()) == pytest.approx(total)


def test_mixed_rows_differ_from_released_sum_test() -> None:
    """Released: a ROI is "mixed" when sum(target) != 1; for lam e_g + (1 - lam) e_m that sum
    is exactly 1 in float32 for most lam, so the release weights such ROIs by the relation.
    posneg: a row that is not one-hot is mixed (weight 1), whatever the rounding."""
    k = 2
    lam = torch.tensor(0.3)
    row = lam * torch.nn.functional.one_hot(torch.tensor(0), k + 1) + (1 - lam) * (
        torch.nn.functional.one_hot(torch.tensor(1), k + 1)
    )
    assert float(row.sum()) == 1.0  # the release would not count it as mixed
    rel = torch.tensor([[0.5, 0.4], [0.1, 0.8]])
    logits = torch.tensor([[0.0, 3.0, 0.0], [3.0, 0.0, 0.0]])
    labels = torch.tensor([1, 0])  # ROI 0: a majority base mixed with class 1 -> hard label 1
    soft = torch.stack([row, torch.nn.functional.one_hot(torch.tensor(0), k + 1).float()])
    ours = relation_weighted_cross_entropy(logits, labels, rel, soft_targets=soft, reduction="none")
    ce = -(soft * torch.log_softmax(logits, 1)).sum(1)
    assert float(ours[0]) == pytest.approx(float(ce[0]))  # mixed: w = (1 + 1) / 2 = 1
    released = _released_weights(rel, [1, 0], [1, 0], [float(x) for x in soft.sum(1)], k)
    assert released[0] == pytest.approx((0.2**0.5 / ((0.2**0.5 + 0.5**0.5) / 2) + 1) / 2)
    assert released[0] != pytest.approx(1.0)


# --------------------------------------------------------------------------------- mixing


def _bank(k: int = 3, side: int = 10) -> CropBank:
    bank = CropBank(k, max_save=5)
    img = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    for c in range(k):
        bank.add(img, torch.tensor([[0.0, 0.0, side, side]]), torch.tensor([c]))
    return bank


def test_crop_bank_keeps_the_last_crops() -> None:
    bank = CropBank(2, max_save=3)
    img = torch.arange(3 * 8 * 8, dtype=torch.float32).view(3, 8, 8)
    for x in range(5):
        bank.add(img, torch.tensor([[x, 0.0, x + 2.7, 2.0]]), torch.tensor([1]))
    assert bank.sizes().tolist() == [0, 3]
    torch.testing.assert_close(bank.crops[1][-1], img[:, 0:2, 4:6])  # truncated coordinates


def test_mix_lambda_limits_and_class_rules() -> None:
    rel = torch.tensor([[0.9, 0.05, 0.05], [0.3, 0.4, 0.3], [0.2, 0.3, 0.5]])
    bank = _bank()
    boxes = torch.tensor([[0.0, 0.0, 12.0, 12.0]]).repeat(3, 1)
    labels = torch.tensor([0, 1, 2])
    g = torch.Generator().manual_seed(4)
    seen = 0
    for _ in range(300):
        p = sample_relation_mix(rel, boxes, labels, bank, generator=g)
        assert p.minority.tolist() == [False, True, True]  # mean diag 0.6
        for i in torch.nonzero(p.mix).flatten().tolist():
            seen += 1
            assert int(p.mix_class[i]) != i
            lam = float(p.lam[i])
            assert (lam >= 0.5) if p.minority[i] else (lam <= 0.5)
        assert (p.lam[~p.mix] == 1).all() and (p.mix_class[~p.mix] == -1).all()
    assert seen > 50


def test_mix_class_distribution_follows_the_relation() -> None:
    """Majority base g = 0 samples m from C[:, 0] without g; minority from C[g, :]."""
    rel = torch.tensor([[0.9, 0.0, 0.0], [0.6, 0.2, 0.2], [0.2, 0.6, 0.2]])
    bank = _bank()
    boxes = torch.tensor([[0.0, 0.0, 12.0, 12.0]]).repeat(3000, 1)
    labels = torch.tensor([0, 1, 2]).repeat(1000)
    g = torch.Generator().manual_seed(5)
    counts = torch.zeros(3, 3)
    for _ in range(3):
        p = sample_relation_mix(rel, boxes, labels, bank, mix_ratio=0.0, generator=g)
        counts.index_put_((labels[p.mix], p.mix_class[p.mix]), torch.tensor(1.0), accumulate=True)
    # base 0 (majority): v = C[:, 0] = (0, 0.6, 0.2) -> m = 1 three times as often as m = 2
    assert counts[0, 1] / counts[0, 2] == pytest.approx(3.0, rel=0.2)
    # base 1 (minority): v = C[1, :] = (0.6, 0.2, 0.2); m = 1 is skipped -> 0 three times 2
    assert counts[1, 0] / counts[1, 2] == pytest.approx(3.0, rel=0.2)
    # base 2 (minority): v = (0.2, 0.6, 0.2) -> m = 1 three times 0
    assert counts[2, 1] / counts[2, 0] == pytest.approx(3.0, rel=0.2)


def test_beta_half_half_by_inverse_cdf() -> None:
    """Without limit_mix, lam follows Beta(0.5, 0.5): P(lam <= x) = (2 / pi) asin(sqrt(x))."""
    rel = torch.tensor([[0.1, 0.9], [0.9, 0.1]])
    bank = _bank(2)
    boxes = torch.tensor([[0.0, 0.0, 12.0, 12.0]]).repeat(50, 1)
    g = torch.Generator().manual_seed(6)
    lams = []
    for _ in range(200):
        p = sample_relation_mix(
            rel,
            boxes,
            torch.zeros(50, dtype=torch.int64),
            bank,
            mix_ratio=0.0,
            limit_mix=False,
            generator=g,
        )
        lams.append(p.lam[p.mix])
    lam = torch.cat(lams).double()
    for x in (0.1, 0.3, 0.5, 0.8):
        assert float((lam <= x).double().mean()) == pytest.approx(
            2 / math.pi * math.asin(math.sqrt(x)), abs=0.02
        )


def test_mix_skips() -> None:
    rel = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    boxes = torch.tensor([[0.0, 0.0, 12.0, 12.0]])
    g = torch.Generator().manual_seed(7)
    # the whole image is skipped with mix_ratio 1; an empty bank never mixes
    assert not sample_relation_mix(
        rel, boxes, torch.tensor([0]), _bank(2), mix_ratio=1.0, generator=g
    ).mix.any()
    assert not any(
        sample_relation_mix(
            rel, boxes, torch.tensor([0]), CropBank(2), mix_ratio=0.0, generator=g
        ).mix.any()
        for _ in range(50)
    )
    # crops under 0.4x the box are skipped
    small = _bank(2, side=4)
    assert not any(
        sample_relation_mix(
            rel, boxes, torch.tensor([0]), small, mix_ratio=0.0, generator=g
        ).mix.any()
        for _ in range(50)
    )
    # minority boxes are skipped with skip_minority; a relation with small mass too
    rel2 = torch.tensor([[0.9, 0.1], [0.5, 0.2]])
    assert not any(
        sample_relation_mix(
            rel2, boxes, torch.tensor([1]), _bank(2), mix_ratio=0.0, skip_minority=True, generator=g
        ).mix.any()
        for _ in range(50)
    )
    rel3 = torch.tensor([[0.9, 0.01], [0.05, 0.02]])
    assert not any(
        sample_relation_mix(
            rel3, boxes, torch.tensor([1]), _bank(2), mix_ratio=0.0, generator=g
        ).mix.any()
        for _ in range(50)
    )


def test_apply_mix_formula_and_labels() -> None:
    bank = _bank(3)
    img = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    boxes = torch.tensor([[2.0, 3.0, 14.0, 11.0], [16.0, 16.0, 30.0, 30.0]])
    labels = torch.tensor([0, 2])
    params = RelationMixParams(
        mix=torch.tensor([True, True]),
        mix_class=torch.tensor([1, 0]),
        crop_index=torch.tensor([0, 0]),
        lam=torch.tensor([0.25, 0.75]),
        minority=torch.tensor([False, True]),
    )
    out, hard, soft = apply_relation_mix(img, boxes, labels, params, bank)
    crop = torch.nn.functional.interpolate(
        bank.crops[1][0][None].double(), size=(8, 12), mode="bilinear"
    )[0]
    torch.testing.assert_close(out[:, 3:11, 2:14], 0.25 * img[:, 3:11, 2:14] + 0.75 * crop)
    mask = torch.ones(32, 32, dtype=torch.bool)
    mask[3:11, 2:14] = False
    mask[16:30, 16:30] = False
    torch.testing.assert_close(out[:, mask], img[:, mask])
    assert hard.tolist() == [1, 2]  # majority -> crop class; minority -> own class
    torch.testing.assert_close(
        soft, torch.tensor([[0.25, 0.75, 0, 0], [0.25, 0, 0.75, 0]], dtype=torch.float64)
    )
    torch.testing.assert_close(soft.sum(1), torch.ones(2, dtype=torch.float64))


def test_mix_module_generator_determinism_and_global_rng() -> None:
    rel = torch.tensor([[0.9, 0.05, 0.05], [0.3, 0.4, 0.3], [0.2, 0.3, 0.5]])
    bank = _bank()
    img = torch.rand(3, 32, 32)
    boxes = torch.tensor([[0.0, 0.0, 12.0, 12.0], [14.0, 14.0, 30.0, 30.0]])
    mix = RelationGuidedMix(mix_ratio=0.0)
    assert "mix_ratio=0.0" in repr(mix)
    state = torch.get_rng_state()
    a = mix(img, boxes, torch.tensor([0, 1]), rel, bank, generator=torch.Generator().manual_seed(9))
    b = mix(img, boxes, torch.tensor([0, 1]), rel, bank, generator=torch.Generator().manual_seed(9))
    assert torch.equal(torch.get_rng_state(), state)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


# -------------------------------------------------------------------------- expert guidance


def test_expert_guidance_intended_keeps_two_sets() -> None:
    teacher = [_dets([0.9, 0.5], 1), _dets([0.95], 1), _dets([0.85], 1)]
    expert = [None, _dets([0.99, 0.7], 0), _dets([0.81], 0)]
    t, e = expert_guidance(teacher, expert, threshold=0.8)
    assert [len(x.scores) for x in t] == [1, 1, 1]
    assert [x.labels.tolist() for x in t] == [[1], [1], [1]]
    assert [x.labels.tolist() for x in e] == [[], [0], [0]]


def test_expert_guidance_released_overwrite_and_misalignment() -> None:
    """As released: add_label writes the expert list into the same batch by position; images
    without expert boxes are dropped first, so image 0 gets image 1's expert boxes, image 1 gets
    image 2's, and image 2 keeps the teacher's; both passes then see the same labels."""
    teacher = [_dets([0.9], 1), _dets([0.95], 1), _dets([0.85], 1)]
    expert = [None, _dets([0.99], 0), _dets([0.82, 0.81], 0)]
    t, e = expert_guidance(teacher, expert, threshold=0.8, overwrite=True)
    assert t is e
    assert [x.labels.tolist() for x in t] == [[0], [0, 0], [1]]
    assert [round(float(x.scores[0]), 2) for x in t] == [0.99, 0.82, 0.85]
    t2, e2 = expert_guidance(teacher, expert, threshold=0.8)
    assert [x.labels.tolist() for x in t2] == [[1], [1], [1]]
    assert t2 is not e2


# ---------------------------------------------------------------------------------- errors


def test_errors() -> None:
    rel = torch.eye(2) * 0.5
    with pytest.raises(ValueError, match="relation_counts: pred_classes must have shape"):
        relation_counts(torch.tensor([0]), torch.tensor([0, 1]), num_classes=2)
    with pytest.raises(
        ValueError, match=r"relation_counts: gt_classes must hold classes in \[0, 2\]"
    ):
        relation_counts(torch.tensor([3]), torch.tensor([0]), num_classes=2)
    with pytest.raises(TypeError, match="relation_counts: gt_classes must be an integer tensor"):
        relation_counts(torch.tensor([0.0]), torch.tensor([0]), num_classes=2)
    with pytest.raises(ValueError, match="relation_momentum: burn_up must be >= 1"):
        relation_momentum(0, burn_up=0)
    with pytest.raises(ValueError, match="update_relation: relation must have shape"):
        update_relation(torch.zeros(2, 3), torch.tensor([0]), torch.tensor([0]), momentum=0.5)
    with pytest.raises(ValueError, match="update_relation: momentum must be in"):
        update_relation(rel, torch.tensor([0]), torch.tensor([0]), momentum=1.5)
    with pytest.raises(TypeError, match="relation_weight_matrix: relation must be a floating"):
        relation_weight_matrix(torch.eye(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="relation_loss_weights: mixed must be a bool"):
        relation_loss_weights(rel, torch.tensor([0]), torch.tensor([0]), mixed=torch.tensor([1.0]))
    with pytest.raises(
        ValueError, match=r"relation_weighted_cross_entropy: logits must have shape \(N, 3\)"
    ):
        relation_weighted_cross_entropy(torch.zeros(2, 2), torch.tensor([0, 1]), rel)
    with pytest.raises(ValueError, match="relation_weighted_cross_entropy: soft_targets must have"):
        relation_weighted_cross_entropy(
            torch.zeros(2, 3), torch.tensor([0, 1]), rel, soft_targets=torch.zeros(2, 2)
        )
    with pytest.raises(ValueError, match="relation_weighted_cross_entropy: reduction must be"):
        relation_weighted_cross_entropy(
            torch.zeros(2, 3), torch.tensor([0, 1]), rel, reduction="max"
        )
    with pytest.raises(ValueError, match="RelationWeightedLoss: reg must be a finite number"):
        RelationWeightedLoss(reg=-1.0)
    with pytest.raises(TypeError, match="RelationWeightedLoss: log_loss must be a bool"):
        RelationWeightedLoss(log_loss=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="CropBank: max_save must be an integer"):
        CropBank(2, max_save=0)
    with pytest.raises(ValueError, match="sample_relation_mix: bank has 3 classes; relation has 2"):
        sample_relation_mix(rel, torch.zeros(1, 4), torch.tensor([0]), CropBank(3))
    with pytest.raises(ValueError, match="sample_relation_mix: labels must have shape"):
        sample_relation_mix(rel, torch.zeros(2, 4), torch.tensor([0]), CropBank(2))
    with pytest.raises(ValueError, match="RelationGuidedMix: mix_ratio must be in"):
        RelationGuidedMix(mix_ratio=2.0)
    with pytest.raises(ValueError, match="apply_relation_mix: image must be a float"):
        apply_relation_mix(
            torch.zeros(2, 2),
            torch.zeros(0, 4),
            torch.zeros(0, dtype=torch.int64),
            sample_relation_mix(
                rel, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), CropBank(2)
            ),
            CropBank(2),
        )
    with pytest.raises(ValueError, match="expert_guidance: expert must have one entry per image"):
        expert_guidance([_dets([0.9])], [])
    with pytest.raises(ValueError, match="expert_guidance: threshold must be in"):
        expert_guidance([_dets([0.9])], [None], threshold=2.0)
