"""Gathering embeddings across ranks with gradients, and small rank helpers.

Objectives in posneg never own a distributed flag: to use the negatives of every rank, gather
the embeddings with :func:`gather_with_grad` and pass the gathered tensors to the objective.
For InfoNCE and NT-Xent without gathering (each rank keeps its block; blocks pass around a
ring), see :mod:`posneg.distributed_ring`. Everything here is the identity (rank 0 of 1) when
``torch.distributed`` is unavailable or not initialised, so the same training code runs on one
process.

The gradient contract (the standard one, as in SimCLR's and open_clip's gather layers) is
documented on :func:`gather_with_grad`; lightly got it wrong by a factor 1/world_size twice
(lightly#1920, #1977), so posneg tests it: two gloo processes, every objective, float64.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.distributed as dist

__all__ = ["gather_with_grad", "is_distributed", "rank", "world_size"]

#: Largest tensor rank :func:`gather_with_grad` exchanges shapes for.
_MAX_DIMS = 8
_DTYPES: tuple[torch.dtype, ...] = (
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
)


def is_distributed(group: Any = None) -> bool:
    """True when ``torch.distributed`` is available, initialised and has more than one rank."""
    return world_size(group) > 1


def rank(group: Any = None) -> int:
    """This process's rank in ``group`` (the default group if None); 0 when not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0
    return int(dist.get_rank(group))


def world_size(group: Any = None) -> int:
    """The number of ranks in ``group`` (the default group if None); 1 when not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return int(dist.get_world_size(group))


#: Descriptor codes for what a rank passed (in the dtype slot).
_OTHER_DTYPE = -1
_NOT_A_TENSOR = -2


def _exchange_device(x: object, group: Any) -> torch.device:
    """Where the descriptors travel: x's device, or (x not a tensor) the backend's usual one."""
    if isinstance(x, torch.Tensor):
        return x.device
    if dist.get_backend(group) == "nccl" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _describe(x: object, device: torch.device) -> torch.Tensor:
    """[ndim, dtype code, shape (first 8 sizes) padded with -1] as int64 on ``device``.

    Fixed length whatever x is, so that every rank can always take part in the exchange; a
    non-tensor is described as ndim 0 with the code ``_NOT_A_TENSOR``.
    """
    if not isinstance(x, torch.Tensor):
        return torch.tensor([0, _NOT_A_TENSOR] + [-1] * _MAX_DIMS, dtype=torch.int64, device=device)
    code = _DTYPES.index(x.dtype) if x.dtype in _DTYPES else _OTHER_DTYPE
    dims = list(x.shape)[:_MAX_DIMS]
    dims += [-1] * (_MAX_DIMS - len(dims))
    return torch.tensor([x.dim(), code, *dims], dtype=torch.int64, device=device)


def _exchange_shapes(x: object, group: Any) -> list[int]:
    """All ranks' row counts, after every rank has taken part in the descriptor exchange.

    Every check runs after the one collective, on the same gathered descriptors, so every rank
    raises the same kind of error together and no rank is left waiting inside a collective
    (a rank that raised before its peers' collective would leave them blocked until the
    backend's timeout, and some torch versions then also block in ``destroy_process_group``).
    """
    n = world_size(group)
    mine = _describe(x, _exchange_device(x, group))
    everyone = [torch.empty_like(mine) for _ in range(n)]
    dist.all_gather(everyone, mine, group=group)
    rows = [t.tolist() for t in everyone]
    me = rank(group)
    not_tensors = [r for r, row in enumerate(rows) if row[1] == _NOT_A_TENSOR]
    if not_tensors:
        here = f"got {type(x).__name__}" if me in not_tensors else "on every rank"
        raise TypeError(
            f"gather_with_grad: x must be a torch.Tensor; {here} (this is rank {me}; ranks "
            f"without a tensor: {not_tensors})"
        )
    shape = tuple(cast(torch.Tensor, x).shape)  # every rank, this one included, has a tensor
    ndims = [row[0] for row in rows]
    if any(not 1 <= d <= _MAX_DIMS for d in ndims):
        raise ValueError(
            f"gather_with_grad: x must have between 1 and {_MAX_DIMS} dimensions on every "
            f"rank; got shape {shape} on rank {me} (dimensions by rank {ndims})"
        )
    ref = rows[0]
    for r, row in enumerate(rows):
        if row[0] != ref[0] or row[1] != ref[1] or row[3:] != ref[3:]:
            shapes = [tuple(v for v in t[2:] if v >= 0) for t in rows]
            dtypes = [str(_DTYPES[t[1]]) if t[1] >= 0 else "other" for t in rows]
            raise ValueError(
                "gather_with_grad: x must have the same dtype and the same shape beyond dim 0 "
                f"on every rank; rank {r} differs (shapes by rank {shapes}, dtypes {dtypes})"
            )
    return [int(row[2]) for row in rows]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward all-reduces (sums) the gradient and keeps this rank's slice."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sizes: list[int], group: Any) -> torch.Tensor:
        me = rank(group)
        ctx.group = group
        ctx.start = sum(sizes[:me])
        ctx.stop = ctx.start + sizes[me]
        largest = max(sizes)
        xc = x.contiguous()
        if xc.shape[0] < largest:  # pad so every rank sends the same shape
            pad = xc.new_zeros((largest - xc.shape[0], *xc.shape[1:]))
            xc = torch.cat([xc, pad], dim=0)
        parts = [torch.empty_like(xc) for _ in sizes]
        dist.all_gather(parts, xc, group=group)
        return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)], dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        return total[ctx.start : ctx.stop], None, None


def gather_with_grad(x: torch.Tensor, *, group: Any = None) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping gradients to every rank's slice.

    Forward: ``all_gather``; the result is ``cat([x_rank0, x_rank1, ...])``, identical on all
    ranks. Ranks may hold different numbers of rows: the row counts are exchanged first (one
    small extra collective) and the rows are padded for the transfer and trimmed after; the
    dtype and the shape beyond dim 0 must agree (checked on every rank, so all raise together).

    Backward (the gradient contract): the incoming gradient of the gathered tensor is
    all-reduced (summed) over ranks and this rank's slice is returned. So the gradient that
    reaches ``x`` on rank r is ``sum over ranks s of dL_s / dx_r``, where ``L_s`` is the loss
    rank s computed from the gathered tensor. Consequences:

    * every rank computes the same loss ``L`` on the whole gathered batch (what posneg's
      objectives do when given gathered inputs): ``x_r`` receives ``world_size * dL/dx_r``,
      and after DDP's gradient averaging (mean over ranks) the parameter gradients equal
      exactly those of one process computing ``L`` on the concatenated batch;
    * every rank computes a loss ``L_r`` over its own anchors against the gathered candidates
      (the "local loss" of open_clip): ``x_r`` receives ``d(sum_s L_s)/dx_r`` and after DDP's
      averaging the parameters get the gradient of ``mean_s L_s``.

    No extra 1/world_size factor is applied (lightly's bug, lightly#1920 / #1977, was one too
    many). Parameters applied *after* the gather (e.g. heads inside ``AMCLLoss``) see the whole
    batch on every rank and get the single-process gradient directly; DDP's average keeps it.

    Every rank must call ``backward`` through the gathered tensor (the backward pass is a
    collective), as with any DDP step. When ``torch.distributed`` is not initialised or has a
    single rank, ``x`` is returned unchanged.

    Args:
        x: (n_r, ...) tensor on this rank; any dtype the backend supports (integer labels can
            be gathered too, without gradient).
        group: process group (default: the world).

    Returns:
        (sum_r n_r, ...) tensor: the ranks' rows in rank order.

    Raises:
        TypeError: ``x`` is not a tensor (on any rank: every rank raises).
        ValueError: ``x`` is 0-d or has more than 8 dimensions, or ranks disagree on dtype or
            on the shape beyond dim 0 (on any rank: every rank raises). The checks run after
            a small exchange in which every rank takes part, so a bad input on one rank never
            leaves the others waiting inside a collective.

    Example:
        >>> import torch
        >>> z = torch.randn(4, 8)
        >>> gather_with_grad(z) is z  # one process: the identity
        True
    """
    if world_size(group) == 1:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"gather_with_grad: x must be a torch.Tensor; got {type(x).__name__}")
        return x
    # Every check happens after the descriptor exchange, on every rank: see _exchange_shapes.
    sizes = _exchange_shapes(x, group)
    out: torch.Tensor = _GatherWithGrad.apply(x, sizes, group)
    return out
