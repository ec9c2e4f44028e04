"""posneg.mixing MixUp / CutMix against timm.data.Mixup (timm 1.0.31, ``timm/data/mixup.py``).

timm draws from numpy's global RNG (``_params_per_batch``: a ``rand()`` for ``prob``, a
``rand()`` for ``switch_prob`` when both modes are on, ``beta``; ``rand_bbox``: ``randint`` for
cy, then cx), pairs sample ``i`` with ``B - 1 - i`` (``flip(0)``), smooths labels to
``off = eps / K``, ``on = 1 - eps + eps / K`` before mixing, and with ``correct_lam`` mixes the
labels by the area the clipped box realises. Its box ``[c - cut // 2, c + (cut + 1) // 2)`` has
exactly ``cut = int(S sqrt(1 - lam))`` pixels before clipping, as posneg's.

Each test seeds numpy, replays timm's own draws to read lambda and the box, and gives them to
posneg as ``MixUpParams`` / ``CutMixParams`` with ``index[i] = B - 1 - i``. The deliberate
difference is ``correct_lam=False`` (posneg always mixes labels by the realised area).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
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

peer("torchvision")  # timm imports torchvision: skip cleanly where it is broken
timm_mixup = peer("timm.data.mixup")

B, C, H, W, K = 6, 3, 13, 10, 7
FLIP = torch.arange(B - 1, -1, -1)  # timm's partner of sample i: flip(0)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.rand(B, C, H, W, generator=g, dtype=torch.float64), torch.randint(
        0, K, (B,), generator=g
    )


@pytest.fixture(autouse=True)
def _keep_numpy_state() -> Iterator[None]:
    """timm draws from numpy's global RNG: seed it per test, restore it afterwards."""
    state = np.random.get_state()  # noqa: NPY002
    yield
    np.random.set_state(state)  # noqa: NPY002


def _seed(seed: int) -> None:
    np.random.seed(seed)  # noqa: NPY002 - timm's own RNG is numpy's global one


def _run_timm(mix: object, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple:
    _seed(seed)
    return mix(x.clone(), y)  # type: ignore[operator]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_mixup_batch_mode_matches_timm(seed: int, smoothing: float) -> None:
    x, y = _batch()
    mix = timm_mixup.Mixup(
        mixup_alpha=0.4, cutmix_alpha=0.0, label_smoothing=smoothing, num_classes=K
    )
    x_t, y_t = _run_timm(mix, x, y, seed)
    _seed(seed)
    lam, use_cutmix = mix._params_per_batch()
    assert not use_cutmix
    params = MixUpParams(lam=torch.full((B,), lam, dtype=torch.float32), index=FLIP)
    # lambda as float32 in posneg: compare the images at float32 precision of lambda
    out = apply_mixup(x, y, params, num_classes=K, label_smoothing=smoothing)
    torch.testing.assert_close(out.x, x_t, rtol=0, atol=1e-7)
    torch.testing.assert_close(out.targets, y_t.to(torch.float64), rtol=0, atol=1e-6)


def _timm_box(mix: object, x: torch.Tensor, seed: int) -> tuple[float, tuple[int, ...], float]:
    """Replay timm's draws: the drawn lambda, the box (yl, yh, xl, xh), the label lambda."""
    _seed(seed)
    lam, use_cutmix = mix._params_per_batch()  # type: ignore[attr-defined]
    assert use_cutmix
    box, lam_label = timm_mixup.cutmix_bbox_and_lam(
        x.shape,
        lam,
        correct_lam=mix.correct_lam,  # type: ignore[attr-defined]
    )
    return lam, tuple(int(v) for v in box), float(lam_label)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cutmix_batch_mode_matches_timm(seed: int, smoothing: float) -> None:
    x, y = _batch()
    mix = timm_mixup.Mixup(
        mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=smoothing, num_classes=K
    )
    x_t, y_t = _run_timm(mix, x, y, seed)
    _, (yl, yh, xl, xh), lam_label = _timm_box(mix, x, seed)
    boxes = torch.tensor([[yl, xl, yh, xh]]).expand(B, 4).clone()
    params = CutMixParams(index=FLIP, boxes=boxes, size=(H, W))
    out = apply_cutmix(x, y, params, num_classes=K, label_smoothing=smoothing)
    assert torch.equal(out.x, x_t)
    assert params.lam[0].item() == pytest.approx(lam_label, abs=1e-7)
    torch.testing.assert_close(out.targets, y_t.to(torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_switch_mode_picks_the_same_branch_and_matches(seed: int) -> None:
    """Both modes on (timm's ``switch_prob``): whichever branch timm takes, posneg's kernel with
    timm's parameters gives the same batch."""
    x, y = _batch()
    mix = timm_mixup.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=K)
    x_t, y_t = _run_timm(mix, x, y, seed)
    _seed(seed)
    lam, use_cutmix = mix._params_per_batch()
    if use_cutmix:
        _, (yl, yh, xl, xh), _ = _timm_box(mix, x, seed)
        boxes = torch.tensor([[yl, xl, yh, xh]]).expand(B, 4).clone()
        out = apply_cutmix(
            x,
            y,
            CutMixParams(index=FLIP, boxes=boxes, size=(H, W)),
            num_classes=K,
            label_smoothing=0.1,
        )
        assert torch.equal(out.x, x_t)
    else:
        params = MixUpParams(lam=torch.full((B,), lam, dtype=torch.float32), index=FLIP)
        out = apply_mixup(x, y, params, num_classes=K, label_smoothing=0.1)
        torch.testing.assert_close(out.x, x_t, rtol=0, atol=1e-7)
    torch.testing.assert_close(out.targets, y_t.to(torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_mixup_elem_mode_matches_timm_per_sample(seed: int) -> None:
    """timm's ``mode="elem"``: one lambda per sample (float32), partner ``B - 1 - i``; posneg's
    per-sample ``MixUpParams`` with the same lambdas."""
    x, y = _batch()
    mix = timm_mixup.Mixup(
        mixup_alpha=0.4, cutmix_alpha=0.0, mode="elem", label_smoothing=0.0, num_classes=K
    )
    x_t, y_t = _run_timm(mix, x, y, seed)
    _seed(seed)
    lam, _ = mix._params_per_elem(B)
    params = MixUpParams(lam=torch.from_numpy(lam.astype(np.float32)), index=FLIP)
    out = apply_mixup(x, y, params, num_classes=K)
    torch.testing.assert_close(out.x, x_t, rtol=0, atol=1e-7)
    torch.testing.assert_close(out.targets, y_t.to(torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(30))
def test_cutmix_box_rule_equals_timm(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """posneg's sampler and timm's ``rand_bbox`` given the same lambda and centre give the same
    box (timm >= 1.0's far edge ``c + (cut + 1) // 2``; the clovaai code's ``c + cut // 2`` is
    one pixel short for odd cuts, see tests/mixing/test_cutmix.py)."""
    params = sample_cutmix_params(
        B, (H, W), alpha=1.0, generator=torch.Generator().manual_seed(seed)
    )
    g = torch.Generator().manual_seed(seed)  # replay posneg's documented order: lam, cy, cx
    lam = float(_rng.beta(1.0, 1.0, (1,), dtype=torch.float32, generator=g)[0])
    cy = int(_rng.randint(H, (1,), generator=g)[0])
    cx = int(_rng.randint(W, (1,), generator=g)[0])
    draws = iter([cy, cx])
    monkeypatch.setattr(timm_mixup.np.random, "randint", lambda *a, **k: next(draws))
    yl, yh, xl, xh = timm_mixup.rand_bbox((B, C, H, W), lam)
    assert [int(v) for v in params.boxes[0]] == [int(yl), int(xl), int(yh), int(xh)]


def test_correct_lam_false_differs_on_clipped_boxes() -> None:
    """Deliberate difference. With ``correct_lam=False`` timm mixes the labels by the drawn
    lambda even when the box is clipped at the border; posneg always uses the realised area
    (``CutMixParams.lam``), as the CutMix paper's code does. The images agree."""
    x, y = _batch()
    mix = timm_mixup.Mixup(
        mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False, label_smoothing=0.0, num_classes=K
    )
    for seed in range(200):
        lam, (yl, yh, xl, xh), lam_label = _timm_box(mix, x, seed)
        area = (yh - yl) * (xh - xl)
        if abs((1.0 - area / (H * W)) - lam) > 0.05:  # a clipped box
            break
    else:  # pragma: no cover - 200 draws always clip one
        pytest.fail("no clipped box in 200 draws")
    assert lam_label == lam
    x_t, y_t = _run_timm(mix, x, y, seed)
    boxes = torch.tensor([[yl, xl, yh, xh]]).expand(B, 4).clone()
    params = CutMixParams(index=FLIP, boxes=boxes, size=(H, W))
    out = apply_cutmix(x, y, params, num_classes=K)
    assert torch.equal(out.x, x_t)
    i = int(torch.nonzero(y != y.flip(0))[0])  # a sample whose partner has another class
    assert y_t[i, y[i]].item() == pytest.approx(lam, abs=1e-6)
    assert out.targets[i, y[i]].item() == pytest.approx(1.0 - area / (H * W), abs=1e-6)
    assert abs(out.targets[i, y[i]].item() - y_t[i, y[i]].item()) > 0.05
