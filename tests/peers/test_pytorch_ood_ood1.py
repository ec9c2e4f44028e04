"""posneg.ood baselines and Mahalanobis against pytorch-ood 0.4 (``pytorch_ood/detector/
softmax.py``, ``energy.py``, ``maxlogit.py``, ``knn.py``, ``mahalanobis.py``) on identical
logits/features.

- MaxSoftmax, EnergyBased, MaxLogit: the same formulas, equal to float64 rounding.
- KNN (``normalize=True``): the distance to the k-th nearest normalised fitted feature: equal.
- Mahalanobis: pytorch-ood's covariance is the **sum** of centred outer products plus
  ``1e-6 I`` (not divided by N as in the official ``EmpiricalCovariance``), inverted, with means
  kept in float32; so its score is posneg's divided by N (up to the ridge and float32 rounding):
  shown in ``test_mahalanobis_is_ours_over_n``.
"""

from __future__ import annotations

import torch
from _peer import peer

from posneg.ood.baselines import energy_score, knn_score, max_logit_score, msp_score
from posneg.ood.mahalanobis import Mahalanobis

detector = peer("pytorch_ood.detector")


def _logits() -> torch.Tensor:
    return torch.randn(16, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3


def test_msp_energy_maxlogit() -> None:
    z = _logits()
    torch.testing.assert_close(msp_score(z), detector.MaxSoftmax(None).predict_logits(z))
    for t in (1.0, 2.5):
        ref = detector.EnergyBased(None, t=t).predict_logits(z)
        torch.testing.assert_close(energy_score(z, temperature=t), ref)
    torch.testing.assert_close(max_logit_score(z), detector.MaxLogit(None).predict_logits(z))


def test_knn() -> None:
    g = torch.Generator().manual_seed(1)
    bank = torch.randn(60, 6, generator=g, dtype=torch.float64)
    q = torch.randn(9, 6, generator=g, dtype=torch.float64)
    peer_knn = detector.KNN(None, k=4)
    peer_knn.fit_features(bank, torch.zeros(60, dtype=torch.long))
    ref = peer_knn.predict_features(q)
    torch.testing.assert_close(
        knn_score(q, bank=bank, k=4), ref.to(torch.float64), rtol=1e-5, atol=1e-6
    )


def test_mahalanobis_is_ours_over_n() -> None:
    g = torch.Generator().manual_seed(2)
    y = torch.arange(120) % 3
    x = torch.randn(120, 4, generator=g, dtype=torch.float64) + 2.0 * y.unsqueeze(1)
    q = torch.randn(10, 4, generator=g, dtype=torch.float64) * 2
    x, q = x.float(), q.float()  # pytorch-ood keeps its means and covariance in float32
    ours = Mahalanobis().fit(x, y).score(q).double()
    peer_m = detector.Mahalanobis(None).fit_features(x, y)
    theirs = peer_m.predict_features(q).double()
    torch.testing.assert_close(theirs * x.shape[0], ours, rtol=1e-4, atol=1e-4)
