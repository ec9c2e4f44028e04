"""The recipe of `posneg bench graph`: data, the SCGC-style model, one training run, the cost sweep.

- **Data** (:func:`load_points`): all of scikit-learn's 8x8 digits (N = 1797, 64 features,
  scaled to [0, 1]) or MNIST-1D (train + test, standardised), optionally subsampled to ``n``
  rows by a fixed seed.
- **Model** (:class:`ClusterAE`): MLP encoder F -> 256 -> 256 -> n_z (ReLU), mirrored decoder,
  pre-trained as an autoencoder (MSE, Adam, mini-batches); then the decoder is dropped (SCGC_TRIM
  has no reconstruction term), the cluster centres are initialised by KMeans on z, and the
  soft assignment is DEC's Student-t ``q_ic ~ (1 + ||z_i - mu_c||^2)^-1``.
- **Training** (:func:`train_one`): full batch, one Adam step per epoch on
  ``beta * KL(P || Q) + alpha * L`` with P the DEC target recomputed each epoch (no gradient), L
  the Ncontrast loss over the influence graph or PamC with the hard argmax of q.
- **Metrics**: clustering accuracy (Hungarian matching, ``scipy.optimize.linear_sum_assignment``)
  and NMI (scikit-learn) of ``argmax q`` after the last epoch (the official scripts report the
  maximum over epochs, which peeks at the labels; the last epoch does not).
- **Cost** (:func:`term_cost`): seconds of one forward + backward of the contrastive term alone
  and its peak resident memory above the inputs (Linux ``VmHWM``, reset through
  ``/proc/self/clear_refs``; ``None`` elsewhere).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posneg.bench import _harness as harness
from posneg.losses.pamc import influence_adjacency, knn_graph, ncontrast, pamc

DATASETS: tuple[str, ...] = ("digits", "mnist1d")
OBJECTIVES: tuple[str, ...] = ("ncontrast", "pamc")
MODEL = "MLP F-256-256-10 (ReLU) AE-pretrained; DEC Student-t head; full-batch Adam"


def load_points(name: str, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(X float32 (N, F), y int64 (N,)) of ``digits`` or ``mnist1d``, at most ``n`` rows."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = np.asarray(d.data, dtype=np.float32) / 16.0, np.asarray(d.target, dtype=np.int64)
    else:
        from posneg.data.mnist1d import load_mnist1d

        m = load_mnist1d()
        x = np.concatenate([m.x_train, m.x_test]).astype(np.float32)
        y = np.concatenate([m.y_train, m.y_test]).astype(np.int64)
        x = (x - x.mean()) / x.std()
    if n is not None and n < len(y):
        keep = np.sort(np.random.default_rng(0).permutation(len(y))[:n])
        x, y = x[keep], y[keep]
    return x, y


class ClusterAE(nn.Module):
    """MLP autoencoder with a DEC cluster layer (centres ``mu``: (K, n_z))."""

    def __init__(self, n_in: int, n_z: int, n_clusters: int, hidden: int = 256) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(n_in, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_z),
        )
        self.decoder = nn.Sequential(
            nn.Linear(n_z, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_in),
        )
        self.mu = nn.Parameter(torch.zeros(n_clusters, n_z))

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """DEC's Student-t soft assignment (v = 1), rows summing to 1."""
        q = 1.0 / (1.0 + torch.cdist(z, self.mu).pow(2))
        return q / q.sum(dim=1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC target ``p_ic ~ q_ic^2 / sum_i q_ic``, row-normalised."""
    w = q.pow(2) / q.sum(dim=0)
    return w / w.sum(dim=1, keepdim=True)


def cluster_acc(y: np.ndarray, pred: np.ndarray) -> float:
    """Accuracy under the best one-to-one cluster -> class map (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    k = int(max(y.max(), pred.max())) + 1
    w = np.zeros((k, k), dtype=np.int64)
    np.add.at(w, (pred, y), 1)
    rows, cols = linear_sum_assignment(-w)
    return float(w[rows, cols].sum()) / len(y)


def nmi(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(y, pred))


def pretrain(
    x: torch.Tensor, n_clusters: int, seed: int, cfg: Any, device: torch.device
) -> ClusterAE:
    """An autoencoder trained ``cfg.pretrain_epochs`` epochs (MSE), centres from KMeans on z."""
    from sklearn.cluster import KMeans

    with harness.seeded(device, seed):
        model = ClusterAE(x.shape[1], cfg.n_z, n_clusters).to(device)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(
        list(model.encoder.parameters()) + list(model.decoder.parameters()), lr=1e-3
    )
    for _ in range(cfg.pretrain_epochs):
        for idx in torch.randperm(x.shape[0], generator=g).split(256):
            xb = x[idx.to(device)]
            loss = F.mse_loss(model.decoder(model.encoder(xb)), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        z = model.encoder(x).cpu().numpy()
    km = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(z)
    model.mu.data = torch.as_tensor(km.cluster_centers_, dtype=torch.float32, device=device)
    return model


def contrastive(
    objective: str, z: torch.Tensor, adj: torch.Tensor, q: torch.Tensor, tau: float
) -> torch.Tensor:
    """The contrastive term of the objective (``ncontrast`` over all pairs, or ``pamc``)."""
    if objective == "ncontrast":
        return ncontrast(z, adj, tau=tau)
    return pamc(z, adj, q, tau=tau)


def train_one(
    objective: str,
    data: tuple[torch.Tensor, np.ndarray, torch.Tensor],
    state: dict[str, torch.Tensor],
    seed: int,
    cfg: Any,
    device: torch.device,
    tick: Callable[[], None],
) -> dict[str, Any]:
    """One DEC + contrastive run from the pretrained ``state``; the final ACC/NMI and timings."""
    x, y, adj = data
    n_clusters = int(y.max()) + 1
    model = ClusterAE(x.shape[1], cfg.n_z, n_clusters).to(device)
    model.load_state_dict(state)
    params = [*model.encoder.parameters(), model.mu]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    term_s = 0.0
    started = time.perf_counter()
    for _ in range(cfg.epochs):
        with torch.no_grad():
            p = target_distribution(model.assign(model.encoder(x)))
        z = model.encoder(x)
        q = model.assign(z)
        kl = F.kl_div(q.log(), p, reduction="batchmean")
        t0 = time.perf_counter()
        term = contrastive(objective, z, adj, q, cfg.tau)
        term_s += time.perf_counter() - t0
        loss = cfg.beta * kl + cfg.alpha * term
        opt.zero_grad()
        loss.backward()
        opt.step()
        tick()
    epoch_s = (time.perf_counter() - started) / max(cfg.epochs, 1)
    with torch.no_grad():
        pred = model.assign(model.encoder(x)).argmax(1).cpu().numpy()
    return {
        "acc": cluster_acc(y, pred),
        "nmi": nmi(y, pred),
        "epoch_seconds": epoch_s,
        "term_forward_seconds": term_s / max(cfg.epochs, 1),
    }


def graph_of(x: torch.Tensor, k: int, order: int) -> torch.Tensor:
    """The influence adjacency of the k-NN graph of the raw features (sparse)."""
    return influence_adjacency(knn_graph(x, k), order)


# ---------------------------------------------------------------------------------------------
# cost of the contrastive term alone
# ---------------------------------------------------------------------------------------------


def _rss_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def term_cost(
    objective: str, n: int, *, k: int = 3, order: int = 2, clusters: int = 10, repeats: int = 2
) -> dict[str, Any]:
    """Seconds (best of ``repeats``) and peak extra MiB of one forward + backward of the term.

    Random features (N, 10) from a fixed seed, their k-NN influence graph and ``clusters``
    random cluster ids; the same inputs for both objectives.
    """
    from posneg._knn import release_freed_memory

    g = torch.Generator().manual_seed(n)
    z0 = torch.randn(n, 10, generator=g)
    adj = graph_of(z0, k, order)
    ids = torch.randint(0, clusters, (n,), generator=g)
    best = float("inf")
    peak_mib: float | None = None
    for _ in range(repeats):
        z = z0.clone().requires_grad_(True)
        release_freed_memory()
        before = _rss_kb("VmRSS")
        tracked = before is not None and _reset_peak()
        t0 = time.perf_counter()
        if objective == "ncontrast":
            loss = ncontrast(z, adj, tau=0.5)
        else:
            loss = pamc(z, adj, ids, tau=0.5)
        loss.backward()
        best = min(best, time.perf_counter() - t0)
        hwm = _rss_kb("VmHWM")
        if tracked and before is not None and hwm is not None:
            mib = max(hwm - before, 0) / 1024.0
            peak_mib = mib if peak_mib is None else min(peak_mib, mib)
        del loss, z
    return {"objective": objective, "n": n, "seconds": best, "peak_mib": peak_mib}
