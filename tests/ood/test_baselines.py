"""posneg.ood.baselines: MSP, MaxLogit, Energy and k-NN against naive float64 loops."""

from __future__ import annotations

import math

import pytest
import torch

from posneg.ood.baselines import (
    EnergyScore,
    KNNDistance,
    MaxLogit,
    MaxSoftmax,
    energy_score,
    knn_score,
    max_logit_score,
    msp_score,
)


def _logits(seed: int = 0) -> torch.Tensor:
    return torch.randn(7, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


def test_formulas_naive() -> None:
    z = _logits()
    for i in range(z.shape[0]):
        row = z[i].tolist()
        ex = [math.exp(v) for v in row]
        assert float(msp_score(z)[i]) == pytest.approx(-max(ex) / sum(ex))
        assert float(max_logit_score(z)[i]) == pytest.approx(-max(row))
        t = 2.5
        e = -t * math.log(sum(math.exp(v / t) for v in row))
        assert float(energy_score(z, temperature=t)[i]) == pytest.approx(e)


def test_energy_low_temperature_is_max_logit() -> None:
    z = _logits(1)
    torch.testing.assert_close(
        energy_score(z, temperature=1e-4), max_logit_score(z), atol=1e-3, rtol=0
    )


def test_knn_naive() -> None:
    g = torch.Generator().manual_seed(2)
    bank, q = (
        torch.randn(40, 5, generator=g, dtype=torch.float64),
        torch.randn(6, 5, generator=g, dtype=torch.float64),
    )
    k = 3
    bn = bank / bank.norm(dim=1, keepdim=True)
    for i in range(q.shape[0]):
        qi = q[i] / q[i].norm()
        d = sorted(float((qi - bn[j]).norm()) for j in range(bank.shape[0]))
        assert float(knn_score(q, bank=bank, k=k)[i]) == pytest.approx(d[k - 1], abs=1e-12)
    det = KNNDistance(k=k).fit(bank)
    torch.testing.assert_close(det.score(q), knn_score(q, bank=bank, k=k))
    assert float(det.score(bank[:1] * 7)[0]) < 1.0  # a scaled bank point is near (k-th of 40)
    fresh = KNNDistance(k=k)
    fresh.load_state_dict(det.state_dict())
    torch.testing.assert_close(fresh.score(q), det.score(q))


def test_detectors_fit_score() -> None:
    z = _logits()
    for det in (MaxSoftmax(), MaxLogit(), EnergyScore(temperature=1.0)):
        assert det.fit(z) is det
        assert det.score(z).shape == (7,)
    assert "temperature=2.0" in repr(EnergyScore(2.0))
    assert "k=5" in repr(KNNDistance(5))


def test_higher_is_more_ood() -> None:
    confident = torch.tensor([[10.0, 0.0, 0.0]])
    flat = torch.tensor([[0.0, 0.0, 0.0]])
    for fn in (msp_score, max_logit_score, energy_score):
        assert float(fn(flat)[0]) > float(fn(confident)[0])


def test_errors() -> None:
    with pytest.raises(ValueError, match="EnergyScore: temperature must be > 0"):
        EnergyScore(0.0)
    with pytest.raises(ValueError, match="msp_score: logits must have shape"):
        msp_score(torch.zeros(3))
    with pytest.raises(TypeError, match="logits must be a floating"):
        max_logit_score(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="knn_score: k must be <= the bank size 2"):
        knn_score(torch.randn(1, 3), bank=torch.randn(2, 3), k=3)
    with pytest.raises(ValueError, match=r"KNNDistance\.score: call fit"):
        KNNDistance(1).score(torch.randn(1, 3))
