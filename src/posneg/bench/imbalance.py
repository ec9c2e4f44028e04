"""`posneg bench imbalance`: rebalancing techniques side by side on imbalanced tabular data.

For every technique (a spec string such as ``smote:k_neighbors=3`` or ``dice:alpha=0.5``), every
data set and every seed, the bench trains the same small MLP (``F -> 64 -> 64 -> 1``, ReLU, one
logit) on the training split and reports on the untouched test split:

- **minority F1**: F1 of the positive (minority) class at the decision threshold 0.5
  (``sigmoid(logit) > 0.5``), ``sklearn.metrics.f1_score``;
- **balanced accuracy**: the mean of the two per-class recalls at the same threshold;
- **average precision**: area under the precision-recall curve of the logits (threshold-free).

Techniques, in three kinds:

- *none* trains with binary cross-entropy on the data as they are;
- *resamplers* (``random`` oversampling, ``smote``, ``borderline_smote``, ``adasyn``) rebalance
  the training split once per run with ``fit_resample(X, y, generator=...)``, then train with
  cross-entropy; ``random`` duplicates minority samples drawn uniformly with replacement until
  the classes are equal (imbalanced-learn's ``RandomOverSampler`` semantics);
- the *balanced sampler* draws class-balanced batches (``BalancedBatchSampler``) with
  cross-entropy;
- *losses* (``dice``, ``focal``) train on the data as they are with that loss on the logit.

Every run takes the same number of optimiser steps, ``epochs * ceil(N_train / batch_size)``,
whatever the size of its (resampled) training set: an "epoch" is that many batches, drawn
without replacement from a fresh permutation of the (resampled) set, cycling when it runs out.
Seed ``s`` fixes the train/test split and the minority subsample (so the seeds also average over
data draws), the weight initialisation, the resampling and the batch order; every technique sees
the same split and initial weights for a given seed, so their differences are paired.

Python use::

    from posneg.bench.imbalance import BenchConfig, run
    result = run(BenchConfig(techniques=("none", "smote", "dice"), seeds=2, epochs=20))
    result["aggregate"]        # per data set and technique: mean/std of the three metrics
"""

from __future__ import annotations

import math
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
from posneg.data.tabular import (
    ImbalancedSplit,
    load_breast_cancer_imbalanced,
    load_digits_one_vs_rest,
    load_npz_imbalanced,
)

__all__ = [
    "DATASETS",
    "DEFAULT_TECHNIQUES",
    "DEMO_CONFIG",
    "MLP",
    "TECHNIQUES",
    "BenchConfig",
    "cli",
    "demo",
    "evaluate",
    "random_oversample",
    "run",
]

#: The embedded data sets `--dataset` accepts.
DATASETS: tuple[str, ...] = ("breast_cancer", "digits")


# ---------------------------------------------------------------------------------------------
# techniques
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Technique:
    """How the bench builds and uses one technique.

    Attributes:
        key: the spec name (also the registry key where ``registered``).
        kind: ``none``, ``resample``, ``sampler`` or ``loss``.
        registered: built from ``posneg.registry`` (else the bench's own ``random``/``none``).
        defaults: constructor arguments the bench sets unless the spec gives them.
    """

    key: str
    kind: str
    registered: bool = True
    defaults: Mapping[str, Any] = field(default_factory=dict)


#: Everything `--technique` accepts, in table order.
TECHNIQUES: dict[str, Technique] = {
    t.key: t
    for t in (
        Technique("none", "none", registered=False),
        Technique("random", "resample", registered=False),
        Technique("smote", "resample"),
        Technique("borderline_smote", "resample"),
        Technique("adasyn", "resample"),
        Technique("balanced_sampler", "sampler"),
        Technique("dice", "loss"),
        Technique("focal", "loss"),
    )
}

#: The techniques run when `--technique` is not given: all of them.
DEFAULT_TECHNIQUES: tuple[str, ...] = tuple(TECHNIQUES)


def random_oversample(
    x: np.ndarray, y: np.ndarray, *, generator: torch.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Duplicate samples of every non-majority class, uniformly with replacement, up to the
    majority count; the duplicates are appended after the originals."""
    classes, counts = np.unique(y, return_counts=True)
    top = int(counts.max())
    xs, ys = [x], [y]
    for c, n in zip(classes, counts, strict=True):
        if n == top:
            continue
        idx = np.flatnonzero(y == c)
        pick = torch.randint(len(idx), (top - int(n),), generator=generator).numpy()
        xs.append(x[idx[pick]])
        ys.append(y[idx[pick]])
    return np.concatenate(xs), np.concatenate(ys)


def _registered_class(spec: Spec, where: str) -> Any:
    try:
        return registry.find(spec.key).load()
    except (KeyError, ModuleNotFoundError, AttributeError):
        raise UsageError(f"{where}: technique not available in this installation") from None


def _available(key: str) -> bool:
    tech = TECHNIQUES[key]
    if not tech.registered:
        return True
    try:
        registry.find(key).load()
    except (KeyError, ModuleNotFoundError, AttributeError, ImportError):
        return False
    return True


def _default_techniques() -> tuple[str, ...]:
    """Every technique whose module this installation has (all of them in a full install)."""
    return tuple(k for k in DEFAULT_TECHNIQUES if _available(k))


def _build(
    spec: Spec,
    *,
    labels: np.ndarray | None = None,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> Any:
    """Instantiate ``spec``'s unit (a sampler needs the labels); errors become one line."""
    tech = TECHNIQUES[spec.key]
    where = f"--technique {spec.label()!r}"
    if not tech.registered:
        if spec.kwargs:
            raise UsageError(f"{where}: {spec.key} takes no arguments")
        return None
    cls = _registered_class(spec, where)
    kwargs = {**tech.defaults, **spec.kwargs}
    for name in ("generator", *(("batch_size",) if tech.kind == "sampler" else ())):
        if name in kwargs:
            raise UsageError(f"{where}: {name} is set by the bench")
    try:
        if tech.kind == "sampler":
            # validation before any run uses two samples per class; a run passes its labels
            y = np.array([0, 0, 1, 1]) if labels is None else labels
            return cls(y, batch_size, generator=generator, **kwargs)
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{where}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# model, training and evaluation
# ---------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """``in_dim -> hidden -> hidden -> 1`` with ReLU: one logit per sample."""

    def __init__(self, in_dim: int, *, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B,)."""
        return self.net(x).squeeze(-1)


def evaluate(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Minority-class F1 and balanced accuracy at logit 0, and average precision of the logits."""
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score

    pred = (logits > 0).astype(np.int64)
    return {
        "f1": float(f1_score(y, pred, pos_label=1, zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "average_precision": float(average_precision_score(y, logits)),
    }


def _batches_from_set(
    n: int, steps: int, batch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """``steps`` index batches, each without replacement, from fresh permutations of ``n``."""
    out: list[torch.Tensor] = []
    perm = torch.randperm(n, generator=generator)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm = torch.randperm(n, generator=generator)
            pos = 0
        out.append(perm[pos : pos + batch_size])
        pos += batch_size
    return out


def _sampler_batches(sampler: Any, steps: int) -> list[torch.Tensor]:
    """``steps`` index batches from a batch sampler (restarted when exhausted)."""
    out: list[torch.Tensor] = []
    while len(out) < steps:
        got = 0
        for batch in sampler:
            out.append(torch.as_tensor(batch, dtype=torch.long))
            got += 1
            if len(out) == steps:
                break
        if got == 0:
            raise UsageError("--technique balanced_sampler: the sampler yielded no batch")
    return out


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        techniques: spec strings (``none``, ``smote:k_neighbors=3``, ``dice:alpha=0.5``).
        datasets: embedded data sets (``breast_cancer``, ``digits``); ignored entries when
            ``data`` is given and ``datasets`` is empty.
        data: a user ``.npz`` (X, y), run in addition to ``datasets``.
        digit: the rare digit of the digits task.
        minority_fraction: share of the minority class in the embedded training splits.
        test_fraction: share of each class held out (untouched).
        seeds: number of seeds (``first_seed``, ``first_seed + 1``, ...).
        first_seed: the first seed.
        epochs: passes of ``ceil(N_train / batch_size)`` steps each.
        batch_size: samples per step.
        hidden: MLP width.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        threads: CPU threads for torch (tiny MLPs run fastest on 1).
        out: output folder.
        quiet: no progress bars and no table.
    """

    techniques: tuple[str, ...] = DEFAULT_TECHNIQUES
    datasets: tuple[str, ...] = DATASETS
    data: str | None = None
    digit: int = 8
    minority_fraction: float = 0.05
    test_fraction: float = 0.3
    seeds: int = 5
    first_seed: int = 0
    epochs: int = 40
    batch_size: int = 64
    hidden: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    device: str = "cpu"
    threads: int = 1
    out: str = "runs/imbalance"
    quiet: bool = False


def _validate(cfg: BenchConfig) -> list[Spec]:
    specs = parse_specs(cfg.techniques, TECHNIQUES, flag="--technique", what="technique")
    for name in cfg.datasets:
        if name not in DATASETS:
            raise UsageError(
                f"--dataset: unknown data set {name!r}; known: {', '.join(DATASETS)} "
                "(or --data FILE.npz)"
            )
    if len(set(cfg.datasets)) != len(cfg.datasets):
        raise UsageError(f"--dataset: a data set is given twice: {list(cfg.datasets)}")
    if not cfg.datasets and cfg.data is None:
        raise UsageError("--dataset: give at least one data set or --data FILE.npz")
    if cfg.data is not None and not Path(cfg.data).is_file():
        raise UsageError(f"--data: no such file: {cfg.data}")
    if not 0 <= cfg.digit <= 9:
        raise UsageError(f"--digit: must be in 0-9; got {cfg.digit}")
    if not 0.0 < cfg.minority_fraction < 0.5:
        raise UsageError(f"--minority-fraction: must be in (0, 0.5); got {cfg.minority_fraction}")
    if not 0.0 < cfg.test_fraction < 1.0:
        raise UsageError(f"--test-fraction: must be in (0, 1); got {cfg.test_fraction}")
    if cfg.seeds < 1:
        raise UsageError(f"--seeds: must be >= 1 (the number of seeds); got {cfg.seeds}")
    if cfg.first_seed < 0:
        raise UsageError(f"--first-seed: must be >= 0; got {cfg.first_seed}")
    if cfg.epochs < 1:
        raise UsageError(f"--epochs: must be >= 1; got {cfg.epochs}")
    if cfg.batch_size < 2:
        raise UsageError(f"--batch-size: must be >= 2; got {cfg.batch_size}")
    if cfg.hidden < 1:
        raise UsageError(f"--hidden: must be >= 1; got {cfg.hidden}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise UsageError(f"--lr: must be a finite number > 0; got {cfg.lr}")
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise UsageError(f"--weight-decay: must be a finite number >= 0; got {cfg.weight_decay}")
    if cfg.threads < 1:
        raise UsageError(f"--threads: must be >= 1; got {cfg.threads}")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise UsageError(f"--out: {cfg.out} exists and is not a folder")
    for spec in specs:  # every spec is built once before any training starts
        _build(spec, batch_size=cfg.batch_size)
    return specs


def _load(name: str, cfg: BenchConfig, seed: int) -> ImbalancedSplit:
    if name == "breast_cancer":
        return load_breast_cancer_imbalanced(
            minority_fraction=cfg.minority_fraction, test_fraction=cfg.test_fraction, seed=seed
        )
    if name == "digits":
        return load_digits_one_vs_rest(
            digit=cfg.digit,
            minority_fraction=cfg.minority_fraction,
            test_fraction=cfg.test_fraction,
            seed=seed,
        )
    try:
        return load_npz_imbalanced(name, test_fraction=cfg.test_fraction, seed=seed)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--data: {exc}") from None


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------


def _train_one(
    spec: Spec,
    data: ImbalancedSplit,
    seed: int,
    cfg: BenchConfig,
    device: torch.device,
) -> dict[str, Any]:
    tech = TECHNIQUES[spec.key]
    where = f"--technique {spec.label()!r} on {data.name} (seed {seed})"
    gen = torch.Generator().manual_seed(seed)  # CPU draws: resampling and batch order
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = MLP(data.n_features, hidden=cfg.hidden).to(device)
    start = time.perf_counter()
    x_np, y_np = data.x_train, data.y_train
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    loss_fn = nn.functional.binary_cross_entropy_with_logits
    sampler = None
    if tech.kind == "resample":
        if spec.key == "random":
            x_np, y_np = random_oversample(x_np, y_np, generator=gen)
        else:
            unit = _build(spec)
            try:
                x_np, y_np = unit.fit_resample(x_np, y_np, generator=gen)
            except (ValueError, TypeError) as exc:
                raise UsageError(f"{where}: {exc}") from None
    elif tech.kind == "sampler":
        sampler = _build(spec, labels=y_np, batch_size=cfg.batch_size, generator=gen)
    elif tech.kind == "loss":
        loss_module = _build(spec).to(device)
        loss_fn = loss_module
    resample_s = time.perf_counter() - start
    n_orig = len(data.y_train)
    steps_per_epoch = math.ceil(n_orig / cfg.batch_size)
    steps = cfg.epochs * steps_per_epoch
    x = torch.as_tensor(np.ascontiguousarray(x_np), dtype=torch.float32, device=device)
    y = torch.as_tensor(np.asarray(y_np), dtype=torch.float32, device=device)
    if sampler is not None:
        batches = _sampler_batches(sampler, steps)
    else:
        batches = _batches_from_set(len(y), steps, min(cfg.batch_size, len(y)), gen)
    # fused Adam: several times faster per step than the foreach default on tiny CPU models
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    model.train()
    losses: list[float] = []
    total = torch.zeros((), dtype=torch.float64, device=device)
    for step, idx in enumerate(batches, start=1):
        idx = idx.to(device)
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach().double()
        if step % steps_per_epoch == 0:
            losses.append(float(total) / steps_per_epoch)
            total.zero_()
    train_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        logits = model(torch.as_tensor(data.x_test, device=device)).double().cpu().numpy()
    finite = bool(np.isfinite(logits).all())
    metrics = (
        evaluate(logits, data.y_test)
        if finite
        else {"f1": math.nan, "balanced_accuracy": math.nan, "average_precision": math.nan}
    )
    counts = np.bincount(np.asarray(y_np, dtype=np.int64), minlength=2).tolist()
    return {
        "dataset": data.name,
        "technique": spec.label(),
        "key": spec.key,
        "kind": tech.kind,
        "seed": seed,
        **metrics,
        "train_counts": data.counts()["train"],
        "trained_on_counts": counts if sampler is None else data.counts()["train"],
        "test_counts": data.counts()["test"],
        "steps": steps,
        "final_loss": losses[-1] if losses else math.nan,
        "epoch_losses": losses,
        "finite": finite,
        "resample_seconds": round(resample_s, 4),
        "train_seconds": round(train_s, 3),
    }


# ---------------------------------------------------------------------------------------------
# aggregation, report, plots
# ---------------------------------------------------------------------------------------------

METRICS: tuple[tuple[str, str], ...] = (
    ("f1", "minority F1"),
    ("balanced_accuracy", "balanced acc."),
    ("average_precision", "avg. precision"),
)


def _aggregate(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["technique"]), []).append(r)
    out = []
    for (ds, label), rs in groups.items():
        row: dict[str, Any] = {
            "dataset": ds,
            "technique": label,
            "kind": rs[0]["kind"],
            "seeds": [r["seed"] for r in rs],
        }
        for key, _ in METRICS:
            m, s = mean_std([r[key] for r in rs])
            row[f"{key}_mean"], row[f"{key}_std"] = m, s
        row["train_seconds_mean"] = mean_std([r["train_seconds"] for r in rs])[0]
        out.append(row)
    return out


def _paired(
    runs: Sequence[Mapping[str, Any]], a: str, b: str, metric: str = "f1"
) -> list[dict[str, Any]]:
    """Per data set, the paired per-seed difference ``a - b`` of ``metric`` and its wins."""
    by = {(r["dataset"], r["technique"], r["seed"]): r[metric] for r in runs}
    out = []
    for ds in dict.fromkeys(r["dataset"] for r in runs):
        seeds = sorted(s for (d, t, s) in by if d == ds and t == a and (ds, b, s) in by)
        if not seeds:
            continue
        diffs = [by[(ds, a, s)] - by[(ds, b, s)] for s in seeds]
        m, sd = mean_std(diffs)
        out.append(
            {
                "dataset": ds,
                "metric": metric,
                "seeds": seeds,
                "diff_mean": m,
                "diff_std": sd,
                "wins": sum(d > 0 for d in diffs),
                "ties": sum(d == 0 for d in diffs),
                "losses": sum(d < 0 for d in diffs),
            }
        )
    return out


def _plot(out: Path, agg: Sequence[Mapping[str, Any]]) -> Path:
    from matplotlib.figure import Figure

    datasets = list(dict.fromkeys(a["dataset"] for a in agg))
    labels = list(dict.fromkeys(a["technique"] for a in agg))
    by = {(a["dataset"], a["technique"]): a for a in agg}
    fig = Figure(figsize=(max(7.0, 0.9 * len(labels) * len(datasets) + 3), 8.5))
    axes = fig.subplots(len(METRICS), 1, sharex=True)
    width = 0.8 / max(1, len(datasets))
    xs = np.arange(len(labels))
    for ax, (key, title) in zip(axes, METRICS, strict=True):
        for j, ds in enumerate(datasets):
            means = [by[(ds, lab)][f"{key}_mean"] if (ds, lab) in by else 0 for lab in labels]
            sds = [by[(ds, lab)][f"{key}_std"] if (ds, lab) in by else 0 for lab in labels]
            # points with error bars: the axis does not start at 0, so bars would mislead
            ax.errorbar(
                xs + (j - (len(datasets) - 1) / 2) * width,
                means,
                yerr=sds,
                fmt="o",
                capsize=3,
                label=Path(ds).name,
            )
        lows = [a[f"{key}_mean"] - a[f"{key}_std"] for a in agg if math.isfinite(a[f"{key}_mean"])]
        ax.set_ylim(max(0.0, min(lows, default=0.0) - 0.05), 1.0)
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=len(datasets), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    axes[-1].set_xticks(xs, labels, rotation=30, ha="right", fontsize=8)
    fig.suptitle("posneg bench imbalance: untouched test split (mean ± std over seeds)")
    return atomic_save_figure(fig, out / "metrics.png")


def _pp(d: Mapping[str, Any]) -> str:
    return (
        f"{d['diff_mean']:+.3f} ± {d['diff_std']:.3f} "
        f"(better on {d['wins']}, equal on {d['ties']}, worse on {d['losses']} of "
        f"{len(d['seeds'])} seeds)"
    )


def _warm_up(device: torch.device) -> None:
    """One optimiser step on a throwaway model, so that torch's one-off start-up costs (the
    optimiser imports, first kernels) are not charged to the first run's timing."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = MLP(2, hidden=2).to(device)
    opt = torch.optim.Adam(model.parameters(), fused=True)
    model(torch.zeros(2, 2, device=device)).sum().backward()
    opt.step()


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Returns:
        ``{"runs": [...], "aggregate": [...], "comparisons": {...}, "report": path of
        results.md, "plots": [...], "config": {...}}``.

    Raises:
        UsageError: a bad spec, value or file (names the flag); a unit's own ValueError or
            TypeError text for a bad constructor argument or a failed resampling.
    """
    specs = _validate(cfg)
    device = resolve_device(cfg.device)
    names = list(cfg.datasets) + ([cfg.data] if cfg.data is not None else [])
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    old_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    runs: list[dict[str, Any]] = []
    splits: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    try:
        _warm_up(device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # sklearn metric edge cases
            with progress_bar(disable=cfg.quiet) as progress:
                task = progress.add_task("runs", total=len(names) * len(seeds) * len(specs))
                for name in names:
                    for seed in seeds:
                        data = _load(name, cfg, seed)
                        splits.setdefault(data.name, {"positive": data.positive, "counts": {}})
                        splits[data.name]["counts"][seed] = data.counts()
                        for spec in specs:
                            progress.update(
                                task, description=f"{Path(data.name).name} {spec.label()} s={seed}"
                            )
                            runs.append(_train_one(spec, data, seed, cfg, device))
                            progress.advance(task)
    finally:
        torch.set_num_threads(old_threads)
    elapsed = time.perf_counter() - started
    agg = _aggregate(runs)
    labels = [s.label() for s in specs]
    comparisons: dict[str, list[dict[str, Any]]] = {}
    base = "none"
    if base in labels:
        for lab in labels:
            if lab.split(":")[0] in ("dice", "focal"):
                comparisons[f"{lab} - {base}"] = _paired(runs, lab, base)
    if "smote" in labels and "random" in labels:
        comparisons["smote - random"] = _paired(runs, "smote", "random")
        comparisons["smote - random (AP)"] = _paired(runs, "smote", "random", "average_precision")
    header = ["data set", "technique", "minority F1", "balanced acc.", "avg. precision", "s / run"]
    rows = [
        (
            Path(a["dataset"]).name,
            a["technique"],
            fmt(a["f1_mean"], a["f1_std"]),
            fmt(a["balanced_accuracy_mean"], a["balanced_accuracy_std"]),
            fmt(a["average_precision_mean"], a["average_precision_std"]),
            f"{a['train_seconds_mean']:.2f}",
        )
        for a in agg
    ]
    config = {
        **asdict(cfg),
        "techniques": labels,
        "datasets": names,
        "seed_list": seeds,
        "resolved_device": str(device),
        "splits": splits,
        "model": f"MLP F-{cfg.hidden}-{cfg.hidden}-1 (ReLU), Adam; BCE unless the technique "
        "is a loss",
        "steps_per_run": "epochs * ceil(N_train / batch_size), the same for every technique",
        "threshold": "sigmoid(logit) > 0.5 for F1 and balanced accuracy",
        "elapsed_seconds": round(elapsed, 1),
    }
    notes = [
        "Untouched stratified test split (natural class ratio); the minority class is "
        f"subsampled to {cfg.minority_fraction:.0%} of the training split of the embedded data "
        f"sets. Mean ± sample std over seeds {seeds}; each seed draws its own split and "
        "subsample. Minority F1 and balanced accuracy at threshold 0.5; average precision "
        "from the logits.",
    ]
    for name, rows_c in comparisons.items():
        metric = "average precision" if "(AP)" in name else "minority F1"
        notes += ["", f"Paired difference `{name}` in {metric}:", ""]
        notes += [f"- {Path(c['dataset']).name}: {_pp(c)}" for c in rows_c]
    bad = [r for r in runs if not r["finite"]]
    if bad:
        notes += [
            "",
            "Non-finite test logits (metrics n/a): "
            + ", ".join(f"{r['technique']} on {r['dataset']} seed {r['seed']}" for r in bad),
        ]
    results = {"runs": runs, "aggregate": agg, "comparisons": comparisons}
    report = write_report(
        out,
        title="posneg bench imbalance",
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes="\n".join(notes),
    )
    plots = [_plot(out, agg)]
    if not cfg.quiet:
        Console().print(rich_table("posneg bench imbalance", header, rows))
        for line in notes[1:]:
            if line:
                Console().print(line)
        console.print(f"finished in {elapsed:.0f} s; report: [bold]{report}[/bold]")
    return {**results, "report": report, "plots": plots, "config": config}


# ---------------------------------------------------------------------------------------------
# CLI and demo
# ---------------------------------------------------------------------------------------------


def cli(
    technique: Annotated[
        list[str] | None,
        typer.Option(
            "--technique",
            "-t",
            help="Technique spec, repeatable: none, random, smote, borderline_smote, adasyn, "
            "balanced_sampler, dice, focal, with constructor arguments as in "
            "'smote:k_neighbors=3' or 'dice:alpha=0.01,form=set'. Default: all of them.",
        ),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            "-d",
            help="Embedded data set, repeatable: breast_cancer, digits. Default: both (only "
            "--data when --data is given).",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help=".npz with X (N, F) and y (N,); the rarest class is the positive one."),
    ] = None,
    seeds: Annotated[
        int, typer.Option(help="Number of seeds (first-seed, first-seed+1, ...).")
    ] = BenchConfig.seeds,
    first_seed: Annotated[int, typer.Option(help="First seed.")] = BenchConfig.first_seed,
    epochs: Annotated[
        int, typer.Option(help="Epochs of ceil(N_train / batch-size) steps.")
    ] = BenchConfig.epochs,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = BenchConfig.batch_size,
    hidden: Annotated[int, typer.Option(help="MLP hidden width.")] = BenchConfig.hidden,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = BenchConfig.lr,
    weight_decay: Annotated[
        float, typer.Option(help="Adam weight decay.")
    ] = BenchConfig.weight_decay,
    digit: Annotated[int, typer.Option(help="The rare digit of the digits task.")] = 8,
    minority_fraction: Annotated[
        float, typer.Option(help="Minority share of the embedded training splits.")
    ] = BenchConfig.minority_fraction,
    test_fraction: Annotated[
        float, typer.Option(help="Share of each class held out.")
    ] = BenchConfig.test_fraction,
    device: Annotated[str, typer.Option(help="cpu, auto, cuda or cuda:N.")] = BenchConfig.device,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = BenchConfig.threads,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path(BenchConfig.out),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no table.")] = False,
) -> None:
    """Rebalancing techniques side by side: minority F1, balanced accuracy, average precision.

    Trains the same small MLP per technique, data set and seed on an imbalanced training split
    and scores it on an untouched test split. Writes results.json, results.md and metrics.png
    into --out.
    """
    datasets: tuple[str, ...]
    if dataset:
        datasets = tuple(dataset)
    else:
        datasets = () if data is not None else DATASETS
    cfg = BenchConfig(
        techniques=tuple(technique) if technique else _default_techniques(),
        datasets=datasets,
        data=None if data is None else str(data),
        digit=digit,
        minority_fraction=minority_fraction,
        test_fraction=test_fraction,
        seeds=seeds,
        first_seed=first_seed,
        epochs=epochs,
        batch_size=batch_size,
        hidden=hidden,
        lr=lr,
        weight_decay=weight_decay,
        device=device,
        threads=threads,
        out=str(out),
        quiet=quiet,
    )
    result = run(cfg)
    if quiet:
        typer.echo(str(result["report"]))


#: The demo preset: every technique on both data sets, two seeds, 30 epochs.
DEMO_CONFIG = BenchConfig(seeds=2, epochs=30)


def demo(out: Path) -> DemoSummary:
    """A small preset for `posneg demo`: every technique on both data sets, two seeds."""
    cfg = BenchConfig(
        **{**asdict(DEMO_CONFIG), "techniques": _default_techniques(), "out": str(out)}
    )
    result = run(cfg)
    rows = [
        (
            f"{a['technique']} ({Path(a['dataset']).name})",
            "minority F1 / avg. precision",
            f"{a['f1_mean']:.3f} / {a['average_precision_mean']:.3f}",
        )
        for a in result["aggregate"]
    ]
    return DemoSummary(family="imbalance", rows=rows, report=Path(result["report"]))
