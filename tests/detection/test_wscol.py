"""Tests of WSCoL's contrastive loss, trusted positives, background switch and clustering.

Transcription source: ``tntek/source-free-domain-adaptive-object-detection`` at commit
67054386, ``detectron2/modeling/meta_arch/losses.py`` (``con_loss``) and
``detectron2/modeling/meta_arch/student_sfda_rcnn_wscol.py`` (``classify_samples``,
``calculate_proposal_variance``, ``pro_obtain_label``, ``prototype_update_pol``). The references
below follow those functions step by step (loops, float64), written here.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from posneg.detection.wscol import (
    WSCoLLoss,
    nms_keep_count,
    proposal_variance,
    prototype_cluster_labels,
    trusted_positives,
    update_prototypes,
    wscol_contrastive_loss,
)


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _classify_samples_ref(features: torch.Tensor, labels: torch.Tensor, bg: int) -> torch.Tensor:
    """``classify_samples(merge='merge', th_con=1.0)``: per-anchor loop, as released."""
    n = features.shape[0]
    f = F.normalize(features.double(), dim=1)
    weight = torch.zeros(n, n, dtype=torch.float64)
    for i in torch.where(labels != bg)[0].tolist():
        same = labels == labels[i]
        if int(same.sum()) <= 1:
            continue
        sim = f @ f[i]
        sim[i] = -1e9
        top = torch.topk(sim, k=int(same.sum()) - 1).indices
        topk_mask = torch.zeros(n, dtype=torch.bool)
        topk_mask[top] = True
        trusted = topk_mask & same
        trusted[i] = False
        non_trusted = same.clone()
        non_trusted[i] = False
        non_trusted &= ~trusted
        weight[i][non_trusted] = 1.0
    return weight


def _con_loss_ref(
    z: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, tau: float, alpha: float
):  # type: ignore[no-untyped-def]
    """Double loop over ``con_loss`` (float64)."""
    n = len(y)
    f = F.normalize(z.double(), dim=1).tolist()
    s = [
        [sum(a * b for a, b in zip(f[i], f[j], strict=True)) / tau for j in range(n)]
        for i in range(n)
    ]
    logp = []
    for i in range(n):
        mx = max(s[i])
        row = [v - mx for v in s[i]]
        lse = math.log(sum(math.exp(v) for v in row))
        logp.append([v - lse for v in row])
    mask = [[1.0 if (y[i] == y[j] or i == j) else 0.0 for j in range(n)] for i in range(n)]

    def mean_nonzero(vals: list[float]) -> float:
        nz = [v for v in vals if v != 0]
        return sum(nz) / len(nz)

    if w is not None and float(w.sum()) != 0:
        ww = w.tolist()
        hp, nhp = [], []
        for i in range(n):
            a = sum(ww[i][j] * logp[i][j] for j in range(n)) / (sum(ww[i]) + 1e-5)
            m2 = [mask[i][j] * (1 - ww[i][j]) for j in range(n)]
            b = sum(m2[j] * logp[i][j] for j in range(n)) / (sum(m2) + 1e-5)
            hp.append(-0.5 * a)
            nhp.append(-0.5 * b)
        return alpha * mean_nonzero(hp) + (1 - alpha) * mean_nonzero(nhp)
    rows = [-0.5 * sum(mask[i][j] * logp[i][j] for j in range(n)) / sum(mask[i]) for i in range(n)]
    return mean_nonzero(rows)


def _case(seed: int = 0, n: int = 14, k: int = 3):  # type: ignore[no-untyped-def]
    g = _g(seed)
    labels = torch.randint(0, k + 1, (n,), generator=g)
    return torch.randn(n, 5, generator=g), torch.randn(n, 5, generator=g), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trusted_positives_match_released_loop(seed: int) -> None:
    _strong, weak, labels = _case(seed)
    pos = trusted_positives(features=weak, labels=labels, background=3)
    ref = _classify_samples_ref(weak, labels, 3)
    assert torch.equal(pos.untrusted, ref.bool())
    same = labels[:, None] == labels[None, :]
    assert not bool((pos.trusted & ~same).any())  # trusted is a subset of same-label
    assert not bool((pos.trusted & pos.untrusted).any())
    assert not bool(pos.trusted.diagonal().any() or pos.untrusted.diagonal().any())
    fg = labels != 3
    assert not bool(pos.trusted[~fg].any() or pos.untrusted[~fg].any())
    # every foreground anchor with company: trusted + untrusted = its other same-label items
    rows = fg & (same.sum(1) > 1)
    other = same & ~torch.eye(len(labels), dtype=torch.bool)
    assert torch.equal((pos.trusted | pos.untrusted)[rows], other[rows])


@pytest.mark.parametrize(("alpha", "merge"), [(0.0, "merge"), (0.3, "merge"), (0.0, "none")])
def test_contrastive_loss_matches_double_loop(alpha: float, merge: str) -> None:
    for seed in range(3):
        strong, weak, labels = _case(seed)
        w = _classify_samples_ref(weak, labels, 3)
        got = wscol_contrastive_loss(
            features=strong.double(),
            labels=labels,
            untrusted=w.bool(),
            alpha=alpha,
            merge=merge,
        )
        ref = _con_loss_ref(strong, labels, w if merge == "merge" else None, 0.07, alpha)
        assert float(got) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_self_only_positive_gives_half_log_softmax_diagonal() -> None:
    z = torch.randn(5, 4, generator=_g(3), dtype=torch.float64)
    labels = torch.arange(5)
    got = wscol_contrastive_loss(features=z, labels=labels, temperature=0.5)
    s = F.normalize(z, dim=1) @ F.normalize(z, dim=1).T / 0.5
    expected = (-0.5 * torch.log_softmax(s, dim=1).diagonal()).mean()
    assert float(got) == pytest.approx(float(expected), rel=1e-12)


def test_self_pair_stays_in_denominator_unlike_supcon() -> None:
    z = torch.randn(6, 4, generator=_g(4), dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    got = float(wscol_contrastive_loss(features=z, labels=labels, temperature=0.2))
    s = F.normalize(z, dim=1) @ F.normalize(z, dim=1).T / 0.2
    same = (labels[:, None] == labels[None, :]).double()
    with_self = torch.log_softmax(s, 1)
    without = torch.log_softmax(s.masked_fill(torch.eye(6, dtype=torch.bool), -math.inf), 1)
    ref_with = float((-0.5 * (same * with_self).sum(1) / same.sum(1)).mean())
    off = same - torch.eye(6, dtype=torch.float64)
    ref_supcon = float((-0.5 * (off * without.nan_to_num(neginf=0.0)).sum(1) / off.sum(1)).mean())
    assert got == pytest.approx(ref_with, rel=1e-12)
    assert abs(got - ref_supcon) > 1e-3


def test_untrusted_items_only_in_denominator_when_alpha_zero() -> None:
    strong, weak, labels = _case(5)
    pos = trusted_positives(features=weak, labels=labels, background=3)
    assert bool(pos.untrusted.any())
    z = strong.clone().requires_grad_(True)
    loss = wscol_contrastive_loss(features=z, labels=labels, untrusted=pos.untrusted)
    loss.backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all())
    plain = wscol_contrastive_loss(features=strong, labels=labels, merge="none")
    assert float(loss.detach()) != pytest.approx(float(plain))


def test_no_untrusted_pairs_falls_back_to_plain_branch() -> None:
    z = torch.randn(6, 3, generator=_g(6), dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    none = torch.zeros(6, 6, dtype=torch.bool)
    a = wscol_contrastive_loss(features=z, labels=labels, untrusted=none)
    b = wscol_contrastive_loss(features=z, labels=labels, merge="none")
    assert float(a) == float(b)


def test_loss_is_zero_not_nan_when_every_row_is_zero() -> None:
    # one item: log p = 0 exactly, the release's mean of nothing is NaN
    z = torch.randn(1, 3, requires_grad=True)
    loss = wscol_contrastive_loss(features=z, labels=torch.tensor([0]))
    assert float(loss) == 0.0
    loss.backward()


def _nms_count_ref(boxes: torch.Tensor, scores: torch.Tensor, t: float) -> int:
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            b1, b2 = boxes[i].tolist(), boxes[j].tolist()
            iw = max(0.0, min(b1[2], b2[2]) - max(b1[0], b2[0]))
            ih = max(0.0, min(b1[3], b2[3]) - max(b1[1], b2[1]))
            inter = iw * ih
            a1 = (b1[2] - b1[0]) * (b1[3] - b1[1])
            a2 = (b2[2] - b2[0]) * (b2[3] - b2[1])
            if inter / (a1 + a2 - inter) > t:
                ok = False
                break
        if ok:
            keep.append(i)
    return len(keep)


def test_proposal_variance_matches_numpy_var_of_nms_counts() -> None:
    g = _g(7)
    xy = torch.rand(40, 2, generator=g) * 50
    wh = torch.rand(40, 2, generator=g) * 20 + 4
    boxes = torch.cat((xy, xy + wh), 1)
    scores = torch.rand(40, generator=g)
    keep = scores > 0.5
    counts = [_nms_count_ref(boxes[keep], scores[keep], t) for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)]
    mean = sum(counts) / 6
    ref = sum((c - mean) ** 2 for c in counts) / 6
    assert proposal_variance(boxes=boxes, scores=scores) == pytest.approx(ref)
    for t in (0.0, 0.3):
        assert nms_keep_count(
            boxes=boxes[keep], scores=scores[keep], iou_threshold=t
        ) == _nms_count_ref(boxes[keep], scores[keep], t)


def test_proposal_variance_zero_for_disjoint_boxes_and_no_proposals() -> None:
    boxes = torch.tensor([[0.0, 0, 5, 5], [10, 10, 15, 15], [20, 0, 25, 5]])
    assert proposal_variance(boxes=boxes, scores=torch.tensor([0.9, 0.8, 0.7])) == 0.0
    assert proposal_variance(boxes=boxes, scores=torch.tensor([0.1, 0.2, 0.5])) == 0.0


def _pro_obtain_label_ref(fea, logits, proto, act, step, fg_index, fg_labels):  # type: ignore[no-untyped-def]
    """``pro_obtain_label`` step by step (float64); prototypes rows as released."""
    k = logits.shape[1]
    out = torch.softmax(logits.double(), 1)
    predict = out.argmax(1)
    allf = torch.cat((proto.double(), fea.double()), 0)
    allf = torch.cat((allf, torch.ones(allf.shape[0], 1, dtype=torch.float64)), 1)
    allf = allf / allf.norm(p=2, dim=1, keepdim=True)
    prototype, allf = allf[: k - 1], allf[k - 1 :]
    aff = out
    for i in range(step):
        initc = aff.T @ allf
        initc = initc / (1e-8 + aff.sum(0)[:, None])
        if i == 0 and act:
            initc[: k - 1] = prototype
        cls_count = torch.eye(k, dtype=torch.float64)[predict].sum(0)
        labelset = torch.nonzero(cls_count > 0).squeeze()
        if labelset.dim() == 0:
            break
        dd = torch.cdist(allf, initc[labelset], p=2)
        predict = labelset[dd.argmin(1)]
        predict[fg_index] = fg_labels
        aff = torch.eye(k, dtype=torch.float64)[predict]
    label = labelset[dd.argmin(1)]
    label[fg_index] = fg_labels
    return label, dd, labelset


@pytest.mark.parametrize("act", [False, True])
def test_clustering_matches_released_steps(act: bool) -> None:
    for seed in range(4):
        g = _g(10 + seed)
        n, k = 30, 3
        fea = torch.randn(n, 6, generator=g, dtype=torch.float64)
        logits = torch.randn(n, k + 1, generator=g, dtype=torch.float64) * 2
        proto = torch.randn(k, 6, generator=g, dtype=torch.float64)
        fg_index = torch.tensor([0, 3, 7, 11])
        fg_labels = torch.tensor([2, 0, 1, 1])
        got = prototype_cluster_labels(
            features=fea,
            logits=logits,
            fg_index=fg_index,
            fg_labels=fg_labels,
            prototypes=proto if act else None,
        )
        lab, dd, ls = _pro_obtain_label_ref(fea, logits, proto, act, 4, fg_index, fg_labels)
        assert torch.equal(got.labels, lab)
        assert torch.allclose(got.distances, dd)
        assert torch.equal(got.labelset, ls)


def test_clustering_never_changes_foreground_labels() -> None:
    g = _g(20)
    fea = torch.randn(25, 4, generator=g)
    logits = torch.randn(25, 4, generator=g)
    fg_index = torch.tensor([1, 2, 5, 8, 13])
    fg_labels = torch.tensor([0, 0, 2, 1, 2])
    for steps in (1, 2, 4, 7):
        out = prototype_cluster_labels(
            features=fea, logits=logits, fg_index=fg_index, fg_labels=fg_labels, steps=steps
        )
        assert torch.equal(out.labels[fg_index], fg_labels)
        assert int(out.labels.min()) >= 0 and int(out.labels.max()) <= 3


def test_one_step_with_perfect_prototypes_is_nearest_prototype() -> None:
    # every class has a prototype and the teacher predicts every class once at least
    g = _g(21)
    k, d = 3, 5
    proto = torch.randn(k, d, generator=g, dtype=torch.float64) * 3
    assign = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    fea = proto[assign] + 0.01 * torch.randn(9, d, generator=g, dtype=torch.float64)
    logits = torch.full((9, k + 1), -5.0, dtype=torch.float64)
    logits[torch.arange(9), torch.tensor([0, 1, 2, 1, 0, 2, 2, 1, 0])] = 5.0
    out = prototype_cluster_labels(
        features=fea,
        logits=logits,
        fg_index=torch.zeros(0, dtype=torch.int64),
        fg_labels=torch.zeros(0, dtype=torch.int64),
        prototypes=proto,
        steps=1,
    )
    assert torch.equal(out.labels, assign)


def test_single_cluster_at_step_zero_takes_it() -> None:
    fea = torch.randn(5, 3, generator=_g(22))
    logits = torch.tensor([[5.0, 0.0, 0.0]]).expand(5, 3)
    out = prototype_cluster_labels(
        features=fea,
        logits=logits,
        fg_index=torch.tensor([4]),
        fg_labels=torch.tensor([1]),
    )
    assert out.labels.tolist() == [0, 0, 0, 0, 1]


def test_update_prototypes_copy_then_ema() -> None:
    p = torch.zeros(3, 2)
    init = torch.zeros(3, dtype=torch.bool)
    f1 = torch.tensor([[1.0, 1.0], [3.0, 1.0], [5.0, 5.0]])
    p1, i1 = update_prototypes(
        prototypes=p, initialized=init, features=f1, labels=torch.tensor([0, 0, 2])
    )
    assert p1.tolist() == [[2.0, 1.0], [0.0, 0.0], [5.0, 5.0]]
    assert i1.tolist() == [True, False, True]
    assert not bool(init.any())  # inputs untouched
    p2, _ = update_prototypes(
        prototypes=p1, initialized=i1, features=torch.tensor([[0.0, 1.0]]), labels=torch.tensor([0])
    )
    assert p2[0].tolist() == pytest.approx([0.6 * 2.0, 1.0])


def test_module_switch_and_skip() -> None:
    strong, weak, labels = _case(30, n=16)
    loss = WSCoLLoss(num_classes=3, weight=0.5)
    fg = labels != 3
    pos = trusted_positives(features=weak, labels=labels, background=3)
    all_ = wscol_contrastive_loss(features=strong, labels=labels, untrusted=pos.untrusted)
    sub = pos.untrusted[fg][:, fg]
    fg_only = wscol_contrastive_loss(features=strong[fg], labels=labels[fg], untrusted=sub)
    assert float(loss(strong, weak, labels, 0.0)) == pytest.approx(0.5 * float(all_))
    assert float(loss(strong, weak, labels, 20.0)) == pytest.approx(0.5 * float(all_))
    assert float(loss(strong, weak, labels, 20.5)) == pytest.approx(0.5 * float(fg_only))
    few = torch.tensor([0, 1] + [3] * 14)
    z = strong.clone().requires_grad_(True)
    out = loss(z, weak, few)
    assert float(out) == 0.0
    out.backward()


def test_half_inputs_compute_in_float32() -> None:
    strong, weak, labels = _case(31)
    out = WSCoLLoss(num_classes=3)(strong.half(), weak.half(), labels)
    assert out.dtype == torch.float32
    ref = WSCoLLoss(num_classes=3)(strong.half().float(), weak.half().float(), labels)
    assert float(out) == pytest.approx(float(ref), rel=1e-5)


def test_errors_name_the_function_and_argument() -> None:
    z = torch.randn(4, 3)
    y = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="wscol_contrastive_loss: temperature"):
        wscol_contrastive_loss(features=z, labels=y, temperature=0.0)
    with pytest.raises(ValueError, match="wscol_contrastive_loss: untrusted"):
        wscol_contrastive_loss(features=z, labels=y, untrusted=torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="wscol_contrastive_loss: merge"):
        wscol_contrastive_loss(features=z, labels=y, merge="weight")
    with pytest.raises(TypeError, match="trusted_positives: labels"):
        trusted_positives(features=z, labels=y.float(), background=2)
    with pytest.raises(ValueError, match="proposal_variance: boxes"):
        proposal_variance(boxes=torch.zeros(3, 3), scores=torch.zeros(3))
    with pytest.raises(ValueError, match="prototype_cluster_labels: fg_labels"):
        prototype_cluster_labels(
            features=z,
            logits=torch.zeros(4, 3),
            fg_index=torch.tensor([0]),
            fg_labels=torch.tensor([2]),
        )
    with pytest.raises(ValueError, match="prototype_cluster_labels: prototypes"):
        prototype_cluster_labels(
            features=z,
            logits=torch.zeros(4, 3),
            fg_index=torch.tensor([0]),
            fg_labels=torch.tensor([1]),
            prototypes=torch.zeros(3, 3),
        )
    with pytest.raises(ValueError, match="update_prototypes: momentum"):
        update_prototypes(
            prototypes=torch.zeros(2, 3),
            initialized=torch.zeros(2, dtype=torch.bool),
            features=z,
            labels=y,
            momentum=1.5,
        )
    with pytest.raises(ValueError, match="WSCoLLoss: alpha"):
        WSCoLLoss(num_classes=2, alpha=2.0)
    with pytest.raises(ValueError, match="WSCoLLoss: weak"):
        WSCoLLoss(num_classes=2)(z, torch.randn(4, 2), y)


def test_repr() -> None:
    r = repr(WSCoLLoss(num_classes=4, weight=0.5, merge="none"))
    assert "num_classes=4" in r and "weight=0.5" in r and "merge='none'" in r
