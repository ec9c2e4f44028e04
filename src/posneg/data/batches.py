"""Streams of index batches for training loops that count optimiser steps, not epochs.

- :func:`permutation_batches`: batches drawn without replacement from fresh permutations.
- :func:`sampler_batches`: batches from a batch sampler (a ``torch.utils.data.Sampler`` that
  yields index lists), restarted whenever it runs out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["permutation_batches", "sampler_batches"]


def permutation_batches(
    n: int, steps: int, batch_size: int, generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """``steps`` int64 index batches of ``batch_size``, each without replacement.

    Batches are consecutive slices of a permutation of ``range(n)``; when the next slice would
    run past the end, a fresh permutation is drawn from ``generator`` (the tail is dropped).

    Example:
        >>> b = permutation_batches(5, 3, 2, torch.Generator().manual_seed(0))
        >>> [len(x) for x in b]
        [2, 2, 2]
    """
    out: list[torch.Tensor] = []
    perm = torch.randperm(n, generator=generator)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm = torch.randperm(n, generator=generator)
            pos = 0
        out.append(perm[pos : pos + batch_size])
        pos += batch_size
    return out


def sampler_batches(sampler: Iterable[Any], steps: int) -> list[torch.Tensor]:
    """``steps`` int64 index batches from a batch sampler, iterated again when exhausted.

    Raises:
        ValueError: the sampler yields no batch at all.
    """
    out: list[torch.Tensor] = []
    while len(out) < steps:
        got = 0
        for batch in sampler:
            out.append(torch.as_tensor(batch, dtype=torch.long))
            got += 1
            if len(out) == steps:
                break
        if got == 0:
            raise ValueError("sampler_batches: the sampler yielded no batch")
    return out
