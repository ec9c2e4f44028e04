"""Validation helpers the retrieval strategies share: boolean pair masks and positive-id lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from posneg import _checks

#: What ``positives`` may be: one list of corpus ids per query, or an int64 (Q, P) tensor padded
#: with -1.
Positives = Sequence[Sequence[int]] | torch.Tensor


def check_mask(
    fn: str, name: str, mask: Any, shape: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """A bool tensor of exactly ``shape`` on ``device``."""
    _checks.check_tensor(fn, name, mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"{fn}: {name} must be a bool tensor; got {mask.dtype}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"{fn}: {name} must have shape {shape}; got {tuple(mask.shape)}")
    if mask.device != device:
        raise ValueError(
            f"{fn}: {name} is on {mask.device} but the scores are on {device}; "
            "move them to one device"
        )
    return mask


def positives_matrix(
    fn: str,
    positives: Any,
    num_queries: int,
    *,
    num_docs: int | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Positives as an int64 (Q, P) tensor padded with -1 (P >= 1), rows sorted ascending with
    the padding last, duplicates removed.

    Accepts one sequence of ids per query or an integer (Q, P) tensor already padded with -1.
    Every query must have at least one positive; ids must lie in ``[0, num_docs)`` when
    ``num_docs`` is given.
    """
    if isinstance(positives, torch.Tensor):
        if positives.dtype.is_floating_point or positives.dtype == torch.bool:
            raise TypeError(f"{fn}: positives must be an integer tensor; got {positives.dtype}")
        if positives.dim() != 2 or positives.shape[0] != num_queries or positives.shape[1] < 1:
            raise ValueError(
                f"{fn}: positives must have shape ({num_queries}, P) with P >= 1 (pad with -1); "
                f"got {tuple(positives.shape)}"
            )
        mat = positives.to(device=device, dtype=torch.int64)
    else:
        if isinstance(positives, (str, bytes)) or not isinstance(positives, Sequence):
            raise TypeError(
                f"{fn}: positives must be a sequence of id sequences or an int64 (Q, P) tensor; "
                f"got {type(positives).__name__}"
            )
        if len(positives) != num_queries:
            raise ValueError(
                f"{fn}: positives must hold one id list per query ({num_queries}); "
                f"got {len(positives)}"
            )
        rows: list[list[int]] = []
        for q, row in enumerate(positives):
            if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, torch.Tensor)):
                raise TypeError(
                    f"{fn}: positives[{q}] must be a sequence of ints; got {type(row).__name__}"
                )
            ids = row.tolist() if isinstance(row, torch.Tensor) else list(row)
            for v in ids:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise TypeError(f"{fn}: positives[{q}] must hold ints; got {type(v).__name__}")
            rows.append(ids)
        width = max([len(r) for r in rows], default=0)
        width = max(width, 1)
        mat = torch.full((num_queries, width), -1, dtype=torch.int64)
        if num_queries:
            lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
            flat = torch.tensor([v for r in rows for v in r], dtype=torch.int64)
            cols = torch.arange(width).expand(num_queries, width) < lengths[:, None]
            mat[cols] = flat
        mat = mat.to(device)
    if bool((mat < -1).any()):
        raise ValueError(f"{fn}: positives must be corpus ids >= 0 (-1 only as padding)")
    if num_docs is not None and bool((mat >= num_docs).any()):
        bad = int(mat.max())
        raise ValueError(f"{fn}: positives must be corpus ids < {num_docs}; got {bad}")
    if num_queries and bool(((mat >= 0).sum(dim=1) == 0).any()):
        q = int(((mat >= 0).sum(dim=1) == 0).nonzero()[0, 0])
        raise ValueError(f"{fn}: every query needs at least one positive; query {q} has none")
    # sort ascending with the padding last, drop repeated ids (they become padding)
    big = torch.iinfo(torch.int64).max
    mat = torch.where(mat < 0, torch.full_like(mat, big), mat).sort(dim=1).values
    repeated = torch.zeros_like(mat, dtype=torch.bool)
    repeated[:, 1:] = mat[:, 1:] == mat[:, :-1]
    mat = torch.where(repeated, torch.full_like(mat, big), mat).sort(dim=1).values
    return torch.where(mat == big, torch.full_like(mat, -1), mat)
