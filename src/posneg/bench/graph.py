"""`posneg bench graph`: SCGC-style deep clustering with Ncontrast against PamC's meta-node loss.

For every data set (all 1797 of scikit-learn's 8x8 digits; MNIST-1D train + test, subsampled to
``mnist1d_n`` rows) and every seed, one MLP autoencoder is pre-trained and its centres set by
KMeans (shared by both objectives of that seed), then trained full-batch for ``epochs`` epochs on
``beta * KL(P || Q) + alpha * L`` with L the all-pairs Ncontrast loss (Graph-MLP / SCGC,
:func:`posneg.losses.pamc.ncontrast`) or PamC (:func:`posneg.losses.pamc.pamc`, meta-nodes from
the hard argmax of q), both over the influence graph ``sum_{t<=order} A^t`` of the symmetric
row-normalised k-NN graph of the raw features (:func:`posneg.losses.pamc.knn_graph`). Reported:
clustering accuracy (Hungarian) and NMI of ``argmax q`` after the last epoch, seconds per epoch,
and PamC minus Ncontrast per seed. A separate sweep times one forward + backward of each term
alone, and its peak memory, on random features as N grows (:data:`BenchConfig.cost_sizes`).
The paper's claim (PamC within ~1-2 points of Ncontrast at a lower cost, the gap in cost growing
with N) is reported whichever way it comes out. See ``docs/graph.md``.

Python use::

    from posneg.bench.graph import BenchConfig, run
    result = run(BenchConfig(datasets=("digits",), epochs=20, seeds=1, cost_sizes=()))
    result["aggregate"]          # per data set and objective: mean/std of ACC and NMI
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._graph_train import (
    DATASETS,
    MODEL,
    OBJECTIVES,
    graph_of,
    load_points,
    pretrain,
    term_cost,
    train_one,
)

__all__ = ["DATASETS", "DEMO_CONFIG", "OBJECTIVES", "BenchConfig", "cli", "demo", "run"]


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        datasets: ``digits`` (N = 1797) and/or ``mnist1d`` (subsampled to ``mnist1d_n``).
        objectives: ``ncontrast`` (all N^2 pairs) and/or ``pamc`` (meta-node negatives).
        epochs: full-batch epochs of the clustering stage (one Adam step each).
        pretrain_epochs: autoencoder pre-training epochs (mini-batches of 256).
        mnist1d_n: rows of MNIST-1D used (of 5000).
        k: neighbours of the k-NN graph.
        order: r of the influence graph sum_{t=1..r} A^t.
        tau: inverse temperature of both losses (multiplies the cosine).
        alpha: weight of the contrastive term.
        beta: weight of the KL(P || Q) term.
        lr: Adam learning rate.
        n_z: embedding size.
        cost_sizes: N of the cost sweep on random features (empty: no sweep).
        seeds: number of training seeds (``first_seed``, ``first_seed + 1``, ...).
        first_seed: the first training seed.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        threads: CPU threads for torch (0: automatic, min(4, available cores); N: exactly N).
        out: output folder.
        quiet: no progress bars and no table.
    """

    datasets: tuple[str, ...] = DATASETS
    objectives: tuple[str, ...] = OBJECTIVES
    epochs: int = 50
    pretrain_epochs: int = 20
    mnist1d_n: int = 3000
    k: int = 3
    order: int = 2
    tau: float = 0.5
    alpha: float = 1.0
    beta: float = 1.0
    lr: float = 1e-3
    n_z: int = 10
    cost_sizes: tuple[int, ...] = (500, 1000, 2000, 4000, 8000)
    seeds: int = 3
    first_seed: int = 0
    device: str = "cpu"
    threads: int = 1
    out: str = "runs/graph"
    quiet: bool = False


def _validate(cfg: BenchConfig) -> None:
    harness.check_common(cfg)
    for name, values, allowed in (
        ("--dataset", cfg.datasets, DATASETS),
        ("--objective", cfg.objectives, OBJECTIVES),
    ):
        if not values:
            raise harness.UsageError(f"{name}: give at least one of {', '.join(allowed)}")
        bad = [v for v in values if v not in allowed]
        if bad:
            raise harness.UsageError(
                f"{name}: unknown {bad[0]!r}; choose from {', '.join(allowed)}"
            )
    for flag, value, low in (
        ("--epochs", cfg.epochs, 1),
        ("--pretrain-epochs", cfg.pretrain_epochs, 0),
        ("--mnist1d-n", cfg.mnist1d_n, 100),
        ("--k", cfg.k, 1),
        ("--order", cfg.order, 1),
        ("--n-z", cfg.n_z, 2),
    ):
        if value < low:
            raise harness.UsageError(f"{flag}: must be >= {low}; got {value}")
    for flag, v in (("--tau", cfg.tau), ("--lr", cfg.lr)):
        harness.check_number(flag, v, low=0.0, closed="none")
    for flag, v in (("--alpha", cfg.alpha), ("--beta", cfg.beta)):
        harness.check_number(flag, v, low=0.0)
    if any(n < 50 for n in cfg.cost_sizes):
        raise harness.UsageError(f"--cost-size: every size must be >= 50; got {cfg.cost_sizes}")


def _notes(cfg: BenchConfig, agg: list[dict[str, Any]], gaps: list[dict[str, Any]]) -> list[str]:
    setup = (
        f"Setup: {MODEL}; k-NN k={cfg.k}, influence order {cfg.order}, tau={cfg.tau}, "
        f"alpha={cfg.alpha}, beta={cfg.beta}, {cfg.epochs} epochs after {cfg.pretrain_epochs} AE "
        "epochs; metrics of argmax q after the last epoch; mean ± std over seeds."
    )
    lines = [setup]
    for gp in gaps:
        verdict = "within 2 points or better" if gp["acc_mean"] >= -0.02 else "worse by > 2 points"
        lines.append(
            f"{gp['dataset']} (N={gp['n']}): PamC - Ncontrast ACC "
            f"{_report.pp_cell(gp['acc_mean'], gp['acc_std'], gp['seeds'])} pp, NMI "
            f"{_report.pp_cell(gp['nmi_mean'], gp['nmi_std'], gp['seeds'])} pp; "
            f"epoch time ratio {gp['epoch_ratio']:.2f}x: {verdict}."
        )
    return lines


def _gaps(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for ds in dict.fromkeys(r["dataset"] for r in runs):
        by = {(r["objective"], r["seed"]): r for r in runs if r["dataset"] == ds}
        seeds = sorted({s for _, s in by if ("pamc", s) in by and ("ncontrast", s) in by})
        if not seeds:
            continue
        row: dict[str, Any] = {"dataset": ds, "n": by[("pamc", seeds[0])]["n"], "seeds": len(seeds)}
        for m in ("acc", "nmi"):
            d = [by[("pamc", s)][m] - by[("ncontrast", s)][m] for s in seeds]
            row[f"{m}_mean"], row[f"{m}_std"] = _report.mean_std(d)
        t_n = np.mean([by[("ncontrast", s)]["epoch_seconds"] for s in seeds])
        t_p = np.mean([by[("pamc", s)]["epoch_seconds"] for s in seeds])
        row["epoch_ratio"] = float(t_n / t_p) if t_p > 0 else math.nan
        out.append(row)
    return out


def _plot(out: Path, agg: list[dict[str, Any]], costs: list[dict[str, Any]]) -> list[Path]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.5))
    axes = fig.subplots(1, 3)
    for obj in dict.fromkeys(a["objective"] for a in agg):
        pts = sorted((a for a in agg if a["objective"] == obj), key=lambda a: a["n"])
        axes[0].errorbar(
            [a["n"] for a in pts],
            [100 * a["acc_mean"] for a in pts],
            yerr=[100 * a["acc_std"] for a in pts],
            fmt="o",
            capsize=3,
            label=obj,
        )
        for a in pts:
            axes[0].annotate(a["dataset"], (a["n"], 100 * a["acc_mean"]), fontsize=7)
    axes[0].set(
        xlabel="N (data set size)", ylabel="clustering ACC (%)", title="accuracy per data set"
    )
    for obj in dict.fromkeys(c["objective"] for c in costs):
        pts = sorted((c for c in costs if c["objective"] == obj), key=lambda c: c["n"])
        axes[1].plot([c["n"] for c in pts], [c["seconds"] for c in pts], marker="o", label=obj)
        mem = [(c["n"], c["peak_mib"]) for c in pts if c["peak_mib"] is not None]
        if mem:
            axes[2].plot(*zip(*mem, strict=True), marker="o", label=obj)
    axes[1].set(xlabel="N", ylabel="seconds (forward + backward)", title="time of the term")
    axes[2].set(xlabel="N", ylabel="peak extra RSS (MiB)", title="memory of the term")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    sizes = sorted({c["n"] for c in costs})
    for ax in axes[1:]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        if sizes:
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.minorticks_off()
    fig.suptitle("posneg bench graph: Ncontrast vs PamC")
    return [_report.save_figure(fig, out / "graph.png")]


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Returns:
        ``{"runs", "aggregate", "gaps", "costs", "report", "plots", "config"}``.

    Raises:
        UsageError: a bad value (names the flag).
    """
    _validate(cfg)
    device = harness.resolve_device(cfg.device)
    seeds = harness.seed_list(cfg)
    started = time.perf_counter()
    with harness.torch_threads(cfg.threads, device) as threads:
        data: dict[str, tuple[torch.Tensor, np.ndarray, torch.Tensor]] = {}
        for ds in cfg.datasets:
            x_np, y = load_points(ds, cfg.mnist1d_n if ds == "mnist1d" else None)
            x = torch.as_tensor(x_np, device=device)
            data[ds] = (x, y, graph_of(x, cfg.k, cfg.order))
        pretrained: dict[tuple[str, int], dict[str, torch.Tensor]] = {}

        def one(job: tuple[str, int, str], tick: Any) -> dict[str, Any]:
            ds, seed, obj = job
            x, y, _ = data[ds]
            if (ds, seed) not in pretrained:
                model = pretrain(x, int(y.max()) + 1, seed, cfg, device)
                pretrained[(ds, seed)] = {
                    k: v.detach().clone() for k, v in model.state_dict().items()
                }
            res = train_one(obj, data[ds], pretrained[(ds, seed)], seed, cfg, device, tick)
            return {"dataset": ds, "n": len(y), "objective": obj, "seed": seed, **res}

        jobs = [(ds, s, o) for ds in cfg.datasets for s in seeds for o in cfg.objectives]
        runs = harness.run_grid(
            jobs,
            one,
            describe=lambda j: f"{j[0]} {j[2]} seed={j[1]}",
            steps=cfg.epochs,
            quiet=cfg.quiet,
        )
        costs = [
            term_cost(o, n, k=cfg.k, order=cfg.order)
            for n in cfg.cost_sizes
            for o in cfg.objectives
        ]
    elapsed = time.perf_counter() - started
    agg = _report.aggregate(
        runs,
        by=("dataset", "objective"),
        metrics=("acc", "nmi"),
        keep=("n",),
        means=("epoch_seconds", "term_forward_seconds"),
    )
    gaps = _gaps(runs)
    header = ["data set", "N", "objective", "ACC (%)", "NMI (%)", "s / epoch", "term fwd (ms)"]
    rows = [
        [
            a["dataset"],
            a["n"],
            a["objective"],
            _report.pct_cell(a["acc_mean"], a["acc_std"], len(a["seeds"])),
            _report.pct_cell(a["nmi_mean"], a["nmi_std"], len(a["seeds"])),
            f"{a['epoch_seconds_mean']:.3f}",
            f"{1000 * a['term_forward_seconds_mean']:.1f}",
        ]
        for a in agg
    ]
    notes = _notes(cfg, agg, gaps)
    for n in cfg.cost_sizes:
        by = {c["objective"]: c for c in costs if c["n"] == n}
        if "pamc" in by and "ncontrast" in by:
            t = by["ncontrast"]["seconds"] / by["pamc"]["seconds"]
            mn, mp = by["ncontrast"]["peak_mib"], by["pamc"]["peak_mib"]
            mem = (
                f", peak RSS {mn:.1f} vs {mp:.1f} MiB" if mn is not None and mp is not None else ""
            )
            notes.append(
                f"cost N={n}: Ncontrast / PamC time {t:.1f}x{mem} (random features, k-NN graph)."
            )
    config = _report.resolved_config(
        cfg,
        seeds=seeds,
        device=device,
        threads=threads,
        model=MODEL,
        elapsed_seconds=round(elapsed, 1),
    )
    results = {"runs": runs, "aggregate": agg, "gaps": gaps, "costs": costs}
    return _report.publish(
        cfg.out,
        title="posneg bench graph",
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes=notes,
        plots=lambda out: _plot(out, agg, costs),
        quiet=cfg.quiet,
        elapsed=elapsed,
    )


#: `posneg bench graph`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""Deep graph clustering (SCGC-style) with the all-pairs Ncontrast loss vs PamC.

    On the digits and MNIST-1D: an MLP autoencoder, KMeans centres, then DEC's KL plus the
    contrastive term over a k-NN influence graph; clustering ACC/NMI over seeds, seconds per
    epoch, and the time and memory of each term alone as N grows. Writes results.json,
    results.md and a PNG plot into --out.
    """,
    flags={
        "datasets": ("--dataset",),
        "objectives": ("--objective",),
        "cost_sizes": ("--cost-size",),
    },
)


#: The demo preset: digits only, one seed, a few epochs, a small cost sweep (seconds).
DEMO_CONFIG = BenchConfig(
    datasets=("digits",), epochs=5, pretrain_epochs=2, seeds=1, cost_sizes=(500,)
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: digits, one seed, 5 epochs, a one-point cost sweep."""
    cfg = BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out), "quiet": True})
    result = run(cfg)
    rows = [
        (a["objective"], "ACC / NMI (%)", f"{100 * a['acc_mean']:.1f} / {100 * a['nmi_mean']:.1f}")
        for a in result["aggregate"]
    ]
    return _report.DemoSummary(family="graph", rows=rows, report=Path(result["report"]))
