"""FixMatch unlabelled loss: formula, TorchSSL/SAA transcription, properties, errors.

Reference: GuanGui-nju/SAA @ e044aa6, ``models/fixmatch/model_utils.py::consistency_loss``
(hard labels): ``loss = ce(logits_s, argmax softmax(logits_w))``, ``masked_loss = loss * mask``,
``mask = max_probs.ge(p_cutoff)``, returns ``masked_loss.mean()`` and ``loss.detach()``.
"""

from __future__ import annotations

import math

import pytest
import torch

from posneg.losses.fixmatch import FixMatchLoss, fixmatch_loss, fixmatch_terms


def _naive(w: torch.Tensor, s: torch.Tensor, tau: float, lam: float) -> float:
    total = 0.0
    for i in range(w.shape[0]):
        ew = [math.exp(float(v)) for v in w[i]]
        p = [e / sum(ew) for e in ew]
        k = max(range(len(p)), key=lambda j: p[j])
        if p[k] >= tau:
            es = [math.exp(float(v)) for v in s[i]]
            total += -math.log(es[k] / sum(es))
    return lam * total / w.shape[0]


def test_formula_against_float64_loop() -> None:
    g = torch.Generator().manual_seed(0)
    w = 3 * torch.randn(16, 5, generator=g, dtype=torch.float64)
    s = torch.randn(16, 5, generator=g, dtype=torch.float64)
    for tau in (0.0, 0.6, 0.95):
        got = fixmatch_loss(w, s, threshold=tau, lambda_u=0.7)
        assert got.item() == pytest.approx(_naive(w, s, tau, 0.7), rel=1e-10)


def _official(logits_w: torch.Tensor, logits_s: torch.Tensor, p_cutoff: float):  # type: ignore[no-untyped-def]
    """Transcription of SAA's ``consistency_loss`` (name='ce', use_hard_labels=True)."""
    logits_w = logits_w.detach()
    pseudo_label = torch.softmax(logits_w, dim=-1)
    max_probs, max_idx = torch.max(pseudo_label, dim=-1)
    mask = max_probs.ge(p_cutoff).float()
    loss = torch.nn.functional.cross_entropy(logits_s, max_idx.long(), reduction="none")
    return (loss * mask).mean(), mask, loss.detach()


def test_matches_official_consistency_loss() -> None:
    g = torch.Generator().manual_seed(1)
    w = 4 * torch.randn(64, 10, generator=g)
    s = torch.randn(64, 10, generator=g)
    ref, mask, per = _official(w, s, 0.95)
    assert 0 < mask.sum() < 64
    torch.testing.assert_close(fixmatch_loss(w, s, threshold=0.95), ref)
    t = fixmatch_terms(w, s, threshold=0.95)
    torch.testing.assert_close(t.mask, mask)
    torch.testing.assert_close(t.ce.detach(), per)  # recorded before masking (SAA)


def test_mean_over_all_not_over_confident() -> None:
    w = torch.tensor([[10.0, 0.0], [0.0, 0.0]])
    s = torch.zeros(2, 2)
    assert fixmatch_loss(w, s).item() == pytest.approx(math.log(2) / 2)


def test_no_gradient_through_weak_logits_and_threshold_limits() -> None:
    w = torch.randn(8, 4, requires_grad=True)
    s = torch.randn(8, 4, requires_grad=True)
    fixmatch_loss(w * 10, s, threshold=0.0).backward()
    assert w.grad is None or torch.all(w.grad == 0)
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert fixmatch_loss(w, s, threshold=1.0).item() == 0.0  # softmax of 4 classes < 1
    assert fixmatch_loss(w, s, threshold=0.0, lambda_u=0.0).item() == 0.0
    per = fixmatch_loss(w, s, threshold=0.0, reduction="none")
    assert per.shape == (8,)
    torch.testing.assert_close(per.sum(), fixmatch_loss(w, s, threshold=0.0, reduction="sum"))


def test_module_and_half_precision() -> None:
    m = FixMatchLoss(threshold=0.5, lambda_u=2.0)
    assert "threshold=0.5" in repr(m) and "lambda_u=2.0" in repr(m)
    w, s = torch.randn(4, 3) * 5, torch.randn(4, 3)
    torch.testing.assert_close(m(w, s), fixmatch_loss(w, s, threshold=0.5, lambda_u=2.0))
    out = fixmatch_loss(w.bfloat16(), s.bfloat16(), threshold=0.5)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out)


def test_errors() -> None:
    w = torch.randn(4, 3)
    with pytest.raises(ValueError, match="fixmatch_loss: threshold must be in"):
        fixmatch_loss(w, w, threshold=1.5)
    with pytest.raises(ValueError, match="fixmatch_loss: logits_strong must have shape"):
        fixmatch_loss(w, torch.randn(4, 2))
    with pytest.raises(ValueError, match="fixmatch_loss: lambda_u"):
        fixmatch_loss(w, w, lambda_u=-1.0)
    with pytest.raises(TypeError, match="fixmatch_loss: logits_weak must be a floating"):
        fixmatch_loss(w.long(), w)
    with pytest.raises(ValueError, match="fixmatch_loss: reduction"):
        fixmatch_loss(w, w, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="FixMatchLoss: threshold"):
        FixMatchLoss(threshold=-0.1)
