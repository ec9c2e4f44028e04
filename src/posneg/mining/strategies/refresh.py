"""Negatives for a training loop: random negatives, and a pool of mined hard negatives that is
re-mined from the current embeddings (ANCE-style) or mined once (static hard negatives).

Strategies built from these pieces (each with :func:`~posneg.mining.strategies.star.star_loss`
or any loss that takes negatives):

- **random negatives**: :func:`random_negatives` draws, per query, documents that are not
  positives. DRhard's "Rand-Neg" trains on these alone with
  :func:`~posneg.mining.strategies.randneg.rand_neg_loss` (pairwise logistic, no in-batch
  pairs); given to ``star_loss`` as ``hard_doc`` they are in-batch plus random negatives.
- **static hard negatives**: a :class:`HardNegativePool` with ``refresh_every=None``, refreshed
  once before training from a warm-up model's embeddings (STAR's negatives).
- **ANCE-style dynamic negatives**: the same pool with ``refresh_every=N``; every N steps
  (``pool.due(step)``) it re-mines with :func:`posneg.mining.mine` from embeddings of the
  current encoder (Xiong et al., ANCE, ICLR 2021, arXiv 2007.00808, refresh the index
  asynchronously; here synchronously, at the caller's chosen steps).
- **false-negative-aware negatives**: the same pool with the miner's filters set: ``margin``
  (keep a candidate only if ``s_neg <= s_pos - margin``), ``relative_margin``
  (``s_neg <= s_pos * (1 - relative_margin)``), ``max_score`` and ``duplicate_of``, so likely
  false negatives (unlabelled relevant documents scored like the positive) are never served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from posneg import _checks
from posneg.mining.strategies._inputs import Positives, positives_matrix

if TYPE_CHECKING:  # the miner is imported lazily, at refresh time
    from posneg.mining.mine import MinedNegatives

__all__ = ["CITATION", "HardNegativePool", "random_negatives"]

CITATION = """
@inproceedings{xiong2021ance,
  title     = {Approximate Nearest Neighbor Negative Contrastive Learning for Dense Text
               Retrieval},
  author    = {Xiong, Lee and Xiong, Chenyan and Li, Ye and Tang, Kwok-Fung and Liu, Jialin and
               Bennett, Paul and Ahmed, Junaid and Overwijk, Arnold},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2021},
  note      = {arXiv:2007.00808}
}
"""


def random_negatives(
    num_queries: int,
    num_docs: int,
    k: int,
    positives: Positives,
    *,
    replacement: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``k`` random documents per query, never one of its positives.

    Each query draws uniformly among its ``num_docs - |positives|`` non-positive documents:
    a uniform index ``r`` into that set is mapped to the document id ``r + j``, where ``j`` is
    the number of sorted positives ``p_i`` with ``p_i - i <= r`` (one batched
    ``searchsorted``; no corpus-sized tensor, no loop over queries). Without replacement the
    ``k`` indices of a row are distinct (Floyd's algorithm, vectorised over queries, k rounds,
    then a random order); with replacement they are independent.

    Args:
        num_queries: Q >= 0.
        num_docs: corpus size N >= 1.
        k: negatives per query, >= 1 (without replacement at most ``N - |positives|`` of every
            query).
        positives: per query, its positive document ids (>= 1 each): a sequence of id
            sequences or an int64 (Q, P) tensor padded with -1.
        replacement: allow a document to repeat within a row.
        device: where the result lives (and the draws happen); ``None``: CPU.
        generator: a ``torch.Generator`` on ``device`` or ``None`` (global RNG).

    Returns:
        (Q, k) int64 document ids.

    Raises:
        TypeError: non-int sizes, malformed positives, a bad generator.
        ValueError: sizes out of range, positives out of ``[0, N)``, a query without
            positives, or fewer than ``k`` non-positive documents without replacement.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> neg = random_negatives(2, 5, 3, [[0, 1], [4]], generator=g)
        >>> sorted(neg[0].tolist()), bool((neg[1] != 4).all())
        ([2, 3, 4], True)
    """
    fn = "random_negatives"
    q = _checks.check_int(fn, "num_queries", num_queries, min_value=0)
    n = _checks.check_int(fn, "num_docs", num_docs, min_value=1)
    kk = _checks.check_int(fn, "k", k, min_value=1)
    _checks.check_bool(fn, "replacement", replacement)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    _checks.check_generator(fn, generator, dev)
    pos = positives_matrix(fn, positives, q, num_docs=n, device=dev)
    n_pos = (pos >= 0).sum(dim=1)
    avail = n - n_pos  # (Q,)
    need = 1 if replacement else kk
    if q and bool((avail < need).any()):
        row = int((avail < need).nonzero()[0, 0])
        raise ValueError(
            f"{fn}: query {row} has {int(avail[row])} non-positive documents; cannot draw "
            f"k={kk} distinct negatives (use replacement=True or a smaller k)"
        )
    if q == 0:
        return torch.empty((0, kk), dtype=torch.int64, device=dev)
    avail_f = avail.to(torch.float64)[:, None]
    if replacement:
        u = torch.rand((q, kk), dtype=torch.float64, device=dev, generator=generator)
        r = (u * avail_f).floor().long().clamp_max(avail[:, None] - 1)
    else:
        # Floyd: for j = avail-k .. avail-1 draw t in [0, j]; take j if t was already chosen
        r = torch.empty((q, kk), dtype=torch.int64, device=dev)
        for i in range(kk):
            j = avail - kk + i  # (Q,)
            u = torch.rand(q, dtype=torch.float64, device=dev, generator=generator)
            t = (u * (j + 1).to(torch.float64)).floor().long().clamp_max(j)
            dup = (r[:, :i] == t[:, None]).any(dim=1)  # False for i == 0
            r[:, i] = torch.where(dup, j, t)
        keys = torch.rand((q, kk), device=dev, generator=generator)
        r = r.gather(1, keys.argsort(dim=1))
    # map the r-th non-positive index to its document id
    cols = torch.arange(pos.shape[1], device=dev)
    adjusted = torch.where(pos >= 0, pos - cols, torch.full_like(pos, n + pos.shape[1]))
    return r + torch.searchsorted(adjusted.contiguous(), r.contiguous(), right=True)


Sampling = Literal["top", "uniform", "softmax"]


class HardNegativePool:
    """A per-query pool of mined hard negatives, re-mined from current embeddings on a schedule.

    Holds a (Q, pool_size) table of corpus ids mined with :func:`posneg.mining.mine` (the miner's
    window, margin and duplicate filters are stored here and reused at every refresh) and serves
    ``n`` negatives per query of a batch. ``refresh_every=None`` gives static hard negatives
    (mine once, as STAR's warm-up negatives); an int gives ANCE-style periodic re-mining
    (``due(step)`` is True at steps 0, N, 2N, ...). Setting ``margin``/``relative_margin``/
    ``max_score`` gives the false-negative-aware variant (see the module docstring).

    Args:
        positives: per query, the corpus row ids of its positives (>= 1 each).
        pool_size: negatives mined per query (``mine``'s ``num_negatives``), >= 1.
        range_min, range_max, max_score, margin, relative_margin, own_document, duplicate_of,
            sampling, temperature: passed to :func:`posneg.mining.mine` at every refresh.
        refresh_every: steps between refreshes, or ``None`` (mine once).

    Attributes:
        ids: (Q, pool_size) int64 pool after the first refresh (-1 where the miner found too few
            candidates), else ``None``.
        last: the :class:`~posneg.mining.mine.MinedNegatives` of the last refresh.
        num_refreshes: how many refreshes ran.

    Example:
        >>> import torch
        >>> pool = HardNegativePool([[0], [1], [2]], pool_size=2, refresh_every=100)
        >>> pool.due(50)  # nothing mined yet: always due
        True
    """

    def __init__(
        self,
        positives: Sequence[Sequence[int]],
        *,
        pool_size: int = 20,
        range_min: int = 0,
        range_max: int = 100,
        max_score: float | None = None,
        margin: float | None = None,
        relative_margin: float | None = None,
        own_document: Sequence[int] | None = None,
        duplicate_of: torch.Tensor | None = None,
        sampling: Sampling = "top",
        temperature: float = 1.0,
        refresh_every: int | None = None,
    ) -> None:
        fn = "HardNegativePool"
        if isinstance(positives, (str, bytes)) or not isinstance(positives, Sequence):
            raise TypeError(
                f"{fn}: positives must be a sequence of id sequences; "
                f"got {type(positives).__name__}"
            )
        self.positives = [list(p) for p in positives]
        self._pos = positives_matrix(fn, self.positives, len(self.positives))
        self.pool_size = _checks.check_int(fn, "pool_size", pool_size, min_value=1)
        self.range_min = _checks.check_int(fn, "range_min", range_min, min_value=0)
        self.range_max = _checks.check_int(fn, "range_max", range_max, min_value=range_min)
        self.max_score = (
            None if max_score is None else _checks.check_real(fn, "max_score", max_score)
        )
        self.margin = None if margin is None else _checks.check_real(fn, "margin", margin)
        self.relative_margin = (
            None
            if relative_margin is None
            else _checks.check_real(fn, "relative_margin", relative_margin)
        )
        self.own_document = None if own_document is None else list(own_document)
        self.duplicate_of = duplicate_of
        self.sampling: Sampling = sampling
        _checks.check_choice(fn, "sampling", sampling, ("top", "uniform", "softmax"))
        self.temperature = _checks.check_positive(fn, "temperature", temperature)
        self.refresh_every = (
            None
            if refresh_every is None
            else _checks.check_int(fn, "refresh_every", refresh_every, min_value=1)
        )
        self.ids: torch.Tensor | None = None
        self.last: MinedNegatives | None = None
        self.num_refreshes = 0
        self._num_docs = 0

    @property
    def num_queries(self) -> int:
        return len(self.positives)

    def due(self, step: int) -> bool:
        """Whether to refresh before ``step`` (0-based): at step 0 always until a first refresh,
        then every ``refresh_every`` steps (never again when it is ``None``)."""
        _checks.check_int("HardNegativePool.due", "step", step, min_value=0)
        if self.ids is None:
            return True
        if self.refresh_every is None:
            return False
        return step % self.refresh_every == 0

    def refresh(
        self,
        query_emb: torch.Tensor,
        corpus_emb: torch.Tensor,
        *,
        index: Any = None,
        generator: torch.Generator | None = None,
    ) -> MinedNegatives:
        """Re-mine every query's pool from the given (current) embeddings.

        Args:
            query_emb: (Q, D) embeddings of all training queries, in ``positives``' order.
            corpus_emb: (N, D) embeddings of the corpus; pool ids are its rows.
            index: an optional ``posneg.mining.Index`` to search with (``mine``'s default:
                exact search).
            generator: for ``mine``'s sampling ("uniform"/"softmax").

        Returns:
            The :class:`~posneg.mining.mine.MinedNegatives` (also kept as ``last``).
        """
        from posneg.mining.mine import mine  # lazily: the miner pulls in the index module

        fn = "HardNegativePool.refresh"
        _checks.check_embeddings(fn, "query_emb", query_emb)
        _checks.check_embeddings(fn, "corpus_emb", corpus_emb)
        if query_emb.shape[0] != self.num_queries:
            raise ValueError(
                f"{fn}: query_emb must have one row per query ({self.num_queries}); "
                f"got {tuple(query_emb.shape)}"
            )
        with torch.no_grad():
            mined = mine(
                query_emb.detach(),
                corpus_emb.detach(),
                self.positives,
                num_negatives=self.pool_size,
                range_min=self.range_min,
                range_max=self.range_max,
                max_score=self.max_score,
                margin=self.margin,
                relative_margin=self.relative_margin,
                own_document=self.own_document,
                duplicate_of=self.duplicate_of,
                sampling=self.sampling,
                temperature=self.temperature,
                index=index,
                generator=generator,
            )
        self.ids = mined.ids.detach().to("cpu", torch.int64)
        self.last = mined
        self.num_refreshes += 1
        self._num_docs = int(corpus_emb.shape[0])
        return mined

    def sample(
        self,
        query_rows: torch.Tensor | Sequence[int],
        n: int,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` negatives for each query of a batch, drawn from its pool.

        Each row takes ``n`` distinct pool entries in random order when its pool holds at least
        ``n`` valid ids; a smaller pool is cycled (its entries repeat, shuffled once); a query
        whose pool is empty (every candidate filtered) gets random non-positive documents
        (:func:`random_negatives`). Deterministic under ``generator`` (a CPU generator).

        Args:
            query_rows: (R,) query indices of the batch.
            n: negatives per query, >= 1.
            generator: a CPU ``torch.Generator`` or ``None``.

        Returns:
            (R, n) int64 corpus row ids, on the CPU.

        Raises:
            RuntimeError: before the first :meth:`refresh`.
            ValueError: query indices out of range, n < 1.
        """
        fn = "HardNegativePool.sample"
        if self.ids is None:
            raise RuntimeError(f"{fn}: the pool is empty; call refresh(...) first")
        _checks.check_int(fn, "n", n, min_value=1)
        _checks.check_generator(fn, generator, torch.device("cpu"))
        rows = torch.as_tensor(query_rows, dtype=torch.int64).reshape(-1).cpu()
        if rows.numel() and bool(((rows < 0) | (rows >= self.num_queries)).any()):
            raise ValueError(f"{fn}: query_rows must lie in [0, {self.num_queries})")
        ids = self.ids[rows]  # (R, P)
        valid = ids >= 0
        keys = torch.rand(ids.shape, generator=generator).masked_fill(~valid, 2.0)
        shuffled = ids.gather(1, keys.argsort(dim=1))  # valid ids first, in random order
        count = valid.sum(dim=1)
        slot = torch.arange(n)[None, :] % count.clamp_min(1)[:, None]
        out = shuffled.gather(1, slot)
        empty = count == 0
        if bool(empty.any()):
            fill_rows = rows[empty]
            out[empty] = random_negatives(
                int(fill_rows.numel()),
                self._num_docs,
                n,
                self._pos[fill_rows],
                replacement=True,
                generator=generator,
            )
        return out

    def __repr__(self) -> str:
        filters = ", ".join(
            f"{name}={getattr(self, name)}"
            for name in ("max_score", "margin", "relative_margin")
            if getattr(self, name) is not None
        )
        extra = f", {filters}" if filters else ""
        return (
            f"HardNegativePool(num_queries={self.num_queries}, pool_size={self.pool_size}, "
            f"range_min={self.range_min}, range_max={self.range_max}, "
            f"sampling={self.sampling!r}, refresh_every={self.refresh_every}{extra})"
        )
