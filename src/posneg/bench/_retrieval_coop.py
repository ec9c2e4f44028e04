"""AR2 and CoCoSoDa in `posneg bench retrieval` (adapter mode): factories and training loops.

Both need more than :func:`posneg.mining.training.train_strategy` offers (a second model, key
encoders and queues), so their loops live here, on the same :class:`AdapterTowers` and
:class:`Schedule`:

- ``ar2``: the retriever is the pair of adapters; the ranker is a small cross-encoder over the
  frozen encoder's features, ``l(q, d) = q.d / t + MLP([q, d, q*d, |q-d|])`` (last layer zero, so
  it starts as the frozen encoder's ranking; hidden 128). The ranker first warms up for
  ``ranker_warmup`` steps on the initial negatives (not counted in the run's steps), then the
  blocks of :func:`~posneg.mining.strategies.ar2.ar2_trains_ranker` alternate; groups are the
  positive plus ``group_size - 1`` negatives from a :class:`HardNegativePool`, re-mined with the
  current adapters every ``iteration_step`` steps (``refresh=True``) or mined once.
- ``cocosoda``: the query (NL) and document (code) adapters are the query encoders, their EMA
  copies the momentum encoders; the key views are the frozen encoder's embeddings of texts whose
  word tokens were masked by :func:`~posneg.mining.strategies.cocosoda.soda_mask_tokens`
  (``views`` masked copies made once per run, deterministic; word tokens, not the model's
  sub-words), used at ``step % 4 == 0`` (code and NL) and ``3`` (code); steps 1 and 2 are the
  released no-ops (un-augmented keys). Loss :func:`cocosoda_loss` with the four queues.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch
from torch import nn

from posneg import _checks
from posneg.data.retrieval import RetrievalTask
from posneg.mining.training import STRATEGIES, AdapterTowers, Schedule, Strategy

__all__ = ["BENCH_STRATEGIES", "OWN", "ar2", "cocosoda", "fit_and_score_own", "masked_texts"]


def ar2(
    *,
    temperature: float = 0.05,
    adv_lambda: float = 0.5,
    refresh: bool = True,
    group_size: int = 16,
    pool: int = 20,
    iteration_step: int | None = None,
    ranker_steps: int | None = None,
    ranker_warmup: int | None = None,
    ranker_lr: float = 1e-3,
) -> Strategy:
    """AR2: retriever-ranker co-training, distillation + adversarial loss, refreshed groups."""
    fn = "ar2"
    args: dict[str, Any] = {
        "temperature": _checks.check_positive(fn, "temperature", temperature),
        "adv_lambda": _checks.check_range(fn, "adv_lambda", adv_lambda, 0.0, 1.0),
        "refresh": _checks.check_bool(fn, "refresh", refresh),
        "group_size": _checks.check_int(fn, "group_size", group_size, min_value=2),
        "pool": _checks.check_int(fn, "pool", pool, min_value=1),
        "ranker_lr": _checks.check_positive(fn, "ranker_lr", ranker_lr),
    }
    for name, v in (("iteration_step", iteration_step), ("ranker_warmup", ranker_warmup)):
        args[name] = None if v is None else _checks.check_int(fn, name, v, min_value=1)
    args["ranker_steps"] = (
        None
        if ranker_steps is None
        else _checks.check_int(fn, "ranker_steps", ranker_steps, min_value=0)
    )
    return Strategy("ar2", args, negatives="refresh" if refresh else "mined")


def cocosoda(
    *,
    temperature: float = 0.07,
    scale: float = 20.0,
    momentum: float = 0.999,
    queue_size: int = 512,
    probability: float = 0.1,
    views: int = 2,
) -> Strategy:
    """CoCoSoDa: momentum encoders, four queues, masked key views, CE(20 logits / T)."""
    fn = "cocosoda"
    args = {
        "temperature": _checks.check_positive(fn, "temperature", temperature),
        "scale": _checks.check_positive(fn, "scale", scale),
        "momentum": _checks.check_range(fn, "momentum", momentum, 0.0, 1.0),
        "queue_size": _checks.check_int(fn, "queue_size", queue_size, min_value=0),
        "probability": _checks.check_range(fn, "probability", probability, 0.0, 1.0),
        "views": _checks.check_int(fn, "views", views, min_value=1),
    }
    return Strategy("cocosoda", args)


#: The bench's own strategies (their loops are here).
OWN: dict[str, Any] = {"ar2": ar2, "cocosoda": cocosoda}
#: Every strategy the bench knows: the training module's and these.
BENCH_STRATEGIES: dict[str, Any] = {**STRATEGIES, **OWN}


def masked_texts(texts: tuple[str, ...], *, probability: float, seed: int) -> list[str]:
    """``texts`` with word tokens masked by :func:`soda_mask_tokens` (``[MASK]``; 10% random
    words of the same texts), drawn from a generator seeded by ``seed``."""
    from posneg.mining.strategies.cocosoda import soda_mask_tokens

    words = [t.split() for t in texts]
    vocab = sorted({w for ws in words for w in ws})
    ids = {w: i + 2 for i, w in enumerate(vocab)}  # 0: pad, 1: [MASK]
    length = max(1, max(len(ws) for ws in words))
    tok = torch.zeros(len(texts), length, dtype=torch.int64)
    for r, ws in enumerate(words):
        tok[r, : len(ws)] = torch.tensor([ids[w] for w in ws], dtype=torch.int64)
    gen = torch.Generator().manual_seed(seed)
    out = soda_mask_tokens(
        tok,
        mask_token_id=1,
        vocab_size=len(vocab) + 2,
        special_ids=(1,),
        pad_id=0,
        probability=probability,
        keep_prefix=0,
        generator=gen,
    )
    back = ["[PAD]", "[MASK]", *vocab]
    return [
        " ".join(back[int(i)] for i in row[: len(ws)]) for row, ws in zip(out, words, strict=True)
    ]


class _Ranker(nn.Module):
    """``q.d / t + MLP([q, d, q*d, |q-d|])``, last layer zero (the frozen ranking at start)."""

    def __init__(self, dim: int, temperature: float, gen: torch.Generator) -> None:
        super().__init__()
        self.t = temperature
        self.w1 = nn.Parameter(torch.randn(4 * dim, 128, generator=gen) / math.sqrt(4 * dim))
        self.b1 = nn.Parameter(torch.zeros(128))
        self.w2 = nn.Parameter(torch.zeros(128))

    def forward(self, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """(B, D), (B, G, D) -> (B, G)."""
        qe = q[:, None, :].expand_as(d)
        x = torch.cat([qe, d, qe * d, (qe - d).abs()], dim=-1)
        return (qe * d).sum(-1) / self.t + torch.relu(x @ self.w1 + self.b1) @ self.w2


def _ar2_loop(
    s: Strategy, towers: AdapterTowers, schedule: Schedule, gen: torch.Generator, dup: Any
) -> dict[str, Any]:
    from posneg.mining.strategies.ar2 import ar2_ranker_loss, ar2_retriever_loss, ar2_trains_ranker
    from posneg.mining.strategies.refresh import HardNegativePool

    a, n, spe = dict(s.args), schedule.n_train, schedule.steps_per_epoch
    block = a["iteration_step"] or 2 * spe
    rsteps = a["ranker_steps"] if a["ranker_steps"] is not None else max(1, block // 4)
    warm = a["ranker_warmup"] or 2 * spe
    a.update(iteration_step=block, ranker_steps=rsteps, ranker_warmup=warm)
    pool = HardNegativePool(
        [[i] for i in range(n)],
        pool_size=min(a["pool"], n - 1),
        range_max=min(100, n - 1),
        duplicate_of=dup,
        refresh_every=block if a["refresh"] else None,
    )
    fq, fd = towers.initial()
    ranker = _Ranker(fd.shape[1], a["temperature"], gen).to(fd.device)
    r_opt = torch.optim.Adam(ranker.parameters(), lr=a["ranker_lr"])
    opt = torch.optim.Adam(towers.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)
    k = a["group_size"] - 1

    def batches() -> Any:
        while True:
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n - schedule.batch_size + 1, schedule.batch_size):
                yield perm[i : i + schedule.batch_size]

    it = batches()

    def group(idx: torch.Tensor) -> torch.Tensor:
        return torch.cat([idx[:, None], pool.sample(idx, k, generator=gen)], 1).to(fd.device)

    def ranker_step(idx: torch.Tensor) -> float:
        g = group(idx)
        loss = ar2_ranker_loss(ranker(fq[idx.to(fd.device)], fd[g]))
        r_opt.zero_grad(set_to_none=True)
        loss.backward()
        r_opt.step()
        return float(loss.detach())

    pool.refresh(towers.all_queries(), towers.all_docs())
    for _ in range(warm):
        ranker_step(next(it))
    losses, diverged = [], None
    for step in range(schedule.total_steps):
        if step and pool.due(step):
            pool.refresh(towers.all_queries(), towers.all_docs())
        idx = next(it)
        if ar2_trains_ranker(step, iteration_step=block, ranker_steps=rsteps):
            value = ranker_step(idx)
        else:
            g = group(idx)
            with torch.no_grad():
                logits = ranker(fq[idx.to(fd.device)], fd[g])
            q = towers.queries(idx.to(fd.device))
            d = towers.docs(g.reshape(-1)).reshape(g.shape[0], g.shape[1], -1)
            loss = ar2_retriever_loss(
                q, d, logits, adv_lambda=a["adv_lambda"], retriever_temperature=a["temperature"]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
        losses.append(value)
        if not math.isfinite(value):
            diverged = step + 1
            break
    return {"args": a, "refreshes": pool.num_refreshes - 1, "losses": losses, "diverged": diverged}


def _cocosoda_loop(
    s: Strategy, towers: AdapterTowers, schedule: Schedule, gen: torch.Generator, views: Any
) -> dict[str, Any]:
    from posneg.mining.strategies.cocosoda import CoCoSoDaQueues, cocosoda_loss, momentum_update

    a, n = s.args, schedule.n_train
    q_key, d_key = copy.deepcopy(towers.q_adapter), copy.deepcopy(towers.d_adapter)
    q_key.requires_grad_(False)
    d_key.requires_grad_(False)
    fq, fd = towers.initial()
    dim = fd.shape[1]
    queues = CoCoSoDaQueues(a["queue_size"], dim, device=fd.device) if a["queue_size"] else None
    opt = torch.optim.Adam(towers.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)
    losses, diverged, step = [], None, 0
    while step < schedule.total_steps and diverged is None:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - schedule.batch_size + 1, schedule.batch_size):
            idx = perm[i : i + schedule.batch_size].to(fd.device)
            nl_q, code_q = towers.queries(idx), towers.docs(idx)
            phase, v = step % 4, (step // 4) % len(views)
            mq, md = views[v]
            nl_in = mq[idx] if phase == 0 else fq[idx]
            code_in = md[idx] if phase in (0, 3) else fd[idx]
            with torch.no_grad():
                momentum_update(q_key, towers.q_adapter, momentum=a["momentum"])
                momentum_update(d_key, towers.d_adapter, momentum=a["momentum"])
                nl_k, code_k = q_key(nl_in), d_key(code_in)
            loss = cocosoda_loss(
                code_q,
                nl_q,
                code_k,
                nl_k,
                queues=None if queues is None else queues.negatives(),
                temperature=a["temperature"],
                scale=a["scale"],
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if queues is not None:
                queues.enqueue(code_q, nl_q, code_k, nl_k)
            losses.append(float(loss.detach()))
            step += 1
            if not math.isfinite(losses[-1]):
                diverged = step
            if step >= schedule.total_steps or diverged is not None:
                break
    return {"args": dict(a), "refreshes": 0, "losses": losses, "diverged": diverged}


def fit_and_score_own(
    s: Strategy,
    task: RetrievalTask,
    schedule: Schedule,
    *,
    seed: int,
    device: torch.device,
    duplicate_of: Any = None,
    views: Any = None,
) -> dict[str, Any]:
    """Train ``ar2``/``cocosoda`` adapters on ``task`` and score the test split, as
    :func:`~posneg.mining.training.fit_and_score` does (same record keys)."""
    from posneg.mining.metrics import retrieval_metrics
    from posneg.mining.training import METRICS

    if schedule.mode != "adapter":
        raise ValueError(f"{s.key}: runs in adapter mode only")
    towers = AdapterTowers(task, device, fixed_docs=False)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        towers.train(True)
        if s.key == "ar2":
            info = _ar2_loop(s, towers, schedule, gen, duplicate_of)
        else:
            info = _cocosoda_loop(s, towers, schedule, gen, views)
        towers.train(False)
    train_s = time.perf_counter() - start
    if info["diverged"] is None:
        q, d = towers.test()
        metrics = retrieval_metrics(q, d, [[i] for i in range(task.n_test)])
    else:
        metrics = {m: math.nan for m in METRICS}
    losses = info["losses"]
    seg = max(1, len(losses) // 10)
    return {
        "args": info["args"],
        "refreshes": info["refreshes"],
        "removed": {},
        "diverged_at_step": info["diverged"],
        "losses": [
            sum(losses[i : i + seg]) / len(losses[i : i + seg]) for i in range(0, len(losses), seg)
        ],
        "metrics": metrics,
        "train_seconds": train_s,
        "eval_seconds": time.perf_counter() - start - train_s,
    }


def summary(key: str) -> str:
    """The one-line summary of any bench strategy (its factory's first docstring line)."""
    return (BENCH_STRATEGIES[key].__doc__ or key).strip().splitlines()[0]


def masked_views(
    specs: Any, task: RetrievalTask, encoder: Any, cache_dir: Any, device: Any, *, finetune: bool
) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per ``cocosoda`` spec label: its ``views`` pairs of (train query, train document)
    embeddings of masked texts (view ``v`` drawn with seed ``v``; cached like the task's)."""
    from posneg.bench import _harness as harness
    from posneg.mining.encode import encode

    out: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for spec in specs:
        if spec.key not in OWN:
            continue
        if finetune:
            raise harness.UsageError(f"--strategy {spec.key}: runs in adapter mode only")
        if spec.key != "cocosoda":
            continue
        args = harness.build(BENCH_STRATEGIES[spec.key], spec, spec.label()).args
        pairs = []
        for v in range(args["views"]):
            texts = [
                masked_texts(t, probability=args["probability"], seed=v)
                for t in (task.train_queries, task.train_docs)
            ]
            q, d = (encode(t, encoder, cache_dir=cache_dir, desc="masked view") for t in texts)
            pairs.append((q.to(device), d.to(device)))
        out[spec.label()] = pairs
    return out
