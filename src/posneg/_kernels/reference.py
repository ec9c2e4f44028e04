"""Pure-torch reference of the row log-sum-exp pair: what the Triton kernels must reproduce.

For anchors ``q`` (B, D), candidates ``k`` (M, D), a scale ``s`` and a set of excluded diagonals
``O`` (``exclude_offsets``), column ``j`` is excluded for row ``i`` when ``j == (i + o) mod M``
for some ``o`` in ``O``. With ``S_ij = s * <q_i, k_j>``::

    lse_i = log sum_{j not excluded} exp(S_ij)                          (forward)
    p_ij  = exp(S_ij - lse_i)  (0 where excluded)
    dq_i  = s * sum_j g_i p_ij k_j,   dk_j = s * sum_i g_i p_ij q_i      (backward, g = dL/dlse)

A row whose every column is excluded has ``lse_i = -inf`` and contributes no gradient.

Both functions work row block by row block (``posneg._tiling.rows_per_block``: at most
``DEFAULT_MAX_ELEMENTS`` scores alive at once), in float32 for float16/bfloat16/float32 inputs
and in float64 for float64 inputs. They build no autograd graph: they are the two halves of a
custom autograd function, whose forward keeps ``lse`` and whose backward calls the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from posneg import _checks
from posneg._tiling import rows_per_block


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 inputs, else float32 (the accumulation type of both paths)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_exclude_offsets(fn: str, exclude_offsets: Any, m: int) -> tuple[int, ...]:
    """Validate ``exclude_offsets`` (a tuple/list of ints) and return them reduced mod ``m``,
    sorted and without repeats (two offsets equal mod ``m`` exclude the same column)."""
    if isinstance(exclude_offsets, (str, bytes)) or not isinstance(exclude_offsets, Sequence):
        raise TypeError(
            f"{fn}: exclude_offsets must be a tuple of ints; got {type(exclude_offsets).__name__}"
        )
    offsets = [_checks.check_int(fn, "exclude_offsets[]", o) for o in exclude_offsets]
    return tuple(sorted({o % m for o in offsets}))


def check_pair(fn: str, q: Any, k: Any, scale: Any) -> float:
    """Validate ``q`` (B, D), ``k`` (M, D) on one device with one dtype; return ``scale``."""
    _checks.check_embeddings(fn, "q", q)
    _checks.check_embeddings(fn, "k", k)
    _checks.check_same_dim(fn, "k", k, "q", q)
    _checks.check_same_device(fn, "k", k, "q", q)
    _checks.check_same_dtype(fn, "k", k, "q", q)
    return _checks.check_real(fn, "scale", scale)


def check_row_vector(fn: str, name: str, x: Any, q: torch.Tensor) -> torch.Tensor:
    """A floating (B,) tensor on ``q``'s device (``lse``, ``grad_lse``)."""
    _checks.check_float(fn, name, x)
    if x.shape != (q.shape[0],):
        raise ValueError(f"{fn}: {name} must have shape ({q.shape[0]},); got {tuple(x.shape)}")
    _checks.check_same_device(fn, name, x, "q", q)
    return x


def excluded_mask(
    rows: torch.Tensor, m: int, offsets: tuple[int, ...], device: torch.device
) -> torch.Tensor | None:
    """(R, M) bool: True where column ``j == (row + o) mod m`` for some offset; None if none."""
    if not offsets:
        return None
    cols = torch.arange(m, device=device)
    mask = torch.zeros(rows.shape[0], m, dtype=torch.bool, device=device)
    for o in offsets:
        mask |= cols[None, :] == ((rows + o) % m)[:, None]
    return mask


def row_lse_forward_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    scale: float,
    exclude_offsets: tuple[int, ...] = (),
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Per-row log-sum-exp of the scaled scores, excluded diagonals left out (reference).

    Args:
        q: (B, D) anchors (float16, bfloat16, float32 or float64).
        k: (M, D) candidates, same dtype and device as ``q``.
        scale: multiplies every score (``1 / temperature``).
        exclude_offsets: column ``(i + o) mod M`` is left out of row ``i`` for each ``o``.
        chunk_size: rows per block (``None``: as many as fit the default budget).

    Returns:
        (B,) ``lse``: float32 (float64 for float64 inputs); ``-inf`` where a row has no column.

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, non-int offsets.
        ValueError: wrong shapes, mismatched dimension or device, non-finite scale.

    Example:
        >>> import torch
        >>> from posneg._kernels.reference import row_lse_forward_torch
        >>> q = k = torch.eye(3)
        >>> row_lse_forward_torch(q, k, scale=1.0, exclude_offsets=(0,))
        tensor([0.6931, 0.6931, 0.6931])
    """
    fn = "row_lse_forward_torch"
    s = check_pair(fn, q, k, scale)
    b, m = int(q.shape[0]), int(k.shape[0])
    offsets = check_exclude_offsets(fn, exclude_offsets, m)
    step = rows_per_block(b, m, chunk_size)
    dt = compute_dtype(q.dtype)
    with torch.no_grad():
        kf = k.to(dt)
        out = torch.empty(b, dtype=dt, device=q.device)
        for start in range(0, b, step):
            stop = min(start + step, b)
            scores = (q[start:stop].to(dt) @ kf.T) * s
            rows = torch.arange(start, stop, device=q.device)
            mask = excluded_mask(rows, m, offsets, q.device)
            if mask is not None:
                scores = scores.masked_fill(mask, float("-inf"))
            out[start:stop] = torch.logsumexp(scores, dim=1)
    return out


def row_lse_backward_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    lse: torch.Tensor,
    grad_lse: torch.Tensor,
    *,
    scale: float,
    exclude_offsets: tuple[int, ...] = (),
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``sum_i grad_lse_i * lse_i`` with respect to ``q`` and ``k`` (reference).

    Args:
        q: (B, D) anchors, as given to :func:`row_lse_forward_torch`.
        k: (M, D) candidates.
        lse: (B,) the forward's output.
        grad_lse: (B,) upstream gradient ``g``.
        scale: the forward's scale.
        exclude_offsets: the forward's excluded diagonals.
        chunk_size: rows per block (``None``: as many as fit the default budget).

    Returns:
        ``(dq, dk)`` of shapes (B, D), (M, D) in ``q``'s and ``k``'s dtype, accumulated in
        float32 (float64 for float64 inputs).

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, non-int offsets.
        ValueError: wrong shapes, mismatched dimension or device, non-finite scale.

    Example:
        >>> import torch
        >>> from posneg._kernels.reference import row_lse_backward_torch
        >>> q, k = torch.eye(2), torch.zeros(3, 2)
        >>> lse = torch.full((2,), float(torch.tensor(3.0).log()))
        >>> dq, dk = row_lse_backward_torch(q, k, lse, torch.ones(2), scale=1.0)
        >>> dq.abs().max().item(), tuple(dk.shape)
        (0.0, (3, 2))
    """
    fn = "row_lse_backward_torch"
    s = check_pair(fn, q, k, scale)
    check_row_vector(fn, "lse", lse, q)
    check_row_vector(fn, "grad_lse", grad_lse, q)
    b, m = int(q.shape[0]), int(k.shape[0])
    offsets = check_exclude_offsets(fn, exclude_offsets, m)
    step = rows_per_block(b, m, chunk_size)
    dt = compute_dtype(q.dtype)
    with torch.no_grad():
        kf = k.to(dt)
        dq = torch.empty(q.shape, dtype=dt, device=q.device)
        dk = torch.zeros(k.shape, dtype=dt, device=q.device)
        for start in range(0, b, step):
            stop = min(start + step, b)
            qb = q[start:stop].to(dt)
            lse_b = lse[start:stop].to(dt)
            # a row with no column has lse = -inf; its p is 0 everywhere (no NaN from -inf - -inf)
            shift = torch.where(torch.isneginf(lse_b), torch.zeros_like(lse_b), lse_b)
            p = torch.exp((qb @ kf.T) * s - shift[:, None])
            rows = torch.arange(start, stop, device=q.device)
            mask = excluded_mask(rows, m, offsets, q.device)
            if mask is not None:
                p = p.masked_fill(mask, 0.0)
            w = p * (grad_lse[start:stop].to(dt) * s)[:, None]
            dq[start:stop] = w @ kf
            dk += w.T @ qb
    return dq.to(q.dtype), dk.to(k.dtype)
