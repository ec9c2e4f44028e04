"""Hard-negative mining from a corpus, with false-negative control.

:func:`mine` ranks the corpus for every query through an :class:`~posneg.mining.index.Index`
(queries in chunks, top ``range_max + 1`` only: never the full Q x N score matrix), keeps the
candidates whose rank lies in the window ``[range_min, range_max]``, removes known positives, the
query's own document, exact-duplicate texts of those, and likely false negatives (an absolute
``max_score``, an absolute or relative margin below the positive's score, an optional rescoring
callable such as a cross-encoder), then samples ``num_negatives`` of the rest. All filters and
the sampling are vectorised over a chunk of queries; no Python loop runs per query.

Semantics, and how they compare with sentence-transformers' ``util.mine_hard_negatives``:

- **Window.** Ranks are 0-based positions in the query's full ranking of the corpus by score
  (descending, ties by corpus row ascending), *positives included*; the window is the inclusive
  range ``range_min..range_max`` (``range_max - range_min + 1`` candidates, ``range_max < N``).
  Positives, the own document and duplicates that fall inside the window are removed from it and
  are *not* replaced by candidates beyond ``range_max``: when fewer than ``num_negatives``
  candidates survive, the row is padded (id ``-1``) and counted in
  :attr:`MinedNegatives.short_queries`; the window is never silently widened.
  sentence-transformers instead retrieves ``range_max + max_positives`` items, drops positives
  and filtered items, and takes the half-open slice ``[range_min, range_max)`` of what is left
  (its ``range_min`` counts surviving candidates). With one positive ranked first and
  ``range_min=0`` the two windows hold the same documents.
- **Margins** (as sentence-transformers): ``margin`` removes a candidate when
  ``score + margin > positive_score`` (keeps ``s_neg <= s_pos - margin``); ``relative_margin``
  removes it when ``score > positive_score - |positive_score| * relative_margin``, i.e. keeps
  ``s_neg <= s_pos * (1 - relative_margin)`` for a non-negative positive score (the ``|.|`` keeps
  the threshold below the positive when the positive score is negative, as sentence-transformers
  does since its issue #3819). ``max_score`` removes ``score > max_score``.
- **Several positives per query**: the reference ``positive_score`` is the *best* (largest)
  positive score. sentence-transformers uses the smallest positive score (a stricter margin
  filter); with one positive per query the two agree.
- **Duplicates**: ``duplicate_of`` maps every corpus row to a canonical row shared by rows with
  the same text (see :func:`duplicate_groups`); a candidate in the group of any positive or of the
  own document is removed as ``"duplicate"``. sentence-transformers de-duplicates the corpus by
  exact text before mining, which has the same effect for exact copies.
- **Rescoring**: ``rescore(query_rows, corpus_rows)`` is called once per query chunk with the
  candidates still alive in the window after every other filter, and those whose rescore is
  ``>= rescore_threshold`` are removed. (sentence-transformers replaces the scores by the
  cross-encoder's and applies its margins to them.)
- **Sampling**: ``"top"`` takes the best-ranked survivors (sentence-transformers' ``"top"``);
  ``"uniform"`` draws without replacement uniformly among the survivors in the window
  (sentence-transformers' ``"random"``, which uses Python's global ``random``); ``"softmax"``
  draws without replacement with probabilities proportional to ``exp(score / temperature)``
  (Gumbel-top-k: the ``num_negatives`` largest ``score / temperature + Gumbel`` keys, the
  Plackett-Luce sampler). Draws come from ``generator``. The chosen negatives of a query are
  returned in rank order.
- **Counts**: ``removed[name]`` counts window candidates removed by each filter, applied in the
  order ``positive, own_document, duplicate, max_score, margin, relative_margin, rescore``; a
  candidate is counted once, by the first filter that removes it.

Scores are inner products of the given embeddings (pass L2-normalised embeddings, as
:func:`posneg.mining.encode.encode` returns by default, for cosine similarity).

Example:
    >>> import torch
    >>> from posneg.mining.mine import mine
    >>> corpus = torch.eye(4)
    >>> queries = torch.tensor([[1.0, 0.5, 0.3, 0.1]])
    >>> out = mine(queries, corpus, [[0]], num_negatives=2, range_max=3)
    >>> out.ids.tolist(), out.ranks.tolist(), out.removed["positive"]
    ([[1, 2]], [[1, 2]], 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from posneg import _checks, _rng
from posneg._progress import ProgressCallback, check_progress, tracker
from posneg.mining.index import ExactIndex, Index

__all__ = ["FILTERS", "MinedNegatives", "duplicate_groups", "mine"]

_FN = "mine"
Sampling = Literal["top", "uniform", "softmax"]
_SAMPLINGS = ("top", "uniform", "softmax")
#: Filter names in the order they are applied (the keys of :attr:`MinedNegatives.removed`).
FILTERS = (
    "positive",
    "own_document",
    "duplicate",
    "max_score",
    "margin",
    "relative_margin",
    "rescore",
)
#: Upper bound on query rows times window width handled at once (memory of one chunk).
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class MinedNegatives:
    """What :func:`mine` returns (all tensors on the embeddings' device).

    Attributes:
        ids: (Q, num_negatives) int64 corpus row indices, in rank order; ``-1`` where fewer than
            ``num_negatives`` candidates survived the filters in the window.
        scores: (Q, num_negatives) float32 retrieval scores of ``ids``; NaN where ``ids == -1``.
        ranks: (Q, num_negatives) int64 0-based ranks of ``ids`` in the query's full ranking
            (positives included); ``-1`` where ``ids == -1``.
        positive_scores: (Q,) float32, the best positive score of each query (the margin
            reference).
        removed: filter name -> number of window candidates it removed (see :data:`FILTERS`).
    """

    ids: torch.Tensor
    scores: torch.Tensor
    ranks: torch.Tensor
    positive_scores: torch.Tensor
    removed: dict[str, int]

    @property
    def short_queries(self) -> int:
        """Queries that got fewer than ``num_negatives`` negatives (padded with -1)."""
        if self.ids.numel() == 0:
            return 0
        return int((self.ids[:, -1] < 0).sum())

    @property
    def missing(self) -> int:
        """Total padded slots (``ids == -1``)."""
        return int((self.ids < 0).sum())

    def summary(self) -> str:
        """A few human-readable lines: candidates removed per filter and the short queries."""
        q, n = self.ids.shape
        lines = [f"mined {q * n - self.missing} negatives for {q} queries ({n} per query)"]
        for name in FILTERS:
            lines.append(f"  removed by {name}: {self.removed.get(name, 0)}")
        lines.append(
            f"  queries with fewer than {n} negatives: {self.short_queries} "
            f"({self.missing} slots padded with -1)"
        )
        return "\n".join(lines)


def duplicate_groups(
    texts: Sequence[str], *, key: Callable[[str], str] | None = None
) -> torch.Tensor:
    """The ``duplicate_of`` vector of ``texts``: for each row, the first row with the same text.

    Args:
        texts: N strings (the corpus).
        key: optional normalisation applied before comparing (e.g. ``lambda t: " ".join(t.split())``
            to treat texts differing only in whitespace as duplicates); ``None`` compares exactly.

    Returns:
        (N,) int64: ``out[i] = min{j : key(texts[j]) == key(texts[i])}``; ``out[i] == i`` for
        texts seen first.

    Raises:
        TypeError: ``texts`` is not a sequence of strings.

    Example:
        >>> duplicate_groups(["a", "b", "a", "c", "b"]).tolist()
        [0, 1, 0, 3, 1]
    """
    fn = "duplicate_groups"
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise TypeError(f"{fn}: texts must be a sequence of str; got {type(texts).__name__}")
    first: dict[str, int] = {}
    out: list[int] = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{fn}: texts[{i}] must be a str; got {type(t).__name__}")
        out.append(first.setdefault(t if key is None else key(t), i))
    return torch.tensor(out, dtype=torch.int64)


# ---------------------------------------------------------------------------------------------
# validation and preparation
# ---------------------------------------------------------------------------------------------


def _positive_table(positives: Any, n_queries: int, n_docs: int) -> torch.Tensor:
    """(Q, P) int64 table of positive rows, ``-1`` padded; validated."""
    return _checks.check_id_lists(_FN, "positives", positives, n_queries, num_ids=n_docs)


def _own_vector(own_document: Any, n_queries: int, n_docs: int) -> torch.Tensor | None:
    if own_document is None:
        return None
    if isinstance(own_document, torch.Tensor):
        values = own_document.detach().cpu().tolist()
    elif isinstance(own_document, (str, bytes)) or not isinstance(own_document, Sequence):
        raise TypeError(
            f"{_FN}: own_document must be a sequence of corpus rows (-1 for none); "
            f"got {type(own_document).__name__}"
        )
    else:
        values = list(own_document)
    if len(values) != n_queries:
        raise ValueError(
            f"{_FN}: own_document must hold one corpus row per query ({n_queries}); "
            f"got {len(values)}"
        )
    for i, raw in enumerate(values):
        v = _checks.check_int(_FN, f"own_document[{i}]", raw)
        values[i] = v
        if not -1 <= v < n_docs:
            raise ValueError(
                f"{_FN}: own_document[{i}] is {v}, outside the corpus rows [0, {n_docs}) "
                "(use -1 for a query without one)"
            )
    return torch.tensor(values, dtype=torch.int64)


def _check_duplicate_of(duplicate_of: Any, n_docs: int, device: torch.device) -> torch.Tensor:
    dup = _checks.check_labels(_FN, "duplicate_of", duplicate_of, n_docs, device).to(torch.int64)
    if n_docs and (int(dup.min()) < 0 or int(dup.max()) >= n_docs):
        raise ValueError(
            f"{_FN}: duplicate_of must hold corpus rows in [0, {n_docs}); "
            f"got values in [{int(dup.min())}, {int(dup.max())}]"
        )
    return dup


def _optional_real(name: str, value: Any, *, nonnegative: bool) -> float | None:
    if value is None:
        return None
    if nonnegative:
        return _checks.check_nonnegative(_FN, name, value)
    return _checks.check_real(_FN, name, value)


def _member(table: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``values[i, j] in table[i]`` for a row-sorted (R, P) table (vectorised searchsorted)."""
    idx = torch.searchsorted(table, values).clamp_(max=table.shape[1] - 1)
    return table.gather(1, idx) == values


def _sorted_rows(table: torch.Tensor) -> torch.Tensor:
    """Rows sorted ascending with -1 pads replaced by int64 max (never matches a row index)."""
    filled = table.masked_fill(table < 0, torch.iinfo(torch.int64).max)
    return torch.sort(filled, dim=1).values


def _positive_scores(
    query_emb: torch.Tensor, corpus_emb: torch.Tensor, table: torch.Tensor, compute: torch.dtype
) -> torch.Tensor:
    """Best positive score per query, over flat (query, positive) pairs in chunks."""
    q_idx, slot = (table >= 0).nonzero(as_tuple=True)
    d_idx = table[q_idx, slot]
    out = torch.full((table.shape[0],), -math.inf, dtype=compute, device=query_emb.device)
    step = max(1, _CHUNK_ELEMENTS // max(1, query_emb.shape[1]))
    for a in range(0, q_idx.numel(), step):
        qi = q_idx[a : a + step]
        di = d_idx[a : a + step]
        s = (query_emb[qi].to(compute) * corpus_emb[di].to(compute)).sum(dim=1)
        out.scatter_reduce_(0, qi, s, reduce="amax")
    return out.float()


# ---------------------------------------------------------------------------------------------
# the miner: validate, then per chunk of queries search, filter and sample
# ---------------------------------------------------------------------------------------------


def mine(
    query_emb: torch.Tensor,
    corpus_emb: torch.Tensor,
    positives: Sequence[Sequence[int]] | torch.Tensor,
    *,
    num_negatives: int = 5,
    range_min: int = 0,
    range_max: int = 100,
    max_score: float | None = None,
    margin: float | None = None,
    relative_margin: float | None = None,
    own_document: Sequence[int] | None = None,
    duplicate_of: torch.Tensor | None = None,
    rescore: Callable[[list[int], list[int]], torch.Tensor] | None = None,
    rescore_threshold: float | None = None,
    sampling: Sampling = "top",
    temperature: float = 1.0,
    index: Index | None = None,
    generator: torch.Generator | None = None,
    progress: bool | ProgressCallback = False,
) -> MinedNegatives:
    """Mine ``num_negatives`` hard negatives per query from the rank window of a corpus.

    Hard negatives as used by ANCE/STAR-style dense-retrieval training (see the module docstring
    for the exact window, filter and sampling semantics, and where they differ from
    sentence-transformers' ``mine_hard_negatives``).

    Args:
        query_emb: (Q, D) query embeddings.
        corpus_emb: (N, D) corpus embeddings (same dtype and device as ``query_emb``).
        positives: for each query, its positive corpus rows (at least one); or a (Q, P) integer
            tensor padded with -1.
        num_negatives: negatives per query (1 <= num_negatives <= window size).
        range_min: first rank of the window (0-based, inclusive).
        range_max: last rank of the window (inclusive; ``range_max < N``).
        max_score: remove candidates with ``score > max_score``.
        margin: remove candidates with ``score + margin > positive_score`` (>= 0).
        relative_margin: remove candidates with
            ``score > positive_score - |positive_score| * relative_margin`` (>= 0).
        own_document: for each query, the corpus row holding the query's own text, or -1.
        duplicate_of: (N,) int64, a canonical row per corpus row, equal for equal texts
            (:func:`duplicate_groups`); candidates sharing a group with a positive or the own
            document are removed.
        rescore: optional ``rescore(query_rows, corpus_rows) -> (M,) scores`` (e.g. a
            cross-encoder) over the candidates that survive the other filters.
        rescore_threshold: candidates whose rescore is ``>= rescore_threshold`` are removed as
            likely false negatives (required with ``rescore``).
        sampling: ``"top"``, ``"uniform"`` or ``"softmax"``.
        temperature: softmax temperature (> 0; only used by ``"softmax"``).
        index: the index to rank with. ``None``: an inner-product :class:`ExactIndex`. An empty
            index gets ``corpus_emb`` added; one holding exactly N rows (added with default ids,
            so that ids are corpus rows) is used as it is.
        generator: random source of ``"uniform"`` and ``"softmax"`` (on the embeddings' device).
        progress: ``True`` for a tqdm bar (when tqdm is installed), or a
            ``progress(desc, done, total)`` callback, called after every chunk of queries.

    Returns:
        :class:`MinedNegatives` (``ids``, ``scores``, ``ranks`` of shape (Q, num_negatives),
        ``positive_scores`` (Q,), ``removed`` counts).

    Raises:
        ValueError: empty corpus or queries, mismatched dimensions or devices, NaN/inf, a window
            outside ``0 <= range_min <= range_max < N``, ``num_negatives`` larger than the
            window, positives out of range or missing, bad ``own_document``/``duplicate_of``,
            negative margins, an unknown sampling, ``temperature <= 0``, ``rescore`` without
            ``rescore_threshold`` (or the reverse), an index holding another number of rows, a
            rescore output of the wrong shape.
        TypeError: non-float embeddings, different dtypes, wrong argument types, a
            ``progress`` that is neither a bool nor a callable.
    """
    n_docs = _check_embeddings(query_emb, corpus_emb)
    opts = _Options(
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        margin=margin,
        relative_margin=relative_margin,
        rescore=rescore,
        rescore_threshold=rescore_threshold,
        sampling=sampling,
        temperature=temperature,
    ).checked(n_docs)
    check_progress(_FN, progress)
    device = query_emb.device
    _checks.check_generator(_FN, generator, device)
    tables = _tables(query_emb, corpus_emb, positives, own_document, duplicate_of)
    index = _filled_index(index, corpus_emb)

    n_q = int(query_emb.shape[0])
    k = opts.range_max + 1
    chunk = max(1, min(n_q, _CHUNK_ELEMENTS // k))
    removed = dict.fromkeys(FILTERS, 0)
    out_ids = torch.full((n_q, opts.num_negatives), -1, dtype=torch.int64, device=device)
    out_scores = torch.full((n_q, opts.num_negatives), math.nan, dtype=torch.float32, device=device)
    out_ranks = torch.full((n_q, opts.num_negatives), -1, dtype=torch.int64, device=device)
    with torch.no_grad(), tracker(progress, "mining", n_q) as advance:
        for q0 in range(0, n_q, chunk):
            q1 = min(n_q, q0 + chunk)
            scores, ids = index.search(query_emb[q0:q1], k)
            scores = scores[:, opts.range_min :].to(device=device, dtype=torch.float32)
            ids = ids[:, opts.range_min :].to(device=device, dtype=torch.int64)
            alive = _filter(scores, ids, q0, tables, opts, removed)
            picked = _sample(scores, ids, alive, opts, generator)
            out_ids[q0:q1], out_scores[q0:q1], out_ranks[q0:q1] = picked
            advance(q1 - q0)

    return MinedNegatives(
        ids=out_ids,
        scores=out_scores,
        ranks=out_ranks,
        positive_scores=tables.positive_scores,
        removed=removed,
    )


# ---------------------------------------------------------------------------------------------
# stage 1: validation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    """The validated scalar options of one :func:`mine` call."""

    num_negatives: int
    range_min: int
    range_max: int
    max_score: float | None
    margin: float | None
    relative_margin: float | None
    rescore: Callable[[list[int], list[int]], torch.Tensor] | None
    rescore_threshold: float | None
    sampling: str
    temperature: float

    @property
    def window(self) -> int:
        """Candidates per query: ``range_max - range_min + 1``."""
        return self.range_max - self.range_min + 1

    def checked(self, n_docs: int) -> _Options:
        """These options validated against a corpus of ``n_docs`` rows (numbers normalised)."""
        num_negatives = _checks.check_int(_FN, "num_negatives", self.num_negatives, min_value=1)
        range_min = _checks.check_int(_FN, "range_min", self.range_min, min_value=0)
        range_max = _checks.check_int(_FN, "range_max", self.range_max, min_value=0)
        if range_max >= n_docs:
            raise ValueError(
                f"{_FN}: range_max must be < the corpus size N={n_docs} (ranks are 0..N-1); "
                f"got range_max={range_max}"
            )
        if range_min > range_max:
            raise ValueError(
                f"{_FN}: range_min must be <= range_max; got range_min={range_min}, "
                f"range_max={range_max}"
            )
        window = range_max - range_min + 1
        if num_negatives > window:
            raise ValueError(
                f"{_FN}: num_negatives must be <= the window size range_max - range_min + 1 = "
                f"{window}; got num_negatives={num_negatives}"
            )
        rescore, threshold = self.rescore, self.rescore_threshold
        if rescore is not None and not callable(rescore):
            raise TypeError(f"{_FN}: rescore must be callable; got {type(rescore).__name__}")
        if (rescore is None) != (threshold is None):
            raise ValueError(
                f"{_FN}: rescore and rescore_threshold go together; got rescore="
                f"{'a callable' if rescore is not None else None}, "
                f"rescore_threshold={threshold!r}"
            )
        return _Options(
            num_negatives=num_negatives,
            range_min=range_min,
            range_max=range_max,
            max_score=_optional_real("max_score", self.max_score, nonnegative=False),
            margin=_optional_real("margin", self.margin, nonnegative=True),
            relative_margin=_optional_real(
                "relative_margin", self.relative_margin, nonnegative=True
            ),
            rescore=rescore,
            rescore_threshold=_optional_real("rescore_threshold", threshold, nonnegative=False),
            sampling=_checks.check_choice(_FN, "sampling", self.sampling, _SAMPLINGS),
            temperature=_checks.check_positive(_FN, "temperature", self.temperature),
        )


@dataclass(frozen=True)
class _Tables:
    """Per-query lookup tables on the embeddings' device.

    Attributes:
        pos_sorted: (Q, P) positive rows sorted ascending, pads as int64 max.
        own: (Q,) own-document rows (-1 for none), or None.
        dup: (N,) canonical row per corpus row, or None.
        group_sorted: (Q, G) sorted duplicate groups of each query's positives and own document.
        positive_scores: (Q,) float32 best positive score.
    """

    pos_sorted: torch.Tensor
    own: torch.Tensor | None
    dup: torch.Tensor | None
    group_sorted: torch.Tensor | None
    positive_scores: torch.Tensor


def _check_embeddings(query_emb: Any, corpus_emb: Any) -> int:
    """Check both embedding matrices; return the corpus size N."""
    _checks.check_embeddings(_FN, "query_emb", query_emb)
    _checks.check_float(_FN, "corpus_emb", corpus_emb)
    if corpus_emb.dim() != 2:
        raise ValueError(f"{_FN}: corpus_emb must have shape (N, D); got {tuple(corpus_emb.shape)}")
    if corpus_emb.shape[0] == 0:
        raise ValueError(f"{_FN}: corpus_emb is empty (N=0); there is nothing to mine from")
    _checks.check_same_dim(_FN, "corpus_emb", corpus_emb, "query_emb", query_emb)
    _checks.check_same_device(_FN, "corpus_emb", corpus_emb, "query_emb", query_emb)
    _checks.check_same_dtype(_FN, "corpus_emb", corpus_emb, "query_emb", query_emb)
    _checks.check_finite(_FN, "query_emb", query_emb)
    _checks.check_finite(_FN, "corpus_emb", corpus_emb)
    return int(corpus_emb.shape[0])


def _tables(
    query_emb: torch.Tensor,
    corpus_emb: torch.Tensor,
    positives: Any,
    own_document: Any,
    duplicate_of: Any,
) -> _Tables:
    """Validate positives, own documents and duplicate groups; build the per-query tables."""
    n_q, n_docs = int(query_emb.shape[0]), int(corpus_emb.shape[0])
    device = query_emb.device
    table_cpu = _positive_table(positives, n_q, n_docs)
    own_cpu = _own_vector(own_document, n_q, n_docs)
    dup = None if duplicate_of is None else _check_duplicate_of(duplicate_of, n_docs, device)

    compute = torch.float64 if query_emb.dtype == torch.float64 else torch.float32
    table = table_cpu.to(device)
    own = None if own_cpu is None else own_cpu.to(device)
    group_sorted: torch.Tensor | None = None
    if dup is not None:
        groups = torch.where(table >= 0, dup[table.clamp(min=0)], table)
        if own is not None:
            own_group = torch.where(own >= 0, dup[own.clamp(min=0)], own)
            groups = torch.cat([groups, own_group.unsqueeze(1)], dim=1)
        group_sorted = _sorted_rows(groups)
    return _Tables(
        pos_sorted=_sorted_rows(table),
        own=own,
        dup=dup,
        group_sorted=group_sorted,
        positive_scores=_positive_scores(query_emb, corpus_emb, table, compute),
    )


def _filled_index(index: Any, corpus_emb: torch.Tensor) -> Index:
    """``index`` (an inner-product :class:`ExactIndex` when None) holding ``corpus_emb``."""
    n_docs = int(corpus_emb.shape[0])
    if index is None:
        index = ExactIndex(metric="ip")
    elif not isinstance(index, Index):
        raise TypeError(
            f"{_FN}: index must implement the Index protocol (add, search, ntotal); "
            f"got {type(index).__name__}"
        )
    if index.ntotal == 0:
        index.add(corpus_emb)
    elif index.ntotal != n_docs:
        raise ValueError(
            f"{_FN}: index holds {index.ntotal} rows but corpus_emb has {n_docs}; pass an empty "
            "index or one built from corpus_emb with default ids"
        )
    return index


# ---------------------------------------------------------------------------------------------
# stage 2: false-negative filters
# ---------------------------------------------------------------------------------------------


def _filter(
    scores: torch.Tensor,
    ids: torch.Tensor,
    q0: int,
    tables: _Tables,
    opts: _Options,
    removed: dict[str, int],
) -> torch.Tensor:
    """(R, W) bool: the window candidates of queries ``q0..q0+R`` that survive every filter.

    Each filter removes what is still alive; ``removed[name]`` counts its removals.
    """
    q1 = q0 + ids.shape[0]

    def drop(name: str, cond: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        hit = alive & cond
        removed[name] += int(hit.sum())
        return alive & ~hit

    alive = ids >= 0
    safe = ids.clamp(min=0)
    alive = drop("positive", _member(tables.pos_sorted[q0:q1], safe), alive)
    if tables.own is not None:
        o = tables.own[q0:q1].unsqueeze(1)
        alive = drop("own_document", (ids == o) & (o >= 0), alive)
    if tables.group_sorted is not None and tables.dup is not None:
        alive = drop("duplicate", _member(tables.group_sorted[q0:q1], tables.dup[safe]), alive)
    if opts.max_score is not None:
        alive = drop("max_score", scores > opts.max_score, alive)
    sp = tables.positive_scores[q0:q1].unsqueeze(1)
    if opts.margin is not None:
        alive = drop("margin", scores + opts.margin > sp, alive)
    if opts.relative_margin is not None:
        alive = drop("relative_margin", scores > sp - sp.abs() * opts.relative_margin, alive)
    if opts.rescore is not None and opts.rescore_threshold is not None:
        alive = drop("rescore", _rescored(ids, alive, q0, opts), alive)
    return alive


def _rescored(ids: torch.Tensor, alive: torch.Tensor, q0: int, opts: _Options) -> torch.Tensor:
    """(R, W) bool: alive candidates whose rescore reaches the threshold."""
    cond = torch.zeros_like(alive)
    rr, cc = alive.nonzero(as_tuple=True)
    if not rr.numel() or opts.rescore is None or opts.rescore_threshold is None:
        return cond
    q_rows = (rr + q0).tolist()
    c_rows = ids[rr, cc].tolist()
    rs = opts.rescore(q_rows, c_rows)
    if not isinstance(rs, torch.Tensor) or rs.shape != (len(q_rows),):
        got = tuple(rs.shape) if isinstance(rs, torch.Tensor) else type(rs)
        raise ValueError(
            f"{_FN}: rescore must return a tensor of shape ({len(q_rows)},) "
            f"(one score per candidate); got {got}"
        )
    cond[rr, cc] = rs.to(alive.device) >= opts.rescore_threshold
    return cond


# ---------------------------------------------------------------------------------------------
# stage 3: sampling
# ---------------------------------------------------------------------------------------------


def _sample(
    scores: torch.Tensor,
    ids: torch.Tensor,
    alive: torch.Tensor,
    opts: _Options,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``num_negatives`` largest sampling keys among the survivors, in rank order.

    Returns:
        (ids, scores, ranks) of shape (R, num_negatives), padded with -1 / NaN / -1.
    """
    device = scores.device
    window = opts.window
    col_rank = torch.arange(opts.range_min, opts.range_max + 1, device=device)
    neg_inf = torch.tensor(-math.inf, device=device)
    if opts.sampling == "top":
        key = -col_rank.to(torch.float32).expand_as(scores)
    elif opts.sampling == "uniform":
        key = _rng.uniform(tuple(scores.shape), device=device, generator=generator)
    else:
        u = _rng.uniform(
            tuple(scores.shape), device=device, dtype=torch.float64, generator=generator
        )
        tiny = torch.finfo(torch.float64).tiny
        gumbel = -torch.log(-torch.log(u.clamp(min=tiny, max=1.0 - 1e-16)))
        key = scores.double() / opts.temperature + gumbel
    key = torch.where(alive, key, neg_inf)
    top_key, pick = torch.topk(key, opts.num_negatives, dim=1)
    chosen = top_key > -math.inf
    pick = torch.where(chosen, pick, torch.full_like(pick, window))
    pick = torch.sort(pick, dim=1).values  # rank order, pads (= window) last
    filled = pick < window
    pick_c = pick.clamp(max=window - 1)
    return (
        torch.where(filled, ids.gather(1, pick_c), -1),
        torch.where(filled, scores.gather(1, pick_c), math.nan),
        torch.where(filled, col_rank[pick_c], -1),
    )
