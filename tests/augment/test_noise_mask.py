"""Policy-gradient noise mask (posneg.augment.noise_mask) against the official code's behaviour.

Official code: ogrenenmakine/Policy-Gradient-Driven-Noise-Mask at ece96ae,
``_policy_gradient/create_model.py`` (``MaskGenerator.forward``: smoothing 0.9 / base EMA 0.99)
and ``_policy_gradient/train_one_epoch.py`` (``Beta(exp(a), exp(b)).sample()``, nearest
upsampling, ``gaussian_blur``, ``loss = mean(log(sum(exp(logp), 1)) * CE_mean)``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posneg.augment.noise_mask import (
    NoiseMaskPolicy,
    blur_mask,
    noise_mask_log_prob,
    noise_mask_loss,
    sample_noise_mask,
    smooth_concentrations,
)


def test_log_prob_matches_naive_loop_of_beta_densities():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, generator=g, dtype=torch.float64)
    b = torch.randn(3, 5, generator=g, dtype=torch.float64)
    m = torch.rand(3, 5, generator=g, dtype=torch.float64) * 0.98 + 0.01
    want = torch.zeros(3, dtype=torch.float64)
    for i in range(3):
        total = 0.0
        for j in range(5):
            al, be, x = math.exp(a[i, j]), math.exp(b[i, j]), float(m[i, j])
            logb = math.lgamma(al) + math.lgamma(be) - math.lgamma(al + be)
            total += math.exp((al - 1) * math.log(x) + (be - 1) * math.log(1 - x) - logb)
        want[i] = math.log(total)  # the code: log(sum(exp(logp)))
    torch.testing.assert_close(noise_mask_log_prob(m, a, b), want)


def test_uniform_policy_gives_log_g_squared():
    """Card test 2: a = b = 0 (alpha = beta = 1): every log-density 0, l = log G^2."""
    z = torch.zeros(4, 64)
    cells = torch.rand(4, 64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(noise_mask_log_prob(cells, z, z), torch.full((4,), math.log(64)))


def test_mask_range_shape_and_blur_keeps_constants():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(3, 16, generator=g), torch.randn(3, 16, generator=g)
    mask, cells = sample_noise_mask(a, b, size=(16, 16), grid=4, kernel_size=5, sigma=2.0,
                                    generator=g)  # fmt: skip
    assert mask.shape == (3, 1, 16, 16) and cells.shape == (3, 16)
    assert bool((mask > 0).all() and (mask < 1).all())
    const = torch.full((2, 1, 9, 9), 0.37)
    torch.testing.assert_close(blur_mask(const, kernel_size=5, sigma=2.0), const)
    torch.testing.assert_close(blur_mask(torch.full((2, 1, 9), 0.2), kernel_size=3, sigma=1.0),
                               torch.full((2, 1, 9), 0.2))  # fmt: skip


def test_blur_matches_torchvision_kernel_formula():
    """gaussian_blur: separable kernel exp(-x^2/2s^2) on -(k-1)/2..(k-1)/2, reflect padding."""
    g = torch.Generator().manual_seed(3)
    img = torch.rand(1, 1, 7, 7, generator=g, dtype=torch.float64)
    k, s = 3, 1.0
    xs = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    ker = torch.exp(-0.5 * (xs / s) ** 2)
    ker = ker / ker.sum()
    pad = F.pad(img, (1, 1, 1, 1), mode="reflect")[0, 0]
    want = torch.zeros(7, 7, dtype=torch.float64)
    for i in range(7):
        for j in range(7):
            want[i, j] = sum(
                ker[u] * ker[v] * pad[i + u, j + v] for u in range(3) for v in range(3)
            )
    torch.testing.assert_close(blur_mask(img, kernel_size=k, sigma=s)[0, 0], want)


def test_nearest_upsampling_of_cells():
    """Without blur (kernel 1), the mask is each cell repeated over its block."""
    g = torch.Generator().manual_seed(4)
    z = torch.zeros(1, 4)
    mask, cells = sample_noise_mask(z, z, size=(4, 4), grid=2, kernel_size=1, sigma=1.0,
                                    generator=g)  # fmt: skip
    want = cells.reshape(1, 1, 2, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(mask, want)


def test_base_ema_closed_form_after_n_identical_batches():
    """Card test 4: a_base after n updates with the same head mean h: 0.99^n a0 + (1-0.99^n) h."""
    base = torch.rand(1, 4, generator=torch.Generator().manual_seed(5))
    head = torch.randn(3, 4, generator=torch.Generator().manual_seed(6))
    a0, b0 = base.clone(), base.clone()
    for _ in range(7):
        a, _, base, b0 = smooth_concentrations(head, head, base, b0)
    h = head.mean(0, keepdim=True)
    torch.testing.assert_close(base, 0.99**7 * a0 + (1 - 0.99**7) * h)
    # the smoothing of the last call used the base before its update
    prev = (base - 0.01 * h) / 0.99
    torch.testing.assert_close(a, 0.9 * prev + 0.1 * head)


def test_gradients_policy_via_log_prob_classifier_scaled_by_mean_ell():
    """Card test 3: the policy's gradient is CE * grad mean(l) (no path through m); the
    classifier's is mean(l) * grad CE."""
    g = torch.Generator().manual_seed(7)
    pol = NoiseMaskPolicy(1, grid=2, width=4, kernel_size=1, sigma=1.0, generator=g)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(5, 1, 4, 4, generator=g), torch.arange(5) % 3
    draw = pol(x, generator=g)
    assert not draw.mask.requires_grad and not draw.cells.requires_grad
    logits = clf(draw.x)
    loss = noise_mask_loss(logits, y, draw.log_prob)
    ce = F.cross_entropy(logits, y)
    gw = torch.autograd.grad(loss, clf[1].weight, retain_graph=True)[0]
    gce = torch.autograd.grad(ce, clf[1].weight, retain_graph=True)[0]
    torch.testing.assert_close(gw, draw.log_prob.mean().detach() * gce)
    head = pol.head_alpha[-1].weight
    gp = torch.autograd.grad(loss, head, retain_graph=True)[0]
    gl = torch.autograd.grad(draw.log_prob.mean(), head)[0]
    torch.testing.assert_close(gp, ce.detach() * gl)


def test_per_sample_reward_reduces_to_batch_reward_when_ces_equal():
    """Card test 5: equal per-sample CE -> the same loss as the code's batch reward."""
    logits = torch.zeros(4, 3)  # every CE_b = log 3
    y = torch.tensor([0, 1, 2, 0])
    ell = torch.tensor([1.0, 2.0, 3.0, 4.0])
    batch = noise_mask_loss(logits, y, ell)
    per = noise_mask_loss(logits, y, ell, reward="per_sample")
    torch.testing.assert_close(batch, per)
    logits2 = torch.randn(4, 3, generator=torch.Generator().manual_seed(8))
    assert not torch.allclose(
        noise_mask_loss(logits2, y, ell), noise_mask_loss(logits2, y, ell, reward="per_sample")
    )


def test_policy_on_sequences_and_eval_uses_bases():
    g = torch.Generator().manual_seed(9)
    pol = NoiseMaskPolicy(2, ndim=1, grid=5, width=4, kernel_size=3, sigma=1.0, generator=g)
    draw = pol(torch.rand(3, 2, 20, generator=g), generator=g)
    assert draw.x.shape == (3, 2, 20) and draw.log_prob.shape == (3,)
    pol.eval()
    a, b = pol.concentrations(torch.rand(3, 2, 20, generator=g))
    torch.testing.assert_close(a, pol.base_alpha.expand(3, -1))
    torch.testing.assert_close(b, pol.base_beta.expand(3, -1))


def test_same_generator_same_mask():
    z = torch.zeros(2, 9)
    m1, _ = sample_noise_mask(z, z, size=(6, 6), grid=3, kernel_size=3, sigma=1.0,
                              generator=torch.Generator().manual_seed(3))  # fmt: skip
    m2, _ = sample_noise_mask(z, z, size=(6, 6), grid=3, kernel_size=3, sigma=1.0,
                              generator=torch.Generator().manual_seed(3))  # fmt: skip
    torch.testing.assert_close(m1, m2)


def test_errors_name_function_and_argument():
    with pytest.raises(ValueError, match=r"noise_mask_loss.*reward"):
        noise_mask_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2),
                        reward="mean")  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(ValueError, match=r"sample_noise_mask.*log_alpha"):
        sample_noise_mask(torch.zeros(2, 5), torch.zeros(2, 5), size=(4, 4), grid=2)
    with pytest.raises(ValueError, match=r"blur_mask.*kernel_size"):
        blur_mask(torch.zeros(1, 1, 4, 4), kernel_size=4)
    with pytest.raises(ValueError, match=r"NoiseMaskPolicy.*ndim"):
        NoiseMaskPolicy(1, ndim=3)
