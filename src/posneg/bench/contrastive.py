"""`posneg bench contrastive`: self-supervised training per objective, then linear probe and kNN.

For every objective spec (``hcl:beta=1.0,tau_plus=0.1``), batch size and seed, a small encoder
learns from two augmented views (:mod:`posneg.data.views`) of the train split of the 8x8 digits
(or ``--data file.npz``: MLP ``F -> 256 -> 128``, Linear, BatchNorm, ReLU twice; ``--dataset
mnist1d``: a 1-D CNN, MNIST-1D's transforms as views, plus a supervised cross-entropy row). Its
frozen *backbone* is scored on the held-out split by a linear probe and a kNN vote
(:mod:`posneg.bench._probe`); a head ``128 -> 128 -> 64`` feeds the objective. AMCL brings its
own heads and temperature networks: it gets the backbone output and its parameters join the
optimiser. SupCon uses the labels and is marked *supervised*.

On request, ``moco``, ``mochi`` and ``feature_transform`` (alias ``ft``) train MoCo-style: the
query is the first view through the encoder, the key the second through a momentum copy (0.99),
the negatives a :class:`~posneg.negatives.MemoryQueue` of 1024 past keys (at most the train size;
it starts full). ``moco`` is InfoNCE (t = 0.2) with the queue as ``negatives=``; ``mochi`` adds
hard negative mixing (N, s, s' = 128, 64, 32 for the small queue), ``feature_transform``
positive extrapolation and negative interpolation. Draws come from one generator per run seeded
with its seed; same seed, device and thread count give the same metrics.

Python use: ``run(BenchConfig(objectives=("nt_xent", "dcl"), batch_sizes=(64,), epochs=20))``;
its ``["aggregate"]``: per objective and batch size, mean/std of both accuracies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor as T
from torch import nn

from posneg.bench import _harness as h
from posneg.bench import _report as rep
from posneg.bench._models import Encoder, MomentumKeys, encoder_for
from posneg.bench._probe import REFERENCE, evaluate, supervised_reference
from posneg.bench._probe import knn_accuracy as knn_accuracy
from posneg.bench._probe import linear_probe_accuracy as linear_probe_accuracy
from posneg.bench._report import DemoSummary
from posneg.data import Dataset, load_digits, load_mnist1d, load_npz
from posneg.data.views import augment_images as augment_images
from posneg.data.views import augment_vectors as augment_vectors
from posneg.data.views import view_fn

_M = ("linear_probe", "knn")

__all__ = ["DEFAULT_OBJECTIVES", "DEMO_CONFIG", "OBJECTIVES", "PARSER", "BenchConfig", "Encoder"]
__all__ += ["cli", "demo", "run"]


@dataclass(frozen=True)
class Objective:
    """How the bench builds and calls one objective (``key``: a registry key).

    ``call`` is ``pair`` (loss(z1, z2)), ``views`` (loss(stack([z1, z2]))), ``labels``
    (loss(cat([z1, z2]), cat([y, y])), *supervised*), ``backbone`` (loss(h1, h2) on backbone
    features; the loss owns parameters) or ``queue`` (MoCo: loss(q, k, queue negatives)).
    ``defaults`` are constructor arguments a spec may override; with ``in_dim`` the bench sets
    ``in_dim`` to the backbone width; ``loss`` is the registry key of the class built when it is
    not ``key``; ``draws``: ``forward`` takes ``generator=``.
    """

    key: str
    call: str
    supervised: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    in_dim: bool = False
    loss: str | None = None
    draws: bool = False


_AMCL = {"hidden_dim": 128, "out_dim": 64, "temperature_hidden_dim": 32}
_MOCHI = {"num_hard": 128, "num_mix": 64, "num_query_mix": 32}

#: Everything `--objective` accepts, in table order. InfoNCE runs in both directions (SimCLR's
#: two views are both anchors); AMCL gets small heads (its temperature networks score every pair);
#: the MoCo queue holds 1024 keys here, not ImageNet's 16k: a smaller hard set.
OBJECTIVES: dict[str, Objective] = {
    o.key: o
    for o in (
        Objective("info_nce", "pair", defaults={"symmetric": True}),
        Objective("nt_xent", "pair"),
        Objective("dcl", "pair"),
        Objective("dclw", "pair"),
        Objective("hcl", "pair"),
        Objective("cacr", "views"),
        Objective("amcl", "backbone", in_dim=True, defaults=_AMCL),
        Objective("supcon", "labels", supervised=True),
        Objective("moco", "queue", loss="info_nce", defaults={"temperature": 0.2}),
        Objective("mochi", "queue", draws=True, defaults=_MOCHI),
        Objective("feature_transform", "queue", draws=True),
    )
}

#: The spec parser of `--objective`: every key is a registry key (``ft`` is an alias).
PARSER = h.SpecParser("--objective", "objective", tuple(OBJECTIVES))

#: The objectives run when `--objective` is not given: the in-batch ones.
DEFAULT_OBJECTIVES: tuple[str, ...] = tuple(k for k, o in OBJECTIVES.items() if o.call != "queue")

#: Keys in the memory queue of the MoCo-style objectives (at most the train size), momentum.
QUEUE_SIZE = 1024
MOMENTUM = 0.99


def _build_loss(spec: h.Spec, feat_dim: int) -> nn.Module:
    """Instantiate the objective of ``spec``; a bad argument becomes a one-line UsageError."""
    obj, where = OBJECTIVES[spec.key], PARSER.where(spec)
    cls = h.load_technique(obj.loss or obj.key, where)
    forced = {"in_dim": feat_dim} if obj.in_dim else {}
    why = "the backbone width"
    loss: nn.Module = h.build(cls, spec, where, defaults=obj.defaults, forced=forced, reason=why)
    return loss


def _loss_value(obj: Objective, loss: nn.Module, model: Encoder, v1: T, v2: T, y: T) -> T:
    h1, h2 = model.backbone(v1), model.backbone(v2)
    if obj.call == "backbone":
        return loss(h1, h2)
    z1, z2 = model.head(h1), model.head(h2)
    if obj.call == "pair":
        return loss(z1, z2)
    if obj.call == "views":
        return loss(torch.stack([z1, z2]))
    return loss(torch.cat([z1, z2]), torch.cat([y, y]))


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        objectives: objective specs, repeatable: info_nce, nt_xent, dcl, dclw, hcl, cacr, amcl,
            supcon (supervised), moco, mochi, feature_transform (alias ft), with arguments as
            in 'hcl:beta=1.0,tau_plus=0.1'. Default: all but moco, mochi, feature_transform.
        batch_sizes: batch size, repeatable (a sweep). Default: 128. Every batch is full (the
            last partial batch of an epoch is dropped).
        epochs: passes over the train split per run. Default: 30 (digits), 12 (mnist1d).
        seeds: number of training seeds (``first_seed``, ``first_seed + 1``, ...).
        first_seed: the first training seed.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        dataset: digits (8x8 digits, MLP) or mnist1d (MNIST-1D, fixed 4000/1000 split, 1-D CNN,
            its own transforms as views, a supervised cross-entropy reference row).
        data: .npz with X (N, F) floats and y (N,) int labels (instead of --dataset).
        test_fraction: share of each class held out.
        split_seed: seed of the train/test split (fixed across training seeds).
        threads: CPU threads for torch (0: min(4, available cores)). Default 1: the model is
            tiny, one thread wastes nothing on hand-offs and is not slowed by a busy machine.
        out: output folder.
        quiet: no progress bars and no table.
    """

    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    batch_sizes: tuple[int, ...] = (128,)
    epochs: int | None = None
    seeds: int = 2
    first_seed: int = 0
    lr: float = 2e-3
    weight_decay: float = 1e-5
    device: str = "auto"
    dataset: str = "digits"
    data: str | None = None
    test_fraction: float = 0.25
    split_seed: int = 0
    threads: int = 1
    out: str = "runs/contrastive"
    quiet: bool = False


def _validate(cfg: BenchConfig) -> list[h.Spec]:
    specs = PARSER.parse(cfg.objectives)
    if not cfg.batch_sizes:
        raise h.UsageError("--batch-size: give at least one batch size")
    for b in cfg.batch_sizes:
        if b < 2:
            raise h.UsageError(f"--batch-size: must be >= 2 (a batch needs negatives); got {b}")
    if len(set(cfg.batch_sizes)) != len(cfg.batch_sizes):
        raise h.UsageError(f"--batch-size: a value is given twice: {list(cfg.batch_sizes)}")
    if cfg.epochs is not None and cfg.epochs < 1:
        raise h.UsageError(f"--epochs: must be >= 1; got {cfg.epochs}")
    if cfg.dataset not in EPOCHS:
        raise h.UsageError(f"--dataset: choose one of digits, mnist1d; got {cfg.dataset!r}")
    if cfg.data is not None and cfg.dataset != "digits":
        raise h.UsageError(f"--data: give --data or --dataset {cfg.dataset}, not both")
    h.check_common(cfg)
    h.check_number("--lr", cfg.lr, low=0.0, closed="none")
    h.check_number("--weight-decay", cfg.weight_decay, low=0.0)
    h.check_number("--test-fraction", cfg.test_fraction, low=0.0, high=1.0, closed="none")
    h.check_data_file("--data", cfg.data)
    with torch.random.fork_rng(devices=[]):  # AMCL draws its initial weights
        for spec in specs:  # every spec is built once before any training starts
            _build_loss(spec, Encoder.FEAT_DIM)
    return specs


EPOCHS = {"digits": 30, "mnist1d": 12}  #: default epochs (mnist1d: under 5 minutes on 2 cores)


def _epochs(cfg: BenchConfig) -> int:
    return cfg.epochs or EPOCHS[cfg.dataset]


def _load(cfg: BenchConfig) -> Dataset:
    flag = "--data" if cfg.data is not None else "--dataset mnist1d"
    try:
        if cfg.data is not None:
            return load_npz(cfg.data, test_fraction=cfg.test_fraction, seed=cfg.split_seed)
        if cfg.dataset == "mnist1d":
            return load_mnist1d()
    except (ImportError, ValueError, OSError) as exc:
        raise h.UsageError(f"{flag}: {exc}") from None
    return load_digits(test_fraction=cfg.test_fraction, seed=cfg.split_seed)


def _train_one(
    job: tuple[h.Spec | None, int, int],
    data: Dataset,
    cfg: BenchConfig,
    device: torch.device,
    tick: Any,
) -> dict[str, Any]:
    spec, batch_size, seed = job
    if spec is None:  # the supervised reference
        with h.seeded(device, seed):
            ref = encoder_for(data).to(device)
        adam, e = (cfg.lr, cfg.weight_decay), _epochs(cfg)
        return supervised_reference(ref, data, view_fn(data), e, batch_size, adam, seed, tick)
    obj = OBJECTIVES[spec.key]
    with h.seeded(device, seed):
        model = encoder_for(data).to(device)
        loss_fn = _build_loss(spec, model.feat_dim).to(device)
    params = list(model.backbone.parameters())
    if obj.call != "backbone":
        params += list(model.head.parameters())
    params += list(loss_fn.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.as_tensor(data.x_train, device=device)
    y = torch.as_tensor(data.y_train, device=device)
    view = view_fn(data)
    moco = None
    if obj.call == "queue":
        moco = MomentumKeys(model, x, view, gen, size=QUEUE_SIZE, momentum=MOMENTUM)
    n, steps = x.shape[0], x.shape[0] // batch_size
    start, cpu_start = time.perf_counter(), time.process_time()
    epoch_losses: list[float] = []
    diverged_at: int | None = None
    model.train()
    loss_fn.train()
    for epoch in range(_epochs(cfg)):
        perm = torch.randperm(n, device=device, generator=gen)
        total = torch.zeros((), device=device, dtype=torch.float64)
        for step in range(steps):
            idx = perm[step * batch_size : (step + 1) * batch_size]
            xb = x[idx]
            v1, v2 = view(xb, gen), view(xb, gen)
            if moco is not None:
                loss = moco.loss(loss_fn, model, v1, v2, gen if obj.draws else None)
            else:
                loss = _loss_value(obj, loss_fn, model, v1, v2, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if moco is not None:
                moco.update(model)
            total += loss.detach().double()
        epoch_losses.append(float(total) / steps)
        tick()
        if not math.isfinite(epoch_losses[-1]):
            diverged_at = epoch + 1
            break
    train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()
    nan = {"linear_probe": math.nan, "knn": math.nan}
    metrics = evaluate(model.backbone, data, device) if diverged_at is None else nan
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
        "steps": steps * len(epoch_losses),
        "train_seconds": round(train_s, 3),
        "train_cpu_seconds": round(cpu_s, 3),
    }


METRICS = (("linear_probe", "linear probe accuracy (%)"), ("knn", "kNN (k=20) accuracy (%)"))


def _gaps(runs: Sequence[Mapping[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """Per batch size (ascending), the paired per-seed difference ``a - b`` of both accuracies."""
    kw: dict[str, Any] = {"label": "objective", "group": "batch_size"}
    both = zip(*(rep.paired(runs, a, b, metric=m, **kw) for m, _ in METRICS), strict=True)
    out = []
    for p, k in both:
        pairs = (("linear_probe", p), ("knn", k))
        gap = {f"{m}_gap_{s}": d[f"diff_{s}"] for m, d in pairs for s in ("mean", "std")}
        out.append({"batch_size": p["batch_size"], "seeds": p["seeds"], **gap})
    return sorted(out, key=lambda g: g["batch_size"])


def _plot(out: Path, agg: Sequence[Mapping[str, Any]], raw: Mapping[str, float]) -> list[Path]:
    sup = {a["objective"]: a["supervised"] for a in agg}
    plot = rep.MetricPlot(
        "posneg bench contrastive: held-out accuracy (mean ± std over seeds)",
        "objective",
        "batch_size",
        METRICS,
        scale=100.0,
        margin=0.1,
        baseline=raw,
        series=lambda bs: f"batch {bs}",
        ticks=lambda lab: f"{lab}\n(supervised)" if sup[lab] else lab,
    )
    paths = [plot.save(out / "accuracy.png", agg)]
    if len({a["batch_size"] for a in agg}) > 1:
        title = "accuracy vs batch size (mean ± std over seeds)"
        kw: dict[str, Any] = {"x": "batch_size", "series": "objective", "metrics": METRICS}
        name = lambda lab: lab + (" (supervised)" if sup[lab] else "")  # noqa: E731
        paths.append(rep.sweep_plot(out / "batch_sweep.png", agg, title=title, name=name, **kw))
    return paths


def _notes(cfg: BenchConfig, data: Dataset, runs: list[Any], gaps: Mapping[str, Any]) -> list[str]:
    split = f"stratified, split seed {cfg.split_seed}"
    split = "the fixed MNIST-1D split" if data.name == "mnist1d" else split
    notes = [
        f"Held-out accuracy on {data.name} ({len(data.x_train)} train / {len(data.x_test)} test, "
        f"{split}), mean ± sample std over seeds "
        f"{h.seed_list(cfg)}; {_epochs(cfg)} epochs per run. *supervised* objectives use the train "
        "labels; the others see none. `raw input` probes the standardised input features.",
    ]
    for name, rows_g in gaps.items():
        notes += ["", f"Paired gap `{name}` (percentage points, mean ± std over seeds):", ""]
        for g in rows_g:
            pp = [rep.pp_cell(g[f"{m}_gap_mean"], g[f"{m}_gap_std"], len(g["seeds"])) for m in _M]
            notes.append(f"- batch {g['batch_size']}: linear probe {pp[0]}, kNN {pp[1]}")
    bad = [r for r in runs if r["diverged_at_epoch"] is not None]
    if bad:
        form = "{objective} b={batch_size} seed={seed} (epoch {diverged_at_epoch})"
        what = [form.format(**r) for r in bad]
        notes += ["", "Diverged runs (non-finite loss; metrics n/a): " + ", ".join(what)]
    return notes


#: What the runs use, recorded in the report's configuration.
SETUP = {
    "encoder": "MLP F-256-128 (BN, ReLU) backbone + 128-128-64 head; Adam",
    "probe": "sklearn LogisticRegression(C=1, lbfgs) on standardised backbone features",
    "knn": "k=20, cosine, majority vote",
}
SEQ_SETUP = {
    "encoder": "1-D CNN (3 conv, 16-32-32 ch., BN, ReLU) -> 128 backbone + 128-128-64 head; Adam",
    "views": "MNIST-1D transforms: scale 0.4, roll <= 8, shear 0.75, noise 0.25 corr. + 0.02 iid",
}
VIEWS = (
    "vector: feature dropout 0.2, noise 0.2 (standardised scale)",
    "image: shift<=1px, contrast [0.7,1.3], pixel dropout 0.1, noise 0.1",
)
HEADER = ["objective", "labels", "batch", "linear probe (%)", "kNN (%)", "train s / run"]
HEADER += ["CPU s / run"]


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Returns:
        ``{"runs": [...], "aggregate": [...], "raw_input": {...}, "gaps": {...},
        "report": path of results.md, "plots": [...], "config": {...}}``.

    Raises:
        UsageError: a bad spec, value or file (names the flag); the objective's own
            ValueError/TypeError text for a bad constructor argument.
    """
    specs = _validate(cfg)
    device = h.resolve_device(cfg.device)
    data = _load(cfg)
    n = len(data.x_train)
    for b in cfg.batch_sizes:
        if b > n:
            raise h.UsageError(f"--batch-size: {b} exceeds the {n} training samples of {data.name}")
    seeds = h.seed_list(cfg)
    jobs: list[Any] = [(s, b, seed) for b in cfg.batch_sizes for s in specs for seed in seeds]
    if data.name == "mnist1d":  # the supervised reference, at the first batch size
        jobs += [(None, cfg.batch_sizes[0], seed) for seed in seeds]
    started = time.perf_counter()
    with h.torch_threads(cfg.threads, device) as threads:
        runs = h.run_grid(
            jobs,
            lambda job, tick: _train_one(job, data, cfg, device, tick),
            describe=lambda job: (
                f"{job[0].label() if job[0] else REFERENCE} b={job[1]} seed={job[2]}"
            ),
            steps=_epochs(cfg),
            quiet=cfg.quiet,
        )
        raw = evaluate(lambda t: t, data, device)
    elapsed = time.perf_counter() - started
    times = ("train_seconds", "train_cpu_seconds")
    by = ("objective", "batch_size")
    agg = rep.aggregate(runs, by=by, keep=("supervised",), metrics=_M, means=times)
    gaps = {
        f"{c.label()} - {b.label()}": _gaps(runs, c.label(), b.label())
        for c in specs
        if c.key in ("dcl", "dclw")
        for b in specs
        if b.key in ("nt_xent", "info_nce") and dict(b.kwargs) == dict(c.kwargs)
    }
    rows = [
        (
            a["objective"],
            "supervised" if a["supervised"] else "self-sup.",
            str(a["batch_size"]),
            *(rep.pct_cell(a[m + "_mean"], a[m + "_std"], len(a["seeds"])) for m in _M),
            *(f"{a[t + '_mean']:.1f}" for t in times),
        )
        for a in agg
    ]
    raw_cells = (f"{100 * raw['linear_probe']:.1f}", f"{100 * raw['knn']:.1f}")
    rows.append(("raw input (no training)", "-", "-", *raw_cells, "-", "-"))
    config = rep.resolved_config(
        cfg,
        seeds=seeds,
        device=device,
        threads=threads,
        objectives=[s.label() for s in specs],
        batch_sizes=list(cfg.batch_sizes),
        epochs=_epochs(cfg),
        data_name=data.name,
        n_train=n,
        n_test=len(data.x_test),
        n_features=data.n_features,
        n_classes=data.n_classes,
        **{"views": VIEWS[data.image_shape is not None], **SETUP}
        | (SEQ_SETUP if data.name == "mnist1d" else {}),
        elapsed_seconds=round(elapsed, 1),
    )
    return rep.publish(
        cfg.out,
        title="posneg bench contrastive",
        config=config,
        results={"runs": runs, "aggregate": agg, "raw_input": raw, "gaps": gaps},
        header=HEADER,
        rows=rows,
        notes=_notes(cfg, data, runs, gaps),
        plots=lambda out: _plot(out, agg, raw),
        quiet=cfg.quiet,
        elapsed=elapsed,
        keep_first_column=True,
    )


#: `posneg bench contrastive`: one option per field of :class:`BenchConfig`.
cli = h.command(
    BenchConfig,
    run,
    doc="""Self-supervised training per contrastive objective; linear-probe and kNN accuracy.

    Every objective, batch size and seed trains the same MLP from two augmented views, then the
    frozen backbone is probed on a held-out split. Writes results.json, results.md and PNG plots
    into --out.
    """,
    flags={"objectives": ("--objective", "-o"), "batch_sizes": ("--batch-size", "-b")},
)

#: The demo presets: every objective on digits, one seed, 10 epochs (about a minute on 2
#: cores); NT-Xent on MNIST-1D with the 1-D CNN, one seed, 4 epochs (one row).
DEMO_CONFIG = BenchConfig(epochs=10, seeds=1, batch_sizes=(128,))
DEMO_MNIST1D = BenchConfig(objectives=("nt_xent",), dataset="mnist1d", epochs=4, seeds=1)


def demo(out: Path) -> DemoSummary:
    """`posneg demo`'s presets: every objective on digits, then NT-Xent on MNIST-1D (one row)."""
    result = run(BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out)}))
    seq = run(BenchConfig(**{**asdict(DEMO_MNIST1D), "out": str(out / "mnist1d")}))
    raw = {"objective": "raw input (no training)", "supervised": False}
    raw |= {f"{m}_mean": v for m, v in result["raw_input"].items()}
    first = seq["aggregate"][0]
    seq_row = {**first, "objective": f"{first['objective']} on MNIST-1D (1-D CNN, 4 epochs)"}
    rows = [
        (
            a["objective"] + (" (supervised)" if a["supervised"] else ""),
            "linear probe / kNN acc. (%)",
            f"{100 * a['linear_probe_mean']:.1f} / {100 * a['knn_mean']:.1f}",
        )
        for a in [*result["aggregate"], raw, seq_row]
    ]
    return DemoSummary(family="contrastive", rows=rows, report=Path(result["report"]))
