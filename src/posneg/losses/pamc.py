"""PamC: proxy-approximated meta-node contrastive loss, and the Ncontrast loss it approximates.

Kulatilleke, Portmann, Chandra. *Efficient block contrastive learning via parameter-free
meta-node approximation.* arXiv 2209.14067, 2022. Official code: ``gayanku/PAMC`` (commit
f33a8b347b23945194f1425227243fe6b8745ffc), ``train.py``: ``NcontrastCC``, ``NcontrastCCSP``,
``get_feature_dis``, ``get_A_r_flex[SP]``; the baseline ``Ncontrast`` comes from
``gayanku/SCGC`` (commit 886ec27a599ab0464e149e1666a02fea471bb7ed) ``train.py``, itself from
Graph-MLP (Hu et al., arXiv 2106.04051).

Both objectives pull each node towards its graph neighbours (weights ``A_hat_ij`` of an
"influence" adjacency, :func:`influence_adjacency` of a row-normalised k-NN graph,
:func:`knn_graph`). Ncontrast pushes every node from all N nodes (O(N^2 d), tiled here so that
memory stays O(N * chunk)); PamC replaces the N^2 node-pair negatives by the k'^2 pairs of
*meta-nodes* (cluster sums of the embeddings under a hard assignment), O(k'^2 d + |E| d).
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Literal, cast

import torch
from torch import nn

from posneg import _checks
from posneg._tiling import map_rows, reduce_loss
from posneg._types import Reduction

__all__ = [
    "META_NODES",
    "NcontrastLoss",
    "PAMCLoss",
    "influence_adjacency",
    "knn_graph",
    "meta_nodes",
    "ncontrast",
    "pamc",
]

CITATION = """
@article{kulatilleke2022pamc,
  title   = {Efficient block contrastive learning via parameter-free meta-node approximation},
  author  = {Kulatilleke, Gayan K. and Portmann, Marius and Chandra, Shekhar S.},
  journal = {arXiv preprint arXiv:2209.14067},
  year    = {2022}
}
"""

MetaNodes = Literal["nonempty", "max_id"]
#: How meta-nodes are formed from the cluster ids: ``"nonempty"`` (default) one per non-empty
#: cluster; ``"max_id"`` the official ``F.one_hot`` without ``num_classes``: ids 0..max.
META_NODES: tuple[str, ...] = ("nonempty", "max_id")

#: Epsilons of the official code: inside the log of Ncontrast's ratio (SCGC) and of PamC's sums.
NCONTRAST_EPS = 1e-8
PAMC_EPS = 1e-10
#: Guard on row norms: a zero row has cosine 0 with everything (the official code gives NaN).
_NORM_EPS = 1e-12


# ---------------------------------------------------------------------------------------------
# graphs
# ---------------------------------------------------------------------------------------------


def _check_adjacency(fn: str, adjacency: object, n: int, device: torch.device) -> torch.Tensor:
    a = _checks.check_tensor(fn, "adjacency", adjacency)
    if a.layout not in (torch.strided, torch.sparse_coo, torch.sparse_csr):
        raise TypeError(f"{fn}: adjacency must be a dense or sparse COO/CSR tensor; got {a.layout}")
    if not a.dtype.is_floating_point:
        raise TypeError(f"{fn}: adjacency must be a floating-point tensor; got {a.dtype}")
    if a.dim() != 2 or tuple(a.shape) != (n, n):
        raise ValueError(f"{fn}: adjacency must have shape ({n}, {n}); got {tuple(a.shape)}")
    if a.device != device:
        raise ValueError(
            f"{fn}: adjacency is on {a.device} but z is on {device}; move them to one device"
        )
    return a


def _edges(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, col, weight) of the nonzero entries of a dense or sparse (N, N) adjacency."""
    if a.layout == torch.sparse_csr:
        a = a.to_sparse_coo()
    if a.layout == torch.sparse_coo:
        a = a.coalesce()
        idx = a.indices()
        return idx[0], idx[1], a.values()
    row, col = a.nonzero(as_tuple=True)
    return row, col, a[row, col]


def influence_adjacency(
    adjacency: torch.Tensor, order: int = 1, *, cumulative: bool = True
) -> torch.Tensor:
    """The r-hop "influence" adjacency ``A_hat = sum_{t=1..r} A^t`` (or ``A^r``).

    ``get_A_r_flex`` / ``get_A_r_flexSP`` of gayanku/PAMC ``train.py``: with ``--influence``
    (``cumulative=True``, the setting of every README command) the powers are summed; without it
    only the r-th power is kept.

    Args:
        adjacency: (N, N) dense or sparse COO tensor (typically :func:`knn_graph`).
        order: r >= 1.
        cumulative: sum the powers 1..r (True) or return ``A^r`` (False).

    Returns:
        (N, N) tensor of the input's layout (sparse COO stays sparse, via ``torch.sparse.mm``).

    Raises:
        TypeError: non-tensor or non-floating adjacency, non-int order, non-bool cumulative.
        ValueError: non-square adjacency, order < 1.

    Example:
        >>> import torch
        >>> a = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
        >>> influence_adjacency(a, 2)
        tensor([[1., 1.],
                [1., 1.]])
    """
    fn = "influence_adjacency"
    a = _checks.check_tensor(fn, "adjacency", adjacency)
    r = _checks.check_int(fn, "order", order, min_value=1)
    _checks.check_bool(fn, "cumulative", cumulative)
    if a.dim() != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{fn}: adjacency must be square (N, N); got {tuple(a.shape)}")
    a = _check_adjacency(fn, a, a.shape[0], a.device)
    if a.layout == torch.sparse_csr:
        a = a.to_sparse_coo()
    sparse = a.layout == torch.sparse_coo
    power = a
    total = a
    for _ in range(r - 1):
        with warnings.catch_warnings():  # torch warns that its internal CSR product is "beta"
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            power = torch.sparse.mm(power, a) if sparse else power @ a
        total = total + power if cumulative else power
    return total.coalesce() if sparse else total


def knn_graph(x: torch.Tensor, k: int = 3, *, sparse: bool = True) -> torch.Tensor:
    """Row-normalised symmetric k-NN graph ``rownorm(max(A, A^T) + I)`` of the rows of ``x``.

    The graph of SDCN/SCGC/PAMC (``load_graph`` in ``utils.py``): each row's k nearest other
    rows by Euclidean distance (exact, :func:`posneg._knn.knn_l2`; the released graphs were
    built with the heat kernel ``exp(-||x_i - x_j||^2 / 2)``, whose top-k is the same set),
    symmetrised as ``A + A^T o [A^T > A] - A o [A^T > A] = max(A, A^T)``, self-loops added and
    every row divided by its sum.

    Args:
        x: (N, D) floating features, N > k.
        k: neighbours per node (3 in the paper; 5 for HHAR).
        sparse: return a coalesced sparse COO tensor (default) or a dense one.

    Returns:
        (N, N) tensor in ``x``'s dtype (float32 for half inputs) on ``x``'s device.

    Raises:
        TypeError: non-floating ``x``, non-int ``k``, non-bool ``sparse``.
        ValueError: ``x`` not (N, D), ``k < 1`` or ``k >= N``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0], [5.0], [6.0]])
        >>> knn_graph(x, 1, sparse=False)
        tensor([[0.5000, 0.5000, 0.0000, 0.0000],
                [0.5000, 0.5000, 0.0000, 0.0000],
                [0.0000, 0.0000, 0.5000, 0.5000],
                [0.0000, 0.0000, 0.5000, 0.5000]])
    """
    from posneg._knn import knn_l2

    fn = "knn_graph"
    x = _checks.check_embeddings(fn, "x", x, min_rows=2)
    kk = _checks.check_int(fn, "k", k, min_value=1)
    _checks.check_bool(fn, "sparse", sparse)
    n = x.shape[0]
    if kk >= n:
        raise ValueError(f"{fn}: k must be < N = {n}; got {kk}")
    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    nbrs = knn_l2(x.detach().to(dtype), kk)  # (N, k) int64
    rows = torch.arange(n, device=x.device).repeat_interleave(kk)
    cols = nbrs.reshape(-1)
    # max(A, A^T) for a 0/1 matrix: the union of both directions, then self-loops
    diag = torch.arange(n, device=x.device)
    r = torch.cat([rows, cols, diag])
    c = torch.cat([cols, rows, diag])
    key = torch.unique(r * n + c)
    r, c = key // n, key % n
    deg = torch.bincount(r, minlength=n).to(dtype)
    vals = 1.0 / deg[r]
    idx = torch.stack([r, c])
    a = torch.sparse_coo_tensor(idx, vals, (n, n), check_invariants=False).coalesce()
    return a if sparse else a.to_dense()


# ---------------------------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------------------------


def _unit(z: torch.Tensor) -> torch.Tensor:
    """Rows divided by their norm; zero rows stay zero (cosine 0 instead of the code's NaN)."""
    return z / z.norm(dim=1, keepdim=True).clamp_min(_NORM_EPS)


def _positives(
    zn: torch.Tensor, row: torch.Tensor, col: torch.Tensor, w: torch.Tensor, tau: float
) -> torch.Tensor:
    """``pos_i = sum_j A_ij exp(tau cos_ij)`` over the edges (cos of a self-edge is 0): (N,)."""
    cos = (zn.index_select(0, row) * zn.index_select(0, col)).sum(dim=1)
    cos = torch.where(row == col, torch.zeros_like(cos), cos)
    out = zn.new_zeros(zn.shape[0])
    return out.index_add(0, row, w.to(zn.dtype) * torch.exp(tau * cos))


def _denominator_block(start: int, stop: int, zn: torch.Tensor, *, tau: float) -> torch.Tensor:
    """``sum_j exp(tau cos_ij)`` for rows start:stop, with ``cos_ii = 0`` (the masked diagonal)."""
    cos = zn[start:stop] @ zn.T
    idx = torch.arange(start, stop, device=zn.device)
    cos = cos.scatter(1, idx.unsqueeze(1), 0.0)
    return torch.exp(tau * cos).sum(dim=1)


def _denominators(zn: torch.Tensor, tau: float, chunk_size: int | None) -> torch.Tensor:
    n = zn.shape[0]
    return map_rows(partial(_denominator_block, tau=tau), n, n, zn, chunk_size=chunk_size)


def _check_z(fn: str, z: object) -> torch.Tensor:
    return _checks.check_embeddings(fn, "z", z, min_rows=2)


def _check_tau(fn: str, tau: object) -> float:
    return _checks.check_positive(fn, "tau", tau)


# ---------------------------------------------------------------------------------------------
# Ncontrast (Graph-MLP / SCGC): the O(N^2) baseline
# ---------------------------------------------------------------------------------------------


def ncontrast(
    z: torch.Tensor,
    adjacency: torch.Tensor,
    *,
    tau: float = 1.0,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Neighbourhood contrastive loss (Ncontrast) of Graph-MLP, as used by SCGC.

    Hu et al., *Graph-MLP*, arXiv 2106.04051; ``Ncontrast`` + ``get_feature_dis`` in
    gayanku/SCGC ``train.py``. With ``cos_ij`` the cosine of ``z_i`` and ``z_j`` (``cos_ii``
    set to 0, as ``get_feature_dis`` masks the diagonal) and ``A = adjacency``::

        L_i = -log( sum_j A_ij exp(tau cos_ij) / sum_j exp(tau cos_ij) + 1e-8 )

    ``tau`` *multiplies* the cosine (an inverse temperature). The denominator runs over all N
    nodes including i itself (its term is ``exp(0) = 1``). Computed per row block
    (:func:`posneg._tiling.map_rows`): memory O(N * chunk), never the N x N matrix; the
    numerator reads only the nonzero entries of ``adjacency``. A zero row of ``z`` has cosine 0
    with every node (the official code divides by its zero norm and gives NaN).

    Args:
        z: (N, D) node embeddings, N >= 2.
        adjacency: (N, N) dense or sparse non-negative weights (:func:`knn_graph`,
            :func:`influence_adjacency`); not differentiated when sparse.
        tau: inverse temperature > 0 (0.25-1.5 in the README's settings).
        reduction: "mean" (the official) | "sum" | "none".
        chunk_size: rows per block (``None``: automatic, bounded memory).

    Returns:
        "mean"/"sum": a scalar; "none": (N,) per-node losses. Float32 for half inputs.

    Raises:
        TypeError: non-tensor or non-floating inputs, adjacency of an unsupported layout.
        ValueError: wrong shapes, N < 2, mismatched devices, tau <= 0, bad reduction/chunk_size.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(20, 4, generator=g)
        >>> ncontrast(z, knn_graph(z, 3), tau=0.5).shape
        torch.Size([])
    """
    fn = "ncontrast"
    z = _check_z(fn, z)
    t = _check_tau(fn, tau)
    red = _checks.check_reduction(fn, reduction)
    chunk = _checks.check_chunk_size(fn, chunk_size)
    a = _check_adjacency(fn, adjacency, z.shape[0], z.device)
    zn = _unit(z.float() if z.dtype in (torch.float16, torch.bfloat16) else z)
    row, col, w = _edges(a)
    pos = _positives(zn, row, col, w, t)
    den = _denominators(zn, t, chunk)
    per_node = -torch.log(pos / den + NCONTRAST_EPS)
    return reduce_loss(per_node, red)


# ---------------------------------------------------------------------------------------------
# PamC
# ---------------------------------------------------------------------------------------------


def _cluster_ids(fn: str, assignments: object, n: int, device: torch.device) -> torch.Tensor:
    """Hard cluster ids (N,) from integer ids or from (N, K) soft assignments (argmax, detached)."""
    a = _checks.check_tensor(fn, "assignments", assignments)
    if a.dtype.is_floating_point:
        if a.dim() != 2 or a.shape[0] != n or a.shape[1] < 1:
            raise ValueError(
                f"{fn}: floating assignments must have shape ({n}, K); got {tuple(a.shape)}"
            )
        if a.device != device:
            raise ValueError(
                f"{fn}: assignments is on {a.device} but z is on {device}; move them to one device"
            )
        return a.detach().argmax(dim=1)
    ids = _checks.check_labels(fn, "assignments", a, n, device).long()
    if bool((ids < 0).any()):
        raise ValueError(f"{fn}: assignments must be cluster ids >= 0; got min {int(ids.min())}")
    return ids


def meta_nodes(
    z: torch.Tensor, assignments: torch.Tensor, *, mode: MetaNodes = "nonempty"
) -> torch.Tensor:
    """Meta-nodes ``M = onehot(c)^T z``: the **sum** of the embeddings of each cluster.

    ``cc = sum(z.unsqueeze(1) * F.one_hot(q.detach().argmax(1)).unsqueeze(2), 0)`` in
    gayanku/PAMC ``train.py``. ``mode="max_id"`` keeps the official ``k' = max id + 1`` rows
    (an empty cluster below the largest id gives a zero row; empty clusters above it vanish);
    ``mode="nonempty"`` keeps only the clusters that have members, in increasing id order.

    Args:
        z: (N, D) embeddings.
        assignments: (N,) integer cluster ids, or (N, K) floating soft assignments q (the hard
            argmax of the detached q is used, so no gradient reaches q or the centres).
        mode: "nonempty" | "max_id".

    Returns:
        (k', D) meta-nodes in ``z``'s dtype; differentiable with respect to ``z``.

    Example:
        >>> import torch
        >>> meta_nodes(torch.eye(3), torch.tensor([0, 2, 0]), mode="max_id")
        tensor([[1., 0., 1.],
                [0., 0., 0.],
                [0., 1., 0.]])
    """
    fn = "meta_nodes"
    z = _checks.check_embeddings(fn, "z", z)
    m = _checks.check_choice(fn, "mode", mode, META_NODES)
    ids = _cluster_ids(fn, assignments, z.shape[0], z.device)
    return _meta_nodes(z, ids, m)


def _meta_nodes(z: torch.Tensor, ids: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "nonempty":
        _, ids = torch.unique(ids, return_inverse=True)
    k = int(ids.max()) + 1
    return z.new_zeros(k, z.shape[1]).index_add(0, ids, z)


def pamc(
    z: torch.Tensor,
    adjacency: torch.Tensor,
    assignments: torch.Tensor,
    *,
    tau: float = 1.0,
    meta: MetaNodes = "nonempty",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Proxy-approximated meta-node contrastive loss (PamC): Ncontrast's negatives via clusters.

    Kulatilleke, Portmann, Chandra. *Efficient block contrastive learning via parameter-free
    meta-node approximation.* arXiv 2209.14067, 2022 (``NcontrastCC`` / ``NcontrastCCSP`` in
    gayanku/PAMC ``train.py``). With hard cluster ids ``c_i`` (argmax of the detached soft
    assignment q), meta-nodes ``M_a = sum_{i: c_i = a} z_i`` (:func:`meta_nodes`), ``S_ab`` the
    cosine of ``M_a`` and ``M_b`` with ``S_aa = 0``, and ``cos_ij`` that of ``z_i``, ``z_j``
    with ``cos_ii = 0``::

        pos_i = sum_j A_ij exp(tau cos_ij)            (over the edges of A; N terms)
        neg_a = sum_b exp(tau S_ab)                   (over k' meta-nodes, self term exp(0) = 1)
        L = -(1/N) sum_i log(pos_i + 1e-10) + (1/k') sum_a log(neg_a + 1e-10)

    The two terms average over different sets (N nodes, k' meta-nodes), as in the code, so the
    loss is not a per-node ratio and has no "none" reduction. With every node its own cluster
    (k' = N) it equals :func:`ncontrast` up to the 1e-8/1e-10 epsilons. Gradients reach the
    meta-nodes through z (the sums), never through the assignment: the cluster centres get no
    gradient from this loss. Cost O(|E| d + k'^2 d) instead of O(N^2 d).

    Deliberate differences from the code: ``meta="nonempty"`` (default) drops empty clusters,
    whereas the official ``F.one_hot`` without ``num_classes`` keeps ids 0..max
    (``meta="max_id"``), so an empty top cluster silently vanishes while an empty cluster below
    it becomes a zero meta-node whose cosines are NaN there. Zero rows (of z or M) have cosine 0
    here. With no empty cluster, or only empty ones above the largest id, both modes equal the
    code.

    Args:
        z: (N, D) node embeddings, N >= 2.
        adjacency: (N, N) dense or sparse non-negative weights (:func:`knn_graph`,
            :func:`influence_adjacency`).
        assignments: (N,) integer cluster ids or (N, K) floating soft assignments q.
        tau: inverse temperature > 0 (multiplies the cosine).
        meta: "nonempty" | "max_id" (see above).
        chunk_size: rows per block of the meta-node term (``None``: automatic); only matters
            when k' is large.

    Returns:
        A scalar (float32 for half inputs).

    Raises:
        TypeError: non-tensor or non-floating ``z``/``adjacency``, float/int mix-ups.
        ValueError: wrong shapes, N < 2, negative ids, mismatched devices, tau <= 0, bad meta.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(30, 4, generator=g)
        >>> q = torch.softmax(torch.randn(30, 3, generator=g), dim=1)
        >>> pamc(z, knn_graph(z, 3), q, tau=0.5).shape
        torch.Size([])
    """
    fn = "pamc"
    z = _check_z(fn, z)
    t = _check_tau(fn, tau)
    m = _checks.check_choice(fn, "meta", meta, META_NODES)
    chunk = _checks.check_chunk_size(fn, chunk_size)
    a = _check_adjacency(fn, adjacency, z.shape[0], z.device)
    ids = _cluster_ids(fn, assignments, z.shape[0], z.device)
    zc = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    zn = _unit(zc)
    row, col, w = _edges(a)
    pos = _positives(zn, row, col, w, t)
    mn = _unit(_meta_nodes(zc, ids, m))
    neg = _denominators(mn, t, chunk)
    return -torch.log(pos + PAMC_EPS).mean() + torch.log(neg + PAMC_EPS).mean()


# ---------------------------------------------------------------------------------------------
# modules
# ---------------------------------------------------------------------------------------------


class NcontrastLoss(nn.Module):
    """Module form of :func:`ncontrast` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> z = torch.randn(10, 4)
        >>> NcontrastLoss(tau=0.5)(z, knn_graph(z, 2)).shape
        torch.Size([])
    """

    def __init__(
        self, *, tau: float = 1.0, reduction: Reduction = "mean", chunk_size: int | None = None
    ) -> None:
        super().__init__()
        fn = "NcontrastLoss"
        self.tau = _check_tau(fn, tau)
        self.reduction: Reduction = _checks.check_reduction(fn, reduction)
        self.chunk_size = _checks.check_chunk_size(fn, chunk_size)

    def forward(self, z: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """Loss of embeddings ``z`` (N, D) over the graph ``adjacency`` (N, N)."""
        return ncontrast(
            z, adjacency, tau=self.tau, reduction=self.reduction, chunk_size=self.chunk_size
        )

    def extra_repr(self) -> str:
        return f"tau={self.tau}, reduction={self.reduction!r}, chunk_size={self.chunk_size}"


class PAMCLoss(nn.Module):
    """Module form of :func:`pamc` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> z = torch.randn(10, 4)
        >>> ids = torch.arange(10) % 3
        >>> PAMCLoss(tau=0.5)(z, knn_graph(z, 2), ids).shape
        torch.Size([])
    """

    def __init__(
        self, *, tau: float = 1.0, meta: MetaNodes = "nonempty", chunk_size: int | None = None
    ) -> None:
        super().__init__()
        fn = "PAMCLoss"
        self.tau = _check_tau(fn, tau)
        self.meta = cast(MetaNodes, _checks.check_choice(fn, "meta", meta, META_NODES))
        self.chunk_size = _checks.check_chunk_size(fn, chunk_size)

    def forward(
        self, z: torch.Tensor, adjacency: torch.Tensor, assignments: torch.Tensor
    ) -> torch.Tensor:
        """Loss of ``z`` (N, D) over ``adjacency`` (N, N) with ``assignments`` (N,) or (N, K)."""
        return pamc(
            z, adjacency, assignments, tau=self.tau, meta=self.meta, chunk_size=self.chunk_size
        )

    def extra_repr(self) -> str:
        return f"tau={self.tau}, meta={self.meta!r}, chunk_size={self.chunk_size}"
