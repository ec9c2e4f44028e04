"""posneg.mixing MixUp against kornia.augmentation.RandomMixUpV2 (kornia 0.9,
``kornia/augmentation/_2d/mix/mixup.py``).

kornia draws a permutation ``mixup_pairs`` and per-sample ``mixup_lambdas ~ U(lambda_val)``
(default U(0, 1), which is Beta(1, 1)), and computes ``x (1 - lam) + x[pairs] lam``: its lambda
is the weight of the *partner*. Its labels are ``(B, 3)`` rows ``(y, y[pairs], lam)`` rather than
soft targets. posneg with ``lam = 1 - kornia_lam`` and ``index = pairs`` gives the same batch, and
its soft targets are kornia's rows written as ``(1 - lam) onehot(y) + lam onehot(y[pairs])``.
"""

from __future__ import annotations

import pytest
import torch
from _peer import peer

from posneg.mixing import MixUpParams, apply_mixup

peer("torchvision")  # kornia.augmentation may import it: skip cleanly where it is broken
kornia_aug = peer("kornia.augmentation")

B, C, H, W, K = 7, 3, 6, 5, 4


@pytest.mark.parametrize("seed", range(5))
def test_mixup_equals_kornia_with_its_draws(seed: int) -> None:
    g = torch.Generator().manual_seed(seed + 10)
    x = torch.rand(B, C, H, W, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, (B,), generator=g)
    aug = kornia_aug.RandomMixUpV2(data_keys=["input", "class"])
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # kornia draws from the global RNG
        x_k, rows = aug(x, y)
    pairs = aug._params["mixup_pairs"]
    lam_k = aug._params["mixup_lambdas"].to(torch.float64)
    params = MixUpParams(lam=(1.0 - lam_k).to(torch.float32), index=pairs)
    out = apply_mixup(x, y, params, num_classes=K)
    torch.testing.assert_close(out.x, x_k.to(torch.float64), rtol=0, atol=1e-6)
    assert torch.equal(rows[:, 0].long(), y) and torch.equal(rows[:, 1].long(), y[pairs])
    eye = torch.eye(K, dtype=torch.float64)
    lam_rows = rows[:, 2:].to(torch.float64)
    soft = (1.0 - lam_rows) * eye[rows[:, 0].long()] + lam_rows * eye[rows[:, 1].long()]
    torch.testing.assert_close(out.targets, soft, rtol=0, atol=1e-6)
