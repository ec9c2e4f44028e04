"""SAA: loss history, Otsu naive flags, the half-paste of the strong view.

Reference: GuanGui-nju/SAA @ e044aa6, ``datasets/dataset.py``:
``update_loss``: ``history_loss[idx] = 0.001 * history_loss[idx] + 0.999 * iter_loss``;
``update_mask``: ``g = skimage.filters.threshold_otsu(sorted H)``; ``easy_mask[H < g] = True``,
``easy_mask[H > g] = False``; ``__getitem__``: naive -> ``img_s1 = RA(img)``, ``img_s2 = RA(img)``,
``if torch.rand(1) > 0.5``: paste ``img_s2.crop((0, 0, W/2, W))`` at (0, 0) else the top half.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from posneg.selection.saa import (
    NaiveSampleTracker,
    SAAPasteParams,
    SampleAdaptiveAugmentation,
    apply_saa_paste,
    otsu_threshold,
    saa_strong_views,
    sample_saa_paste_params,
    update_loss_history,
    update_naive_mask,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_otsu_matches_skimage(dtype: torch.dtype, seed: int) -> None:
    filters = pytest.importorskip("skimage.filters")
    g = torch.Generator().manual_seed(seed)
    h = torch.cat([torch.rand(300, generator=g) * 0.5, 1 + torch.rand(200, generator=g) * 3]).to(
        dtype
    )
    h[:50] = 0.0  # never-drawn samples
    ref = filters.threshold_otsu(np.sort(h.numpy()))
    assert float(otsu_threshold(h)) == pytest.approx(float(ref), rel=1e-6)


def test_otsu_constant_returns_value() -> None:
    assert float(otsu_threshold(torch.full((5,), 0.3))) == pytest.approx(0.3)


def _official_mask(history: torch.Tensor, easy: torch.Tensor) -> torch.Tensor:
    from skimage import filters

    g = filters.threshold_otsu(np.sort(history.numpy()))
    easy = easy.clone()
    easy[history < g] = True
    easy[history > g] = False
    return easy


def test_update_mask_matches_official_and_card_test_1() -> None:
    pytest.importorskip("skimage")
    g = torch.Generator().manual_seed(3)
    h = torch.rand(1000, generator=g, dtype=torch.float64) ** 3 * 5
    prev = torch.rand(1000, generator=g) > 0.5
    got = update_naive_mask(h, prev)
    torch.testing.assert_close(got, _official_mask(h, prev))
    t = otsu_threshold(h)
    assert got.double().mean() == (h < t).double().mean()  # no ties here


def test_ties_keep_their_flag() -> None:
    h = torch.tensor([1.0, 1.0, 1.0])  # constant: t equals every value
    prev = torch.tensor([True, False, True])
    torch.testing.assert_close(update_naive_mask(h, prev), prev)


def test_history_ema_matches_official_update_loss() -> None:
    g = torch.Generator().manual_seed(4)
    h = torch.rand(10, generator=g)
    idx = torch.tensor([1, 4, 7])
    loss = torch.rand(3, generator=g)
    ref = h.clone()
    ref[idx] = 0.001 * ref[idx] + 0.999 * loss
    torch.testing.assert_close(update_loss_history(h, idx, loss), ref)


def test_momentum_zero_keeps_last_loss_and_duplicates_last_wins() -> None:
    h = torch.ones(4)
    out = update_loss_history(
        h, torch.tensor([2, 0, 2]), torch.tensor([5.0, 6.0, 7.0]), momentum=0.0
    )
    assert out.tolist() == [6.0, 1.0, 7.0, 1.0]
    assert h.tolist() == [1.0] * 4  # not in place


def test_below_threshold_sample_still_updates_history() -> None:
    from posneg.losses.fixmatch import fixmatch_terms

    w = torch.zeros(2, 3)  # confidence 1/3 < 0.95: masked out of the loss
    s = torch.randn(2, 3)
    terms = fixmatch_terms(w, s, threshold=0.95)
    assert terms.mask.sum() == 0
    tr = NaiveSampleTracker(5, history_momentum=0.0)
    tr.update(torch.tensor([0, 3]), terms.ce)
    assert tr.history_[0] > 0 and tr.history_[3] > 0 and tr.n_updates_.tolist() == [1, 0, 0, 1, 0]


def test_paste_equals_pil_crop_paste() -> None:
    """Card test 3: with deterministic views, the pasted half is B's and the rest is A's."""
    g = torch.Generator().manual_seed(5)
    a = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8, generator=g)
    b = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8, generator=g)
    params = SAAPasteParams(left=torch.tensor([True, False]))
    out = apply_saa_paste(a, b, torch.tensor([True, True]), params)
    for i, box in enumerate([(0, 0, 4, 8), (0, 0, 8, 4)]):
        img_s1 = Image.fromarray(a[i, 0].numpy())
        img_s2 = Image.fromarray(b[i, 0].numpy()).crop(box)
        img_s1.paste(img_s2, box)
        assert np.array_equal(out[i, 0].numpy(), np.asarray(img_s1))
    not_naive = apply_saa_paste(a, b, torch.tensor([False, False]), params)
    assert torch.equal(not_naive, a)


def test_paste_sequences_first_half() -> None:
    a, b = torch.zeros(2, 1, 6), torch.ones(2, 1, 6)
    out = apply_saa_paste(a, b, torch.tensor([True, False]), sample_saa_paste_params(2))
    assert out[0, 0].tolist() == [1, 1, 1, 0, 0, 0] and out[1].sum() == 0


def test_no_naive_reproduces_fixmatch_strong_view() -> None:
    """Card test 4: selection disabled gives the plain strong augmentation exactly."""
    from posneg.augment.randaugment import RandAugment

    ra = RandAugment(num_ops=3)
    x = torch.rand(6, 1, 16, 16)
    ref = ra(x, generator=torch.Generator().manual_seed(0))
    out = saa_strong_views(
        x, torch.zeros(6, dtype=torch.bool), ra, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(out, ref)
    saa = SampleAdaptiveAugmentation(ra)
    naive = torch.tensor([True, False, True, False, False, True])
    y1 = saa(x, naive, generator=torch.Generator().manual_seed(1))
    y2 = saa(x, naive, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y1, y2)
    a = ra(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y1[~naive], a[~naive])


def test_generator_leaves_global_rng() -> None:
    state = torch.get_rng_state()
    sample_saa_paste_params(8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())


def test_tracker_state_dict_round_trip_and_fraction() -> None:
    tr = NaiveSampleTracker(6)
    tr.update(torch.tensor([0, 1, 2]), torch.tensor([0.1, 3.0, 2.9]))
    tr.update_mask()
    assert 0 < tr.naive_fraction() < 1  # never-drawn samples (H = 0) are naive
    assert tr.naive_[3:].all()
    other = NaiveSampleTracker(6)
    other.load_state_dict(tr.state_dict())
    for k in ("history_", "naive_", "n_updates_"):
        assert torch.equal(getattr(other, k), getattr(tr, k))
    assert other.n_mask_updates_ == 1 and "num_samples=6" in repr(other)


def test_errors() -> None:
    with pytest.raises(ValueError, match="update_loss_history: momentum must be in"):
        update_loss_history(torch.zeros(3), torch.tensor([0]), torch.ones(1), momentum=2.0)
    with pytest.raises(ValueError, match="update_loss_history: index values must be in"):
        update_loss_history(torch.zeros(3), torch.tensor([3]), torch.ones(1))
    with pytest.raises(TypeError, match="update_loss_history: index must be"):
        update_loss_history(torch.zeros(3), torch.tensor([0.0]), torch.ones(1))
    with pytest.raises(ValueError, match="update_naive_mask: history must have shape"):
        update_naive_mask(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="apply_saa_paste: naive must be a bool"):
        apply_saa_paste(
            torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2), sample_saa_paste_params(2)
        )
    with pytest.raises(TypeError, match="apply_saa_paste: params must be"):
        apply_saa_paste(torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2, dtype=torch.bool), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaiveSampleTracker: num_samples"):
        NaiveSampleTracker(0)
    with pytest.raises(ValueError, match=r"NaiveSampleTracker\.load_state_dict"):
        NaiveSampleTracker(3).load_state_dict(NaiveSampleTracker(4).state_dict())
    with pytest.raises(TypeError, match="SampleAdaptiveAugmentation: augment"):
        SampleAdaptiveAugmentation(lambda x: x)  # type: ignore[arg-type]
