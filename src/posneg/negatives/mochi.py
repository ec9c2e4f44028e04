"""MoCHi: hard negative mixing for MoCo-style contrastive learning.

Kalantidis, Sariyildiz, Pion, Weinzaepfel, Larlus. *Hard Negative Mixing for Contrastive
Learning*. NeurIPS 2020, arXiv 2010.01028.

Randomness lives in :func:`sample_mochi_params`; :func:`mochi_synthetic` and :func:`mochi_logits`
are deterministic given the params; :func:`mochi` and :class:`MoCHi` do both and return the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks, _rng
from posneg._tiling import compute_dtype, reduce_loss
from posneg._types import Reduction

__all__ = [
    "CITATION",
    "MoCHi",
    "MoCHiParams",
    "MoCHiSynthetic",
    "mochi",
    "mochi_logits",
    "mochi_synthetic",
    "sample_mochi_params",
]

CITATION = """
@inproceedings{kalantidis2020mochi,
  title     = {Hard Negative Mixing for Contrastive Learning},
  author    = {Kalantidis, Yannis and Sariyildiz, Mert Bulent and Pion, Noe and
               Weinzaepfel, Philippe and Larlus, Diane},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume    = {33},
  pages     = {21798--21809},
  year      = {2020},
  eprint    = {2010.01028},
  archivePrefix = {arXiv}
}
"""

#: Upper end of the type-2 coefficient: beta ~ U(0, 0.5), so the query's share is below one half.
QUERY_MIX_MAX = 0.5


@dataclass(frozen=True)
class MoCHiParams:
    """The random draws of one MoCHi step, per query (replayable).

    Indices point into each query's own hard set (positions ``0 .. num_hard-1`` of the hardest
    queue entries sorted by decreasing similarity), so every query mixes its own negatives.

    Attributes:
        num_hard: N, the size of each query's hard set.
        mix_first: (B, s) int64, first hard negative ``i`` of each type-1 mix.
        mix_second: (B, s) int64, second hard negative ``j != i`` of each type-1 mix.
        alpha: (B, s) float, type-1 coefficients, U(0, 1).
        query_mix_index: (B, s') int64, hard negative mixed with the query (type 2).
        beta: (B, s') float, type-2 query shares, U(0, 0.5).
    """

    num_hard: int
    mix_first: torch.Tensor
    mix_second: torch.Tensor
    alpha: torch.Tensor
    query_mix_index: torch.Tensor
    beta: torch.Tensor

    @property
    def batch_size(self) -> int:
        """B, the number of queries the params were drawn for."""
        return int(self.mix_first.shape[0])

    @property
    def num_mix(self) -> int:
        """s, type-1 synthetic negatives per query."""
        return int(self.mix_first.shape[1])

    @property
    def num_query_mix(self) -> int:
        """s', type-2 synthetic negatives per query."""
        return int(self.query_mix_index.shape[1])


class MoCHiSynthetic(NamedTuple):
    """Synthetic negatives of one step (all detached, unit norm).

    Attributes:
        hard_indices: (B, N) int64 queue rows of each query's hard set, hardest first.
        mixed: (B, s, D) type-1 negatives ``normalize(alpha n_i + (1 - alpha) n_j)``.
        query_mixed: (B, s', D) type-2 negatives ``normalize(beta q + (1 - beta) n_j)``.
    """

    hard_indices: torch.Tensor
    mixed: torch.Tensor
    query_mixed: torch.Tensor


def sample_mochi_params(
    batch: int,
    num_hard: int,
    num_mix: int,
    num_query_mix: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> MoCHiParams:
    """Draw MoCHi's per-query indices and coefficients.

    For each query independently: ``num_mix`` ordered pairs ``(i, j)`` uniform over the hard set
    with ``i != j`` and ``alpha ~ U(0, 1)``; ``num_query_mix`` indices uniform over the hard set
    and ``beta ~ U(0, 0.5)``. Draw order (fixed): i, j, alpha, query-mix index, beta.

    Args:
        batch: B >= 1.
        num_hard: N >= 1 (N >= 2 when ``num_mix > 0``, since i != j).
        num_mix: s >= 0.
        num_query_mix: s' >= 0.
        device: where the params live (the queries' device).
        dtype: floating dtype of ``alpha`` and ``beta``.
        generator: optional ``torch.Generator``; the global RNG is untouched when given.

    Returns:
        A :class:`MoCHiParams`.

    Raises:
        TypeError: non-int sizes, a non-floating ``dtype`` or a bad ``generator``.
        ValueError: sizes out of range.
    """
    fn = "sample_mochi_params"
    batch = _checks.check_int(fn, "batch", batch, min_value=1)
    num_hard = _checks.check_int(fn, "num_hard", num_hard, min_value=1)
    num_mix = _checks.check_int(fn, "num_mix", num_mix, min_value=0)
    num_query_mix = _checks.check_int(fn, "num_query_mix", num_query_mix, min_value=0)
    if num_mix > 0 and num_hard < 2:
        raise ValueError(
            f"{fn}: num_hard must be >= 2 when num_mix > 0 (type-1 mixes pair i != j); "
            f"got num_hard={num_hard}"
        )
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{fn}: dtype must be a floating torch.dtype; got {dtype!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    _checks.check_generator(fn, generator, dev)
    first = _rng.randint(num_hard, (batch, num_mix), device=dev, generator=generator)
    if num_mix > 0:
        # j uniform over the N - 1 positions other than i: draw from [0, N-1), skip over i.
        second = _rng.randint(num_hard - 1, (batch, num_mix), device=dev, generator=generator)
        second = second + (second >= first).to(second.dtype)
    else:
        second = torch.zeros_like(first)
    alpha = _rng.uniform((batch, num_mix), device=dev, dtype=dtype, generator=generator)
    qidx = _rng.randint(num_hard, (batch, num_query_mix), device=dev, generator=generator)
    beta = _rng.uniform(
        (batch, num_query_mix), high=QUERY_MIX_MAX, device=dev, dtype=dtype, generator=generator
    )
    return MoCHiParams(num_hard, first, second, alpha, qidx, beta)


def _check_inputs(
    fn: str,
    query: torch.Tensor,
    key: torch.Tensor | None,
    queue: torch.Tensor,
) -> None:
    _checks.check_embeddings(fn, "query", query)
    if key is not None:
        _checks.check_float(fn, "key", key)
        _checks.check_same_shape(fn, "key", key, "query", query)
        _checks.check_same_device(fn, "key", key, "query", query)
        _checks.check_same_dtype(fn, "key", key, "query", query)
    _checks.check_float(fn, "queue", queue)
    if queue.dim() != 2:
        raise ValueError(f"{fn}: queue must have shape (K, D); got {tuple(queue.shape)}")
    _checks.check_same_dim(fn, "queue", queue, "query", query)
    _checks.check_same_device(fn, "queue", queue, "query", query)
    _checks.check_same_dtype(fn, "queue", queue, "query", query)


def _check_params(
    fn: str, params: object, batch: int, queue_size: int, device: torch.device
) -> MoCHiParams:
    if not isinstance(params, MoCHiParams):
        raise TypeError(f"{fn}: params must be a MoCHiParams; got {type(params).__name__}")
    if params.batch_size != batch or params.query_mix_index.shape[0] != batch:
        raise ValueError(
            f"{fn}: params were drawn for batch {params.batch_size} but query has {batch} rows"
        )
    if params.mix_first.device != device or params.query_mix_index.device != device:
        raise ValueError(
            f"{fn}: params are on {params.mix_first.device} but query is on {device}; "
            "draw them on the query's device"
        )
    if params.num_mix + params.num_query_mix > 0 and params.num_hard > queue_size:
        raise ValueError(
            f"{fn}: num_hard must be <= the number of queue rows K={queue_size}; "
            f"got num_hard={params.num_hard} (shrink N for small or partly filled queues)"
        )
    for name in ("mix_first", "mix_second", "query_mix_index"):
        idx = getattr(params, name)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= params.num_hard):
            raise ValueError(
                f"{fn}: params.{name} must index the hard set, in [0, {params.num_hard}); "
                f"got values in [{int(idx.min())}, {int(idx.max())}]"
            )
    return params


def _hard_set(scores: torch.Tensor, num_hard: int) -> torch.Tensor:
    """(B, N) queue rows of the N largest scores per row, hardest first (on detached scores)."""
    return torch.topk(scores.detach(), num_hard, dim=1, largest=True, sorted=True).indices


def _rows(queue: torch.Tensor, hard: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(B, m, D) queue rows at ``positions`` (B, m) of each query's own hard set ``hard`` (B, N).

    The per-query ``gather`` maps hard-set positions to queue rows row by row, so there is no
    flattened [B*N] index whose ``b * N`` offset could be forgotten (the card's pitfall).
    """
    rows = hard.gather(1, positions)
    return queue.index_select(0, rows.reshape(-1)).reshape(*rows.shape, queue.shape[1])


def _mixes(
    q: torch.Tensor, queue: torch.Tensor, hard: torch.Tensor, params: MoCHiParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """Detached, *unnormalised* type-1 (B, s, D) and type-2 (B, s', D) mixes."""
    qd, qu = q.detach(), queue.detach()
    a = params.alpha.to(q.dtype).unsqueeze(-1)
    # alpha * n_i + (1 - alpha) * n_j
    mixed = torch.lerp(_rows(qu, hard, params.mix_second), _rows(qu, hard, params.mix_first), a)
    b = params.beta.to(q.dtype).unsqueeze(-1)
    # beta * q + (1 - beta) * n_j
    n_q = _rows(qu, hard, params.query_mix_index)
    query_mixed = torch.lerp(n_q, qd.unsqueeze(1).expand_as(n_q), b)
    return mixed, query_mixed


def _scores_of_normalised(q: torch.Tensor, mixes: torch.Tensor) -> torch.Tensor:
    """(B, m) ``q_b · normalize(mixes_bm)`` without materialising the normalised vectors.

    ``mixes`` is detached, so the gradient with respect to ``q`` is the normalised vector, as
    with ``F.normalize`` (same ``max(norm, 1e-12)`` guard).
    """
    dots = torch.bmm(mixes, q.unsqueeze(-1)).squeeze(-1)
    return dots / torch.linalg.vector_norm(mixes, dim=-1).clamp_min(1e-12)


def _prepare(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Cast to the compute dtype (float32 for half inputs); L2-normalise rows if asked."""
    x = x.to(compute_dtype(x))
    return F.normalize(x, dim=1) if normalize else x


def mochi_synthetic(
    query: torch.Tensor,
    queue: torch.Tensor,
    params: MoCHiParams,
    *,
    normalize: bool = True,
) -> MoCHiSynthetic:
    """MoCHi's synthetic hard negatives for each query (deterministic given ``params``).

    For query ``q_b``: the hard set is the N queue rows with the largest ``q_b · n`` (``topk``
    on detached scores, hardest first); type 1 is
    ``h = normalize(alpha * n_i + (1 - alpha) * n_j)`` and type 2 is
    ``h' = normalize(beta * q_b + (1 - beta) * n_j)`` with ``n_i, n_j`` from q_b's own hard set.
    The vectors are detached, including the copy of ``q`` inside ``h'``, as in the reference
    implementation (``davidsvy/hard-negative-mixing``); they are never meant to be enqueued.

    Args:
        query: (B, D) queries.
        queue: (K, D) queue negatives (e.g. ``MemoryQueue.negatives()``), K >= N.
        params: from :func:`sample_mochi_params` with ``batch == B``.
        normalize: L2-normalise ``query`` and ``queue`` first (as the losses do).

    Returns:
        :class:`MoCHiSynthetic` with ``hard_indices`` (B, N), ``mixed`` (B, s, D) and
        ``query_mixed`` (B, s', D), in float32 for half inputs, else the input dtype.

    Raises:
        TypeError / ValueError: as :func:`mochi_logits`.
    """
    fn = "mochi_synthetic"
    _check_inputs(fn, query, None, queue)
    _check_params(fn, params, query.shape[0], queue.shape[0], query.device)
    q, qu = _prepare(query, normalize), _prepare(queue, normalize)
    hard = _hard_set(q @ qu.T, params.num_hard)
    mixed, query_mixed = _mixes(q, qu, hard, params)
    return MoCHiSynthetic(hard, F.normalize(mixed, dim=-1), F.normalize(query_mixed, dim=-1))


def mochi_logits(
    query: torch.Tensor,
    key: torch.Tensor,
    queue: torch.Tensor,
    params: MoCHiParams,
    *,
    temperature: float = 0.2,
    normalize: bool = True,
) -> torch.Tensor:
    """MoCo logits with MoCHi's synthetic hard negatives appended (deterministic given params).

    Kalantidis et al., *Hard Negative Mixing for Contrastive Learning*, NeurIPS 2020
    (arXiv 2010.01028). With ``q = query``, ``k = key``, queue ``Q`` and the synthetic ``h``
    (type 1) and ``h'`` (type 2) of :func:`mochi_synthetic`, row b is::

        [q_b·k_b, q_b·Q_1 .. q_b·Q_K, q_b·h_b1 .. q_b·h_bs, q_b·h'_b1 .. q_b·h'_bs'] / temperature

    and the positive is column 0. Gradients reach ``query`` through every column and ``key``
    / ``queue`` through their own columns; the synthetic vectors are detached (the reference
    code's choice), so mixing adds gradient to ``q`` only through ``q·h`` and ``q·h'``. With
    ``s = s' = 0`` this is exactly plain MoCo's ``cat([q·k, q·Q]) / t``. The MoCo key is
    normally produced without gradient by the momentum encoder; that is the caller's choice.

    Args:
        query: (B, D) query embeddings.
        key: (B, D) positive keys, same dtype and device.
        queue: (K, D) negatives from the queue (K may be 0 when s = s' = 0).
        params: from :func:`sample_mochi_params(B, N, s, s') <sample_mochi_params>`, N <= K.
        temperature: t > 0 (0.2, MoCo-v2's value used by the paper, by default).
        normalize: L2-normalise query, key and queue rows first.

    Returns:
        (B, 1 + K + s + s') logits, float32 for half inputs, else the input dtype. The label
        of every row is 0.

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, wrong ``params`` type.
        ValueError: bad shapes, mismatched dims or devices, N > K, params drawn for another B,
            temperature <= 0.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(32, 8)
        >>> params = sample_mochi_params(4, 16, 5, 3, generator=g)
        >>> mochi_logits(q, k, queue, params).shape
        torch.Size([4, 41])
    """
    fn = "mochi_logits"
    _check_inputs(fn, query, key, queue)
    temperature = _checks.check_positive(fn, "temperature", temperature)
    _check_params(fn, params, query.shape[0], queue.shape[0], query.device)
    q, k, qu = _prepare(query, normalize), _prepare(key, normalize), _prepare(queue, normalize)
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ qu.T
    parts = [pos, neg]
    if params.num_mix + params.num_query_mix > 0:
        hard = _hard_set(neg, params.num_hard)
        mixed, query_mixed = _mixes(q, qu, hard, params)
        parts.append(_scores_of_normalised(q, mixed))
        parts.append(_scores_of_normalised(q, query_mixed))
    return torch.cat(parts, dim=1) / temperature


def _check_sizes(fn: str, num_hard: int, num_mix: int, num_query_mix: int) -> tuple[int, int, int]:
    num_hard = _checks.check_int(fn, "num_hard", num_hard, min_value=1)
    num_mix = _checks.check_int(fn, "num_mix", num_mix, min_value=0)
    num_query_mix = _checks.check_int(fn, "num_query_mix", num_query_mix, min_value=0)
    if num_mix > 0 and num_hard < 2:
        raise ValueError(
            f"{fn}: num_hard must be >= 2 when num_mix > 0 (type-1 mixes pair i != j); "
            f"got num_hard={num_hard}"
        )
    return num_hard, num_mix, num_query_mix


def mochi(
    query: torch.Tensor,
    key: torch.Tensor,
    queue: torch.Tensor,
    *,
    num_hard: int = 1024,
    num_mix: int = 512,
    num_query_mix: int = 256,
    temperature: float = 0.2,
    normalize: bool = True,
    reduction: Reduction = "mean",
    generator: torch.Generator | None = None,
    params: MoCHiParams | None = None,
) -> torch.Tensor:
    """MoCo loss with MoCHi(N, s, s') hard negative mixing: cross-entropy with label 0.

    Kalantidis et al., *Hard Negative Mixing for Contrastive Learning*, NeurIPS 2020
    (arXiv 2010.01028). Per query b, with logits ``l_b`` of :func:`mochi_logits`::

        loss_b = logsumexp(l_b) - l_b[0]

    Per-query sampling (each query mixes its own N hardest queue entries), normalisation after
    mixing, detached synthetic vectors that are never enqueued. The defaults (N, s, s') =
    (1024, 512, 256) and t = 0.2 are the paper's ImageNet-100 setting; shrink N for small
    queues (N <= K is required when s + s' > 0). The paper switches mixing on after a warm-up
    of 10-15 epochs; do that by passing ``num_mix=num_query_mix=0`` before it.

    Args:
        query: (B, D) query embeddings.
        key: (B, D) keys (positives).
        queue: (K, D) queue negatives, e.g. ``MemoryQueue.negatives()``.
        num_hard: N, hardest queue entries per query.
        num_mix: s, type-1 mixes per query.
        num_query_mix: s', type-2 (query) mixes per query.
        temperature: t > 0.
        normalize: L2-normalise inputs first.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per query, shape (B,)).
        generator: optional generator for the draws; ignored when ``params`` is given.
        params: replay a previous draw instead of drawing.

    Returns:
        Scalar loss for ``"mean"``/``"sum"``, (B,) for ``"none"``; float32 for half inputs.

    Raises:
        TypeError / ValueError: as :func:`mochi_logits` and :func:`sample_mochi_params`.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(32, 8)
        >>> loss = mochi(q, k, queue, num_hard=16, num_mix=8, num_query_mix=4, generator=g)
        >>> loss.shape
        torch.Size([])
    """
    fn = "mochi"
    reduction = _checks.check_reduction(fn, reduction)
    if params is None:
        num_hard, num_mix, num_query_mix = _check_sizes(fn, num_hard, num_mix, num_query_mix)
        _checks.check_embeddings(fn, "query", query)
        _checks.check_generator(fn, generator, query.device)
        params = sample_mochi_params(
            query.shape[0],
            num_hard,
            num_mix,
            num_query_mix,
            device=query.device,
            dtype=compute_dtype(query),
            generator=generator,
        )
    logits = mochi_logits(query, key, queue, params, temperature=temperature, normalize=normalize)
    per_row = torch.logsumexp(logits, dim=1) - logits[:, 0]
    return reduce_loss(per_row, reduction)


class MoCHi(nn.Module):
    """MoCo loss with MoCHi hard negative mixing (module form of :func:`mochi`).

    Kalantidis et al., *Hard Negative Mixing for Contrastive Learning*, NeurIPS 2020
    (arXiv 2010.01028). Stateless: the queue is a separate
    :class:`~posneg.negatives.MemoryQueue`; pass its ``negatives()`` and enqueue the keys
    (never the synthetic vectors) after the step.

    Args:
        num_hard: N, hardest queue entries per query (>= 1; >= 2 when ``num_mix > 0``).
        num_mix: s, type-1 mixes per query (>= 0).
        num_query_mix: s', type-2 mixes per query (>= 0).
        temperature: t > 0.
        normalize: L2-normalise inputs first.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    ``forward(query, key, queue_negatives, *, generator=None, params=None)`` returns the loss
    (cross-entropy with label 0 over the logits of :func:`mochi_logits`); use
    :func:`mochi_logits` for the logits themselves.

    Example:
        >>> import torch
        >>> loss_fn = MoCHi(num_hard=16, num_mix=8, num_query_mix=4)
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(32, 8)
        >>> loss_fn(q, k, queue, generator=g).shape
        torch.Size([])
    """

    def __init__(
        self,
        num_hard: int = 1024,
        num_mix: int = 512,
        num_query_mix: int = 256,
        *,
        temperature: float = 0.2,
        normalize: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        fn = "MoCHi"
        self.num_hard, self.num_mix, self.num_query_mix = _check_sizes(
            fn, num_hard, num_mix, num_query_mix
        )
        self.temperature = _checks.check_positive(fn, "temperature", temperature)
        if not isinstance(normalize, bool):
            raise TypeError(f"{fn}: normalize must be a bool; got {type(normalize).__name__}")
        self.normalize = normalize
        self.reduction: Reduction = _checks.check_reduction(fn, reduction)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        queue_negatives: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        params: MoCHiParams | None = None,
    ) -> torch.Tensor:
        """Loss of ``query`` (B, D) against ``key`` (B, D) and ``queue_negatives`` (K, D)."""
        return mochi(
            query,
            key,
            queue_negatives,
            num_hard=self.num_hard,
            num_mix=self.num_mix,
            num_query_mix=self.num_query_mix,
            temperature=self.temperature,
            normalize=self.normalize,
            reduction=self.reduction,
            generator=generator,
            params=params,
        )

    def extra_repr(self) -> str:
        return (
            f"num_hard={self.num_hard}, num_mix={self.num_mix}, "
            f"num_query_mix={self.num_query_mix}, temperature={self.temperature}, "
            f"normalize={self.normalize}, reduction={self.reduction!r}"
        )
