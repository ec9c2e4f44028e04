"""One exact top-k core for every nearest-neighbour search in posneg (mining and oversampling).

Both searches scan tiles of (query rows x data rows), reduce each tile of scores, and fold what
survives into a running top-k per query row through one merge, :class:`RunningTopK`:

- **The running top-k.** It keeps the best ``k`` (value, position) entries of each row, largest
  value first, ties broken by the lower position, so a result never depends on the order in
  which tiles arrive. A pushed block is not sorted: the maxima of groups of adjacent columns are
  compared with the row's current k-th best value, only the groups that pass are read element by
  element, and the few survivors are buffered and merged (stable 1-D sorts of integer keys, fast
  on CPU) when some row has buffered ``k`` of them. On random-like data the selection costs a
  small fraction of the matrix product that made the block.
- **Inner product** (``metric="ip"``, :func:`topk_ip`): query blocks x data blocks of ``q @ d.T``
  pushed as they are: exact top-k by score, ties to the lower data position (mining's
  ``ExactIndex``).
- **Squared L2 with self-exclusion** (``metric="l2"``, :func:`knn_l2`): the query rows are rows
  of the data (indices), and a query is never its own neighbour (the over-samplers):

    1. *Filter.* Rows are centred (in float64) and cast to float32. One GEMM per tile of
       ``c x c`` row pairs gives squared distances through the augmented vectors
       ``[x, |x|^2, 1] . [-2y, 1, |y|^2]``. Columns of a tile are split into ``c / w`` groups of
       ``w`` (strided) columns, and only each group's minimum distance is kept. The running
       top-``k'`` of group minima per row (``k' = k + 2``: one group may hold the query itself,
       one more gives the certificate a margin) is the same :class:`RunningTopK`, fed panel by
       panel with the group maxima of ``-distance`` (the GEMM runs on the negated right vectors,
       so the negation is exact and free). When every row is a query, each tile is used twice
       (its row minima for the tile's rows, its column minima for the tile's columns), so only
       the upper triangle of tiles is computed: half the GEMM work.
    2. *Refine.* The ``k' * w`` members of the selected groups are the candidates; their
       distances are recomputed exactly in float64 from the original values, self and padding
       dropped, and the ``k`` smallest kept.
    3. *Certify.* Every row of a group not selected is at distance >= the ``k'``-th smallest
       group minimum minus the float32 rounding bound ``eps_i = gamma * (|x_i| + max_j |x_j|)^2``
       (``gamma`` = 1.5 (2D + 8) units of float32 round-off, the TF32 unit when TF32 is enabled
       on CUDA). A row whose ``k``-th exact distance is below that bound has provably found its
       exact neighbours. The rows that are not (near-ties at float32 resolution, or a far
       outlier inflating the bound) are searched again with ``4 k'`` groups, and any still
       uncertified by float64 brute force. The result is the exact float64 k-NN set whatever the
       float32 filter got wrong, so it matches ``sklearn.neighbors.NearestNeighbors`` (which
       computes in float64) on data without distance ties; with ties, any tied choice is valid.

    The k-th smallest group minimum bounds the k-th smallest distance from above (the minima of k
    groups are k distinct distances), so the k nearest rows always lie in the k groups of
    smallest minimum: the filter reads every distance once (a cheap row/column ``amax``) and the
    selection runs on ``1 / w`` of the matrix.

Approximate search is faiss' (:func:`knn_faiss`: ``IndexFlatL2`` or ``IndexIVFFlat``); posneg has
no clustering code of its own (``benchmarks/knn.py`` measured the former home-made IVF below
faiss' at every ``n_probe``; see ``docs/benchmarks.md``).

This module imports only torch, numpy and the standard library (faiss lazily, in
:func:`knn_faiss`).
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal

import torch

Metric = Literal["ip", "l2"]
METRICS: tuple[str, ...] = ("ip", "l2")

#: Distances of padding rows: large and finite, so that no ``0 * inf`` ever reaches a GEMM.
_BIG = 1e30
#: Squared-distance entries of one float64 block in the brute-force paths.
_BRUTE_BUDGET = 1 << 21
#: Elements of one float64 block when centring or averaging rows.
_ROW_BUDGET = 1 << 20
#: Rows up to which the CPU search (default tile) is the float64 brute force: below this the
#: filter's fixed costs (tiles, merges, refinement gathers) exceed the float64 GEMM it saves.
_BRUTE_MAX_ROWS = 6144
#: Elements (N x D) up to which the brute force centres all of ``data`` once, in float64.
_WHOLE_BUDGET = 1 << 22
#: Candidate entries (rows x candidates x D) of one refine block: small enough to stay in cache.
_REFINE_BUDGET = 1 << 19

_MAX31 = (1 << 31) - 1
_MAX63 = (1 << 63) - 1

Run = Callable[[Callable[[Any], None], list[Any]], None]


# ---------------------------------------------------------------------------------------------
# execution helpers
# ---------------------------------------------------------------------------------------------


@contextmanager
def workers(device: torch.device) -> Iterator[Run]:
    """Run independent tasks: on CPU over ``torch.get_num_threads()`` Python threads of a pool of
    this call's own, each with one OpenMP thread (coarse parallelism: no per-operation barrier,
    which matters on a loaded machine where OpenMP barriers in thousands of small operations
    dominate); elsewhere in order.

    Torch's process-wide thread count (``torch.set_num_threads``) is never changed: the pool's
    threads lower only their own OpenMP thread count (``omp_set_num_threads`` called in each
    worker thread, a per-thread setting), so a count the caller sets meanwhile and the count of
    any thread started meanwhile are left as they are. Where that per-thread setting is not
    available (no OpenMP runtime found in the process, another parallel backend), the tasks run
    in order in the calling thread with torch's own intra-op threads. With MKL, a worker's
    matrix products may still use the count torch last set for the process.
    """
    n_threads = torch.get_num_threads()
    serial_only = device.type != "cpu" or n_threads <= 1
    one_thread = None if serial_only else _omp_one_thread()  # resolved once, when needed
    if one_thread is None:

        def serial(fn: Callable[[Any], None], items: list[Any]) -> None:
            for item in items:
                fn(item)

        yield serial
        return
    with ThreadPoolExecutor(max_workers=n_threads, initializer=one_thread) as pool:

        def parallel(fn: Callable[[Any], None], items: list[Any]) -> None:
            for _ in pool.map(fn, items):  # re-raises a task's exception
                pass

        yield parallel


def _omp_one_thread() -> Callable[[], None] | None:
    """A function that gives the calling thread one OpenMP thread, or ``None`` where unavailable.

    Resolved once: ``omp_set_num_threads`` of the OpenMP runtime torch loaded (looked up in the
    process' global symbols, then in the loaded libraries listed by ``/proc/self/maps``), kept
    only if a probe thread then reports ``torch.get_num_threads() == 1`` while the calling
    thread's count is unchanged.
    """
    global _ONE_THREAD
    if _ONE_THREAD is None:
        _ONE_THREAD = _resolve_one_thread() or False
    return _ONE_THREAD or None


_ONE_THREAD: Any = None


def _resolve_one_thread() -> Callable[[], None] | None:
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    candidates: list[str | None] = [None]
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            libs = {line.split()[-1] for line in maps if "/" in line}
        candidates += sorted(p for p in libs if any(s in p for s in ("gomp", "iomp", "libomp")))
    except OSError:
        pass
    for name in candidates:
        try:
            setter = ctypes.CDLL(name).omp_set_num_threads
        except (OSError, AttributeError):
            continue
        setter.argtypes = [ctypes.c_int]
        setter.restype = None
        one_thread = _one_thread_with(setter)
        if _probe(one_thread):
            return one_thread
    return None


def _one_thread_with(setter: Any) -> Callable[[], None]:
    def one_thread() -> None:
        torch.get_num_threads()  # torch's own per-thread initialisation first
        setter(1)

    return one_thread


def _probe(one_thread: Callable[[], None]) -> bool:
    """Whether ``one_thread`` gives a fresh thread one torch thread and leaves the caller's."""
    before = torch.get_num_threads()
    seen: list[int] = []

    def probe() -> None:
        one_thread()
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return seen == [1] and torch.get_num_threads() == before


def release_freed_memory() -> None:
    """Hand a search's freed temporaries back to the OS (glibc ``malloc_trim``).

    Worker threads allocate from their own malloc arenas, which keep freed blocks resident; the
    caller's next large allocation (the resampled output) would then stack on top of them. A
    no-op where glibc is absent.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


# ---------------------------------------------------------------------------------------------
# the running top-k: the one merge
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


Entries = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _merge(
    parts: list[Entries], rows_n: int, k: int, in_order: bool
) -> tuple[Entries, torch.Tensor]:
    """Keep the best ``k`` (row, position, value) entries of each row; return them and the
    per-row k-th best value (``-inf`` for rows holding fewer than ``k``).

    Order: (row asc, value desc, position asc), by stable 1-D sorts of integer keys (fast on CPU,
    no per-row sort): one sort of ``row * 2^32 + (2^31 - 1 - key32(value))`` for float32 values,
    two for float64. With ``in_order`` the parts already list equal values of a row in ascending
    position (the running entries first, then survivors of later positions); otherwise, when a
    row holds equal values, the sort is redone after a stable sort by position.
    """
    rows = torch.cat([p[0] for p in parts])
    pos = torch.cat([p[1] for p in parts])
    vals = torch.cat([p[2] for p in parts])
    o, ties = _sorted_order(rows, vals, not in_order)
    if ties:
        by_pos = torch.sort(pos, stable=True).indices
        rows, pos = rows.index_select(0, by_pos), pos.index_select(0, by_pos)
        vals = vals.index_select(0, by_pos)
        o, _ = _sorted_order(rows, vals, False)
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


def _sorted_order(
    rows: torch.Tensor, vals: torch.Tensor, find_ties: bool
) -> tuple[torch.Tensor, bool]:
    """Stable order of the entries by (row asc, value desc); with ``find_ties``, also whether
    two entries of one row hold equal values."""
    if vals.dtype == torch.float64:
        o = torch.sort(~_ordered(vals), stable=True).indices
        o = o.index_select(0, torch.sort(rows.index_select(0, o), stable=True).indices)
        if not find_ties or o.numel() < 2:
            return o, False
        r_o, v_o = rows.index_select(0, o), vals.index_select(0, o)
        return o, bool(((r_o[1:] == r_o[:-1]) & (v_o[1:] == v_o[:-1])).any())
    key = (rows << 32) | (_MAX31 - _ordered(vals))
    sk, o = torch.sort(key, stable=True)
    if not find_ties or o.numel() < 2:
        return o, False
    return o, bool((sk[1:] == sk[:-1]).any())


class RunningTopK:
    """The best ``k`` (value, position) entries of each of ``rows_n`` rows, over pushed blocks.

    Order: value descending, ties to the lower position, whatever the order of the pushes.
    ``push`` takes a (rows_n, C) block of values for positions ``offset .. offset + width - 1``;
    survivors of the threshold test are buffered and merged when some row has buffered ``k`` of
    them (until then the threshold is stale but still a valid lower bound of the final k-th
    best). While fewer than ``k`` positions have been seen, a block's own exact k-th value is the
    threshold, so about ``k`` entries per row survive.

    Args:
        rows_n: rows (queries).
        k: entries kept per row, ``>= 1``.
        dtype: dtype of the kept values (float32 or float64).
        device: where the state lives.
        group: columns per group of the threshold pre-test; every pushed block has a multiple
            of ``group`` columns.
        in_order: pushes come in ascending position (the threshold test is then strict: an equal
            value loses to the earlier, lower position); otherwise equal values survive and the
            merge orders them by position.
    """

    def __init__(
        self,
        rows_n: int,
        k: int,
        dtype: torch.dtype,
        device: torch.device,
        *,
        group: int,
        in_order: bool = True,
    ) -> None:
        self.rows_n = rows_n
        self.k = k
        self.dtype = dtype
        self.group = group
        self.in_order = in_order
        empty_i = torch.empty(0, dtype=torch.int64, device=device)
        self._running: Entries = (empty_i, empty_i, torch.empty(0, dtype=dtype, device=device))
        self._buffered: list[Entries] = []
        self._count = torch.zeros(rows_n, dtype=torch.int64, device=device)
        self._thr = torch.full((rows_n,), -math.inf, dtype=dtype, device=device)
        self._seen = 0

    def push(self, block: torch.Tensor, width: int, offset: int) -> None:
        """Fold ``block[:, :width]`` (positions ``offset + j``) into the running top-k.

        ``block`` is (rows_n, C) contiguous, C a multiple of ``group``; columns from ``width`` on
        are ignored.
        """
        k = self.k
        full = self._seen >= k
        if full:
            rows, cols, vals = _survivors(block, width, self._thr, self.in_order, self.group)
        else:
            if width >= k:
                bthr = torch.topk(block[:, :width], k, dim=1, sorted=False).values.amin(1)
                bthr = bthr.to(self.dtype)
            else:
                bthr = torch.full_like(self._thr, -math.inf)
            rows, cols, vals = _survivors(block, width, bthr, False, self.group)
        self._buffered.append((rows, cols + offset, vals.to(self.dtype)))
        self._seen += width
        self._count += torch.bincount(rows, minlength=self.rows_n)
        if not full or int(self._count.max()) >= k:
            self._flush()

    def _flush(self) -> None:
        if self._buffered:
            self._running, self._thr = _merge(
                [self._running, *self._buffered], self.rows_n, self.k, self.in_order
            )
            self._buffered = []
            self._count.zero_()

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, positions), both (rows_n, k), best first; ``-inf`` / ``-1`` where a row
        holds fewer than ``k`` entries."""
        self._flush()
        rows, pos, vals = self._running
        counts = torch.bincount(rows, minlength=self.rows_n)
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(rows.numel(), device=rows.device) - start[rows]
        dev = self._thr.device
        out_v = torch.full((self.rows_n, self.k), -math.inf, dtype=self.dtype, device=dev)
        out_p = torch.full((self.rows_n, self.k), -1, dtype=torch.int64, device=dev)
        out_v[rows, slot] = vals
        out_p[rows, slot] = pos
        return out_v, out_p


# ---------------------------------------------------------------------------------------------
# inner product
# ---------------------------------------------------------------------------------------------


def _topk_ip_block(
    q: torch.Tensor, data: torch.Tensor, k: int, doc_chunk: int, compute: torch.dtype, group: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k (values, positions) of ``q @ data.T`` for one query block."""
    rows_n = q.shape[0]
    n = data.shape[0]
    run_dtype = torch.float64 if compute == torch.float64 else torch.float32
    qc = q.to(compute)
    cap = doc_chunk
    buf = torch.empty((rows_n, cap), dtype=compute, device=q.device)
    top = RunningTopK(rows_n, k, run_dtype, q.device, group=group)
    for d0 in range(0, n, doc_chunk):
        d1 = min(n, d0 + doc_chunk)
        width = d1 - d0
        block = data[d0:d1].to(compute)
        if width == cap:
            s = torch.mm(qc, block.T, out=buf)
        else:  # the last, narrower block: pad to a whole number of groups with -inf
            padded = -(-width // group) * group
            s = buf.view(-1)[: rows_n * padded].view(rows_n, padded)
            s[:, width:] = -math.inf
            s[:, :width] = qc @ block.T
        top.push(s, width, d0)
    return top.result()


def topk_ip(
    queries: torch.Tensor,
    data: torch.Tensor,
    k: int,
    *,
    query_chunk: int,
    doc_chunk: int,
    compute: torch.dtype,
    group: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` inner products of each query row: (scores float32, positions int64).

    Tiled: ``query_chunk`` query rows x ``doc_chunk`` data rows at a time (``doc_chunk`` a
    multiple of ``group``), so memory beyond the inputs is one score block plus the running
    top-k. Scores are computed in ``compute``; ties go to the lower data position; ``k`` must
    not exceed ``len(data)``.
    """
    n_q = queries.shape[0]
    scores = torch.empty((n_q, k), dtype=torch.float32, device=data.device)
    pos = torch.empty((n_q, k), dtype=torch.int64, device=data.device)
    with torch.no_grad():
        for q0 in range(0, n_q, query_chunk):
            q1 = min(n_q, q0 + query_chunk)
            v, p = _topk_ip_block(queries[q0:q1], data, k, doc_chunk, compute, group)
            scores[q0:q1] = v.float()
            pos[q0:q1] = p
    return scores, pos


# ---------------------------------------------------------------------------------------------
# squared L2, self excluded: filter, refine, certify
# ---------------------------------------------------------------------------------------------


def _tile_sizes(n: int, device: torch.device, tile: int | None) -> tuple[int, int, int]:
    """(tile rows c, group width w, tiles per panel m)."""
    w = 16
    if tile is None:
        tile = 8192 if device.type == "cuda" else 1024
    c = max(w, (min(tile, max(n, 1)) + w - 1) // w * w)
    m = 1 if device.type == "cuda" else max(1, 4096 // c)
    return c, w, m


def _unit_roundoff(device: torch.device) -> float:
    """Unit round-off of a float32 GEMM on ``device`` (TF32 when enabled on CUDA)."""
    if device.type != "cuda":
        return 2.0**-24
    # the new precision API first: reading the legacy flags raises once it has been used
    try:
        if str(getattr(torch.backends.cuda.matmul, "fp32_precision", "")).lower() == "ieee":
            return 2.0**-24
    except RuntimeError:
        pass
    try:
        if not torch.backends.cuda.matmul.allow_tf32 and (
            torch.get_float32_matmul_precision() == "highest"
        ):
            return 2.0**-24
    except RuntimeError:
        pass
    return 2.0**-11  # TF32 possible (or the setting unreadable): its coarser round-off


def _chunked_mean(data: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(data.shape[1], dtype=torch.float64, device=data.device)
    step = max(1, _ROW_BUDGET // max(1, data.shape[1]))
    for s in range(0, data.shape[0], step):
        total += data[s : s + step].to(torch.float64).sum(0)
    return total / max(1, data.shape[0])


def _centred_rows(
    data: torch.Tensor, rows: torch.Tensor | None, mean: torch.Tensor
) -> torch.Tensor:
    """``data[rows] - mean`` computed in float64 per block, returned in float32."""
    src = data if rows is None else data.index_select(0, rows)
    out = torch.empty(src.shape, dtype=torch.float32, device=data.device)
    step = max(1, _ROW_BUDGET // max(1, src.shape[1]))
    for s in range(0, src.shape[0], step):
        out[s : s + step] = (src[s : s + step].to(torch.float64) - mean).to(torch.float32)
    return out


def _augmented(xc: torch.Tensor, n_pad: int, left: bool) -> torch.Tensor:
    """``[x, |x|^2, 1]`` (left) or ``[-2x, 1, |x|^2]`` (right), padded with far-away rows."""
    n, d = xc.shape
    out = torch.zeros(n_pad, d + 2, dtype=torch.float32, device=xc.device)
    sq = (xc * xc).sum(1)
    if left:
        out[:n, :d] = xc
        out[:n, d] = sq
        out[:n, d + 1] = 1.0
        out[n:, d] = _BIG
        out[n:, d + 1] = 1.0
    else:
        out[:n, :d] = -2.0 * xc
        out[:n, d] = 1.0
        out[:n, d + 1] = sq
        out[n:, d] = 1.0
        out[n:, d + 1] = _BIG
    return out


def _filter(
    data: torch.Tensor, query: torch.Tensor | None, kp: int, tile: int | None, run: Run
) -> tuple[torch.Tensor, torch.Tensor, int, int, torch.Tensor]:
    """Group-minimum filter. Returns best group minima (nq, kp) ascending, their group ids,
    c, w and the rounding bound eps (nq,)."""
    n, d = data.shape
    dev = data.device
    nq = n if query is None else query.shape[0]
    c, w, m = _tile_sizes(n, dev, tile)
    gpt = c // w  # groups per tile
    nt_b = -(-n // c)
    nt_a = -(-nq // c)
    if dev.type == "cpu":  # enough panels for the workers to share
        m = max(1, min(m, nt_b // 4))
    mean = _chunked_mean(data)
    xc = _centred_rows(data, None, mean)
    # negated: the GEMM gives -distance (exactly), whose group maxima the running top-k keeps
    right = _augmented(xc, nt_b * c, left=False).neg_()
    norms_b = xc.norm(dim=1)
    if query is None:
        left = _augmented(xc, nt_a * c, left=True)
        norms_a = norms_b
    else:
        xq = _centred_rows(data, query, mean)
        left = _augmented(xq, nt_a * c, left=True)
        norms_a = xq.norm(dim=1)
        del xq
    del xc
    radius = float(norms_b.max())
    gamma = 1.5 * (2 * d + 8) * _unit_roundoff(dev)
    eps = gamma * (norms_a.to(torch.float64) + radius) ** 2

    symmetric = query is None
    panels_a = list(range(0, nt_a, m))
    panels_b = list(range(0, nt_b, m))

    # one running top-k of (negated) group minima per panel of query rows
    # (padding rows excluded: their minima are all equal, and nobody reads them)
    def real_rows(p: int) -> int:
        return min(nq, (p + m) * c) - p * c

    tops = {
        p: RunningTopK(
            real_rows(p),
            kp,
            torch.float32,
            dev,
            group=gpt,
            in_order=False,
        )
        for p in panels_a
    }
    locks = {p: threading.Lock() for p in panels_a}
    tasks = [(pa, pb) for pa in panels_a for pb in panels_b if not symmetric or pb >= pa]
    # the costliest first (diagonal pairs compute half their tiles)
    tasks.sort(key=lambda t: t[0] == t[1] and symmetric)

    def task(pair: tuple[int, int]) -> None:
        pa, pb = pair
        ta = range(pa, min(pa + m, nt_a))
        tb = range(pb, min(pb + m, nt_b))
        same = symmetric and pa == pb
        buf = torch.empty((c, c), dtype=torch.float32, device=dev)
        # Group maxima of -distance (= minus the group minima of distance):
        # gm_a[jj, r, g]: row r of panel pa, group g of tile pb + jj (row direction);
        # gm_b[ii, g, r]: row r of panel pb, group g of tile pa + ii (column direction).
        # Contiguous (c, gpt) / (gpt, c) blocks, so every amax writes with unit inner stride.
        # On a diagonal panel pair only half the (row, group) pairs are filled: the rest is -inf.
        gm_a = _block((len(tb), len(ta) * c, gpt), same, dev)
        gm_b = _block((len(ta), gpt, len(tb) * c), same, dev) if symmetric else None
        for i in ta:
            a_blk = left[i * c : (i + 1) * c]
            ra = slice((i - pa) * c, (i - pa + 1) * c)
            for j in tb:
                if same and j < i:
                    continue
                torch.mm(a_blk, right[j * c : (j + 1) * c].T, out=buf)
                torch.amax(buf.view(c, w, gpt), 1, out=gm_a[j - pb, ra])
                if gm_b is not None and not (same and i == j):
                    rj = slice((j - pb) * c, (j - pb + 1) * c)
                    torch.amax(buf.view(w, gpt, c), 0, out=gm_b[i - pa, :, rj])
        rows_a = len(ta) * c
        if same and gm_b is not None:  # disjoint (row, group) pairs, -inf elsewhere: one push
            both = torch.maximum(gm_a.permute(1, 0, 2), gm_b.permute(2, 0, 1))
            vals_a = both.reshape(rows_a, len(tb) * gpt)
        else:
            vals_a = gm_a.permute(1, 0, 2).reshape(rows_a, len(tb) * gpt)
        if gm_b is not None and not same:
            vals_b = gm_b.permute(2, 0, 1).reshape(len(tb) * c, len(ta) * gpt).contiguous()
            with locks[pb]:
                tops[pb].push(vals_b[: real_rows(pb)], vals_b.shape[1], pa * gpt)
        vals_a = vals_a.contiguous()
        with locks[pa]:
            tops[pa].push(vals_a[: real_rows(pa)], vals_a.shape[1], pb * gpt)

    run(task, tasks)
    best_v = torch.empty((nq, kp), dtype=torch.float32, device=dev)
    best_g = torch.empty((nq, kp), dtype=torch.int64, device=dev)
    for p, top in tops.items():
        v, g = top.result()
        best_v[p * c : p * c + v.shape[0]] = v.neg()
        best_g[p * c : p * c + v.shape[0]] = g
    return best_v, best_g, c, w, eps


def _block(shape: tuple[int, ...], fill: bool, device: torch.device) -> torch.Tensor:
    if fill:
        return torch.full(shape, -math.inf, dtype=torch.float32, device=device)
    return torch.empty(shape, dtype=torch.float32, device=device)


def _brute(data: torch.Tensor, k: int, qidx: torch.Tensor, run: Run) -> torch.Tensor:
    """Exact float64 brute force for the query rows ``qidx`` (self excluded): (len(qidx), k).

    Distances ``|q|^2 - 2 q.x + |x|^2`` of centred float64 rows, one block of query rows at a
    time; the ``k`` smallest of each row are selected by :func:`_smallest_k`.
    """
    n, d = data.shape
    dev = data.device
    out = torch.empty((qidx.shape[0], k), dtype=torch.int64, device=dev)
    if qidx.numel() == 0:
        return out
    mean = _chunked_mean(data)
    step_b = max(1, _ROW_BUDGET // max(1, d))
    # small data: centre and convert once, not once per block of queries
    whole = data.to(torch.float64) - mean if n * d <= _WHOLE_BUDGET else None
    sq = torch.empty(n, dtype=torch.float64, device=dev)
    for s in range(0, n, step_b):
        blk = (
            whole[s : s + step_b]
            if whole is not None
            else data[s : s + step_b].to(torch.float64) - mean
        )
        sq[s : s + step_b] = (blk * blk).sum(1)
    rows_per = max(1, min(-(-qidx.shape[0] // 8), _BRUTE_BUDGET // max(1, n)))

    def task(s: int) -> None:
        qi = qidx[s : s + rows_per]
        if whole is not None:
            q = whole.index_select(0, qi)
            dist = torch.addmm(sq, q, whole.T, alpha=-2.0)
        else:
            q = data.index_select(0, qi).to(torch.float64) - mean
            dist = torch.empty((qi.shape[0], n), dtype=torch.float64, device=dev)
            for t in range(0, n, step_b):
                blk = data[t : t + step_b].to(torch.float64) - mean
                torch.addmm(sq[t : t + step_b], q, blk.T, alpha=-2.0, out=dist[:, t : t + step_b])
        dist += (q * q).sum(1, keepdim=True)
        dist[torch.arange(qi.shape[0], device=dev), qi] = math.inf
        out[s : s + rows_per] = _smallest_k(dist, k)

    run(task, list(range(0, qidx.shape[0], rows_per)))
    return out


def _smallest_k(dist: torch.Tensor, k: int, w: int = 16) -> torch.Tensor:
    """Positions of the ``k`` smallest entries of each row of ``dist`` (R, N), smallest first;
    equal values among the candidates in ascending position.

    Exact without a full per-row selection: columns are cut into groups of ``w`` adjacent ones
    (the last ``N mod w`` columns kept apart), and the ``k`` groups of smallest minimum are
    found. The minima of ``k`` groups are ``k`` distinct entries, so the ``k``-th smallest group
    minimum is at least the ``k``-th smallest entry, and every entry outside the ``k`` selected
    groups (and the tail) is at least that: the ``k`` smallest lie among the ``k w`` members and
    the tail. Their ``k + 1`` smallest are taken; where two of them are equal, the candidates
    are sorted stably instead (ties to the lower position).
    """
    rows_n, n = dist.shape
    n_groups = n // w
    if n_groups < 4 * k:
        top = torch.topk(dist, k, dim=1, largest=False, sorted=True).indices
        return top
    dist = dist.contiguous()
    gmin = dist.as_strided((rows_n, n_groups, w), (n, w, 1)).amin(2)
    groups = torch.topk(gmin, k, dim=1, largest=False, sorted=False).indices
    groups = torch.sort(groups, dim=1).values
    members = (groups.unsqueeze(2) * w + torch.arange(w, device=dist.device)).reshape(rows_n, k * w)
    tail = n - n_groups * w
    if tail:
        extra = torch.arange(n_groups * w, n, device=dist.device).expand(rows_n, tail)
        members = torch.cat([members, extra], 1)
    vals = torch.gather(dist, 1, members)
    tv, ti = torch.topk(vals, k + 1, dim=1, largest=False, sorted=True)
    if bool((tv[:, 1:] == tv[:, :-1]).any()):  # equal values at or before the k-th: stable
        order = torch.sort(vals, dim=1, stable=True).indices[:, :k]
        return torch.gather(members, 1, order)
    return torch.gather(members, 1, ti[:, :k])


def _refine(
    data: torch.Tensor,
    k: int,
    qidx: torch.Tensor,
    best_v: torch.Tensor,
    best_g: torch.Tensor,
    c: int,
    w: int,
    eps: torch.Tensor,
    run: Run,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact float64 distances to the members of the selected groups.

    Returns the k nearest candidates per query and the positions (into ``qidx``) of the rows
    that could not be certified exact.
    """
    n, d = data.shape
    dev = data.device
    nq, kp = best_g.shape
    gpt = c // w
    offsets = torch.arange(w, device=dev) * gpt
    out = torch.empty((nq, k), dtype=torch.int64, device=dev)
    failed: list[torch.Tensor] = []
    rows_per = max(1, _REFINE_BUDGET // max(1, kp * w * d))

    def task(s: int) -> None:
        e = min(nq, s + rows_per)
        g = best_g[s:e]
        members = ((g // gpt) * c + g % gpt).unsqueeze(2) + offsets
        members = members.reshape(e - s, kp * w)
        valid = (members < n) & (members != qidx[s:e].unsqueeze(1))
        safe = members.clamp(max=n - 1)
        cand = data.index_select(0, safe.reshape(-1)).reshape(e - s, kp * w, d)
        base = data.index_select(0, qidx[s:e])
        diff = cand.to(torch.float64) - base.to(torch.float64).unsqueeze(1)
        dist = (diff * diff).sum(2)
        dist.masked_fill_(~valid, math.inf)
        top = torch.topk(dist, k, dim=1, largest=False, sorted=True)
        out[s:e] = torch.gather(safe, 1, top.indices)
        # certification: every row outside the selected groups is at distance >= bound
        bound = (best_v[s:e, kp - 1].to(torch.float64) - eps[s:e]).clamp_min(0.0)
        bad = ~(top.values[:, k - 1] <= bound)
        if dev.type != "cpu" or bool(bad.any()):
            failed.append(torch.nonzero(bad).squeeze(1) + s)

    run(task, list(range(0, nq, rows_per)))
    if not failed:
        return out, torch.empty(0, dtype=torch.int64, device=dev)
    # ascending whatever order the tasks finished in: the rows redone together (and so the
    # float64 rounding that breaks exact ties there) do not depend on the thread count
    return out, torch.sort(torch.cat(failed)).values


def knn_l2(
    data: torch.Tensor, k: int, *, query: torch.Tensor | None = None, tile: int | None = None
) -> torch.Tensor:
    """Certified exact squared-L2 k-NN among the rows of ``data``, each query excluding itself.

    Args:
        data: (N, D) floating tensor (detached by the caller).
        k: neighbours per query, ``1 <= k <= N - 1``.
        query: int64 (Q,) indices of the query rows in ``data``; ``None``: every row.
        tile: rows per tile of the filter (default 1024 on CPU, 8192 on CUDA; with the default,
            CPU searches of at most 6144 rows are float64 brute force).

    Returns:
        int64 (Q, k) on ``data``'s device, nearest first (exact in float64; see the module
        docstring).
    """
    n = data.shape[0]
    qidx = torch.arange(n, device=data.device) if query is None else query
    kp = k + 2
    c, w, _ = _tile_sizes(n, data.device, tile)
    n_groups = -(-n // c) * (c // w)
    with workers(data.device) as run:
        small = tile is None and data.device.type == "cpu" and n <= _BRUTE_MAX_ROWS
        if small or n <= 2 * c or kp * w * 4 >= n or kp >= n_groups:
            return _brute(data, k, qidx, run)
        best_v, best_g, c, w, eps = _filter(data, query, kp, tile, run)
        out, failed = _refine(data, k, qidx, best_v, best_g, c, w, eps, run)
        del best_v, best_g, eps
        if failed.numel() and 4 * failed.numel() <= n:
            # near-ties at float32 resolution: retry those rows with four times the groups
            sub = qidx[failed]
            best_v, best_g, c, w, eps = _filter(data, sub, 4 * kp, tile, run)
            out_sub, failed_sub = _refine(data, k, sub, best_v, best_g, c, w, eps, run)
            out[failed] = out_sub
            failed = failed[failed_sub]
        if failed.numel():
            out[failed] = _brute(data, k, qidx[failed], run)
        return out


def brute_l2(data: torch.Tensor, k: int, qidx: torch.Tensor) -> torch.Tensor:
    """Exact float64 brute-force squared-L2 k-NN of the rows ``qidx`` (self excluded)."""
    with workers(data.device) as run:
        return _brute(data, k, qidx, run)


# ---------------------------------------------------------------------------------------------
# faiss (exact flat or approximate IVF)
# ---------------------------------------------------------------------------------------------


def import_faiss(what: str) -> Any:
    """The faiss module, or an ImportError naming ``what`` and the extra to install."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            f"{what} needs faiss: install it with `pip install 'posneg[faiss]'` "
            "(or `pip install faiss-cpu`)"
        ) from err
    return faiss


def knn_faiss(
    data: torch.Tensor,
    k: int,
    *,
    query: torch.Tensor | None = None,
    n_lists: int | None = None,
    n_probe: int = 1,
    what: str = "knn_faiss",
) -> torch.Tensor:
    """Squared-L2 k-NN among the rows of ``data`` by faiss, each query excluding itself.

    ``n_lists=None``: ``IndexFlatL2`` (exact up to float32 rounding). Otherwise ``IndexIVFFlat``
    with ``n_lists`` lists (trained by faiss' k-means, its own fixed seed) and ``n_probe`` lists
    searched per query: approximate. faiss works on CPU in float32; a CUDA input is copied to
    the CPU and the indices back. A query row for which faiss returns fewer than ``k`` other
    rows (too few in its probed lists) is searched again exactly (float64 brute force).

    Raises:
        ImportError: faiss is not installed (the message names ``what``).
    """
    faiss = import_faiss(what)
    import numpy as np

    xb = np.ascontiguousarray(data.to(torch.float32).cpu().numpy())
    dim = xb.shape[1]
    index: Any
    if n_lists is None:
        index = faiss.IndexFlatL2(dim)
    else:
        quantizer = faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, n_lists, faiss.METRIC_L2)
        index.train(xb)
        index.nprobe = max(1, min(n_lists, n_probe))
    index.add(xb)
    q_np = np.arange(xb.shape[0]) if query is None else query.cpu().numpy()
    _, found = index.search(xb[q_np], k + 1)
    found_t = torch.from_numpy(found.astype(np.int64))
    q_t = torch.from_numpy(q_np.astype(np.int64)).unsqueeze(1)
    # drop the query itself (wherever it appears; if absent, drop the last)
    is_self = found_t == q_t
    no_self = ~is_self.any(1)
    is_self[no_self, -1] = True
    keep = found_t[~is_self].reshape(found_t.shape[0], k)
    short = (keep < 0).any(1).nonzero().squeeze(1)
    if short.numel():
        keep[short] = brute_l2(data, k, q_t[short, 0].to(data.device)).cpu()
    return keep.to(data.device)
