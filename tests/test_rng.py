"""posneg._rng: Gamma/Beta draws from a generator match their distributions (KS tests against
scipy), honour the generator and leave the global RNG alone."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from posneg import _rng


@pytest.mark.parametrize("shape_param", [0.3, 1.0, 1.6, 7.5])
def test_gamma_matches_scipy(shape_param: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = _rng.gamma(torch.full((20000,), shape_param, dtype=torch.float64), generator=g)
    result = stats.kstest(x.numpy(), stats.gamma(shape_param).cdf)
    assert result.pvalue > 1e-3


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (0.5, 0.5), (2.0, 5.0), (1.6, 1.6)])
def test_beta_matches_scipy(a: float, b: float) -> None:
    g = torch.Generator().manual_seed(1)
    x = _rng.beta(a, b, (20000,), dtype=torch.float64, generator=g)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert stats.kstest(x.numpy(), stats.beta(a, b).cdf).pvalue > 1e-3


def test_beta_per_element_parameters_and_shapes() -> None:
    g = torch.Generator().manual_seed(2)
    alpha = torch.tensor([[0.5, 5.0]]).expand(4000, 2)
    x = _rng.beta(alpha, alpha, (4000, 2), generator=g)
    assert x.shape == (4000, 2)
    # Beta(a, a) has variance 1 / (4 (2a + 1)): large for a = 0.5, small for a = 5.
    assert abs(float(x[:, 0].var()) - 1 / 8) < 0.02
    assert abs(float(x[:, 1].var()) - 1 / 44) < 0.01
    assert _rng.beta(2.0, 2.0, (), generator=g).shape == ()


def test_generator_determinism_and_global_rng_untouched() -> None:
    state = torch.get_rng_state()
    a = _rng.beta(1.6, 1.6, (64,), generator=torch.Generator().manual_seed(3))
    b = _rng.beta(1.6, 1.6, (64,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())


def test_gamma_rejects_nonpositive_concentration() -> None:
    with pytest.raises(ValueError, match="concentration must be > 0"):
        _rng.gamma(torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize("a", [1e-3, 1e-5, 1e-8])
def test_beta_tiny_shapes_never_nan(a: float) -> None:
    """Gamma(a) underflows to 0 for tiny a, so X / (X + Y) would be 0/0; beta works in log space.

    Beta(a, a) with a -> 0 tends to Bernoulli(1/2) on {0, 1}: draws sit at the ends, about half
    at each.
    """
    g = torch.Generator().manual_seed(0)
    x = _rng.beta(a, a, (4000,), dtype=torch.float64, generator=g)
    assert not torch.isnan(x).any()
    assert bool(((x >= 0) & (x <= 1)).all())
    ends = (x < 1e-6) | (x > 1 - 1e-6)
    assert ends.double().mean() > 0.95
    assert abs((x > 0.5).double().mean().item() - 0.5) < 0.05


def test_beta_equals_ratio_of_gammas_drawn_in_the_same_order() -> None:
    """Where nothing underflows, beta is exactly X / (X + Y) of two gamma calls on one generator."""
    for a, b in [(0.4, 0.4), (2.0, 0.7), (1.0, 3.0)]:
        g1 = torch.Generator().manual_seed(3)
        got = _rng.beta(a, b, (64,), dtype=torch.float64, generator=g1)
        g2 = torch.Generator().manual_seed(3)
        x = _rng.gamma(torch.full((64,), a, dtype=torch.float64), generator=g2)
        y = _rng.gamma(torch.full((64,), b, dtype=torch.float64), generator=g2)
        torch.testing.assert_close(got, x / (x + y), rtol=0, atol=0)


def test_epoch_generator_uses_the_given_one_or_a_fresh_one_from_the_global_rng() -> None:
    from posneg._rng import epoch_generator

    g = torch.Generator().manual_seed(3)
    assert epoch_generator(g) is g
    torch.manual_seed(11)
    a = epoch_generator(None)
    b = epoch_generator(None)  # the global RNG moved on: a new seed
    assert a.initial_seed() != b.initial_seed()
    torch.manual_seed(11)
    assert epoch_generator(None).initial_seed() == a.initial_seed()  # DataLoader seeding applies
