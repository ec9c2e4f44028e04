"""BPO / NBPO (Yu & Qin, SIGIR 2020): the update rules of the official code.

Official code: Wenhui-Yu/NBPO at d2187a12970fb9f122f81625bcf80cd9fda16d38: _NBPO.py (main rule),
_NBPOo.py, _NBPOs.py, _BPO.py, _BPR.py (the inner ``while num < sample_rate`` loop and the
``U += eta * (dU - lambda_r * U)`` update).
"""

from __future__ import annotations

import math

import pytest
import torch

from posneg.mining.strategies.nbpo import (
    NBPO,
    NBPOFactors,
    clipped_sigmoid,
    hidden_positive_posterior,
    init_factors,
    nbpo_directions,
    nbpo_step,
    nbpoo_log_likelihood,
    nbpos_likelihood,
    sample_unvoted,
)


def _d(x: float) -> float:
    """The code's d(x): a sigmoid clipped to 0/1 outside [-10, 10]."""
    if x > 10:
        return 1.0
    if x < -10:
        return 0.0
    return 1.0 / (1.0 + math.exp(-x))


def _code_batch(variant, U, V, P, Q, triples, eta, lam_r, lam_phi):  # type: ignore[no-untyped-def]
    """The code's batch loop in float64 Python lists (one (u, i, [j...]) per training positive)."""
    K0, K1 = len(U[0]), len(P[0])
    dU = [[0.0] * K0 for _ in U]
    dV = [[0.0] * K0 for _ in V]
    dP = [[0.0] * K1 for _ in P]
    dQ = [[0.0] * K1 for _ in Q]

    def dot(a, b):  # type: ignore[no-untyped-def]
        return sum(x * y for x, y in zip(a, b, strict=True))

    def add(dst, c, src):  # type: ignore[no-untyped-def]
        for k in range(len(dst)):
            dst[k] += c * src[k]

    for u, i, js in triples:
        Ri, gi = dot(U[u], V[i]), dot(P[u], Q[i])
        for j in js:
            Rj, gj = dot(U[u], V[j]), dot(P[u], Q[j])
            if variant == "nbpo":  # _NBPO.py
                D = _d(-gi) * _d(-Ri)
                add(dU[u], D, V[i]), add(dV[i], D, U[u])
                D = -_d(gi) * _d(Ri)
                add(dP[u], D, Q[i]), add(dQ[i], D, P[u])
                D = _d(gj) * _d(-Rj) - _d(Rj)
                add(dU[u], D, V[j]), add(dV[j], D, U[u])
                D = _d(-gj) * _d(Rj)
                add(dP[u], D, Q[j]), add(dQ[j], D, P[u])
            elif variant == "nbpoo":  # _NBPOo.py
                add(dU[u], _d(-Ri), V[i]), add(dV[i], _d(-Ri), U[u])
                add(dP[u], -_d(gi), Q[i]), add(dQ[i], -_d(gi), P[u])
                den = _d(-Rj) + _d(gj) * _d(Rj) + 0.1**10
                D = ((_d(gj) - 1) * _d(Rj) * _d(-Rj)) / den
                add(dU[u], D, V[j]), add(dV[j], D, U[u])
                D = (_d(gj) * _d(-gj) * _d(Rj)) / den
                add(dP[u], D, Q[j]), add(dQ[j], D, P[u])
            elif variant == "bpo":  # _BPO.py
                add(dU[u], _d(-Ri), V[i]), add(dV[i], _d(-Ri), U[u])
                add(dU[u], -_d(Rj), V[j]), add(dV[j], -_d(Rj), U[u])
            elif variant == "bpr":  # _BPR.py, whose d(x) is sigmoid(-x)
                s = _d(-(Ri - Rj))
                for k in range(K0):
                    dU[u][k] += s * (V[i][k] - V[j][k])
                add(dV[i], s, U[u]), add(dV[j], -s, U[u])

    def upd(M, dM, lam):  # type: ignore[no-untyped-def]
        return [
            [m + eta * (d - lam * m) for m, d in zip(r, dr, strict=True)]
            for r, dr in zip(M, dM, strict=True)
        ]

    return upd(U, dU, lam_r), upd(V, dV, lam_r), upd(P, dP, lam_phi), upd(Q, dQ, lam_phi)


@pytest.mark.parametrize("variant", ["nbpo", "nbpoo", "bpo", "bpr"])
def test_step_matches_code_transcription(variant: str) -> None:
    g = torch.Generator().manual_seed(0)
    f = init_factors(4, 6, dim=3, flip_dim=2, dtype=torch.float64, generator=g)
    f = NBPOFactors(f.U * 4, f.V * 4, f.P, f.Q)  # larger logits: the clip and r != 0.5 matter
    users = torch.tensor([0, 1, 1, 3])
    pos = torch.tensor([2, 0, 5, 2])
    neg = torch.tensor([[1, 3], [4, 4], [2, 1], [0, 5]])
    got = nbpo_step(f, users, pos, neg, variant=variant, lr=0.05, reg=1.0, reg_flip=5.0)
    triples = list(zip(users.tolist(), pos.tolist(), neg.tolist(), strict=True))
    want = _code_batch(variant, *(t.tolist() for t in f), triples, 0.05, 1.0, 5.0)
    lam_flip = variant in ("nbpo", "nbpoo")
    for name, a, b, orig in zip("UVPQ", got, want, f, strict=True):
        if name in "PQ" and not lam_flip:
            torch.testing.assert_close(a, orig)  # BPO/BPR leave the flip factors alone
        else:
            torch.testing.assert_close(a, torch.tensor(b, dtype=torch.float64), msg=name)


def test_sigmoid_clip() -> None:
    x = torch.tensor([-10.5, -10.0, 0.0, 10.0, 10.5], dtype=torch.float64)
    torch.testing.assert_close(
        clipped_sigmoid(x), torch.tensor([_d(v) for v in x.tolist()], dtype=torch.float64)
    )


def _logits(seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randn(*s, generator=g, dtype=torch.float64) * 2 for s in ((3,), (3, 2), (3,), (3, 2))
    )


def test_card1_gamma_zero_reduces_to_bpo() -> None:
    """Card test 1: gamma = 0 (g -> -inf) turns NBPO's and NBPOo's x-directions into BPO's."""
    xp, xn, _, _ = _logits()
    gp, gn = torch.full_like(xp, -50.0), torch.full_like(xn, -50.0)
    bpo = nbpo_directions(x_pos=xp, x_neg=xn, variant="bpo")
    for v in ("nbpo", "nbpoo"):
        d = nbpo_directions(x_pos=xp, x_neg=xn, g_pos=gp, g_neg=gn, variant=v)
        torch.testing.assert_close(d[0], bpo[0])
        torch.testing.assert_close(d[2], bpo[2], atol=1e-9, rtol=1e-9)
    # NBPOs reduces to the plain likelihood version: d/dx [r_i + (1 - r_j)]
    d = nbpo_directions(x_pos=xp, x_neg=xn, g_pos=gp, g_neg=gn, variant="nbpos")
    ri, rj = torch.sigmoid(xp)[:, None], torch.sigmoid(xn)
    torch.testing.assert_close(d[0], (ri * (1 - ri)).expand_as(xn))
    torch.testing.assert_close(d[2], -rj * (1 - rj))


@pytest.mark.parametrize(
    ("variant", "objective"), [("nbpoo", nbpoo_log_likelihood), ("nbpos", nbpos_likelihood)]
)
def test_card2_3_directions_are_autograd_of_their_objectives(variant: str, objective) -> None:  # type: ignore[no-untyped-def]
    """Card tests 2 and 3: NBPOo/NBPOs directions equal autograd of their (log-)likelihoods."""
    xp, xn, gp, gn = (t.requires_grad_() for t in _logits())
    obj = objective(x_pos=xp, x_neg=xn, g_pos=gp, g_neg=gn)
    gxp, gxn, ggp, ggn = torch.autograd.grad(obj, [xp, xn, gp, gn])
    d = nbpo_directions(
        x_pos=xp.detach(), x_neg=xn.detach(), g_pos=gp.detach(), g_neg=gn.detach(), variant=variant
    )
    torch.testing.assert_close(d[0].sum(1), gxp, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(d[1].sum(1), ggp, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(d[2], gxn, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(d[3], ggn, rtol=1e-8, atol=1e-8)


def test_main_rule_is_not_a_gradient() -> None:
    """The main NBPO rule has asymmetric mixed partials, so it is no scalar objective's gradient:
    d(dx_neg)/dg != d(dg_neg)/dx for an unvoted item."""
    x = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
    gl = torch.tensor([[-0.4]], dtype=torch.float64, requires_grad=True)
    z = torch.zeros(1, dtype=torch.float64)
    d = nbpo_directions(x_pos=z, x_neg=x, g_pos=z, g_neg=gl, variant="nbpo")
    (dxg,) = torch.autograd.grad(d[2].sum(), gl, retain_graph=True)
    (dgx,) = torch.autograd.grad(d[3].sum(), x)
    assert abs(float(dxg) - float(dgx)) > 1e-3


def test_card4_posterior() -> None:
    """Card test 4: r gamma / (1 - r + r gamma) in [0, 1], 0 at gamma = 0, r at gamma = 1."""
    r = torch.linspace(0, 1, 11, dtype=torch.float64)
    for gam in torch.linspace(0, 1, 11, dtype=torch.float64):
        p = hidden_positive_posterior(r, gam.expand_as(r))
        assert bool(((p >= 0) & (p <= 1)).all())
    torch.testing.assert_close(
        hidden_positive_posterior(r, torch.zeros_like(r)), torch.zeros_like(r)
    )
    torch.testing.assert_close(hidden_positive_posterior(r, torch.ones_like(r)), r)


def test_init_starts_as_bpo() -> None:
    """The code's init: g = P.Q about -6 at K1 = 50, so gamma is about 0.002."""
    f = init_factors(50, 60, generator=torch.Generator().manual_seed(0))
    gamma = torch.sigmoid(f.P @ f.Q.T)
    assert 0.0005 < float(gamma.mean()) < 0.01
    assert bool((f.U >= 0).all()) and bool((f.Q <= 0).all())


def test_sampler_excludes_training_positives_and_is_uniform() -> None:
    train = torch.zeros(2, 10, dtype=torch.bool)
    train[0, :5] = True
    users = torch.tensor([0] * 2000 + [1] * 2000)
    out = sample_unvoted(train, users, 4, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4000, 4)
    assert not bool(train[users[:, None].expand_as(out), out].any())
    counts = torch.bincount(out[:2000].reshape(-1), minlength=10).double()
    assert float(counts[:5].sum()) == 0
    assert float((counts[5:] / counts[5:].sum() - 0.2).abs().max()) < 0.03
    again = sample_unvoted(train, users, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_module_and_repr() -> None:
    m = NBPO(variant="nbpoo", lr=0.005, reg=1.0, reg_flip=0.5)
    assert "variant='nbpoo'" in repr(m) and "reg_flip=0.5" in repr(m)
    f = init_factors(3, 4, dim=2, flip_dim=2, generator=torch.Generator().manual_seed(0))
    out = m(*f, torch.tensor([0]), torch.tensor([1]), torch.tensor([[2, 3]]))
    want = nbpo_step(
        f,
        torch.tensor([0]),
        torch.tensor([1]),
        torch.tensor([[2, 3]]),
        variant="nbpoo",
        lr=0.005,
        reg=1.0,
        reg_flip=0.5,
    )
    for a, b in zip(out, want, strict=True):
        torch.testing.assert_close(a, b)


def test_errors() -> None:
    z = torch.zeros(2)
    with pytest.raises(ValueError, match="nbpo_directions: variant"):
        nbpo_directions(x_pos=z, x_neg=z[:, None], variant="warp")
    with pytest.raises(ValueError, match="needs g_pos and g_neg"):
        nbpo_directions(x_pos=z, x_neg=z[:, None])
    with pytest.raises(ValueError, match=r"nbpo_directions: x_pos must be \(B,\)"):
        nbpo_directions(x_pos=z, x_neg=z, variant="bpo")
    with pytest.raises(ValueError, match="a user has every item"):
        sample_unvoted(torch.ones(1, 3, dtype=torch.bool), torch.tensor([0]), generator=None)
    with pytest.raises(TypeError, match="sample_unvoted: train must be a 2-D bool"):
        sample_unvoted(torch.ones(1, 3), torch.tensor([0]))
    f = init_factors(2, 3, dim=2, flip_dim=2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"nbpo_step: pos_items must hold ids in \[0, 3\)"):
        nbpo_step(f, torch.tensor([0]), torch.tensor([7]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="NBPO: lr"):
        NBPO(lr=-1.0)
