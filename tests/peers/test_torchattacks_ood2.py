"""Parity of posneg.adversarial.attacks with torchattacks (FGSM, PGD, PGDL2).

torchattacks uses the global RNG for its random start, so PGD/PGDL2 are compared with
``random_start=False`` (the start is then ``x`` in both); FGSM has no randomness.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from posneg.adversarial.attacks import fgsm, pgd

torchattacks = pytest.importorskip("torchattacks")


def _setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    model.eval()
    x = torch.rand(16, 3, 8, 8, generator=g)
    y = torch.randint(10, (16,), generator=g)
    return model, x, y


def test_fgsm_matches_torchattacks() -> None:
    model, x, y = _setup()
    want = torchattacks.FGSM(model, eps=8 / 255)(x, y)
    torch.testing.assert_close(fgsm(model, x, y, epsilon=8 / 255), want)


def test_pgd_linf_matches_torchattacks() -> None:
    model, x, y = _setup()
    atk = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False)
    got = pgd(model, x, y, epsilon=8 / 255, step_size=2 / 255, steps=10, random_start=False)
    torch.testing.assert_close(got, atk(x, y))


def test_pgd_l2_matches_torchattacks() -> None:
    model, x, y = _setup()
    atk = torchattacks.PGDL2(model, eps=0.5, alpha=0.1, steps=10, random_start=False)
    got = pgd(model, x, y, epsilon=0.5, step_size=0.1, steps=10, norm="l2", random_start=False)
    torch.testing.assert_close(got, atk(x, y), atol=1e-5, rtol=1e-5)
