"""Part 2 of `posneg bench image-text`: SPN4CIR on the digit composed-image-retrieval task.

Task (:func:`posneg.data.composed.make_digit_cir`): reference digit + transform name ->
the transformed reference, retrieved from the gallery of every transformed image. Stage 1
stand-in: a tiny MLP image encoder pretrained as a digit classifier on the train references,
then frozen; static banks ``T = normalize(E(train gallery))`` and ``R = E(references)``
(unnormalised, as in SPN4CIR). Stage 2 trains only the text side (embedding bag over tokens)
and a small combiner: ``q = normalize(R[r] + g(m) + c([R[r]; g(m)]))``.

Variants (same steps, batch 16, temperature 0.02):

- ``in-batch``: InfoNCE against the batch's own targets (the stage-1 style loss);
- ``full-bank``: :func:`posneg.losses.spn4cir.bank_infonce` against the whole train bank;
- ``+synthetic``: few real triplets (``real_fraction`` of the train queries) plus one synthetic
  triplet per train reference: target drawn by :func:`sample_window_targets` from a mid-
  similarity window of the frozen image-image ranking, text from
  :func:`modification_texts` (templates p0, p1, one drawn per use) with the captions
  ``"d"`` (reference) and ``"d transform"`` (target). Without it, the same few real triplets.

Scored on held-out references (never seen in training): R@1 and R@10 of the true target in the
test gallery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posneg.data.composed import VOCAB, DigitCIR, tokenize
from posneg.losses.spn4cir import bank_infonce, modification_texts, sample_window_targets

__all__ = ["VARIANTS", "run_seed"]

VARIANTS: tuple[str, ...] = ("in-batch", "full-bank", "in-batch+synthetic", "full-bank+synthetic")
MAX_LEN = 8


class _Query(nn.Module):
    """Embedding-bag text encoder and combiner (the trained stage-2 side)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(len(VOCAB), dim, mode="mean", padding_idx=0)
        self.combine = nn.Sequential(
            nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim)
        )

    def forward(self, ref: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        t = self.bag(tokens)
        return F.normalize(ref + t + self.combine(torch.cat([ref, t], 1)), dim=1)


def _encoder(task: DigitCIR, train_refs: torch.Tensor, dim: int, epochs: int) -> nn.Module:
    """Stage-1 stand-in: an MLP digit classifier on the train references; its trunk."""
    trunk = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, dim))
    head = nn.Linear(dim, 10)
    net = nn.Sequential(trunk, nn.ReLU(), head)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = task.references[train_refs], task.reference_labels[train_refs]
    for _ in range(epochs):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return trunk.eval().requires_grad_(False)


def _synthetic(
    task: DigitCIR,
    refs: torch.Tensor,
    r_feat: torch.Tensor,
    bank: torch.Tensor,
    bank_ids: torch.Tensor,
    window: tuple[int, int],
    g: torch.Generator,
) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """One synthetic triplet per reference: window-sampled bank target, two template texts."""
    sim = F.normalize(r_feat[refs], dim=1) @ bank.T
    hi = min(window[1], bank.shape[0])
    lo = min(window[0], hi - 1)
    targets = sample_window_targets(
        sim, rank_min=lo, rank_max=hi, k=1, exclude_self=False, generator=g
    )[:, 0]
    texts = []
    for r, t in zip(refs.tolist(), targets.tolist(), strict=True):
        c_i = str(int(task.reference_labels[r]))
        c_j = " ".join(task.caption(int(bank_ids[t])))
        opts = modification_texts(c_i, c_j, fits=lambda s: len(s.split()) <= MAX_LEN)
        texts.append([tokenize([o.lower().replace(",", "")], max_len=MAX_LEN)[0] for o in opts])
    return targets, texts


@torch.no_grad()
def _recall(
    model: _Query, task: DigitCIR, r_feat: torch.Tensor, enc: nn.Module
) -> dict[str, float]:
    q_idx = task.test_queries
    gal = task.query_target[q_idx]  # the test gallery = the test queries' targets
    g_feat = F.normalize(enc(task.gallery[gal]), dim=1)
    q = model(r_feat[task.query_reference[q_idx]], task.modification_tokens(q_idx, max_len=MAX_LEN))
    sims = q @ g_feat.T
    true = sims.diagonal()
    rank = (sims > true[:, None]).sum(1)
    return {
        "recall_at_1": float((rank < 1).double().mean()),
        "recall_at_10": float((rank < 10).double().mean()),
    }


def run_seed(
    seed: int, task: DigitCIR, hp: dict[str, Any], tick: Callable[[], None]
) -> list[dict[str, Any]]:
    """Every variant under ``seed``; one row each."""
    dim = hp["dim"]
    train_refs = torch.unique(task.query_reference[task.train_queries])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = _encoder(task, train_refs, dim, hp["encoder_epochs"])
    r_feat = enc(task.references)
    bank_ids = task.query_target[task.train_queries]  # train gallery rows
    bank = F.normalize(enc(task.gallery[bank_ids]), dim=1)
    pos_in_bank = torch.empty(task.gallery.shape[0], dtype=torch.int64)
    pos_in_bank[bank_ids] = torch.arange(len(bank_ids))
    g = torch.Generator().manual_seed(seed)
    n_real = max(1, round(hp["real_fraction"] * len(task.train_queries)))
    real = task.train_queries[torch.randperm(len(task.train_queries), generator=g)[:n_real]]
    real_tokens = task.modification_tokens(real, max_len=MAX_LEN)
    real_refs, real_targets = task.query_reference[real], pos_in_bank[task.query_target[real]]
    syn_targets, syn_texts = _synthetic(task, train_refs, r_feat, bank, bank_ids, hp["window"], g)
    rows = []
    for variant in VARIANTS:
        synthetic = variant.endswith("+synthetic")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _Query(dim)
        opt = torch.optim.Adam(model.parameters(), lr=hp["cir_lr"])
        vg = torch.Generator().manual_seed(seed + 1)
        n = n_real + (len(train_refs) if synthetic else 0)
        for _ in range(hp["cir_epochs"]):
            perm = torch.randperm(n, generator=vg)
            pick = torch.randint(2, (n,), generator=vg)  # template per access
            for s in range(0, n - 1, hp["cir_batch_size"]):
                idx = perm[s : s + hp["cir_batch_size"]]
                if len(idx) < 2:
                    continue
                refs, targets, toks = [], [], []
                for i in idx.tolist():
                    if i < n_real:
                        refs.append(real_refs[i])
                        targets.append(real_targets[i])
                        toks.append(real_tokens[i])
                    else:
                        j = i - n_real
                        refs.append(train_refs[j])
                        targets.append(syn_targets[j])
                        toks.append(syn_texts[j][int(pick[i])])
                q = model(r_feat[torch.stack(refs)], torch.stack(toks))
                tgt = torch.stack(targets)
                if variant.startswith("in-batch"):
                    loss = bank_infonce(
                        q, bank[tgt], torch.arange(len(tgt)), temperature=hp["temperature"]
                    )
                else:
                    loss = bank_infonce(q, bank, tgt, temperature=hp["temperature"])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        rows.append(
            {
                "part": "spn4cir",
                "method": variant,
                "seed": seed,
                **_recall(model, task, r_feat, enc),
            }
        )
        tick()
    return rows
