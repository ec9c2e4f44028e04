"""`posneg bench adversarial`: catastrophic overfitting with and without AAER; IRAD vs attacks.

Two experiments on scikit-learn's 8x8 digits in ``[0, 1]`` (:func:`posneg.data.images.
load_image_digits` with ``size=8``), each over ``--seeds`` seeds, mean ± std:

1. **Single-step adversarial training** (:mod:`posneg.bench._adversarial_at`): FGSM-AT (random
   start ``U[-eps, eps]``, step ``alpha * eps``, projection: FGSM-RS; or N-FGSM with
   ``--no-project``) against the same training with the AAER regulariser
   (:mod:`posneg.adversarial.aaer`, RS-AAER weights ``lambda = (1, 2.5, 1.5)`` of the official
   README by default). Clean, FGSM and PGD accuracy of the held-out split after every epoch (the
   curve is plotted), the share of abnormal adversarial examples per epoch, and whether PGD
   accuracy collapsed (final more than 20 points under the run's best: catastrophic
   overfitting). AAER's claim: it avoids the collapse where FGSM-AT collapses.
2. **IRAD** (:mod:`posneg.bench._adversarial_irad`): a clean classifier attacked obliviously
   with FGSM and PGD at ``--irad-epsilon``; accuracy with no defence, basic resampling, IRAD's
   reconstruction alone and full IRAD (reconstruction + SampleNet offsets).

Every draw comes from a ``torch.Generator`` per run seeded with the run's seed; weights are
initialised under that seed in a forked RNG.

Python use::

    from posneg.bench.adversarial import BenchConfig, run
    result = run(BenchConfig(seeds=1, at_epochs=4, parts=("at",)))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._adversarial_at import MODEL, PGD_SEED, ATSetting, train_at
from posneg.bench._adversarial_irad import DEFENCES, IRADSetting, train_irad
from posneg.data.images import load_image_digits

__all__ = ["DEMO_CONFIG", "PARTS", "BenchConfig", "cli", "demo", "run"]

#: The two experiments, in report order.
PARTS = ("at", "irad")
METHODS = ("fgsm_at", "aaer")


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        parts: which experiments: ``at`` (FGSM-AT vs AAER) and/or ``irad``.
        epsilon: L-inf radius of adversarial training and of its PGD evaluation (pixels in
            [0, 1]).
        random_start: start the training attack at a random point (official
            ``--delta-init random``); off: classic FGSM from x (``--delta-init zero``).
        alpha: FGSM step as a multiple of epsilon (1.25: FGSM-RS / RS-AAER).
        project: clip the training perturbation to epsilon (RS); off: N-FGSM / N-AAER.
        lambda1, lambda2, lambda3: AAER weights.
        at_epochs: adversarial-training epochs.
        at_size: side of the adversarial-training images (8: the originals; 16 or 32:
            bilinear upsampling, :func:`~posneg.data.images.load_image_digits`).
        at_width: channels of the adversarial-training CNN's first conv (second: twice).
        lr: peak learning rate of the one-cycle Adam schedule (adversarial training).
        pgd_steps: PGD steps of every evaluation (step 2.5 epsilon / steps).
        irad_epsilon: L-inf radius of the oblivious attacks of the IRAD experiment.
        irad_epochs: training epochs of each IRAD network.
        classifier_epochs: training epochs of the IRAD experiment's clean classifier.
        resample_shift: basic resampling's uniform shift bound, in pixels.
        batch_size: training batch size.
        max_train: use only the first N training images (0: all 1347); the demo's shortcut.
        seeds: number of seeds.
        first_seed: the first seed.
        split_seed: seed of the train/test split (fixed across seeds).
        device: auto, cpu, cuda.
        threads: CPU threads for torch.
        out: output folder.
        quiet: no progress bars and no table.
    """

    parts: tuple[str, ...] = PARTS
    epsilon: float = 0.2
    random_start: bool = True
    alpha: float = 1.25
    project: bool = True
    lambda1: float = 1.0
    lambda2: float = 2.5
    lambda3: float = 1.5
    at_epochs: int = 8
    at_size: int = 8
    at_width: int = 16
    lr: float = 3e-3
    pgd_steps: int = 5
    irad_epsilon: float = 0.1
    irad_epochs: int = 3
    classifier_epochs: int = 10
    resample_shift: float = 0.5
    batch_size: int = 128
    max_train: int = 0
    seeds: int = 3
    first_seed: int = 0
    split_seed: int = 0
    device: str = "auto"
    threads: int = 1
    out: str = "runs/adversarial"
    quiet: bool = False


def _validate(cfg: BenchConfig) -> None:
    if not cfg.parts or any(p not in PARTS for p in cfg.parts):
        raise harness.UsageError(f"--part: each must be one of {', '.join(PARTS)}; got {cfg.parts}")
    harness.check_common(cfg)
    harness.check_number("--epsilon", cfg.epsilon, low=0.0, high=1.0, closed="high")
    harness.check_number("--irad-epsilon", cfg.irad_epsilon, low=0.0, high=1.0, closed="high")
    harness.check_number("--alpha", cfg.alpha, low=0.0, closed="none")
    harness.check_number("--lr", cfg.lr, low=0.0, closed="none")
    if cfg.at_size < 2 or cfg.at_size % 2:
        raise harness.UsageError(f"--at-size: must be even and >= 2; got {cfg.at_size}")
    harness.check_number("--resample-shift", cfg.resample_shift, low=0.0)
    for flag, v in (
        ("--lambda1", cfg.lambda1),
        ("--lambda2", cfg.lambda2),
        ("--lambda3", cfg.lambda3),
    ):
        harness.check_number(flag, v, low=0.0)
    if cfg.max_train < 0 or cfg.max_train == 1:
        raise harness.UsageError(f"--max-train: must be 0 (all) or >= 2; got {cfg.max_train}")
    for flag, n in (
        ("--at-epochs", cfg.at_epochs),
        ("--at-width", cfg.at_width),
        ("--irad-epochs", cfg.irad_epochs),
        ("--classifier-epochs", cfg.classifier_epochs),
        ("--pgd-steps", cfg.pgd_steps),
        ("--batch-size", cfg.batch_size),
    ):
        if n < 1:
            raise harness.UsageError(f"{flag}: must be >= 1; got {n}")


def _at_table(agg: Sequence[dict[str, Any]], n: int) -> list[list[str]]:
    return [
        [
            a["method"],
            _report.pct_cell(a["clean_accuracy_mean"], a["clean_accuracy_std"], n),
            _report.pct_cell(a["fgsm_accuracy_mean"], a["fgsm_accuracy_std"], n),
            _report.pct_cell(a["pgd_accuracy_mean"], a["pgd_accuracy_std"], n),
            _report.pct_cell(a["best_pgd_accuracy_mean"], a["best_pgd_accuracy_std"], n),
            f"{a['collapsed_mean'] * n:.0f}/{n}",
        ]
        for a in agg
    ]


def _irad_table(agg: Sequence[dict[str, Any]], n: int) -> list[list[str]]:
    return [
        [a["defence"]]
        + [
            _report.pct_cell(a[f"{k}_accuracy_mean"], a[f"{k}_accuracy_std"], n)
            for k in ("clean", "fgsm", "pgd")
        ]
        for a in agg
    ]


def _plot(out: Path, at_runs: Sequence[dict[str, Any]], cfg: BenchConfig) -> list[Path]:
    if not at_runs:
        return []
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    for method, colour in zip(METHODS, ("tab:red", "tab:blue"), strict=True):
        runs = [r for r in at_runs if r["method"] == method]
        if not runs:
            continue
        for ax, key in zip(axes, ("pgd", "aae_share"), strict=True):
            ys = np.array([r["curve"][key] for r in runs]) * (100 if key == "pgd" else 1)
            xs = np.arange(1, ys.shape[1] + 1)
            for y in ys:
                ax.plot(xs, y, color=colour, alpha=0.25, lw=1)
            ax.plot(xs, ys.mean(0), color=colour, lw=2, label=f"{method} (mean of {len(runs)})")
    axes[0].set(xlabel="epoch", ylabel=f"PGD-{cfg.pgd_steps} accuracy (%)", ylim=(0, 100))
    axes[1].set(xlabel="epoch", ylabel="share of abnormal adversarial examples")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"FGSM-AT vs AAER on {cfg.at_size}x{cfg.at_size} digits, eps = {cfg.epsilon}")
    return [_report.save_figure(fig, out / "adversarial_training.png")]


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write results.json/.md and the plot; return results."""
    _validate(cfg)
    device = harness.resolve_device(cfg.device)
    data = load_image_digits(size=8, seed=cfg.split_seed)
    seeds = harness.seed_list(cfg)
    keep = cfg.max_train or len(data.y_train)
    tensors = tuple(
        torch.as_tensor(a, device=device)
        for a in (data.x_train[:keep], data.y_train[:keep], data.x_test, data.y_test)
    )
    at_data = data if cfg.at_size == 8 else load_image_digits(size=cfg.at_size, seed=cfg.split_seed)
    at_tensors = tuple(
        torch.as_tensor(a, device=device)
        for a in (at_data.x_train[:keep], at_data.y_train[:keep], at_data.x_test, at_data.y_test)
    )
    at_set = ATSetting(
        epsilon=cfg.epsilon,
        random_start=cfg.random_start,
        project=cfg.project,
        alpha=cfg.alpha,
        lambda1=cfg.lambda1,
        lambda2=cfg.lambda2,
        lambda3=cfg.lambda3,
        epochs=cfg.at_epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        pgd_steps=cfg.pgd_steps,
        width=cfg.at_width,
    )
    irad_set = IRADSetting(
        epsilon=cfg.irad_epsilon,
        pgd_steps=cfg.pgd_steps,
        classifier_epochs=cfg.classifier_epochs,
        defence_epochs=cfg.irad_epochs,
        resample_shift=cfg.resample_shift,
        offset_penalty=0.01,
        features=8,
        hidden=32,
        batch_size=cfg.batch_size,
    )
    jobs = [("at", m, s) for m in METHODS for s in seeds] if "at" in cfg.parts else []
    jobs += [("irad", "irad", s) for s in seeds] if "irad" in cfg.parts else []
    started = time.perf_counter()
    with harness.torch_threads(cfg.threads, device) as threads:
        done = harness.run_grid(
            jobs,
            lambda job, tick: (
                train_at(job[1], at_set, at_tensors, job[2], tick)  # type: ignore[arg-type]
                if job[0] == "at"
                else train_irad(irad_set, tensors, job[2], tick)  # type: ignore[arg-type]
            ),
            describe=lambda job: f"{job[1]} seed={job[2]}",
            steps=cfg.at_epochs if "at" in cfg.parts else 4,
            quiet=cfg.quiet,
        )
    elapsed = time.perf_counter() - started
    at_runs = [r for j, r in zip(jobs, done, strict=True) if j[0] == "at"]
    irad_runs = [r for j, r in zip(jobs, done, strict=True) if j[0] == "irad"]
    irad_rows = [row for r in irad_runs for row in r["rows"]]
    at_agg = _report.aggregate(
        [{**r, "collapsed": float(r["collapsed"])} for r in at_runs],
        by=("method",),
        metrics=(
            "clean_accuracy",
            "fgsm_accuracy",
            "pgd_accuracy",
            "best_pgd_accuracy",
            "pgd_drop",
            "collapsed",
        ),
        means=("train_seconds",),
    )
    irad_agg = _report.aggregate(
        irad_rows, by=("defence",), metrics=("clean_accuracy", "fgsm_accuracy", "pgd_accuracy")
    )
    n = len(seeds)
    header = ["method / defence", "clean %", "FGSM %", "PGD %", "best PGD % (epoch)", "collapsed"]
    rows = _at_table(at_agg, n) + [[*r, "", ""] for r in _irad_table(irad_agg, n)]
    notes = _notes(cfg, at_agg, irad_agg, irad_runs, n)
    config = _report.resolved_config(
        cfg,
        seeds=seeds,
        device=device,
        threads=threads,
        data=data.name,
        model=f"{MODEL}; AT: width {cfg.at_width}, {cfg.at_size}x{cfg.at_size} images",
        pgd_seed=PGD_SEED,
        defences=list(DEFENCES),
        elapsed_seconds=round(elapsed, 1),
    )
    results = {
        "at_runs": at_runs,
        "at_aggregate": at_agg,
        "irad_runs": irad_runs,
        "irad_aggregate": irad_agg,
    }
    return _report.publish(
        cfg.out,
        title="posneg bench adversarial",
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes=notes,
        plots=lambda out: _plot(out, at_runs, cfg),
        quiet=cfg.quiet,
        elapsed=elapsed,
        keep_first_column=True,
    )


def _notes(
    cfg: BenchConfig,
    at_agg: Sequence[dict[str, Any]],
    irad_agg: Sequence[dict[str, Any]],
    irad_runs: Sequence[dict[str, Any]],
    n: int,
) -> list[str]:
    start = "U[-eps, eps], projected" if cfg.project else "U[-2 eps, 2 eps], not projected"
    if not cfg.random_start:
        start = "x (no random start), " + ("projected" if cfg.project else "not projected")
    notes = [
        f"Setup: digits in [0, 1] ({cfg.at_size}x{cfg.at_size}, CNN width {cfg.at_width} "
        f"for adversarial training; 8x8 for IRAD); {n} seed(s); adversarial training "
        f"eps = {cfg.epsilon}, "
        f"step {cfg.alpha} eps, start {start}, {cfg.at_epochs} epochs; PGD-{cfg.pgd_steps} "
        f"step 2.5 eps/steps; IRAD: oblivious attacks at eps = {cfg.irad_epsilon}.",
    ]
    by = {a["method"]: a for a in at_agg}
    if {"fgsm_at", "aaer"} <= by.keys():
        base, aaer = by["fgsm_at"], by["aaer"]
        nb, na = round(base["collapsed_mean"] * n), round(aaer["collapsed_mean"] * n)
        verdict = (
            "supported"
            if nb > 0 and na < nb
            else "not shown (FGSM-AT did not collapse here)"
            if nb == 0
            else "not supported"
        )
        pb = _report.fmt(base["pgd_accuracy_mean"], base["pgd_accuracy_std"], pct=True)
        pa = _report.fmt(aaer["pgd_accuracy_mean"], aaer["pgd_accuracy_std"], pct=True)
        notes.append(
            "Claim (AAER avoids catastrophic overfitting where FGSM-AT collapses): FGSM-AT "
            f"collapsed in {nb}/{n} seeds, final PGD {pb} %; AAER collapsed in {na}/{n}, "
            f"final PGD {pa} % -- {verdict}."
        )
    if irad_agg:
        d = {a["defence"]: a for a in irad_agg}
        cells = ", ".join(
            f"{k} {_report.fmt(d[k]['pgd_accuracy_mean'], d[k]['pgd_accuracy_std'], pct=True)}"
            for k in DEFENCES
        )
        off = sum(r["mean_abs_offset_px"] for r in irad_runs) / len(irad_runs)
        notes.append(f"IRAD, PGD accuracy (%): {cells}; SampleNet's mean |offset| {off:.2f} px.")
    return notes


#: `posneg bench adversarial`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""FGSM adversarial training with and without AAER; IRAD against FGSM/PGD (8x8 digits).

    Writes results.json, results.md and a PNG of PGD accuracy per epoch into --out.
    """,
    flags={"parts": ("--part",), "batch_size": ("--batch-size", "-b")},
)

#: The demo preset: one seed, few epochs, small networks (a few seconds).
DEMO_CONFIG = BenchConfig(
    seeds=1, at_epochs=2, pgd_steps=3, irad_epochs=1, classifier_epochs=3, max_train=300
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: one seed, 2 AT epochs, 1 IRAD epoch."""
    result = run(replace(DEMO_CONFIG, out=str(out), quiet=True))
    rows = [
        (
            a["method"],
            "clean / PGD acc. (%)",
            f"{100 * a['clean_accuracy_mean']:.1f} / {100 * a['pgd_accuracy_mean']:.1f}",
        )
        for a in result["at_aggregate"]
    ] + [
        (
            f"irad:{a['defence']}",
            "clean / PGD acc. (%)",
            f"{100 * a['clean_accuracy_mean']:.1f} / {100 * a['pgd_accuracy_mean']:.1f}",
        )
        for a in result["irad_aggregate"]
    ]
    return _report.DemoSummary(family="adversarial", rows=rows, report=Path(result["report"]))
