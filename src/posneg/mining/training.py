"""Train a two-tower retriever under a hard-negative strategy, on any pair of encoders.

The strategies of :mod:`posneg.mining.strategies` assembled into one training loop
(:func:`train_strategy`) over *towers*: a query encoder and a document encoder addressed by
train-row index (:class:`Towers`). Two kinds of towers are provided:

- :class:`AdapterTowers`: trainable residual :class:`Adapter` s on cached, frozen embeddings
  (``normalize(x + W x + b)``, ``W = b = 0`` at start, so training starts at the encoder's own
  ranking);
- :class:`FinetuneTowers`: a sentence-transformers model trained in place.

:func:`fit_and_score` builds the towers of a mode, trains them and scores the test split
(:data:`METRICS`).

A strategy is built by its factory (:data:`STRATEGIES`: ``untrained``, ``inbatch``, ``random``,
``static``, ``ance``, ``star``, ``adore``, ``ngame``, ``fn_aware``), which validates its
arguments and raises its own ``ValueError``/``TypeError`` (an unknown argument is Python's
``TypeError``). Defaults are scaled down from the papers to a corpus of a few thousand documents:

- ``inbatch``: InfoNCE with in-batch negatives (:func:`posneg.losses.info_nce`, t = 0.05).
- ``random``: in-batch plus ``num_negatives`` random corpus documents per query
  (:func:`~posneg.mining.strategies.random_negatives`), shared by the batch.
- ``static``: in-batch plus hard negatives mined once with the initial model
  (:class:`~posneg.mining.strategies.HardNegativePool`: the ``pool`` best non-positive documents
  within ranks ``[range_min, range_max]``), ``num_negatives`` drawn per query and step; a hard
  negative that is a positive of the batch is dropped (it already is an in-batch candidate).
- ``ance``: as ``static``, re-mined with the current model every ``refresh_every`` steps (Xiong
  et al., ICLR 2021).
- ``star``: static hard negatives plus in-batch negatives with relevant pairs masked, STAR's
  pairwise loss (:func:`~posneg.mining.strategies.star_loss`; Zhan et al., SIGIR 2021).
- ``adore``: the document side fixed; each step the query side is trained against its current
  top ``k`` documents with the delta-MRR-weighted loss (:func:`~posneg.mining.strategies.
  adore_loss`, sigma = 1/t, ``metric_cut`` = ``k`` by default, as DRhard's 200/200).
- ``ngame``: batches of balanced clusters of the current query embeddings
  (:class:`~posneg.mining.strategies.NGAMESampler`) re-clustered every ``refresh_every`` steps,
  the cluster size doubling per refresh after ``warmup`` up to ``max_cluster_size``.
- ``fn_aware``: as ``static`` but the miner drops likely false negatives (candidates above
  ``(1 - relative_margin)`` times the positive's score; optional ``margin``, ``max_score``).

``refresh_every=None`` (``ance``, ``ngame``) and ``metric_cut=None`` (``adore``) are resolved
per mode by :func:`resolve_args`. All randomness (batch order, negative draws, clustering) comes
from one generator seeded by ``seed``; the global RNG is not drawn from (dropout in finetune mode
aside: fork it around the call).

Example:
    >>> import torch
    >>> spec = STRATEGIES["static"](num_negatives=2, pool=10)
    >>> spec.key, spec.negatives, spec.args["pool"]
    ('static', 'mined', 10)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._progress import ProgressCallback, check_progress, tracker
from posneg.data.retrieval import RetrievalTask

__all__ = [
    "METRICS",
    "MODES",
    "STRATEGIES",
    "Adapter",
    "AdapterTowers",
    "FinetuneTowers",
    "Schedule",
    "Strategy",
    "Towers",
    "fit_and_score",
    "resolve_args",
    "summary",
    "train_strategy",
]

#: Training modes: adapters on frozen embeddings, or the encoder itself.
MODES: tuple[str, ...] = ("adapter", "finetune")

#: The test metrics of :func:`fit_and_score`, keys of
#: :func:`~posneg.mining.metrics.retrieval_metrics` with its default cut-offs.
METRICS: tuple[str, ...] = ("mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100")


# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Strategy:
    """A validated training strategy, built by its factory in :data:`STRATEGIES`.

    Attributes:
        key: the strategy's name.
        args: every argument with its value (``None`` where :func:`resolve_args` fills it in).
        trains: False for ``untrained``.
        negatives: where extra negatives come from: ``""`` (none), ``random``, ``mined`` (once)
            or ``refresh`` (re-mined).
    """

    key: str
    args: Mapping[str, Any] = field(default_factory=dict)
    trains: bool = True
    negatives: str = ""


def _t(fn: str, temperature: float) -> dict[str, Any]:
    return {"temperature": _checks.check_positive(fn, "temperature", temperature)}


def _optional_int(fn: str, name: str, value: Any) -> int | None:
    return None if value is None else _checks.check_int(fn, name, value, min_value=1)


def _mined(
    fn: str, temperature: float, num_negatives: int, pool: int, range_min: int, range_max: int
) -> dict[str, Any]:
    args = _t(fn, temperature)
    args["num_negatives"] = _checks.check_int(fn, "num_negatives", num_negatives, min_value=1)
    args["pool"] = _checks.check_int(fn, "pool", pool, min_value=1)
    args["range_min"] = _checks.check_int(fn, "range_min", range_min, min_value=0)
    args["range_max"] = _checks.check_int(fn, "range_max", range_max, min_value=1)
    if num_negatives > pool:
        raise ValueError(f"{fn}: num_negatives ({num_negatives}) must be <= pool ({pool})")
    if range_min > range_max:
        raise ValueError(f"{fn}: range_min ({range_min}) must be <= range_max ({range_max})")
    return args


def untrained() -> Strategy:
    """No training: the encoder as is."""
    return Strategy("untrained", {}, trains=False)


def inbatch(*, temperature: float = 0.05) -> Strategy:
    """InfoNCE, in-batch negatives."""
    return Strategy("inbatch", _t("inbatch", temperature))


def random(*, temperature: float = 0.05, num_negatives: int = 1) -> Strategy:
    """InfoNCE, in-batch + random negatives (``num_negatives`` per query)."""
    args = _t("random", temperature)
    args["num_negatives"] = _checks.check_int("random", "num_negatives", num_negatives, min_value=1)
    return Strategy("random", args, negatives="random")


def static(
    *,
    temperature: float = 0.05,
    num_negatives: int = 1,
    pool: int = 20,
    range_min: int = 0,
    range_max: int = 100,
) -> Strategy:
    """InfoNCE, in-batch + static hard negatives (mined once)."""
    args = _mined("static", temperature, num_negatives, pool, range_min, range_max)
    return Strategy("static", args, negatives="mined")


def ance(
    *,
    temperature: float = 0.05,
    num_negatives: int = 1,
    pool: int = 20,
    range_min: int = 0,
    range_max: int = 100,
    refresh_every: int | None = None,
) -> Strategy:
    """InfoNCE, in-batch + hard negatives re-mined with the current model."""
    args = _mined("ance", temperature, num_negatives, pool, range_min, range_max)
    args["refresh_every"] = _optional_int("ance", "refresh_every", refresh_every)
    return Strategy("ance", args, negatives="refresh")


def star(
    *,
    temperature: float = 0.05,
    num_negatives: int = 1,
    pool: int = 20,
    range_min: int = 0,
    range_max: int = 100,
) -> Strategy:
    """STAR: pairwise loss, static hard + in-batch negatives, relevant pairs masked."""
    args = _mined("star", temperature, num_negatives, pool, range_min, range_max)
    return Strategy("star", args, negatives="mined")


def adore(*, temperature: float = 0.05, k: int = 50, metric_cut: int | None = None) -> Strategy:
    """ADORE: fixed document side, query side vs its top-k each step (delta-MRR loss)."""
    args = _t("adore", temperature)
    args["k"] = _checks.check_int("adore", "k", k, min_value=1)
    args["metric_cut"] = _optional_int("adore", "metric_cut", metric_cut)
    return Strategy("adore", args)


def ngame(
    *,
    temperature: float = 0.05,
    refresh_every: int | None = None,
    warmup: int = 1,
    every: int = 1,
    max_cluster_size: int = 16,
) -> Strategy:
    """NGAME: batches of balanced query clusters (growing, refreshed), in-batch InfoNCE."""
    fn = "ngame"
    args = _t(fn, temperature)
    args["refresh_every"] = _optional_int(fn, "refresh_every", refresh_every)
    args["warmup"] = _checks.check_int(fn, "warmup", warmup, min_value=0)
    args["every"] = _checks.check_int(fn, "every", every, min_value=1)
    args["max_cluster_size"] = _checks.check_int(
        fn, "max_cluster_size", max_cluster_size, min_value=1
    )
    return Strategy(fn, args)


def fn_aware(
    *,
    temperature: float = 0.05,
    num_negatives: int = 1,
    pool: int = 20,
    range_min: int = 0,
    range_max: int = 100,
    relative_margin: float | None = 0.05,
    margin: float | None = None,
    max_score: float | None = None,
) -> Strategy:
    """InfoNCE, in-batch + static hard negatives, likely false negatives filtered."""
    fn = "fn_aware"
    args = _mined(fn, temperature, num_negatives, pool, range_min, range_max)
    args["relative_margin"] = (
        None
        if relative_margin is None
        else _checks.check_range(fn, "relative_margin", relative_margin, 0.0, 1.0, high_open=True)
    )
    args["margin"] = None if margin is None else _checks.check_real(fn, "margin", margin)
    args["max_score"] = (
        None if max_score is None else _checks.check_real(fn, "max_score", max_score)
    )
    return Strategy(fn, args, negatives="mined")


#: Every strategy's factory, in table order (the first docstring line is its summary).
STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "untrained": untrained,
    "inbatch": inbatch,
    "random": random,
    "static": static,
    "ance": ance,
    "star": star,
    "adore": adore,
    "ngame": ngame,
    "fn_aware": fn_aware,
}


def summary(key: str) -> str:
    """The one-line summary of strategy ``key`` (its factory's first docstring line)."""
    return (STRATEGIES[key].__doc__ or key).strip().splitlines()[0]


def resolve_args(
    strategy: Strategy, *, mode: str, steps_per_epoch: int, total_steps: int
) -> dict[str, Any]:
    """The strategy's arguments with the mode-dependent defaults filled in.

    ``refresh_every=None``: with adapters every 2 epochs (``ance``) or every epoch (``ngame``);
    fine-tuning (re-encoding is costly) 4 refreshes per run (``ngame``: 5 rounds).
    ``metric_cut=None`` (``adore``): ``k`` (DRhard: metric_cut = neg_topk = 200).
    """
    args = dict(strategy.args)
    if args.get("refresh_every", 0) is None:
        if mode == "adapter":
            args["refresh_every"] = steps_per_epoch * (2 if strategy.key == "ance" else 1)
        else:
            parts = 5 if strategy.key == "ngame" else 4
            args["refresh_every"] = max(1, total_steps // parts)
    if strategy.key == "adore" and args["metric_cut"] is None:
        args["metric_cut"] = args["k"]
    return args


# ---------------------------------------------------------------------------------------------
# towers
# ---------------------------------------------------------------------------------------------


class Adapter(nn.Module):
    """Residual linear adapter on frozen embeddings: ``normalize(x + W x + b)``, W = b = 0 at init.

    At initialisation the adapter returns the (normalised) input, so an untrained pair of adapters
    ranks exactly as the frozen encoder does.

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
        >>> torch.allclose(Adapter(8)(x), x)
        True
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        # zeros, not nn.Linear's random init: nothing drawn from the global RNG
        self.weight = nn.Parameter(torch.zeros(dim, dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D) unit rows."""
        return F.normalize(x + F.linear(x, self.weight, self.bias), dim=-1)


class Towers(Protocol):
    """The two encoders a strategy trains, over train items addressed by row index."""

    fixed_docs: bool

    def parameters(self) -> list[nn.Parameter]:
        """The trainable parameters."""
        ...

    def queries(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings of train queries ``idx``, with gradients."""
        ...

    def docs(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings of train documents ``idx`` (gradients unless the side is fixed)."""
        ...

    def all_queries(self) -> torch.Tensor:
        """(N, D) current embeddings of every train query, no gradient."""
        ...

    def all_docs(self) -> torch.Tensor:
        """(N, D) current embeddings of every train document, no gradient."""
        ...

    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Current embeddings of the test queries and test documents, no gradient."""
        ...

    def initial(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen encoder's (cached) train query and document embeddings."""
        ...

    def train(self, mode: bool = True) -> Any:
        """Set training mode."""
        ...


class AdapterTowers:
    """A query and a document :class:`Adapter` on a task's cached embeddings.

    Args:
        task: the embedded task.
        device: where the adapters train.
        fixed_docs: freeze the document adapter at identity (ADORE).
    """

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
        """The query adapter's parameters, and the document adapter's unless fixed."""
        params = list(self.q_adapter.parameters())
        if not self.fixed_docs:
            params += list(self.d_adapter.parameters())
        return params

    def queries(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, D) adapted train queries ``idx``."""
        return self.q_adapter(self.train_q[idx])

    def docs(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, D) adapted train documents ``idx``."""
        return self.d_adapter(self.train_d[idx])

    @torch.no_grad()
    def all_queries(self) -> torch.Tensor:
        """(N, D) every adapted train query."""
        return self.q_adapter(self.train_q)

    @torch.no_grad()
    def all_docs(self) -> torch.Tensor:
        """(N, D) every adapted train document."""
        return self.d_adapter(self.train_d)

    @torch.no_grad()
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The adapted test queries and documents."""
        q = self.q_adapter(self.task.test_q.to(self.device))
        return q, self.d_adapter(self.task.test_d.to(self.device))

    def initial(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached train embeddings."""
        return self.train_q, self.train_d

    def train(self, mode: bool = True) -> None:
        """Set both adapters' training mode."""
        self.q_adapter.train(mode)
        self.d_adapter.train(mode)


class FinetuneTowers:
    """A sentence-transformers model trained in place (the caller restores it after the run).

    Args:
        task: the task, embedded by ``encoder``'s initial weights (ADORE's fixed index).
        encoder: a :class:`~posneg.mining.encode.TextEncoder` with a sentence-transformers
            ``model``.
        fixed_docs: keep the initial document embeddings (ADORE: the model is the query
            encoder only).
    """

    def __init__(self, task: RetrievalTask, encoder: Any, *, fixed_docs: bool) -> None:
        from sentence_transformers.util import batch_to_device

        self._to_device = batch_to_device
        self.task = task
        self.encoder = encoder
        self.model = encoder.model
        self.device = torch.device(encoder.device)
        self.fixed_docs = fixed_docs
        self.train_d = task.train_d.to(self.device)

    def parameters(self) -> list[nn.Parameter]:
        """The model's trainable parameters."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def _forward(self, texts: Sequence[str]) -> torch.Tensor:
        # `preprocess` from sentence-transformers 5.4 (where `tokenize` is deprecated); 3.0-5.3
        # only have `tokenize`
        prep = getattr(self.model, "preprocess", None) or self.model.tokenize
        features = self._to_device(prep(list(texts)), self.device)
        out = self.model(features)["sentence_embedding"]
        return F.normalize(out.float(), dim=-1)

    def queries(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, D) train queries ``idx`` through the model, with gradients."""
        return self._forward([self.task.train_queries[i] for i in idx.tolist()])

    def docs(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, D) train documents ``idx`` (the initial embeddings when fixed)."""
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
        """(N, D) every train query, re-encoded."""
        return self._encode(self.task.train_queries)

    def all_docs(self) -> torch.Tensor:
        """(N, D) every train document, re-encoded (the initial ones when fixed)."""
        if self.fixed_docs:
            return self.train_d
        return self._encode(self.task.train_docs)

    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test queries and documents, re-encoded (initial documents when fixed)."""
        q = self._encode(self.task.test_queries)
        if self.fixed_docs:
            return q, self.task.test_d.to(self.device)
        return q, self._encode(self.task.test_docs)

    def initial(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The initial model's cached train embeddings."""
        return self.task.train_q.to(self.device), self.train_d

    def train(self, mode: bool = True) -> None:
        """Set the model's training mode."""
        self.model.train(mode)


# ---------------------------------------------------------------------------------------------
# the training loop
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """How long and how a strategy trains.

    Attributes:
        n_train: N, the train pairs (row ``i`` of the queries is answered by document ``i``).
        batch_size: queries per batch (every batch full), in [2, N].
        total_steps: optimiser steps (>= 1).
        lr: learning rate (> 0).
        weight_decay: the optimiser's weight decay (>= 0).
        mode: ``adapter`` (Adam) or ``finetune`` (AdamW).

    Raises:
        ValueError, TypeError: a value out of range or of the wrong type.
    """

    n_train: int
    batch_size: int
    total_steps: int
    lr: float
    weight_decay: float = 0.0
    mode: str = "adapter"

    def __post_init__(self) -> None:
        fn = "Schedule"
        _checks.check_int(fn, "n_train", self.n_train, min_value=2)
        _checks.check_int(fn, "batch_size", self.batch_size, min_value=2)
        if self.batch_size > self.n_train:
            raise ValueError(
                f"{fn}: batch_size ({self.batch_size}) exceeds the {self.n_train} training pairs"
            )
        _checks.check_int(fn, "total_steps", self.total_steps, min_value=1)
        _checks.check_positive(fn, "lr", self.lr)
        _checks.check_nonnegative(fn, "weight_decay", self.weight_decay)
        _checks.check_choice(fn, "mode", self.mode, MODES)

    @property
    def steps_per_epoch(self) -> int:
        """Full batches per pass over the train pairs."""
        return max(1, self.n_train // self.batch_size)


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


class _Loop:
    """The state of one :func:`train_strategy` call (pool, index, sampler, counters)."""

    def __init__(
        self,
        strategy: Strategy,
        towers: Towers,
        schedule: Schedule,
        *,
        seed: int,
        device: torch.device,
        duplicate_of: torch.Tensor | None,
    ) -> None:
        from posneg.mining.index import ExactIndex
        from posneg.mining.strategies import HardNegativePool, NGAMESampler

        self.strategy, self.towers, self.schedule, self.device = strategy, towers, schedule, device
        n = schedule.n_train
        self.args = resolve_args(
            strategy,
            mode=schedule.mode,
            steps_per_epoch=schedule.steps_per_epoch,
            total_steps=schedule.total_steps,
        )
        self.gen = torch.Generator().manual_seed(seed)
        self.temperature = float(self.args.get("temperature", 1.0))
        self.removed: dict[str, int] = {}
        self.pool: HardNegativePool | None = None
        if strategy.negatives in ("mined", "refresh"):
            range_max = min(int(self.args["range_max"]), n - 1)  # a window within the corpus
            range_min = min(int(self.args["range_min"]), range_max)
            self.pool = HardNegativePool(
                [[i] for i in range(n)],
                pool_size=min(int(self.args["pool"]), range_max - range_min + 1),
                range_min=range_min,
                range_max=range_max,
                max_score=self.args.get("max_score"),
                margin=self.args.get("margin"),
                relative_margin=self.args.get("relative_margin"),
                duplicate_of=duplicate_of,
                refresh_every=self.args.get("refresh_every"),
            )
        self.index: ExactIndex | None = None
        self.fixed_docs: torch.Tensor | None = None
        if strategy.key == "adore" and strategy.trains:  # the fixed document side and its index
            self.fixed_docs = towers.all_docs()
            self.index = ExactIndex(metric="ip")
            self.index.add(self.fixed_docs)
        self.sampler: NGAMESampler | None = None
        if strategy.key == "ngame":
            self.sampler = NGAMESampler(n, schedule.batch_size, drop_last=True, generator=self.gen)
        self.rounds = self.refreshed_at = 0
        self.cluster_sizes: list[int] = []

    def remine(self, step: int) -> None:
        """Refresh the hard-negative pool when it is due."""
        if self.pool is None or not self.pool.due(step):
            return
        if self.schedule.mode == "finetune" and self.pool.ids is None:
            # the model is still the initial one: its cached embeddings, no re-encoding
            q_all, d_all = self.towers.initial()
        else:
            q_all, d_all = self.towers.all_queries(), self.towers.all_docs()
        mined = self.pool.refresh(q_all, d_all)
        for key, v in mined.removed.items():
            self.removed[key] = self.removed.get(key, 0) + int(v)

    def recluster(self, step: int) -> bool:
        """Re-cluster the NGAME sampler when due; True when the batches must restart."""
        from posneg.mining.strategies import cluster_size_schedule

        every = self.args.get("refresh_every")
        if self.sampler is None or not every or step <= self.refreshed_at or step % every:
            return False
        self.refreshed_at = step
        self.rounds += 1
        size = cluster_size_schedule(
            self.rounds,
            warmup=int(self.args["warmup"]),
            every=int(self.args["every"]),
            max_size=min(int(self.args["max_cluster_size"]), self.schedule.batch_size),
        )
        if size > 1 or self.sampler.cluster_size > 1:
            self.sampler.refresh(self.towers.all_queries().cpu(), size)
            self.cluster_sizes.append(size)
            return True  # the next batches come from the new clusters
        return False

    def _negative_ids(self, idx: torch.Tensor) -> torch.Tensor | None:
        from posneg.mining.strategies import random_negatives

        k = int(self.args.get("num_negatives", 0))
        if self.strategy.negatives == "random":
            positives = [[int(i)] for i in idx]
            draws = random_negatives(
                self.schedule.batch_size, self.schedule.n_train, k, positives, generator=self.gen
            )
            return draws.to(self.device)
        if self.pool is not None:
            return self.pool.sample(idx, k, generator=self.gen).to(self.device)
        return None

    def loss(self, idx: torch.Tensor) -> torch.Tensor:
        """The strategy's loss on the batch of train rows ``idx``."""
        from posneg.losses import info_nce
        from posneg.mining.strategies import (
            adore_candidates,
            adore_loss,
            candidate_scores,
            star_loss,
        )

        idx_dev = idx.to(self.device)
        q = self.towers.queries(idx_dev)
        t = self.temperature
        if self.strategy.key == "adore":
            if self.index is None or self.fixed_docs is None:
                raise RuntimeError("adore: the fixed document index was not built")
            pos = idx.unsqueeze(1).to(self.device)  # row i's positive is document i
            ids, ranks, rel = adore_candidates(self.index, q.detach(), int(self.args["k"]), pos)
            scores = candidate_scores(q, self.fixed_docs, ids)
            return adore_loss(scores, rel, ranks, metric_cut=self.args["metric_cut"], sigma=1 / t)
        d = self.towers.docs(idx_dev)
        neg_ids = self._negative_ids(idx)
        if self.strategy.key == "star":
            hard = hard_rel = None
            if neg_ids is not None:
                flat = neg_ids.reshape(-1)
                flat = flat[flat >= 0]
                if flat.numel():
                    hard = self.towers.docs(flat)
                    hard_rel = flat[None, :] == idx_dev[:, None]  # a query's own positive
            return star_loss(q, d, hard, hard_relevant=hard_rel, temperature=t)
        negatives = None
        if neg_ids is not None:
            flat = neg_ids.reshape(-1)
            # a negative that is a positive of the batch is already an in-batch candidate (and
            # would be a negative of its own query): drop it
            flat = flat[(flat >= 0) & ~torch.isin(flat, idx_dev)]
            if flat.numel():
                negatives = self.towers.docs(flat)
        return info_nce(q, d, negatives=negatives, temperature=t)


def train_strategy(
    strategy: Strategy,
    towers: Towers,
    schedule: Schedule,
    *,
    seed: int,
    device: torch.device,
    duplicate_of: torch.Tensor | None = None,
    progress: bool | ProgressCallback = False,
) -> dict[str, Any]:
    """Train ``towers`` in place under ``strategy`` for ``schedule.total_steps`` steps.

    Args:
        strategy: from a factory of :data:`STRATEGIES`.
        towers: the encoders (:class:`AdapterTowers`, :class:`FinetuneTowers` or any
            :class:`Towers`).
        schedule: steps, batch size, optimiser.
        seed: seeds the one generator of batch order, negative draws and clustering.
        device: where the batches go.
        duplicate_of: (N,) duplicate groups of the train documents for the miner (see
            :func:`posneg.mining.mine.duplicate_groups`), or ``None``.
        progress: reported once per step (``False``, ``True`` for tqdm, or a callback).

    Returns:
        ``{"args": resolved arguments, "refreshes": number of re-minings or re-clusterings,
        "removed": the miner's filter counts (summed over minings), "diverged_at_step": None or
        the first non-finite step, "losses": mean loss per 10% of the run, "cluster_sizes"}``
        (``untrained``: no ``cluster_sizes``, empty ``losses``).

    Raises:
        TypeError: a ``strategy`` or ``schedule`` of the wrong type, a bad ``progress``.
    """
    fn = "train_strategy"
    if not isinstance(strategy, Strategy):
        raise TypeError(f"{fn}: strategy must be a Strategy; got {type(strategy).__name__}")
    if not isinstance(schedule, Schedule):
        raise TypeError(f"{fn}: schedule must be a Schedule; got {type(schedule).__name__}")
    check_progress(fn, progress)
    args = resolve_args(
        strategy,
        mode=schedule.mode,
        steps_per_epoch=schedule.steps_per_epoch,
        total_steps=schedule.total_steps,
    )
    out: dict[str, Any] = {"args": args, "refreshes": 0, "removed": {}, "diverged_at_step": None}
    if not strategy.trains:
        out["losses"] = []
        return out
    loop = _Loop(strategy, towers, schedule, seed=seed, device=device, duplicate_of=duplicate_of)
    params = towers.parameters()
    opt: torch.optim.Optimizer
    if schedule.mode == "adapter":
        opt = torch.optim.Adam(params, lr=schedule.lr, weight_decay=schedule.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=schedule.weight_decay)
    towers.train(True)
    losses: list[float] = []
    step = 0
    with tracker(progress, strategy.key, schedule.total_steps) as advance:
        while step < schedule.total_steps:
            for idx in _batches(schedule.n_train, schedule.batch_size, loop.gen, loop.sampler):
                loop.remine(step)
                if loop.recluster(step):
                    break
                loss = loop.loss(idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                value = float(loss.detach())
                losses.append(value)
                step += 1
                advance(1)
                if not math.isfinite(value):
                    out["diverged_at_step"] = step
                    step = schedule.total_steps
                if step >= schedule.total_steps:
                    break
    towers.train(False)
    seg = max(1, len(losses) // 10)  # the loss curve in ten segments
    out["losses"] = [float(np.mean(losses[i : i + seg])) for i in range(0, len(losses), seg)]
    out["removed"] = loop.removed
    pool = loop.pool
    out["refreshes"] = (pool.num_refreshes - 1) if pool is not None else len(loop.cluster_sizes)
    out["cluster_sizes"] = loop.cluster_sizes
    return out


def fit_and_score(
    strategy: Strategy,
    task: RetrievalTask,
    schedule: Schedule,
    *,
    seed: int,
    device: torch.device,
    encoder: Any | None = None,
    duplicate_of: torch.Tensor | None = None,
    progress: bool | ProgressCallback = False,
) -> dict[str, Any]:
    """Train fresh towers on ``task`` under ``strategy``, then score its test split.

    ``schedule.mode == "adapter"``: :class:`AdapterTowers` on the task's cached embeddings;
    ``"finetune"``: :class:`FinetuneTowers` on ``encoder``, whose model is put back to the weights
    it had on entry (and in eval mode) afterwards, also when training fails. ``adore`` trains
    the query side only. Training runs under :func:`train_strategy`, inside a forked global RNG
    seeded with ``seed`` (fine-tuning's dropout draws from it; the caller's state is left as it
    was). Each test query is ranked against every test document (one relevant each) by
    :func:`~posneg.mining.metrics.retrieval_metrics`.

    Args:
        strategy: from a factory of :data:`STRATEGIES`.
        task: the embedded task.
        schedule: steps, batch size, optimiser and mode.
        seed: the run's seed.
        device: where the towers train.
        encoder: a :class:`~posneg.mining.encode.TextEncoder` with a sentence-transformers
            ``model`` (finetune mode); unused with adapters.
        duplicate_of: passed to :func:`train_strategy`.
        progress: passed to :func:`train_strategy`.

    Returns:
        :func:`train_strategy`'s dictionary plus ``"metrics"`` (:data:`METRICS`, all NaN when the
        run diverged), ``"train_seconds"`` and ``"eval_seconds"``.

    Raises:
        ValueError: finetune mode without an encoder that has a ``model``.
        TypeError: a ``strategy`` or ``schedule`` of the wrong type, a bad ``progress``.
    """
    from posneg.mining.metrics import retrieval_metrics

    fn = "fit_and_score"
    if not isinstance(strategy, Strategy):
        raise TypeError(f"{fn}: strategy must be a Strategy; got {type(strategy).__name__}")
    if not isinstance(schedule, Schedule):
        raise TypeError(f"{fn}: schedule must be a Schedule; got {type(schedule).__name__}")
    model = getattr(encoder, "model", None) if schedule.mode == "finetune" else None
    if schedule.mode == "finetune" and model is None:
        raise ValueError(f"{fn}: finetune mode needs an encoder with a sentence-transformers model")
    fixed_docs = strategy.key == "adore"
    towers: Towers
    initial_state = None
    if model is not None:
        initial_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        towers = FinetuneTowers(task, encoder, fixed_docs=fixed_docs)
    else:
        towers = AdapterTowers(task, device, fixed_docs=fixed_docs)
    devices = [device] if device.type == "cuda" else []
    start = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            info = train_strategy(
                strategy,
                towers,
                schedule,
                seed=seed,
                device=device,
                duplicate_of=duplicate_of,
                progress=progress,
            )
        train_s = time.perf_counter() - start
        if info["diverged_at_step"] is None:
            q, d = towers.test()
            metrics = retrieval_metrics(q, d, [[i] for i in range(task.n_test)])
        else:
            metrics = {m: math.nan for m in METRICS}
    finally:
        if model is not None:
            model.load_state_dict(initial_state)
            model.eval()
    eval_s = time.perf_counter() - start - train_s
    return {**info, "metrics": metrics, "train_seconds": train_s, "eval_seconds": eval_s}
