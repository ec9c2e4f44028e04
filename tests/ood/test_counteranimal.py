"""Card tests of posneg.ood.counteranimal (protocol from arXiv 2403.11497; no code released)."""

from __future__ import annotations

import math

import pytest
import torch

from posneg.ood.counteranimal import (
    curate_counter_split,
    effective_robustness,
    fit_reference_line,
    group_accuracy,
    split_by_attribute,
)


def _naive_groups(y, pred, counter, c):
    cells = [[[0, 0], [0, 0]] for _ in range(c)]  # [class][group] -> [right, total]
    for a, b, g in zip(y.tolist(), pred.tolist(), counter.tolist(), strict=True):
        cells[a][int(g)][0] += int(a == b)
        cells[a][int(g)][1] += 1
    common = [
        a == b for a, b, g in zip(y.tolist(), pred.tolist(), counter.tolist(), strict=True) if not g
    ]
    count = [
        a == b for a, b, g in zip(y.tolist(), pred.tolist(), counter.tolist(), strict=True) if g
    ]
    return cells, sum(common) / len(common), sum(count) / len(count)


def test_group_accuracy_matches_naive_loop() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (60,), generator=g)
    pred = torch.where(
        torch.rand(60, generator=g) < 0.7, y, torch.randint(0, 4, (60,), generator=g)
    )
    counter = torch.rand(60, generator=g) < 0.3
    r = group_accuracy(y_true=y, y_pred=pred, counter=counter, num_classes=5)
    cells, common, count = _naive_groups(y, pred, counter, 4)
    assert r.acc_common == pytest.approx(common) and r.acc_counter == pytest.approx(count)
    assert r.drop == pytest.approx(common - count)
    for c in range(4):
        for k in range(2):
            right, total = cells[c][k]
            if total:
                assert r.per_class[c, k].item() == pytest.approx(right / total)
            else:
                assert math.isnan(r.per_class[c, k].item())
    assert r.per_class[4].isnan().all()  # class 4 has no images
    drops = [
        cells[c][0][0] / cells[c][0][1] - cells[c][1][0] / cells[c][1][1]
        for c in range(4)
        if cells[c][0][1] and cells[c][1][1]
    ]
    assert r.class_avg_drop == pytest.approx(sum(drops) / len(drops))


def test_pooled_equals_class_averaged_with_equal_group_sizes() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.arange(3).repeat_interleave(10)
    counter = torch.tensor([False] * 5 + [True] * 5).repeat(3)
    pred = torch.where(torch.rand(30, generator=g) < 0.6, y, (y + 1) % 3)
    r = group_accuracy(y_true=y, y_pred=pred, counter=counter)
    assert r.drop == pytest.approx(r.class_avg_drop)
    assert r.acc_common == pytest.approx(r.class_avg_common)


def test_logits_and_label_mask() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0]])
    y = torch.tensor([2, 2])
    counter = torch.tensor([False, True])
    assert group_accuracy(y_true=y, y_pred=logits, counter=counter).acc_common == 0.0
    mask = torch.tensor([True, False, True])  # a restricted label space changes the answer
    assert (
        group_accuracy(y_true=y, y_pred=logits, counter=counter, label_mask=mask).acc_common == 1.0
    )


def test_model_without_the_spurious_feature_has_no_drop() -> None:
    g = torch.Generator().manual_seed(2)
    y = torch.randint(0, 5, (4000,), generator=g)
    counter = torch.rand(4000, generator=g) < 0.5
    pred = torch.where(torch.rand(4000, generator=g) < 0.8, y, (y + 1) % 5)  # ignores the group
    assert abs(group_accuracy(y_true=y, y_pred=pred, counter=counter).drop) < 0.04


@pytest.mark.parametrize("scale", ["logit", "probit", "linear"])
def test_reference_model_on_the_line_has_zero_er(scale: str) -> None:
    common = torch.tensor([0.6, 0.7, 0.8, 0.9], dtype=torch.float64)
    counter = torch.tensor([0.4, 0.45, 0.6, 0.62], dtype=torch.float64)
    a, b = fit_reference_line(ref_common=common, ref_counter=counter, scale=scale)
    # a synthetic model exactly on the fitted line
    from posneg.ood.counteranimal import _forward, _inverse

    on_line = _inverse(a * _forward(torch.tensor([0.75], dtype=torch.float64), scale) + b, scale)
    er = effective_robustness(
        acc_common=[0.75], acc_counter=on_line, ref_common=common, ref_counter=counter, scale=scale
    )
    assert er.item() == pytest.approx(0.0, abs=1e-12)


def test_er_identity_slope_one_is_minus_drop_minus_b() -> None:
    common = [0.5, 0.7, 0.9]
    counter = [0.3, 0.5, 0.7]  # slope 1, intercept b = -0.2
    a, b = fit_reference_line(ref_common=common, ref_counter=counter, scale="linear")
    assert a == pytest.approx(1.0) and b == pytest.approx(-0.2)
    er = effective_robustness(
        acc_common=[0.8, 0.6],
        acc_counter=[0.75, 0.2],
        ref_common=common,
        ref_counter=counter,
        scale="linear",
    )
    drops = torch.tensor([0.05, 0.4], dtype=torch.float64)
    torch.testing.assert_close(er, -drops - b)


def test_fit_matches_naive_least_squares_in_logit_space() -> None:
    xs, ys = [0.55, 0.7, 0.82, 0.93], [0.3, 0.52, 0.6, 0.81]
    lx = [math.log(v / (1 - v)) for v in xs]
    ly = [math.log(v / (1 - v)) for v in ys]
    mx, my = sum(lx) / 4, sum(ly) / 4
    slope = sum((u - mx) * (v - my) for u, v in zip(lx, ly, strict=True)) / sum(
        (u - mx) ** 2 for u in lx
    )
    a, b = fit_reference_line(ref_common=xs, ref_counter=ys, scale="logit")
    assert a == pytest.approx(slope) and b == pytest.approx(my - slope * mx)


def test_split_by_attribute() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2])
    attr = torch.tensor([1, 0, 0, 0, 1])
    usual = torch.tensor([1, 0, 0])
    assert split_by_attribute(labels=labels, attribute=attr, usual=usual).tolist() == [
        False,
        True,
        False,
        False,
        True,
    ]


def test_curate_counter_split_picks_max_drop_pair_with_deterministic_ties() -> None:
    # class 0: attribute 0 acc 1.0, 1 acc 0.5, 2 acc 0.0 -> (0, 2); class 1: ties -> (0, 1)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    attr = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 3])
    correct = torch.tensor([True, True, True, False, False, False, True, False, False, False])
    group, pairs = curate_counter_split(correct=correct, labels=labels, attribute=attr)
    assert pairs == {0: (0, 2), 1: (0, 1)}
    assert group.tolist() == [0, 0, -1, -1, 1, 1, 0, 1, -1, -1]
    # min_group drops small attribute groups: class 1 has one image per value -> left out
    _, pairs2 = curate_counter_split(correct=correct, labels=labels, attribute=attr, min_group=2)
    assert pairs2 == {0: (0, 2)}


def test_errors() -> None:
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="group_accuracy: both the common and the counter"):
        group_accuracy(y_true=y, y_pred=y, counter=torch.tensor([False, False]))
    with pytest.raises(TypeError, match="group_accuracy: counter must be a bool"):
        group_accuracy(y_true=y, y_pred=y, counter=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="fit_reference_line: scale"):
        fit_reference_line(ref_common=[0.5, 0.6], ref_counter=[0.4, 0.5], scale="log")
    with pytest.raises(ValueError, match="fit_reference_line: ref_common must not be constant"):
        fit_reference_line(ref_common=[0.5, 0.5], ref_counter=[0.4, 0.5])
    with pytest.raises(ValueError, match="effective_robustness: acc_common must be"):
        effective_robustness(
            acc_common=[1.5], acc_counter=[0.5], ref_common=[0.5, 0.6], ref_counter=[0.4, 0.5]
        )
    with pytest.raises(ValueError, match="split_by_attribute: labels must lie"):
        split_by_attribute(
            labels=torch.tensor([3]), attribute=torch.tensor([0]), usual=torch.tensor([0])
        )
