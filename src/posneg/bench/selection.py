"""`posneg bench selection`: augmentation coresets vs random subsets vs full data; ForAug.

Part ``coreset`` (Liu & Mirzasoleiman, NeurIPS 2022; :mod:`posneg.bench._selection_train`): an
MLP on scikit-learn's 8x8 digits trained on a weighted facility-location coreset of s = 10-50%
of the data plus its augmented copy (the official ``train.sh`` protocol, reselected every
``reselect`` epochs), on a random subset of the same size plus its augmented copy, and on the
full data plus its augmented copy. Claims: coresets beat random subsets of equal size, and
reach (near) full-data accuracy in less time. "Time to target" is the first cumulative training
time (selection included) at which test accuracy reaches ``target`` x the full run's final
accuracy of the same seed.

Part ``foraug`` (Nauen et al., 2025; :mod:`posneg.bench._foraug`): a small CNN trained on digits
pasted onto class-correlated photo backgrounds, with and without ForAug recombination, tested on
held-out composites with the training correlation (``same``) and with swapped backgrounds.
Claim: less background reliance (higher swapped accuracy, a smaller same - swapped gap).

Python use::

    from posneg.bench.selection import BenchConfig, run
    result = run(BenchConfig(parts=("coreset",), fractions=(0.3,), epochs=5, seeds=1))
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._foraug import FORAUG_METHODS, foraug_run, make_foraug_data
from posneg.bench._selection_train import load_split, train_run
from posneg.bench._terminal import progress_bar

__all__ = ["DEMO_CONFIG", "PARTS", "BenchConfig", "cli", "demo", "run"]

PARTS = ("coreset", "foraug")


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        parts: which experiments: ``coreset``, ``foraug``.
        fractions: coreset / random subset sizes s (shares of the train split).
        epochs: epochs of the coreset part.
        reselect: R, epochs between two selections (from epoch 0).
        target: time-to-target threshold, a share of the full run's final accuracy.
        foraug_epochs: epochs of the ForAug part.
        patches_per_family: background patches per tint family (train and test each).
        seeds: number of training seeds (``first_seed``, ``first_seed + 1``, ...).
        first_seed: the first training seed.
        split_seed: seed of the digits train/test split.
        threads: CPU threads for torch (0: automatic).
        out: output folder.
        quiet: no progress bars and no table.
    """

    parts: tuple[str, ...] = PARTS
    fractions: tuple[float, ...] = (0.1, 0.3, 0.5)
    epochs: int = 30
    reselect: int = 5
    target: float = 0.98
    foraug_epochs: int = 10
    patches_per_family: int = 20
    seeds: int = 3
    first_seed: int = 0
    split_seed: int = 0
    threads: int = 1
    out: str = "runs/selection"
    quiet: bool = False


#: The `posneg demo` preset: the coreset part only, one fraction, 3 epochs, 1 seed.
DEMO_CONFIG = BenchConfig(parts=("coreset",), fractions=(0.3,), epochs=3, reselect=2, seeds=1)


def _validate(cfg: BenchConfig) -> None:
    harness.check_common(cfg)
    for p in cfg.parts:
        if p not in PARTS:
            raise harness.UsageError(f"--parts: unknown part {p!r}; known: {', '.join(PARTS)}")
    for f in cfg.fractions:
        harness.check_number("--fractions", f, low=0.0, high=1.0, closed="high")
    for flag, v in (
        ("--epochs", cfg.epochs),
        ("--reselect", cfg.reselect),
        ("--foraug-epochs", cfg.foraug_epochs),
        ("--patches-per-family", cfg.patches_per_family),
    ):
        if v < 1:
            raise harness.UsageError(f"{flag}: must be >= 1; got {v}")
    harness.check_number("--target", cfg.target, low=0.0, high=1.0, closed="high")


def _time_to(acc: list[float], times: list[float], goal: float) -> float:
    for a, t in zip(acc, times, strict=True):
        if a >= goal:
            return t
    return math.nan


def _ms(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return _report.mean_std(finite)


def _coreset_part(cfg: BenchConfig, seeds: list[int], bar: Any) -> dict[str, Any]:
    data = load_split(cfg.split_seed)
    labels = ["full"] + [f"{m}@{f:g}" for f in cfg.fractions for m in ("coreset", "random")]
    task = bar.add_task("coreset runs", total=len(labels) * len(seeds))
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in labels}
    for seed in seeds:
        for label in labels:
            method, _, frac = label.partition("@")
            runs[label].append(
                train_run(
                    data,
                    method=method,
                    fraction=float(frac or 1.0),
                    seed=seed,
                    epochs=cfg.epochs,
                    reselect=cfg.reselect,
                )
            )
            bar.advance(task)
    full_final = [r["acc"][-1] for r in runs["full"]]
    agg: list[dict[str, Any]] = []
    for label in labels:
        rs = runs[label]
        ttt = [
            _time_to(r["acc"], r["time"], cfg.target * ff)
            for r, ff in zip(rs, full_final, strict=True)
        ]
        acc_m, acc_s = _ms([r["acc"][-1] for r in rs])
        t_m, t_s = _ms([r["time"][-1] for r in rs])
        tt_m, tt_s = _ms(ttt)
        agg.append(
            {
                "method": label,
                "acc_mean": acc_m,
                "acc_std": acc_s,
                "time_mean": t_m,
                "time_std": t_s,
                "time_to_target_mean": tt_m,
                "time_to_target_std": tt_s,
                "reached": sum(math.isfinite(t) for t in ttt),
                "n": len(rs),
            }
        )
    claims = []
    for f in cfg.fractions:
        diff = [
            c["acc"][-1] - r["acc"][-1]
            for c, r in zip(runs[f"coreset@{f:g}"], runs[f"random@{f:g}"], strict=True)
        ]
        m, s = _report.mean_std(diff)
        claims.append(
            {
                "claim": f"coreset > random at s={f:g}",
                "diff_mean": m,
                "diff_std": s,
                "wins": sum(d > 0 for d in diff),
                "n": len(diff),
                "verdict": "holds"
                if m > 0 and sum(d > 0 for d in diff) > len(diff) / 2
                else "does not hold",
            }
        )
    by = {a["method"]: a for a in agg}
    full_t = by["full"]["time_to_target_mean"]
    faster = [
        f"{f:g}"
        for f in cfg.fractions
        if by[f"coreset@{f:g}"]["reached"] == len(seeds)
        and by[f"coreset@{f:g}"]["time_to_target_mean"] < full_t
    ]
    claims.append(
        {
            "claim": f"a coreset reaches {cfg.target:g} x full accuracy before full "
            f"(full: {full_t:.1f} s)",
            "diff_mean": math.nan,
            "diff_std": math.nan,
            "wins": len(faster),
            "n": len(cfg.fractions),
            "verdict": ("holds at s=" + ", ".join(faster)) if faster else "does not hold",
        }
    )
    return {"runs": runs, "aggregate": agg, "claims": claims}


def _foraug_part(cfg: BenchConfig, seeds: list[int], bar: Any) -> dict[str, Any]:
    data = make_foraug_data(cfg.split_seed, cfg.patches_per_family)
    task = bar.add_task("foraug runs", total=len(FORAUG_METHODS) * len(seeds))
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in FORAUG_METHODS}
    for seed in seeds:
        for m in FORAUG_METHODS:
            runs[m].append(foraug_run(data, method=m, seed=seed, epochs=cfg.foraug_epochs))
            bar.advance(task)
    agg = []
    for m in FORAUG_METHODS:
        row: dict[str, Any] = {"method": m, "n": len(runs[m])}
        for k in ("same", "swapped", "gap", "time"):
            row[f"{k}_mean"], row[f"{k}_std"] = _report.mean_std([r[k] for r in runs[m]])
        agg.append(row)
    by = {a["method"]: a for a in agg}
    holds = (
        by["foraug-all"]["swapped_mean"] > by["correlated"]["swapped_mean"] + 0.1
        and by["foraug-all"]["gap_mean"] < by["correlated"]["gap_mean"]
    )
    return {"runs": runs, "aggregate": agg, "verdict": "holds" if holds else "does not hold"}


def _plot(out: Path, coreset: dict[str, Any] | None, foraug: dict[str, Any] | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if coreset is not None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for label, rs in coreset["runs"].items():
            t = np.mean([r["time"] for r in rs], axis=0)
            a = np.mean([r["acc"] for r in rs], axis=0)
            style = "-" if label.startswith("coreset") else ("--" if label != "full" else ":")
            ax.plot(t, a, style, label=label, lw=2 if label == "full" else 1.2)
        ax.set_xlabel("training time (s, mean over seeds)")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0.5, 1.0)
        ax.legend(fontsize=8)
        ax.set_title("digits: coreset vs random subset vs full (+ augmented copy)")
        paths.append(_report.save_figure(fig, out / "coreset_accuracy_vs_time.png"))
    if foraug is not None:
        fig, ax = plt.subplots(figsize=(5.6, 3.8))
        agg = foraug["aggregate"]
        xs = np.arange(len(agg))
        for k, (key, off) in enumerate((("same", -0.2), ("swapped", 0.2))):
            ax.bar(
                xs + off,
                [a[f"{key}_mean"] for a in agg],
                0.4,
                yerr=[a[f"{key}_std"] for a in agg],
                label=f"test: {key} background",
            )
            del k
        ax.set_xticks(xs, [a["method"] for a in agg])
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8)
        ax.set_title("ForAug: digits on class-correlated backgrounds")
        paths.append(_report.save_figure(fig, out / "foraug_background_swap.png"))
    return paths


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench; write results.json / results.md / PNGs into ``cfg.out``."""
    _validate(cfg)
    import torch

    seeds = harness.seed_list(cfg)
    t0 = time.perf_counter()
    coreset = foraug = None
    with (
        harness.torch_threads(cfg.threads, torch.device("cpu")),
        progress_bar(disable=cfg.quiet) as bar,
    ):
        if "coreset" in cfg.parts:
            coreset = _coreset_part(cfg, seeds, bar)
        if "foraug" in cfg.parts:
            foraug = _foraug_part(cfg, seeds, bar)
    elapsed = time.perf_counter() - t0
    n = len(seeds)
    header = [
        "method",
        "test acc",
        "train time (s)",
        f"time to {cfg.target:g} x full (s)",
        "swapped-bg acc",
        "same - swapped (pp)",
    ]
    rows: list[list[str]] = []
    notes = [
        "Coreset: MLP 64-128-10 on digits, Adam 1e-3, batch 64; subset + augmented copy "
        f"(shift <= 1 px + N(0, 0.1^2)), reselect every {cfg.reselect} epochs, "
        f"{cfg.epochs} epochs. ForAug: SmallCNN on 32x32 composites, {cfg.foraug_epochs} "
        f"epochs. {n} seed(s); mean ± std. Timings on a shared CPU (under load)."
    ]
    if coreset is not None:
        for a in coreset["aggregate"]:
            tt = (
                _report.fmt(a["time_to_target_mean"], a["time_to_target_std"], digits=1)
                + f" ({a['reached']}/{a['n']})"
            )
            rows.append(
                [
                    a["method"],
                    _report.pct_cell(a["acc_mean"], a["acc_std"], n),
                    _report.fmt(a["time_mean"], a["time_std"], digits=1),
                    tt,
                    "",
                    "",
                ]
            )
        for c in coreset["claims"]:
            if math.isnan(c["diff_mean"]):
                notes.append(f"{c['claim']}: {c['wins']}/{c['n']} fractions -> {c['verdict']}")
                continue
            notes.append(
                f"{c['claim']}: {100 * c['diff_mean']:+.1f} ± {100 * c['diff_std']:.1f} pp "
                f"({c['wins']}/{c['n']} seeds) -> {c['verdict']}"
            )
    if foraug is not None:
        for a in foraug["aggregate"]:
            rows.append(
                [
                    a["method"],
                    _report.pct_cell(a["same_mean"], a["same_std"], n),
                    _report.fmt(a["time_mean"], a["time_std"], digits=1),
                    "",
                    _report.pct_cell(a["swapped_mean"], a["swapped_std"], n),
                    _report.pp_cell(a["gap_mean"], a["gap_std"], n),
                ]
            )
        notes.append(
            "ForAug claim (foraug-all: swapped acc > correlated + 10 pp and a smaller "
            f"gap): {foraug['verdict']}"
        )
    results = {"coreset": coreset, "foraug": foraug, "elapsed_s": elapsed}
    return _report.publish(
        cfg.out,
        title="Selection: augmentation coresets and ForAug",
        config=asdict(cfg),
        results=results,
        header=header,
        rows=rows,
        notes=notes,
        plots=lambda out: _plot(out, coreset, foraug),
        quiet=cfg.quiet,
        elapsed=elapsed,
        keep_first_column=True,
    )


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: the coreset part, s = 0.3, 3 epochs, 1 seed."""
    result = run(replace(DEMO_CONFIG, out=str(out), quiet=True))
    rows = [
        (a["method"], "test accuracy", f"{a['acc_mean']:.3f}")
        for a in result["coreset"]["aggregate"]
    ]
    return _report.DemoSummary(family="selection", rows=rows, report=Path(result["report"]))


cli = harness.command(
    BenchConfig,
    run,
    doc="""Augmentation coresets vs random subsets vs full data (accuracy vs time); ForAug.

    Trains a digits MLP on weighted facility-location coresets of 10-50% of the data plus
    their augmented copies, on random subsets of the same size, and on the full data; and a
    small CNN on digits pasted onto class-correlated photo backgrounds with and without ForAug
    recombination. Writes results.json, results.md and PNG plots into --out.
    """,
)
