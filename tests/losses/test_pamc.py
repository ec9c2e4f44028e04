"""PamC and Ncontrast: formula loops, the official code transcribed, the card's properties, errors.

Official code read for the transcriptions below:
- gayanku/PAMC ``train.py`` at f33a8b347b23945194f1425227243fe6b8745ffc: ``NcontrastCC``,
  ``NcontrastCCSP``, ``get_feature_dis``, ``get_A_r_flex``, ``get_A_r_flexSP`` and the meta-node
  line ``cc = torch.sum(z.unsqueeze(1) * F.one_hot(q.detach().argmax(1)).unsqueeze(2), dim=0)``;
  ``utils.py``: ``load_graph`` (symmetrise, + I, ``normalize`` = row-normalise).
- gayanku/SCGC ``train.py`` at 886ec27a599ab0464e149e1666a02fea471bb7ed: ``Ncontrast``.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from posneg.losses.pamc import (
    NcontrastLoss,
    PAMCLoss,
    influence_adjacency,
    knn_graph,
    meta_nodes,
    ncontrast,
    pamc,
)

F64 = torch.float64


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _graph(n: int, seed: int = 0, order: int = 1) -> torch.Tensor:
    x = _randn(n, 3, seed=seed + 100)
    return influence_adjacency(knn_graph(x, 3, sparse=False), order)


# ---------------------------------------------------------------------------------------------
# the official code, transcribed (torch ops as in the released files)
# ---------------------------------------------------------------------------------------------


def official_get_feature_dis(x: torch.Tensor) -> torch.Tensor:
    x_dis = x @ x.T
    mask = torch.eye(x_dis.shape[0], dtype=x.dtype)
    x_sum = torch.sqrt(torch.sum(x**2, 1).reshape(-1, 1)).reshape(-1, 1)
    x_sum = x_sum @ x_sum.T
    x_dis = x_dis * (x_sum ** (-1))
    return (1 - mask) * x_dis


def official_ncontrast(x_dis: torch.Tensor, adj_label: torch.Tensor, tau: float) -> torch.Tensor:
    x_dis = torch.exp(tau * x_dis)
    x_dis_sum = torch.sum(x_dis, 1)
    x_dis_sum_pos = torch.sum(x_dis * adj_label, 1)
    return -torch.log(x_dis_sum_pos * (x_dis_sum ** (-1)) + 1e-8).mean()


def official_ncontrast_cc(
    x_dis: torch.Tensor, cc_dis: torch.Tensor, adj_label: torch.Tensor, tau: float
) -> torch.Tensor:
    x_pos = torch.sum(torch.exp(tau * x_dis) * adj_label, 1)
    x_neg = torch.sum(torch.exp(tau * cc_dis), 1)
    return -torch.log(x_pos + 1e-10).mean() + torch.log(x_neg + 1e-10).mean()


def official_ncontrast_ccsp(
    z: torch.Tensor, cc_dis: torch.Tensor, adj: torch.Tensor, tau: float
) -> torch.Tensor:
    adj = adj.coalesce()
    edge, values = adj.indices(), adj.values()
    x1, x2 = z[edge[0, :], :], z[edge[1, :], :]
    x = torch.sum(x1 * x2, dim=1)
    x_norm = torch.sum(x1**2, 1).sqrt() * torch.sum(x2**2, 1).sqrt()
    x_dis = x * (x_norm ** (-1))
    x_dis = x_dis.clone()
    x_dis[edge[0] == edge[1]] = 0.0
    x_dis = torch.exp(tau * x_dis) * values
    x_pos = torch.zeros(z.shape[0], dtype=z.dtype).scatter_add(0, edge[0, :], x_dis)
    x_neg = torch.sum(torch.exp(tau * cc_dis), 1)
    return -torch.log(x_pos + 1e-10).mean() + torch.log(x_neg + 1e-10).mean()


def official_meta_nodes(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return torch.sum(z.unsqueeze(1) * F.one_hot(q.detach().argmax(1)).unsqueeze(2), dim=0)


def official_get_a_r_flex(adj: torch.Tensor, r: int, cumulative: bool) -> torch.Tensor:
    adj_d = adj.to_dense()
    adj_c = adj_d
    adj_label = adj_d
    for _ in range(r - 1):
        adj_c = adj_c @ adj_d
        adj_label = adj_label + adj_c if cumulative else adj_c
    return adj_label


def official_load_graph(edges: np.ndarray, n: int) -> np.ndarray:
    """``load_graph`` of utils.py on an edge list (scipy as in the code)."""
    import scipy.sparse as sp

    adj = sp.coo_matrix(
        (np.ones(edges.shape[0]), (edges[:, 0], edges[:, 1])), shape=(n, n), dtype=np.float64
    )
    adj = adj + adj.T.multiply(adj.T > adj) - adj.multiply(adj.T > adj)
    adj = adj + sp.eye(adj.shape[0])
    rowsum = np.array(adj.sum(1))
    r_inv = np.power(rowsum, -1).flatten()
    r_inv[np.isinf(r_inv)] = 0.0
    return np.asarray(sp.diags(r_inv).dot(adj).todense())


# ---------------------------------------------------------------------------------------------
# naive float64 loops from the formulas
# ---------------------------------------------------------------------------------------------


def _cos(u: torch.Tensor, v: torch.Tensor) -> float:
    nu = math.sqrt(sum(float(a) ** 2 for a in u))
    nv = math.sqrt(sum(float(a) ** 2 for a in v))
    return sum(float(a) * float(b) for a, b in zip(u, v, strict=True)) / (nu * nv)


def naive_ncontrast_rows(z: torch.Tensor, a: torch.Tensor, tau: float) -> list[float]:
    n = z.shape[0]
    out = []
    for i in range(n):
        num = den = 0.0
        for j in range(n):
            c = 0.0 if i == j else _cos(z[i], z[j])
            num += float(a[i, j]) * math.exp(tau * c)
            den += math.exp(tau * c)
        out.append(-math.log(num / den + 1e-8))
    return out


def naive_pamc(z: torch.Tensor, a: torch.Tensor, ids: list[int], tau: float) -> float:
    n = z.shape[0]
    clusters = sorted(set(ids))
    m = [
        sum((z[i] for i in range(n) if ids[i] == c), torch.zeros(z.shape[1], dtype=F64))
        for c in clusters
    ]
    pos_term = 0.0
    for i in range(n):
        pos = 0.0
        for j in range(n):
            if float(a[i, j]) != 0.0:
                c = 0.0 if i == j else _cos(z[i], z[j])
                pos += float(a[i, j]) * math.exp(tau * c)
        pos_term += math.log(pos + 1e-10)
    neg_term = 0.0
    for p in range(len(m)):
        neg = sum(math.exp(tau * (0.0 if p == b else _cos(m[p], m[b]))) for b in range(len(m)))
        neg_term += math.log(neg + 1e-10)
    return -pos_term / n + neg_term / len(m)


# ---------------------------------------------------------------------------------------------
# 1. formula
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.25, 1.0, 1.5])
def test_ncontrast_matches_naive_loop(tau: float) -> None:
    z, a = _randn(9, 4), _graph(9, order=2)
    got = ncontrast(z, a, tau=tau, reduction="none")
    want = torch.tensor(naive_ncontrast_rows(z, a, tau), dtype=F64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ncontrast(z, a, tau=tau), want.mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ncontrast(z, a, tau=tau, reduction="sum"), want.sum())


@pytest.mark.parametrize("tau", [0.5, 1.5])
def test_pamc_matches_naive_loop(tau: float) -> None:
    z, a = _randn(10, 4, seed=1), _graph(10, seed=1, order=3)
    ids = [0, 2, 1, 1, 0, 2, 2, 0, 1, 0]
    got = pamc(z, a, torch.tensor(ids), tau=tau)
    assert float(got) == pytest.approx(naive_pamc(z, a, ids, tau), rel=1e-12, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# 2. the official code
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.25, 1.0])
def test_ncontrast_equals_scgc_ncontrast(tau: float) -> None:
    z, a = _randn(12, 5, seed=2), _graph(12, seed=2, order=4)
    want = official_ncontrast(official_get_feature_dis(z), a, tau)
    torch.testing.assert_close(ncontrast(z, a, tau=tau), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_pamc_equals_official_cc_and_ccsp(sparse: bool) -> None:
    """NcontrastCC (dense adj) and NcontrastCCSP (sparse adj), meta-nodes from soft q."""
    z, a = _randn(15, 4, seed=3), _graph(15, seed=3, order=2)
    q = torch.softmax(_randn(15, 4, seed=4) * 3, dim=1)
    assert q.argmax(1).unique().numel() == 4  # no empty cluster: both modes equal the code
    cc_dis = official_get_feature_dis(official_meta_nodes(z, q))
    dense = official_ncontrast_cc(official_get_feature_dis(z), cc_dis, a, 0.5)
    sp = official_ncontrast_ccsp(z, cc_dis, a.to_sparse(), 0.5)
    torch.testing.assert_close(dense, sp, rtol=1e-12, atol=1e-12)
    adj = a.to_sparse() if sparse else a
    for mode in ("nonempty", "max_id"):
        torch.testing.assert_close(
            pamc(z, adj, q, tau=0.5, meta=mode), dense, rtol=1e-12, atol=1e-12
        )  # type: ignore[arg-type]


def test_meta_nodes_equal_official_one_hot_sums() -> None:
    z = _randn(
        11,
        3,
        seed=5,
    )
    q = torch.softmax(_randn(11, 5, seed=6) * 4, dim=1)
    torch.testing.assert_close(meta_nodes(z, q, mode="max_id"), official_meta_nodes(z, q))


@pytest.mark.parametrize("cumulative", [False, True])
@pytest.mark.parametrize("order", [1, 2, 4])
def test_influence_adjacency_equals_get_a_r_flex(order: int, cumulative: bool) -> None:
    a = knn_graph(_randn(10, 3, seed=7), 2, sparse=False)
    want = official_get_a_r_flex(a, order, cumulative)
    torch.testing.assert_close(influence_adjacency(a, order, cumulative=cumulative), want)
    sp = influence_adjacency(a.to_sparse(), order, cumulative=cumulative)
    assert sp.layout == torch.sparse_coo
    torch.testing.assert_close(sp.to_dense(), want)


def test_knn_graph_equals_load_graph_of_sklearn_neighbours() -> None:
    from sklearn.neighbors import NearestNeighbors

    x = _randn(40, 5, seed=8)
    nn_ = NearestNeighbors(n_neighbors=4).fit(x.numpy())
    idx = nn_.kneighbors(x.numpy(), return_distance=False)[:, 1:]  # drop self
    edges = np.stack([np.repeat(np.arange(40), 3), idx.reshape(-1)], axis=1)
    want = torch.from_numpy(official_load_graph(edges, 40))
    got = knn_graph(x, 3)
    assert got.layout == torch.sparse_coo
    torch.testing.assert_close(got.to_dense(), want)
    torch.testing.assert_close(knn_graph(x, 3, sparse=False), want)


# ---------------------------------------------------------------------------------------------
# 3. properties (the card's tests)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_every_node_its_own_cluster_gives_ncontrast(tau: float) -> None:
    """k' = N, one-hot = I: L_PAMC == L_N up to the 1e-8 / 1e-10 epsilons."""
    z, a = _randn(14, 4, seed=9), _graph(14, seed=9, order=2)
    ids = torch.arange(14)
    got = pamc(z, a, ids, tau=tau)
    torch.testing.assert_close(got, ncontrast(z, a, tau=tau), rtol=0, atol=1e-7)
    q = torch.eye(14, dtype=F64)  # soft assignments that are the identity
    torch.testing.assert_close(pamc(z, a, q, tau=tau), got)


def test_meta_node_rows_are_member_sums() -> None:
    z = _randn(9, 3, seed=10)
    ids = torch.tensor([3, 0, 3, 5, 0, 3, 5, 5, 0])
    m = meta_nodes(z, ids)  # nonempty: clusters 0, 3, 5 in order
    for row, c in enumerate([0, 3, 5]):
        torch.testing.assert_close(m[row], z[ids == c].sum(0))
    full = meta_nodes(z, ids, mode="max_id")
    assert full.shape == (6, 3)
    assert bool((full[[1, 2, 4]] == 0).all())


def test_no_gradient_reaches_cluster_centres() -> None:
    z = _randn(12, 3, seed=11).requires_grad_(True)
    mu = _randn(4, 3, seed=12).requires_grad_(True)
    q = 1.0 / (1.0 + torch.cdist(z, mu) ** 2)  # Student-t, v = 1
    q = q / q.sum(1, keepdim=True)
    loss = pamc(z, _graph(12, seed=11), q, tau=0.5)
    g_mu, g_z = torch.autograd.grad(loss, [mu, z], allow_unused=True)
    assert g_mu is None or bool((g_mu == 0).all())
    assert g_z is not None and float(g_z.abs().sum()) > 0


def test_empty_clusters_official_max_id_versus_nonempty() -> None:
    """Official k' = max + 1: an empty top cluster vanishes, an empty middle one gives NaN."""
    z, a = _randn(10, 3, seed=13), _graph(10, seed=13)
    ids = torch.tensor([0, 0, 2, 2, 0, 2, 3, 3, 0, 2])  # cluster 1 empty; K = 6 -> 4, 5 empty
    q = F.one_hot(ids, 6).to(F64)
    official = official_ncontrast_cc(
        official_get_feature_dis(z), official_get_feature_dis(official_meta_nodes(z, q)), a, 1.0
    )
    assert math.isnan(float(official))  # the zero row of cluster 1
    drop = pamc(z, a, q, tau=1.0)
    assert math.isfinite(float(drop))
    assert float(drop) == pytest.approx(naive_pamc(z, a, ids.tolist(), 1.0), rel=1e-12)
    keep = pamc(z, a, q, tau=1.0, meta="max_id")  # 4 meta-nodes, the empty one with cosine 0
    assert math.isfinite(float(keep)) and float(keep) != pytest.approx(float(drop))
    # with only the top clusters empty, max_id is the official code exactly
    ids2 = torch.tensor([0, 0, 1, 1, 0, 2, 2, 1, 0, 2])
    q2 = F.one_hot(ids2, 6).to(F64)
    official2 = official_ncontrast_cc(
        official_get_feature_dis(z), official_get_feature_dis(official_meta_nodes(z, q2)), a, 1.0
    )
    torch.testing.assert_close(pamc(z, a, q2, tau=1.0, meta="max_id"), official2)
    torch.testing.assert_close(pamc(z, a, q2, tau=1.0), official2)


def test_tiling_changes_nothing() -> None:
    z = _randn(33, 4, seed=14).requires_grad_(True)
    a = _graph(33, seed=14, order=2).to_sparse()
    full = ncontrast(z, a, tau=0.7)
    (g_full,) = torch.autograd.grad(full, z)
    tiled = ncontrast(z, a, tau=0.7, chunk_size=5)
    (g_tiled,) = torch.autograd.grad(tiled, z)
    torch.testing.assert_close(tiled, full)
    torch.testing.assert_close(g_tiled, g_full)
    ids = torch.arange(33)
    torch.testing.assert_close(pamc(z, a, ids, chunk_size=4), pamc(z, a, ids))


def test_sparse_and_dense_adjacency_agree() -> None:
    z, a = _randn(16, 4, seed=15), _graph(16, seed=15, order=3)
    ids = torch.arange(16) % 4
    torch.testing.assert_close(ncontrast(z, a.to_sparse()), ncontrast(z, a))
    torch.testing.assert_close(ncontrast(z, a.to_sparse_csr()), ncontrast(z, a))
    torch.testing.assert_close(pamc(z, a.to_sparse(), ids), pamc(z, a, ids))


def test_perfect_neighbourhoods_lower_the_loss() -> None:
    """Clustered embeddings whose graph links only same-cluster nodes score lower than noise."""
    g = torch.Generator().manual_seed(16)
    centres = torch.randn(3, 6, generator=g, dtype=F64) * 5
    labels = torch.arange(30) % 3
    x = centres[labels] + 0.1 * torch.randn(30, 6, generator=g, dtype=F64)
    a = knn_graph(x, 3)
    noise = torch.randn(30, 6, generator=g, dtype=F64)
    assert float(ncontrast(x, a)) < float(ncontrast(noise, a))
    assert float(pamc(x, a, labels)) < float(pamc(noise, a, labels))


def test_half_inputs_give_float32_and_zero_rows_are_finite() -> None:
    z = _randn(8, 3, seed=17).to(torch.bfloat16)
    a = _graph(8, seed=17).float()
    assert ncontrast(z, a).dtype == torch.float32
    assert pamc(z, a, torch.arange(8) % 2).dtype == torch.float32
    z0 = _randn(8, 3, seed=18)
    z0[2] = 0.0
    assert math.isfinite(float(ncontrast(z0, _graph(8))))


def test_modules_pickle_and_repr() -> None:
    m = PAMCLoss(tau=0.5, meta="max_id", chunk_size=7)
    assert "tau=0.5" in repr(m) and "'max_id'" in repr(m)
    n = NcontrastLoss(tau=0.25, reduction="sum")
    assert "tau=0.25" in repr(n) and "'sum'" in repr(n)
    z, a = _randn(6, 3), _graph(6)
    torch.testing.assert_close(
        pickle.loads(pickle.dumps(n))(z, a), ncontrast(z, a, tau=0.25, reduction="sum")
    )
    ids = torch.arange(6) % 2
    torch.testing.assert_close(m(z, a, ids), pamc(z, a, ids, tau=0.5, meta="max_id"))


# ---------------------------------------------------------------------------------------------
# 4. errors
# ---------------------------------------------------------------------------------------------


def test_errors() -> None:
    z, a = _randn(6, 3), _graph(6)
    ids = torch.arange(6) % 2
    with pytest.raises(ValueError, match="ncontrast: tau must be > 0"):
        ncontrast(z, a, tau=0.0)
    with pytest.raises(
        ValueError, match=r"ncontrast: adjacency must have shape \(6, 6\); got \(5, 5\)"
    ):
        ncontrast(z, a[:5, :5])
    with pytest.raises(TypeError, match="ncontrast: adjacency must be a floating-point tensor"):
        ncontrast(z, (a > 0).long())
    with pytest.raises(TypeError, match=r"ncontrast: z must be a torch\.Tensor"):
        ncontrast(z.numpy(), a)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ncontrast: z must have at least 2 rows"):
        ncontrast(z[:1], a[:1, :1])
    with pytest.raises(ValueError, match="ncontrast: reduction must be one of"):
        ncontrast(z, a, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pamc: meta must be one of 'nonempty', 'max_id'"):
        pamc(z, a, ids, meta="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"pamc: assignments must have shape \(6,\)"):
        pamc(z, a, ids[:5])
    with pytest.raises(ValueError, match=r"pamc: floating assignments must have shape \(6, K\)"):
        pamc(z, a, ids.double())
    with pytest.raises(ValueError, match="pamc: assignments must be cluster ids >= 0"):
        pamc(z, a, ids - 1)
    with pytest.raises(TypeError, match="pamc: assignments must be an integer tensor"):
        pamc(z, a, ids.bool())
    with pytest.raises(ValueError, match=r"influence_adjacency: adjacency must be square"):
        influence_adjacency(a[:, :4])
    with pytest.raises(ValueError, match="influence_adjacency: order must be >= 1"):
        influence_adjacency(a, 0)
    with pytest.raises(ValueError, match="knn_graph: k must be < N = 6"):
        knn_graph(z, 6)
    with pytest.raises(TypeError, match="knn_graph: sparse must be a bool"):
        knn_graph(z, 2, sparse=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="PAMCLoss: tau must be > 0"):
        PAMCLoss(tau=-1.0)
    with pytest.raises(ValueError, match="NcontrastLoss: chunk_size must be >= 1"):
        NcontrastLoss(chunk_size=0)
    with pytest.raises(ValueError, match="meta_nodes: mode must be one of"):
        meta_nodes(z, ids, mode="x")  # type: ignore[arg-type]
