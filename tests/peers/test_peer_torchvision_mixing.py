"""posneg.mixing MixUp / CutMix against torchvision.transforms.v2 MixUp / CutMix (torchvision 0.29).

torchvision (``torchvision/transforms/v2/_augment.py``) draws ``lam ~ Beta(alpha, alpha)`` from
torch's global RNG in ``make_params`` and pairs sample ``i`` with ``i - 1`` (``roll(1, 0)``);
labels are one-hot (float32) and mixed as ``roll(y) (1 - lam) + y lam``. CutMix's box is
``[c - h, c + h)`` with ``h = int(0.5 sqrt(1 - lam) S)`` around a uniform centre, clipped, and
the labels use the area-corrected ``lam_adjusted``.

Both libraries are fed the same randomness: torchvision's own ``make_params`` output is frozen
and handed to posneg as ``MixUpParams`` / ``CutMixParams`` with ``index[i] = (i - 1) mod B``.
The one deliberate difference is CutMix's box side for odd cuts (``test_cutmix_box_side_*``).
"""

from __future__ import annotations

import math

import pytest
import torch
from _peer import peer

from posneg import _rng
from posneg.mixing import (
    CutMixParams,
    MixUpParams,
    apply_cutmix,
    apply_mixup,
    sample_cutmix_params,
)

v2 = peer("torchvision.transforms.v2")

B, C, H, W, K = 6, 3, 14, 11, 5
ROLL = (torch.arange(B) - 1) % B  # torchvision's partner of sample i: roll(1, 0)


def _batch(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, C, H, W, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, K, (B,), generator=g)
    return x, y


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.375, 0.8125, 1.0])
def test_mixup_matches_torchvision(lam: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same lambda (dyadic, exact in float32) and torchvision's roll pairing: identical images
    (float64) and soft labels."""
    x, y = _batch()
    mix = v2.MixUp(alpha=1.0, num_classes=K)
    monkeypatch.setattr(mix, "make_params", lambda flat_inputs: {"lam": lam})
    x_tv, y_tv = mix(x.clone(), y)
    params = MixUpParams(lam=torch.full((B,), lam), index=ROLL)
    out = apply_mixup(x, y, params, num_classes=K)
    torch.testing.assert_close(out.x, x_tv, rtol=0, atol=1e-15)
    torch.testing.assert_close(out.targets, y_tv.to(torch.float64), rtol=0, atol=1e-7)


@pytest.mark.parametrize("seed", range(8))
def test_cutmix_matches_torchvision_given_its_box(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchvision draws the box (its own make_params, seeded); posneg pastes the same box from
    the same partner: identical images, and posneg's realised ``params.lam`` equals
    torchvision's ``lam_adjusted`` (to float32 precision: posneg keeps lambda as float32)."""
    x, y = _batch()
    cm = v2.CutMix(alpha=1.0, num_classes=K)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        p = cm.make_params([x])
    monkeypatch.setattr(cm, "make_params", lambda flat_inputs: p)
    x_tv, y_tv = cm(x.clone(), y)
    x1, y1, x2, y2 = p["box"]
    boxes = torch.tensor([[y1, x1, y2, x2]]).expand(B, 4).clone()
    params = CutMixParams(index=ROLL, boxes=boxes, size=(H, W))
    out = apply_cutmix(x, y, params, num_classes=K)
    assert torch.equal(out.x, x_tv)
    assert params.lam[0].item() == pytest.approx(p["lam_adjusted"], abs=1e-7)
    torch.testing.assert_close(out.targets, y_tv.to(torch.float64), rtol=0, atol=1e-6)


def _posneg_draws(seed: int, alpha: float = 1.0) -> tuple[float, int, int, CutMixParams]:
    """posneg's sampler with a seeded generator, and its draws replayed in the documented order
    (lambda, cy, cx): what torchvision is then given."""
    params = sample_cutmix_params(
        B, (H, W), alpha=alpha, generator=torch.Generator().manual_seed(seed)
    )
    g = torch.Generator().manual_seed(seed)
    lam = float(_rng.beta(alpha, alpha, (1,), dtype=torch.float32, generator=g)[0])
    cy = int(_rng.randint(H, (1,), generator=g)[0])
    cx = int(_rng.randint(W, (1,), generator=g)[0])
    return lam, cy, cx, params


class _FixedBeta:
    def __init__(self, lam: float) -> None:
        self.lam = lam

    def sample(self, shape: tuple[int, ...] = ()) -> torch.Tensor:
        return torch.tensor([self.lam], dtype=torch.float64)


def _torchvision_box(
    lam: float, cy: int, cx: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, int, int, int]:
    """torchvision's make_params given lambda and centre (its Beta and randint draws replaced);
    returned as (y0, x0, y1, x1)."""
    cm = v2.CutMix(alpha=1.0, num_classes=K)
    draws = iter([torch.tensor([cx]), torch.tensor([cy])])  # torchvision draws r_x, then r_y
    with monkeypatch.context() as m:
        m.setattr(cm, "_dist", _FixedBeta(lam))
        m.setattr(torch, "randint", lambda *a, **k: next(draws))
        x1, y1, x2, y2 = cm.make_params([torch.zeros(B, C, H, W)])["box"]
    return y1, x1, y2, x2


@pytest.mark.parametrize("seed", range(40))
def test_cutmix_box_side_differs_by_one_for_odd_cuts(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliberate difference. Same lambda and centre: posneg's unclipped box has exactly
    ``floor(S sqrt(1 - lam))`` pixels per side (the paper's cut size), starting at
    ``c - cut // 2``; torchvision's has ``2 int(0.5 S sqrt(1 - lam))``, i.e. one pixel less
    when the cut is odd. The near edges agree; the far edge of posneg is one further exactly
    when the cut is odd and that edge is not clipped. Both use the realised area for labels."""
    lam, cy, cx, params = _posneg_draws(seed)
    ty0, tx0, ty1, tx1 = _torchvision_box(lam, cy, cx, monkeypatch)
    py0, px0, py1, px1 = (int(v) for v in params.boxes[0])
    ratio = math.sqrt(1.0 - lam)
    for (t0, t1), (p0, p1), c, size in (
        ((ty0, ty1), (py0, py1), cy, H),
        ((tx0, tx1), (px0, px1), cx, W),
    ):
        cut = math.floor(size * ratio)
        assert t0 == p0
        far_unclipped = c - cut // 2 + cut
        expected_gap = 1 if (cut % 2 == 1 and far_unclipped <= size) else 0
        assert p1 - t1 == expected_gap
