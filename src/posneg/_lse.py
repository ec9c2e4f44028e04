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

When the caller knows that the gradient reaching ``lse`` will be the same for every row (a
"mean" or "sum" of per-row terms, ``uniform_grad=True``), the forward also forms ``P k`` and
``P^T q`` from the tile it already holds (``P`` the row softmax), so forward + backward cost
three GEMMs and one exp per score, and the backward only scales two (B, D)/(M, D) tensors. If
the gradient that arrives is not uniform after all, the backward recomputes as above: the hint
changes the time, never the result.

Tile buffers are allocated once per call and reused by every tile: on CPU a fresh tile-sized
allocation per tile costs page faults comparable to the tile's GEMM.

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


def _check_offsets(fn: str, exclude_offsets: Any) -> tuple[int, ...]:
    if isinstance(exclude_offsets, (str, bytes)) or not isinstance(exclude_offsets, Sequence):
        raise TypeError(
            f"{fn}: exclude_offsets must be a tuple of ints; got {type(exclude_offsets).__name__}"
        )
    return tuple(_checks.check_int(fn, "exclude_offsets[]", o) for o in exclude_offsets)


def _check_scales(fn: str, scales: Any) -> tuple[float, ...]:
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence):
        raise TypeError(
            f"{fn}: scales must be a tuple of real numbers; got {type(scales).__name__}"
        )
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
    if n_scales != 1 or not (q.is_cuda and k.is_cuda):
        return None
    try:
        mod = importlib.import_module("posneg._kernels")
    except ImportError:
        return None
    usable = getattr(mod, "triton_usable", None)
    return mod if usable is not None and bool(usable(q, k)) else None


def _row_max_(base: torch.Tensor, cols: torch.Tensor | None) -> torch.Tensor:
    """Mask the excluded ``cols`` of ``base`` (R, M) with -inf in place; return the row max (R, 1).

    An infinite row max (every column excluded, or an infinite score) becomes 0, as in
    ``torch.logsumexp``, so the shift below never produces inf - inf.
    """
    if cols is not None:
        base.scatter_(1, cols, -math.inf)
    mx = base.amax(dim=1, keepdim=True)
    return torch.where(torch.isinf(mx), torch.zeros_like(mx), mx)


def _exp_lse(
    base: torch.Tensor, mx: torch.Tensor, c: float, into: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``into = exp(c * base - c * mx)`` for ``c > 0`` (one pass plus the exp); (lse, row sum).

    ``max_j c * S_ij = c * max_j S_ij`` for ``c > 0`` (rounding is monotone), so one row max
    serves every positive scale. ``into`` may be ``base`` itself (the last use of the scores).
    """
    shift = mx * c
    t = torch.add(-shift, base, alpha=c, out=into).exp_()
    total = t.sum(dim=1)
    return total.log().add_(shift.squeeze(1)), total


def _forward_tiles(
    q: torch.Tensor, k: torch.Tensor, scales: tuple[float, ...], offsets: tuple[int, ...], step: int
) -> torch.Tensor:
    """(S, B) masked row log-sum-exps, one row tile of scores at a time.

    At most two (step, M) buffers are allocated for the whole call and reused by every tile (a
    fresh tile-sized allocation per tile costs page faults comparable to its GEMM).
    """
    b, m = q.shape[0], k.shape[0]
    out = torch.empty(len(scales), b, dtype=q.dtype, device=q.device)
    rows = min(step, b)
    base_buf = torch.empty(rows, m, dtype=q.dtype, device=q.device)
    work_buf = torch.empty_like(base_buf) if len(scales) > 1 else base_buf
    kt = k.T
    n_cols = m - len(offsets)
    for start in range(0, b, step):
        stop = min(start + step, b)
        r = stop - start
        base = torch.mm(q[start:stop], kt, out=base_buf[:r])
        cols = _excluded_cols(start, stop, m, offsets, q.device)
        if all(c >= 0.0 for c in scales):
            mx = _row_max_(base, cols)
            for s, c in enumerate(scales):
                if c == 0.0:  # log of the number of candidates, exactly
                    out[s, start:stop] = math.log(n_cols) if n_cols > 0 else -math.inf
                    continue
                into = base if s == len(scales) - 1 else work_buf[:r]
                out[s, start:stop] = _exp_lse(base, mx, c, into)[0]
            continue
        for s, c in enumerate(scales):  # a negative scale: scale first, then mask and shift
            last = s == len(scales) - 1
            t = base.mul_(c) if last else torch.mul(base, c, out=work_buf[:r])
            out[s, start:stop] = _exp_lse(t, _row_max_(t, cols), 1.0, t)[0]
    return out


def _forward_tiles_eager(
    q: torch.Tensor, k: torch.Tensor, scale: float, offsets: tuple[int, ...], step: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row log-sum-exps and the gradient directions ``u = P k``, ``v = P^T q`` (one scale > 0).

    ``P = softmax`` of each row's masked scores; ``u`` (B, D) and ``v`` (M, D) are the gradients
    of ``sum_i lse_i`` divided by ``scale``, so a uniform upstream gradient needs no recompute.
    """
    b, m = q.shape[0], k.shape[0]
    out = torch.empty(b, dtype=q.dtype, device=q.device)
    u = torch.empty_like(q)
    v = torch.zeros_like(k)
    buf = torch.empty(min(step, b), m, dtype=q.dtype, device=q.device)
    kt = k.T
    for start in range(0, b, step):
        stop = min(start + step, b)
        qt = q[start:stop]
        t = torch.mm(qt, kt, out=buf[: stop - start])
        mx = _row_max_(t, _excluded_cols(start, stop, m, offsets, q.device))
        out[start:stop], total = _exp_lse(t, mx, scale, t)  # t: exp(c S - c max), 0 if excluded
        inv = total.reciprocal_().unsqueeze(1)  # P = t * inv
        torch.mm(t, k, out=u[start:stop]).mul_(inv)
        v.addmm_(t.T, qt * inv)
    return out, u, v


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
    """dq, dk from recomputed tiles: ``P = sum_s w_s exp(c_s S - lse_s)``, dq = P k, dk = P^T q.

    The row weights ``w_s = g_s c_s`` enter the exponent as ``log |w_s|`` (no extra pass); their
    signs are applied as one row sign ``sigma`` outside the GEMMs (O((B + M) D)) and, for
    further scales, as the per-row factor ``rho_s = sigma * sign(w_s)`` of one ``addcmul_``.
    """
    b, m = q.shape[0], k.shape[0]
    w = grad * torch.tensor(scales, dtype=grad.dtype, device=grad.device)[:, None]  # (S, B)
    shift = lse - torch.log(w.abs())  # +inf where w = 0: that scale contributes exp(-inf) = 0
    sigma = torch.where(w[0] < 0, -1.0, 1.0).to(w.dtype)
    rho = sigma * torch.sign(w)  # (S, B); rho[0] is 1 or 0
    dq = torch.empty_like(q) if need[0] else None
    dk = torch.zeros_like(k) if need[1] else None
    rows = min(step, b)
    base_buf = torch.empty(rows, m, dtype=q.dtype, device=q.device)
    p_buf = torch.empty_like(base_buf) if len(scales) > 1 else base_buf
    kt = k.T
    for start in range(0, b, step):
        stop = min(start + step, b)
        r = stop - start
        qt = q[start:stop]
        base = torch.mm(qt, kt, out=base_buf[:r])
        p = p_buf[:r]
        torch.add(-shift[0, start:stop, None], base, alpha=scales[0], out=p).exp_()
        for s in range(1, len(scales)):
            # the last scale overwrites the scores; a middle one (three or more) needs its own
            into = base if s == len(scales) - 1 else torch.empty_like(base)
            t = torch.add(-shift[s, start:stop, None], base, alpha=scales[s], out=into).exp_()
            p.addcmul_(t, rho[s, start:stop, None])
        cols = _excluded_cols(start, stop, m, offsets, q.device)
        if cols is not None:
            p.scatter_(1, cols, 0.0)
        sig = sigma[start:stop, None]
        if dq is not None:
            torch.mm(p, k, out=dq[start:stop]).mul_(sig)
        if dk is not None:
            dk.addmm_(p.T, qt * sig)
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


Grads = tuple[torch.Tensor | None, torch.Tensor | None, None, None, None, None]


class _RowLSE(torch.autograd.Function):
    """Autograd node of :func:`row_logsumexp_scales`.

    Saves q, k and the (S, B) result; with ``eager`` also the (B, D) and (M, D) gradient
    directions of a uniform upstream gradient. Never a (B, M) tensor.
    """

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        scales: tuple[float, ...],
        offsets: tuple[int, ...],
        step: int,
        eager: bool,
    ) -> torch.Tensor:
        kern = _kernels(q, k, len(scales))
        eager = (
            eager
            and kern is None
            and len(scales) == 1
            and scales[0] > 0.0
            and len(offsets) < k.shape[0]
            and any(ctx.needs_input_grad[:2])
        )
        ctx.scales, ctx.offsets, ctx.step = scales, offsets, step
        ctx.triton, ctx.eager = kern is not None, eager
        if eager:
            lse, u, v = _forward_tiles_eager(q, k, scales[0], offsets, step)
            lse = lse.unsqueeze(0)
            ctx.save_for_backward(q, k, lse, u, v)
            return lse
        if kern is not None:
            # float32, as the torch path returns for half inputs (and Triton takes no float64):
            # a bfloat16 log-sum-exp would be off by up to ~0.03, every softmax weight by ~3%
            lse = kern.row_lse_forward(q, k, scale=scales[0], exclude_offsets=offsets)
            lse = lse.float().unsqueeze(0)
            ctx.save_for_backward(q, k, lse)
            return lse
        lse = _forward_tiles(q, k, scales, offsets, step)
        ctx.save_for_backward(q, k, lse)
        return lse

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Grads:
        q, k, lse = ctx.saved_tensors[:3]
        need = (bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]))
        dq: torch.Tensor | None
        dk: torch.Tensor | None
        if len(ctx.offsets) >= k.shape[0]:  # every column excluded: lse = -inf, no gradient
            dq, dk = torch.zeros_like(q), torch.zeros_like(k)
        elif torch.is_grad_enabled():  # create_graph=True: keep the gradient differentiable
            dq, dk = _backward_graph(q, k, grad, ctx.scales, ctx.offsets, ctx.step)
        elif ctx.eager and bool((grad == grad[0, 0]).all()):
            u, v = ctx.saved_tensors[3:]
            w = grad[0, 0] * ctx.scales[0]
            dq, dk = u * w, v * w
        elif ctx.triton:
            kern = importlib.import_module("posneg._kernels")
            dq, dk = kern.row_lse_backward(
                q, k, lse[0], grad[0], scale=ctx.scales[0], exclude_offsets=ctx.offsets
            )
        else:
            dq, dk = _backward_tiles(q, k, lse, grad, ctx.scales, ctx.offsets, ctx.step, need)
        return (dq if need[0] else None), (dk if need[1] else None), None, None, None, None


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
    return _apply(q, k, cs, offs, chunk_size, False)


def row_logsumexp(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    scale: float = 1.0,
    exclude_offsets: Sequence[int] = (),
    chunk_size: int | None = None,
    uniform_grad: bool = False,
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
        uniform_grad: a hint from a caller that knows the gradient reaching ``lse`` is the same
            for every row (a "mean" or "sum" of per-row terms with ``lse_i`` entering each with
            weight 1). The forward then also forms ``P k`` and ``P^T q`` from its tiles (three
            GEMMs in all) and the backward only scales them; if the gradient turns out not
            uniform, the backward recomputes the tiles as without the hint, so the result never
            depends on it, only the time does.

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
    _checks.check_bool(fn, "uniform_grad", uniform_grad)
    return _apply(q, k, (c,), offs, chunk_size, uniform_grad)[0]


def _apply(
    q: torch.Tensor,
    k: torch.Tensor,
    scales: tuple[float, ...],
    offsets: tuple[int, ...],
    chunk_size: int | None,
    eager: bool,
) -> torch.Tensor:
    dtype = compute_dtype(q)
    q, k = q.to(dtype), k.to(dtype)
    m = int(k.shape[0])
    offs = tuple(sorted({o % m for o in offsets}))
    step = rows_per_block(int(q.shape[0]), m, chunk_size)
    out: torch.Tensor = _RowLSE.apply(q, k, scales, offs, step, eager)
    return out
