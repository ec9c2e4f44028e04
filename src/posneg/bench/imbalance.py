"""`posneg bench imbalance`: rebalancing techniques side by side on imbalanced tabular data.

For every technique spec (``smote:k_neighbors=3``, ``dice:alpha=0.5``), data set and seed, the
bench trains the same small MLP (``F -> 64 -> 64 -> 1``, ReLU, one logit) on the training split
and reports on the untouched test split the **minority F1** and the **balanced accuracy** at
``sigmoid(logit) > 0.5``, and the **average precision** of the logits (scikit-learn).

Kinds: ``none`` trains with binary cross-entropy on the data as they are; *resamplers*
(``random``, ``smote``, ``borderline_smote``, ``adasyn``) rebalance the training split once per
run with ``fit_resample(X, y, generator=...)`` (``random`` duplicates minority samples uniformly
with replacement, imbalanced-learn's ``RandomOverSampler``); the *balanced sampler* draws
class-balanced batches; *losses* (``dice``, ``focal``) replace cross-entropy. ``none`` and
``random`` are the bench's own baselines; every other key is a registry key.

Every run takes ``epochs * ceil(N_train / batch_size)`` optimiser steps, whatever the size of
its (resampled) training set. Seed ``s`` fixes the split and minority subsample
(:mod:`posneg.data.tabular`), the weights, the resampling and the batch order: every technique
sees the same split and weights for a given seed, so their differences are paired.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from posneg.bench import _harness as h
from posneg.bench import _keel
from posneg.bench import _report as rep
from posneg.bench._models import MLP
from posneg.bench._report import DemoSummary
from posneg.data.batches import permutation_batches, sampler_batches
from posneg.data.tabular import (
    ImbalancedSplit,
    load_breast_cancer_imbalanced,
    load_digits_one_vs_rest,
    load_npz_imbalanced,
    random_oversample,
)

__all__ = ["DATASETS", "DEFAULT_TECHNIQUES", "DEMO_CONFIG", "MLP", "PARSER", "TECHNIQUES"]
__all__ += ["BenchConfig", "cli", "demo", "evaluate", "random_oversample", "run"]

#: The embedded data sets `--dataset` accepts.
DATASETS: tuple[str, ...] = ("breast_cancer", "digits")


@dataclass(frozen=True)
class Technique:
    """How the bench uses one technique: ``kind`` is ``none``, ``resample``, ``sampler`` or
    ``loss``."""

    key: str
    kind: str


#: Everything `--technique` accepts, in table order.
TECHNIQUES: dict[str, Technique] = {
    t.key: t
    for t in (
        Technique("none", "none"),
        Technique("random", "resample"),
        Technique("smote", "resample"),
        Technique("borderline_smote", "resample"),
        Technique("adasyn", "resample"),
        Technique("balanced_sampler", "sampler"),
        Technique("dice", "loss"),
        Technique("focal", "loss"),
    )
}

#: The spec parser of `--technique`: registry keys plus the bench's two baselines.
PARSER = h.SpecParser("--technique", "technique", tuple(TECHNIQUES), baselines=("none", "random"))

#: The techniques run when `--technique` is not given: all of them.
DEFAULT_TECHNIQUES: tuple[str, ...] = tuple(TECHNIQUES)


def _default_techniques() -> tuple[str, ...]:
    return tuple(k for k in PARSER.available() if k in DEFAULT_TECHNIQUES)


def _build(
    spec: h.Spec,
    *,
    labels: np.ndarray | None = None,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> Any:
    """Instantiate ``spec``'s unit (a sampler needs the labels); errors become one line."""
    tech, where = TECHNIQUES[spec.key], PARSER.where(spec)
    if PARSER.technique(spec.key) is None:
        if spec.kwargs:
            raise h.UsageError(f"{where}: {spec.key} takes no arguments")
        return None
    cls = h.load_technique(spec.key, where)
    for name in ("generator", *(("batch_size",) if tech.kind == "sampler" else ())):
        if name in spec.kwargs:
            raise h.UsageError(f"{where}: {name} is set by the bench")
    make = cls
    if tech.kind == "sampler":  # validation before any run uses two samples per class
        y = np.array([0, 0, 1, 1]) if labels is None else labels
        make = lambda **kw: cls(y, batch_size, generator=generator, **kw)  # noqa: E731
    return h.build(make, spec, where)


def evaluate(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Minority-class F1 and balanced accuracy at logit 0, and average precision of the logits."""
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score

    pred = (logits > 0).astype(np.int64)
    return {
        "f1": float(f1_score(y, pred, pos_label=1, zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "average_precision": float(average_precision_score(y, logits)),
    }


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        techniques: technique spec, repeatable: none, random, smote, borderline_smote, adasyn,
            balanced_sampler, dice, focal, with constructor arguments as in 'smote:k_neighbors=3'
            or 'dice:alpha=0.01,form=set'. Default: all of them.
        datasets: data set, repeatable: breast_cancer, digits; keel (8 KEEL sets, 100 with
            --full) or keel:NAME (keel:yeast4), in cross-validation with the classifiers below.
            Default: breast_cancer and digits (only --data when --data is given).
        data: .npz with X (N, F) and y (N,); the rarest class is the positive one.
        digit: the rare digit of the digits task.
        minority_fraction: minority share of the embedded training splits.
        test_fraction: share of each class held out (untouched).
        seeds: number of seeds (``first_seed``, ``first_seed + 1``, ...).
        first_seed: the first seed.
        epochs: epochs of ceil(N_train / batch-size) steps.
        batch_size: samples per step.
        hidden: MLP hidden width.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        threads: CPU threads for torch (0: min(4, available cores)); tiny MLPs run fastest on 1.
        out: output folder.
        quiet: no progress bars and no table.
        classifiers: KEEL only, repeatable: knn, svm, tree, mlp. Default: all four.
        folds: KEEL only: stratified cross-validation folds.
        repeats: KEEL only: CV repeats, seeds first-seed, +1, ... (--seeds: the other sets).
        full: KEEL only: --dataset keel means all 100 sets (about 1 h CPU per repeat, estimated).
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
    device: str = "auto"
    threads: int = 1
    out: str = "runs/imbalance"
    quiet: bool = False
    classifiers: tuple[str, ...] = _keel.CLASSIFIERS
    folds: int = 5
    repeats: int = 1
    full: bool = False


def _validate(cfg: BenchConfig) -> list[h.Spec]:
    specs = PARSER.parse(cfg.techniques)
    for name in cfg.datasets:
        if name not in DATASETS and not _keel.is_keel(name):
            raise h.UsageError(
                f"--dataset: unknown data set {name!r}; known: {', '.join(DATASETS)}, keel, "
                "keel:NAME (or --data FILE.npz)"
            )
    _keel.check(cfg)
    if len(set(cfg.datasets)) != len(cfg.datasets):
        raise h.UsageError(f"--dataset: a data set is given twice: {list(cfg.datasets)}")
    if not cfg.datasets and cfg.data is None:
        raise h.UsageError("--dataset: give at least one data set or --data FILE.npz")
    h.check_data_file("--data", cfg.data)
    if not 0 <= cfg.digit <= 9:
        raise h.UsageError(f"--digit: must be in 0-9; got {cfg.digit}")
    h.check_number("--minority-fraction", cfg.minority_fraction, low=0, high=0.5, closed="none")
    h.check_number("--test-fraction", cfg.test_fraction, low=0, high=1, closed="none")
    h.check_common(cfg)
    for flag, value, low in (("--epochs", cfg.epochs, 1), ("--batch-size", cfg.batch_size, 2)):
        if value < low:
            raise h.UsageError(f"{flag}: must be >= {low}; got {value}")
    if cfg.hidden < 1:
        raise h.UsageError(f"--hidden: must be >= 1; got {cfg.hidden}")
    h.check_number("--lr", cfg.lr, low=0, closed="none")
    h.check_number("--weight-decay", cfg.weight_decay, low=0)
    for spec in specs:  # every spec is built once before any training starts
        _build(spec, batch_size=cfg.batch_size)
    return specs


def _load(name: str, cfg: BenchConfig, seed: int) -> ImbalancedSplit:
    kw: dict[str, Any] = {"test_fraction": cfg.test_fraction, "seed": seed}
    if name == "breast_cancer":
        return load_breast_cancer_imbalanced(minority_fraction=cfg.minority_fraction, **kw)
    if name == "digits":
        return load_digits_one_vs_rest(
            digit=cfg.digit, minority_fraction=cfg.minority_fraction, **kw
        )
    try:
        return load_npz_imbalanced(name, **kw)
    except (ValueError, OSError) as exc:
        raise h.UsageError(f"--data: {exc}") from None


def _resample(spec: h.Spec, x: Any, y: Any, gen: torch.Generator, where: str) -> Any:
    if spec.key == "random":
        return random_oversample(x, y, generator=gen)
    try:
        return _build(spec).fit_resample(x, y, generator=gen)
    except (ValueError, TypeError) as exc:
        raise h.UsageError(f"{where}: {exc}") from None


def _train_one(
    spec: h.Spec,
    data: ImbalancedSplit,
    seed: int,
    cfg: BenchConfig,
    device: torch.device,
    score: Callable[..., dict[str, float]] | None = None,
) -> dict[str, Any]:
    tech = TECHNIQUES[spec.key]
    where = f"{PARSER.where(spec)} on {data.name} (seed {seed})"
    gen = torch.Generator().manual_seed(seed)  # CPU draws: resampling and batch order
    with h.seeded(device, seed):
        model = MLP(data.n_features, hidden=cfg.hidden).to(device)
    start = time.perf_counter()
    x_np, y_np = data.x_train, data.y_train
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    loss_fn = nn.functional.binary_cross_entropy_with_logits
    sampler = None
    if tech.kind == "resample":
        x_np, y_np = _resample(spec, x_np, y_np, gen, where)
    elif tech.kind == "sampler":
        sampler = _build(spec, labels=y_np, batch_size=cfg.batch_size, generator=gen)
    elif tech.kind == "loss":
        loss_fn = _build(spec).to(device)
    resample_s = time.perf_counter() - start
    steps_per_epoch = math.ceil(len(data.y_train) / cfg.batch_size)
    steps = cfg.epochs * steps_per_epoch
    x = torch.as_tensor(np.ascontiguousarray(x_np), dtype=torch.float32, device=device)
    y = torch.as_tensor(np.asarray(y_np), dtype=torch.float32, device=device)
    if sampler is not None:
        try:
            batches = sampler_batches(sampler, steps)
        except ValueError as exc:
            raise h.UsageError(f"{where}: {exc}") from None
    else:
        batches = permutation_batches(len(y), steps, min(cfg.batch_size, len(y)), gen)
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
    metrics = evaluate(logits, data.y_test) if finite else {m: math.nan for m, _ in METRICS}
    if score is not None:  # the KEEL bench's scores: AUC, G-mean, F1 at logit 0
        metrics = score(logits, data.y_test)
    counts = np.bincount(np.asarray(y_np, dtype=np.int64), minlength=2).tolist()
    split = data.counts()
    return {
        "dataset": data.name,
        "technique": spec.label(),
        "key": spec.key,
        "kind": tech.kind,
        "seed": seed,
        **metrics,
        "train_counts": split["train"],
        "trained_on_counts": counts if sampler is None else split["train"],
        "test_counts": split["test"],
        "steps": steps,
        "final_loss": losses[-1] if losses else math.nan,
        "epoch_losses": losses,
        "finite": finite,
        "resample_seconds": round(resample_s, 4),
        "train_seconds": round(train_s, 3),
    }


METRICS: tuple[tuple[str, str], ...] = (
    ("f1", "minority F1"),
    ("balanced_accuracy", "balanced acc."),
    ("average_precision", "avg. precision"),
)


def _paired(runs: Sequence[Mapping[str, Any]], a: str, b: str, metric: str = "f1") -> list[Any]:
    """Per data set, the paired per-seed difference ``a - b`` of ``metric`` and its wins."""
    return rep.paired(runs, a, b, metric=metric, label="technique", group="dataset")


def _plot(out: Path, agg: Sequence[Mapping[str, Any]]) -> Path:
    plot = rep.MetricPlot(
        "posneg bench imbalance: untouched test split (mean ± std over seeds)",
        "technique",
        "dataset",
        METRICS,
        kind="point",  # the axis does not start at 0, so bars would mislead
        series=lambda ds: Path(ds).name,
    )
    return plot.save(out / "metrics.png", agg)


def _warm_up(device: torch.device) -> None:
    with h.seeded(device):
        model = MLP(2, hidden=2).to(device)
    opt = torch.optim.Adam(model.parameters(), fused=True)
    model(torch.zeros(2, 2, device=device)).sum().backward()
    opt.step()


def _comparisons(runs: list[dict[str, Any]], labels: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    if "none" in labels:
        for lab in labels:
            if lab.split(":")[0] in ("dice", "focal"):
                out[f"{lab} - none"] = _paired(runs, lab, "none")
    if "smote" in labels and "random" in labels:
        out["smote - random"] = _paired(runs, "smote", "random")
        out["smote - random (AP)"] = _paired(runs, "smote", "random", "average_precision")
    return out


def _notes(cfg: BenchConfig, runs: list[Any], comparisons: Mapping[str, Any]) -> list[str]:
    notes = [
        "Untouched stratified test split (natural class ratio); the minority class is "
        f"subsampled to {cfg.minority_fraction:.0%} of the training split of the embedded data "
        f"sets. Mean ± sample std over seeds {h.seed_list(cfg)}; each seed draws its own split "
        "and subsample. Minority F1 and balanced accuracy at threshold 0.5; average precision "
        "from the logits.",
    ]
    for name, rows_c in comparisons.items():
        metric = "average precision" if "(AP)" in name else "minority F1"
        notes += ["", f"Paired difference `{name}` in {metric}:", ""]
        form = "- {}: {diff_mean:+.3f} ± {diff_std:.3f} (better on {wins}, equal on {ties}, "
        form += "worse on {losses} of {n} seeds)"
        notes += [form.format(Path(c["dataset"]).name, n=len(c["seeds"]), **c) for c in rows_c]
    bad = [f"{r['technique']} on {r['dataset']} seed {r['seed']}" for r in runs if not r["finite"]]
    if bad:
        notes += ["", "Non-finite test logits (metrics n/a): " + ", ".join(bad)]
    return notes


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
    device = h.resolve_device(cfg.device)
    if any(_keel.is_keel(n) for n in cfg.datasets):  # cross-validation, four classifiers
        return _keel.run(cfg, specs, TECHNIQUES, _resample, _train_one, device)
    names = list(cfg.datasets) + ([cfg.data] if cfg.data is not None else [])
    seeds = h.seed_list(cfg)
    splits: dict[str, dict[str, Any]] = {}
    loaded: dict[tuple[str, int], ImbalancedSplit] = {}

    def run_one(job: tuple[str, int, h.Spec], tick: Callable[[], None]) -> dict[str, Any]:
        name, seed, spec = job
        if (name, seed) not in loaded:
            data = loaded[(name, seed)] = _load(name, cfg, seed)
            splits.setdefault(data.name, {"positive": data.positive, "counts": {}})
            splits[data.name]["counts"][seed] = data.counts()
        return _train_one(spec, loaded[(name, seed)], seed, cfg, device)

    jobs = [(name, seed, spec) for name in names for seed in seeds for spec in specs]
    started = time.perf_counter()
    with h.torch_threads(cfg.threads, device) as threads:
        _warm_up(device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # sklearn metric edge cases
            describe = lambda j: f"{Path(j[0]).name} {j[2].label()} s={j[1]}"  # noqa: E731
            runs = h.run_grid(jobs, run_one, describe=describe, quiet=cfg.quiet)
    elapsed = time.perf_counter() - started
    metrics = [m for m, _ in METRICS]
    by = ("dataset", "technique")
    agg = rep.aggregate(runs, by=by, keep=("kind",), metrics=metrics, means=("train_seconds",))
    labels = [s.label() for s in specs]
    comparisons = _comparisons(runs, labels)
    header = ["data set", "technique", *(title for _, title in METRICS), "s / run"]
    cells = lambda a: [rep.fmt(a[f"{m}_mean"], a[f"{m}_std"]) for m in metrics]  # noqa: E731
    rows = [
        (Path(a["dataset"]).name, a["technique"], *cells(a), f"{a['train_seconds_mean']:.2f}")
        for a in agg
    ]
    config = rep.resolved_config(
        cfg,
        seeds=seeds,
        device=device,
        threads=threads,
        techniques=labels,
        datasets=names,
        splits=splits,
        model=f"MLP F-{cfg.hidden}-{cfg.hidden}-1 (ReLU), Adam; BCE unless the technique is a loss",
        steps_per_run="epochs * ceil(N_train / batch_size), the same for every technique",
        threshold="sigmoid(logit) > 0.5 for F1 and balanced accuracy",
        elapsed_seconds=round(elapsed, 1),
    )
    return rep.publish(
        cfg.out,
        title="posneg bench imbalance",
        config=config,
        results={"runs": runs, "aggregate": agg, "comparisons": comparisons},
        header=header,
        rows=rows,
        notes=_notes(cfg, runs, comparisons),
        plots=lambda out: [_plot(out, agg)],
        quiet=cfg.quiet,
        elapsed=elapsed,
    )


def _finish(values: dict[str, Any]) -> dict[str, Any]:
    """CLI defaults: only --data when --data is given; every installed technique."""
    if values["datasets"] is None and values["data"] is not None:
        values["datasets"] = ()
    if values["techniques"] is None:
        values["techniques"] = _default_techniques()
    return values


#: `posneg bench imbalance`: one option per field of :class:`BenchConfig`.
cli = h.command(
    BenchConfig,
    run,
    doc="""Rebalancing techniques side by side: minority F1, balanced accuracy, average precision.

    Trains the same small MLP per technique, data set and seed on an imbalanced training split
    and scores it on an untouched test split. Writes results.json, results.md and metrics.png
    into --out.
    """,
    flags={"techniques": ("--technique", "-t"), "datasets": ("--dataset", "-d"), **_keel.FLAGS},
    finish=_finish,
)

#: The demo preset: every technique on both data sets, two seeds, 30 epochs.
DEMO_CONFIG = BenchConfig(seeds=2, epochs=30)


def demo(out: Path) -> DemoSummary:
    """A small preset for `posneg demo`: every technique on both data sets, two seeds."""
    base = {**asdict(DEMO_CONFIG), "techniques": _default_techniques(), "out": str(out)}
    result = run(BenchConfig(**base))
    rows = [
        (
            f"{a['technique']} ({Path(a['dataset']).name})",
            "minority F1 / avg. precision",
            f"{a['f1_mean']:.3f} / {a['average_precision_mean']:.3f}",
        )
        for a in result["aggregate"]
    ]
    return DemoSummary(family="imbalance", rows=rows, report=Path(result["report"]))
