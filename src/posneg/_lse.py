"""Per-row log-sum-exp of scaled scores with a memory-efficient custom backward.

Every similarity objective of the InfoNCE family (InfoNCE, NT-Xent, DCL/DCLW, HCL, SupCon) is a
per-row log-sum-exp of scores ``c * <q_i, k_j>`` plus terms that cost O(B * D). This module
computes those log-sum-exps the way memory-efficient attention does:

- **forward** scores one row tile ``q[r0:r1] @ k.T`` at a time (``posneg._tiling.rows_per_block``:
  at most ``DEFAULT_MAX_ELEMENTS`` scores alive, or ``chunk_size`` rows), takes its masked
  log-sum-exp in place and keeps only the (S, B) result;
- **backward** recomputes each tile once, forms ``P = sum_s g_s c_s exp(c_s S - lse_s)`` (0 on
  excluded columns) in place and accumulates ``dq = P @ k`` and ``dk = P.T @ q`` directly.

So forward + backward cost four GEMMs of the score shape (one forward, one recompute, dQ, dK)
plus a few passes over each tile, and memory is O((B + M) * D + one tile): no (B, M) tensor is
saved for backward. The earlier ``map_rows`` route (activation checkpointing) ran every tile's
forward twice and let autograd replay a dozen tile-sized operations; that is what this replaces.

For anchors ``q`` (B, D), candidates ``k`` (M, D), scales ``c_s`` and ``exclude_offsets`` O
(column j is excluded for row i when ``j == (i + o) mod M`` for some o in O)::

    lse_{s,i} = log sum_{j not excluded} exp(c_s * <q_i, k_j>)

A row whose every column is excluded has ``lse = -inf`` and receives no gradient.

On CUDA with a single scale, the fused Triton pair of :mod:`posneg._kernels` (``row_lse_forward``
/ ``row_lse_backward``) is used when ``posneg._kernels.triton_usable`` says so (imported lazily,
never on CPU); everything else runs the torch tiles below. Several scales (HCL's reweighting)
always run in torch: they share one score tile per block, which the kernel interface does not
offer.

Double backward (``create_graph=True``) is supported: the backward then recomputes each tile
with differentiable out-of-place operations (O(B * M) graph memory, as any double backward).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import Any

import torch

from posneg import _checks
from posneg._tiling import compute_dtype, rows_per_block

__all__ = ["row_logsumexp", "row_logsumexp_scales"]

_TRITON_DISABLED = False  # flipped by tests to force the torch path on CUDA


def _check_offsets(fn: str, exclude_offsets: Any) -> tuple[int, ...]:
    if isinstance(exclude_offsets, (str, bytes)) or not isinstance(exclude_offsets, Sequence):
        raise TypeError(
            f"{fn}: exclude_offsets must be a tuple of ints; got {type(exclude_offsets).__name__}"
        )
    return tuple(_checks.check_int(fn, "exclude_offsets[]", o) for o in exclude_offsets)


def _check_scales(fn: str, scales: Any) -> tuple[float, ...]:
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence):
        raise TypeError(f"{fn}: scales must be a tuple of real numbers; got {type(scales).__name__}")
    if len(scales) == 0:
        raise ValueError(f"{fn}: scales must hold at least one scale; got {tuple(scales)!r}")
    return tuple(_checks.check_real(fn, "scales[]", c) for c in scales)


def _check_inputs(fn: str, q: Any, k: Any) -> None:
    _checks.check_embeddings(fn, "q", q)
    _checks.check_embeddings(fn, "k", k)
    _checks.check_same_dim(fn, "k", k, "q", q)
    _checks.check_same_device(fn, "k", k, "q", q)
    _checks.check_same_dtype(fn, "k", k, "q", q)


def _excluded_cols(start: int, stop: int, m: int, offsets: tuple[int, ...], device: Any) -> Any:
    """(R, len(offsets)) int64 excluded column of each row of ``start:stop``; None if none."""
    if not offsets:
        return None
    rows = torch.arange(start, stop, device=device)
    return torch.stack([(rows + o) % m for o in offsets], dim=1)


def _kernels(q: torch.Tensor, k: torch.Tensor, n_scales: int) -> Any:
    """The ``posneg._kernels`` module when its Triton pair applies here, else None."""
    if _TRITON_DISABLED or n_scales != 1 or not (q.is_cuda and k.is_cuda):
        return None
    try:
        mod = importlib.import_module("posneg._kernels")
    except ImportError:
        return None
    usable = getattr(mod, "triton_usable", None)
    return mod if usable is not None and bool(usable(q, k)) else None


def _forward_tiles(
    q: torch.Tensor, k: torch.Tensor, scales: tuple[float, ...], offsets: tuple[int, ...], step: int
) -> torch.Tensor:
    """(S, B) masked row log-sum-exps, one row tile of scores at a time, in place."""
    b, m = q.shape[0], k.shape[0]
    out = torch.empty(len(scales), b, dtype=q.dtype, device=q.device)
    kt = k.T
    for start in range(0, b, step):
        stop = min(start + step, b)
        base = q[start:stop] @ kt  # (R, M)
        cols = _excluded_cols(start, stop, m, offsets, q.device)
        for s, c in enumerate(scales):
            last = s == len(scales) - 1
            t = base if last else base.clone()
            if c != 1.0:
                t.mul_(c)
            if cols is not None:
                t.scatter_(1, cols, -math.inf)
            mx = t.amax(dim=1, keepdim=True)
            mx = torch.where(torch.isinf(mx), torch.zeros_like(mx), mx)
            t.sub_(mx).exp_()
            out[s, start:stop] = t.sum(dim=1).log_().add_(mx.squeeze(1))
    return out


def _backward_tiles(
    q: torch.Tensor,
    k: torch.Tensor,
    lse: torch.Tensor,
    grad: torch.Tensor,
    scales: tuple[float, ...],
    offsets: tuple[int, ...],
    step: int,
    need: tuple[bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """dq, dk from recomputed tiles: ``P = sum_s g_s c_s exp(c_s S - lse_s)``, dq = P k, dk = P^T q."""
    b, m = q.shape[0], k.shape[0]
    weight = grad * torch.tensor(scales, dtype=grad.dtype, device=grad.device)[:, None]  # (S, B)
    dq = torch.empty_like(q) if need[0] else None
    dk = torch.zeros_like(k) if need[1] else None
    kt = k.T
    for start in range(0, b, step):
        stop = min(start + step, b)
        qt = q[start:stop]
        base = qt @ kt
        if len(scales) == 1:
            # P = g c exp(c S - lse): the row weight g c is applied after the GEMMs (O(R * D))
            if scales[0] != 1.0:
                base.mul_(scales[0])
            p = base.sub_(lse[0, start:stop, None]).exp_()
            row_w = weight[0, start:stop, None]
        else:
            p = torch.zeros_like(base)
            for s, c in enumerate(scales):
                e = base.mul(c).sub_(lse[s, start:stop, None]).exp_()
                p.add_(e.mul_(weight[s, start:stop, None]))
            row_w = None
        cols = _excluded_cols(start, stop, m, offsets, q.device)
        if cols is not None:
            p.scatter_(1, cols, 0.0)
        if dq is not None:
            dq_t = p @ k
            dq[start:stop] = dq_t if row_w is None else dq_t.mul_(row_w)
        if dk is not None:
            dk.addmm_(p.T, qt if row_w is None else qt * row_w)
    return dq, dk


def _backward_graph(
    q: torch.Tensor,
    k: torch.Tensor,
    grad: torch.Tensor,
    scales: tuple[float, ...],
    offsets: tuple[int, ...],
    step: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same gradients with differentiable out-of-place ops (double backward)."""
    b, m = q.shape[0], k.shape[0]
    dqs = []
    dk = torch.zeros_like(k)
    for start in range(0, b, step):
        stop = min(start + step, b)
        qt = q[start:stop]
        base = qt @ k.T
        cols = _excluded_cols(start, stop, m, offsets, q.device)
        p = torch.zeros_like(base)
        for s, c in enumerate(scales):
            t = base * c
            if cols is not None:
                t = t.scatter(1, cols, -math.inf)
            p = p + torch.softmax(t, dim=1) * (grad[s, start:stop, None] * c)
        dqs.append(p @ k)
        dk = dk + p.T @ qt
    return torch.cat(dqs, dim=0), dk


class _RowLSE(torch.autograd.Function):
    """Autograd node of :func:`row_logsumexp_scales`: saves q, k and the (S, B) result only."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        scales: tuple[float, ...],
        offsets: tuple[int, ...],
        step: int,
    ) -> torch.Tensor:
        kern = _kernels(q, k, len(scales))
        if kern is not None:
            lse = kern.row_lse_forward(q, k, scale=scales[0], exclude_offsets=offsets)
            lse = lse.to(q.dtype).unsqueeze(0)
        else:
            lse = _forward_tiles(q, k, scales, offsets, step)
        ctx.scales, ctx.offsets, ctx.step = scales, offsets, step
        ctx.triton = kern is not None
        ctx.save_for_backward(q, k, lse)
        return lse

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None]:
        q, k, lse = ctx.saved_tensors
        need = (bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]))
        if len(ctx.offsets) >= k.shape[0]:  # every column excluded: lse = -inf, no gradient
            return torch.zeros_like(q), torch.zeros_like(k), None, None, None
        if torch.is_grad_enabled():  # create_graph=True: keep the gradient differentiable
            dq, dk = _backward_graph(q, k, grad, ctx.scales, ctx.offsets, ctx.step)
            return (dq if need[0] else None), (dk if need[1] else None), None, None, None
        if ctx.triton:
            kern = importlib.import_module("posneg._kernels")
            dq, dk = kern.row_lse_backward(
                q, k, lse[0], grad[0], scale=ctx.scales[0], exclude_offsets=ctx.offsets
            )
            return (dq if need[0] else None), (dk if need[1] else None), None, None, None
        dq, dk = _backward_tiles(q, k, lse, grad, ctx.scales, ctx.offsets, ctx.step, need)
        return dq, dk, None, None, None


def row_logsumexp_scales(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    scales: Sequence[float],
    exclude_offsets: Sequence[int] = (),
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Row log-sum-exps of ``c * q @ k.T`` for several scales ``c``, sharing each score tile.

    With ``S_ij = <q_i, k_j>`` and column j excluded for row i when ``j == (i + o) mod M`` for
    some ``o`` in ``exclude_offsets``::

        out[s, i] = log sum_{j not excluded} exp(scales[s] * S_ij)

    Forward keeps only ``out``; backward recomputes the scores tile by tile and forms dq, dk
    directly (see the module docstring). Memory is O((B + M) * D + one tile).

    Args:
        q: (B, D) anchors.
        k: (M, D) candidates, same dtype and device as ``q`` (may be ``q`` itself).
        scales: one or more finite multipliers of the scores.
        exclude_offsets: diagonals to leave out (``(0,)``: a row's own column when ``k is q``).
        chunk_size: rows per tile; ``None``: as many as fit ``DEFAULT_MAX_ELEMENTS`` scores.

    Returns:
        (S, B): float32 for float16/bfloat16 inputs, else the inputs' dtype. A row whose every
        column is excluded is ``-inf``.

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, non-real scales,
            non-int offsets.
        ValueError: wrong ranks, mismatched D or device, no scales, non-finite scales, a bad
            chunk_size.

    Example:
        >>> import torch
        >>> q, k = torch.randn(6, 4), torch.randn(9, 4)
        >>> out = row_logsumexp_scales(q, k, scales=(2.0, 0.5))
        >>> torch.allclose(out[0], torch.logsumexp(2.0 * q @ k.T, dim=1), atol=1e-5)
        True
    """
    fn = "row_logsumexp_scales"
    _check_inputs(fn, q, k)
    cs = _check_scales(fn, scales)
    offs = _check_offsets(fn, exclude_offsets)
    _checks.check_chunk_size(fn, chunk_size)
    return _apply(q, k, cs, offs, chunk_size)


def row_logsumexp(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    scale: float = 1.0,
    exclude_offsets: Sequence[int] = (),
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Row log-sum-exp ``lse_i = log sum_{j not excluded} exp(scale * <q_i, k_j>)`` (B,).

    The one-scale case of :func:`row_logsumexp_scales` (same memory-efficient autograd); on
    CUDA it runs the Triton pair of :mod:`posneg._kernels` when that is usable.

    Args:
        q: (B, D) anchors.
        k: (M, D) candidates, same dtype and device as ``q`` (may be ``q`` itself).
        scale: finite multiplier of the scores (``1 / temperature``).
        exclude_offsets: column j is left out of row i when ``j == (i + o) mod M``.
        chunk_size: rows per tile; ``None``: as many as fit ``DEFAULT_MAX_ELEMENTS`` scores.

    Returns:
        (B,): float32 for float16/bfloat16 inputs, else the inputs' dtype.

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, a non-real scale,
            non-int offsets.
        ValueError: wrong ranks, mismatched D or device, a non-finite scale, a bad chunk_size.

    Example:
        >>> import torch
        >>> z = torch.randn(8, 4)
        >>> lse = row_logsumexp(z, z, scale=2.0, exclude_offsets=(0,))
        >>> ref = torch.logsumexp((2.0 * z @ z.T).fill_diagonal_(float("-inf")), dim=1)
        >>> torch.allclose(lse, ref, atol=1e-5)
        True
    """
    fn = "row_logsumexp"
    _check_inputs(fn, q, k)
    c = _checks.check_real(fn, "scale", scale)
    offs = _check_offsets(fn, exclude_offsets)
    _checks.check_chunk_size(fn, chunk_size)
    return _apply(q, k, (c,), offs, chunk_size)[0]


def _apply(
    q: torch.Tensor,
    k: torch.Tensor,
    scales: tuple[float, ...],
    offsets: tuple[int, ...],
    chunk_size: int | None,
) -> torch.Tensor:
    dtype = compute_dtype(q)
    q, k = q.to(dtype), k.to(dtype)
    m = int(k.shape[0])
    offs = tuple(sorted({o % m for o in offsets}))
    step = rows_per_block(int(q.shape[0]), m, chunk_size)
    out: torch.Tensor = _RowLSE.apply(q, k, scales, offs, step)
    return out
