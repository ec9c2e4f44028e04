"""CDvG: the objective against a float64 loop, ERM at weight 0, label-preserving views, errors.

No official code of CDvG exists (see the card); the reference is the abstract's structure
``CE(h(f(x)), y) + lambda * NT-Xent(g(f(G(x, d1))), g(f(G(x, d2))))`` with the two *translated*
views as the positive pair (not ``x`` and ``G(x, d)``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from posneg.synthetic.cdvg import (
    CDvGLoss,
    bias_transformed_views,
    cdvg_loss,
    sample_target_domains,
)

F64 = torch.float64


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def naive_cdvg(
    logits: torch.Tensor,
    labels: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    lam: float,
    t: float,
) -> float:
    """Cross-entropy plus a brute-force double loop over the 2B anchors of NT-Xent."""
    b = len(labels)
    ce = 0.0
    for i in range(b):
        row = [float(v) for v in logits[i]]
        ce += -row[int(labels[i])] + math.log(sum(math.exp(v) for v in row))
    ce /= b
    z = [r / float(r.norm()) for r in torch.cat([z1, z2])]
    nt = 0.0
    for r in range(2 * b):
        pos = (r + b) % (2 * b)
        den = sum(math.exp(float(z[r] @ z[c]) / t) for c in range(2 * b) if c != r)
        nt += -float(z[r] @ z[pos]) / t + math.log(den)
    return ce + lam * nt / (2 * b)


@pytest.mark.parametrize(("lam", "t"), [(1.0, 0.5), (0.3, 0.1), (2.0, 1.0)])
def test_formula_against_a_float64_loop(lam: float, t: float) -> None:
    logits, z1, z2 = _randn(4, 3, seed=1), _randn(4, 5, seed=2), _randn(4, 5, seed=3)
    labels = torch.tensor([0, 2, 1, 2])
    got = cdvg_loss(logits, labels, z1, z2, weight=lam, temperature=t)
    assert float(got) == pytest.approx(naive_cdvg(logits, labels, z1, z2, lam, t), rel=1e-10)


def test_weight_zero_is_erm_exactly() -> None:
    logits = _randn(6, 4, seed=4).float()
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    z = _randn(6, 3, seed=5).float()
    got = cdvg_loss(logits, labels, z, z.flip(0), weight=0.0)
    assert torch.equal(got, F.cross_entropy(logits, labels))


def test_sum_reduction_sums_both_terms() -> None:
    logits, z1, z2 = _randn(4, 3, seed=6), _randn(4, 5, seed=7), _randn(4, 5, seed=8)
    labels = torch.tensor([0, 1, 1, 2])
    mean = cdvg_loss(logits, labels, z1, z2, weight=0.7)
    total = cdvg_loss(logits, labels, z1, z2, weight=0.7, reduction="sum")
    ce = F.cross_entropy(logits, labels)
    assert float(total) == pytest.approx(4 * float(ce) + 8 * (float(mean) - float(ce)), rel=1e-10)


def test_identical_views_lower_the_contrastive_term() -> None:
    """Two views of one image that coincide (a pure bias translator on a bias-free batch) give a
    smaller NT-Xent than unrelated views."""
    logits, labels = _randn(8, 3, seed=9), torch.arange(8) % 3
    z = _randn(8, 16, seed=10)
    same = cdvg_loss(logits, labels, z, z.clone())
    other = cdvg_loss(logits, labels, z, _randn(8, 16, seed=11))
    assert float(same) < float(other)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(2, 6), d=st.integers(1, 5), c=st.integers(2, 5), seed=st.integers(0, 99))
def test_shapes_and_module_agree(b: int, d: int, c: int, seed: int) -> None:
    logits, z1, z2 = (
        _randn(b, c, seed=seed),
        _randn(b, d, seed=seed + 1),
        _randn(b, d, seed=seed + 2),
    )
    labels = torch.arange(b) % c
    f = cdvg_loss(logits, labels, z1, z2, weight=0.4, temperature=0.2)
    m = CDvGLoss(weight=0.4, temperature=0.2)(logits, labels, z1, z2)
    assert f.shape == () and torch.equal(f, m) and math.isfinite(float(f))


def test_half_inputs_reduce_in_float32() -> None:
    logits, z1, z2 = (_randn(4, k, seed=k).half() for k in (3, 6, 6))
    out = cdvg_loss(logits, torch.tensor([0, 1, 2, 0]), z1, z2)
    assert out.dtype == torch.float32 and math.isfinite(float(out))


def test_target_domains_differ_from_the_source_and_cover_the_others() -> None:
    labels = torch.tensor([0, 1, 2, 3] * 200)
    g = torch.Generator().manual_seed(0)
    d = sample_target_domains(labels, 4, generator=g)
    assert bool((d != labels).all())
    for y in range(4):
        assert set(d[labels == y].tolist()) == set(range(4)) - {y}
    d_all = sample_target_domains(labels, 4, exclude_source=False, generator=g)
    assert bool((d_all == labels).any()) and set(d_all.tolist()) == set(range(4))


def test_views_keep_the_source_label_and_use_independent_domains() -> None:
    """The translator sees the random target domains; the caller keeps ``labels`` for both
    views. An oracle recolouring translator: the view's value is its domain."""
    seen: list[torch.Tensor] = []

    def translator(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        seen.append(d)
        return x * 0 + d[:, None].to(x.dtype)

    x, labels = _randn(50, 2, seed=12), torch.arange(50) % 5
    g = torch.Generator().manual_seed(1)
    v1, v2 = bias_transformed_views(translator, x, labels, num_classes=5, generator=g)
    assert torch.equal(v1[:, 0].long(), seen[0]) and torch.equal(v2[:, 0].long(), seen[1])
    assert bool((seen[0] != labels).all()) and bool((seen[1] != labels).all())
    assert not torch.equal(seen[0], seen[1])


def test_generator_leaves_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    sample_target_domains(torch.tensor([0, 1]), 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.random.get_rng_state())


def test_errors() -> None:
    logits, z = _randn(4, 3), _randn(4, 5)
    labels = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="cdvg_loss: weight must be >= 0"):
        cdvg_loss(logits, labels, z, z, weight=-1.0)
    with pytest.raises(ValueError, match="cdvg_loss: temperature must be > 0"):
        cdvg_loss(logits, labels, z, z, temperature=0.0)
    with pytest.raises(ValueError, match="cdvg_loss: reduction must be one of"):
        cdvg_loss(logits, labels, z, z, reduction="none")
    with pytest.raises(ValueError, match="cdvg_loss: z2 must have shape"):
        cdvg_loss(logits, labels, z, _randn(4, 6))
    with pytest.raises(ValueError, match="cdvg_loss: z1 must have 4 rows"):
        cdvg_loss(logits, labels, _randn(3, 5), _randn(3, 5))
    with pytest.raises(TypeError, match="cdvg_loss: labels must be an integer tensor"):
        cdvg_loss(logits, labels.float(), z, z)
    with pytest.raises(ValueError, match="CDvGLoss: weight must be >= 0"):
        CDvGLoss(weight=-0.1)
    with pytest.raises(ValueError, match="sample_target_domains: labels must lie in"):
        sample_target_domains(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="sample_target_domains: num_classes must be >= 2"):
        sample_target_domains(torch.tensor([0, 0]), 1)
    with pytest.raises(TypeError, match="bias_transformed_views: translator must be callable"):
        bias_transformed_views(None, logits, labels, num_classes=3)  # type: ignore[arg-type]
