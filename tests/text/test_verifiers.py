"""Resampling with imperfect verifiers against the paper's closed forms, a Monte-Carlo
simulation, and the official notebook (benediktstroebl/inference-scaling-limits @ 11a8f6e,
notebooks/limits_to_inference_scaling_model.ipynb: ``get_beliefs`` and the exp_val loop)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from posneg.text.verifiers import (
    ImperfectVerifier,
    mixture_utility,
    noisy_verdicts,
    optimal_k,
    resample,
    resampling_accuracy,
    resampling_ceiling,
    resampling_utility,
)

R1, R2, P1, P2, S = 0.87, 0.13, 0.58, 0.42, 0.75


def _notebook(v_fluke: float, ks: range) -> list[float]:
    """Transcription of the notebook's loop (c = 1)."""
    c = 1
    b1 = (1 - c) * R1 + S * (1 - R1)
    b2 = (1 - c) * R2 + S * (1 - R2)
    pc1, pc2 = c * R1, c * R2
    pf1, pf2 = (1 - R1) * (1 - S), (1 - R2) * (1 - S)
    vals, out = [], []
    for k in ks:
        d = b1 ** (k - 1) * P1 + b2 ** (k - 1) * P2
        t1, t2 = b1 ** (k - 1) * P1 / d, b2 ** (k - 1) * P2 / d
        e = (1 * (pc1 * t1 + pc2 * t2) + v_fluke * (pf1 * t1 + pf2 * t2)) * (
            b1 ** (k - 1) * t1 + b2 ** (k - 1) * t2
        )
        vals.append(e)
        out.append(sum(vals[:k]))
    return out


def _exact_loop(cost: float, ks: range) -> list[float]:
    total, out = 0.0, []
    for k in ks:
        for r, p in ((R1, P1), (R2, P2)):
            beta = S * (1 - r)
            total += p * beta ** (k - 1) * (r - cost * (1 - S) * (1 - r))
        out.append(total)
    return out


def test_notebook_flag_transcribes_the_notebook() -> None:
    for cost in (0.7, 1.0, 2.0):
        nb = mixture_utility(
            rates=[R1, R2], weights=[P1, P2], k_max=15, fpr=1 - S, cost=cost, notebook=True
        )
        np.testing.assert_allclose(nb.numpy(), _notebook(-cost, range(1, 16)), rtol=1e-12)


def test_exact_differs_from_notebook_same_k_star() -> None:
    expected_k = {0.7: 3, 1.0: 2, 2.0: 1}
    for cost, k_star in expected_k.items():
        ex = mixture_utility(rates=[R1, R2], weights=[P1, P2], k_max=15, fpr=1 - S, cost=cost)
        nb = mixture_utility(
            rates=[R1, R2], weights=[P1, P2], k_max=15, fpr=1 - S, cost=cost, notebook=True
        )
        np.testing.assert_allclose(ex.numpy(), _exact_loop(cost, range(1, 16)), rtol=1e-12)
        assert optimal_k(ex) == optimal_k(nb) == k_star
        if cost < 2:
            assert float(nb.max()) > float(ex.max()) + 0.01  # the double count inflates U
    ex = mixture_utility(rates=[R1, R2], weights=[P1, P2], k_max=15, fpr=1 - S, cost=0.7)
    nb = mixture_utility(
        rates=[R1, R2], weights=[P1, P2], k_max=15, fpr=1 - S, cost=0.7, notebook=True
    )
    assert round(float(ex.max()), 3) == 0.525 and round(float(nb.max()), 3) == 0.554


def test_formula_naive_loop() -> None:
    for r, fpr, fnr in ((0.3, 0.2, 0.1), (0.9, 0.5, 0.0), (0.05, 0.01, 0.3)):
        c, a = 1 - fnr, (1 - fnr) * r + fpr * (1 - r)
        for k in range(0, 6):
            acc = sum(((1 - a) ** (j - 1)) * c * r for j in range(1, k + 1))
            got = float(
                resampling_accuracy(r=torch.tensor(r, dtype=torch.float64), k=k, fpr=fpr, fnr=fnr)
            )
            assert math.isclose(got, acc, rel_tol=1e-12, abs_tol=1e-15)


def test_properties() -> None:
    r = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(resampling_accuracy(r=r, k=1, fpr=0.3), r)  # Acc(1) = c r
    ks = torch.arange(1, 50)
    acc = resampling_accuracy(r=torch.tensor(0.4, dtype=torch.float64), k=ks, fpr=0.2)
    assert (acc.diff() >= 0).all()
    ceil = resampling_ceiling(r=torch.tensor(0.4, dtype=torch.float64), fpr=0.2)
    assert float(acc[-1]) <= float(ceil) and math.isclose(float(acc[-1]), float(ceil), rel_tol=1e-6)
    assert torch.allclose(resampling_ceiling(r=r[1:], fpr=0.0), torch.ones(10, dtype=torch.float64))
    assert float(resampling_accuracy(r=0.0, k=10, fpr=0.3)) == 0.0
    for rr in (0.1, 0.5, 0.9):
        u = resampling_utility(r=torch.tensor(rr, dtype=torch.float64), k=ks, fpr=0.3, cost=1.0)
        bracket = rr - 1.0 * 0.3 * (1 - rr)
        assert (torch.sign(u) == math.copysign(1.0, bracket)).all()
    # a one-type mixture reduces to the per-problem utility
    mix = mixture_utility(rates=[0.4], weights=[1.0], k_max=10, fpr=0.2, cost=1.5)
    per = resampling_utility(
        r=torch.tensor(0.4, dtype=torch.float64), k=torch.arange(1, 11), fpr=0.2, cost=1.5
    )
    assert torch.allclose(mix, per)
    assert optimal_k(torch.tensor([-1.0, -0.5])) == 0


def test_simulation_matches_closed_form() -> None:
    r, fpr, fnr, k, n = 0.3, 0.25, 0.1, 4, 20000
    g = torch.Generator().manual_seed(0)

    def generate(index, gen):  # type: ignore[no-untyped-def]
        return (torch.rand(index.shape, generator=gen) < r).tolist()

    def verify(index, cands, gen):  # type: ignore[no-untyped-def]
        return noisy_verdicts(
            torch.tensor(cands, dtype=torch.bool), fpr=fpr, fnr=fnr, generator=gen
        )

    out = resample(n, k=k, generate=generate, verify=verify, generator=g)
    correct = torch.tensor([a is True for a in out.answers]) & out.accepted
    p = float(resampling_accuracy(r=torch.tensor(r, dtype=torch.float64), k=k, fpr=fpr, fnr=fnr))
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(float(correct.double().mean()) - p) < 3 * sd
    assert int(out.attempts.max()) <= k


def test_module_and_generator() -> None:
    v = ImperfectVerifier(fpr=0.1, fnr=0.2, cost=2.0)
    assert "fpr=0.1" in repr(v) and "cost=2.0" in repr(v)
    c = torch.rand(100, generator=torch.Generator().manual_seed(0)) < 0.5
    state = torch.get_rng_state()
    a = v.verdicts(c, generator=torch.Generator().manual_seed(1))
    b = v.verdicts(c, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())


def test_errors() -> None:
    with pytest.raises(ValueError, match="resampling_accuracy: fpr must be in"):
        resampling_accuracy(r=0.5, k=1, fpr=1.5)
    with pytest.raises(ValueError, match="resampling_accuracy: r must hold probabilities"):
        resampling_accuracy(r=1.5, k=1, fpr=0.1)
    with pytest.raises(ValueError, match="resampling_accuracy: k must hold integers"):
        resampling_accuracy(r=0.5, k=1.5, fpr=0.1)
    with pytest.raises(ValueError, match="mixture_utility: weights must sum to 1"):
        mixture_utility(rates=[0.1, 0.2], weights=[0.5, 0.6], k_max=3, fpr=0.1, cost=1.0)
    with pytest.raises(TypeError, match="noisy_verdicts: correct must be a bool tensor"):
        noisy_verdicts(torch.zeros(3), fpr=0.1, fnr=0.1)
    with pytest.raises(ValueError, match="resample: k must be >= 1"):
        resample(3, k=0, generate=lambda i, g: [], verify=lambda i, c, g: torch.zeros(0))
