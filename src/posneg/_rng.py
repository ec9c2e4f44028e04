"""Draws from a ``torch.Generator``: the only place that builds random variates torch.distributions
cannot draw with a generator (Beta, Gamma).

``generator=None`` uses torch's global RNG, so DataLoader worker seeding keeps working; with a
generator given, the global RNG is never touched.
"""

from __future__ import annotations

import torch


def epoch_generator(generator: torch.Generator | None) -> torch.Generator:
    """The generator a sampler's ``__iter__`` draws one epoch with.

    ``generator`` itself when given (successive epochs continue its stream); otherwise a fresh
    CPU generator seeded by one int64 draw from torch's global RNG, as torch's ``RandomSampler``
    does, so every epoch differs and DataLoader seeding still applies.
    """
    if generator is not None:
        return generator
    seed = int(torch.empty((), dtype=torch.int64).random_().item())
    return torch.Generator().manual_seed(seed)


def uniform(
    shape: tuple[int, ...],
    *,
    low: float = 0.0,
    high: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """U(low, high) draws of ``shape``."""
    u = torch.rand(shape, device=device, dtype=dtype, generator=generator)
    return low + (high - low) * u


def randint(
    high: int,
    shape: tuple[int, ...],
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Integers uniform on [0, high) as int64."""
    return torch.randint(high, shape, device=device, generator=generator)


def randperm(
    n: int, *, device: torch.device | str | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random permutation of 0..n-1 (int64)."""
    return torch.randperm(n, device=device, generator=generator)


def _gamma_parts(
    concentration: torch.Tensor, *, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat float64 pieces of Gamma draws: ``(a, g, u)`` with Gamma(a) = ``g * u^(1/a)`` where
    ``a < 1`` (the boost) and ``g`` where ``a >= 1`` (``u`` is 1 there)."""
    a = concentration.reshape(-1).to(torch.float64)
    if bool((a <= 0).any()):
        raise ValueError("gamma: concentration must be > 0")
    device = a.device
    boost = a < 1
    a1 = torch.where(boost, a + 1.0, a)
    d = a1 - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)

    def propose(dd: torch.Tensor, cc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = dd.numel()
        x = torch.randn(m, device=device, dtype=torch.float64, generator=generator)
        u = torch.rand(m, device=device, dtype=torch.float64, generator=generator)
        v = (1.0 + cc * x) ** 3
        log_v = torch.log(v.clamp_min(1e-300))
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * x * x + dd - dd * v + dd * log_v)
        return dd * v, ok

    # First round on the whole tensor (no indexing); later rounds only on the rejected entries.
    out, ok = propose(d, c)
    todo = (~ok).nonzero().squeeze(1)
    while todo.numel() > 0:
        value, ok = propose(d[todo], c[todo])
        out[todo[ok]] = value[ok]
        todo = todo[~ok]
    u = torch.ones_like(a)
    if bool(boost.any()):
        drawn = torch.rand(a.shape, device=device, dtype=torch.float64, generator=generator)
        u = torch.where(boost, drawn.clamp_min(1e-300), u)
    return a, out, u


def gamma(concentration: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gamma(concentration, 1) draws, one per element, by Marsaglia and Tsang (2000).

    Rejection sampling vectorised over a flat view of the elements: each round redraws only the
    rejected entries; acceptance is above 95% for shape >= 1, so a few rounds suffice. Shapes
    below 1 use the boost ``Gamma(a) = Gamma(a + 1) * U^(1/a)``, which underflows to 0 for
    very small shapes (use :func:`beta`, which works in log space there). Any shape, 0-d
    included.
    """
    a, g, u = _gamma_parts(concentration, generator=generator)
    out = torch.where(a < 1, g * u ** (1.0 / a), g)
    dtype = concentration.dtype if concentration.is_floating_point() else torch.float32
    return out.reshape(concentration.shape).to(dtype)


def beta(
    alpha: float | torch.Tensor,
    beta_: float | torch.Tensor,
    shape: tuple[int, ...],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Beta(alpha, beta) draws of ``shape``: X / (X + Y), X ~ Gamma(alpha), Y ~ Gamma(beta).

    Where both Gamma draws underflow to 0 (shapes around 1e-3 and below), the ratio is taken in
    log space, ``sigmoid(log X - log Y)``, so a draw is never NaN; elsewhere it is ``X / (X + Y)``.
    """
    a = torch.as_tensor(alpha, dtype=torch.float64, device=device).expand(shape)
    b = torch.as_tensor(beta_, dtype=torch.float64, device=device).expand(shape)
    a_flat, gx, ux = _gamma_parts(a.contiguous(), generator=generator)
    b_flat, gy, uy = _gamma_parts(b.contiguous(), generator=generator)
    x = torch.where(a_flat < 1, gx * ux ** (1.0 / a_flat), gx)
    y = torch.where(b_flat < 1, gy * uy ** (1.0 / b_flat), gy)
    total = x + y
    log_ratio = (torch.log(gx) + torch.log(ux) / a_flat) - (torch.log(gy) + torch.log(uy) / b_flat)
    out = torch.where(total > 0, x / total.clamp_min(1e-300), torch.sigmoid(log_ratio))
    return out.reshape(shape).to(dtype)
