"""k-nearest-neighbour search for the over-samplers (squared Euclidean distance).

Three methods, all returning, for each query row of ``data``, the indices of its ``k`` nearest
*other* rows of ``data`` (the query itself excluded by index), sorted by increasing distance:

``"exact"`` (default): the certified exact search of :func:`posneg._knn.knn_l2` on the input's
    device (a float32 group-minimum filter through matrix multiplications, never more than one
    ``tile x tile`` block of distances, then float64 refinement and a certificate; rows that
    cannot be certified are searched again, finally by float64 brute force). It matches
    ``sklearn.neighbors.NearestNeighbors`` (float64) on data without distance ties; with ties,
    any tied choice is valid.

``"approx"``: faiss ``IndexIVFFlat`` (k-means with ``n_lists`` centroids, faiss' own fixed seed;
    each query searches the lists of its ``n_probe`` nearest centroids). Recall below 1 and
    data-dependent: see ``benchmarks/knn.py``. Data sets of at most 4096 rows (with ``n_lists``
    unset) or fewer than ``4 * n_lists`` rows use ``"exact"``. Needs faiss
    (``pip install 'posneg[faiss]'``); CPU only (a CUDA input is copied to the CPU and back).

``"faiss"``: faiss ``IndexFlatL2`` (exact up to float32 rounding, on CPU; a CUDA input is copied
    to the CPU and the indices back). Needs faiss.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from posneg import _knn

Method = Literal["exact", "approx", "faiss"]
METHODS: tuple[str, ...] = ("exact", "approx", "faiss")

#: ``"approx"`` with ``n_lists`` unset searches exactly up to this many rows.
_APPROX_MIN_ROWS = 4096
#: Inputs (N x D elements) from which a CPU search hands its freed temporaries back to the OS:
#: a small search frees little, and ``malloc_trim`` costs milliseconds whatever it frees.
_TRIM_MIN_ELEMENTS = 1 << 20
#: Default ``n_probe`` of ``"approx"``.
_DEFAULT_N_PROBE = 4


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
        generator: accepted for every method and drawn by none (faiss' k-means has its own
            fixed seed), so the caller's random stream is the same whatever the method.
        tile: rows per tile of the exact filter (default 1024 on CPU, 8192 on CUDA).
        n_lists: IVF lists for ``"approx"`` (default ``round(sqrt(N))``).
        n_probe: lists searched per query for ``"approx"`` (default 4).

    Returns:
        int64 ``(Q, k)`` on ``data``'s device, nearest first; a query is never its own neighbour.

    Raises:
        ValueError: unknown ``method``.
        ImportError: ``"approx"`` or ``"faiss"`` without faiss installed.
    """
    del generator  # nothing is drawn (see Args)
    if method not in METHODS:
        raise ValueError(f"kneighbors: method must be one of {METHODS}; got {method!r}")
    with torch.no_grad():
        data = data.detach()
        n = data.shape[0]
        small = (n_lists is None and n <= _APPROX_MIN_ROWS) or (
            n_lists is not None and n < 4 * n_lists
        )
        if method == "exact" or (method == "approx" and small):
            found = _knn.knn_l2(data, k, query=query, tile=tile)
        elif method == "approx":
            lists = max(2, round(math.sqrt(n))) if n_lists is None else n_lists
            probe = _DEFAULT_N_PROBE if n_probe is None else n_probe
            found = _knn.knn_faiss(
                data, k, query=query, n_lists=lists, n_probe=probe, what="knn='approx'"
            )
        else:
            found = _knn.knn_faiss(data, k, query=query, what="knn='faiss'")
    if data.device.type == "cpu" and data.numel() >= _TRIM_MIN_ELEMENTS:
        _knn.release_freed_memory()
    return found
