"""Row tiling for similarity objectives.

Every contrastive objective in posneg is written as a per-row function: given a block of anchor
rows it returns one loss value per row, computing that block's similarities against all
candidates. :func:`map_rows` runs such a function over row blocks. When the whole score matrix
would exceed ``max_elements`` entries and gradients are needed, each block runs under activation
checkpointing, so the forward pass keeps only the inputs and one block of scores is alive at a
time in both passes: memory is O(chunk * N) rather than O(N^2). The B x B matrix is therefore an
implementation detail of a block, never part of an objective's contract, and a fused kernel can
replace a block function without changing any caller.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

#: Largest number of score entries held at once by default (16 Mi entries: 64 MB in float32).
DEFAULT_MAX_ELEMENTS = 1 << 24

BlockFn = Callable[..., torch.Tensor]


def rows_per_block(n_rows: int, n_cols: int, chunk_size: int | None) -> int:
    """Rows per block: ``chunk_size`` if given, else as many as fit ``DEFAULT_MAX_ELEMENTS``."""
    if chunk_size is not None:
        # numpy integers are accepted and bools rejected, as by posneg._checks.check_int
        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, numbers.Integral)
            or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be a positive int or None; got {chunk_size!r}")
        return min(int(chunk_size), max(n_rows, 1))
    return max(1, min(n_rows, DEFAULT_MAX_ELEMENTS // max(n_cols, 1)))


def map_rows(
    block_fn: BlockFn,
    n_rows: int,
    n_cols: int,
    *tensors: torch.Tensor,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Apply ``block_fn(start, stop, *tensors) -> (stop - start, ...)`` per row block; concatenate.

    Args:
        block_fn: computes the per-row result for rows ``start:stop``; it must be a pure function
            of its arguments (it is re-run in backward when checkpointing).
        n_rows: number of anchor rows.
        n_cols: number of candidates each row is scored against (sizes the blocks).
        *tensors: tensors ``block_fn`` reads; gradients flow to them.
        chunk_size: rows per block; ``None`` picks the largest block within the default budget.

    Returns:
        The per-row results concatenated along dim 0.
    """
    step = rows_per_block(n_rows, n_cols, chunk_size)
    if step >= n_rows:
        return block_fn(0, n_rows, *tensors)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    outs = []
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        if needs_grad:
            outs.append(checkpoint(block_fn, start, stop, *tensors, use_reentrant=False))
        else:
            outs.append(block_fn(start, stop, *tensors))
    return torch.cat(outs, dim=0)


def mask_columns(scores: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Return ``scores`` with entries ``scores[r, cols[r, j]]`` set to the dtype's lowest value.

    ``cols`` is (R, k) int64; out of place so autograd sees a clean graph. The lowest finite value
    (not -inf) keeps rows whose every entry is masked finite under logsumexp.
    """
    fill = torch.finfo(scores.dtype).min
    return scores.scatter(1, cols, fill)


def reduce_loss(per_row: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply 'mean', 'sum' or 'none' to a per-row loss."""
    if reduction == "mean":
        return per_row.mean()
    if reduction == "sum":
        return per_row.sum()
    return per_row


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half inputs (fp16/bf16 reductions run in float32), else the input's dtype."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
