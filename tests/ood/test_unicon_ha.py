"""UniCon-HA (paper only, no public code): naive float64 loops, reductions to SupCon/SimCLR,
soft-aggregation weights, hierarchical loss, score, errors."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from posneg.losses.info_nce import nt_xent
from posneg.losses.supcon import supcon
from posneg.ood.unicon_ha import (
    UniCLRLoss,
    UniConHAScorer,
    anomaly_score,
    augment,
    hierarchical_loss,
    rotation_outliers,
    soft_weights,
    uniclr_loss,
    with_rotation_outliers,
)

F64 = torch.float64


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(a * a for a in v))
    return [a / n for a in v]


def naive_uniclr(z1, z2, inl, tau, labels=None, weights=None) -> float:  # type: ignore[no-untyped-def]
    """Eqs. 4-5 (and 6-7 with the library's global normalisation) as plain loops."""
    n = z1.shape[0]
    z = [_unit(r.tolist()) for r in torch.cat([z1, z2])]
    flags = inl.tolist() * 2
    lab = None if labels is None else labels.tolist() * 2

    def sim(i: int, j: int) -> float:
        return sum(a * b for a, b in zip(z[i], z[j], strict=True)) / tau

    def logp(i: int, j: int) -> float:
        den = sum(math.exp(sim(i, k)) for k in range(2 * n) if k != i)
        return sim(i, j) - math.log(den)

    def positives(i: int) -> list[int]:
        if flags[i]:
            return [
                j for j in range(2 * n) if j != i and flags[j] and (lab is None or lab[j] == lab[i])
            ]
        return [(i + n) % (2 * n)]

    total = 0.0
    if weights is None:
        for i in range(2 * n):
            p = positives(i)
            total += -sum(logp(i, j) for j in p) / len(p)
        return total / n
    inlier_idx = [i for i in range(2 * n) if flags[i]]
    w = dict(zip(inlier_idx, weights.tolist(), strict=True))
    num = den = 0.0
    for i in inlier_idx:
        for j in positives(i):
            num += w[i] * w[j] * logp(i, j)
            den += w[i] * w[j]
    total = -len(inlier_idx) * num / den
    for i in range(2 * n):
        if not flags[i]:
            total += -logp(i, positives(i)[0])
    return total / n


INL = torch.tensor([True, True, True, False, False, False])


@pytest.mark.parametrize("tau", [0.5, 0.2])
def test_uniclr_matches_naive_loop(tau: float) -> None:
    z1, z2 = _randn(6, 4, seed=1), _randn(6, 4, seed=2)
    got = uniclr_loss(z1, z2, INL, temperature=tau)
    assert got.item() == pytest.approx(naive_uniclr(z1, z2, INL, tau), rel=1e-10)


def test_uniclr_labelled_variant_matches_naive_loop() -> None:
    z1, z2 = _randn(6, 4, seed=3), _randn(6, 4, seed=4)
    labels = torch.tensor([0, 1, 0, 0, 0, 0])
    got = uniclr_loss(z1, z2, INL, temperature=0.5, labels=labels)
    assert got.item() == pytest.approx(naive_uniclr(z1, z2, INL, 0.5, labels), rel=1e-10)


def test_soft_aggregation_matches_naive_loop() -> None:
    z1, z2 = _randn(6, 4, seed=5), _randn(6, 4, seed=6)
    w = torch.tensor([0.1, 0.3, 0.05, 0.25, 0.2, 0.1], dtype=F64)
    got = uniclr_loss(z1, z2, INL, temperature=0.5, weights=w)
    assert got.item() == pytest.approx(naive_uniclr(z1, z2, INL, 0.5, None, w), rel=1e-10)


def test_no_outliers_is_one_class_supcon() -> None:
    z1, z2 = _randn(5, 3, seed=7), _randn(5, 3, seed=8)
    inl = torch.ones(5, dtype=torch.bool)
    ref = supcon(torch.cat([z1, z2]), torch.zeros(10, dtype=torch.long), temperature=0.5)
    # (1/N) Σ over 2N anchors = 2 × the mean over anchors
    assert uniclr_loss(z1, z2, inl, temperature=0.5).item() == pytest.approx(2 * ref.item())


def test_distinct_labels_or_all_outliers_is_simclr() -> None:
    z1, z2 = _randn(5, 3, seed=9), _randn(5, 3, seed=10)
    ref = 2 * nt_xent(z1, z2, temperature=0.5).item()
    inl = torch.ones(5, dtype=torch.bool)
    assert uniclr_loss(z1, z2, inl, labels=torch.arange(5)).item() == pytest.approx(ref)
    assert uniclr_loss(z1, z2, ~inl).item() == pytest.approx(ref)


def test_unilateral_asymmetry_inliers_pulled_together() -> None:
    # inliers all equal -> their loss is lower than when the inliers are spread
    base = _randn(6, 4, seed=11)
    tight = base.clone()
    tight[:3] = base[0]
    spread_loss = uniclr_loss(base, base, INL)
    tight_loss = uniclr_loss(tight, tight, INL)
    assert tight_loss < spread_loss


def test_soft_weights_sum_to_one_and_match_loop() -> None:
    z = _randn(6, 3, seed=12)
    w = soft_weights(z, temperature=0.5)
    assert w.sum().item() == pytest.approx(1.0)
    u = [_unit(r.tolist()) for r in z]
    e = [
        [math.exp(sum(a * b for a, b in zip(u[i], u[j], strict=True)) / 0.5) for j in range(6)]
        for i in range(6)
    ]
    rows = [sum(e[i][j] for j in range(6) if j != i) for i in range(6)]
    for i in range(6):
        assert w[i].item() == pytest.approx(rows[i] / sum(rows), rel=1e-10)


def test_far_view_gets_smallest_weight() -> None:
    z = torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.9, 0.2], [-1.0, 0.0]], dtype=F64)
    assert int(soft_weights(z).argmin()) == 3


def test_uniform_weights_equal_uniclr() -> None:
    z1, z2 = _randn(6, 4, seed=13), _randn(6, 4, seed=14)
    w = torch.full((6,), 1 / 6, dtype=F64)
    a = uniclr_loss(z1, z2, INL, weights=w)
    assert a.item() == pytest.approx(uniclr_loss(z1, z2, INL).item(), rel=1e-12)


def test_hierarchical_loss_is_weighted_stage_mean() -> None:
    s1 = [_randn(6, 4, seed=15), _randn(6, 5, seed=16)]
    s2 = [_randn(6, 4, seed=17), _randn(6, 5, seed=18)]
    got = hierarchical_loss(s1, s2, INL, lambdas=[0.5, 2.0], soft_aggregation=False)
    want = (0.5 * uniclr_loss(s1[0], s2[0], INL) + 2.0 * uniclr_loss(s1[1], s2[1], INL)) / 2
    assert got.item() == pytest.approx(want.item())
    sa = hierarchical_loss(s1, s2, INL, lambdas=[0.5, 2.0])
    w = soft_weights(torch.cat([s1[1][:3], s2[1][:3]]))
    want_sa = (
        0.5 * uniclr_loss(s1[0], s2[0], INL) + 2.0 * uniclr_loss(s1[1], s2[1], INL, weights=w)
    ) / 2
    assert sa.item() == pytest.approx(want_sa.item())


def test_module_gradients_and_pickle() -> None:
    z1 = _randn(6, 4, seed=19).requires_grad_(True)
    loss_fn = UniCLRLoss(0.3, soft_aggregation=True)
    assert "soft_aggregation=True" in repr(loss_fn)
    loss_fn(z1, _randn(6, 4, seed=20), INL).backward()
    assert z1.grad is not None and torch.isfinite(z1.grad).all()
    assert pickle.loads(pickle.dumps(loss_fn)).temperature == 0.3


def test_rotations_and_augment() -> None:
    x = torch.arange(8, dtype=F64).reshape(2, 1, 2, 2)
    out = rotation_outliers(x)
    assert out.shape == (6, 1, 2, 2)
    assert torch.equal(out[2:4], torch.flip(x, dims=(-2, -1)))  # 180°
    batch, flags = with_rotation_outliers(x)
    assert batch.shape[0] == 8 and flags.tolist() == [True, True] + [False] * 6
    img = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(augment(img, strength=0.0), img)
    a = augment(img, strength=1.0, generator=torch.Generator().manual_seed(1))
    b = augment(img, strength=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, img)


def test_anomaly_score_max_cosine() -> None:
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)
    feats = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, -1.0]], dtype=F64)
    s = anomaly_score(feats, train)
    want = [-1.0, -1 / math.sqrt(2), 1 / math.sqrt(2)]
    assert s.tolist() == pytest.approx(want)
    tta = torch.stack([feats, feats.flip(0)])
    assert anomaly_score(tta, train).tolist() == pytest.approx(((s + s.flip(0)) / 2).tolist())
    scorer = UniConHAScorer().fit(train)
    fresh = UniConHAScorer()
    fresh.load_state_dict(scorer.state_dict())
    assert torch.equal(fresh.score(feats), s)


def test_errors_name_function_and_argument() -> None:
    z = _randn(6, 4)
    with pytest.raises(ValueError, match="uniclr_loss: is_inlier"):
        uniclr_loss(z, z, INL[:3])
    with pytest.raises(TypeError, match="uniclr_loss: is_inlier"):
        uniclr_loss(z, z, INL.long())
    with pytest.raises(ValueError, match="uniclr_loss: weights"):
        uniclr_loss(z, z, INL, weights=torch.ones(2, dtype=F64))
    with pytest.raises(ValueError, match="temperature"):
        UniCLRLoss(0.0)
    with pytest.raises(ValueError, match="hierarchical_loss: lambdas"):
        hierarchical_loss([z], [z], INL, lambdas=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"UniConHAScorer\.score"):
        UniConHAScorer().score(z)
    with pytest.raises(ValueError, match="augment: strength"):
        augment(torch.zeros(1, 1, 4, 4), strength=2.0)


def test_augment_shift_matches_naive_crop() -> None:
    img = torch.rand(4, 2, 5, 5, generator=torch.Generator().manual_seed(3), dtype=F64)
    out = augment(img, strength=0.5, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    shifts = torch.randint(0, 3, (4, 2), generator=g)
    scale = 1 - 0.25 * torch.rand(4, 1, 1, 1, generator=g, dtype=F64)
    noise = 0.05 * torch.randn(img.shape, generator=g, dtype=F64)
    pad = torch.nn.functional.pad(img, (1, 1, 1, 1))
    for i in range(4):
        a, b = int(shifts[i, 0]), int(shifts[i, 1])
        want = pad[i, :, a : a + 5, b : b + 5] * scale[i] + noise[i]
        assert torch.allclose(out[i], want)
