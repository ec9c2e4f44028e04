"""AMCL (Wang et al., ECCV 2024) on SimCLR: formula, NT-Xent reduction, properties, errors.

No installed package implements AMCL (the official code is not a faithful reference, see the
card); the references are a naive float64 loop from the paper's equation and, for one head
with a fixed temperature, NT-Xent (posneg's own and pytorch-metric-learning's).
"""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning import losses as pml_losses

from posneg.losses.amcl import AMCLLoss, amcl, amcl_temperature

TAU_MIN, TAU_MAX = 1e-5, 2.0


def _logit_for(t: float, tau_min: float = TAU_MIN, tau_max: float = TAU_MAX) -> float:
    p = (t - tau_min) / (tau_max - tau_min)
    return math.log(p / (1.0 - p))


def _const_fn(logit: float):  # type: ignore[no-untyped-def]
    def fn(c: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.full((a.shape[0], b.shape[0]), logit, dtype=a.dtype, device=a.device)

    return fn


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> list[float]:
    u = torch.cat([z1, z2]).to(torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    n, b = u.shape[0], z1.shape[0]
    out = []
    for i in range(n):
        p = (i + b) % n
        denom = sum(math.exp(float(u[i] @ u[j]) / t) for j in range(n) if j != i)
        out.append(-float(u[i] @ u[p]) / t + math.log(denom))
    return out


def naive_amcl(
    z1: torch.Tensor,
    z2: torch.Tensor,
    phi: list[torch.nn.Module],
    *,
    reg_weight: float,
    reg_dim: float,
    tau_min: float = TAU_MIN,
    tau_max: float = TAU_MAX,
) -> list[float]:
    """Paper equation, one anchor, head and pair at a time; phi_c applied to cat([z_i, z_j])."""
    n_heads, b, _ = z1.shape
    n = 2 * b
    out = [0.0] * n
    for c in range(n_heads):
        u = torch.cat([z1[c], z2[c]]).to(torch.float64)
        u = u / u.norm(dim=1, keepdim=True)
        for i in range(n):
            taus = {}
            for j in range(n):
                if j == i:
                    continue
                logit = float(phi[c](torch.cat([u[i], u[j]])).squeeze())
                taus[j] = tau_min + (tau_max - tau_min) / (1.0 + math.exp(-logit))
            p = (i + b) % n
            denom = sum(math.exp(float(u[i] @ u[j]) / taus[j]) for j in taus)
            base = -float(u[i] @ u[p]) / taus[p] + math.log(denom)
            reg = sum(0.5 * reg_dim * math.log(t) + 1.0 / t for t in taus.values()) / (n - 1)
            out[i] += base + reg_weight * reg
    return out


def _module(seed: int = 0, dtype: torch.dtype = torch.float64, **kw: object) -> AMCLLoss:
    hyper: dict[str, object] = {"num_heads": 2, "hidden_dim": 12, "out_dim": 6}
    hyper.update(kw)
    m = AMCLLoss(10, generator=torch.Generator().manual_seed(seed), **hyper)  # type: ignore[arg-type]
    return m.to(dtype)


def _feats(b: int, d: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(2, b, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- 1. formula ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_matches_naive_formula_with_pair_adaptive_temperatures(chunk_size: int | None) -> None:
    m = _module(seed=1, chunk_size=chunk_size, reduction="none", reg_weight=0.1)
    h1, h2 = _feats(5, 10, seed=2)
    with torch.no_grad():
        z1, z2 = m.project(h1), m.project(h2)
        expected = naive_amcl(z1, z2, list(m.temperature_nets), reg_weight=0.1, reg_dim=6.0)
        got = m(h1, h2)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_temperature_logits_equal_phi_on_concatenation() -> None:
    m = _module(seed=3)
    g = torch.Generator().manual_seed(4)
    a, b = (
        torch.randn(4, 6, generator=g, dtype=torch.float64),
        torch.randn(7, 6, generator=g).double(),
    )
    for c in range(2):
        got = m.temperature_logits(c, a, b)
        ref = torch.stack(
            [
                torch.stack([m.temperature_nets[c](torch.cat([x, y])).squeeze() for y in b])
                for x in a
            ]
        )
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("t", [0.1, 0.5, 1.3])
def test_one_head_fixed_temperature_is_nt_xent_plus_regulariser(t: float) -> None:
    z1, z2 = _feats(6, 5, seed=5)
    fixed = _const_fn(_logit_for(t))
    got = amcl(z1[None], z2[None], temperature_fn=fixed, reg_weight=0.3, reduction="none")
    reg = 0.3 * (0.5 * 5 * math.log(t) + 1.0 / t)  # n = D = 5
    torch.testing.assert_close(got - reg, torch.tensor(naive_nt_xent(z1, z2, t)).double())
    mean = amcl(z1[None], z2[None], temperature_fn=fixed, reg_weight=0.3)
    # reference: pytorch-metric-learning's NTXentLoss on the 2B views
    labels = torch.arange(6).repeat(2)
    ref = pml_losses.NTXentLoss(temperature=t)(torch.cat([z1, z2]), labels)
    torch.testing.assert_close(mean - reg, ref)


def test_one_head_fixed_temperature_equals_posneg_nt_xent() -> None:
    info_nce = pytest.importorskip("posneg.losses.info_nce")
    z1, z2 = _feats(7, 4, seed=6)
    got = amcl(z1[None], z2[None], temperature_fn=_const_fn(_logit_for(0.4)), reg_weight=0.0)
    torch.testing.assert_close(got, info_nce.nt_xent(z1, z2, temperature=0.4))


def test_module_one_head_with_phi_fixed_is_nt_xent_plus_regulariser() -> None:
    m = _module(seed=7, num_heads=1, reg_weight=0.1)
    t = 0.25
    with torch.no_grad():
        last = m.temperature_nets[0][2]
        last.weight.zero_()
        last.bias.fill_(_logit_for(t))
    h1, h2 = _feats(6, 10, seed=8)
    loss = m(h1, h2)
    z1, z2 = m.project(h1)[0], m.project(h2)[0]
    expected = sum(naive_nt_xent(z1.detach(), z2.detach(), t)) / 12
    reg = 0.1 * (0.5 * 6 * math.log(t) + 1.0 / t)  # n = out_dim = 6
    torch.testing.assert_close(loss - reg, torch.tensor(expected, dtype=torch.float64))


# --- 3. properties ---------------------------------------------------------------------------


def test_temperatures_inside_range() -> None:
    m = _module(seed=9, tau_min=0.05, tau_max=0.8)
    g = torch.Generator().manual_seed(10)
    a = torch.randn(16, 6, generator=g, dtype=torch.float64)
    tau = m.temperatures(0, a, a)
    assert bool((tau > 0.05).all()) and bool((tau < 0.8).all())
    # even saturated logits never leave the closed range
    big = amcl_temperature(torch.tensor([-1e4, 0.0, 1e4]), tau_min=0.05, tau_max=0.8)
    assert bool((big >= 0.05).all()) and bool((big <= 0.8).all())
    torch.testing.assert_close(big[1], torch.tensor(0.425))


def test_gradients_reach_heads_and_temperature_networks() -> None:
    m = _module(seed=11, dtype=torch.float32, num_heads=3, chunk_size=4)
    h1, h2 = _feats(6, 10, seed=12, dtype=torch.float32)
    h1.requires_grad_(True)
    m(h1, h2).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    assert h1.grad is not None and bool(torch.isfinite(h1.grad).all())


@pytest.mark.parametrize("reg_dim", [None, 4.0])
def test_regulariser_alone_pushes_tau_to_two_over_n(reg_dim: float | None) -> None:
    # 2B mutually orthogonal embeddings: every similarity off the diagonal is 0, so the base
    # loss is log(2B - 1) whatever tau is and only the regulariser moves tau.
    b, d = 3, 8
    eye = torch.eye(d, dtype=torch.float64)
    z1, z2 = eye[:b][None], eye[b : 2 * b][None]
    logit = torch.zeros((), dtype=torch.float64, requires_grad=True)

    def fn(c: int, a: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        return logit.expand(a.shape[0], cands.shape[0])

    n = d if reg_dim is None else reg_dim
    opt = torch.optim.Adam([logit], lr=0.1)
    for _ in range(150):
        opt.zero_grad()
        loss = amcl(z1, z2, temperature_fn=fn, reg_weight=1.0, reg_dim=reg_dim)
        loss.backward()
        opt.step()
    tau = amcl_temperature(logit.detach(), tau_min=TAU_MIN, tau_max=TAU_MAX)
    assert abs(float(tau) - 2.0 / n) < 1e-3
    with torch.no_grad():
        base = amcl(z1, z2, temperature_fn=fn, reg_weight=0.0)
    torch.testing.assert_close(base, torch.tensor(math.log(2 * b - 1), dtype=torch.float64))


@settings(max_examples=20, deadline=None)
@given(
    c=st.integers(1, 3),
    b=st.integers(2, 6),
    d=st.integers(1, 5),
    chunk=st.integers(1, 13),
    seed=st.integers(0, 10_000),
)
def test_hypothesis_chunks_permutation_view_swap(
    c: int, b: int, d: int, chunk: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(2, c, b, d, generator=g, dtype=torch.float64)
    w = torch.randn(c, 2 * d, generator=g, dtype=torch.float64)

    def fn(k: int, a: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        return (a @ w[k, :d])[:, None] * (cands @ w[k, d:])[None, :]

    full = amcl(z1, z2, temperature_fn=fn, reduction="none")
    assert full.shape == (2 * b,)
    assert bool(torch.isfinite(full).all())
    torch.testing.assert_close(
        amcl(z1, z2, temperature_fn=fn, reduction="none", chunk_size=chunk), full
    )
    perm = torch.randperm(b, generator=g)
    permuted = amcl(z1[:, perm], z2[:, perm], temperature_fn=fn, reduction="none")
    torch.testing.assert_close(permuted, torch.cat([full[:b][perm], full[b:][perm]]))
    swapped = amcl(z2, z1, temperature_fn=fn, reduction="none")
    torch.testing.assert_close(swapped, torch.roll(full, b))
    total = amcl(z1, z2, temperature_fn=fn, reduction="sum")
    torch.testing.assert_close(total, full.sum())


def test_half_inputs_run_in_float32() -> None:
    m = _module(seed=13, dtype=torch.float32)
    h1, h2 = _feats(6, 10, seed=14, dtype=torch.float32)
    ref = m(h1.half().float(), h2.half().float())
    for dt in (torch.float16, torch.bfloat16):
        out = m(h1.to(dt), h2.to(dt))
        assert out.dtype == torch.float32 and torch.isfinite(out)
    torch.testing.assert_close(m(h1.half(), h2.half()), ref)


def test_generator_makes_initialisation_reproducible_and_spares_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = _module(seed=15), _module(seed=15)
    assert torch.equal(torch.get_rng_state(), before)
    other = _module(seed=16)
    for pa, pb, po in zip(a.parameters(), b.parameters(), other.parameters(), strict=True):
        assert torch.equal(pa, pb) and not torch.equal(pa, po)
        fan_in = pa.shape[-1] if pa.dim() == 2 else None
        if fan_in is not None:  # nn.Linear's default law: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            assert float(pa.detach().abs().max()) <= 1.0 / math.sqrt(fan_in)
    AMCLLoss(10, num_heads=1, hidden_dim=4, out_dim=3)  # without a generator: global RNG
    assert not torch.equal(torch.get_rng_state(), before)


def test_module_pickles_and_repr() -> None:
    m = _module(seed=16, reg_weight=0.2)
    h1, h2 = _feats(4, 10, seed=17)
    m2 = pickle.loads(pickle.dumps(m))
    torch.testing.assert_close(m2(h1, h2), m(h1, h2))
    r = repr(m)
    assert "num_heads=2" in r and "out_dim=6" in r and "reg_weight=0.2" in r


# --- 4. errors -------------------------------------------------------------------------------


def test_errors_functional_tensors() -> None:
    z = torch.randn(1, 4, 3)
    fn = _const_fn(0.0)
    with pytest.raises(TypeError, match=r"amcl: z1 must be a torch\.Tensor"):
        amcl([1.0], z, temperature_fn=fn)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="amcl: z2 must be a floating-point tensor"):
        amcl(z, z.long(), temperature_fn=fn)
    with pytest.raises(ValueError, match=r"amcl: z1 must have shape \(C, B, D\); got \(4, 3\)"):
        amcl(z[0], z[0], temperature_fn=fn)
    with pytest.raises(ValueError, match=r"amcl: z2 must have shape \(C, B, D\) matching z1"):
        amcl(z, torch.randn(1, 5, 3), temperature_fn=fn)
    with pytest.raises(ValueError, match="amcl: z2 is on meta but z1 is on cpu"):
        amcl(z, torch.empty(1, 4, 3, device="meta"), temperature_fn=fn)
    with pytest.raises(
        TypeError, match=r"amcl: z2 has dtype torch\.float64 but z1 has torch\.float32"
    ):
        amcl(z, z.double(), temperature_fn=fn)
    with pytest.raises(ValueError, match=r"amcl: z1 must have at least 2 rows \(B >= 2\)"):
        amcl(z[:, :1], z[:, :1], temperature_fn=fn)
    with pytest.raises(ValueError, match="amcl: z1 must have C >= 1 and D >= 1"):
        amcl(z[:0], z[:0], temperature_fn=fn)
    bad = z.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="amcl: z2 contains NaN or inf"):
        amcl(z, bad, temperature_fn=fn)


def test_errors_functional_hyperparameters() -> None:
    z = torch.randn(1, 4, 3)
    fn = _const_fn(0.0)
    with pytest.raises(TypeError, match="amcl: temperature_fn must be callable"):
        amcl(z, z, temperature_fn=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"amcl: temperature_fn must return a \(8, 8\) tensor"):
        amcl(z, z, temperature_fn=lambda c, a, b: torch.zeros(a.shape[0]))
    with pytest.raises(ValueError, match="amcl: tau_min must be > 0"):
        amcl(z, z, temperature_fn=fn, tau_min=0.0)
    with pytest.raises(ValueError, match="amcl: tau_min must be < tau_max"):
        amcl(z, z, temperature_fn=fn, tau_min=1.0, tau_max=0.5)
    with pytest.raises(ValueError, match="amcl: reg_weight must be >= 0"):
        amcl(z, z, temperature_fn=fn, reg_weight=-0.1)
    with pytest.raises(ValueError, match="amcl: reg_dim must be > 0"):
        amcl(z, z, temperature_fn=fn, reg_dim=0)
    with pytest.raises(ValueError, match="amcl: temperature_width must be >= 1"):
        amcl(z, z, temperature_fn=fn, temperature_width=0)
    with pytest.raises(TypeError, match="amcl: normalize must be a bool"):
        amcl(z, z, temperature_fn=fn, normalize=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="amcl: reduction must be one of"):
        amcl(z, z, temperature_fn=fn, reduction="heads")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="amcl: chunk_size must be >= 1"):
        amcl(z, z, temperature_fn=fn, chunk_size=0)


def test_errors_module() -> None:
    with pytest.raises(ValueError, match="AMCLLoss: in_dim must be >= 1"):
        AMCLLoss(0)
    with pytest.raises(TypeError, match="AMCLLoss: num_heads must be an int"):
        AMCLLoss(4, num_heads=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="AMCLLoss: num_heads must be >= 1"):
        AMCLLoss(4, num_heads=0)
    with pytest.raises(ValueError, match="AMCLLoss: tau_min must be < tau_max"):
        AMCLLoss(4, tau_min=2.0, tau_max=2.0)
    with pytest.raises(ValueError, match="AMCLLoss: reg_weight must be >= 0"):
        AMCLLoss(4, reg_weight=-1.0)
    with pytest.raises(TypeError, match=r"AMCLLoss: generator must be a torch\.Generator"):
        AMCLLoss(4, generator=0)  # type: ignore[arg-type]
    m = AMCLLoss(4, num_heads=1, hidden_dim=4, out_dim=3, temperature_hidden_dim=2)
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"AMCLLoss: h2 must have shape \(B, 4\) \(in_dim\)"):
        m(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"AMCLLoss: h2 must have shape \(B, D\) matching h1"):
        m(x, torch.randn(6, 4))
    with pytest.raises(ValueError, match="AMCLLoss: h2 contains NaN or inf"):
        m(x, torch.full((5, 4), float("inf")))
    with pytest.raises(ValueError, match="AMCLLoss: h1 must have at least 2 rows"):
        m(x[:1], x[:1])
    with pytest.raises(TypeError, match=r"AMCLLoss: h1 has dtype torch\.float64 but the module's"):
        m(x.double(), x.double())
    with pytest.raises(ValueError, match="AMCLLoss: h1 is on meta but the module's parameters"):
        m(torch.empty(5, 4, device="meta"), x)
