"""MinorityMix (CoT's minority attribute augmentation, ICCV 2023): formula, properties, errors.

No installed package implements it; the reference is a naive loop of CoT's two-stage sampler
(``dataset.py: sample_same_object2``: pick a different attribute of the same object with
weight 1/count, then an image with it uniformly) and of the mixing equation, in float64.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.mixing import (
    MinorityMix,
    MinorityMixParams,
    apply_minority_mix,
    minority_pair_probabilities,
    sample_minority_mix_params,
)


def naive_probabilities(
    labels: list[int],
    groups: list[int] | None,
    counts: list | None,
    temperature: float,
) -> torch.Tensor:
    """CoT's two stages for every anchor, written out; fallbacks as documented."""
    b = len(labels)
    groups = groups if groups is not None else [0] * b
    p = torch.zeros(b, b, dtype=torch.float64)
    for i in range(b):
        peers = [j for j in range(b) if j != i and groups[j] == groups[i]]
        cands = [j for j in peers if labels[j] != labels[i]]
        if not peers:
            p[i, i] = 1.0
            continue
        if not cands:
            for j in peers:
                p[i, j] = 1.0 / len(peers)
            continue
        classes = sorted({labels[j] for j in cands})
        members = {c: [j for j in cands if labels[j] == c] for c in classes}

        def freq(c: int, i: int = i, members: dict = members) -> float:
            if counts is None:
                return float(len(members[c]))
            if isinstance(counts[0], list):
                return float(counts[groups[i]][c])
            return float(counts[c])

        weights = {c: freq(c) ** (-1.0 / temperature) for c in classes}
        total = sum(weights.values())
        for c in classes:
            for j in members[c]:
                p[i, j] = weights[c] / total / len(members[c])
    return p


# ---------------------------------------------------------------------------------------------
# formula
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_probabilities_match_cot_sampler(temperature: float) -> None:
    labels = [0, 0, 0, 1, 1, 2, 3, 0, 2, 1]
    t = torch.tensor(labels)
    got = minority_pair_probabilities(t, num_classes=4, temperature=temperature)
    torch.testing.assert_close(got, naive_probabilities(labels, None, None, temperature))


def test_probabilities_with_groups_and_dataset_counts() -> None:
    labels = [0, 1, 1, 2, 0, 0, 1, 3, 3, 2, 1]
    groups = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 0]
    counts_k = [50.0, 5.0, 20.0, 2.0]
    counts_gk = [
        [10.0, 3.0, 4.0, 1.0],
        [2.0, 8.0, 1.0, 1.0],
        [1.0, 1.0, 1.0, 6.0],
        [1.0, 1.0, 9.0, 1.0],
    ]
    t, g = torch.tensor(labels), torch.tensor(groups)
    for counts in (None, counts_k, counts_gk):
        c = None if counts is None else torch.tensor(counts)
        got = minority_pair_probabilities(t, num_classes=4, groups=g, class_counts=c)
        torch.testing.assert_close(got, naive_probabilities(labels, groups, counts, 1.0))


def test_mixing_matches_naive_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 4, 4, dtype=torch.float64, generator=gen)
    y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2])
    p = sample_minority_mix_params(y, num_classes=3, per_sample=True, generator=gen)
    out = apply_minority_mix(x, y, p, num_classes=3, label_smoothing=0.1)
    for i in range(8):
        j, lam = int(p.index[i]), float(p.lam[i])
        torch.testing.assert_close(out.x[i], lam * x[i] + (1 - lam) * x[j])
        yi = torch.full((3,), 0.1 / 3, dtype=torch.float64)
        yj = yi.clone()
        yi[int(y[i])] += 0.9
        yj[int(y[j])] += 0.9
        torch.testing.assert_close(out.targets[i], lam * yi + (1 - lam) * yj)


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------


def test_partners_oversample_the_rare_class() -> None:
    """600 / 300 / 100 samples: class-0 anchors pick class 2 with (1/100) / (1/100 + 1/300)."""
    y = torch.cat([torch.zeros(600), torch.ones(300), torch.full((100,), 2)]).long()
    p = sample_minority_mix_params(y, num_classes=3, generator=torch.Generator().manual_seed(0))
    rate = float((y[p.index[:600]] == 2).double().mean())
    assert abs(rate - 0.75) < 0.08  # ~4.4 binomial standard deviations
    uniform = sample_minority_mix_params(
        y, num_classes=3, temperature=1e6, generator=torch.Generator().manual_seed(0)
    )
    rate_uniform = float((y[uniform.index[:600]] == 2).double().mean())
    assert abs(rate_uniform - 0.5) < 0.08  # large T: uniform over the candidate classes


def test_temperature_interpolates_towards_uniform_classes() -> None:
    y = torch.tensor([0, 1, 1, 1, 1, 2, 2])
    rows = [
        minority_pair_probabilities(y, num_classes=3, temperature=t)[0]
        for t in (0.25, 1.0, 4.0, 1e9)
    ]
    rare = [float(r[5:].sum()) for r in rows]  # anchor 0 picking class 2 (2 samples vs 4)
    assert rare[0] > rare[1] > rare[2] > rare[3]
    assert abs(rare[3] - 0.5) < 1e-6


@settings(max_examples=30, deadline=None)
@given(
    labels=st.lists(st.integers(0, 3), min_size=1, max_size=12),
    use_groups=st.booleans(),
    temperature=st.sampled_from([0.5, 1.0, 2.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_rows_are_distributions_within_the_group(
    labels: list[int], use_groups: bool, temperature: float, seed: int
) -> None:
    y = torch.tensor(labels)
    g = (y * 7 + torch.arange(len(labels))) % 3 if use_groups else None
    p = minority_pair_probabilities(y, num_classes=4, groups=g, temperature=temperature)
    torch.testing.assert_close(p.sum(1), torch.ones(len(labels), dtype=torch.float64))
    assert bool((p >= 0).all())
    params = sample_minority_mix_params(
        y,
        num_classes=4,
        groups=g,
        temperature=temperature,
        generator=torch.Generator().manual_seed(seed),
    )
    assert bool((p[torch.arange(len(labels)), params.index] > 0).all())
    if g is not None:
        assert torch.equal(g[params.index], g)  # partners always share the group
    out = apply_minority_mix(torch.rand(len(labels), 5), y, params, num_classes=4)
    torch.testing.assert_close(out.targets.sum(1), torch.ones(len(labels)))


def test_fallbacks_and_batch_of_one() -> None:
    y = torch.tensor([1, 1, 1, 2])
    g = torch.tensor([0, 0, 5, 7])
    p = minority_pair_probabilities(y, num_classes=3, groups=g)
    # anchors 0, 1: only same-class peers -> uniform over them; 2, 3 alone -> themselves
    torch.testing.assert_close(p[0], torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(p[2], torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    x = torch.rand(1, 6)
    out = MinorityMix(num_classes=3)(
        x, torch.tensor([2]), generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(out.x, x)
    torch.testing.assert_close(out.targets, torch.tensor([[0.0, 0.0, 1.0]]))


def test_uint8_images_module_and_replay() -> None:
    x = torch.randint(0, 256, (6, 3, 5, 5), dtype=torch.uint8)
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    mm = MinorityMix(3, alpha=0.5, per_sample=True, class_counts=torch.tensor([100, 10, 1]))
    out = mm(x, y, generator=torch.Generator().manual_seed(0))
    assert out.x.dtype == torch.uint8 and out.targets.dtype == torch.float32
    again = mm(x, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.x, again.x) and torch.equal(out.targets, again.targets)
    state = torch.get_rng_state()
    mm(x, y, generator=torch.Generator().manual_seed(1))
    assert torch.equal(state, torch.get_rng_state())
    assert "temperature=1.0" in repr(mm) and "class_counts=(3,)" in repr(mm)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors() -> None:
    y = torch.tensor([0, 1, 2, 1])
    x = torch.rand(4, 8)
    with pytest.raises(ValueError, match=r"MinorityMix: alpha must be > 0; got 0"):
        MinorityMix(3, alpha=0)
    with pytest.raises(ValueError, match=r"MinorityMix: temperature must be > 0; got -1"):
        MinorityMix(3, temperature=-1)
    with pytest.raises(
        ValueError, match=r"MinorityMix: class_counts must have shape \(K,\) or \(G, K\) with K=3"
    ):
        MinorityMix(3, class_counts=torch.ones(4))
    with pytest.raises(TypeError, match=r"num_classes must be an int"):
        MinorityMix(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"labels must be an integer tensor of class ids"):
        MinorityMix(3)(x, y.float())
    with pytest.raises(ValueError, match=r"MinorityMix: labels must have shape \(4,\) matching x"):
        MinorityMix(3)(x, torch.tensor([0, 1, 2]))
    with pytest.raises(
        ValueError, match=r"labels must be class ids in \[0, 3\); got values in \[0, 3\]"
    ):
        MinorityMix(3)(x, torch.tensor([0, 1, 3, 1]))
    with pytest.raises(ValueError, match=r"groups must have shape \(4,\) matching labels"):
        MinorityMix(3)(x, y, groups=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"class_counts must be > 0 for every class present"):
        minority_pair_probabilities(y, num_classes=3, class_counts=torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"class_counts must be finite and >= 0"):
        minority_pair_probabilities(y, num_classes=3, class_counts=torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match=r"params.index must have shape \(4,\)"):
        apply_minority_mix(x, None, MinorityMixParams(torch.ones(3), torch.arange(3)))
    with pytest.raises(ValueError, match=r"num_classes is required when targets are class ids"):
        apply_minority_mix(x, y, MinorityMixParams(torch.ones(4), torch.arange(4)))


# --- CoT's dataset-level partner sampler --------------------------------------------------------

from posneg.mixing.minority import MinorityPartnerSampler  # noqa: E402


def official_sample_same_object2(
    attrs: list[int], objs: list[int], anchor: int, rng: object
) -> int:
    """Transcription of HanjaeKim98/CoT ``dataset.py::sample_same_object2`` (commit
    258476ab926ee0b24e27101182727f99363f06aa) over the training items, with a numpy Generator
    in place of the global ``np.random`` (``rng.choice`` as ``np.random.choice``)."""
    import numpy as np

    assert isinstance(rng, np.random.Generator)
    attr, obj = attrs[anchor], objs[anchor]
    image_with_obj = [i for i, o in enumerate(objs) if o == obj]
    obj_affordance = sorted({attrs[i] for i in image_with_obj})
    if len(obj_affordance) == 1:
        return int(rng.choice(image_with_obj))
    i2 = int(rng.choice(image_with_obj))
    ind, count = np.unique([attrs[i] for i in image_with_obj], return_counts=True)
    weight = 1.0 / count[ind != attr]
    weight = weight / np.sum(weight)
    idx = int(rng.choice(ind[ind != attr], p=weight))
    while attrs[i2] != idx:  # rejection: random images of the object until one has idx
        i2 = int(rng.choice(image_with_obj))
    return i2


def _toy_training_set() -> tuple[torch.Tensor, torch.Tensor]:
    """Three objects: long-tailed attributes, a balanced one, and one with a single attribute."""
    attrs = [0] * 30 + [1] * 6 + [2] * 2 + [1] * 5 + [3] * 5 + [4] * 4
    objs = [0] * 38 + [1] * 10 + [2] * 4
    return torch.tensor(attrs), torch.tensor(objs)


def test_partner_probabilities_equal_official_sampler_frequencies() -> None:
    import numpy as np

    attrs, objs = _toy_training_set()
    sampler = MinorityPartnerSampler(attrs, objs, 4)
    rng = np.random.default_rng(0)
    al, ol = attrs.tolist(), objs.tolist()
    for anchor in (0, 37, 40, 49):
        draws = [official_sample_same_object2(al, ol, anchor, rng) for _ in range(4000)]
        freq = torch.bincount(torch.tensor(draws), minlength=len(al)).double() / len(draws)
        expected = sampler.probabilities(anchor)
        assert float((freq - expected).abs().max()) < 0.03, anchor
        assert (freq[expected == 0] == 0).all()  # the same support exactly


def test_partner_probabilities_formula() -> None:
    attrs, objs = _toy_training_set()
    sampler = MinorityPartnerSampler(attrs, objs, 4)
    p = sampler.probabilities(0)  # object 0, attribute 0 (counts 30, 6, 2)
    w1, w2 = 1 / 6, 1 / 2
    assert torch.allclose(p[30:36], torch.full((6,), w1 / (w1 + w2) / 6, dtype=torch.float64))
    assert torch.allclose(p[36:38], torch.full((2,), w2 / (w1 + w2) / 2, dtype=torch.float64))
    assert float(p[:30].sum()) == 0.0 and float(p[38:].sum()) == 0.0
    p = sampler.probabilities(49)  # object 2 has one attribute: any item of it, itself too
    assert torch.allclose(p[48:], torch.full((4,), 0.25, dtype=torch.float64))
    for anchor in range(len(attrs)):
        torch.testing.assert_close(
            sampler.probabilities(anchor).sum(), torch.tensor(1.0, dtype=torch.float64)
        )


def test_draw_frequencies_equal_probabilities() -> None:
    attrs, objs = _toy_training_set()
    sampler = MinorityPartnerSampler(attrs, objs, 4)
    g = torch.Generator().manual_seed(1)
    for anchor in (0, 31, 40, 49):
        draws = sampler.draw(torch.full((20000,), anchor), generator=g)
        freq = torch.bincount(draws, minlength=len(attrs)).double() / 20000
        assert float((freq - sampler.probabilities(anchor)).abs().max()) < 0.015


def test_issue_case_rarest_attribute_picked_though_absent_from_the_batch() -> None:
    """Labels [0, 0, 0, 1] with dataset counts [1000, 10, 1]: CoT picks class 2 for about 91%
    of class-0 anchors (1 / 1.1) and 99.9% of class-1 anchors; the in-batch MinorityMix never
    can, since no class-2 sample is in the batch."""
    attrs = torch.tensor([0] * 1000 + [1] * 10 + [2])
    objs = torch.zeros(1011, dtype=torch.long)
    sampler = MinorityPartnerSampler(attrs, objs, 4)
    batch = torch.tensor([0, 1, 2, 1000])  # attributes [0, 0, 0, 1]
    g = torch.Generator().manual_seed(0)
    partners = torch.stack([sampler.draw(batch, generator=g) for _ in range(5000)])  # (5000, 4)
    rate = (attrs[partners] == 2).double().mean(0)
    assert all(abs(float(r) - 1 / 1.1) < 0.015 for r in rate[:3])
    assert float(rate[3]) > 0.99
    assert abs(float(sampler.probabilities(0)[1010]) - 1 / 1.1) < 1e-12
    # the in-batch approximation, even with the data set's counts: class 2 is never a partner
    labels = attrs[batch]
    params = sample_minority_mix_params(
        labels, num_classes=3, class_counts=torch.tensor([1000.0, 10.0, 1.0])
    )
    assert (labels[params.index] != 2).all()
    p = minority_pair_probabilities(labels, num_classes=3, class_counts=torch.tensor([1000, 10, 1]))
    assert torch.allclose(p[:3, 3], torch.ones(3, dtype=torch.float64))  # always the class-1 one


def test_partner_same_object_different_attribute() -> None:
    attrs, objs = _toy_training_set()
    sampler = MinorityPartnerSampler(attrs, objs, 4)
    idx = torch.arange(len(attrs)).repeat(50)
    partners = sampler.draw(idx, generator=torch.Generator().manual_seed(2))
    assert (objs[partners] == objs[idx]).all()
    multi = objs[idx] != 2
    assert (attrs[partners][multi] != attrs[idx][multi]).all()


def test_batch_sampler_yields_doubled_batches_and_is_deterministic() -> None:
    attrs, objs = _toy_training_set()
    n = len(attrs)
    sampler = MinorityPartnerSampler(attrs, objs, 8, generator=torch.Generator().manual_seed(3))
    before = torch.get_rng_state()
    batches = list(sampler)
    assert torch.equal(before, torch.get_rng_state())
    assert len(batches) == len(sampler) == 7
    assert [len(b) for b in batches] == [16] * 6 + [8]
    anchors = [i for b in batches for i in b[: len(b) // 2]]
    assert sorted(anchors) == list(range(n))  # one epoch covers the training set once
    for b in batches:
        a, p = torch.tensor(b[: len(b) // 2]), torch.tensor(b[len(b) // 2 :])
        assert (objs[a] == objs[p]).all()
    sampler.generator = torch.Generator().manual_seed(3)
    assert list(sampler) == batches
    assert list(sampler) != batches  # the next epoch differs
    dropped = MinorityPartnerSampler(attrs, objs, 8, drop_last=True)
    assert len(dropped) == 6 and all(len(b) == 16 for b in dropped)
    assert "num_items=52" in repr(sampler) and "batch_size=8" in repr(sampler)


def test_batch_sampler_in_a_data_loader() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    attrs, objs = _toy_training_set()
    data = TensorDataset(torch.randn(len(attrs), 3), attrs, objs)
    sampler = MinorityPartnerSampler(attrs, objs, 5, generator=torch.Generator().manual_seed(4))
    x, a, o = next(iter(DataLoader(data, batch_sampler=sampler)))
    assert x.shape == (10, 3)
    o1, o2 = o.chunk(2)
    assert torch.equal(o1, o2) and a.shape == (10,)


def test_global_rng_drives_draws_without_generator() -> None:
    attrs, objs = _toy_training_set()
    sampler = MinorityPartnerSampler(attrs, objs, 6)
    torch.manual_seed(5)
    first = list(sampler)
    torch.manual_seed(5)
    assert list(sampler) == first


def test_partner_sampler_errors() -> None:
    attrs, objs = _toy_training_set()
    with pytest.raises(TypeError, match="MinorityPartnerSampler: attributes must be an integer"):
        MinorityPartnerSampler(attrs.float(), objs, 4)
    with pytest.raises(
        ValueError, match=r"MinorityPartnerSampler: objects must have shape \(52,\)"
    ):
        MinorityPartnerSampler(attrs, objs[:-1], 4)
    with pytest.raises(ValueError, match="MinorityPartnerSampler: objects must be >= 0"):
        MinorityPartnerSampler(attrs, objs - 1, 4)
    with pytest.raises(ValueError, match=r"MinorityPartnerSampler: attributes must have shape"):
        MinorityPartnerSampler(torch.zeros(0, dtype=torch.long), objs, 4)
    with pytest.raises(ValueError, match="MinorityPartnerSampler: batch_size must be >= 1"):
        MinorityPartnerSampler(attrs, objs, 0)
    with pytest.raises(TypeError, match="MinorityPartnerSampler: drop_last must be a bool"):
        MinorityPartnerSampler(attrs, objs, 2, drop_last=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="MinorityPartnerSampler: generator must be"):
        MinorityPartnerSampler(attrs, objs, 2, generator=1)  # type: ignore[arg-type]
    sampler = MinorityPartnerSampler(attrs, objs, 4)
    with pytest.raises(ValueError, match=r"draw: index must be in \[0, 52\)"):
        sampler.draw(torch.tensor([0, 52]))
    with pytest.raises(TypeError, match="draw: index must be an integer tensor"):
        sampler.draw(torch.tensor([0.0]))
    with pytest.raises(ValueError, match=r"draw: index must have shape \(B,\)"):
        sampler.draw(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="probabilities: anchor must be < num_items=52"):
        sampler.probabilities(52)
    assert sampler.draw(torch.zeros(0, dtype=torch.long)).shape == (0,)
