"""`posneg bench pruning`: class-dependent compression vs plain IMP; multi-sample dropout.

Section 1 (Entezari and Saukh, arXiv 1909.10364): on scikit-learn's breast cancer (malignant,
the important class, relabelled positive) and KEEL sets (``positive`` = minority), an MLP
F-64-64-2 is pruned by :func:`posneg.selection.compression.iterative_magnitude_pruning`
(magnitude-increase score, 50% of every weight and bias tensor per round, rewinding to θ0,
pruned entries frozen). Two losses: ``imp`` = the released switches (``pos_weight=(1, 1)``,
ranking weight 0) and ``class_dependent`` = ``pos_weight=(1, w)`` (w = ``pos_weight``, the
card's 3 by default) plus ``ranking_weight``. Each round trains ``epochs`` full-batch Adam
steps (lr 1e-2) from the rewound weights; the last epoch is scored (the code's AUC-based epoch
selection is not reproduced). Split: fold 0 of :func:`posneg.data.keel.keel_folds` (stratified
80/20, seeded), features standardised on the train part. Metrics on the test part per
sparsity: minority recall, G-mean, false negatives.

Section 2 (Inoue, arXiv 1905.09788): :mod:`posneg.bench._msd`.

Python use::

    from posneg.bench.pruning import BenchConfig, run
    result = run(BenchConfig(datasets=("breast_cancer",), rounds=2, epochs=20, seeds=1))
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from posneg.bench import _harness as harness
from posneg.bench import _msd, _report
from posneg.selection.compression import ClassDependentLoss, iterative_magnitude_pruning

__all__ = ["DEFAULT_DATASETS", "DEMO_CONFIG", "BenchConfig", "cli", "demo", "run"]

DEFAULT_DATASETS = ("breast_cancer", "ecoli3", "glass6")
METHODS = ("imp", "class_dependent")
#: Sparsity from which the claim is judged (at least 90% of the weights removed).
CLAIM_SPARSITY = 0.9


@dataclass(frozen=True)
class BenchConfig:
    """Configuration of `posneg bench pruning`.

    Attributes:
        datasets: breast_cancer and/or KEEL set names.
        rounds: pruning rounds (8: 0.4% of the weights remain).
        epochs: full-batch training epochs per round.
        pos_weight: BCE positive weight of the important (minority) class for class_dependent.
        ranking_weight: weight of the ranking term for class_dependent (non-detached).
        msd_epochs: MNIST-1D epochs of the multi-sample dropout section (0: skip it).
        msd_samples: the M values compared.
        msd_target: train loss whose first crossing is reported.
        seeds, first_seed, device, threads, out, quiet: shared options.
    """

    datasets: tuple[str, ...] = DEFAULT_DATASETS
    rounds: int = 8
    epochs: int = 100
    pos_weight: float = 3.0
    ranking_weight: float = 0.0
    msd_epochs: int = 50
    msd_samples: tuple[int, ...] = (1, 2, 8)
    msd_target: float = 0.3
    seeds: int = 3
    first_seed: int = 0
    device: str = "cpu"
    threads: int = 1
    out: str = "bench-pruning"
    quiet: bool = False


DEMO_CONFIG = BenchConfig(
    datasets=("breast_cancer",),
    rounds=3,
    epochs=30,
    msd_epochs=1,
    msd_samples=(1, 8),
    seeds=1,
    threads=1,
)


def _load(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        d = load_breast_cancer()
        return d.data.astype(np.float64), (d.target == 0).astype(np.int64)  # malignant -> 1
    from posneg.data.keel import load_keel

    k = load_keel(name)
    return k.x, k.y


def _split(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[torch.Tensor, ...]:
    from posneg.data.keel import keel_folds

    train, test = keel_folds(y, n_folds=5, generator=torch.Generator().manual_seed(seed))[0]
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-8
    f = lambda a: torch.as_tensor((a - mu) / sd, dtype=torch.float32)  # noqa: E731
    t = lambda a: torch.as_tensor(a, dtype=torch.int64)  # noqa: E731
    return f(x[train]), t(y[train]), f(x[test]), t(y[test])


def _scores(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    tp = int(((pred == 1) & (y == 1)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    rec = tp / max(1, tp + fn)
    spec = tn / max(1, tn + fp)
    return {"minority_recall": rec, "g_mean": math.sqrt(rec * spec), "fn": fn, "fp": fp}


def _prune_run(job: tuple[str, str, int], cfg: BenchConfig, tick: Any) -> list[dict[str, Any]]:
    name, method, seed = job
    x, y, xt, yt = _split(*_load(name), seed)
    with harness.seeded(torch.device("cpu"), seed):
        model = nn.Sequential(
            nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)
        )
    w = (1.0, cfg.pos_weight) if method == "class_dependent" else (1.0, 1.0)
    rw = cfg.ranking_weight if method == "class_dependent" else 0.0
    loss_fn = ClassDependentLoss(pos_weight=w, ranking_weight=rw)

    def train(m: nn.Module, t: int) -> dict[str, float]:
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        for _ in range(cfg.epochs):
            opt.zero_grad()
            loss_fn(m(x), y).backward()
            opt.step()
        tick()
        with torch.no_grad():
            return _scores(m(xt).argmax(1), yt)

    rounds = iterative_magnitude_pruning(model, train, rounds=cfg.rounds)
    return [
        {"dataset": name, "method": method, "seed": seed, "round": r.round,
         "remaining": r.remaining, **r.result}
        for r in rounds
    ]  # fmt: skip


def _validate(cfg: BenchConfig) -> None:
    harness.check_common(cfg)
    harness.check_number("--rounds", cfg.rounds, low=0)
    harness.check_number("--epochs", cfg.epochs, low=1)
    harness.check_number("--msd-epochs", cfg.msd_epochs, low=0)
    if not cfg.pos_weight > 0:
        raise harness.UsageError(f"--pos-weight: must be > 0; got {cfg.pos_weight}")
    if cfg.ranking_weight < 0:
        raise harness.UsageError(f"--ranking-weight: must be >= 0; got {cfg.ranking_weight}")
    if any(m < 1 for m in cfg.msd_samples):
        raise harness.UsageError(f"--msd-samples: each M must be >= 1; got {cfg.msd_samples}")
    for d in cfg.datasets:
        try:
            _load(d)
        except (ValueError, OSError) as exc:
            raise harness.UsageError(
                f"--datasets: {d!r}: breast_cancer or a KEEL set ({exc})"
            ) from exc


def _ms(values: list[float]) -> tuple[float, float]:
    v = [a for a in values if not math.isnan(a)]
    return _report.mean_std(v) if v else (math.nan, math.nan)


def _aggregate_pruning(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = dict.fromkeys((r["dataset"], r["method"], r["round"]) for r in rows)
    out = []
    for d, m, t in keys:
        sel = [r for r in rows if (r["dataset"], r["method"], r["round"]) == (d, m, t)]
        agg = {"dataset": d, "method": m, "round": t, "remaining": sel[0]["remaining"],
               "n": len(sel)}  # fmt: skip
        for k in ("minority_recall", "g_mean", "fn", "fp"):
            agg[f"{k}_mean"], agg[f"{k}_std"] = _ms([float(r[k]) for r in sel])
        out.append(agg)
    return out


def _pruning_claim(agg: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(a["dataset"], a["method"], a["round"]): a for a in agg}
    wins = total = 0
    diffs = []
    for (d, m, t), a in by.items():
        if m != "imp" or 1 - a["remaining"] < CLAIM_SPARSITY or (d, "class_dependent", t) not in by:
            continue
        cd = by[(d, "class_dependent", t)]["minority_recall_mean"]
        total += 1
        wins += cd >= a["minority_recall_mean"]
        diffs.append(cd - a["minority_recall_mean"])
    verdict = (
        "n/a (no round reaches 90% sparsity)"
        if total == 0
        else ("holds" if wins == total else "partly" if wins > total / 2 else "does not hold")
    )
    return {"claim": "class-dependent compression keeps minority recall at higher sparsity",
            "comparisons": total, "class_dependent_at_least_imp": wins,
            "mean_recall_gain": float(np.mean(diffs)) if diffs else math.nan,
            "verdict": verdict}  # fmt: skip


def _msd_claim(agg: list[dict[str, Any]]) -> dict[str, Any]:
    if len(agg) < 2:
        return {"claim": "multi-sample dropout", "verdict": "n/a"}
    lo, hi = agg[0], agg[-1]
    e_lo, e_hi = lo["epochs_to_target_mean"], hi["epochs_to_target_mean"]
    if math.isnan(e_lo) and math.isnan(e_hi):
        how = "neither reached the target: judged by the final train loss"
        faster = hi["final_train_loss_mean"] < lo["final_train_loss_mean"]
    else:
        how = "epochs to the target"
        faster = not math.isnan(e_hi) and (math.isnan(e_lo) or e_hi < e_lo)
    err_ok = hi["test_error_mean"] <= lo["test_error_mean"] + lo["test_error_std"]
    verdict = "holds" if faster and err_ok else "partly" if faster or err_ok else "does not hold"
    return {"claim": f"M={hi['M']} converges in fewer epochs than M={lo['M']} "
            "with equal or lower test error", "judged_by": how, "faster": faster,
            "error_not_higher": err_ok, "verdict": verdict}  # fmt: skip


def _plot(out: Path, agg: list[dict[str, Any]], msd: list[dict[str, Any]]) -> list[Path]:
    from matplotlib.figure import Figure

    sets = list(dict.fromkeys(a["dataset"] for a in agg))
    fig = Figure(figsize=(4.5 * max(1, len(sets)), 7.5))
    axes = fig.subplots(2, max(1, len(sets)), squeeze=False)
    for j, d in enumerate(sets):
        for row, (key, label) in enumerate((("minority_recall", "minority recall"),
                                            ("g_mean", "G-mean"))):  # fmt: skip
            ax = axes[row][j]
            for m in METHODS:
                pts = [a for a in agg if a["dataset"] == d and a["method"] == m]
                xs = [100 * a["remaining"] for a in pts]
                ys = [a[f"{key}_mean"] for a in pts]
                es = [a[f"{key}_std"] for a in pts]
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=m)
            ax.set_xscale("log")
            ax.invert_xaxis()
            ax.set(xlabel="weights remaining (%)", ylabel=label, title=d if row == 0 else "")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Class-dependent compression vs plain IMP (mean ± std over seeds)")
    paths = [_report.save_figure(fig, out / "pruning.png")]
    if msd:
        fig2 = Figure(figsize=(6, 4.5))
        ax = fig2.subplots()
        for a in msd:
            ax.plot(range(1, len(a["curve"]) + 1), a["curve"], marker=".", label=f"M={a['M']}")
        ax.set(xlabel="epoch", ylabel="train cross-entropy (eval mode, mean over seeds)",
               yscale="log", title="Multi-sample dropout, MNIST-1D MLP")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend()
        paths.append(_report.save_figure(fig2, out / "msd.png"))
    return paths


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run both sections; write results.json / results.md / PNGs into ``cfg.out``."""
    _validate(cfg)
    start = time.perf_counter()
    seeds = harness.seed_list(cfg)
    device = harness.resolve_device(cfg.device)
    jobs = [(d, m, s) for d in cfg.datasets for s in seeds for m in METHODS]
    with harness.torch_threads(cfg.threads, torch.device("cpu")):
        nested = harness.run_grid(
            jobs, lambda job, tick: _prune_run(job, cfg, tick), steps=cfg.rounds + 1,
            describe=lambda j: f"{j[1]} {j[0]} seed={j[2]}", quiet=cfg.quiet)  # fmt: skip
        rows = [r for runs in nested for r in runs]
        msd_runs: list[dict[str, Any]] = []
        if cfg.msd_epochs > 0:
            data = _msd.load()
            mjobs = [(m, s) for m in cfg.msd_samples for s in seeds]
            msd_runs = harness.run_grid(
                mjobs,
                lambda job, tick: _msd.run_one(
                    data, num_samples=job[0], seed=job[1], epochs=cfg.msd_epochs, p=0.5,
                    target_loss=cfg.msd_target, device=device, tick=tick),
                steps=cfg.msd_epochs, describe=lambda j: f"msd M={j[0]} seed={j[1]}",
                quiet=cfg.quiet)  # fmt: skip
    agg = _aggregate_pruning(rows)
    msd_agg = []
    for m in cfg.msd_samples:
        sel = [r for r in msd_runs if r["M"] == m]
        if not sel:
            continue
        a: dict[str, Any] = {"M": m, "n": len(sel)}
        for k in ("epochs_to_target", "test_error", "epoch_seconds", "final_train_loss"):
            a[f"{k}_mean"], a[f"{k}_std"] = _ms([r[k] for r in sel])
        a["reached"] = sum(not math.isnan(r["epochs_to_target"]) for r in sel)
        a["curve"] = np.mean([r["train_loss_curve"] for r in sel], axis=0).tolist()
        msd_agg.append(a)
    claims = [_pruning_claim(agg), _msd_claim(msd_agg)]
    header = ["data set", "method", "remaining", "minority recall", "G-mean", "FN"]
    table = [
        [a["dataset"], a["method"], f"{100 * a['remaining']:.1f}%",
         _report.fmt(a["minority_recall_mean"], a["minority_recall_std"]),
         _report.fmt(a["g_mean_mean"], a["g_mean_std"]),
         _report.fmt(a["fn_mean"], a["fn_std"], digits=1)]
        for a in agg
    ]  # fmt: skip
    notes = [
        f"Seeds {seeds}; {cfg.epochs} full-batch epochs per round, {cfg.rounds} rounds of 50% "
        f"per-tensor pruning with rewinding; class_dependent: pos_weight (1, {cfg.pos_weight}), "
        f"ranking weight {cfg.ranking_weight}.",
        *[f"MSD M={a['M']}: epochs to train loss {cfg.msd_target}: "
          f"{_report.fmt(a['epochs_to_target_mean'], a['epochs_to_target_std'], digits=1)} "
          f"({a['reached']}/{a['n']} seeds reached it); test error "
          f"{_report.fmt(a['test_error_mean'], a['test_error_std'])}; "
          f"s/epoch {_report.fmt(a['epoch_seconds_mean'], a['epoch_seconds_std'])}; final train "
          f"loss {_report.fmt(a['final_train_loss_mean'], a['final_train_loss_std'])}"
          for a in msd_agg],
        *[f"Claim: {c['claim']}: {c['verdict']}" for c in claims],
    ]  # fmt: skip
    return _report.publish(
        cfg.out, title="Class-dependent compression and multi-sample dropout",
        config=asdict(cfg), results={"runs": rows, "aggregate": agg, "msd_runs": msd_runs,
                                     "msd_aggregate": msd_agg, "claims": claims},
        header=header, rows=table, notes=notes, plots=lambda out: _plot(out, agg, msd_agg),
        quiet=cfg.quiet, elapsed=time.perf_counter() - start)  # fmt: skip


cli = harness.command(
    BenchConfig,
    run,
    doc="""Class-dependent compression vs plain IMP (recall vs sparsity); multi-sample dropout.

    Prunes an MLP on breast cancer and KEEL sets by iterative magnitude pruning with rewinding,
    with the plain and the class-weighted loss, and trains an MNIST-1D MLP with M in {1, 2, 8}
    dropout samples. Writes results.json, results.md and PNG plots into --out.
    """,
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: breast cancer, 3 rounds, 1 seed; MSD 2 epochs."""
    result = run(BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out), "quiet": True}))
    last = max(a["round"] for a in result["aggregate"])
    rows = [
        (a["method"], f"minority recall at {100 * a['remaining']:.1f}% weights",
         f"{a['minority_recall_mean']:.3f}")
        for a in result["aggregate"] if a["round"] == last
    ]  # fmt: skip
    rows += [(f"msd M={a['M']}", "test error", f"{a['test_error_mean']:.3f}")
             for a in result["msd_aggregate"]]  # fmt: skip
    return _report.DemoSummary(family="pruning", rows=rows, report=Path(result["report"]))
