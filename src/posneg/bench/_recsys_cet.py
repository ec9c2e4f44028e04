"""The CET pooling-bias toy of ``posneg bench recsys`` (the CET card's CPU check), on digits.

Queries are digit images; the relevant documents of a query are all other images of its class.
Judgments come from a **pool**: the top ``pool`` images by raw-pixel cosine (the weak retriever);
only pooled relevant images are labelled positive. A strong retriever (cosine in an LDA
embedding fitted on the labels) then supplies negatives whose unlabelled top hits are mostly
false negatives. A pairwise MLP reranker on ``(|q - d|, q * d)`` is trained with negatives from

- ``weak``: the pool's unlabelled images (judged non-relevant),
- ``strong``: the strong retriever's unlabelled top ``pool`` (many false negatives),
- ``strong+cet``: the same, with CET's coupled estimation (a second MLP as the selection model,
  each weighting the other as :func:`posneg.mining.strategies.cet.cet_losses` does),

and scored by MRR@10 and P@10 against the full qrels over 100 random candidates per held-out
query. The card's expected direction: strong < weak, strong+cet >= weak.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from posneg.mining.strategies.cet import cet_losses, cet_pair_loss

SETUPS = ("weak", "strong", "strong+cet")


def _mlp(dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(2 * dim, 64), nn.ReLU(), nn.Linear(64, 1))


def _pair_features(x: torch.Tensor, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    a, b = x[q], x[d]
    return torch.cat([(a - b).abs(), a * b], dim=-1)


def _top(emb: np.ndarray, k: int) -> np.ndarray:
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def prepare(pool: int, n_train: int, n_test: int, seed: int) -> dict[str, object]:
    """Queries, labelled positives and the weak/strong negative lists of one seed."""
    from sklearn.datasets import load_digits
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x_np, y = load_digits(return_X_y=True)
    x_np = x_np / 16.0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    train_q, test_q = order[:n_train], order[n_train : n_train + n_test]
    weak = _top(x_np, pool)
    strong = _top(LinearDiscriminantAnalysis().fit(x_np, y).transform(x_np), pool)
    pos, neg_weak, neg_strong = [], [], []
    for q in train_q:
        labelled = [d for d in weak[q] if y[d] == y[q]]
        pos.append(labelled)
        neg_weak.append([d for d in weak[q] if y[d] != y[q]])
        neg_strong.append([d for d in strong[q] if d not in set(labelled)])
    false_neg = np.mean(
        [np.mean([y[d] == y[q] for d in n]) for q, n in zip(train_q, neg_strong, strict=True)]
    )
    cands = [rng.choice(np.delete(np.arange(len(y)), q), 100, replace=False) for q in test_q]
    return {
        "x": torch.tensor(x_np, dtype=torch.float32),
        "y": y,
        "train_q": train_q,
        "test_q": test_q,
        "pos": pos,
        "neg": {"weak": neg_weak, "strong": neg_strong},
        "cands": cands,
        "false_negative_share": float(false_neg),
    }


def _pairs(data: dict, which: str, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    qs, ps, ns = [], [], []
    for q, pos, neg in zip(data["train_q"], data["pos"], data["neg"][which], strict=True):
        if not neg:
            continue
        for p in pos:
            qs.append(q)
            ps.append(p)
            ns.append(neg[rng.integers(len(neg))])
    return torch.tensor(qs), torch.tensor(ps), torch.tensor(ns)


def evaluate(model: nn.Module, data: dict) -> tuple[float, float]:
    """MRR@10 and P@10 over each held-out query's 100 random candidates (full qrels)."""
    x, y = data["x"], data["y"]
    cands = np.stack(data["cands"])  # (Q, 100)
    qs = np.repeat(np.asarray(data["test_q"])[:, None], cands.shape[1], axis=1)
    with torch.no_grad():
        feats = _pair_features(x, torch.from_numpy(qs), torch.from_numpy(cands))
        s = model(feats)[..., 0]
    top = np.take_along_axis(
        cands, torch.argsort(s, dim=1, descending=True, stable=True)[:, :10].numpy(), 1
    )
    rel = y[top] == y[qs[:, :10]]
    first = np.where(rel.any(1), 1.0 / (1 + rel.argmax(1)), 0.0)
    return float(first.mean()), float(rel.mean())


def run_setup(
    data: dict,
    setup: str,
    *,
    seed: int,
    epochs: int,
    debias_ratio: float,
    step: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """Train the reranker (and for CET the selection model) and return (MRR@10, P@10)."""
    torch.manual_seed(seed)  # the caller forks the global RNG (harness.seeded)
    x = data["x"]
    dim = int(x.shape[1])
    rel, sel = _mlp(dim), _mlp(dim)
    opt_r = torch.optim.Adam(rel.parameters(), lr=1e-3)
    opt_s = torch.optim.Adam(sel.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    which = "weak" if setup == "weak" else "strong"
    for _ in range(epochs):
        q, p, n = _pairs(data, which, rng)
        perm = torch.from_numpy(rng.permutation(len(q)))
        for start in range(0, len(q), 64):
            idx = perm[start : start + 64]
            fp, fn = _pair_features(x, q[idx], p[idx]), _pair_features(x, q[idx], n[idx])
            rp, rn = rel(fp)[:, 0], rel(fn)[:, 0]
            if setup == "strong+cet":
                sp, sn = sel(fp)[:, 0], sel(fn)[:, 0]
                out = cet_losses(
                    rel_pos=rp, rel_neg=rn, sel_pos=sp, sel_neg=sn, debias_ratio=debias_ratio
                )
                opt_r.zero_grad()
                opt_s.zero_grad()
                (out.relevance + out.selection).backward()
                opt_r.step()
                opt_s.step()
            else:
                opt_r.zero_grad()
                cet_pair_loss(rp, rn).backward()
                opt_r.step()
        if step is not None:
            step()
    return evaluate(rel, data)
