"""`posneg bench mixing`: a small CNN trained once per mixing/augmentation technique.

For every technique (a spec string such as ``mixup:alpha=0.4`` or ``corruptions:dataset=xray``,
parsed by :data:`PARSER` over :mod:`posneg.registry`; arguments go to the constructor,
``num_classes`` is set by the bench) and every seed, the bench trains the same
:class:`~posneg.bench._classifier.SmallCNN` on the train split of scikit-learn's 8x8 digits
upsampled to 32x32 (:func:`posneg.data.images.load_image_digits`) or a user ``--data file.npz``
(:func:`posneg.data.images.load_image_npz`), and reports on the held-out split: clean accuracy,
ECE with 15 bins (:func:`expected_calibration_error`) and accuracy under
:data:`TEST_CORRUPTIONS` at severities 1..5 (MedMNIST-C's official severities of
``corruption_dataset``; one fixed generator, seed :data:`CORRUPTION_SEED`, so every run is scored
on the very same images). ``none`` is plain cross-entropy; ``mixup``, ``cutmix``, ``fmix`` and
``resizemix`` mix every batch (cross-entropy against the soft targets); ``randaugment`` and
``corruptions`` augment every sample. Adam with a cosine decay to 0. Every draw comes from one
``torch.Generator`` per run seeded with the run's seed; the weights are initialised under that
seed in a forked RNG (the global state is left as it was). Same seed, device and thread count:
same metrics. See ``docs/mixing.md``.

Python use::

    from posneg.bench.mixing import BenchConfig, run
    result = run(BenchConfig(techniques=("none", "mixup"), epochs=5, seeds=1))
    result["aggregate"]          # per technique: mean/std of every metric
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
import typer
from torch import nn

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._classifier import (
    CORRUPTION_DATASET,
    CORRUPTION_SEED,
    ECE_BINS,
    TEST_CORRUPTIONS,
    SmallCNN,
    aggregate,
    check_corruptions,
    corrupted_sets,
    evaluate,
    expected_calibration_error,
    gaps,
    nan_metrics,
    run_notes,
    soft_cross_entropy,
    table,
)
from posneg.data.images import ImageData, load_image_digits, load_image_npz

__all__ = [
    "CORRUPTION_SEED",
    "DEFAULT_TECHNIQUES",
    "DEMO_CONFIG",
    "PARSER",
    "TECHNIQUES",
    "TEST_CORRUPTIONS",
    "BenchConfig",
    "ImageData",
    "SmallCNN",
    "cli",
    "demo",
    "expected_calibration_error",
    "load_image_digits",
    "load_image_npz",
    "run",
]

#: Everything `--technique` accepts, in table order: the baseline ``none``, then registry keys
#: (family ``mixing``: batch-mixing modules; ``augment``: per-sample augmentations).
TECHNIQUES: tuple[str, ...] = (
    "none",
    "mixup",
    "cutmix",
    "fmix",
    "resizemix",
    "randaugment",
    "corruptions",
)

#: The spec parser of `--technique`.
PARSER = harness.SpecParser("--technique", "technique", TECHNIQUES, baselines=("none",))

#: The techniques run when `--technique` is not given: all of them.
DEFAULT_TECHNIQUES: tuple[str, ...] = TECHNIQUES


def _is_mix(key: str) -> bool:
    tech = PARSER.technique(key)
    return tech is not None and tech.family == "mixing"


def _build_module(spec: harness.Spec, n_classes: int) -> nn.Module | None:
    """Instantiate ``spec``'s technique; a bad argument is the unit's own error, one line."""
    where = PARSER.where(spec)
    if PARSER.technique(spec.key) is None:
        if spec.kwargs:
            raise harness.UsageError(f"{where}: 'none' takes no arguments")
        return None
    cls = harness.load_technique(spec.key, where)
    forced = {"num_classes": n_classes} if _is_mix(spec.key) else None
    return cast(
        nn.Module, harness.build(cls, spec, where, forced=forced, reason="the data's class count")
    )


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        techniques: spec strings (``none``, ``mixup:alpha=0.4``, ``randaugment:magnitude=5``).
        epochs: passes over the train split per run (the last partial batch is kept).
        batch_size: training batch size.
        seeds: number of training seeds (``first_seed``, ``first_seed + 1``, ...).
        first_seed: the first training seed.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        data: a user ``.npz`` of images or ``None`` for the upsampled digits.
        size: side of the upsampled digits (ignored with ``data``).
        test_fraction: share of each class held out.
        split_seed: seed of the train/test split (fixed across training seeds).
        corruptions: the corruptions of the corrupted test sets.
        corruption_dataset: the MedMNIST data set (or modality alias) whose official severities
            the corrupted test sets use.
        threads: CPU threads for torch (0: automatic, min(4, available cores); N: exactly N).
        out: output folder.
        quiet: no progress bars and no table.
    """

    techniques: tuple[str, ...] = DEFAULT_TECHNIQUES
    epochs: int = 12
    batch_size: int = 64
    seeds: int = 3
    first_seed: int = 0
    lr: float = 3e-3
    weight_decay: float = 1e-4
    device: str = "auto"
    data: str | None = None
    size: int = 32
    test_fraction: float = 0.25
    split_seed: int = 0
    corruptions: tuple[str, ...] = TEST_CORRUPTIONS
    corruption_dataset: str = CORRUPTION_DATASET
    threads: int = 1
    out: str = "runs/mixing"
    quiet: bool = False


def _validate(cfg: BenchConfig) -> list[harness.Spec]:
    specs = PARSER.parse(cfg.techniques)
    if cfg.epochs < 1:
        raise harness.UsageError(f"--epochs: must be >= 1; got {cfg.epochs}")
    if cfg.batch_size < 2:
        raise harness.UsageError(
            f"--batch-size: must be >= 2 (mixing needs partners); got {cfg.batch_size}"
        )
    harness.check_common(cfg)
    harness.check_number("--lr", cfg.lr, low=0.0, closed="none")
    harness.check_number("--weight-decay", cfg.weight_decay, low=0.0)
    harness.check_number("--size", cfg.size, low=8, high=256, closed="both")
    harness.check_number("--test-fraction", cfg.test_fraction, low=0.0, high=1.0, closed="none")
    check_corruptions(cfg.corruptions, cfg.corruption_dataset)
    harness.check_data_file("--data", cfg.data)
    return specs


def _load(cfg: BenchConfig) -> ImageData:
    if cfg.data is None:
        return load_image_digits(
            size=cfg.size, test_fraction=cfg.test_fraction, seed=cfg.split_seed
        )
    try:
        return load_image_npz(cfg.data, test_fraction=cfg.test_fraction, seed=cfg.split_seed)
    except (ValueError, OSError) as exc:
        raise harness.UsageError(f"--data: {exc}") from None


def _train_one(
    spec: harness.Spec,
    data: ImageData,
    seed: int,
    cfg: BenchConfig,
    device: torch.device,
    corrupted: Mapping[tuple[str, int], torch.Tensor],
    tick: Callable[[], None],
) -> dict[str, Any]:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = SmallCNN(data.image_shape[0], data.n_classes, mean=data.mean, std=data.std)
        model = model.to(device)
    module = _build_module(spec, data.n_classes)
    mix = _is_mix(spec.key)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.as_tensor(data.x_train, device=device)
    y = torch.as_tensor(data.y_train, device=device)
    n = x.shape[0]
    bs = min(cfg.batch_size, n)
    steps_per_epoch = math.ceil(n / bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    start, cpu_start = time.perf_counter(), time.process_time()
    epoch_losses: list[float] = []
    diverged_at: int | None = None
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, device=device, generator=gen)
        total = torch.zeros((), device=device, dtype=torch.float64)
        for step in range(steps_per_epoch):
            idx = perm[step * bs : (step + 1) * bs]
            xb, yb = x[idx], y[idx]
            if mix and module is not None:
                mixed = module(xb, yb, generator=gen)
                targets = cast(torch.Tensor, mixed.targets)  # given targets -> soft targets
                loss = soft_cross_entropy(model(mixed.x), targets)
            else:
                if module is not None:
                    xb = module(xb, generator=gen)
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach().double()
        epoch_losses.append(float(total) / steps_per_epoch)
        tick()
        if not math.isfinite(epoch_losses[-1]):
            diverged_at = epoch + 1  # the grid runner counts the epochs left
            break
    train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    if diverged_at is None:
        x_test = torch.as_tensor(data.x_test, device=device)
        metrics = evaluate(model, x_test, torch.as_tensor(data.y_test, device=device), corrupted)
    else:
        metrics = nan_metrics()
    return {
        "technique": spec.label(),
        "key": spec.key,
        "seed": seed,
        "module": repr(module) if module is not None else None,
        **metrics,
        "final_loss": epoch_losses[-1],
        "epoch_losses": epoch_losses,
        "diverged_at_epoch": diverged_at,
        "steps": steps_per_epoch * len(epoch_losses),
        "train_seconds": round(train_s, 3),
        "train_cpu_seconds": round(cpu_s, 3),
    }


def _plot(out: Path, agg: Sequence[Mapping[str, Any]]) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.8))
    ax, ax_acc, ax_ece = fig.subplots(1, 3, gridspec_kw={"width_ratios": [2.2, 1, 1]})
    sev = np.arange(0, 6)
    for a in agg:
        ys = [100 * a["clean_accuracy_mean"], *[100 * v for v in a["corrupted_accuracy_mean"]]]
        es = [100 * a["clean_accuracy_std"], *[100 * v for v in a["corrupted_accuracy_std"]]]
        ax.errorbar(sev, ys, yerr=es, marker="o", capsize=2, label=a["technique"])
    ax.set_xticks(sev, ["clean", "1", "2", "3", "4", "5"])
    ax.set_xlabel("corruption severity")
    ax.set_ylabel("test accuracy (%), mean over corruptions")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    xs = np.arange(len(agg))
    acc = [100 * a["clean_accuracy_mean"] for a in agg]
    ax_acc.bar(xs, acc, yerr=[100 * a["clean_accuracy_std"] for a in agg], capsize=2)
    ax_acc.set_ylim(max(0.0, min([v for v in acc if math.isfinite(v)], default=0.0) - 5), 100)
    ax_acc.set_ylabel("clean accuracy (%)")
    ece, ece_sd = [a["ece_mean"] for a in agg], [a["ece_std"] for a in agg]
    ax_ece.bar(xs, ece, yerr=ece_sd, capsize=2, color="C1")
    ax_ece.set_ylabel(f"ECE ({ECE_BINS} bins)")
    for axis in (ax_acc, ax_ece):
        axis.set_xticks(xs, [a["technique"] for a in agg], rotation=40, ha="right", fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    fig.suptitle("posneg bench mixing: accuracy vs corruption severity (mean ± std over seeds)")
    fig.tight_layout()
    return _report.save_figure(fig, out / "accuracy_vs_severity.png")


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Returns:
        ``{"runs": [...], "aggregate": [...], "gaps": {...}, "report": path of results.md,
        "plots": [...], "config": {...}}``.

    Raises:
        UsageError: a bad spec, value or file (names the flag); the technique's own
            ValueError/TypeError text for a bad constructor argument.
    """
    specs = _validate(cfg)
    device = harness.resolve_device(cfg.device)
    data = _load(cfg)
    for spec in specs:  # validate every spec before any training starts
        _build_module(spec, data.n_classes)
    seeds = harness.seed_list(cfg)
    started, cpu_started = time.perf_counter(), time.process_time()
    with harness.torch_threads(cfg.threads, device) as threads:
        x_test = torch.as_tensor(data.x_test)
        corrupted = corrupted_sets(x_test, cfg.corruptions, device, cfg.corruption_dataset)
        runs = harness.run_grid(
            [(s, seed) for s in specs for seed in seeds],
            lambda job, tick: _train_one(job[0], data, job[1], cfg, device, corrupted, tick),
            describe=lambda job: f"{job[0].label()} seed={job[1]}",
            steps=cfg.epochs,
            quiet=cfg.quiet,
        )
    elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu_started
    agg = aggregate(runs)
    labels = [s.label() for s in specs]
    header, rows = table(agg)
    config = _report.resolved_config(
        cfg,
        seeds=seeds,
        device=device,
        threads=threads,
        techniques=labels,
        corruptions=list(cfg.corruptions),
        **data.summary(),
        model="CNN conv16/s2-pool-conv32-pool-conv64-GAP-linear (BN, ReLU); Adam, cosine decay",
        ece_bins=ECE_BINS,
        corruption_seed=CORRUPTION_SEED,
        elapsed_seconds=round(elapsed, 1),
        cpu_seconds=round(cpu_elapsed, 1),
    )
    paired = gaps(runs, labels)
    notes = run_notes(cfg, data, seeds, runs, paired)
    results = {"runs": runs, "aggregate": agg, "gaps": paired}
    title = "posneg bench mixing"
    out = Path(cfg.out)
    report = _report.write_report(
        out,
        title=title,
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes="\n".join(notes),
    )
    plots = [_plot(out, agg)]
    if not cfg.quiet:
        _report.show(
            title, header, rows, notes[1:], report=report, elapsed=elapsed, keep_first_column=True
        )
    return {**results, "report": report, "plots": plots, "config": config}


_D = BenchConfig()


def cli(
    technique: Annotated[
        list[str] | None,
        typer.Option(
            "--technique",
            "-t",
            help="Technique spec, repeatable: none, mixup, cutmix, fmix, resizemix, "
            "randaugment, corruptions, with constructor arguments as in 'mixup:alpha=0.4' or "
            "'corruptions:dataset=xray'. Default: all.",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs per run.")] = _D.epochs,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", help="Training batch size.")
    ] = _D.batch_size,
    seeds: harness.SeedsOption = _D.seeds,
    first_seed: harness.FirstSeedOption = _D.first_seed,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = _D.lr,
    weight_decay: Annotated[float, typer.Option(help="Adam weight decay.")] = _D.weight_decay,
    device: harness.DeviceOption = _D.device,
    data: Annotated[
        Path | None,
        typer.Option(
            help=".npz with images X (N, C, H, W) or (N, H, W) and y (N,) int labels. "
            "Default: the 8x8 digits upsampled."
        ),
    ] = None,
    size: Annotated[int, typer.Option(help="Side of the upsampled digits (without --data).")] = 32,
    test_fraction: Annotated[
        float, typer.Option(help="Share of each class held out.")
    ] = _D.test_fraction,
    split_seed: Annotated[int, typer.Option(help="Seed of the train/test split.")] = 0,
    corruption: Annotated[
        list[str] | None,
        typer.Option(
            "--corruption",
            help="Corruption of the corrupted test sets, repeatable. Default: "
            + ", ".join(TEST_CORRUPTIONS)
            + ".",
        ),
    ] = None,
    corruption_dataset: Annotated[
        str,
        typer.Option(
            help="MedMNIST data set (or modality) whose official severities the corrupted test "
            "sets use."
        ),
    ] = CORRUPTION_DATASET,
    threads: harness.ThreadsOption = _D.threads,
    out: harness.OutOption = Path(_D.out),
    quiet: harness.QuietOption = False,
) -> None:
    """Train a small CNN per mixing/augmentation technique; clean, calibration, corrupted accuracy.

    Every technique and seed trains the same CNN on upsampled digits (or --data images); the
    held-out split is scored clean (accuracy, 15-bin ECE) and under corruptions at severities
    1-5. Writes results.json, results.md and a PNG plot into --out.
    """
    cfg = BenchConfig(
        techniques=tuple(technique) if technique else DEFAULT_TECHNIQUES,
        corruptions=tuple(corruption) if corruption else TEST_CORRUPTIONS,
        data=None if data is None else str(data),
        out=str(out),
        epochs=epochs,
        batch_size=batch_size,
        seeds=seeds,
        first_seed=first_seed,
        lr=lr,
        weight_decay=weight_decay,
        device=device,
        size=size,
        test_fraction=test_fraction,
        split_seed=split_seed,
        corruption_dataset=corruption_dataset,
        threads=threads,
        quiet=quiet,
    )
    result = run(cfg)
    if quiet:
        typer.echo(str(result["report"]))


#: The demo preset: every technique, one seed, few epochs (under a minute on 2 cores).
DEMO_CONFIG = BenchConfig(epochs=8, seeds=1)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: every technique on digits, one seed, 8 epochs."""
    cfg = BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out)})
    result = run(cfg)
    rows = [
        (
            a["technique"],
            "clean / mean corrupted acc. (%), ECE",
            f"{100 * a['clean_accuracy_mean']:.1f} / "
            f"{100 * a['mean_corrupted_accuracy_mean']:.1f}, {a['ece_mean']:.3f}",
        )
        for a in result["aggregate"]
    ]
    return _report.DemoSummary(family="mixing", rows=rows, report=Path(result["report"]))
