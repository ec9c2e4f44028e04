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
