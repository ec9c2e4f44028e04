"""GDA's real/synthetic batch sampler (posneg.synthetic.mixing; base name kept unique).

Reference: ``ML-GSAI/Understanding-GDA`` ``data/semisup.py`` ``SemiSupervisedSampler``
(commit 00719a0), transcribed below from its behaviour (a loop over the real permutation in
chunks of ``B - int(B * f)``, each chunk filled with generated indices drawn with replacement up
to ``B``, then shuffled; ``num_batches = ceil(N_r / (B - int(B * f)))``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from posneg.synthetic.mixing import GDAMixSampler, gda_mix_batches


def _official_structure(n_real: int, batch_size: int, f: float, num_batches: int | None):
    """The official sampler's batch composition: (real count, generated count) per batch."""
    unsup = int(batch_size * f)
    sup = batch_size - unsup
    nb = num_batches if num_batches is not None else math.ceil(n_real / sup)
    out, counter = [], 0
    while counter < nb:
        for k in range(0, n_real, sup):
            if counter == nb:
                break
            real = len(range(k, min(k + sup, n_real)))
            out.append((real, batch_size - real))
            counter += 1
    return out


@pytest.mark.parametrize(
    ("n_real", "batch_size", "f", "num_batches"),
    [
        (100, 10, 0.7, None),
        (103, 16, 0.7, None),
        (50, 512, 0.7, None),
        (37, 8, 0.5, 20),
        (20, 7, 0.0, None),
        (11, 5, 0.3, 9),
    ],
)
def test_batch_composition_matches_the_official_sampler(n_real, batch_size, f, num_batches):
    g = torch.Generator().manual_seed(1)
    batches = gda_mix_batches(
        range(n_real),
        range(n_real, n_real + 1000),
        batch_size=batch_size,
        syn_fraction=f,
        num_batches=num_batches,
        generator=g,
    )
    got = [(int((b < n_real).sum()), int((b >= n_real).sum())) for b in batches]
    assert got == _official_structure(n_real, batch_size, f, num_batches)


def test_each_full_batch_holds_exactly_int_07_b_synthetic():
    """Card test 4: int(0.7 * B) generated indices in every batch (the pass divides evenly)."""
    b = 512
    real = b - int(0.7 * b)
    sampler = GDAMixSampler.from_sizes(real * 5, 10_000, b, generator=torch.Generator())
    assert len(sampler) == 5
    for batch in sampler:
        assert len(batch) == b
        assert sum(i >= real * 5 for i in batch) == int(0.7 * b) == 358


def test_real_indices_cover_one_pass_without_repeats():
    g = torch.Generator().manual_seed(0)
    batches = gda_mix_batches(range(95), range(95, 200), batch_size=10, generator=g)
    real = torch.cat([b[b < 95] for b in batches])
    assert sorted(real.tolist()) == list(range(95))


def test_synthetic_draws_are_with_replacement_and_uniform():
    g = torch.Generator().manual_seed(0)
    batches = gda_mix_batches(
        range(10), [100, 101], batch_size=10, syn_fraction=0.9, num_batches=2000, generator=g
    )
    syn = torch.cat([b[b >= 100] for b in batches])
    assert syn.numel() == 2000 * 9
    share = float((syn == 100).double().mean())
    assert abs(share - 0.5) < 0.02


def test_zero_fraction_is_plain_shuffled_real_batches():
    g = torch.Generator().manual_seed(0)
    batches = gda_mix_batches(range(30), [], batch_size=10, syn_fraction=0.0, generator=g)
    assert len(batches) == 3
    assert sorted(torch.cat(batches).tolist()) == list(range(30))


def test_schedule_sets_the_share_per_batch():
    sched = [0.0, 0.5, 0.9]
    g = torch.Generator().manual_seed(0)
    batches = gda_mix_batches(
        range(100),
        range(100, 200),
        batch_size=10,
        syn_fraction=lambda i: sched[i % 3],
        num_batches=6,
        generator=g,
    )
    assert [int((b >= 100).sum()) for b in batches] == [0, 5, 9, 0, 5, 9]
    default = GDAMixSampler(range(16), range(16, 40), 10, syn_fraction=lambda i: 0.5)
    assert len(default) == 4 and len(list(default)) == 4  # one pass: 5 real per batch


def test_batches_are_shuffled_and_deterministic_under_a_generator():
    a = gda_mix_batches(
        range(50), range(50, 90), batch_size=10, generator=torch.Generator().manual_seed(3)
    )
    b = gda_mix_batches(
        range(50), range(50, 90), batch_size=10, generator=torch.Generator().manual_seed(3)
    )
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    positions = torch.stack([(x >= 50).float() for x in a[:-1]]).mean(0)
    assert positions.min() < 1.0  # generated indices are not all at the end


def test_global_rng_untouched_with_a_generator():
    state = torch.get_rng_state()
    list(GDAMixSampler.from_sizes(20, 20, 5, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(state, torch.get_rng_state())


def test_works_as_a_dataloader_batch_sampler():
    data = TensorDataset(torch.arange(40).float())
    sampler = GDAMixSampler.from_sizes(10, 30, 10, generator=torch.Generator().manual_seed(0))
    batches = [b[0] for b in DataLoader(data, batch_sampler=sampler)]
    assert len(batches) == len(sampler) == 4
    assert all(int((b >= 10).sum()) >= 7 for b in batches)


def test_repr_names_the_hyperparameters():
    s = GDAMixSampler.from_sizes(10, 30, 10, syn_fraction=0.5)
    assert "batch_size=10" in repr(s) and "syn_fraction=0.5" in repr(s)


def test_errors():
    with pytest.raises(ValueError, match="gda_mix_batches: real_indices must not be empty"):
        gda_mix_batches([], [1], batch_size=4)
    with pytest.raises(ValueError, match=r"gda_mix_batches: syn_fraction \(batch 0\) must be in"):
        gda_mix_batches([0], [1], batch_size=4, syn_fraction=1.0)
    with pytest.raises(ValueError, match="gda_mix_batches: batch_size must be >= 1"):
        gda_mix_batches([0], [1], batch_size=0)
    with pytest.raises(TypeError, match="gda_mix_batches: real_indices must hold integers"):
        gda_mix_batches(torch.zeros(3), [1], batch_size=4)
    with pytest.raises(ValueError, match="gda_mix_batches: batch 0 needs 2 generated samples"):
        gda_mix_batches([0, 1], [], batch_size=4, syn_fraction=0.5)
    with pytest.raises(ValueError, match=r"GDAMixSampler: syn_fraction=0\.5 asks for generated"):
        GDAMixSampler([0, 1], [], 4, syn_fraction=0.5)
    with pytest.raises(ValueError, match="GDAMixSampler: num_batches must be >= 1"):
        GDAMixSampler([0, 1], [2], 4, num_batches=0)
    with pytest.raises(TypeError, match=r"GDAMixSampler: generator must be a torch\.Generator"):
        GDAMixSampler([0, 1], [2], 4, generator=0)
    with pytest.raises(ValueError, match=r"GDAMixSampler\.from_sizes: num_real must be >= 1"):
        GDAMixSampler.from_sizes(0, 3, 4)
