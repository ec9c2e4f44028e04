"""`posneg bench contrastive`: self-supervised training per objective, then linear probe and kNN.

For every objective (a spec string such as ``hcl:beta=1.0,tau_plus=0.1``), every batch size and
every seed, the bench trains a small MLP encoder on the train split of scikit-learn's bundled 8x8
digits (or a user ``--data file.npz``) from two augmented views of each sample, freezes it, and
reports on the held-out split:

- **linear probe**: accuracy of a multinomial logistic regression (scikit-learn, L-BFGS,
  deterministic) fitted on the frozen, standardised backbone features of the train split;
- **kNN**: accuracy of a k-nearest-neighbour vote (cosine similarity, k = 20) against the train
  features.

The encoder is ``F -> 256 -> 128`` (Linear, BatchNorm, ReLU twice: the *backbone*, whose output is
probed) followed by a projection head ``128 -> 128 -> 64`` fed to the objective. AMCL brings its
own projection heads and temperature networks (its module owns parameters): it is fed the
backbone output and its parameters join the optimiser. SupCon uses the train labels and is marked
*supervised* in every table; all other objectives see no label.

On request (not in the defaults), ``moco``, ``mochi`` and ``ft`` train MoCo-style: the query is
the first view through the encoder, the key the second view through a momentum copy of it
(momentum 0.99), and the negatives are a :class:`~posneg.negatives.MemoryQueue` of past keys
(1024 keys, or the train size if smaller; it starts filled with keys of random train samples).
``moco`` is :class:`~posneg.losses.InfoNCELoss` with the queue as ``negatives=`` (t = 0.2),
``mochi`` adds MoCHi's hard negative mixing (N, s, s' = 128, 64, 32 by default here, for the small
queue) and ``ft`` Feature Transformation's positive extrapolation and negative interpolation.

Views: for images (the digits) each view is a random shift of up to one pixel (zero padding), a
random contrast scale in [0.7, 1.3], pixel dropout (p = 0.1) and Gaussian noise (sigma = 0.1 on
the [0, 1] pixel scale); for generic ``--data`` vectors, Gaussian noise (sigma = 0.2 on standardised
features) and feature dropout (p = 0.2). Every draw is per sample, vectorised, on the training
device, from one ``torch.Generator`` per run seeded with the run's seed; the weights are
initialised under that seed too (in a forked RNG, the global state is left as it was). Same seed,
same device and same thread count give the same metrics.

Python use::

    from posneg.bench.contrastive import BenchConfig, run
    result = run(BenchConfig(objectives=("nt_xent", "dcl"), batch_sizes=(64,), epochs=20))
    result["aggregate"]          # per objective and batch size: mean/std of both accuracies
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
from rich.console import Console
from torch import nn

from posneg import registry
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
from posneg.data import Dataset, load_digits, load_npz
from posneg.negatives import MemoryQueue

__all__ = [
    "DEFAULT_OBJECTIVES",
    "DEMO_CONFIG",
    "OBJECTIVES",
    "BenchConfig",
    "Encoder",
    "augment_images",
    "augment_vectors",
    "cli",
    "demo",
    "evaluate",
    "knn_accuracy",
    "linear_probe_accuracy",
    "run",
]


# ---------------------------------------------------------------------------------------------
# objectives
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """How the bench builds and calls one objective.

    Attributes:
        key: the spec name (``dcl``), also the registry key.
        call: ``pair`` (loss(z1, z2)), ``views`` (loss(stack([z1, z2]))), ``labels``
            (loss(cat([z1, z2]), cat([y, y]))), ``backbone`` (loss(h1, h2) on backbone
            features; the loss owns parameters) or ``queue`` (MoCo: loss(q, k, queue) with keys
            from a momentum encoder and negatives from a :class:`MemoryQueue`).
        supervised: uses the train labels.
        defaults: constructor arguments the bench sets unless the spec gives them.
        forced: constructor arguments the bench always sets (a spec may not override them).
        technique: the registry key of the class, when it differs from ``key``.
        draws: ``forward`` takes ``generator=`` (MoCHi, Feature Transformation).
    """

    key: str
    call: str
    supervised: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    forced: tuple[str, ...] = ()
    technique: str | None = None
    draws: bool = False


#: Everything `--objective` accepts, in table order.
OBJECTIVES: dict[str, Objective] = {
    o.key: o
    for o in (
        # both directions, as SimCLR's two views are both anchors; B-1 cross-view negatives
        Objective("info_nce", "pair", defaults={"symmetric": True}),
        Objective("nt_xent", "pair"),
        Objective("dcl", "pair"),
        Objective("dclw", "pair"),
        Objective("hcl", "pair"),
        Objective("cacr", "views"),
        # small heads: the temperature networks score every pair of the batch
        Objective(
            "amcl",
            "backbone",
            defaults={"hidden_dim": 128, "out_dim": 64, "temperature_hidden_dim": 32},
            forced=("in_dim",),
        ),
        Objective("supcon", "labels", supervised=True),
        # MoCo family (not in the defaults): momentum encoder + memory queue of past keys
        Objective("moco", "queue", technique="info_nce", defaults={"temperature": 0.2}),
        # the queue holds 1024 keys here, not ImageNet's 16k: a smaller hard set
        Objective(
            "mochi",
            "queue",
            defaults={"num_hard": 128, "num_mix": 64, "num_query_mix": 32},
            draws=True,
        ),
        Objective("ft", "queue", technique="feature_transform", draws=True),
    )
}

#: The objectives run when `--objective` is not given: every in-batch objective of the
#: family (the MoCo-style ``moco``, ``mochi`` and ``ft`` run on request).
DEFAULT_OBJECTIVES: tuple[str, ...] = tuple(k for k, o in OBJECTIVES.items() if o.call != "queue")

#: Keys held by the memory queue of ``moco``, ``mochi`` and ``ft`` (at most the train size),
#: and the momentum of their key encoder.
QUEUE_SIZE = 1024
MOMENTUM = 0.99


def _build_loss(spec: Spec, feat_dim: int) -> nn.Module:
    """Instantiate the objective of ``spec``; a bad argument becomes a one-line UsageError."""
    obj = OBJECTIVES[spec.key]
    where = f"--objective {spec.label()!r}"
    for name in obj.forced:
        if name in spec.kwargs:
            raise UsageError(f"{where}: {name} is set by the bench (the backbone width)")
    try:
        tech = registry.find(obj.technique or spec.key)
        cls = tech.load()
    except (KeyError, ModuleNotFoundError, AttributeError):
        raise UsageError(f"{where}: objective not available in this installation") from None
    kwargs = {**obj.defaults, **spec.kwargs}
    try:
        module = cls(feat_dim, **kwargs) if "in_dim" in obj.forced else cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{where}: {exc}") from None
    if not isinstance(module, nn.Module):  # pragma: no cover - registry entries are modules
        raise UsageError(f"{where}: {tech.name} is not an nn.Module")
    return module


def _loss_value(
    obj: Objective,
    loss: nn.Module,
    model: Encoder,
    v1: torch.Tensor,
    v2: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    h1, h2 = model.backbone(v1), model.backbone(v2)
    if obj.call == "backbone":
        return loss(h1, h2)
    z1, z2 = model.head(h1), model.head(h2)
    if obj.call == "pair":
        return loss(z1, z2)
    if obj.call == "views":
        return loss(torch.stack([z1, z2]))
    return loss(torch.cat([z1, z2]), torch.cat([y, y]))


def _queue_step(
    obj: Objective,
    loss: nn.Module,
    model: Encoder,
    key_model: Encoder,
    v1: torch.Tensor,
    v2: torch.Tensor,
    queue: MemoryQueue,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo step: query from ``model``, key from the momentum encoder, queue negatives."""
    q = model(v1)
    with torch.no_grad():
        k = torch.nn.functional.normalize(key_model(v2), dim=1)
    negatives = queue.negatives()
    if obj.draws:
        return loss(q, k, negatives, generator=gen), k
    return loss(q, k, negatives), k


@torch.no_grad()
def _momentum_update(key_model: Encoder, model: Encoder, m: float) -> None:
    for pk, pq in zip(key_model.parameters(), model.parameters(), strict=True):
        pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)
    for bk, bq in zip(key_model.buffers(), model.buffers(), strict=True):
        bk.copy_(bq)


# ---------------------------------------------------------------------------------------------
# model and views
# ---------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """MLP backbone ``in_dim -> hidden -> feat`` (probed) and projection head ``feat -> proj``."""

    FEAT_DIM = 128
    PROJ_DIM = 64

    def __init__(
        self, in_dim: int, *, hidden: int = 256, feat: int = FEAT_DIM, proj: int = PROJ_DIM
    ) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, feat),
            nn.BatchNorm1d(feat),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(feat, feat), nn.ReLU(), nn.Linear(feat, proj))
        self.feat_dim = feat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projection-head output (B, proj)."""
        return self.head(self.backbone(x))


def augment_images(
    x: torch.Tensor,
    image_shape: tuple[int, int],
    *,
    max_shift: int = 1,
    contrast: tuple[float, float] = (0.7, 1.3),
    drop: float = 0.1,
    noise: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random view of each flattened image in ``x`` (B, H*W), pixel values about [0, 1].

    Per sample: a shift by up to ``max_shift`` pixels in each direction (zero padding), a
    contrast scale drawn from ``contrast``, pixel dropout with probability ``drop`` and Gaussian
    noise of standard deviation ``noise``. Vectorised over the batch; all draws from
    ``generator`` on ``x``'s device.
    """
    b = x.shape[0]
    h, w = image_shape
    dev = x.device
    img = x.reshape(b, h, w)
    s = max_shift
    if s > 0:
        padded = torch.nn.functional.pad(img, (s, s, s, s))
        off = torch.randint(0, 2 * s + 1, (b, 2), device=dev, generator=generator)
        rows = off[:, 0, None] + torch.arange(h, device=dev)  # (B, H)
        cols = off[:, 1, None] + torch.arange(w, device=dev)  # (B, W)
        bidx = torch.arange(b, device=dev)[:, None, None]
        img = padded[bidx, rows[:, :, None], cols[:, None, :]]
    lo, hi = contrast
    scale = lo + (hi - lo) * torch.rand(b, 1, 1, device=dev, dtype=x.dtype, generator=generator)
    img = img * scale
    out = img.reshape(b, h * w)
    if drop > 0:
        keep = torch.rand(out.shape, device=dev, generator=generator) >= drop
        out = out * keep.to(out.dtype)
    if noise > 0:
        out = out + noise * torch.randn(out.shape, device=dev, dtype=x.dtype, generator=generator)
    return out


def augment_vectors(
    x: torch.Tensor,
    *,
    noise: float = 0.2,
    drop: float = 0.2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random view of standardised feature vectors ``x`` (B, F): feature dropout + noise."""
    keep = torch.rand(x.shape, device=x.device, generator=generator) >= drop
    out = x * keep.to(x.dtype)
    return out + noise * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)


def _view_fn(data: Dataset) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """Raw batch -> standardised augmented view."""
    scaler = data.scaler
    shape = data.image_shape
    if shape is not None:

        def image_view(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return scaler(augment_images(x, shape, generator=g))

        return image_view

    def vector_view(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return augment_vectors(scaler(x), generator=g)

    return vector_view


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------


def knn_accuracy(
    train_feats: torch.Tensor,
    train_y: torch.Tensor,
    test_feats: torch.Tensor,
    test_y: torch.Tensor,
    *,
    k: int = 20,
    n_classes: int,
) -> float:
    """Accuracy of a k-nearest-neighbour majority vote under cosine similarity.

    Ties between classes go to the class whose voters are more similar in total.
    """
    a = torch.nn.functional.normalize(test_feats.double(), dim=1)
    b = torch.nn.functional.normalize(train_feats.double(), dim=1)
    k = min(k, b.shape[0])
    sims, idx = (a @ b.T).topk(k, dim=1)
    labels = train_y[idx]
    votes = torch.zeros(a.shape[0], n_classes, dtype=torch.float64, device=a.device)
    votes.scatter_add_(1, labels, torch.ones_like(sims))
    tie = torch.zeros_like(votes).scatter_add_(1, labels, sims + 1.0)  # in (0, 2k]
    pred = (votes + tie / (4.0 * k)).argmax(dim=1)  # tie-break term < 1/2 of a vote
    return float((pred == test_y).double().mean())


def linear_probe_accuracy(
    train_feats: np.ndarray, train_y: np.ndarray, test_feats: np.ndarray, test_y: np.ndarray
) -> float:
    """Accuracy of logistic regression (L-BFGS, deterministic) on standardised frozen features."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    mean = train_feats.mean(axis=0)
    std = train_feats.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    xtr = (train_feats - mean) / std
    xte = (test_feats - mean) / std
    clf = LogisticRegression(C=1.0, max_iter=1000)
    # one BLAS thread: a problem this small only loses time to thread hand-offs
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, train_y)
        pred = clf.predict(xte)
    return float((pred == test_y).mean())


@torch.no_grad()
def _features(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(chunk) for chunk in x.split(1024)])


def evaluate(
    features: Callable[[torch.Tensor], torch.Tensor], data: Dataset, device: torch.device
) -> dict[str, float]:
    """Linear-probe and kNN accuracy of ``features`` (standardised inputs -> (N, d)) on ``data``."""
    xtr = data.scaler(torch.as_tensor(data.x_train, device=device))
    xte = data.scaler(torch.as_tensor(data.x_test, device=device))
    ftr, fte = _features(features, xtr), _features(features, xte)
    ytr = torch.as_tensor(data.y_train, device=device)
    yte = torch.as_tensor(data.y_test, device=device)
    knn = knn_accuracy(ftr, ytr, fte, yte, k=20, n_classes=data.n_classes)
    f_tr = ftr.double().cpu().numpy()
    f_te = fte.double().cpu().numpy()
    probe = linear_probe_accuracy(f_tr, data.y_train, f_te, data.y_test)
    return {"linear_probe": probe, "knn": knn}


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        objectives: spec strings (``dcl``, ``hcl:beta=1.0``).
        batch_sizes: a sweep; every batch is full (the last partial batch of an epoch is dropped).
        epochs: passes over the train split per run.
        seeds: number of training seeds (``first_seed``, ``first_seed + 1``, ...).
        first_seed: the first training seed.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        data: a user ``.npz`` or ``None`` for the digits.
        test_fraction: share of each class held out.
        split_seed: seed of the train/test split (fixed across training seeds).
        threads: CPU threads for torch (0: min(4, available cores)). Default 1: the model is
            tiny, one thread wastes nothing on hand-offs and is not slowed by a busy machine.
        out: output folder.
        quiet: no progress bars and no table.
    """

    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    batch_sizes: tuple[int, ...] = (128,)
    epochs: int = 30
    seeds: int = 2
    first_seed: int = 0
    lr: float = 2e-3
    weight_decay: float = 1e-5
    device: str = "auto"
    data: str | None = None
    test_fraction: float = 0.25
    split_seed: int = 0
    threads: int = 1
    out: str = "runs/contrastive"
    quiet: bool = False


def _validate(cfg: BenchConfig) -> list[Spec]:
    specs = parse_specs(cfg.objectives, OBJECTIVES, flag="--objective", what="objective")
    if not cfg.batch_sizes:
        raise UsageError("--batch-size: give at least one batch size")
    for b in cfg.batch_sizes:
        if b < 2:
            raise UsageError(f"--batch-size: must be >= 2 (a batch needs negatives); got {b}")
    if len(set(cfg.batch_sizes)) != len(cfg.batch_sizes):
        raise UsageError(f"--batch-size: a value is given twice: {list(cfg.batch_sizes)}")
    if cfg.epochs < 1:
        raise UsageError(f"--epochs: must be >= 1; got {cfg.epochs}")
    if cfg.seeds < 1:
        raise UsageError(f"--seeds: must be >= 1 (the number of seeds); got {cfg.seeds}")
    if cfg.first_seed < 0:
        raise UsageError(f"--first-seed: must be >= 0; got {cfg.first_seed}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise UsageError(f"--lr: must be a finite number > 0; got {cfg.lr}")
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise UsageError(f"--weight-decay: must be a finite number >= 0; got {cfg.weight_decay}")
    if not 0.0 < cfg.test_fraction < 1.0:
        raise UsageError(f"--test-fraction: must be in (0, 1); got {cfg.test_fraction}")
    if cfg.threads < 0:
        raise UsageError(f"--threads: must be >= 0 (0: automatic); got {cfg.threads}")
    if cfg.data is not None and not Path(cfg.data).is_file():
        raise UsageError(f"--data: no such file: {cfg.data}")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise UsageError(f"--out: {cfg.out} exists and is not a folder")
    return specs


def _load(cfg: BenchConfig) -> Dataset:
    if cfg.data is None:
        return load_digits(test_fraction=cfg.test_fraction, seed=cfg.split_seed)
    try:
        return load_npz(cfg.data, test_fraction=cfg.test_fraction, seed=cfg.split_seed)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--data: {exc}") from None


def _threads(cfg: BenchConfig) -> int:
    if cfg.threads:
        return cfg.threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _train_one(
    spec: Spec,
    data: Dataset,
    batch_size: int,
    seed: int,
    cfg: BenchConfig,
    device: torch.device,
    tick: Callable[[], None],
) -> dict[str, Any]:
    obj = OBJECTIVES[spec.key]
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = Encoder(data.n_features).to(device)
        loss_fn = _build_loss(spec, model.feat_dim).to(device)
    params = list(model.backbone.parameters())
    if obj.call != "backbone":
        params += list(model.head.parameters())
    params += list(loss_fn.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.as_tensor(data.x_train, device=device)
    y = torch.as_tensor(data.y_train, device=device)
    view = _view_fn(data)
    n = x.shape[0]
    key_model: Encoder | None = None
    queue: MemoryQueue | None = None
    if obj.call == "queue":
        key_model = copy.deepcopy(model).requires_grad_(False)
        queue = MemoryQueue(min(QUEUE_SIZE, n), Encoder.PROJ_DIM, device=device)
        with torch.no_grad():  # start full: keys of a random subset of the train split
            first = torch.randperm(n, device=device, generator=gen)[: queue.capacity]
            keys = key_model(view(x[first], gen))
            queue.enqueue(torch.nn.functional.normalize(keys, dim=1))
    steps_per_epoch = n // batch_size
    start = time.perf_counter()
    cpu_start = time.process_time()
    epoch_losses: list[float] = []
    diverged_at: int | None = None
    model.train()
    loss_fn.train()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, device=device, generator=gen)
        total = torch.zeros((), device=device, dtype=torch.float64)
        for step in range(steps_per_epoch):
            idx = perm[step * batch_size : (step + 1) * batch_size]
            xb = x[idx]
            v1, v2 = view(xb, gen), view(xb, gen)
            if key_model is not None and queue is not None:
                loss, keys = _queue_step(obj, loss_fn, model, key_model, v1, v2, queue, gen)
            else:
                loss = _loss_value(obj, loss_fn, model, v1, v2, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if key_model is not None and queue is not None:
                _momentum_update(key_model, model, MOMENTUM)
                queue.enqueue(keys)
            total += loss.detach().double()
        mean_loss = float(total) / steps_per_epoch
        epoch_losses.append(mean_loss)
        tick()
        if not math.isfinite(mean_loss):
            diverged_at = epoch + 1
            for _ in range(epoch + 1, cfg.epochs):
                tick()
            break
    train_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    model.eval()
    if diverged_at is None:
        metrics = evaluate(model.backbone, data, device)
    else:
        metrics = {"linear_probe": math.nan, "knn": math.nan}
    return {
        "objective": spec.label(),
        "key": spec.key,
        "supervised": obj.supervised,
        "batch_size": batch_size,
        "seed": seed,
        "loss_module": repr(loss_fn),
        **metrics,
        "final_loss": epoch_losses[-1],
        "epoch_losses": epoch_losses,
        "diverged_at_epoch": diverged_at,
        "steps": steps_per_epoch * len(epoch_losses),
        "train_seconds": round(train_s, 3),
        "train_cpu_seconds": round(cpu_s, 3),
    }


def _aggregate(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["objective"], r["batch_size"]), []).append(r)
    out = []
    for (label, bs), rs in groups.items():
        pm, ps = mean_std([r["linear_probe"] for r in rs])
        km, ks = mean_std([r["knn"] for r in rs])
        out.append(
            {
                "objective": label,
                "supervised": rs[0]["supervised"],
                "batch_size": bs,
                "seeds": [r["seed"] for r in rs],
                "linear_probe_mean": pm,
                "linear_probe_std": ps,
                "knn_mean": km,
                "knn_std": ks,
                "train_seconds_mean": mean_std([r["train_seconds"] for r in rs])[0],
                "train_cpu_seconds_mean": mean_std([r["train_cpu_seconds"] for r in rs])[0],
            }
        )
    return out


def _gaps(runs: Sequence[Mapping[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """Per batch size, the paired per-seed difference ``a - b`` of both accuracies."""
    by = {(r["objective"], r["batch_size"], r["seed"]): r for r in runs}
    out = []
    for bs in sorted({r["batch_size"] for r in runs}):
        seeds = sorted(s for (o, bb, s) in by if o == a and bb == bs and (b, bs, s) in by)
        if not seeds:
            continue
        d_probe = [by[(a, bs, s)]["linear_probe"] - by[(b, bs, s)]["linear_probe"] for s in seeds]
        d_knn = [by[(a, bs, s)]["knn"] - by[(b, bs, s)]["knn"] for s in seeds]
        pm, ps = mean_std(d_probe)
        km, ks = mean_std(d_knn)
        out.append(
            {
                "batch_size": bs,
                "seeds": seeds,
                "linear_probe_gap_mean": pm,
                "linear_probe_gap_std": ps,
                "knn_gap_mean": km,
                "knn_gap_std": ks,
            }
        )
    return out


def _pp(mean: float, sd: float, n: int) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{100 * mean:+.1f}" + (f" ± {100 * sd:.1f}" if n > 1 else "")


def _pct(mean: float, sd: float, n: int) -> str:
    return fmt(mean, sd, pct=True) if n > 1 or math.isnan(mean) else f"{100 * mean:.1f}"


def _plot(out: Path, agg: Sequence[Mapping[str, Any]], raw: Mapping[str, float]) -> list[Path]:
    from matplotlib.figure import Figure

    labels = list(dict.fromkeys(a["objective"] for a in agg))
    sizes = sorted({a["batch_size"] for a in agg})
    by = {(a["objective"], a["batch_size"]): a for a in agg}
    sup = {a["objective"]: a["supervised"] for a in agg}
    names = [f"{lab}\n(supervised)" if sup[lab] else lab for lab in labels]
    paths = []
    fig = Figure(figsize=(max(6.0, 1.1 * len(labels) * max(1, len(sizes)) ** 0.5 + 2), 6.5))
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / len(sizes)
    xs = np.arange(len(labels))
    for ax, metric, title in zip(
        axes, ("linear_probe", "knn"), ("linear probe", "kNN (k=20, cosine)"), strict=True
    ):
        for j, bs in enumerate(sizes):
            means = [
                100 * by[(lab, bs)][f"{metric}_mean"] if (lab, bs) in by else 0 for lab in labels
            ]
            sds = [100 * by[(lab, bs)][f"{metric}_std"] if (lab, bs) in by else 0 for lab in labels]
            ax.bar(
                xs + (j - (len(sizes) - 1) / 2) * width,
                means,
                width,
                yerr=sds,
                capsize=2,
                label=f"batch {bs}",
            )
        ax.axhline(100 * raw[metric], color="grey", ls="--", lw=1, label="raw input")
        lo = min(
            [100 * a[f"{metric}_mean"] for a in agg if not math.isnan(a[f"{metric}_mean"])]
            + [100 * raw[metric]]
        )
        ax.set_ylim(max(0.0, lo - 10), 100)
        ax.set_ylabel(f"{title} accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[1].set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
    fig.suptitle("posneg bench contrastive: held-out accuracy (mean ± std over seeds)")
    paths.append(atomic_save_figure(fig, out / "accuracy.png"))
    if len(sizes) > 1:
        fig = Figure(figsize=(10, 4.5))
        axes = fig.subplots(1, 2)
        for ax, metric, title in zip(
            axes, ("linear_probe", "knn"), ("linear probe", "kNN"), strict=True
        ):
            for lab, name in zip(labels, names, strict=True):
                pts = [(bs, by[(lab, bs)]) for bs in sizes if (lab, bs) in by]
                ax.errorbar(
                    [p[0] for p in pts],
                    [100 * p[1][f"{metric}_mean"] for p in pts],
                    yerr=[100 * p[1][f"{metric}_std"] for p in pts],
                    marker="o",
                    capsize=3,
                    label=name.replace("\n", " "),
                )
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes, [str(s) for s in sizes])
            ax.set_xlabel("batch size")
            ax.set_ylabel(f"{title} accuracy (%)")
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=7)
        fig.suptitle("accuracy vs batch size (mean ± std over seeds)")
        paths.append(atomic_save_figure(fig, out / "batch_sweep.png"))
    return paths


def run(cfg: BenchConfig, *, echo: Console | None = None) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Returns:
        ``{"runs": [...], "aggregate": [...], "raw_input": {...}, "gaps": {...},
        "report": path of results.md, "plots": [...]}``.

    Raises:
        UsageError: a bad spec, value or file (names the flag); the objective's own
            ValueError/TypeError text for a bad constructor argument.
    """
    specs = _validate(cfg)
    with torch.random.fork_rng(devices=[]):  # AMCL draws its initial weights
        for spec in specs:  # validate every spec before any training starts
            _build_loss(spec, Encoder.FEAT_DIM)
    device = resolve_device(cfg.device)
    data = _load(cfg)
    for b in cfg.batch_sizes:
        if b > len(data.x_train):
            raise UsageError(
                f"--batch-size: {b} exceeds the {len(data.x_train)} training samples of {data.name}"
            )
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    old_threads = torch.get_num_threads()
    threads = _threads(cfg)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    out = Path(cfg.out)
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        jobs = [(s, b, seed) for b in cfg.batch_sizes for s in specs for seed in seeds]
        with progress_bar(disable=cfg.quiet) as progress:
            overall = progress.add_task("all runs", total=len(jobs) * cfg.epochs)
            current = progress.add_task("", total=cfg.epochs)
            for spec, bs, seed in jobs:
                progress.reset(
                    current, total=cfg.epochs, description=f"{spec.label()} b={bs} seed={seed}"
                )

                def tick() -> None:
                    progress.advance(current)
                    progress.advance(overall)

                runs.append(_train_one(spec, data, bs, seed, cfg, device, tick))
        raw = evaluate(lambda t: t, data, device)
    finally:
        torch.set_num_threads(old_threads)
    elapsed = time.perf_counter() - started
    agg = _aggregate(runs)
    labels = [s.label() for s in specs]
    gaps = {}
    for cand in specs:
        if cand.key not in ("dcl", "dclw"):
            continue
        for base in specs:
            if base.key in ("nt_xent", "info_nce") and dict(base.kwargs) == dict(cand.kwargs):
                gaps[f"{cand.label()} - {base.label()}"] = _gaps(runs, cand.label(), base.label())
    header = [
        "objective",
        "labels",
        "batch",
        "linear probe (%)",
        "kNN (%)",
        "train s / run",
        "CPU s / run",
    ]
    rows = [
        (
            a["objective"],
            "supervised" if a["supervised"] else "self-sup.",
            str(a["batch_size"]),
            _pct(a["linear_probe_mean"], a["linear_probe_std"], len(a["seeds"])),
            _pct(a["knn_mean"], a["knn_std"], len(a["seeds"])),
            f"{a['train_seconds_mean']:.1f}",
            f"{a['train_cpu_seconds_mean']:.1f}",
        )
        for a in agg
    ]
    rows.append(
        (
            "raw input (no training)",
            "-",
            "-",
            f"{100 * raw['linear_probe']:.1f}",
            f"{100 * raw['knn']:.1f}",
            "-",
            "-",
        )
    )
    config = {
        **asdict(cfg),
        "objectives": labels,
        "batch_sizes": list(cfg.batch_sizes),
        "seed_list": seeds,
        "resolved_device": str(device),
        "torch_threads": threads if device.type == "cpu" else old_threads,
        "data_name": data.name,
        "n_train": len(data.x_train),
        "n_test": len(data.x_test),
        "n_features": data.n_features,
        "n_classes": data.n_classes,
        "views": "image: shift<=1px, contrast [0.7,1.3], pixel dropout 0.1, noise 0.1"
        if data.image_shape
        else "vector: feature dropout 0.2, noise 0.2 (standardised scale)",
        "encoder": "MLP F-256-128 (BN, ReLU) backbone + 128-128-64 head; Adam",
        "probe": "sklearn LogisticRegression(C=1, lbfgs) on standardised backbone features",
        "knn": "k=20, cosine, majority vote",
        "elapsed_seconds": round(elapsed, 1),
    }
    notes = [
        f"Held-out accuracy on {data.name} ({len(data.x_train)} train / {len(data.x_test)} test, "
        f"stratified, split seed {cfg.split_seed}), mean ± sample std over seeds {seeds}; "
        f"{cfg.epochs} epochs per run. *supervised* objectives use the train labels; the others "
        "see none. `raw input` probes the standardised input features themselves.",
    ]
    for name, rows_g in gaps.items():
        notes += ["", f"Paired gap `{name}` (percentage points, mean ± std over seeds):", ""]
        notes += [
            f"- batch {g['batch_size']}: linear probe "
            f"{_pp(g['linear_probe_gap_mean'], g['linear_probe_gap_std'], len(g['seeds']))}, "
            f"kNN {_pp(g['knn_gap_mean'], g['knn_gap_std'], len(g['seeds']))}"
            for g in rows_g
        ]
    diverged = [r for r in runs if r["diverged_at_epoch"] is not None]
    if diverged:
        notes += [
            "",
            "Diverged runs (non-finite loss; metrics n/a): "
            + ", ".join(
                f"{r['objective']} b={r['batch_size']} seed={r['seed']} "
                f"(epoch {r['diverged_at_epoch']})"
                for r in diverged
            ),
        ]
    results = {"runs": runs, "aggregate": agg, "raw_input": raw, "gaps": gaps}
    report = write_report(
        out,
        title="posneg bench contrastive",
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes="\n".join(notes),
    )
    plots = _plot(out, agg, raw)
    if not cfg.quiet:
        table = rich_table("posneg bench contrastive", header, rows)
        table.columns[0].min_width = max(len(r[0]) for r in rows[:-1])  # spec labels unbroken
        stdout = Console()
        if not stdout.is_terminal:  # piped or logged: no need to fit 80 columns
            stdout = Console(width=160)
        for column in table.columns[1:]:
            column.no_wrap = True
        stdout.print(table)
        for line in notes[1:]:
            if line:
                stdout.print(line, soft_wrap=True)
        console.print(f"finished in {elapsed:.0f} s; report: [bold]{report}[/bold]")
    return {**results, "report": report, "plots": plots, "config": config}


# ---------------------------------------------------------------------------------------------
# CLI and demo
# ---------------------------------------------------------------------------------------------


def cli(
    objective: Annotated[
        list[str] | None,
        typer.Option(
            "--objective",
            "-o",
            help="Objective spec, repeatable: info_nce, nt_xent, dcl, dclw, hcl, cacr, amcl, "
            "supcon (supervised), moco, mochi, ft, with arguments as in "
            "'hcl:beta=1.0,tau_plus=0.1'. Default: all but moco, mochi and ft.",
        ),
    ] = None,
    batch_size: Annotated[
        list[int] | None,
        typer.Option("--batch-size", "-b", help="Batch size, repeatable (a sweep). Default: 128."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs per run.")] = BenchConfig.epochs,
    seeds: Annotated[
        int, typer.Option(help="Number of training seeds (first-seed, first-seed+1, ...).")
    ] = BenchConfig.seeds,
    first_seed: Annotated[int, typer.Option(help="First training seed.")] = BenchConfig.first_seed,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = BenchConfig.lr,
    weight_decay: Annotated[
        float, typer.Option(help="Adam weight decay.")
    ] = BenchConfig.weight_decay,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = BenchConfig.device,
    data: Annotated[
        Path | None,
        typer.Option(help=".npz with X (N, F) floats and y (N,) int labels. Default: 8x8 digits."),
    ] = None,
    test_fraction: Annotated[
        float, typer.Option(help="Share of each class held out.")
    ] = BenchConfig.test_fraction,
    split_seed: Annotated[
        int, typer.Option(help="Seed of the train/test split.")
    ] = BenchConfig.split_seed,
    threads: Annotated[
        int, typer.Option(help="CPU threads for torch (0: min(4, cores)).")
    ] = BenchConfig.threads,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path(BenchConfig.out),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no table.")] = False,
) -> None:
    """Self-supervised training per contrastive objective; linear-probe and kNN accuracy.

    Every objective, batch size and seed trains the same MLP from two augmented views, then the
    frozen backbone is probed on a held-out split. Writes results.json, results.md and PNG plots
    into --out.
    """
    cfg = BenchConfig(
        objectives=tuple(objective) if objective else DEFAULT_OBJECTIVES,
        batch_sizes=tuple(batch_size) if batch_size else BenchConfig.batch_sizes,
        epochs=epochs,
        seeds=seeds,
        first_seed=first_seed,
        lr=lr,
        weight_decay=weight_decay,
        device=device,
        data=None if data is None else str(data),
        test_fraction=test_fraction,
        split_seed=split_seed,
        threads=threads,
        out=str(out),
        quiet=quiet,
    )
    result = run(cfg)
    if quiet:
        typer.echo(str(result["report"]))


#: The demo preset: every objective, one seed, few epochs (about a minute on 2 cores).
DEMO_CONFIG = BenchConfig(epochs=10, seeds=1, batch_sizes=(128,))


def demo(out: Path) -> DemoSummary:
    """A small preset for `posneg demo`: every objective on digits, one seed, 10 epochs."""
    cfg = BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out)})
    result = run(cfg)
    rows = [
        (
            a["objective"] + (" (supervised)" if a["supervised"] else ""),
            "linear probe / kNN acc. (%)",
            f"{100 * a['linear_probe_mean']:.1f} / {100 * a['knn_mean']:.1f}",
        )
        for a in result["aggregate"]
    ]
    raw = result["raw_input"]
    rows.append(
        (
            "raw input (no training)",
            "linear probe / kNN acc. (%)",
            f"{100 * raw['linear_probe']:.1f} / {100 * raw['knn']:.1f}",
        )
    )
    return DemoSummary(family="contrastive", rows=rows, report=Path(result["report"]))
