"""Augmented conditioning (Chen, Zhang, Romero-Soriano, arXiv 2502.04475).

No official code exists (the card: repo-name and string searches found none), so the kernels
are checked against naive per-sample loops of the paper's operations and the card's tests:
mixup with lam = 1 returns x1, the cutmix box area equals 1 - lam, dropout p = 0 is the
identity, partners are always of the same class.
"""

from __future__ import annotations

import pytest
import torch

from posneg.generative.augmented_conditioning import (
    AugCondParams,
    AugmentedConditioning,
    apply_augmented_conditioning,
    same_class_partners,
    sample_augmented_conditioning_params,
)

LABELS = torch.tensor([0, 1, 0, 2, 1, 0, 3, 1])


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _naive(cond: torch.Tensor, p: AugCondParams) -> torch.Tensor:
    out = cond.clone().double()
    c = cond.double()
    for i in range(cond.shape[0]):
        j = int(p.partner[i])
        mode = int(p.mode[i])
        if mode == 0:
            lam = float(p.lam[i])
            out[i] = lam * c[i] + (1 - lam) * c[j]
        elif mode == 1:
            y0, x0, y1, x1 = (int(v) for v in p.boxes[i])  # type: ignore[index]
            for r in range(y0, y1):
                for q in range(x0, x1):
                    out[i, ..., r, q] = c[j, ..., r, q]
        else:
            scale = 1 / (1 - p.p_drop) if p.rescale else 1.0
            out[i] = c[i] * p.keep[i].double() * scale
    return out


@pytest.mark.parametrize("seed", range(4))
def test_partners_same_class_and_not_self(seed: int) -> None:
    partner = same_class_partners(LABELS, generator=_gen(seed))
    assert torch.equal(LABELS[partner], LABELS)
    singles = {3, 6}  # classes 2 and 3 have one member: partner is itself
    for i, j in enumerate(partner.tolist()):
        assert (j == i) == (i in singles)


def test_partners_uniform_within_class() -> None:
    labels = torch.tensor([0, 0, 0, 0])
    counts = torch.zeros(4, 4)
    g = _gen(1)
    for _ in range(400):
        p = same_class_partners(labels, generator=g)
        counts[torch.arange(4), p] += 1
    assert torch.all(torch.diagonal(counts) == 0)
    off = counts[~torch.eye(4, dtype=torch.bool)]
    assert float(off.min()) > 100  # about 133 each
    with_self = same_class_partners(labels, exclude_self=False, generator=_gen(2))
    assert torch.equal(labels[with_self], labels)


@pytest.mark.parametrize("seed", range(3))
def test_apply_matches_naive_loop(seed: int) -> None:
    x = torch.randn(8, 2, 5, 6, generator=_gen(10 + seed))
    p = sample_augmented_conditioning_params(
        LABELS, x.shape, modes=("mixup", "cutmix", "dropout"), p_drop=0.3, generator=_gen(seed)
    )
    assert set(p.mode.tolist()) <= {0, 1, 2}
    torch.testing.assert_close(apply_augmented_conditioning(x, p).double(), _naive(x, p))


def test_embedding_modes_match_naive_loop() -> None:
    e = torch.randn(8, 16, generator=_gen(3), dtype=torch.float64)
    p = sample_augmented_conditioning_params(LABELS, e.shape, p_drop=0.5, generator=_gen(4))
    assert p.boxes is None
    torch.testing.assert_close(apply_augmented_conditioning(e, p), _naive(e, p))


def test_mixup_lam_one_returns_x1() -> None:
    x = torch.randn(8, 4, generator=_gen(5))
    p = sample_augmented_conditioning_params(LABELS, x.shape, modes=("mixup",), generator=_gen(6))
    p1 = AugCondParams(p.partner, p.mode, torch.ones(8), p.boxes, p.keep, p.p_drop, p.rescale)
    torch.testing.assert_close(apply_augmented_conditioning(x, p1), x)


def test_cutmix_area_is_one_minus_lambda() -> None:
    x = torch.randn(8, 1, 8, 8, generator=_gen(7))
    p = sample_augmented_conditioning_params(LABELS, x.shape, modes=("cutmix",), generator=_gen(8))
    out = apply_augmented_conditioning(x, p)
    taken = (out != x).flatten(1).float().mean(1)  # pixels taken from the partner
    partner_differs = p.partner != torch.arange(8)
    torch.testing.assert_close(taken[partner_differs], 1 - p.cut_lam[partner_differs])


def test_dropout_p_zero_identity_and_p_one_zeros() -> None:
    x = torch.randn(8, 5, generator=_gen(9))
    for rescale in (True, False):
        aug = AugmentedConditioning(modes=("dropout",), p_drop=0.0, rescale=rescale)
        torch.testing.assert_close(aug(x, LABELS, generator=_gen(0)), x)
    aug1 = AugmentedConditioning(modes=("dropout",), p_drop=1.0)
    assert torch.equal(aug1(x, LABELS, generator=_gen(0)), torch.zeros_like(x))


def test_dropout_keeps_the_mean() -> None:
    x = torch.ones(4000, 8)
    y = AugmentedConditioning(modes=("dropout",), p_drop=0.25)(
        x, torch.zeros(4000, dtype=torch.long), generator=_gen(1)
    )
    assert float(y.mean()) == pytest.approx(1.0, abs=0.02)
    torch.testing.assert_close(torch.unique(y), torch.tensor([0.0, 4 / 3]))


def test_single_member_class_unchanged_by_mixing() -> None:
    x = torch.randn(3, 1, 4, 4, generator=_gen(2))
    labels = torch.tensor([0, 1, 2])
    aug = AugmentedConditioning(modes=("mixup", "cutmix"))
    torch.testing.assert_close(aug(x, labels, generator=_gen(3)), x)


def test_replay_and_generator_behaviour() -> None:
    x = torch.randn(8, 1, 6, 6, generator=_gen(4))
    aug = AugmentedConditioning(modes=("mixup", "cutmix", "dropout"))
    a = aug(x, LABELS, generator=_gen(11))
    before = torch.get_rng_state()
    b = aug(x, LABELS, generator=_gen(11))
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a, b)
    assert not torch.equal(a, aug(x, LABELS, generator=_gen(12)))
    assert "modes=('mixup', 'cutmix', 'dropout')" in repr(aug)


def test_gradient_flows_to_conditioning() -> None:
    e = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    aug = AugmentedConditioning(modes=("mixup", "dropout"), p_drop=0.2)
    assert torch.autograd.gradcheck(lambda t: aug(t, LABELS, generator=_gen(0)), (e,))


def test_errors() -> None:
    with pytest.raises(ValueError, match="needs a spatial conditioning"):
        sample_augmented_conditioning_params(LABELS, (8, 4), modes=("cutmix",))
    with pytest.raises(ValueError, match="AugmentedConditioning: modes must be one of"):
        AugmentedConditioning(modes=("cutout",))
    with pytest.raises(ValueError, match="AugmentedConditioning: p_drop must be in"):
        AugmentedConditioning(p_drop=1.5)
    with pytest.raises(ValueError, match=r"shape must be \(B, \.\.\.\) with B = 8"):
        sample_augmented_conditioning_params(LABELS, (7, 4))
    with pytest.raises(ValueError, match="labels must be a \\(B,\\) integer tensor"):
        same_class_partners(torch.zeros(3))
    with pytest.raises(TypeError, match="cond must be a floating-point tensor"):
        AugmentedConditioning()(torch.zeros(8, 3, dtype=torch.long), LABELS)
    p = sample_augmented_conditioning_params(LABELS, (8, 4), generator=_gen(0))
    with pytest.raises(ValueError, match="params were drawn for shape"):
        apply_augmented_conditioning(torch.zeros(8, 5), p)
