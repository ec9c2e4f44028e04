"""ATSS and the IoU-threshold assigner against transcriptions of the released code.

Reference: sfzhang15/ATSS, atss_core/modeling/rpn/atss/loss.py, ``prepare_targets``
(commit 0d5af6d69526ae73bafe327295b87a85b37fc220), and maskrcnn-benchmark's
``modeling/matcher.py`` (``Matcher(0.5, 0.4, allow_low_quality_matches=True)``). The references
below are plain float64 loops written from those files' behaviour, not from posneg's code.
"""

from __future__ import annotations

import math

import pytest
import torch

from posneg.detection.atss import (
    BACKGROUND,
    IGNORE,
    ATSSAssigner,
    IoUThresholdAssigner,
    atss_assign,
    iou_threshold_assign,
)


def _iou(a: list[float], b: list[float], offset: float = 0.0) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + offset)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + offset)
    inter = iw * ih
    area_a = (a[2] - a[0] + offset) * (a[3] - a[1] + offset)
    area_b = (b[2] - b[0] + offset) * (b[3] - b[1] + offset)
    return inter / (area_a + area_b - inter)


def _center(b: list[float]) -> tuple[float, float]:
    return (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0


def _reference_atss(
    anchors: list[list[float]],
    levels: list[int],
    gts: list[list[float]],
    k: int,
    offset: float = 0.0,
) -> list[int]:
    """Per-gt loop: candidates per level by centre distance, mean + unbiased std, centre inside."""
    n_a = len(anchors)
    best = [(-math.inf, -1)] * n_a
    for g, box in enumerate(gts):
        gx, gy = _center(box)
        cands: list[int] = []
        start = 0
        for n in levels:
            idx = list(range(start, start + n))
            idx.sort(key=lambda i: math.dist(_center(anchors[i]), (gx, gy)))
            cands += idx[: min(k, n)]
            start += n
        vals = [_iou(anchors[i], box, offset) for i in cands]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
        for i, v in zip(cands, vals, strict=True):
            cx, cy = _center(anchors[i])
            inside = min(cx - box[0], cy - box[1], box[2] - cx, box[3] - cy) > 0.01
            if v >= mean + std and inside and v > best[i][0]:
                best[i] = (v, g)
    return [g for _, g in best]


def _random_scene(seed: int, n_gt: int = 5) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    anchors, levels = [], []
    for size, n in ((8.0, 60), (16.0, 30), (32.0, 12)):
        c = torch.rand(n, 2, generator=g, dtype=torch.float64) * 64
        anchors.append(torch.cat((c - size / 2, c + size / 2), dim=1))
        levels.append(n)
    xy = torch.rand(n_gt, 2, generator=g, dtype=torch.float64) * 48
    wh = torch.rand(n_gt, 2, generator=g, dtype=torch.float64) * 28 + 3
    return torch.cat(anchors), levels, torch.cat((xy, xy + wh), dim=1)


@pytest.mark.parametrize("seed", range(6))
def test_atss_matches_transcription(seed: int) -> None:
    anchors, levels, gts = _random_scene(seed)
    labels = torch.arange(gts.shape[0]) + 10
    got = atss_assign(
        anchors=anchors, num_anchors_per_level=levels, gt_boxes=gts, gt_labels=labels, topk=9
    )
    ref = _reference_atss(anchors.tolist(), levels, gts.tolist(), 9)
    assert got.gt_index.tolist() == ref
    expected_labels = [r + 10 if r >= 0 else BACKGROUND for r in ref]
    assert got.labels.tolist() == expected_labels
    assert got.gt_index.dtype == torch.int64 and got.labels.dtype == torch.int64
    assert int(got.positive.sum()) > 0


def test_iou_convention_differs_from_plus_one_pixel() -> None:
    """The release's maskrcnn-benchmark IoU adds 1 px; posneg's does not (documented choice)."""
    differs = 0
    for seed in range(20):
        anchors, levels, gts = _random_scene(seed, n_gt=6)
        ours = _reference_atss(anchors.tolist(), levels, gts.tolist(), 9, offset=0.0)
        released = _reference_atss(anchors.tolist(), levels, gts.tolist(), 9, offset=1.0)
        got = atss_assign(
            anchors=anchors,
            num_anchors_per_level=levels,
            gt_boxes=gts,
            gt_labels=torch.zeros(6, dtype=torch.int64),
        )
        assert got.gt_index.tolist() == ours
        differs += ours != released
    assert differs > 0


def test_threshold_is_mean_plus_unbiased_std() -> None:
    # One level, 3 anchors in a row; box overlaps them with IoUs (x, y, 0).
    anchors = torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10]])
    box = torch.tensor([[0.0, 0, 14, 10]])
    ious = [10 * 10 / 140, 40 / 140, 0.0]
    t = sum(ious) / 3 + torch.tensor(ious).std().item()
    assert ious[0] >= t > ious[1]  # unbiased std puts anchor 1 below the threshold
    biased = sum(ious) / 3 + torch.tensor(ious).std(unbiased=False).item()
    assert ious[1] < biased
    got = atss_assign(
        anchors=anchors, num_anchors_per_level=[3], gt_boxes=box, gt_labels=torch.tensor([2])
    )
    assert got.labels.tolist() == [2, BACKGROUND, BACKGROUND]


def test_centres_outside_never_positive_and_highest_iou_wins() -> None:
    for seed in range(5):
        anchors, levels, gts = _random_scene(seed, n_gt=8)
        a = atss_assign(
            anchors=anchors,
            num_anchors_per_level=levels,
            gt_boxes=gts,
            gt_labels=torch.zeros(8, dtype=torch.int64),
        )
        for i in torch.nonzero(a.positive).flatten().tolist():
            box = gts[a.gt_index[i]].tolist()
            cx, cy = _center(anchors[i].tolist())
            assert min(cx - box[0], cy - box[1], box[2] - cx, box[3] - cy) > 0.01
        # Alone, each box's positives; together, an anchor goes to its highest-IoU box.
        alone = [
            atss_assign(
                anchors=anchors,
                num_anchors_per_level=levels,
                gt_boxes=gts[j : j + 1],
                gt_labels=torch.zeros(1, dtype=torch.int64),
            ).positive
            for j in range(8)
        ]
        for i in range(anchors.shape[0]):
            claims = [j for j in range(8) if alone[j][i]]
            if claims:
                want = max(claims, key=lambda j: _iou(anchors[i].tolist(), gts[j].tolist()))
                assert a.gt_index[i].item() == want
            else:
                assert a.gt_index[i].item() == BACKGROUND


def test_no_boxes_gives_all_background() -> None:
    anchors, levels, _ = _random_scene(0)
    a = atss_assign(
        anchors=anchors,
        num_anchors_per_level=levels,
        gt_boxes=torch.zeros(0, 4, dtype=torch.float64),
        gt_labels=torch.zeros(0, dtype=torch.int64),
    )
    assert (a.gt_index == BACKGROUND).all() and (a.labels == BACKGROUND).all()
    b = iou_threshold_assign(
        anchors=anchors,
        gt_boxes=torch.zeros(0, 4, dtype=torch.float64),
        gt_labels=torch.zeros(0, dtype=torch.int64),
    )
    assert (b.gt_index == BACKGROUND).all()


def test_topk_clipped_at_level_size() -> None:
    anchors = torch.tensor([[0.0, 0, 8, 8], [4, 0, 12, 8], [0, 0, 16, 16], [20, 20, 36, 36]])
    box = torch.tensor([[0.0, 0, 9, 9]])
    got = atss_assign(
        anchors=anchors,
        num_anchors_per_level=[2, 2],
        gt_boxes=box,
        gt_labels=torch.tensor([0]),
        topk=9,
    )
    ref = _reference_atss(anchors.tolist(), [2, 2], box.tolist(), 9)
    assert got.gt_index.tolist() == ref


def test_no_fallback_as_released_and_ensure_positive() -> None:
    anchors = torch.tensor([[0.0, 0, 8, 8], [8, 0, 16, 8]])
    box, lab = torch.tensor([[0.0, 0, 7, 7]]), torch.tensor([4])
    plain = atss_assign(anchors=anchors, num_anchors_per_level=[2], gt_boxes=box, gt_labels=lab)
    assert not plain.positive.any()
    fixed = atss_assign(
        anchors=anchors,
        num_anchors_per_level=[2],
        gt_boxes=box,
        gt_labels=lab,
        ensure_positive=True,
    )
    assert fixed.labels.tolist() == [4, BACKGROUND]


@pytest.mark.parametrize("seed", range(8))
def test_every_box_gets_a_positive_with_ensure_positive(seed: int) -> None:
    g = torch.Generator().manual_seed(100 + seed)
    anchors, levels, _ = _random_scene(seed)
    # Boxes of every size and aspect, some tiny or elongated, some duplicated.
    xy = torch.rand(12, 2, generator=g, dtype=torch.float64) * 60
    wh = torch.exp(torch.rand(12, 2, generator=g, dtype=torch.float64) * 4) * 0.5
    gts = torch.cat((xy, xy + wh), dim=1)
    gts = torch.cat((gts, gts[:2]))
    a = atss_assign(
        anchors=anchors,
        num_anchors_per_level=levels,
        gt_boxes=gts,
        gt_labels=torch.zeros(14, dtype=torch.int64),
        ensure_positive=True,
    )
    assert set(a.gt_index[a.positive].tolist()) == set(range(14))


def _reference_matcher(
    anchors: list[list[float]], gts: list[list[float]], hi: float, lo: float, low_q: bool
) -> list[int]:
    q = [[_iou(a, g) for a in anchors] for g in gts]  # (G, A), as in the Matcher
    out = []
    best_gt = []
    for i in range(len(anchors)):
        col = [q[j][i] for j in range(len(gts))]
        v = max(col)
        j = col.index(v)
        best_gt.append(j)
        out.append(BACKGROUND if v < lo else IGNORE if v < hi else j)
    if low_q:
        for j in range(len(gts)):
            m = max(q[j])
            for i in range(len(anchors)):
                if q[j][i] == m:
                    out[i] = best_gt[i]
    return out


@pytest.mark.parametrize("low_q", [False, True])
def test_iou_threshold_matches_matcher(low_q: bool) -> None:
    for seed in range(4):
        anchors, _, gts = _random_scene(seed, n_gt=6)
        got = iou_threshold_assign(
            anchors=anchors,
            gt_boxes=gts,
            gt_labels=torch.arange(6),
            low_quality_matches=low_q,
        )
        assert got.gt_index.tolist() == _reference_matcher(
            anchors.tolist(), gts.tolist(), 0.5, 0.4, low_q
        )


def _grid_anchors(size: float, stride: float, extent: float) -> torch.Tensor:
    c = torch.arange(stride / 2, extent, stride, dtype=torch.float64)
    cy, cx = torch.meshgrid(c, c, indexing="ij")
    ctr = torch.stack((cx.flatten(), cy.flatten()), dim=1)
    return torch.cat((ctr - size / 2, ctr + size / 2), dim=1)


def test_iou_threshold_drops_small_boxes_atss_does_not() -> None:
    levels = [_grid_anchors(16.0, 4.0, 32.0), _grid_anchors(32.0, 8.0, 32.0)]
    anchors = torch.cat(levels)
    small = torch.tensor([[9.0, 9, 18, 17]], dtype=torch.float64)  # best IoU 72 / 256
    lab = torch.tensor([1])
    hard = iou_threshold_assign(
        anchors=anchors, gt_boxes=small, gt_labels=lab, low_quality_matches=False
    )
    assert not hard.positive.any()
    lq = iou_threshold_assign(
        anchors=anchors, gt_boxes=small, gt_labels=lab, low_quality_matches=True
    )
    assert lq.positive.sum() >= 1
    atss = atss_assign(
        anchors=anchors,
        num_anchors_per_level=[len(x) for x in levels],
        gt_boxes=small,
        gt_labels=lab,
    )
    assert atss.positive.sum() >= 1


def test_symmetric_small_box_gets_no_positive_without_fallback() -> None:
    """An 8x8 box: 9 candidates at IoU 1/4 and 9 at 1/16, so mean + std (unbiased) > 1/4."""
    levels = [_grid_anchors(16.0, 4.0, 32.0), _grid_anchors(32.0, 8.0, 32.0)]
    anchors = torch.cat(levels)
    box = torch.tensor([[10.0, 10, 18, 18]], dtype=torch.float64)
    vals = torch.tensor([0.25] * 9 + [1 / 16] * 9, dtype=torch.float64)
    assert vals.mean() + vals.std() > 0.25
    kw = {"anchors": anchors, "num_anchors_per_level": [64, 16], "gt_boxes": box}
    plain = atss_assign(gt_labels=torch.tensor([1]), **kw)
    assert plain.gt_index.tolist() == _reference_atss(anchors.tolist(), [64, 16], box.tolist(), 9)
    assert not plain.positive.any()
    fixed = atss_assign(gt_labels=torch.tensor([1]), ensure_positive=True, **kw)
    assert int(fixed.positive.sum()) == 1


def test_center_in_box_filter_ignores_outside_positives() -> None:
    anchors = torch.tensor([[0.0, 0, 10, 10], [9, 0, 19, 10]])
    box = torch.tensor([[6.0, 0, 15, 10]])  # anchor 0's centre (5, 5) lies outside
    lab = torch.tensor([3])
    plain = iou_threshold_assign(
        anchors=anchors, gt_boxes=box, gt_labels=lab, pos_iou=0.25, neg_iou=0.2
    )
    assert plain.labels.tolist() == [3, 3]
    cib = iou_threshold_assign(
        anchors=anchors, gt_boxes=box, gt_labels=lab, pos_iou=0.25, neg_iou=0.2, center_in_box=True
    )
    assert cib.labels.tolist() == [IGNORE, 3]


def test_modules_match_functions_and_repr() -> None:
    anchors, levels, gts = _random_scene(1)
    lab = torch.arange(gts.shape[0])
    m = ATSSAssigner(topk=5, ensure_positive=True)
    f = atss_assign(
        anchors=anchors,
        num_anchors_per_level=levels,
        gt_boxes=gts,
        gt_labels=lab,
        topk=5,
        ensure_positive=True,
    )
    assert torch.equal(m(anchors, levels, gts, lab).gt_index, f.gt_index)
    assert "topk=5" in repr(m)
    n = IoUThresholdAssigner(0.6, 0.3, low_quality_matches=False)
    g = iou_threshold_assign(
        anchors=anchors,
        gt_boxes=gts,
        gt_labels=lab,
        pos_iou=0.6,
        neg_iou=0.3,
        low_quality_matches=False,
    )
    assert torch.equal(n(anchors, gts, lab).labels, g.labels)
    assert "pos_iou=0.6" in repr(n)


def test_errors() -> None:
    anchors, levels, gts = _random_scene(0)
    lab = torch.zeros(gts.shape[0], dtype=torch.int64)
    kw = {"anchors": anchors, "gt_boxes": gts, "gt_labels": lab}
    with pytest.raises(ValueError, match="atss_assign: num_anchors_per_level must sum"):
        atss_assign(num_anchors_per_level=[1, 2], **kw)
    with pytest.raises(ValueError, match="atss_assign: topk must be"):
        atss_assign(num_anchors_per_level=levels, topk=0, **kw)
    with pytest.raises(ValueError, match=r"atss_assign: gt_labels must have shape \(G,\)"):
        atss_assign(anchors=anchors, num_anchors_per_level=levels, gt_boxes=gts, gt_labels=lab[:1])
    with pytest.raises(TypeError, match="atss_assign: gt_labels must be an integer tensor"):
        atss_assign(
            anchors=anchors, num_anchors_per_level=levels, gt_boxes=gts, gt_labels=lab.double()
        )
    with pytest.raises(ValueError, match=r"atss_assign: anchors must have shape \(A, 4\)"):
        atss_assign(
            anchors=anchors[:, :3], num_anchors_per_level=levels, gt_boxes=gts, gt_labels=lab
        )
    with pytest.raises(ValueError, match="iou_threshold_assign: neg_iou must be <= pos_iou"):
        iou_threshold_assign(pos_iou=0.4, neg_iou=0.5, **kw)
    with pytest.raises(ValueError, match="IoUThresholdAssigner: pos_iou must be in"):
        IoUThresholdAssigner(pos_iou=1.5)
    with pytest.raises(TypeError, match="ATSSAssigner: ensure_positive must be"):
        ATSSAssigner(ensure_positive=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="atss_assign: gt_labels must be >= 0"):
        atss_assign(num_anchors_per_level=levels, anchors=anchors, gt_boxes=gts, gt_labels=lab - 1)
