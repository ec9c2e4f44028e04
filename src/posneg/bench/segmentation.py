"""`posneg bench segmentation`: negative frames, three observers and a classifier pre-screen.

Chalcroft et al., ASMUS 2021 (arXiv 2108.04114) on a CPU-sized stand-in for their ultrasound
data (:mod:`posneg.bench._segmentation_data`): digit frames with a cluttered background, a share
``negative_fraction`` of background-only (negative) frames, three simulated observers per frame.
Per seed:

1. a tiny U-Net (sigmoid output) is trained with :func:`posneg.selection.observers.batch_soft_dice`
   (whole-batch soft Dice, eps 1e-7, Adam) on targets fused by each strategy in ``strategies``
   (:func:`~posneg.selection.observers.fuse_observer_labels`: ``random`` redrawn at every
   fetch, ``vote``, ``mean``). Each strategy trains on its own labels (the official demo
   notebook passes the random-label set to all three trainers; not reproduced);
2. a small CNN pre-screen is trained with BCE on the frame labels
   (:func:`~posneg.selection.observers.frame_labels`, >= 2 of 3 observers);
3. test frames are z-scored, segmented, binarised at 0.5, reduced to their largest component and
   scored against the ``vote`` target (as the code's test), without a gate and behind
   :func:`~posneg.selection.observers.prescreen_gate` for every ``theta`` of the sweep
   ``linspace(0, 0.6, 20)`` and at the operating point ``--theta``.

Reported: false-positive frames (negative frames segmented, % of negatives), false-negative
frames (positives screened out or segmented empty, % of positives), Dice on the segmented
positive frames, and the code's number (mean Dice over all accepted frames, negatives with an
empty prediction scoring 1). Claims (card): the pre-screen removes most false-positive frames at
little Dice cost; the ranking of label strategies (whichever way it comes out).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._segmentation_data import (
    Frames,
    PreScreen,
    TinyUNet,
    largest_component,
    make_frames,
    split_digits,
)
from posneg.selection.observers import (
    STRATEGIES,
    FusionStrategy,
    batch_soft_dice,
    frame_labels,
    frame_outcomes,
    fuse_observer_labels,
    prescreen_gate,
    prescreen_thresholds,
    segmentation_scores,
)

__all__ = ["DEMO_CONFIG", "BenchConfig", "cli", "demo", "run"]

MODEL = "U-Net 2 levels (8/16/32), sigmoid, batch soft Dice, Adam; pre-screen CNN 8/16/16, BCE"


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        strategies: label strategies, any of ``random``, ``vote``, ``mean``.
        size: frame side (digits upsampled from 8x8; divisible by 4).
        train_digits: digits used for positive training frames (at most the train split).
        negative_fraction: share of negative (background-only) frames.
        noise: white-noise standard deviation of the background.
        clutter: amplitude of the smoothed background blobs.
        p_miss: probability that an observer draws nothing on a positive frame.
        p_false: probability that an observer marks a square on a negative frame.
        epochs: segmenter epochs.
        classifier_epochs: pre-screen epochs.
        batch_size: frames per batch.
        lr: Adam learning rate (official: Adam's default 1e-3).
        width: channels of the first U-Net level.
        theta: the pre-screen operating point of the table (probability > theta).
        keep_largest: keep the largest connected component of each prediction (official).
        test_fraction: share of the digits held out for test frames.
        seeds: number of seeds (``first_seed``, ``first_seed + 1``, ...).
        first_seed: the first seed.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        threads: CPU threads for torch (0: automatic).
        out: output folder.
        quiet: no progress bars and no table.
    """

    strategies: tuple[str, ...] = STRATEGIES
    size: int = 16
    train_digits: int = 700
    negative_fraction: float = 0.4
    noise: float = 0.3
    clutter: float = 1.0
    p_miss: float = 0.1
    p_false: float = 0.1
    epochs: int = 6
    classifier_epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    width: int = 8
    theta: float = 0.5
    keep_largest: bool = True
    test_fraction: float = 0.25
    seeds: int = 3
    first_seed: int = 0
    device: str = "auto"
    threads: int = 1
    out: str = "runs/segmentation"
    quiet: bool = False


def _validate(cfg: BenchConfig) -> BenchConfig:
    if not cfg.strategies:
        raise harness.UsageError("--strategy: give at least one strategy")
    for s in cfg.strategies:
        if s not in STRATEGIES:
            raise harness.UsageError(
                f"--strategy: unknown strategy {s!r}; known: {', '.join(STRATEGIES)}"
            )
    harness.check_common(cfg)
    harness.check_number("--size", cfg.size, low=8, high=64, closed="both")
    if cfg.size % 4:
        raise harness.UsageError(f"--size: must be divisible by 4; got {cfg.size}")
    harness.check_number(
        "--negative-fraction", cfg.negative_fraction, low=0.0, high=1.0, closed="low"
    )
    harness.check_number("--noise", cfg.noise, low=0.0)
    harness.check_number("--clutter", cfg.clutter, low=0.0)
    harness.check_number("--p-miss", cfg.p_miss, low=0.0, high=1.0, closed="both")
    harness.check_number("--p-false", cfg.p_false, low=0.0, high=1.0, closed="both")
    harness.check_number("--train-digits", cfg.train_digits, low=10)
    harness.check_number("--epochs", cfg.epochs, low=1)
    harness.check_number("--classifier-epochs", cfg.classifier_epochs, low=1)
    harness.check_number("--batch-size", cfg.batch_size, low=2)
    harness.check_number("--lr", cfg.lr, low=0.0, closed="none")
    harness.check_number("--width", cfg.width, low=1, high=64, closed="both")
    harness.check_number("--theta", cfg.theta, low=0.0, high=1.0, closed="both")
    harness.check_number("--test-fraction", cfg.test_fraction, low=0.05, high=0.9, closed="both")
    return replace(cfg, strategies=tuple(dict.fromkeys(cfg.strategies)))


def _zscore(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(x.shape[0], -1)
    mu, sd = flat.mean(1), flat.std(1).clamp_min(1e-6)
    return (x - mu[:, None, None, None]) / sd[:, None, None, None]


@dataclass
class _SeedData:
    train: Frames
    test: Frames
    screen_prob: torch.Tensor  # (N_test,) pre-screen probabilities
    screen_accuracy: float


def _frames(cfg: BenchConfig, seed: int) -> tuple[Frames, Frames]:
    g = torch.Generator().manual_seed(seed)
    tr, te = split_digits(cfg.size, cfg.test_fraction, seed)
    tr = tr[: cfg.train_digits]
    out = []
    for digits in (tr, te):
        n_neg = round(len(digits) * cfg.negative_fraction / (1 - cfg.negative_fraction))
        f = make_frames(
            digits,
            n_neg,
            noise=cfg.noise,
            clutter=cfg.clutter,
            p_miss=cfg.p_miss,
            p_false=cfg.p_false,
            generator=g,
        )
        out.append(replace(f, x=_zscore(f.x)))
    return out[0], out[1]


def _batches(n: int, bs: int, gen: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    return [perm[i : i + bs] for i in range(0, n, bs)]


def _train_prescreen(
    cfg: BenchConfig, data: tuple[Frames, Frames], seed: int, device: torch.device
) -> tuple[torch.Tensor, float]:
    train, test = data
    with harness.seeded(device, 10_000 + seed):
        model = PreScreen(cfg.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(20_000 + seed)
    y = frame_labels(train.observers).float()
    for _ in range(cfg.classifier_epochs):
        for idx in _batches(len(y), cfg.batch_size, gen):
            logits = model(train.x[idx].to(device))
            loss = F.binary_cross_entropy_with_logits(logits, y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        prob = torch.cat(
            [
                torch.sigmoid(model(test.x[i : i + 512].to(device))).cpu()
                for i in range(0, len(test.x), 512)
            ]
        )
    acc = float(((prob > 0.5) == frame_labels(test.observers)).double().mean())
    return prob.double(), acc


def _evaluate(
    pred: torch.Tensor, test: Frames, prob: torch.Tensor, theta: float | None
) -> dict[str, float]:
    positive = frame_labels(test.observers)
    target = fuse_observer_labels(test.observers, strategy="vote")
    accepted = None if theta is None else prescreen_gate(prob, threshold=theta)
    out = frame_outcomes(pred, positive, accepted=accepted)
    dice = segmentation_scores(pred, target).dice.double()
    seg_pos = positive & out.segmented
    acc = torch.ones_like(positive) if accepted is None else accepted
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return {
        "theta": float("nan") if theta is None else float(theta),
        "fp_rate": out.fp / max(n_neg, 1),
        "fn_rate": out.fn / max(n_pos, 1),
        "screened_out_rate": out.screened_out_positives / max(n_pos, 1),
        "dice_segmented": float(dice[seg_pos].mean()) if bool(seg_pos.any()) else float("nan"),
        "dice_accepted": float(dice[acc].mean()) if bool(acc.any()) else float("nan"),
        "accepted_rate": float(acc.double().mean()),
    }


def _train_one(
    strategy: str,
    seed: int,
    sd: _SeedData,
    cfg: BenchConfig,
    device: torch.device,
    tick: Callable[[], None],
) -> dict[str, Any]:
    with harness.seeded(device, seed):
        model = TinyUNet(cfg.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    train = sd.train
    start = time.perf_counter()
    model.train()
    for _ in range(cfg.epochs):
        for idx in _batches(len(train.x), cfg.batch_size, gen):
            # random: one observer per frame, redrawn at every fetch (every epoch)
            target = fuse_observer_labels(
                train.observers[idx], strategy=cast(FusionStrategy, strategy), generator=gen
            )
            prob = model(train.x[idx].to(device))
            loss = batch_soft_dice(prob, target[:, None].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        tick()
    model.eval()
    test = sd.test
    with torch.no_grad():
        p = torch.cat(
            [model(test.x[i : i + 512].to(device)).cpu() for i in range(0, len(test.x), 512)]
        )
    binary = (p[:, 0] > 0.5).numpy()
    if cfg.keep_largest:
        binary = largest_component(binary)
    pred = torch.as_tensor(binary.astype(np.float32))
    nogate = _evaluate(pred, test, sd.screen_prob, None)
    gate = _evaluate(pred, test, sd.screen_prob, cfg.theta)
    sweep = [_evaluate(pred, test, sd.screen_prob, float(t)) for t in prescreen_thresholds()]
    return {
        "strategy": strategy,
        "seed": seed,
        **{f"{k}_nogate": v for k, v in nogate.items() if k != "theta"},
        **{f"{k}_gate": v for k, v in gate.items() if k != "theta"},
        "fp_removed": 1.0 - gate["fp_rate"] / nogate["fp_rate"]
        if nogate["fp_rate"] > 0
        else float("nan"),
        "dice_change": gate["dice_segmented"] - nogate["dice_segmented"],
        "screen_accuracy": sd.screen_accuracy,
        "sweep": sweep,
        "final_loss": float(loss.detach()),
        "train_seconds": round(time.perf_counter() - start, 3),
    }


def _plot(out: Path, runs: list[dict[str, Any]], strategies: tuple[str, ...], theta: float) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.5))
    axes = fig.subplots(1, 3)
    panels = [
        ("fp_rate", "false-positive frames (% of negatives)"),
        ("fn_rate", "false-negative frames (% of positives)"),
        ("dice_segmented", "Dice on segmented positive frames (%)"),
    ]
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for i, s in enumerate(strategies):
            rs = [r for r in runs if r["strategy"] == s]
            th = [p["theta"] for p in rs[0]["sweep"]]
            vals = 100 * np.array([[p[key] for p in r["sweep"]] for r in rs])
            with warnings.catch_warnings():  # a theta where no positive frame is segmented
                warnings.simplefilter("ignore", RuntimeWarning)
                mu = np.nanmean(vals, 0)
                sd = np.nanstd(vals, 0, ddof=1) if len(rs) > 1 else np.zeros(len(th))
            ax.plot(th, mu, marker=".", color=f"C{i}", label=s)
            ax.fill_between(th, mu - sd, mu + sd, alpha=0.2, color=f"C{i}")
            ax.axhline(100 * np.mean([r[f"{key}_nogate"] for r in rs]), color=f"C{i}", ls=":")
        ax.axvline(theta, color="grey", ls="--", lw=0.8)
        ax.set(xlabel="pre-screen threshold theta", ylabel=ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="dotted: no gate")
    fig.suptitle("posneg bench segmentation: pre-screen threshold sweep (mean ± std over seeds)")
    fig.tight_layout()
    return _report.save_figure(fig, out / "prescreen_sweep.png")


def _claims(agg: list[dict[str, Any]], n: int, theta: float) -> list[str]:
    notes = []
    for a in agg:
        removed, dchange = a["fp_removed_mean"], a["dice_change_mean"]
        ok = removed >= 0.5 and dchange >= -0.02
        removed_cell = _report.pct_cell(removed, a["fp_removed_std"], n)
        dice_cell = _report.pp_cell(dchange, a["dice_change_std"], n)
        fn_cell = _report.pp_cell(a["fn_rate_gate_mean"] - a["fn_rate_nogate_mean"], 0.0, 1)
        notes.append(
            "Claim (Chalcroft et al., ASMUS 2021): the pre-screen removes most false-positive "
            f"frames at little Dice cost. `{a['strategy']}` at theta={theta:g}: {removed_cell}% "
            f"of the false-positive frames removed, Dice on segmented positives {dice_cell} pp, "
            f"false-negative frames {fn_cell} pp (mean): this run "
            f"{'supports' if ok else 'does not support'} the claim "
            "(supports: >= 50% removed and a Dice change >= -2 pp)."
        )
    if len(agg) > 1:
        for key, label in (
            ("dice_segmented_nogate", "Dice without gate"),
            ("dice_segmented_gate", "Dice with gate"),
            ("fp_rate_nogate", "FP frames without gate (lower first)"),
        ):
            rev = not key.startswith("fp")
            order = sorted(agg, key=lambda a: a[f"{key}_mean"], reverse=rev)
            notes.append(
                f"Label strategies by {label}: "
                + " > ".join(f"{a['strategy']} ({100 * a[f'{key}_mean']:.1f})" for a in order)
                + "."
            )
        notes.append(
            "Claim (card): the ranking of label strategies changes once pre-screening is used; "
            "compare the two Dice orderings above (ties within the std are not a ranking)."
        )
    return notes


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Returns:
        ``{"runs", "aggregate", "report", "plots", "config"}``.

    Raises:
        UsageError: a bad value (names the flag).
    """
    cfg = _validate(cfg)
    device = harness.resolve_device(cfg.device)
    seeds = harness.seed_list(cfg)
    started, cpu_started = time.perf_counter(), time.process_time()
    cache: dict[int, _SeedData] = {}

    def one(job: tuple[str, int], tick: Callable[[], None]) -> dict[str, Any]:
        strategy, seed = job
        if seed not in cache:
            data = _frames(cfg, seed)
            prob, acc = _train_prescreen(cfg, data, seed, device)
            cache[seed] = _SeedData(data[0], data[1], prob, acc)
        return _train_one(strategy, seed, cache[seed], cfg, device, tick)

    with harness.torch_threads(cfg.threads, device) as threads:
        runs = harness.run_grid(
            [(s, seed) for seed in seeds for s in cfg.strategies],
            one,
            describe=lambda job: f"{job[0]} seed={job[1]}",
            steps=cfg.epochs,
            quiet=cfg.quiet,
        )
    runs.sort(key=lambda r: (cfg.strategies.index(r["strategy"]), r["seed"]))
    elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu_started
    metrics = [
        f"{m}_{w}"
        for m in ("fp_rate", "fn_rate", "dice_segmented", "dice_accepted")
        for w in ("nogate", "gate")
    ]
    agg = _report.aggregate(
        runs,
        by=("strategy",),
        metrics=(*metrics, "fp_removed", "dice_change", "screen_accuracy"),
        means=("train_seconds",),
    )
    n = len(seeds)
    header = [
        "strategy",
        "gate",
        "FP frames (%)",
        "FN frames (%)",
        "Dice segmented (%)",
        "Dice accepted, code (%)",
    ]
    rows = []
    for a in agg:
        for w, label in (("nogate", "none"), ("gate", f"p > {cfg.theta:g}")):
            rows.append(
                [a["strategy"], label]
                + [
                    _report.pct_cell(a[f"{m}_{w}_mean"], a[f"{m}_{w}_std"], n)
                    for m in ("fp_rate", "fn_rate", "dice_segmented", "dice_accepted")
                ]
            )
    sa = _report.mean_std([c.screen_accuracy for c in cache.values()])
    test = next(iter(cache.values())).test
    notes = [
        f"Test frames: {len(test.x)} ({int(frame_labels(test.observers).sum())} positive by the "
        f">= 2 of 3 rule); {cfg.epochs} segmenter epochs; seeds {seeds}. Pre-screen accuracy "
        f"{_report.pct_cell(sa[0], sa[1], n)}%. FP/FN frames: % of negative/positive test frames; "
        "Dice segmented: mean Dice (vote target) over positive frames that were segmented; "
        "Dice accepted: the official test's number, mean Dice over all accepted frames "
        "(an empty prediction on an empty target scores 1).",
        *_claims(agg, n, cfg.theta),
    ]
    config = _report.resolved_config(
        cfg,
        seeds=seeds,
        device=device,
        threads=threads,
        model=MODEL,
        thresholds=[round(float(t), 6) for t in prescreen_thresholds()],
        elapsed_seconds=round(elapsed, 1),
        cpu_seconds=round(cpu_elapsed, 1),
    )
    results = {"runs": runs, "aggregate": agg}
    out = Path(cfg.out)
    title = "posneg bench segmentation"
    report = _report.write_report(
        out,
        title=title,
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes="\n\n".join(notes),
    )
    plots = [_plot(out, runs, cfg.strategies, cfg.theta)]
    if not cfg.quiet:
        _report.show(title, header, rows, notes, report=report, elapsed=elapsed)
    return {**results, "report": report, "plots": plots, "config": config}


#: `posneg bench segmentation`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""Negative frames and three observers: label strategies and a classifier pre-screen.

    Digit frames in clutter, a share of them negative, masks from three simulated observers; a
    tiny U-Net per label strategy (random / vote / mean) and a pre-screen classifier. Reports
    false-positive frames and Dice with and without the pre-screen across theta in
    linspace(0, 0.6, 20). Writes results.json, results.md and a PNG plot into --out.
    """,
    flags={"strategies": ("--strategy", "-s"), "batch_size": ("--batch-size", "-b")},
)

#: The demo preset: the three strategies, one seed, 200 training digits, 2 epochs.
DEMO_CONFIG = BenchConfig(
    seeds=1, train_digits=200, epochs=2, classifier_epochs=2, test_fraction=0.1, lr=3e-3
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: the three strategies, one seed, 2 epochs."""
    result = run(BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out)}))
    rows = [
        (
            a["strategy"],
            f"FP frames (%) none / p > {DEMO_CONFIG.theta:g}",
            f"{100 * a['fp_rate_nogate_mean']:.1f} / {100 * a['fp_rate_gate_mean']:.1f}",
        )
        for a in result["aggregate"]
    ]
    return _report.DemoSummary(family="segmentation", rows=rows, report=Path(result["report"]))
