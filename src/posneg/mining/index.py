"""Nearest-neighbour indexes for mining: one small protocol, an exact chunked index and faiss.

An index holds corpus embeddings and answers top-k inner-product (or cosine) queries:

- :class:`Index` is the protocol every miner and metric codes against: ``add(embeddings, ids)``,
  ``search(queries, k) -> (scores, ids)`` and ``ntotal``.
- :class:`ExactIndex` is exact top-k by blocked matrix products in torch, on any device and dtype.
  It never holds more than one ``(query_chunk, doc_chunk)`` block of scores plus the running
  ``(query_chunk, k)`` top-k, and it avoids ``torch.topk`` over wide rows (slow on CPU): each block
  is reduced to the maxima of groups of :data:`GROUP` columns; only groups whose maximum beats the
  running k-th best score of the row are looked at element by element, and the few survivors are
  buffered and merged into the running top-k now and then. On random-like data the selection
  costs a small fraction of the matrix product.
- :class:`FaissIndex` wraps faiss-cpu's flat (``IndexFlatIP``) and IVF (``IndexIVFFlat``) indexes
  behind the same protocol (faiss is imported only when one is built).

Common contract of ``search``:

- ``scores`` is ``(Q, k)`` float32, descending along each row; ``ids`` is ``(Q, k)`` int64.
- When ``k`` exceeds ``ntotal`` (or an IVF search finds fewer than ``k``), the missing tail has id
  ``-1`` and score ``-inf`` (faiss' own ``-FLT_MAX`` pad is rewritten to ``-inf``).
- Ties: :class:`ExactIndex` orders by score descending, then id ascending, and picks the lowest ids
  when a tie straddles the k-th place, so its output is fully deterministic. faiss' order among
  equal scores is its own; :class:`FaissIndex` re-sorts each returned row by (score desc, id asc)
  but which of several tied items at the k-th place are returned is faiss' choice.

Example:
    >>> import torch
    >>> from posneg.mining.index import ExactIndex
    >>> corpus = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    >>> index = ExactIndex(metric="ip")
    >>> index.add(corpus)
    >>> scores, ids = index.search(torch.tensor([[1.0, 0.0]]), k=2)
    >>> ids.tolist(), scores.tolist()
    ([[0, 2]], [[1.0, 0.6000000238418579]])
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from posneg import _checks

__all__ = ["GROUP", "ExactIndex", "FaissIndex", "Index"]

Metric = Literal["ip", "cosine"]
_METRICS = ("ip", "cosine")

#: Columns per group whose maximum is compared with the running k-th best score.
GROUP = 64


@runtime_checkable
class Index(Protocol):
    """What a miner needs from a nearest-neighbour index.

    ``add`` appends rows (ids default to consecutive integers after the rows already held);
    ``search`` returns ``(scores, ids)``: ``(Q, k)`` float32 scores in descending order and int64
    ids, ``-1`` (score ``-inf``) where fewer than ``k`` items exist.
    """

    def add(self, embeddings: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        """Append ``embeddings`` (N, D) under ``ids`` (N,) int64 (default: the next N integers)."""
        ...

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` (scores, ids) of each query row."""
        ...

    @property
    def ntotal(self) -> int:
        """Number of rows held."""
        ...


# ---------------------------------------------------------------------------------------------
# shared validation
# ---------------------------------------------------------------------------------------------


def _check_ids(fn: str, ids: Any, n: int, existing: torch.Tensor | None) -> torch.Tensor:
    """int64 (n,) ids, unique and not already held; returned on CPU."""
    _checks.check_tensor(fn, "ids", ids)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise TypeError(f"{fn}: ids must be an integer tensor; got {ids.dtype}")
    if ids.dim() != 1 or ids.shape[0] != n:
        raise ValueError(
            f"{fn}: ids must have shape ({n},) matching embeddings; got {tuple(ids.shape)}"
        )
    out = ids.detach().to(device="cpu", dtype=torch.int64)
    if n and int(out.min()) < 0:
        raise ValueError(
            f"{fn}: ids must be >= 0 (-1 marks a missing result); got {int(out.min())}"
        )
    both = out if existing is None else torch.cat([existing, out])
    if both.unique().numel() != both.numel():
        raise ValueError(f"{fn}: ids must be unique (also across add calls)")
    return out


def _check_k(fn: str, k: Any) -> int:
    return _checks.check_int(fn, "k", k, min_value=1)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (norms of float16/bfloat16 computed in float32)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return F.normalize(x.float(), dim=1).to(x.dtype)
    return F.normalize(x, dim=1)


def _pad(scores: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (Q, k') results to (Q, k) with score -inf and id -1."""
    missing = k - scores.shape[1]
    if missing <= 0:
        return scores, ids
    q = scores.shape[0]
    return (
        torch.cat([scores, scores.new_full((q, missing), -math.inf)], dim=1),
        torch.cat([ids, ids.new_full((q, missing), -1)], dim=1),
    )


# ---------------------------------------------------------------------------------------------
# exact blocked top-k
# ---------------------------------------------------------------------------------------------


def _survivors(
    s: torch.Tensor, width: int, thr: torch.Tensor, strict: bool, group: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, col, value) of the entries of ``s[:, :width]`` above ``thr``, in row-major order.

    ``s`` is (R, C) contiguous with C a multiple of ``group``; ``thr`` is (R,). The maxima of
    groups of ``group`` adjacent columns are compared first; only groups whose maximum passes are
    read again element by element.
    """
    rows_n, cols_n = s.shape
    n_groups = cols_n // group
    gmax = s.view(rows_n, n_groups, group).amax(dim=2)
    t = thr.unsqueeze(1)
    gmask = gmax > t if strict else gmax >= t
    lin = gmask.view(-1).nonzero().squeeze(1)  # row * n_groups + group index, ascending
    if lin.numel() == 0:
        return lin, lin, s.new_empty(0)
    sub = s.view(-1, group).index_select(0, lin)  # (P, group)
    r = lin // n_groups
    tr = thr.index_select(0, r).unsqueeze(1)
    emask = sub > tr if strict else sub >= tr
    flat = emask.view(-1).nonzero().squeeze(1)
    pi = flat // group
    vals = sub.view(-1).index_select(0, flat)
    rows = r.index_select(0, pi)
    cols = (lin.index_select(0, pi) - rows * n_groups) * group + flat % group
    if width < cols_n:
        keep = cols < width
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    return rows, cols, vals


_MAX31 = (1 << 31) - 1
_MAX63 = (1 << 63) - 1


def _ordered(v: torch.Tensor) -> torch.Tensor:
    """int64 keys whose ascending order is the ascending order of the float values ``v``.

    Floats map through their bit patterns, negative ones with their magnitude bits flipped, so
    that integer order equals float order (float32 keys lie in [-2^31, 2^31), float64 keys use all
    64 bits). ``-0.0`` is folded into ``+0.0`` first; NaN never occurs (inputs are checked).
    """
    v = v + 0.0
    if v.dtype == torch.float64:
        i = v.view(torch.int64)
        return torch.where(i < 0, i ^ _MAX63, i)
    i = v.float().view(torch.int32).to(torch.int64)
    return torch.where(i < 0, i ^ _MAX31, i)


def _merge(
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], rows_n: int, k: int
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Keep the best ``k`` (row, position, value) entries of each row; return them and the
    per-row k-th best value (``-inf`` for rows holding fewer than ``k``).

    ``parts`` lists the running entries first, then buffered survivors in position order, so that
    within a row equal values appear in ascending position. Stable 1-D sorts of integer keys
    (fast on CPU, no per-row sort) give the order (row asc, value desc, position asc): one sort
    of ``row * 2^32 + (2^31 - 1 - key32(value))`` for float32 values, two for float64.
    """
    rows = torch.cat([p[0] for p in parts])
    pos = torch.cat([p[1] for p in parts])
    vals = torch.cat([p[2] for p in parts])
    if vals.dtype == torch.float64:
        o = torch.sort(~_ordered(vals), stable=True).indices
        o = o.index_select(0, torch.sort(rows.index_select(0, o), stable=True).indices)
    else:
        key = (rows << 32) | (_MAX31 - _ordered(vals))
        o = torch.sort(key, stable=True).indices
    rows = rows.index_select(0, o)
    counts = torch.bincount(rows, minlength=rows_n)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(rows.numel(), device=rows.device) - start.index_select(0, rows)
    keep = (slot < k).nonzero().squeeze(1)
    o = o.index_select(0, keep)
    rows, slot = rows.index_select(0, keep), slot.index_select(0, keep)
    pos, vals = pos.index_select(0, o), vals.index_select(0, o)
    thr = torch.full((rows_n,), -math.inf, dtype=vals.dtype, device=vals.device)
    last = (slot == k - 1).nonzero().squeeze(1)
    thr[rows.index_select(0, last)] = vals.index_select(0, last)
    return (rows, pos, vals), thr


def _topk_chunk(
    q: torch.Tensor,
    docs: torch.Tensor,
    k: int,
    doc_chunk: int,
    compute: torch.dtype,
    group: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k (values, positions) of ``q @ docs.T`` over doc blocks; ``k <= len(docs)``.

    Running state: the best ``k`` entries per row so far, as flat (row, position, value) arrays,
    and each row's k-th best value ``thr``. A block's survivors are the entries strictly above
    ``thr`` (an equal score loses to the earlier, lower position). Survivors are buffered and
    merged when some row has buffered ``k`` of them (or at the end); until then ``thr`` is stale
    but still a valid lower bound of the final k-th best.
    """
    rows_n = q.shape[0]
    n = docs.shape[0]
    run_dtype = torch.float64 if compute == torch.float64 else torch.float32
    qc = q.to(compute)
    cap = doc_chunk
    buf = torch.empty((rows_n, cap), dtype=compute, device=q.device)
    empty_i = torch.empty(0, dtype=torch.int64, device=q.device)
    running = (empty_i, empty_i, torch.empty(0, dtype=run_dtype, device=q.device))
    buffered: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    buffered_count = torch.zeros(rows_n, dtype=torch.int64, device=q.device)
    thr = torch.full((rows_n,), -math.inf, dtype=run_dtype, device=q.device)
    seen = 0
    for d0 in range(0, n, doc_chunk):
        d1 = min(n, d0 + doc_chunk)
        width = d1 - d0
        block = docs[d0:d1].to(compute)
        if width == cap:
            s = torch.mm(qc, block.T, out=buf)
        else:  # the last, narrower block: pad to a whole number of groups with -inf
            padded = -(-width // group) * group
            s = buf.view(-1)[: rows_n * padded].view(rows_n, padded)
            s[:, width:] = -math.inf
            s[:, :width] = qc @ block.T
        full = seen >= k
        if full:
            rows, cols, vals = _survivors(s, width, thr, True, group)
        else:
            # Fewer than k items seen: all of them are in the running set, and the block's own
            # top-k (ties included) suffices: its exact k-th largest score is the threshold, so
            # about k entries per row survive (a looser bound made small corpora, one block,
            # spend most of their time sorting survivors).
            if width >= k:
                bthr = torch.topk(s[:, :width], k, dim=1, sorted=False).values.amin(1)
                bthr = bthr.to(run_dtype)
            else:
                bthr = torch.full_like(thr, -math.inf)
            rows, cols, vals = _survivors(s, width, bthr, False, group)
        buffered.append((rows, cols + d0, vals.to(run_dtype)))
        seen += width
        buffered_count += torch.bincount(rows, minlength=rows_n)
        if not full or d1 == n or int(buffered_count.max()) >= k:
            running, thr = _merge([running, *buffered], rows_n, k)
            buffered = []
            buffered_count.zero_()
    rows, pos, vals = running
    counts = torch.bincount(rows, minlength=rows_n)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(rows.numel(), device=rows.device) - start[rows]
    out_v = torch.full((rows_n, k), -math.inf, dtype=torch.float32, device=q.device)
    out_p = torch.full((rows_n, k), -1, dtype=torch.int64, device=q.device)
    out_v[rows, slot] = vals.float()
    out_p[rows, slot] = pos
    return out_v, out_p


def _default_chunks(device: torch.device) -> tuple[int, int]:
    if device.type == "cuda":
        return 4096, 65536
    return 1024, 32768


class ExactIndex:
    """Exact top-k by chunked matrix products, on any device and dtype.

    Queries are processed ``query_chunk`` rows at a time and the corpus ``doc_chunk`` rows at a
    time: memory beyond the stored corpus is one ``(query_chunk, doc_chunk)`` score block plus the
    running ``(query_chunk, k)`` top-k and the few survivors of the threshold test (see the module
    docstring). Results are exact: equal to sorting each full score row by (score desc, id asc).

    Dtypes: the corpus is stored in the dtype it was added in (all ``add`` calls must agree, and
    queries must match it). Scores are computed in float32 on CPU for float16/bfloat16/float32
    input, in the input dtype on CUDA, in float64 for float64 input; returned scores are float32.

    Devices: ``device=None`` keeps the corpus on the device of the first ``add``; queries must then
    be on that device. With ``device`` given, added rows and queries are copied there, and results
    come back on the queries' device.

    Args:
        metric: ``"ip"`` (inner product) or ``"cosine"`` (rows L2-normalised on add and search).
        device: where the corpus is kept and the products run (``None``: the first ``add``'s).
        query_chunk: query rows per block (default 1024 on CPU, 4096 on CUDA).
        doc_chunk: corpus rows per block (default 32768 on CPU, 65536 on CUDA; rounded up to a
            multiple of :data:`GROUP`).

    Raises:
        ValueError: unknown metric, chunk sizes < 1.
    """

    def __init__(
        self,
        *,
        metric: Metric = "ip",
        device: torch.device | str | None = None,
        query_chunk: int | None = None,
        doc_chunk: int | None = None,
    ) -> None:
        fn = "ExactIndex"
        self.metric: Metric = _checks.check_choice(fn, "metric", metric, _METRICS)  # type: ignore[assignment]
        self.device = None if device is None else torch.device(device)
        self.query_chunk = (
            None
            if query_chunk is None
            else _checks.check_int(fn, "query_chunk", query_chunk, min_value=1)
        )
        self.doc_chunk = (
            None
            if doc_chunk is None
            else _checks.check_int(fn, "doc_chunk", doc_chunk, min_value=1)
        )
        self._emb: torch.Tensor | None = None
        self._ids: torch.Tensor | None = None  # int64 on CPU, ascending (storage sorted by id)
        self._ids_dev: torch.Tensor | None = None
        self._default_ids = True
        self._next_id = 0

    def __repr__(self) -> str:
        return (
            f"ExactIndex(metric={self.metric!r}, device={self.device}, "
            f"query_chunk={self.query_chunk}, doc_chunk={self.doc_chunk}, ntotal={self.ntotal})"
        )

    @property
    def ntotal(self) -> int:
        """Number of rows held."""
        return 0 if self._emb is None else int(self._emb.shape[0])

    @property
    def dim(self) -> int | None:
        """Embedding dimension (``None`` before the first ``add``)."""
        return None if self._emb is None else int(self._emb.shape[1])

    def add(self, embeddings: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        """Append ``embeddings`` (N, D) under ``ids`` (N,) int64, unique, >= 0.

        ``ids=None`` numbers the rows ``ntotal, ntotal + 1, ...``. Rows are kept sorted by id so
        that ties in search are broken by id.

        Raises:
            TypeError: non-float embeddings, non-integer ids, a dtype different from earlier rows.
            ValueError: bad shapes, a dimension different from earlier rows, NaN/inf, a device
                different from earlier rows (with ``device=None``), negative or repeated ids.
        """
        fn = "ExactIndex.add"
        _checks.check_embeddings(fn, "embeddings", embeddings)
        if self._emb is not None:
            _checks.check_same_dim(
                fn, "embeddings", embeddings, "the rows already added", self._emb
            )
            _checks.check_same_dtype(
                fn, "embeddings", embeddings, "the rows already added", self._emb
            )
            if self.device is None:
                _checks.check_same_device(
                    fn, "embeddings", embeddings, "the rows already added", self._emb
                )
        _checks.check_finite(fn, "embeddings", embeddings)
        n = int(embeddings.shape[0])
        if ids is None:
            new_ids = torch.arange(self._next_id, self._next_id + n, dtype=torch.int64)
        else:
            new_ids = _check_ids(fn, ids, n, self._ids)
        x = embeddings.detach()
        if self.device is not None:
            x = x.to(self.device)
        if self.metric == "cosine":
            x = _normalize(x)
        if self._emb is None or self._ids is None:
            emb, all_ids = x.contiguous(), new_ids
        else:
            emb, all_ids = torch.cat([self._emb, x]), torch.cat([self._ids, new_ids])
        if all_ids.numel() > 1 and not bool((all_ids[1:] > all_ids[:-1]).all()):
            order = torch.sort(all_ids, stable=True).indices
            all_ids = all_ids[order]
            emb = emb[order.to(emb.device)]
        self._default_ids = self._default_ids and ids is None
        self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        self._emb = emb
        self._ids = all_ids
        self._ids_dev = None if self._default_ids else all_ids.to(emb.device)

    def reset(self) -> None:
        """Drop every row."""
        self._emb = None
        self._ids = None
        self._ids_dev = None
        self._default_ids = True
        self._next_id = 0

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact top-``k`` of each query row: ``(scores, ids)``, both (Q, k).

        Args:
            queries: (Q, D) floating tensor, same dtype as the corpus.
            k: results per query (>= 1); beyond ``ntotal`` the tail is id -1, score -inf.

        Returns:
            ``scores`` float32 (Q, k), descending per row (ties: id ascending); ``ids`` int64.

        Raises:
            ValueError: empty index, bad shapes, NaN/inf, device mismatch (with ``device=None``).
            TypeError: non-float queries or a dtype different from the corpus'.
        """
        fn = "ExactIndex.search"
        k = _check_k(fn, k)
        _checks.check_float(fn, "queries", queries)
        if queries.dim() != 2:
            raise ValueError(f"{fn}: queries must have shape (Q, D); got {tuple(queries.shape)}")
        if self._emb is None or self._ids is None:
            raise ValueError(f"{fn}: the index is empty; call add() first")
        emb = self._emb
        _checks.check_same_dim(fn, "queries", queries, "the index", emb)
        _checks.check_same_dtype(fn, "queries", queries, "the index", emb)
        if self.device is None:
            _checks.check_same_device(fn, "queries", queries, "the index", emb)
        _checks.check_finite(fn, "queries", queries)
        out_device = queries.device
        q = queries.detach().to(emb.device)
        if self.metric == "cosine":
            q = _normalize(q)
        n = emb.shape[0]
        kk = min(k, n)
        if emb.device.type == "cpu":
            compute = torch.float64 if emb.dtype == torch.float64 else torch.float32
        else:
            compute = emb.dtype
        qdef, ddef = _default_chunks(emb.device)
        qchunk = self.query_chunk or qdef
        dchunk = -(-(self.doc_chunk or ddef) // GROUP) * GROUP
        dchunk = min(dchunk, -(-n // GROUP) * GROUP)
        n_q = q.shape[0]
        scores = torch.empty((n_q, kk), dtype=torch.float32, device=emb.device)
        pos = torch.empty((n_q, kk), dtype=torch.int64, device=emb.device)
        with torch.no_grad():
            for q0 in range(0, n_q, qchunk):
                q1 = min(n_q, q0 + qchunk)
                v, p = _topk_chunk(q[q0:q1], emb, kk, dchunk, compute, GROUP)
                scores[q0:q1] = v
                pos[q0:q1] = p
        ids = pos if self._ids_dev is None else self._ids_dev[pos]
        scores, ids = _pad(scores, ids, k)
        return scores.to(out_device), ids.to(out_device)


# ---------------------------------------------------------------------------------------------
# faiss
# ---------------------------------------------------------------------------------------------


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss is a dev dependency here
        raise ImportError(
            "FaissIndex needs faiss: install it with `pip install faiss-cpu` "
            "(or faiss-gpu from conda)"
        ) from exc
    return faiss


def default_nlist(n: int) -> int:
    """IVF lists for ``n`` training rows: ``round(sqrt(n))`` clipped to [1, n // 39].

    faiss' k-means wants at least 39 points per centroid; below that it warns.
    """
    return max(1, min(round(math.sqrt(n)), n // 39))


class FaissIndex:
    """faiss-cpu flat or IVF index behind the :class:`Index` protocol.

    - ``kind="flat"``: ``IndexIDMap(IndexFlatIP)``, exact (the same results as
      :class:`ExactIndex` up to float rounding and the order of exact ties).
    - ``kind="ivf"``: ``IndexIVFFlat`` with an inner-product quantizer, trained (k-means, faiss'
      fixed seed) on the rows of the first ``add``; later adds are assigned to the trained lists.
      ``nlist=None`` picks :func:`default_nlist` of the first add's row count; ``nprobe`` lists
      are visited per query (clipped to ``nlist``; ``nprobe=nlist`` is exact).

    faiss works in float32 on CPU: inputs of any float dtype and device are copied to CPU
    float32, results come back on the queries' device. ``metric="cosine"`` L2-normalises rows.

    Args:
        kind: ``"flat"`` or ``"ivf"``.
        metric: ``"ip"`` or ``"cosine"``.
        nlist: IVF lists (``None``: from the first add).
        nprobe: IVF lists probed per query (default 16).

    Raises:
        ImportError: faiss is not installed (names the pip package ``faiss-cpu``).
        ValueError: unknown kind or metric; nlist/nprobe < 1.
    """

    def __init__(
        self,
        *,
        kind: Literal["flat", "ivf"] = "flat",
        metric: Metric = "ip",
        nlist: int | None = None,
        nprobe: int = 16,
    ) -> None:
        fn = "FaissIndex"
        self.kind = _checks.check_choice(fn, "kind", kind, ("flat", "ivf"))
        self.metric: Metric = _checks.check_choice(fn, "metric", metric, _METRICS)  # type: ignore[assignment]
        self.nlist = None if nlist is None else _checks.check_int(fn, "nlist", nlist, min_value=1)
        self.nprobe = _checks.check_int(fn, "nprobe", nprobe, min_value=1)
        self._faiss = _import_faiss()
        self._index: Any = None
        self._dim: int | None = None
        self._next_id = 0
        self._ids: torch.Tensor | None = None

    def __repr__(self) -> str:
        return (
            f"FaissIndex(kind={self.kind!r}, metric={self.metric!r}, nlist={self.nlist}, "
            f"nprobe={self.nprobe}, ntotal={self.ntotal})"
        )

    @property
    def ntotal(self) -> int:
        """Number of rows held."""
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def faiss_index(self) -> Any:
        """The underlying faiss index (``None`` before the first add)."""
        return self._index

    def _prepare(self, x: torch.Tensor) -> Any:
        x = x.detach().to(device="cpu", dtype=torch.float32)
        if self.metric == "cosine":
            x = F.normalize(x, dim=1)
        return x.contiguous().numpy()

    def add(self, embeddings: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        """Append rows (N, D) under ``ids`` (default: the next N integers); IVF trains first.

        Raises:
            TypeError/ValueError: as :meth:`ExactIndex.add`.
        """
        fn = "FaissIndex.add"
        faiss = self._faiss
        _checks.check_embeddings(fn, "embeddings", embeddings)
        if self._dim is not None and embeddings.shape[1] != self._dim:
            raise ValueError(
                f"{fn}: embeddings must have dimension D={self._dim} like the rows already added; "
                f"got {tuple(embeddings.shape)}"
            )
        _checks.check_finite(fn, "embeddings", embeddings)
        n = int(embeddings.shape[0])
        if ids is None:
            new_ids = torch.arange(self._next_id, self._next_id + n, dtype=torch.int64)
        else:
            new_ids = _check_ids(fn, ids, n, self._ids)
        x = self._prepare(embeddings)
        if self._index is None:
            d = int(embeddings.shape[1])
            self._dim = d
            if self.kind == "flat":
                self._index = faiss.IndexIDMap(faiss.IndexFlatIP(d))
            else:
                nlist = self.nlist if self.nlist is not None else default_nlist(n)
                if nlist > n:
                    raise ValueError(
                        f"{fn}: nlist={nlist} needs at least {nlist} rows in the first add "
                        f"(training); got {n}"
                    )
                self.nlist = nlist
                quantizer = faiss.IndexFlatIP(d)
                index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
                index.train(x)
                self._quantizer = quantizer  # keep the Python reference alive
                self._index = index
        self._index.add_with_ids(x, new_ids.numpy())
        self._ids = new_ids if self._ids is None else torch.cat([self._ids, new_ids])
        self._next_id = max(self._next_id, int(new_ids.max()) + 1)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` ``(scores, ids)`` (Q, k); rows re-sorted by (score desc, id asc).

        Raises:
            ValueError: empty index, bad shapes, NaN/inf.
        """
        fn = "FaissIndex.search"
        k = _check_k(fn, k)
        _checks.check_float(fn, "queries", queries)
        if queries.dim() != 2:
            raise ValueError(f"{fn}: queries must have shape (Q, D); got {tuple(queries.shape)}")
        if self._index is None or self._dim is None:
            raise ValueError(f"{fn}: the index is empty; call add() first")
        if queries.shape[1] != self._dim:
            raise ValueError(
                f"{fn}: queries must have dimension D={self._dim} like the index; "
                f"got {tuple(queries.shape)}"
            )
        _checks.check_finite(fn, "queries", queries)
        if self.kind == "ivf":
            self._index.nprobe = min(self.nprobe, int(self.nlist or 1))
        dist, idx = self._index.search(self._prepare(queries), k)
        scores = torch.from_numpy(dist).to(torch.float32)
        ids = torch.from_numpy(idx).to(torch.int64)
        missing = ids < 0
        scores = scores.masked_fill(missing, -math.inf)
        ids = ids.masked_fill(missing, -1)
        # deterministic order among equal scores: (score desc, id asc); -1 pads stay last
        key_ids = ids.masked_fill(missing, torch.iinfo(torch.int64).max)
        o1 = torch.sort(key_ids, dim=1, stable=True).indices
        scores, ids = scores.gather(1, o1), ids.gather(1, o1)
        o2 = torch.sort(scores, dim=1, descending=True, stable=True).indices
        scores, ids = scores.gather(1, o2), ids.gather(1, o2)
        return scores.to(queries.device), ids.to(queries.device)
