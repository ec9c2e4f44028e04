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
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
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
    plot,
    run_notes,
    soft_cross_entropy,
    table,
)
from posneg.bench._models1d import (
    DATASETS,
    MNIST1D_EPOCHS,
    SequenceData,
    SmallCNN1d,
    load_mnist1d,
    not_for_sequences,
)
from posneg.data.images import ImageData, load_image_digits, load_image_npz

__all__ = [
    "CORRUPTION_SEED",
    "DATASETS",
    "DEFAULT_TECHNIQUES",
    "DEMO_CONFIG",
    "PARSER",
    "TECHNIQUES",
    "TEST_CORRUPTIONS",
    "BenchConfig",
    "ImageData",
    "SequenceData",
    "SmallCNN",
    "SmallCNN1d",
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


MODEL_2D = "CNN conv16/s2-pool-conv32-pool-conv64-GAP-linear (BN, ReLU); Adam, cosine decay"
MODEL_1D = "1-D CNN conv32/k5-pool-conv64/k3-pool-conv64/k3-GAP-linear (BN, ReLU); Adam, cosine"


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
            On sequences, the image-only ones (randaugment, corruptions)
            are skipped and the report says why.
        dataset: ``digits`` (the 8x8 digits upsampled, 2-D CNN, corrupted test sets) or
            ``mnist1d`` (MNIST-1D sequences, 1-D CNN, no corrupted test sets).
        epochs: passes over the train split per run (the last partial batch is kept); default
            12 on digits and --data, 20 on mnist1d.
        batch_size: training batch size.
        seeds: number of training seeds (``first_seed``, ``first_seed + 1``, ...).
        first_seed: the first training seed.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        data: a user ``.npz`` of images, replacing the digits (not with ``mnist1d``).
        size: side of the upsampled digits (ignored with ``data``).
        test_fraction: share of each class held out (mnist1d keeps its own split).
        split_seed: seed of the train/test split (fixed across training seeds).
        corruptions: the corruptions of the corrupted test sets (images only).
        corruption_dataset: the MedMNIST data set (or modality alias) whose official severities
            the corrupted test sets use.
        threads: CPU threads for torch (0: automatic, min(4, available cores); N: exactly N).
        out: output folder.
        quiet: no progress bars and no table.
    """

    techniques: tuple[str, ...] = DEFAULT_TECHNIQUES
    dataset: str = "digits"
    epochs: int | None = None
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


def _validate(cfg: BenchConfig) -> tuple[BenchConfig, list[harness.Spec]]:
    """Check ``cfg``; return it with the data set's default epochs filled in, and its specs."""
    specs = PARSER.parse(cfg.techniques)
    if cfg.dataset not in DATASETS:
        raise harness.UsageError(
            f"--dataset: unknown data set {cfg.dataset!r}; known: {', '.join(DATASETS)}"
        )
    if cfg.dataset != "digits" and cfg.data is not None:
        raise harness.UsageError(
            f"--dataset: {cfg.dataset} and --data both name the data; give one of them"
        )
    epochs = cfg.epochs
    if epochs is None:
        epochs = MNIST1D_EPOCHS if cfg.dataset == "mnist1d" else 12
        cfg = replace(cfg, epochs=epochs)
    if epochs < 1:
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
    return cfg, specs


def _load(cfg: BenchConfig) -> ImageData | SequenceData:
    if cfg.dataset == "mnist1d":
        try:
            return load_mnist1d()
        except ImportError as exc:  # no cache and no mnist1d package
            raise harness.UsageError(f"--dataset mnist1d: {exc}") from None
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
    data: ImageData | SequenceData,
    seed: int,
    cfg: BenchConfig,
    device: torch.device,
    corrupted: Mapping[tuple[str, int], torch.Tensor],
    tick: Callable[[], None],
) -> dict[str, Any]:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        net = SmallCNN1d if isinstance(data, SequenceData) else SmallCNN
        model = net(data.image_shape[0], data.n_classes, mean=data.mean, std=data.std)
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
    epochs = cast(int, cfg.epochs)  # filled in by _validate
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    start, cpu_start = time.perf_counter(), time.process_time()
    epoch_losses: list[float] = []
    diverged_at: int | None = None
    for epoch in range(epochs):
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


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Returns:
        ``{"runs": [...], "aggregate": [...], "gaps": {...}, "report": path of results.md,
        "plots": [...], "config": {...}}``.

    Raises:
        UsageError: a bad spec, value or file (names the flag); the technique's own
            ValueError/TypeError text for a bad constructor argument.
    """
    cfg, specs = _validate(cfg)
    device = harness.resolve_device(cfg.device)
    data = _load(cfg)
    seq = isinstance(data, SequenceData)
    skipped = {s.label(): why for s in specs if seq and (why := not_for_sequences(s.key))}
    specs = [s for s in specs if s.label() not in skipped]
    if not specs:
        raise harness.UsageError(
            f"--technique: none of {', '.join(skipped)} applies to sequences ({cfg.dataset}); "
            "use none, mixup or fmix"
        )
    for spec in specs:  # validate every spec before any training starts
        _build_module(spec, data.n_classes)
    seeds = harness.seed_list(cfg)
    started, cpu_started = time.perf_counter(), time.process_time()
    with harness.torch_threads(cfg.threads, device) as threads:
        x_test = torch.as_tensor(data.x_test)
        names = () if seq else cfg.corruptions  # 2-D corruptions: images only
        corrupted = corrupted_sets(x_test, names, device, cfg.corruption_dataset)
        runs = harness.run_grid(
            [(s, seed) for s in specs for seed in seeds],
            lambda job, tick: _train_one(job[0], data, job[1], cfg, device, corrupted, tick),
            describe=lambda job: f"{job[0].label()} seed={job[1]}",
            steps=cast(int, cfg.epochs),
            quiet=cfg.quiet,
        )
    elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu_started
    agg = aggregate(runs)
    labels = [s.label() for s in specs]
    header, rows = table(agg, corrupted=not seq)
    config = _report.resolved_config(
        cfg,
        seeds=seeds,
        device=device,
        threads=threads,
        techniques=labels,
        corruptions=list(names),
        **data.summary(),
        model=MODEL_1D if seq else MODEL_2D,
        ece_bins=ECE_BINS,
        corruption_seed=CORRUPTION_SEED,
        elapsed_seconds=round(elapsed, 1),
        cpu_seconds=round(cpu_elapsed, 1),
    )
    paired = gaps(runs, labels)
    notes = run_notes(cfg, data, seeds, runs, paired, skipped)
    results = {"runs": runs, "aggregate": agg, "gaps": paired, "skipped": skipped}
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
    plots = [plot(out, agg, corrupted=not seq)]
    if not cfg.quiet:
        _report.show(
            title, header, rows, notes[1:], report=report, elapsed=elapsed, keep_first_column=True
        )
    return {**results, "report": report, "plots": plots, "config": config}


def _finish(values: dict[str, Any]) -> dict[str, Any]:
    values["data"] = None if values["data"] is None else str(values["data"])
    return values


#: `posneg bench mixing`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""Train a small CNN per mixing/augmentation technique: accuracy, ECE, corrupted accuracy.

    Every technique and seed trains the same CNN on upsampled digits (or --data images, or
    MNIST-1D sequences with a 1-D CNN: --dataset mnist1d); the held-out split is scored clean
    (accuracy, 15-bin ECE) and, for images, under corruptions at severities 1-5. Writes
    results.json, results.md and a PNG plot into --out.
    """,
    flags={
        "techniques": ("--technique", "-t"),
        "batch_size": ("--batch-size", "-b"),
        "corruptions": ("--corruption",),
    },
    help={
        "techniques": "Technique spec, repeatable: none, mixup, cutmix, fmix, resizemix, "
        "randaugment, corruptions, with constructor arguments as in 'mixup:alpha=0.4' or "
        "'corruptions:dataset=xray'. Default: all (on mnist1d, the image-only ones are skipped).",
        "data": ".npz with images X (N, C, H, W) or (N, H, W) and y (N,) int labels. "
        "Default: the 8x8 digits upsampled.",
        "corruptions": "Corruption of the corrupted test sets, repeatable. Default: "
        + ", ".join(TEST_CORRUPTIONS)
        + ".",
    },
    finish=_finish,
)


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
