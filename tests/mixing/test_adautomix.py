"""AdAutoMix (posneg.mixing.adautomix) against a naive loop and the official code's behaviour.

Official code: JinXins/Adversarial-AutoMixup at 9d6fd12, ``openmixup/models/classifiers/
AdAutoMix.py`` (``forward_train``, ``co_mixup``, ``forward_k``, ``forward_q``) and
``openmixup/models/heads/Ada_mix_pine.py`` (``AdaptiveMask.co_mix``, ``co_caculate_attention``,
``forward``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posneg.mixing.adautomix import (
    AdaptiveMask,
    AdAutoMix,
    adaptive_mask,
    adautomix_classifier_loss,
    adautomix_cosine,
    adautomix_generator_loss,
    adautomix_momentum,
    ema_update,
    mix_sources,
    mixed_cross_entropy,
    sample_adautomix_params,
)


def _naive_masks(f, wq, bq, wk, bk, wv, bv, size):
    """The official co_mix transcribed loop by loop in float64 (per source, per pair j != i)."""
    n, b, c, h, w = f.shape
    d = wq.shape[0]
    out = torch.zeros(b, n, h * w, dtype=torch.float64)
    for bi in range(b):
        qs, ks, vs = [], [], []
        for i in range(n):
            tok = f[i, bi].reshape(c, -1).T.double()  # (P, C)
            qs.append(torch.relu(tok @ wq.double().T + bq.double()))
            ks.append(torch.relu(tok @ wk.double().T + bk.double()))
            vs.append(tok @ wv.double().T + bv.double())
        for i in range(n):
            att = torch.zeros(h * w, h * w, dtype=torch.float64)
            for j in range(n):
                if i != j:
                    att += qs[i] @ ks[j].T
            att = torch.softmax(att / math.sqrt(d), dim=-1)
            out[bi, i] = (att @ vs[i]).squeeze(-1)
    m = out.reshape(b, n, h, w)
    m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    return m.softmax(1)


def _weights(c, d, g):
    return [
        torch.randn(d, c, generator=g),
        torch.randn(d, generator=g),
        torch.randn(d, c, generator=g),
        torch.randn(d, generator=g),
        torch.randn(1, c, generator=g),
        torch.randn(1, generator=g),
    ]


def test_mask_matches_naive_float64_loop():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 2, 6, 4, 4, generator=g, dtype=torch.float64)
    ws = [w.double() for w in _weights(6, 3, g)]
    got = adaptive_mask(
        f, w_q=ws[0], b_q=ws[1], w_k=ws[2], b_k=ws[3], w_v=ws[4], b_v=ws[5], size=(8, 8)
    )
    torch.testing.assert_close(got, _naive_masks(f, *ws, size=(8, 8)))


def test_mask_channels_sum_to_one_everywhere_2d_and_1d():
    gen = torch.Generator().manual_seed(1)
    g = AdaptiveMask(8, generator=gen)
    m2 = g(torch.randn(3, 5, 8, 4, 4, generator=gen), size=(16, 16))
    m1 = g(torch.randn(3, 5, 8, 10, generator=gen), size=(40,))
    assert m2.shape == (5, 3, 16, 16) and m1.shape == (5, 3, 40)
    torch.testing.assert_close(m2.sum(1), torch.ones(5, 16, 16))
    torch.testing.assert_close(m1.sum(1), torch.ones(5, 40))
    assert bool((m2 >= 0).all())


def test_two_sources_is_normal_mix_cross_attention():
    """N = 2: A_0 = softmax(q_0 k_1^T), A_1 = softmax(q_1 k_0^T) (``normal_mix``)."""
    g = torch.Generator().manual_seed(2)
    f = torch.randn(2, 1, 4, 2, 2, generator=g, dtype=torch.float64)
    ws = [w.double() for w in _weights(4, 2, g)]
    got = adaptive_mask(
        f, w_q=ws[0], b_q=ws[1], w_k=ws[2], b_k=ws[3], w_v=ws[4], b_v=ws[5], size=(2, 2)
    )
    tok = [f[i, 0].reshape(4, -1).T for i in range(2)]
    q = [torch.relu(t @ ws[0].T + ws[1]) for t in tok]
    k = [torch.relu(t @ ws[2].T + ws[3]) for t in tok]
    v = [t @ ws[4].T + ws[5] for t in tok]
    m0 = torch.softmax(q[0] @ k[1].T / math.sqrt(2), -1) @ v[0]
    m1 = torch.softmax(q[1] @ k[0].T / math.sqrt(2), -1) @ v[1]
    want = torch.stack([m0.reshape(2, 2), m1.reshape(2, 2)]).softmax(0)
    torch.testing.assert_close(got[0], want)


def test_lambdas_are_normalised_betas_and_sources_are_shuffles():
    p = sample_adautomix_params(6, n_sources=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(p.lam_mb.sum(), torch.tensor(1.0))
    torch.testing.assert_close(p.lam_mb, p.lam_bb)
    for idx in (*p.index_mb, *p.index_bb):
        assert sorted(idx.tolist()) == list(range(6))
    # normalised i.i.d. Beta(1,1): E[lam_0] = 1/3 and lam_0 has the law of U1/(U1+U2+U3)
    g = torch.Generator().manual_seed(3)
    lams = torch.stack([sample_adautomix_params(2, generator=g).lam_mb for _ in range(3000)])
    assert abs(float(lams[:, 0].mean()) - 1 / 3) < 0.02


def test_two_sources_use_identity_and_one_permutation_with_two_lambdas():
    p = sample_adautomix_params(5, n_sources=2, generator=torch.Generator().manual_seed(0))
    assert p.index_mb[0].tolist() == list(range(5)) and p.index_bb[0].tolist() == list(range(5))
    torch.testing.assert_close(p.lam_mb.sum(), torch.tensor(1.0))
    assert not torch.equal(p.lam_mb, p.lam_bb)  # two independent Betas


def test_mix_sources_naive():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 2, 3, 3, generator=g)
    m = torch.rand(4, 3, 3, 3, generator=g)
    idx = torch.stack([torch.randperm(4, generator=g) for _ in range(3)])
    want = sum(m[:, i : i + 1] * x[idx[i]] for i in range(3))
    torch.testing.assert_close(mix_sources(x, m, idx), want)
    lam = torch.tensor([0.2, 0.3, 0.5])
    want_lin = sum(lam[i] * x[idx[i]] for i in range(3))
    torch.testing.assert_close(mix_sources(x, lam, idx), want_lin)


def test_mixed_ce_is_sum_of_weighted_ces():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 4, generator=g)
    y = torch.randint(0, 4, (6,), generator=g)
    idx = torch.stack([torch.randperm(6, generator=g) for _ in range(3)])
    lam = torch.tensor([0.5, 0.3, 0.2])
    want = sum(lam[i] * F.cross_entropy(logits, y[idx[i]]) for i in range(3))
    torch.testing.assert_close(mixed_cross_entropy(logits, y, idx, lam, num_classes=4), want)


def test_cosine_term_and_generator_loss_branches():
    g = torch.Generator().manual_seed(6)
    pm, ps = torch.randn(5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    lam = torch.tensor([0.6, 0.3, 0.1])
    want = sum(lam[i] * F.cosine_similarity(pm, ps[i], dim=-1) for i in range(3)).mean()
    c = adautomix_cosine(pm, ps, lam)
    torch.testing.assert_close(c, want)
    lk = torch.tensor(2.0)
    # beta = 0 on an adversarial step: L_G = c (card test 3)
    torch.testing.assert_close(adautomix_generator_loss(lk, c, adversarial=True, beta=0.0), c)
    torch.testing.assert_close(
        adautomix_generator_loss(lk, c, adversarial=True), -0.3 * lk + 0.7 * c
    )
    assert adautomix_generator_loss(lk, c, adversarial=False) is lk


def test_cosine_sign_code_versus_paper():
    """The code minimises +(1-beta) c (pushes the mix away from its sources); -1 flips it."""
    lk, c = torch.tensor(1.0), torch.tensor(0.8)
    code = adautomix_generator_loss(lk, c, adversarial=True, beta=0.5)
    paper = adautomix_generator_loss(lk, c, adversarial=True, beta=0.5, cosine_sign=-1.0)
    assert float(code) == pytest.approx(-0.5 + 0.4) and float(paper) == pytest.approx(-0.5 - 0.4)


def test_classifier_loss_weights():
    a, b, c = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)
    assert float(adautomix_classifier_loss(a, b, c)) == pytest.approx(1 + 1 + 2)
    assert float(adautomix_classifier_loss(a, b, None)) == pytest.approx(3.0)


def test_momentum_schedule_and_ema():
    assert adautomix_momentum(0.0) == pytest.approx(0.999)
    assert adautomix_momentum(1.0) == pytest.approx(0.999999)
    q, k = nn.Linear(2, 2), nn.Linear(2, 2)
    k0 = [p.clone() for p in k.parameters()]
    ema_update(k, q, momentum=0.9)
    for p0, pk, pq in zip(k0, k.parameters(), q.parameters(), strict=True):
        torch.testing.assert_close(pk, 0.9 * p0 + 0.1 * pq)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stage = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 3))

    def forward(self, x):
        return self.head(self.stage(x))


def _x():
    return torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(42))


def _step(n_sources=3, lam_margin=0.03, seed=0):
    torch.manual_seed(0)
    q, k = _Net(), _Net()
    k.load_state_dict(q.state_dict())
    for p in k.parameters():
        p.requires_grad_(False)
    step = AdAutoMix(
        4, n_sources=n_sources, lam_margin=lam_margin, generator=torch.Generator().manual_seed(1)
    )
    x, y = _x(), torch.arange(6) % 3
    out = step(
        x, y, classifier=q, teacher=k, teacher_features=k.stage, adversarial=True,
        num_classes=3, generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    return q, k, step, out


def test_gradient_routing_classifier_loss_never_reaches_generator():
    """Card test 4: L_q gives zero gradient to G; L_G gives zero gradient to the classifier."""
    q, _k, step, out = _step()
    grads = torch.autograd.grad(out.classifier, list(step.parameters()), allow_unused=True)
    assert all(g is None or float(g.abs().sum()) == 0 for g in grads)
    grads = torch.autograd.grad(out.generator, list(q.parameters()), allow_unused=True)
    assert all(g is None or float(g.abs().sum()) == 0 for g in grads)
    grads = torch.autograd.grad(out.generator, list(step.parameters()), allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_lam_margin_gives_constant_masks_for_classifier():
    """Card test 2: lam_0 outside [m, 1 - m] replaces M_bb by the constants lam_i (m = 0.5:
    always), so x_bb is the linear mix; with m = 0 it is the generator's (non-constant) mix."""
    x = _x()
    _q, _k, _s, out = _step(lam_margin=0.5)
    p = out.params
    torch.testing.assert_close(out.x_bb, mix_sources(x, p.lam_bb, p.index_bb))
    _q, _k, _s, out = _step(lam_margin=0.0)
    p = out.params
    assert not torch.allclose(out.x_bb, mix_sources(x, p.lam_bb, p.index_bb))


def test_errors_name_function_and_argument():
    with pytest.raises(ValueError, match=r"sample_adautomix_params.*n_sources"):
        sample_adautomix_params(4, n_sources=1)
    with pytest.raises(ValueError, match=r"adaptive_mask.*features"):
        adaptive_mask(
            torch.randn(1, 2, 3, 4, 4), w_q=torch.zeros(1, 3), b_q=torch.zeros(1),
            w_k=torch.zeros(1, 3), b_k=torch.zeros(1), w_v=torch.zeros(1, 3),
            b_v=torch.zeros(1), size=(4, 4),
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"AdAutoMix.*cosine_sign"):
        AdAutoMix(4, cosine_sign=0.5)
    with pytest.raises(ValueError, match=r"AdaptiveMask.*mode"):
        AdaptiveMask(4, mode="bicubic")  # type: ignore[arg-type]


def test_gradcheck_of_the_step_on_the_linear_branch():
    """With lam_margin = 0.5 the classifier's mix is linear (no detached mask), so the whole
    step's gradient in x passes gradcheck in float64."""
    step = AdAutoMix(2, lam_margin=0.5, generator=torch.Generator().manual_seed(0)).double()
    w = torch.cos(torch.arange(2 * 4 * 4 * 3, dtype=torch.float64)).reshape(-1, 3)

    def net(t):
        return t.flatten(1) @ w

    def f(x):
        return step(
            x, torch.tensor([0, 1, 2, 1]), classifier=net, teacher=net,
            teacher_features=lambda t: F.avg_pool2d(t, 2), adversarial=True, num_classes=3,
            generator=torch.Generator().manual_seed(3),
        ).total  # fmt: skip

    x = torch.randn(4, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x,), fast_mode=True)
