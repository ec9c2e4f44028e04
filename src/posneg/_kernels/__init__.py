"""Fused kernels for the per-row log-sum-exp objectives: Triton on CUDA, torch elsewhere.

The pair of functions below is the interface a custom autograd function of the InfoNCE family
uses (forward keeps only ``lse``; backward recomputes the scores tile by tile)::

    lse_i = log sum_{j not excluded} exp(scale * <q_i, k_j>)
    dq_i  = scale * sum_j g_i p_ij k_j,   dk_j = scale * sum_i g_i p_ij q_i,
    p_ij  = exp(scale * <q_i, k_j> - lse_i)   (0 where excluded)

where column ``j`` is excluded for row ``i`` when ``j == (i + o) mod M`` for some ``o`` in
``exclude_offsets`` (``(0,)`` leaves out the anchor itself in NT-Xent, ``(0, B)`` also its
positive partner in DCL).

:func:`row_lse_forward` and :func:`row_lse_backward` run the Triton kernels of
:mod:`posneg._kernels.lse_triton` when :func:`triton_usable` holds for the inputs and there are
at most ``MAX_EXCLUDE`` distinct offsets, and the tiled torch reference of
:mod:`posneg._kernels.reference` otherwise; both compute the same numbers up to rounding. Triton
is imported only here, lazily: ``import posneg`` never needs it. Setting the environment variable
``POSNEG_DISABLE_TRITON=1`` forces the torch path (read at each call).
"""

from __future__ import annotations

import functools
import os

import torch

from posneg._kernels.reference import (
    check_exclude_offsets,
    row_lse_backward_torch,
    row_lse_forward_torch,
)

__all__ = [
    "MAX_EXCLUDE",
    "row_lse_backward",
    "row_lse_backward_torch",
    "row_lse_forward",
    "row_lse_forward_torch",
    "triton_usable",
]

#: Most distinct excluded diagonals the Triton kernels take (kept equal to lse_triton's).
MAX_EXCLUDE = 4

_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@functools.lru_cache(maxsize=1)
def _triton_imports() -> bool:
    """Whether ``triton`` and the kernels module import (checked once per process)."""
    try:
        from posneg._kernels import lse_triton
    except Exception:  # a broken triton install must not break the torch path
        return False
    return bool(lse_triton.HAVE_TRITON)


def triton_usable(*tensors: object) -> bool:
    """True when the Triton kernels can run on ``tensors``; never raises.

    That is: ``POSNEG_DISABLE_TRITON`` is not ``"1"``, at least one tensor is given, every
    argument is a CUDA tensor of dtype float16, bfloat16 or float32, and triton imports.

    Example:
        >>> import torch
        >>> from posneg._kernels import triton_usable
        >>> triton_usable(torch.zeros(2, 3))  # a CPU tensor
        False
    """
    try:
        if os.environ.get("POSNEG_DISABLE_TRITON") == "1" or not tensors:
            return False
        for t in tensors:
            if not isinstance(t, torch.Tensor) or not t.is_cuda or t.dtype not in _TRITON_DTYPES:
                return False
        return _triton_imports()
    except Exception:
        return False


def _use_triton(q: object, k: object, exclude_offsets: object) -> bool:
    if not triton_usable(q, k) or not isinstance(k, torch.Tensor) or k.dim() != 2:
        return False
    if k.shape[0] == 0:
        return False
    try:
        offsets = check_exclude_offsets("row_lse", exclude_offsets, int(k.shape[0]))
    except (TypeError, ValueError):
        return False  # the torch path raises the error with its own name
    return len(offsets) <= MAX_EXCLUDE


def row_lse_forward(
    q: torch.Tensor, k: torch.Tensor, *, scale: float, exclude_offsets: tuple[int, ...] = ()
) -> torch.Tensor:
    """Per-row log-sum-exp of ``scale * q @ k.T`` with excluded diagonals left out.

    Args:
        q: (B, D) anchors.
        k: (M, D) candidates, same dtype and device as ``q``.
        scale: multiplies every score (``1 / temperature``).
        exclude_offsets: column ``(i + o) mod M`` is left out of row ``i`` for each ``o``.

    Returns:
        (B,) ``lse``, float32 (float64 for float64 inputs on the torch path); ``-inf`` for a row
        with every column excluded. No autograd graph.

    Raises:
        TypeError, ValueError: bad inputs (see :func:`row_lse_forward_torch`).

    Example:
        >>> import torch
        >>> from posneg._kernels import row_lse_forward
        >>> q = torch.eye(3)
        >>> row_lse_forward(q, q, scale=1.0, exclude_offsets=(0,))
        tensor([0.6931, 0.6931, 0.6931])
    """
    if _use_triton(q, k, exclude_offsets):
        from posneg._kernels.lse_triton import row_lse_forward_triton

        return row_lse_forward_triton(q, k, scale=scale, exclude_offsets=exclude_offsets)
    return row_lse_forward_torch(q, k, scale=scale, exclude_offsets=exclude_offsets)


def row_lse_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    lse: torch.Tensor,
    grad_lse: torch.Tensor,
    *,
    scale: float,
    exclude_offsets: tuple[int, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``(dq, dk)`` of ``sum_i grad_lse_i * lse_i`` (see the module docstring).

    Args:
        q: (B, D) anchors, as given to :func:`row_lse_forward`.
        k: (M, D) candidates.
        lse: (B,) the forward's output.
        grad_lse: (B,) upstream gradient.
        scale: the forward's scale.
        exclude_offsets: the forward's excluded diagonals.

    Returns:
        ``(dq, dk)`` in ``q``'s and ``k``'s dtype, accumulated in float32 (float64 for float64).

    Raises:
        TypeError, ValueError: bad inputs (see :func:`row_lse_backward_torch`).

    Example:
        >>> import torch
        >>> from posneg._kernels import row_lse_backward, row_lse_forward
        >>> q, k = torch.eye(2), torch.eye(2)
        >>> lse = row_lse_forward(q, k, scale=1.0)
        >>> dq, dk = row_lse_backward(q, k, lse, torch.ones(2), scale=1.0)
        >>> tuple(dq.shape), tuple(dk.shape)
        ((2, 2), (2, 2))
    """
    if _use_triton(q, k, exclude_offsets) and triton_usable(lse, grad_lse):
        from posneg._kernels.lse_triton import row_lse_backward_triton

        return row_lse_backward_triton(
            q, k, lse, grad_lse, scale=scale, exclude_offsets=exclude_offsets
        )
    return row_lse_backward_torch(q, k, lse, grad_lse, scale=scale, exclude_offsets=exclude_offsets)
