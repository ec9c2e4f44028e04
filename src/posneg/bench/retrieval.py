"""`posneg bench retrieval`: hard-negative training strategies compared on code search.

Every strategy (a spec string such as ``static:num_negatives=2`` or ``ance:refresh_every=10``)
trains a bi-encoder on the train split of the code-search pairs built from the running Python's
standard library (:func:`posneg.data.code_search.load_code_search`: query = the first sentence of
a function's docstring, document = its code without the docstring; splits by module), for every
seed, and is evaluated on the test split: every test query against the corpus of all test code
documents (its own function's code is its one relevant document), by MRR@10, nDCG@10 and
Recall@1/10/100 (:func:`posneg.mining.metrics.retrieval_metrics`).

Two modes:

- ``adapter`` (default): the sentence encoder (all-MiniLM-L6-v2 unless ``--model``) is frozen;
  the train and test queries and documents are embedded once through
  :func:`posneg.mining.encode.encode` with an on-disk cache (``--cache-dir``, default
  ``~/.cache/posneg/embeddings``; a second run loads them in a second). Two trainable
  *adapters* sit on top, one for queries and one for documents (separate, because the two sides
  are different kinds of text, and ADORE needs the document side fixed): ``a(x) = normalize(x +
  W x + b)``, ``W`` and ``b`` initialised to zero, so that training starts exactly at the
  encoder's own ranking (``untrained``). Training runs on the cached vectors (Adam, lr 1e-4,
  batch 64, 6 epochs, one CPU thread): seconds per run. Defaults: every strategy, 3 seeds.
- ``finetune``: the sentence-transformers model itself is trained (all its weights; AdamW, lr
  2e-5), no adapters. Costly on CPU: a step of batch 16 at ``max_seq_length`` 128 takes about
  4 s on 2 cores (6 to 15 s with a hard negative per query), the train corpus is re-encoded
  with the current weights for every ANCE refresh (and the train queries for every NGAME
  refresh), and the test split for the evaluation of every run. So the defaults are small:
  ``--steps 40``, ``--max-pairs 800``, batch 16, 1 seed. ADORE keeps the cached document
  embeddings of the initial model (its fixed index) and trains the model as the query encoder
  only.

Strategies (defaults scaled down from the papers to a corpus of a few thousand documents; every
value can be changed in the spec):

- ``untrained``: no training, the encoder as is.
- ``inbatch``: InfoNCE with in-batch negatives (:func:`posneg.losses.info_nce`, t = 0.05, the
  scale 20 all-MiniLM-L6-v2 was trained with).
- ``random``: in-batch plus ``num_negatives`` random corpus documents per query
  (:func:`posneg.mining.strategies.random_negatives`), shared by the batch as extra negatives.
- ``static``: in-batch plus hard negatives mined **once** with the initial model
  (:func:`posneg.mining.mine`: a pool of the ``pool`` best-scoring non-positive documents within
  ranks ``[range_min, range_max]``); each step draws ``num_negatives`` of a query's pool
  uniformly (as STAR samples one of its top 200; defaults ``pool=20``, ``range_max=100``,
  ``num_negatives=1``), InfoNCE with the batch's hard negatives as ``negatives=`` for every
  query (a hard negative that is a positive of the batch is dropped: it already is an in-batch
  candidate, and it would be a negative of its own query).
- ``ance``: as ``static``, but the pools are re-mined with the current model every
  ``refresh_every`` steps (ANCE's asynchronous index refresh; Xiong et al., ICLR 2021); default
  every 2 epochs with adapters, 4 times per run when fine-tuning.
- ``star``: static hard negatives plus in-batch negatives with relevant pairs masked, the
  pairwise logistic loss of STAR (:func:`posneg.mining.strategies.star_loss`; Zhan et al.,
  SIGIR 2021), one hard negative per query and step.
- ``adore``: the document side is fixed (document adapter frozen at identity, or the initial
  model's cached embeddings in finetune mode); each step retrieves the top ``k`` (50, with
  ``metric_cut = k`` as DRhard's 200/200) documents for
  the current query embeddings, appends the positive when missing
  (:func:`posneg.mining.strategies.adore_candidates`) and trains the query side with the
  delta-MRR-weighted pairwise loss (:func:`posneg.mining.strategies.adore_loss`, sigma = 1/t).
- ``ngame``: batches of whole balanced clusters of the current query embeddings
  (:class:`posneg.mining.strategies.NGAMESampler`), re-clustered every ``refresh_every`` steps
  (default: every epoch; 5 rounds per run when fine-tuning) with a cluster size that doubles per
  refresh after ``warmup`` refreshes up to ``max_cluster_size`` (16 of a batch of 64;
  :func:`posneg.mining.strategies.cluster_size_schedule`); in-batch InfoNCE.
- ``fn_aware`` (``fn-aware``): as ``static`` but the miner drops likely false negatives: every
  candidate scoring above ``(1 - relative_margin)`` times the positive's score (and optionally
  an absolute ``margin`` or ``max_score``), the filters of :func:`posneg.mining.mine`.

Every run of a seed takes the same number of steps; all randomness (batch order, negative draws,
clustering, dropout in finetune mode) comes from generators seeded by the run's seed, and the
global RNG is left as it was. Same seed, same device, same thread count: same metrics.

Python use::

    from posneg.bench.retrieval import BenchConfig, run
    result = run(BenchConfig(strategies=("inbatch", "static", "adore"), seeds=2))
    result["aggregate"]        # per strategy: mean/std of every metric

``run(cfg, encoder=..., data=...)`` takes any :class:`~posneg.mining.encode.TextEncoder` (for
example a small callable wrapped by :func:`~posneg.mining.encode.load_encoder`) and any
:class:`~posneg.data.code_search.CodeSearchData`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
import typer
from rich.console import Console
from torch import nn

from posneg.bench._common import (
    DemoSummary,
    Spec,
    UsageError,
    atomic_save_figure,
    console,
    fmt,
    mean_std,
    parse_specs,
    progress_bar,
    resolve_device,
    rich_table,
    write_report,
)

__all__ = [
    "DEFAULT_CACHE_DIR",
    "DEFAULT_STRATEGIES",
    "DEMO_CONFIG",
    "METRICS",
    "STRATEGIES",
    "Adapter",
    "BenchConfig",
    "RetrievalTask",
    "cli",
    "demo",
    "load_task",
    "run",
    "train_strategy",
]

#: The metrics of every run, in table order.
METRICS: tuple[str, ...] = ("mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100")

#: Where the embeddings of the frozen encoder are cached unless ``--cache-dir`` says otherwise.
DEFAULT_CACHE_DIR = Path("~/.cache/posneg/embeddings")


# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Strategy:
    """How the bench trains one strategy.

    Attributes:
        key: the spec name.
        summary: one line for the report.
        defaults: every argument the spec may set, with its default (``None``: resolved by the
            mode, see :func:`_resolve_args`).
        trains: False for ``untrained``.
        negatives: where extra negatives come from: ``""`` (none), ``random``, ``mined``
            (once) or ``refresh`` (re-mined).
    """

    key: str
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    trains: bool = True
    negatives: str = ""


_T = {"temperature": 0.05}
_MINED = {"num_negatives": 1, "pool": 20, "range_min": 0, "range_max": 100}

#: Everything `--strategy` accepts, in table order.
STRATEGIES: dict[str, Strategy] = {
    s.key: s
    for s in (
        Strategy("untrained", "no training: the encoder as is", trains=False),
        Strategy("inbatch", "InfoNCE, in-batch negatives", dict(_T)),
        Strategy(
            "random",
            "InfoNCE, in-batch + random negatives",
            {**_T, "num_negatives": 1},
            negatives="random",
        ),
        Strategy(
            "static",
            "InfoNCE, in-batch + static hard negatives (mined once)",
            {**_T, **_MINED},
            negatives="mined",
        ),
        Strategy(
            "ance",
            "InfoNCE, in-batch + hard negatives re-mined with the current model",
            {**_T, **_MINED, "refresh_every": None},
            negatives="refresh",
        ),
        Strategy(
            "star",
            "STAR: pairwise loss, static hard + in-batch negatives, relevant pairs masked",
            {**_T, **_MINED},
            negatives="mined",
        ),
        Strategy(
            "adore",
            "ADORE: fixed document side, query side vs its top-k each step (delta-MRR loss)",
            {**_T, "k": 50, "metric_cut": None},
        ),
        Strategy(
            "ngame",
            "NGAME: batches of balanced query clusters (growing, refreshed), in-batch InfoNCE",
            {**_T, "refresh_every": None, "warmup": 1, "every": 1, "max_cluster_size": 16},
        ),
        Strategy(
            "fn_aware",
            "InfoNCE, in-batch + static hard negatives, likely false negatives filtered",
            {**_T, **_MINED, "relative_margin": 0.05, "margin": None, "max_score": None},
            negatives="mined",
        ),
    )
}

#: The strategies run when `--strategy` is not given: all of them.
DEFAULT_STRATEGIES: tuple[str, ...] = tuple(STRATEGIES)

# argument -> (kind, lower bound): "int" >= bound, "pos" float > 0, "unit" float in [0, 1),
# "real" any finite float; "?" suffix: None allowed
_ARG_KINDS: dict[str, tuple[str, int]] = {
    "temperature": ("pos", 0),
    "num_negatives": ("int", 1),
    "pool": ("int", 1),
    "range_min": ("int", 0),
    "range_max": ("int", 1),
    "refresh_every": ("int?", 1),
    "k": ("int", 1),
    "metric_cut": ("int?", 1),
    "warmup": ("int", 0),
    "every": ("int", 1),
    "max_cluster_size": ("int", 1),
    "relative_margin": ("unit?", 0),
    "margin": ("real?", 0),
    "max_score": ("real?", 0),
}


def _check_arg(where: str, name: str, value: Any) -> Any:
    kind, low = _ARG_KINDS[name]
    if value is None:
        if kind.endswith("?"):
            return None
        raise UsageError(f"{where}: {name} must be a number; got none")
    kind = kind.rstrip("?")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where}: {name} must be an integer; got {value!r}")
        if value < low:
            raise UsageError(f"{where}: {name} must be >= {low}; got {value}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where}: {name} must be a finite number; got {value!r}")
    if kind == "pos" and not value > 0:
        raise UsageError(f"{where}: {name} must be > 0; got {value!r}")
    if kind == "unit" and not 0 <= value < 1:
        raise UsageError(f"{where}: {name} must be in [0, 1); got {value!r}")
    return float(value)


def _spec_args(spec: Spec) -> dict[str, Any]:
    """The spec's arguments over the strategy's defaults, validated (UsageError naming it)."""
    strategy = STRATEGIES[spec.key]
    where = f"--strategy {spec.label()!r}"
    for name in spec.kwargs:
        if name not in strategy.defaults:
            known = ", ".join(strategy.defaults) or "none"
            raise UsageError(f"{where}: unknown argument {name!r}; known: {known}")
    args = {**strategy.defaults, **spec.kwargs}
    args = {name: _check_arg(where, name, v) for name, v in args.items()}
    if "pool" in args and args["num_negatives"] > args["pool"]:
        raise UsageError(
            f"{where}: num_negatives ({args['num_negatives']}) must be <= pool ({args['pool']})"
        )
    if "range_min" in args and args["range_min"] > args["range_max"]:
        raise UsageError(
            f"{where}: range_min ({args['range_min']}) must be <= range_max ({args['range_max']})"
        )
    return args


def _resolve_args(
    spec: Spec, *, mode: str, steps_per_epoch: int, total_steps: int
) -> dict[str, Any]:
    """Fill the mode-dependent defaults: refresh intervals and ADORE's metric cut."""
    args = _spec_args(spec)
    if args.get("refresh_every", 0) is None:
        if mode == "adapter":  # ance: every 2 epochs; ngame: every epoch
            args["refresh_every"] = steps_per_epoch * (2 if spec.key == "ance" else 1)
        else:  # finetune: re-encoding is costly; four refreshes per run (ngame: five rounds)
            parts = 5 if spec.key == "ngame" else 4
            args["refresh_every"] = max(1, total_steps // parts)
    if spec.key == "adore" and args["metric_cut"] is None:
        args["metric_cut"] = args["k"]  # DRhard: metric_cut = neg_topk = 200
    return args


# ---------------------------------------------------------------------------------------------
# data and models
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalTask:
    """Texts and (frozen-encoder) embeddings of the train and test splits.

    Row i of the queries is answered by row i of the documents of the same split (one relevant
    document per query).
    """

    train_queries: tuple[str, ...]
    train_docs: tuple[str, ...]
    test_queries: tuple[str, ...]
    test_docs: tuple[str, ...]
    train_q: torch.Tensor  # (N, D) float32 unit rows
    train_d: torch.Tensor
    test_q: torch.Tensor  # (M, D)
    test_d: torch.Tensor

    @property
    def n_train(self) -> int:
        return len(self.train_queries)

    @property
    def n_test(self) -> int:
        return len(self.test_queries)

    @property
    def dim(self) -> int:
        return int(self.train_q.shape[1])


def load_task(
    data: Any,
    encoder: Any,
    *,
    cache_dir: Path | None,
    progress: bool = True,
) -> RetrievalTask:
    """Embed the train and test splits of ``data`` (a ``CodeSearchData``) with ``encoder``."""
    from posneg.mining.encode import encode

    texts = {
        "train_queries": tuple(data.queries("train")),
        "train_docs": tuple(data.corpus("train")),
        "test_queries": tuple(data.queries("test")),
        "test_docs": tuple(data.corpus("test")),
    }
    for name, split in (("train_queries", "train"), ("test_queries", "test")):
        if len(texts[name]) < 2:
            raise UsageError(
                f"--max-pairs: the {split} split has {len(texts[name])} pairs; "
                "it needs at least 2 (use more pairs)"
            )
    emb = {}
    for name, items in texts.items():
        label = name.replace("_", " ")
        emb[name] = encode(list(items), encoder, cache_dir=cache_dir, progress=progress, desc=label)
    return RetrievalTask(
        **texts,
        train_q=emb["train_queries"],
        train_d=emb["train_docs"],
        test_q=emb["test_queries"],
        test_d=emb["test_docs"],
    )


class Adapter(nn.Module):
    """Residual linear adapter on frozen embeddings: ``normalize(x + W x + b)``, W = b = 0 at init.

    At initialisation the adapter returns the (normalised) input, so an untrained pair of adapters
    ranks exactly as the frozen encoder does.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        # zeros, not nn.Linear's random init: nothing drawn from the global RNG
        self.weight = nn.Parameter(torch.zeros(dim, dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D) unit rows."""
        return F.normalize(x + F.linear(x, self.weight, self.bias), dim=-1)


class _Towers:
    """The two encoders a strategy trains, over train items addressed by row index."""

    fixed_docs: bool = False

    def parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def queries(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings of train queries ``idx``, with gradients."""
        raise NotImplementedError

    def docs(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings of train documents ``idx`` (gradients unless the side is fixed)."""
        raise NotImplementedError

    def all_queries(self) -> torch.Tensor:
        """(N, D) current embeddings of every train query, no gradient."""
        raise NotImplementedError

    def all_docs(self) -> torch.Tensor:
        """(N, D) current embeddings of every train document, no gradient."""
        raise NotImplementedError

    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Current embeddings of the test queries and test documents, no gradient."""
        raise NotImplementedError

    def initial(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen encoder's (cached) train query and document embeddings."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> None:
        raise NotImplementedError


class _AdapterTowers(_Towers):
    def __init__(self, task: RetrievalTask, device: torch.device, *, fixed_docs: bool) -> None:
        self.task = task
        self.device = device
        self.fixed_docs = fixed_docs
        self.train_q = task.train_q.to(device)
        self.train_d = task.train_d.to(device)
        self.q_adapter = Adapter(task.dim).to(device)
        self.d_adapter = Adapter(task.dim).to(device)
        if fixed_docs:
            self.d_adapter.requires_grad_(False)

    def parameters(self) -> list[nn.Parameter]:
        params = list(self.q_adapter.parameters())
        if not self.fixed_docs:
            params += list(self.d_adapter.parameters())
        return params

    def queries(self, idx: torch.Tensor) -> torch.Tensor:
        return self.q_adapter(self.train_q[idx])

    def docs(self, idx: torch.Tensor) -> torch.Tensor:
        return self.d_adapter(self.train_d[idx])

    @torch.no_grad()
    def all_queries(self) -> torch.Tensor:
        return self.q_adapter(self.train_q)

    @torch.no_grad()
    def all_docs(self) -> torch.Tensor:
        return self.d_adapter(self.train_d)

    @torch.no_grad()
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.q_adapter(self.task.test_q.to(self.device))
        return q, self.d_adapter(self.task.test_d.to(self.device))

    def initial(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.train_q, self.train_d

    def train(self, mode: bool = True) -> None:
        self.q_adapter.train(mode)
        self.d_adapter.train(mode)


class _FinetuneTowers(_Towers):
    """The sentence-transformers model trained in place (restored by the caller after the run)."""

    def __init__(self, task: RetrievalTask, encoder: Any, *, fixed_docs: bool) -> None:
        from sentence_transformers.util import batch_to_device

        self._to_device = batch_to_device
        self.task = task
        self.encoder = encoder
        self.model = encoder.model
        self.device = torch.device(encoder.device)
        self.fixed_docs = fixed_docs
        self.train_d = task.train_d.to(self.device)  # the initial model's (ADORE's fixed index)

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _forward(self, texts: Sequence[str]) -> torch.Tensor:
        features = self._to_device(self.model.preprocess(list(texts)), self.device)
        out = self.model(features)["sentence_embedding"]
        return F.normalize(out.float(), dim=-1)

    def queries(self, idx: torch.Tensor) -> torch.Tensor:
        return self._forward([self.task.train_queries[i] for i in idx.tolist()])

    def docs(self, idx: torch.Tensor) -> torch.Tensor:
        if self.fixed_docs:
            return self.train_d[idx]
        return self._forward([self.task.train_docs[i] for i in idx.tolist()])

    def _encode(self, texts: Sequence[str]) -> torch.Tensor:
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return self.encoder(list(texts)).to(self.device)
        finally:
            self.model.train(was)

    def all_queries(self) -> torch.Tensor:
        return self._encode(self.task.train_queries)

    def all_docs(self) -> torch.Tensor:
        if self.fixed_docs:
            return self.train_d
        return self._encode(self.task.train_docs)

    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        q = self._encode(self.task.test_queries)
        if self.fixed_docs:
            return q, self.task.test_d.to(self.device)
        return q, self._encode(self.task.test_docs)

    def initial(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.task.train_q.to(self.device), self.train_d

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)


# ---------------------------------------------------------------------------------------------
# one training run
# ---------------------------------------------------------------------------------------------


def _batches(
    n: int, batch_size: int, gen: torch.Generator, sampler: Any | None
) -> Iterator[torch.Tensor]:
    """Full batches of one epoch: a random permutation, or the NGAME sampler's order."""
    if sampler is not None:
        for batch in sampler:
            yield torch.tensor(batch, dtype=torch.int64)
        return
    perm = torch.randperm(n, generator=gen)
    for start in range(0, n - batch_size + 1, batch_size):
        yield perm[start : start + batch_size]


def train_strategy(
    spec: Spec,
    towers: _Towers,
    *,
    n_train: int,
    batch_size: int,
    total_steps: int,
    lr: float,
    weight_decay: float,
    mode: str,
    seed: int,
    device: torch.device,
    duplicate_of: torch.Tensor | None = None,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Train ``towers`` in place under strategy ``spec`` for ``total_steps`` steps.

    Returns:
        ``{"args": resolved arguments, "losses": mean loss per 10% of the run, "refreshes":
        number of re-minings or re-clusterings, "removed": the miner's filter counts (summed
        over minings), "diverged_at_step": None or the first non-finite step}``.
    """
    from posneg.losses import info_nce
    from posneg.mining.index import ExactIndex
    from posneg.mining.strategies import (
        HardNegativePool,
        NGAMESampler,
        adore_candidates,
        adore_loss,
        candidate_scores,
        cluster_size_schedule,
        random_negatives,
        star_loss,
    )

    strategy = STRATEGIES[spec.key]
    steps_per_epoch = max(1, n_train // batch_size)
    args = _resolve_args(spec, mode=mode, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    out: dict[str, Any] = {"args": args, "refreshes": 0, "removed": {}, "diverged_at_step": None}
    if not strategy.trains:
        out["losses"] = []
        return out
    gen = torch.Generator().manual_seed(seed)
    temperature = float(args["temperature"])
    params = towers.parameters()
    if mode == "adapter":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    pool: HardNegativePool | None = None
    removed: dict[str, int] = {}
    if strategy.negatives in ("mined", "refresh"):
        range_max = min(int(args["range_max"]), n_train - 1)  # a window within the corpus
        range_min = min(int(args["range_min"]), range_max)
        pool = HardNegativePool(
            [[i] for i in range(n_train)],
            pool_size=min(int(args["pool"]), range_max - range_min + 1),
            range_min=range_min,
            range_max=range_max,
            max_score=args.get("max_score"),
            margin=args.get("margin"),
            relative_margin=args.get("relative_margin"),
            duplicate_of=duplicate_of,
            refresh_every=args.get("refresh_every"),
        )
    index = fixed_docs = None
    all_positives = torch.arange(n_train)
    if spec.key == "adore":  # the fixed document side and its index
        fixed_docs = towers.all_docs()
        index = ExactIndex(metric="ip")
        index.add(fixed_docs)
    sampler = None
    if spec.key == "ngame":
        sampler = NGAMESampler(n_train, batch_size, drop_last=True, generator=gen)

    towers.train(True)
    losses: list[float] = []
    step = 0
    rounds = 0
    refreshed_at = 0
    cluster_sizes: list[int] = []
    refresh_every = args.get("refresh_every")
    while step < total_steps:
        restart = False
        for idx in _batches(n_train, batch_size, gen, sampler):
            if pool is not None and pool.due(step):
                if mode == "finetune" and pool.ids is None:
                    # the model is still the initial one: its cached embeddings, no re-encoding
                    q_all, d_all = towers.initial()
                else:
                    q_all, d_all = towers.all_queries(), towers.all_docs()
                mined = pool.refresh(q_all, d_all)
                for key, v in mined.removed.items():
                    removed[key] = removed.get(key, 0) + int(v)
            if sampler is not None and refresh_every and step > refreshed_at:
                if step % refresh_every == 0:
                    refreshed_at = step
                    rounds += 1
                    size = cluster_size_schedule(
                        rounds,
                        warmup=int(args["warmup"]),
                        every=int(args["every"]),
                        max_size=min(int(args["max_cluster_size"]), batch_size),
                    )
                    if size > 1 or sampler.cluster_size > 1:
                        sampler.refresh(towers.all_queries().cpu(), size)
                        cluster_sizes.append(size)
                        restart = True  # the next batches come from the new clusters
            if restart:
                break
            idx_dev = idx.to(device)
            q = towers.queries(idx_dev)
            if spec.key == "adore":
                if index is None or fixed_docs is None:  # set up above for "adore"
                    raise RuntimeError("adore: the fixed document index was not built")
                pos = all_positives[idx].unsqueeze(1).to(device)
                ids, ranks, rel = adore_candidates(index, q.detach(), int(args["k"]), pos)
                scores = candidate_scores(q, fixed_docs, ids)
                loss = adore_loss(
                    scores, rel, ranks, metric_cut=args["metric_cut"], sigma=1.0 / temperature
                )
            else:
                d = towers.docs(idx_dev)
                neg_ids: torch.Tensor | None = None
                if strategy.negatives == "random":
                    draws = random_negatives(
                        batch_size,
                        n_train,
                        int(args["num_negatives"]),
                        [[int(i)] for i in idx],
                        generator=gen,
                    )
                    neg_ids = draws.to(device)
                elif pool is not None:
                    neg_ids = pool.sample(idx, int(args["num_negatives"]), generator=gen)
                    neg_ids = neg_ids.to(device)
                if spec.key == "star":
                    hard = hard_rel = None
                    if neg_ids is not None:
                        flat = neg_ids.reshape(-1)
                        flat = flat[flat >= 0]
                        if flat.numel():
                            hard = towers.docs(flat)
                            hard_rel = flat[None, :] == idx_dev[:, None]  # a query's own positive
                    loss = star_loss(
                        q,
                        d,
                        hard,
                        hard_relevant=hard_rel,
                        temperature=temperature,
                    )
                else:
                    negatives = None
                    if neg_ids is not None:
                        flat = neg_ids.reshape(-1)
                        # a negative that is a positive of the batch is already an in-batch
                        # candidate (and would be a negative of its own query): drop it
                        flat = flat[(flat >= 0) & ~torch.isin(flat, idx_dev)]
                        if flat.numel():
                            negatives = towers.docs(flat)
                    loss = info_nce(q, d, negatives=negatives, temperature=temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            losses.append(value)
            step += 1
            tick()
            if not math.isfinite(value):
                out["diverged_at_step"] = step
                for _ in range(step, total_steps):
                    tick()
                step = total_steps
            if step >= total_steps:
                break
    towers.train(False)
    # the loss curve in ten segments
    seg = max(1, len(losses) // 10)
    out["losses"] = [float(np.mean(losses[i : i + seg])) for i in range(0, len(losses), seg)]
    out["removed"] = removed
    out["refreshes"] = (pool.num_refreshes - 1) if pool is not None else len(cluster_sizes)
    out["cluster_sizes"] = cluster_sizes
    return out


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        strategies: spec strings (``static``, ``ance:refresh_every=10``).
        mode: ``adapter`` (frozen encoder, trained adapters) or ``finetune`` (the encoder).
        seeds: number of training seeds (``first_seed``, ``first_seed + 1``, ...; ``None``: 3 for
            adapters, 1 to fine-tune).
        first_seed: the first training seed.
        epochs: passes over the train split per run (adapter mode).
        steps: optimiser steps per run (finetune mode; also adapter mode when > 0, overriding
            ``epochs``).
        batch_size: queries per batch, every batch full (``None``: 64 for adapters, 16 to
            fine-tune).
        lr: learning rate (``None``: 1e-4 with Adam for adapters, 2e-5 with AdamW to fine-tune).
        weight_decay: weight decay of the optimiser.
        max_pairs: code-search pairs used over all splits (``None``: all in adapter mode, 800
            in finetune mode).
        max_seq_length: tokens read per text by the encoder.
        model: a sentence-transformers name or folder (default: the packaged all-MiniLM-L6-v2).
        cache_dir: embedding cache folder (``None``: ``~/.cache/posneg/embeddings``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        threads: CPU threads for torch (0: automatic: the available cores, at most 4, to encode
            and fine-tune; 1 to train adapters, whose small matrix products only lose time to
            thread hand-offs, badly so on a busy machine).
        out: output folder.
        quiet: no progress bars and no table.
    """

    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    mode: str = "adapter"
    seeds: int | None = None
    first_seed: int = 0
    epochs: int = 6
    steps: int = 0
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 0.0
    max_pairs: int | None = None
    max_seq_length: int = 128
    model: str = "all-MiniLM-L6-v2"
    cache_dir: str | None = None
    device: str = "auto"
    threads: int = 0
    out: str = "runs/retrieval"
    quiet: bool = False


MODES = ("adapter", "finetune")
#: adapter-mode defaults (when ``lr`` / ``batch_size`` are not given)
ADAPTER_LR = 1e-4
ADAPTER_BATCH_SIZE = 64
ADAPTER_SEEDS = 3
#: finetune-mode defaults (when ``steps`` / ``max_pairs`` / ``lr`` / ``batch_size`` are not given)
FINETUNE_STEPS = 40
FINETUNE_MAX_PAIRS = 800
FINETUNE_LR = 2e-5
FINETUNE_BATCH_SIZE = 16
FINETUNE_SEEDS = 1


def _validate(cfg: BenchConfig) -> list[Spec]:
    specs = parse_specs(cfg.strategies, STRATEGIES, flag="--strategy", what="strategy")
    for spec in specs:
        _spec_args(spec)
    if cfg.mode not in MODES:
        raise UsageError(f"--mode: must be one of {', '.join(MODES)}; got {cfg.mode!r}")
    if cfg.seeds is not None and cfg.seeds < 1:
        raise UsageError(f"--seeds: must be >= 1 (the number of seeds); got {cfg.seeds}")
    if cfg.first_seed < 0:
        raise UsageError(f"--first-seed: must be >= 0; got {cfg.first_seed}")
    if cfg.epochs < 1:
        raise UsageError(f"--epochs: must be >= 1; got {cfg.epochs}")
    if cfg.steps < 0:
        raise UsageError(f"--steps: must be >= 0 (0: the mode's default); got {cfg.steps}")
    if cfg.batch_size is not None and cfg.batch_size < 2:
        raise UsageError(
            f"--batch-size: must be >= 2 (a batch needs negatives); got {cfg.batch_size}"
        )
    if cfg.lr is not None and not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise UsageError(f"--lr: must be a finite number > 0; got {cfg.lr}")
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise UsageError(f"--weight-decay: must be a finite number >= 0; got {cfg.weight_decay}")
    if cfg.max_pairs is not None and cfg.max_pairs < 10:
        raise UsageError(f"--max-pairs: must be >= 10; got {cfg.max_pairs}")
    if cfg.max_seq_length < 8:
        raise UsageError(f"--max-seq-length: must be >= 8; got {cfg.max_seq_length}")
    if cfg.threads < 0:
        raise UsageError(f"--threads: must be >= 0 (0: automatic); got {cfg.threads}")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise UsageError(f"--out: {cfg.out} exists and is not a folder")
    if cfg.cache_dir is not None:
        cache = Path(cfg.cache_dir).expanduser()
        if cache.exists() and not cache.is_dir():
            raise UsageError(f"--cache-dir: {cfg.cache_dir} exists and is not a folder")
    return specs


def _train_threads(cfg: BenchConfig, encode_threads: int) -> int:
    """Threads while training: 1 for adapters unless ``--threads`` says otherwise."""
    if cfg.threads or cfg.mode == "finetune":
        return encode_threads
    return 1


def _threads(cfg: BenchConfig) -> int:
    if cfg.threads:
        return cfg.threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _load_encoder(cfg: BenchConfig, device: torch.device) -> Any:
    from posneg.mining.encode import load_encoder

    try:
        return load_encoder(cfg.model, device=device, max_seq_length=cfg.max_seq_length)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--model: {exc}") from None


def _load_data(max_pairs: int | None) -> Any:
    from posneg.data.code_search import load_code_search

    return load_code_search(max_pairs=max_pairs)


def _aggregate(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r["strategy"], []).append(r)
    out = []
    for label, rs in groups.items():
        row: dict[str, Any] = {
            "strategy": label,
            "key": rs[0]["key"],
            "seeds": [r["seed"] for r in rs],
        }
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std([r["metrics"][m] for r in rs])
        row["train_seconds_mean"] = mean_std([r["train_seconds"] for r in rs])[0]
        out.append(row)
    return out


def _cell(a: Mapping[str, Any], metric: str) -> str:
    mean, sd = a[f"{metric}_mean"], a[f"{metric}_std"]
    if len(a["seeds"]) > 1:
        return fmt(mean, sd)
    return "n/a" if math.isnan(mean) else f"{mean:.3f}"


def _plot(out: Path, agg: Sequence[Mapping[str, Any]], mode: str) -> list[Path]:
    from matplotlib.figure import Figure

    labels = [a["strategy"] for a in agg]
    xs = np.arange(len(labels))
    fig = Figure(figsize=(max(6.0, 0.9 * len(labels) + 3), 7.0))
    ax1, ax2 = fig.subplots(2, 1)
    means = [a["mrr@10_mean"] for a in agg]
    sds = [a["mrr@10_std"] for a in agg]
    colors = ["grey" if a["key"] == "untrained" else "C0" for a in agg]
    ax1.bar(xs, means, yerr=sds, capsize=3, color=colors)
    base = [a for a in agg if a["key"] == "untrained"]
    if base:
        ax1.axhline(base[0]["mrr@10_mean"], color="grey", ls="--", lw=1, label="untrained")
        ax1.legend(fontsize=8, loc="lower right")
    ax1.set_xticks(xs, labels, rotation=25, ha="right", fontsize=8)
    ax1.set_ylabel("test MRR@10")
    finite = [m for m in means if not math.isnan(m)]
    if finite:
        ax1.set_ylim(max(0.0, min(finite) - 0.1), min(1.0, max(finite) + 0.05))
    ax1.grid(axis="y", alpha=0.3)
    ks = [1, 10, 100]
    for i, a in enumerate(agg):
        ax2.errorbar(
            ks,
            [a[f"recall@{k}_mean"] for k in ks],
            yerr=[a[f"recall@{k}_std"] for k in ks],
            marker="o",
            capsize=2,
            label=a["strategy"],
            color="grey" if a["key"] == "untrained" else f"C{i % 10}",
        )
    ax2.set_xscale("log")
    ax2.set_xticks(ks, [str(k) for k in ks])
    ax2.set_xlabel("k")
    ax2.set_ylabel("test Recall@k")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7, ncol=2)
    fig.suptitle(f"posneg bench retrieval ({mode} mode): mean ± std over seeds")
    fig.tight_layout()
    return [atomic_save_figure(fig, out / "retrieval.png")]


def run(
    cfg: BenchConfig,
    *,
    encoder: Any | None = None,
    data: Any | None = None,
    echo: Console | None = None,
) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Args:
        cfg: the configuration.
        encoder: a :class:`~posneg.mining.encode.TextEncoder` to use instead of loading
            ``cfg.model`` (finetune mode needs one with a sentence-transformers ``model``).
        data: a :class:`~posneg.data.code_search.CodeSearchData` to use instead of building the
            standard-library set with ``cfg.max_pairs``.
        echo: unused; kept for symmetry with the other benches.

    Returns:
        ``{"runs": [...], "aggregate": [...], "report": path of results.md, "plots": [...],
        "config": {...}}``.

    Raises:
        UsageError: a bad spec, value or model (names the flag).
    """
    specs = _validate(cfg)
    device = resolve_device(cfg.device)
    finetune = cfg.mode == "finetune"
    max_pairs = cfg.max_pairs
    if max_pairs is None and finetune and data is None:
        max_pairs = FINETUNE_MAX_PAIRS
    n_seeds = cfg.seeds or (FINETUNE_SEEDS if finetune else ADAPTER_SEEDS)
    seeds = list(range(cfg.first_seed, cfg.first_seed + n_seeds))
    lr = cfg.lr if cfg.lr is not None else (FINETUNE_LR if finetune else ADAPTER_LR)
    batch_size = cfg.batch_size or (FINETUNE_BATCH_SIZE if finetune else ADAPTER_BATCH_SIZE)
    old_threads = torch.get_num_threads()
    threads = _threads(cfg)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    cache_dir = Path(cfg.cache_dir if cfg.cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    out = Path(cfg.out)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    runs: list[dict[str, Any]] = []
    try:
        t0 = time.perf_counter()
        if encoder is None:
            encoder = _load_encoder(cfg, device)
        if finetune and getattr(encoder, "model", None) is None:
            raise UsageError("--mode finetune: the encoder must be a sentence-transformers model")
        timings["model_load_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if data is None:
            data = _load_data(max_pairs)
        timings["data_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        task = load_task(data, encoder, cache_dir=cache_dir, progress=not cfg.quiet)
        timings["embedding_seconds"] = time.perf_counter() - t0
        train_threads = _train_threads(cfg, threads)
        if device.type == "cpu":
            torch.set_num_threads(train_threads)
        if batch_size > task.n_train:
            raise UsageError(
                f"--batch-size: {batch_size} exceeds the {task.n_train} training pairs"
            )
        steps_per_epoch = task.n_train // batch_size
        if cfg.steps > 0:
            total_steps = cfg.steps
        elif finetune:
            total_steps = FINETUNE_STEPS
        else:
            total_steps = cfg.epochs * steps_per_epoch
        from posneg.mining.mine import duplicate_groups

        duplicate_of = duplicate_groups(list(task.train_docs)).to(device)
        initial_state = (
            {k: v.detach().clone() for k, v in encoder.model.state_dict().items()}
            if finetune
            else None
        )
        jobs = [(spec, seed) for spec in specs for seed in seeds]
        with progress_bar(disable=cfg.quiet) as progress:
            overall = progress.add_task("all runs", total=len(jobs))
            current = progress.add_task("", total=total_steps)
            for spec, seed in jobs:
                progress.reset(
                    current, total=total_steps, description=f"{spec.label()} seed={seed}"
                )
                runs.append(
                    _run_one(
                        spec,
                        seed,
                        task,
                        encoder,
                        cfg,
                        device,
                        total_steps=total_steps,
                        batch_size=batch_size,
                        lr=lr,
                        duplicate_of=duplicate_of,
                        initial_state=initial_state,
                        tick=lambda: progress.advance(current),
                    )
                )
                progress.advance(overall)
    finally:
        torch.set_num_threads(old_threads)
    elapsed = time.perf_counter() - started
    agg = _aggregate(runs)
    header = ["strategy", "MRR@10", "nDCG@10", "R@1", "R@10", "R@100", "train s / run"]
    rows = [
        (
            a["strategy"],
            *(_cell(a, m) for m in METRICS),
            "-" if a["key"] == "untrained" else f"{a['train_seconds_mean']:.1f}",
        )
        for a in agg
    ]
    config = {
        **asdict(cfg),
        "strategies": [s.label() for s in specs],
        "seed_list": seeds,
        "resolved_lr": lr,
        "resolved_batch_size": batch_size,
        "resolved_max_pairs": max_pairs,
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "resolved_device": str(device),
        "torch_threads": threads if device.type == "cpu" else old_threads,
        "torch_threads_training": train_threads if device.type == "cpu" else old_threads,
        "encoder": repr(encoder),
        "cache_dir": str(cache_dir),
        "n_train": task.n_train,
        "n_test": task.n_test,
        "dim": task.dim,
        "adapters": "query and document: normalize(x + W x + b), W = b = 0 at start; Adam"
        if not finetune
        else "none (the encoder is trained; AdamW)",
        **{k: round(v, 2) for k, v in timings.items()},
        "elapsed_seconds": round(elapsed, 1),
    }
    notes = [
        f"Test split: {task.n_test} queries against the {task.n_test} test code documents (one "
        f"relevant each); trained on {task.n_train} train pairs, {total_steps} steps of batch "
        f"{batch_size} per run ({cfg.mode} mode), mean ± sample std over seeds {seeds}.",
        "",
        "Strategies:",
        "",
        *[f"- `{s.label()}`: {STRATEGIES[s.key].summary}" for s in specs],
    ]
    diverged = [r for r in runs if r["diverged_at_step"] is not None]
    if diverged:
        notes += [
            "",
            "Diverged runs (non-finite loss; metrics n/a): "
            + ", ".join(f"{r['strategy']} seed={r['seed']}" for r in diverged),
        ]
    results = {"runs": runs, "aggregate": agg}
    report = write_report(
        out,
        title=f"posneg bench retrieval ({cfg.mode} mode)",
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes="\n".join(notes),
    )
    plots = _plot(out, agg, cfg.mode)
    if not cfg.quiet:
        table = rich_table(f"posneg bench retrieval ({cfg.mode} mode, test split)", header, rows)
        stdout = Console()
        if not stdout.is_terminal:
            stdout = Console(width=160)
        for column in table.columns[1:]:
            column.no_wrap = True
        stdout.print(table)
        console.print(f"finished in {elapsed:.0f} s; report: [bold]{report}[/bold]")
    return {**results, "report": report, "plots": plots, "config": config}


def _run_one(
    spec: Spec,
    seed: int,
    task: RetrievalTask,
    encoder: Any,
    cfg: BenchConfig,
    device: torch.device,
    *,
    total_steps: int,
    batch_size: int,
    lr: float,
    duplicate_of: torch.Tensor,
    initial_state: Mapping[str, torch.Tensor] | None,
    tick: Callable[[], None],
) -> dict[str, Any]:
    from posneg.mining.metrics import retrieval_metrics

    fixed_docs = spec.key == "adore"
    towers: _Towers
    if initial_state is None:
        towers = _AdapterTowers(task, device, fixed_docs=fixed_docs)
    else:
        towers = _FinetuneTowers(task, encoder, fixed_docs=fixed_docs)
    devices = [device] if device.type == "cuda" else []
    start = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=devices):  # dropout (finetune) draws from it
            torch.manual_seed(seed)
            info = train_strategy(
                spec,
                towers,
                n_train=task.n_train,
                batch_size=batch_size,
                total_steps=total_steps,
                lr=lr,
                weight_decay=cfg.weight_decay,
                mode=cfg.mode,
                seed=seed,
                device=device,
                duplicate_of=duplicate_of,
                tick=tick,
            )
        train_s = time.perf_counter() - start
        if not STRATEGIES[spec.key].trains:
            for _ in range(total_steps):
                tick()
        if info["diverged_at_step"] is None:
            q, d = towers.test()
            metrics = retrieval_metrics(q, d, [[i] for i in range(task.n_test)])
        else:
            metrics = {m: math.nan for m in METRICS}
    finally:
        if initial_state is not None:  # back to the initial weights for the next run
            encoder.model.load_state_dict(initial_state)
            encoder.model.eval()
    return {
        "strategy": spec.label(),
        "key": spec.key,
        "seed": seed,
        "metrics": metrics,
        "train_seconds": round(train_s, 3),
        "eval_seconds": round(time.perf_counter() - start - train_s, 3),
        **info,
    }


# ---------------------------------------------------------------------------------------------
# CLI and demo
# ---------------------------------------------------------------------------------------------


def cli(
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            "-s",
            help="Strategy spec, repeatable: untrained, inbatch, random, static, ance, star, "
            "adore, ngame, fn-aware, with arguments as in 'static:num_negatives=2,pool=10'. "
            "Default: all.",
        ),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="adapter (frozen encoder + trained adapters) or finetune.")
    ] = BenchConfig.mode,
    seeds: Annotated[
        int | None,
        typer.Option(
            help="Number of training seeds (first-seed, first-seed+1, ...; default 3, finetune 1)."
        ),
    ] = None,
    first_seed: Annotated[int, typer.Option(help="First training seed.")] = BenchConfig.first_seed,
    epochs: Annotated[
        int, typer.Option(help="Epochs per run (adapter mode).")
    ] = BenchConfig.epochs,
    steps: Annotated[
        int,
        typer.Option(
            help=f"Optimiser steps per run (0: epochs in adapter mode, {FINETUNE_STEPS} in "
            "finetune mode)."
        ),
    ] = BenchConfig.steps,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", "-b", help="Queries per batch (default: 64; finetune 16)."),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="Learning rate (default: 1e-4 adapters, 2e-5 finetune)."),
    ] = None,
    weight_decay: Annotated[float, typer.Option(help="Weight decay.")] = BenchConfig.weight_decay,
    max_pairs: Annotated[
        int | None,
        typer.Option(
            help=f"Code-search pairs over all splits (default: all; {FINETUNE_MAX_PAIRS} in "
            "finetune mode)."
        ),
    ] = None,
    max_seq_length: Annotated[
        int, typer.Option(help="Tokens read per text by the encoder.")
    ] = BenchConfig.max_seq_length,
    model: Annotated[
        str,
        typer.Option(help="sentence-transformers model name or folder (offline)."),
    ] = BenchConfig.model,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Embedding cache folder. Default: ~/.cache/posneg/embeddings."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = BenchConfig.device,
    threads: Annotated[
        int, typer.Option(help="CPU threads for torch (0: min(4, cores)).")
    ] = BenchConfig.threads,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path(BenchConfig.out),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no table.")] = False,
) -> None:
    """Hard-negative training strategies on stdlib code search; MRR@10, nDCG@10, Recall@k.

    Every strategy and seed trains query/document adapters on a frozen sentence encoder (or the
    encoder itself with --mode finetune) on the train split, then ranks the test split's code
    for its queries. Writes results.json, results.md and retrieval.png into --out.
    """
    cfg = BenchConfig(
        strategies=tuple(strategy) if strategy else DEFAULT_STRATEGIES,
        mode=mode,
        seeds=seeds,
        first_seed=first_seed,
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        max_pairs=max_pairs,
        max_seq_length=max_seq_length,
        model=model,
        cache_dir=None if cache_dir is None else str(cache_dir),
        device=device,
        threads=threads,
        out=str(out),
        quiet=quiet,
    )
    result = run(cfg)
    if quiet:
        typer.echo(str(result["report"]))


#: The demo preset: a subset of the pairs, one seed, four strategies, adapter mode.
DEMO_CONFIG = BenchConfig(
    strategies=("untrained", "inbatch", "static", "adore"),
    seeds=1,
    epochs=8,
    max_pairs=600,
)


def demo(out: Path) -> DemoSummary:
    """A small preset for `posneg demo`: four strategies, one seed, adapter mode, 600 pairs."""
    cfg = BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out)})
    result = run(cfg)
    rows = [
        (a["strategy"], "test MRR@10 / R@10", f"{a['mrr@10_mean']:.3f} / {a['recall@10_mean']:.3f}")
        for a in result["aggregate"]
    ]
    return DemoSummary(family="retrieval", rows=rows, report=Path(result["report"]))
