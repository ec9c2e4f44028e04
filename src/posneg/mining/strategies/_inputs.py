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
    the padding last, duplicates removed: :func:`posneg._checks.check_id_lists`."""
    return _checks.check_id_lists(
        fn, "positives", positives, num_queries, num_ids=num_docs, device=device
    )
