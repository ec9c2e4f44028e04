"""Small shared types: the reduction literal and named outputs."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


class Triplets(NamedTuple):
    """Index triplets (anchor, positive, negative), each an int64 tensor of shape (T,)."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
