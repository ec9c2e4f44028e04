"""k-nearest-neighbour search for the over-samplers (squared Euclidean distance).

Three methods, all returning, for each query row of ``data``, the indices of its ``k`` nearest
*other* rows of ``data`` (the query itself excluded by index), sorted by increasing distance:

``"exact"`` (default): a certified exact search on the input's device, built from matrix
    multiplications and never holding more than one ``tile x tile`` block of distances:

    1. *Filter.* Rows are centred (in float64) and cast to float32. One GEMM per tile of
       ``c x c`` row pairs gives squared distances through the augmented vectors
       ``[x, |x|^2, 1] . [-2y, 1, |y|^2]``. Columns of a tile are split into ``c / w`` groups of
       ``w`` (strided) columns, and only each group's minimum distance is kept. A running
       top-``k'`` of group minima per row (``k' = k + 2``: one group may hold the query itself,
       one more gives the certificate a margin) is merged panel by panel. When every row is a
       query, each tile is used twice (its row minima for the tile's rows, its column minima for
       the tile's columns), so only the upper triangle of tiles is computed: half the GEMM work.
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
    smallest minimum: the filter reads every distance once (a cheap row/column ``amin``) and the
    selection runs on ``1 / w`` of the matrix.

``"approx"``: an inverted-file search (IVF, as in faiss ``IndexIVFFlat``): k-means with
    ``n_lists`` centroids (Lloyd iterations on a sample, seeded from ``generator``); each query
    searches the lists of the ``n_probe`` centroids nearest to it. Queries of one list are
    batched against the lists they probe most often (at most ``2 * n_probe``), by one GEMM and a
    group-minimum selection. Recall below 1 and data-dependent: see ``benchmarks/oversampling.py``.

``"faiss"``: faiss ``IndexFlatL2`` (exact, on CPU; a CUDA input is copied to the CPU and the
    indices back). Needs ``faiss-cpu``.
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

Method = Literal["exact", "approx", "faiss"]
METHODS: tuple[str, ...] = ("exact", "approx", "faiss")

#: Distances of padding rows: large and finite, so that no ``0 * inf`` ever reaches a GEMM.
_BIG = 1e30
#: Squared-distance entries of one float64 block in the brute-force paths.
_BRUTE_BUDGET = 1 << 21
#: Elements of one float64 block when centring or averaging rows.
_ROW_BUDGET = 1 << 20
#: Candidate entries (rows x candidates x D) of one refine block: small enough to stay in cache.
_REFINE_BUDGET = 1 << 19


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
    if device.type == "cuda" and (
        torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    ):
        return 2.0**-11
    return 2.0**-24


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


@contextmanager
def _workers(device: torch.device) -> Iterator[Callable[[Callable[[Any], None], list[Any]], None]]:
    """Run independent tasks: on CPU over ``torch.get_num_threads()`` Python threads, each with
    one intra-op thread (coarse parallelism: no per-operation barrier, which matters on a loaded
    machine where OpenMP barriers in thousands of small operations dominate); elsewhere in order.

    ``torch.set_num_threads`` is process-wide: it is 1 for the duration of the call and restored
    afterwards.
    """
    n_threads = torch.get_num_threads()
    if device.type != "cpu" or n_threads <= 1:

        def serial(fn: Callable[[Any], None], items: list[Any]) -> None:
            for item in items:
                fn(item)

        yield serial
        return
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:

            def parallel(fn: Callable[[Any], None], items: list[Any]) -> None:
                for _ in pool.map(fn, items):  # re-raises a task's exception
                    pass

            yield parallel
    finally:
        torch.set_num_threads(n_threads)


def _merge(
    best_v: torch.Tensor,
    best_g: torch.Tensor,
    rows: slice,
    vals: torch.Tensor,
    first_group: int,
) -> None:
    """Merge group minima ``vals`` (groups ``first_group + j``) into the running top-k'.

    Selection (``topk``) costs about ten times a ``min`` reduction per element on CPU, so wide
    blocks are first cut down: columns are split into ``s`` strided super-groups whose minima
    select ``k'`` super-groups (the ``k'`` smallest groups lie in the ``k'`` super-groups of
    smallest minimum), and only their ``k' * s`` groups compete with the running best.
    """
    kp = best_v.shape[1]
    n_rows, width = vals.shape
    s = 8
    if width >= 4 * kp * s and width % s == 0:
        n_super = width // s
        super_min = vals.view(n_rows, s, n_super).amin(1)
        sel = torch.topk(super_min, kp, dim=1, largest=False, sorted=False).indices
        cols = (sel.unsqueeze(2) + torch.arange(s, device=vals.device) * n_super).reshape(
            n_rows, -1
        )
        vals = torch.gather(vals, 1, cols)
    else:
        cols = None
    cand = torch.cat([best_v[rows], vals], dim=1)
    tv, ti = torch.topk(cand, kp, dim=1, largest=False, sorted=False)
    old = torch.gather(best_g[rows], 1, ti.clamp(max=kp - 1))
    new_col = (ti - kp).clamp(min=0)
    if cols is not None:
        new_col = torch.gather(cols, 1, new_col)
    best_g[rows] = torch.where(ti < kp, old, new_col + first_group)
    best_v[rows] = tv


def _block(shape: tuple[int, ...], fill: bool, device: torch.device) -> torch.Tensor:
    if fill:
        return torch.full(shape, math.inf, dtype=torch.float32, device=device)
    return torch.empty(shape, dtype=torch.float32, device=device)


def _chunked_mean(data: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(data.shape[1], dtype=torch.float64, device=data.device)
    step = max(1, _ROW_BUDGET // max(1, data.shape[1]))
    for s in range(0, data.shape[0], step):
        total += data[s : s + step].to(torch.float64).sum(0)
    return total / max(1, data.shape[0])


def _filter(
    data: torch.Tensor,
    query: torch.Tensor | None,
    kp: int,
    tile: int | None,
    run: Callable[[Callable[[Any], None], list[Any]], None],
    pairs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int, int, torch.Tensor]:
    """Group-minimum filter. Returns best group minima (nq, kp), their group ids, c, w, eps.

    ``pairs`` (CPU bool, query tiles x data tiles): compute only the flagged tile pairs (the
    approximate mode); the others count as infinitely far.
    """
    n, d = data.shape
    dev = data.device
    nq = n if query is None else query.shape[0]
    c, w, m = _tile_sizes(n, dev, tile)
    gpt = c // w  # groups per tile
    nt_b = -(-n // c)
    nt_a = -(-nq // c)
    if dev.type == "cpu":  # enough panels for the workers to share
        m = max(1, min(m, nt_b // 4))
    sparse = pairs is not None
    flags = pairs.tolist() if pairs is not None else None
    if sparse:  # tile-level tasks: merges only for the tile pairs compared
        m = 1
    mean = _chunked_mean(data)
    xc = _centred_rows(data, None, mean)
    right = _augmented(xc, nt_b * c, left=False)
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

    best_v = torch.full((nt_a * c, kp), math.inf, dtype=torch.float32, device=dev)
    best_g = torch.zeros((nt_a * c, kp), dtype=torch.int64, device=dev)
    symmetric = query is None
    panels_a = list(range(0, nt_a, m))
    panels_b = list(range(0, nt_b, m))
    locks = {p: threading.Lock() for p in sorted(set(panels_a) | set(panels_b))}
    tasks = [
        (pa, pb)
        for pa in panels_a
        for pb in panels_b
        if (not symmetric or pb >= pa)
        and (
            flags is None
            or any(
                flags[i][j]
                for i in range(pa, min(pa + m, nt_a))
                for j in range(pb, min(pb + m, nt_b))
            )
        )
    ]
    # the costliest first (diagonal pairs compute half their tiles)
    tasks.sort(key=lambda t: t[0] == t[1] and symmetric)

    def task(pair: tuple[int, int]) -> None:
        pa, pb = pair
        ta = range(pa, min(pa + m, nt_a))
        tb = range(pb, min(pb + m, nt_b))
        same = symmetric and pa == pb
        buf = torch.empty((c, c), dtype=torch.float32, device=dev)
        # gm_a[jj, r, g]: row r of panel pa, group g of tile pb + jj (row direction);
        # gm_b[ii, g, r]: row r of panel pb, group g of tile pa + ii (column direction).
        # Contiguous (c, gpt) / (gpt, c) blocks, so every amin writes with unit inner stride.
        # On a diagonal panel pair only half the (row, group) pairs are filled: the rest is +inf.
        gm_a = _block((len(tb), len(ta) * c, gpt), same or sparse, dev)
        gm_b = _block((len(ta), gpt, len(tb) * c), same or sparse, dev) if symmetric else None
        for i in ta:
            a_blk = left[i * c : (i + 1) * c]
            ra = slice((i - pa) * c, (i - pa + 1) * c)
            for j in tb:
                if (same and j < i) or (flags is not None and not flags[i][j]):
                    continue
                torch.mm(a_blk, right[j * c : (j + 1) * c].T, out=buf)
                torch.amin(buf.view(c, w, gpt), 1, out=gm_a[j - pb, ra])
                if gm_b is not None and not (same and i == j):
                    rj = slice((j - pb) * c, (j - pb + 1) * c)
                    torch.amin(buf.view(w, gpt, c), 0, out=gm_b[i - pa, :, rj])
        rows_a = len(ta) * c
        if same and gm_b is not None:  # disjoint (row, group) pairs, +inf elsewhere: one merge
            both = torch.minimum(gm_a.permute(1, 0, 2), gm_b.permute(2, 0, 1))
            vals_a = both.reshape(rows_a, len(tb) * gpt)
        else:
            vals_a = gm_a.permute(1, 0, 2).reshape(rows_a, len(tb) * gpt)
        if gm_b is not None and not same:
            vals_b = gm_b.permute(2, 0, 1).reshape(len(tb) * c, len(ta) * gpt)
            with locks[pb]:
                _merge(best_v, best_g, slice(pb * c, pb * c + len(tb) * c), vals_b, pa * gpt)
        with locks[pa]:
            _merge(best_v, best_g, slice(pa * c, pa * c + rows_a), vals_a, pb * gpt)

    run(task, tasks)
    return best_v[:nq], best_g[:nq], c, w, eps


def _brute(
    data: torch.Tensor,
    k: int,
    qidx: torch.Tensor,
    run: Callable[[Callable[[Any], None], list[Any]], None],
) -> torch.Tensor:
    """Exact float64 brute force for the query rows ``qidx`` (self excluded): (len(qidx), k)."""
    n, d = data.shape
    dev = data.device
    out = torch.empty((qidx.shape[0], k), dtype=torch.int64, device=dev)
    if qidx.numel() == 0:
        return out
    mean = _chunked_mean(data)
    step_b = max(1, _ROW_BUDGET // max(1, d))
    sq = torch.empty(n, dtype=torch.float64, device=dev)
    for s in range(0, n, step_b):
        blk = data[s : s + step_b].to(torch.float64) - mean
        sq[s : s + step_b] = (blk * blk).sum(1)
    rows_per = max(1, min(-(-qidx.shape[0] // 8), _BRUTE_BUDGET // max(1, n)))

    def task(s: int) -> None:
        qi = qidx[s : s + rows_per]
        q = data.index_select(0, qi).to(torch.float64) - mean
        dist = torch.empty((qi.shape[0], n), dtype=torch.float64, device=dev)
        for t in range(0, n, step_b):
            blk = data[t : t + step_b].to(torch.float64) - mean
            torch.addmm(sq[t : t + step_b], q, blk.T, alpha=-2.0, out=dist[:, t : t + step_b])
        dist += (q * q).sum(1, keepdim=True)
        dist[torch.arange(qi.shape[0], device=dev), qi] = math.inf
        out[s : s + rows_per] = torch.topk(dist, k, dim=1, largest=False, sorted=True).indices

    run(task, list(range(0, qidx.shape[0], rows_per)))
    return out


def _refine(
    data: torch.Tensor,
    k: int,
    qidx: torch.Tensor,
    best_v: torch.Tensor,
    best_g: torch.Tensor,
    c: int,
    w: int,
    eps: torch.Tensor,
    run: Callable[[Callable[[Any], None], list[Any]], None],
    certify: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact float64 distances to the members of the selected groups.

    Returns the k nearest candidates per query and the positions (into ``qidx``) of the rows
    that could not be certified exact (or, with ``certify=False``, found fewer than k).
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
        if not certify:  # approximate: redo only rows that found fewer than k candidates
            short = torch.isinf(top.values[:, k - 1])
            if dev.type != "cpu" or bool(short.any()):
                failed.append(torch.nonzero(short).squeeze(1) + s)
            return
        # certification: every row outside the selected groups is at distance >= bound
        bound = (best_v[s:e, kp - 1].to(torch.float64) - eps[s:e]).clamp_min(0.0)
        bad = ~(top.values[:, k - 1] <= bound)
        if dev.type != "cpu" or bool(bad.any()):
            failed.append(torch.nonzero(bad).squeeze(1) + s)

    run(task, list(range(0, nq, rows_per)))
    rows = torch.cat(failed) if failed else torch.empty(0, dtype=torch.int64, device=dev)
    return out, rows


def _exact(
    data: torch.Tensor, k: int, query: torch.Tensor | None, tile: int | None
) -> torch.Tensor:
    n = data.shape[0]
    qidx = torch.arange(n, device=data.device) if query is None else query
    kp = k + 2
    c, w, _ = _tile_sizes(n, data.device, tile)
    n_groups = -(-n // c) * (c // w)
    with _workers(data.device) as run:
        if n <= 2 * c or kp * w * 4 >= n or kp >= n_groups:
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


def _nearest_centroid(x: torch.Tensor, cent: torch.Tensor) -> torch.Tensor:
    """Index of the nearest row of ``cent`` for each row of ``x`` (float32, chunked)."""
    cn = (cent * cent).sum(1)
    out = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    step = max(1, _BRUTE_BUDGET // max(1, cent.shape[0]))
    for s in range(0, x.shape[0], step):
        blk = torch.addmm(cn, x[s : s + step], cent.T, alpha=-2.0)
        out[s : s + step] = blk.argmin(1)
    return out


def _block_knn(
    data: torch.Tensor, xc: torch.Tensor, qrows: torch.Tensor, crows: torch.Tensor, k: int
) -> torch.Tensor:
    """k nearest rows of ``crows`` (self excluded) for each row of ``qrows``: group-minimum
    filter in float32 on the centred rows ``xc``, then float64 distances on ``data``."""
    dev = data.device
    w = 16
    kp = k + 2
    q = xc.index_select(0, qrows)
    m = crows.shape[0]
    m_pad = -(-m // w) * w
    cand = torch.zeros((m_pad, xc.shape[1]), dtype=xc.dtype, device=dev)
    cand[:m] = xc.index_select(0, crows)
    cn = (cand * cand).sum(1)
    cn[m:] = _BIG
    dist = torch.addmm(cn, q, cand.T, alpha=-2.0)  # + |q|^2 omitted: constant per row
    groups = m_pad // w
    if groups > kp:
        gmin = dist.view(q.shape[0], w, groups).amin(1)
        sel = torch.topk(gmin, kp, dim=1, largest=False, sorted=False).indices
        pos = (sel.unsqueeze(2) + torch.arange(w, device=dev) * groups).reshape(q.shape[0], -1)
    else:
        pos = torch.arange(m_pad, device=dev).expand(q.shape[0], m_pad)
    valid = pos < m
    idx = crows[pos.clamp(max=m - 1)]
    valid &= idx != qrows.unsqueeze(1)
    diff = data.index_select(0, idx.reshape(-1)).reshape(*idx.shape, -1).to(torch.float64)
    diff = diff - data.index_select(0, qrows).to(torch.float64).unsqueeze(1)
    d2 = (diff * diff).sum(2).masked_fill_(~valid, math.inf)
    top = torch.topk(d2, min(k, d2.shape[1]), dim=1, largest=False, sorted=True)
    out = torch.gather(idx, 1, top.indices)
    return out.masked_fill_(torch.isinf(top.values), -1)


def _approx(
    data: torch.Tensor,
    k: int,
    query: torch.Tensor | None,
    generator: torch.Generator | None,
    n_lists: int | None,
    n_probe: int | None,
) -> torch.Tensor:
    """IVF search (faiss ``IndexIVFFlat`` semantics, batched per list).

    k-means puts every row in one of ``n_lists`` lists. Each query searches the rows of the
    ``n_probe`` lists whose centroids are nearest to it; queries of one list are processed
    together against the lists they probe most often (at most ``2 * n_probe`` lists, always
    including their own), by one GEMM and a group-minimum selection.
    """
    n = data.shape[0]
    dev = data.device
    if (n_lists is None and n <= 4096) or (n_lists is not None and n < 4 * n_lists):
        return _exact(data, k, query, None)
    n_lists = max(2, round(math.sqrt(n))) if n_lists is None else n_lists
    n_probe = max(1, min(n_lists, 4 if n_probe is None else n_probe))
    qidx = torch.arange(n, device=dev) if query is None else query
    out = torch.empty((qidx.shape[0], k), dtype=torch.int64, device=dev)
    with _workers(dev) as run:
        xc = _centred_rows(data, None, _chunked_mean(data))
        sample = xc[torch.randperm(n, device=dev, generator=generator)[: min(n, 64 * n_lists)]]
        cent = sample[:n_lists].clone()
        for _ in range(10):
            a = _nearest_centroid(sample, cent)
            sums = torch.zeros_like(cent).index_add_(0, a, sample)
            counts = torch.bincount(a, minlength=n_lists).to(cent.dtype).unsqueeze(1)
            cent = torch.where(counts > 0, sums / counts.clamp_min(1.0), cent)
        cn = (cent * cent).sum(1)
        assign = _nearest_centroid(xc, cent)
        order = torch.argsort(assign, stable=True)
        sizes = torch.bincount(assign, minlength=n_lists)
        starts = (torch.cumsum(sizes, 0) - sizes).tolist()
        sizes_l = sizes.tolist()
        # the queries of each list, and each query's probed lists
        q_assign = assign.index_select(0, qidx)
        q_order = torch.argsort(q_assign, stable=True)
        q_sizes = torch.bincount(q_assign, minlength=n_lists).tolist()
        q_starts = [0]
        for size in q_sizes[:-1]:
            q_starts.append(q_starts[-1] + size)
        failed: list[torch.Tensor] = []

        def task(lst: int) -> None:
            if q_sizes[lst] == 0:
                return
            pos_all = q_order[q_starts[lst] : q_starts[lst] + q_sizes[lst]]
            rows_all = qidx.index_select(0, pos_all)
            near = torch.addmm(cn, xc.index_select(0, rows_all), cent.T, alpha=-2.0)
            probes_all = torch.topk(near, n_probe, dim=1, largest=False).indices
            # lists can be large (k-means on clustered data is unbalanced): bound the block of
            # distances by taking the list's queries in slices
            widest = 2 * n_probe * max(sizes_l)
            step = max(1, min(q_sizes[lst], _BRUTE_BUDGET // max(1, widest)))
            for s in range(0, q_sizes[lst], step):
                pos, rows = pos_all[s : s + step], rows_all[s : s + step]
                # the lists these queries probe most often, at most 2 * n_probe of them
                votes = torch.bincount(probes_all[s : s + step].reshape(-1), minlength=n_lists)
                top = torch.topk(votes, min(n_lists, 2 * n_probe)).indices
                probed = top[votes.index_select(0, top) > 0].tolist()
                crows = torch.cat([order[starts[p] : starts[p] + sizes_l[p]] for p in probed])
                found = _block_knn(data, xc, rows, crows, k)
                if found.shape[1] < k or bool((found < 0).any()):
                    failed.append(pos)
                    continue
                out[pos] = found

        run(task, list(range(n_lists)))
        if failed:
            pos = torch.cat(failed)
            out[pos] = _brute(data, k, qidx.index_select(0, pos), run)
    return out


def kneighbors(
    data: torch.Tensor,
    k: int,
    *,
    query: torch.Tensor | None = None,
    method: str = "exact",
    generator: torch.Generator | None = None,
    tile: int | None = None,
    n_lists: int | None = None,
    n_probe: int | None = None,
) -> torch.Tensor:
    """Indices ``(n_query, k)`` of the ``k`` nearest other rows of ``data`` for each query row.

    Args:
        data: ``(N, D)`` floating tensor; neighbours are searched among its rows.
        k: neighbours per query; ``1 <= k <= N - 1``.
        query: int64 indices ``(Q,)`` of the query rows in ``data``; ``None``: every row.
        method: ``"exact"``, ``"approx"`` or ``"faiss"`` (see the module docstring).
        generator: draws of the ``"approx"`` k-means; the other methods draw nothing.
        tile: rows per tile of the exact filter (default 1024 on CPU, 8192 on CUDA).
        n_lists: IVF lists for ``"approx"`` (default ``round(sqrt(N))``).
        n_probe: lists searched per query for ``"approx"`` (default 4).

    Returns:
        int64 ``(Q, k)`` on ``data``'s device, nearest first; a query is never its own neighbour.
    """
    if method not in METHODS:
        raise ValueError(f"kneighbors: method must be one of {METHODS}; got {method!r}")
    with torch.no_grad():
        data = data.detach()
        if method == "exact":
            found = _exact(data, k, query, tile)
        elif method == "approx":
            found = _approx(data, k, query, generator, n_lists, n_probe)
        else:
            found = _faiss(data, k, query)
    if data.device.type == "cpu":
        _release_freed_memory()
    return found


def _release_freed_memory() -> None:
    """Hand the search's freed temporaries back to the OS (glibc ``malloc_trim``).

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


def _faiss(data: torch.Tensor, k: int, query: torch.Tensor | None) -> torch.Tensor:
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "knn='faiss' needs the faiss package (pip install faiss-cpu); "
            "use knn='exact' (torch) otherwise"
        ) from err
    import numpy as np

    xb = np.ascontiguousarray(data.to(torch.float32).cpu().numpy())
    index: Any = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    if query is None:
        q_np = np.arange(xb.shape[0])
    else:
        q_np = query.cpu().numpy()
    _, found = index.search(xb[q_np], k + 1)
    found_t = torch.from_numpy(found.astype(np.int64))
    q_t = torch.from_numpy(q_np.astype(np.int64)).unsqueeze(1)
    # drop the query itself (wherever it appears; if absent, drop the last)
    is_self = found_t == q_t
    no_self = ~is_self.any(1)
    is_self[no_self, -1] = True
    keep = found_t[~is_self].reshape(found_t.shape[0], k)
    return keep.to(data.device)
