"""`posneg bench semisup`: supervised-only vs FixMatch vs FixMatch + SAA with few labels.

scikit-learn's 8x8 digits upsampled to ``size`` x ``size`` (:func:`load_image_digits`), a stratified
train/test split; per seed, ``labels_per_class`` labelled images per class are drawn from the
train split and the whole train split is the unlabelled set (as TorchSSL). The bench's
:class:`~posneg.bench._classifier.SmallCNN` is trained for ``steps`` SGD steps (Nesterov 0.9,
weight decay 5e-4, FixMatch's cosine ``lr cos(7 pi k / 16 K)``) with labelled batch
``batch_size`` and unlabelled batch ``uratio * batch_size``:

- ``supervised``: CE on the labelled batch only (weak view);
- ``fixmatch``: + :func:`posneg.losses.fixmatch.fixmatch_loss` (threshold 0.95, lambda_u 1)
  on weak (random translation by up to 2 px) and strong (RandAugment, 3 ops with random
  magnitudes, then a Cutout of side ``U(0, 0.5) W``, then the weak transform) views;
- ``fixmatch+saa``: the same, with :class:`posneg.selection.saa.NaiveSampleTracker` fed the
  unmasked strong-view CE of every drawn sample and re-flagging naive samples by Otsu every
  ``eval_every`` steps once ``saa_start`` of training has passed; naive samples get
  :func:`posneg.selection.saa.saa_strong_views` (two strong views, half pasted).

Test accuracy is recorded every ``eval_every`` steps (the plot) and at the end (the table). No
EMA evaluation model (the official code reports the EMA model; left out for time). One
``torch.Generator`` per run; weights initialised under the run's seed in a forked RNG.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from posneg.augment.randaugment import RandAugment
from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._classifier import SmallCNN
from posneg.data.images import ImageData, load_image_digits
from posneg.losses.fixmatch import fixmatch_terms
from posneg.selection.saa import NaiveSampleTracker, saa_strong_views

__all__ = ["DEMO_CONFIG", "METHODS", "BenchConfig", "cli", "demo", "run"]

#: The methods, in table order.
METHODS: tuple[str, ...] = ("supervised", "fixmatch", "fixmatch+saa")
MODEL = "CNN conv16/s2-pool-conv32-pool-conv64-GAP-linear (BN, ReLU); SGD Nesterov, cosine 7/16"


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        methods: any of ``supervised``, ``fixmatch``, ``fixmatch+saa``.
        labels_per_class: labelled images per class (the rest of the train split unlabelled).
        steps: SGD steps per run.
        eval_every: steps between test evaluations and SAA mask updates (an "epoch").
        batch_size: labelled batch size.
        uratio: unlabelled batch = uratio * batch_size.
        threshold: FixMatch confidence threshold.
        lambda_u: weight of the unlabelled loss.
        lr: initial SGD learning rate.
        saa_start: share of the steps after which SAA updates its naive flags (card: 0.4).
        history_momentum: SAA's loss-history EMA weight (official 0.001).
        size: side of the upsampled digits.
        seeds: number of seeds (``first_seed``, ``first_seed + 1``, ...).
        first_seed: the first seed.
        split_seed: seed of the train/test split (fixed across seeds).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        threads: CPU threads for torch (0: automatic).
        out: output folder.
        quiet: no progress bars and no table.
    """

    methods: tuple[str, ...] = METHODS
    labels_per_class: int = 4
    steps: int = 400
    eval_every: int = 40
    batch_size: int = 32
    uratio: int = 3
    threshold: float = 0.95
    lambda_u: float = 1.0
    lr: float = 0.03
    saa_start: float = 0.4
    history_momentum: float = 0.001
    size: int = 16
    seeds: int = 3
    first_seed: int = 0
    split_seed: int = 0
    device: str = "auto"
    threads: int = 1
    out: str = "runs/semisup"
    quiet: bool = False


def _validate(cfg: BenchConfig) -> BenchConfig:
    if not cfg.methods:
        raise harness.UsageError("--method: give at least one method")
    for m in cfg.methods:
        if m not in METHODS:
            raise harness.UsageError(f"--method: unknown method {m!r}; known: {', '.join(METHODS)}")
    harness.check_common(cfg)
    harness.check_number("--labels-per-class", cfg.labels_per_class, low=1)
    harness.check_number("--steps", cfg.steps, low=1)
    harness.check_number("--eval-every", cfg.eval_every, low=1)
    harness.check_number("--batch-size", cfg.batch_size, low=2)
    harness.check_number("--uratio", cfg.uratio, low=1)
    harness.check_number("--threshold", cfg.threshold, low=0.0, high=1.0, closed="both")
    harness.check_number("--lambda-u", cfg.lambda_u, low=0.0)
    harness.check_number("--lr", cfg.lr, low=0.0, closed="none")
    harness.check_number("--saa-start", cfg.saa_start, low=0.0, high=1.0, closed="both")
    harness.check_number(
        "--history-momentum", cfg.history_momentum, low=0.0, high=1.0, closed="both"
    )
    harness.check_number("--size", cfg.size, low=8, high=64, closed="both")
    return replace(cfg, methods=tuple(dict.fromkeys(cfg.methods)))


def _weak(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (zero padding, then a random crop)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device, generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device, generator=gen)
    rows = (oy + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox + torch.arange(w, device=x.device))[:, None, None, :]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def _cutout(x: torch.Tensor, gen: torch.Generator | None, fill: float = 0.5) -> torch.Tensor:
    """TorchSSL's always-on Cutout: a square of side ``U(0, 0.5) W`` at a uniform centre."""
    b, _, h, w = x.shape
    side = torch.rand(b, 1, device=x.device, generator=gen) * 0.5 * w
    cy = torch.rand(b, 1, device=x.device, generator=gen) * h
    cx = torch.rand(b, 1, device=x.device, generator=gen) * w
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    iny = ((ys >= cy - side / 2) & (ys < cy + side / 2))[:, None, :, None]
    inx = ((xs >= cx - side / 2) & (xs < cx + side / 2))[:, None, None, :]
    return torch.where(iny & inx, torch.full_like(x, fill), x)


class _Strong:
    """RandAugment (3 ops, uniform magnitudes) then Cutout: TorchSSL's ``RandAugment(3, 5)``."""

    def __init__(self) -> None:
        self.ra = RandAugment(num_ops=3, magnitude=30, random_magnitude=True, fill=0.0)

    def __call__(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return _cutout(self.ra(x, generator=generator), generator)


def _labelled(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


@torch.no_grad()
def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(x[i : i + 512]).argmax(1) for i in range(0, len(x), 512)])
    model.train()
    return float((pred == y).double().mean())


def _train_one(
    method: str,
    data: ImageData,
    seed: int,
    cfg: BenchConfig,
    device: torch.device,
    tick: Callable[[], None],
) -> dict[str, Any]:
    with harness.seeded(device, seed):
        model = SmallCNN(1, data.n_classes, mean=data.mean, std=data.std).to(device)
    decay = [p for n, p in model.named_parameters() if "weight" in n and p.dim() > 1]
    other = [p for n, p in model.named_parameters() if not ("weight" in n and p.dim() > 1)]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": 5e-4}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.lr,
        momentum=0.9,
        nesterov=True,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: math.cos(7 * math.pi * k / (16 * cfg.steps))
    )
    gen = torch.Generator(device=device).manual_seed(seed)
    x_all = torch.as_tensor(data.x_train, device=device)
    y_all = torch.as_tensor(data.y_train, device=device)
    lab = torch.as_tensor(_labelled(data.y_train, cfg.labels_per_class, seed), device=device)
    x_test = torch.as_tensor(data.x_test, device=device)
    y_test = torch.as_tensor(data.y_test, device=device)
    n_u = x_all.shape[0]
    strong = _Strong()
    saa = method == "fixmatch+saa"
    tracker = NaiveSampleTracker(n_u, history_momentum=cfg.history_momentum) if saa else None
    curve: list[tuple[int, float]] = []
    naive_curve: list[tuple[int, float]] = []
    mask_rates: list[float] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    model.train()
    for step in range(1, cfg.steps + 1):
        li = lab[torch.randint(0, len(lab), (cfg.batch_size,), device=device, generator=gen)]
        xl, yl = _weak(x_all[li], gen), y_all[li]
        if method == "supervised":
            loss = F.cross_entropy(model(xl), yl)
        else:
            ui = torch.randint(0, n_u, (cfg.uratio * cfg.batch_size,), device=device, generator=gen)
            xu = x_all[ui]
            xw = _weak(xu, gen)
            if tracker is not None:
                naive = tracker.naive_.to(device)[ui]
                xs = saa_strong_views(xu, naive, strong, generator=gen)
            else:
                xs = strong(xu, generator=gen)
            xs = _weak(xs, gen)
            logits = model(torch.cat([xl, xw, xs]))
            nl = xl.shape[0]
            lw, ls = logits[nl:].chunk(2)
            terms = fixmatch_terms(lw, ls, threshold=cfg.threshold)
            unsup = (terms.mask * terms.ce).mean()
            loss = F.cross_entropy(logits[:nl], yl) + cfg.lambda_u * unsup
            mask_rates.append(float(terms.mask.mean()))
            if tracker is not None:
                tracker.update(ui.cpu(), terms.ce.detach().cpu())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if tracker is not None and step > cfg.saa_start * cfg.steps:
                tracker.update_mask()
            curve.append((step, _accuracy(model, x_test, y_test)))
            if tracker is not None:
                naive_curve.append((step, tracker.naive_fraction()))
            tick()
    return {
        "method": method,
        "seed": seed,
        "accuracy": curve[-1][1],
        "curve": curve,
        "naive_fraction_curve": naive_curve,
        "final_naive_fraction": naive_curve[-1][1] if naive_curve else math.nan,
        "mean_mask_rate": float(np.mean(mask_rates)) if mask_rates else math.nan,
        "final_loss": float(loss.detach()),
        "train_seconds": round(time.perf_counter() - start, 3),
        "train_cpu_seconds": round(time.process_time() - cpu_start, 3),
    }


def _plot(out: Path, runs: list[dict[str, Any]], methods: tuple[str, ...]) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    ax, ax_n = fig.subplots(1, 2)
    for i, m in enumerate(methods):
        rs = [r for r in runs if r["method"] == m]
        steps = [s for s, _ in rs[0]["curve"]]
        acc = 100 * np.array([[a for _, a in r["curve"]] for r in rs])
        mu, sd = acc.mean(0), acc.std(0, ddof=1) if len(rs) > 1 else np.zeros(len(steps))
        ax.plot(steps, mu, label=m, color=f"C{i}")
        ax.fill_between(steps, mu - sd, mu + sd, alpha=0.2, color=f"C{i}")
        if rs[0]["naive_fraction_curve"]:
            nf = np.array([[f for _, f in r["naive_fraction_curve"]] for r in rs])
            ax_n.plot(steps, 100 * nf.mean(0), label=m, color=f"C{i}")
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax_n.set_xlabel("step")
    ax_n.set_ylabel("naive samples (%)")
    ax_n.grid(alpha=0.3)
    fig.suptitle("posneg bench semisup: few-label digits")
    fig.tight_layout()
    return _report.save_figure(fig, out / "accuracy_over_steps.png")


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Returns:
        ``{"runs", "aggregate", "gap", "report", "plots", "config"}``.

    Raises:
        UsageError: a bad value (names the flag).
    """
    cfg = _validate(cfg)
    device = harness.resolve_device(cfg.device)
    data = load_image_digits(size=cfg.size, seed=cfg.split_seed)
    seeds = harness.seed_list(cfg)
    n_evals = math.ceil(cfg.steps / cfg.eval_every)
    started, cpu_started = time.perf_counter(), time.process_time()
    with harness.torch_threads(cfg.threads, device) as threads:
        runs = harness.run_grid(
            [(m, s) for m in cfg.methods for s in seeds],
            lambda job, tick: _train_one(job[0], data, job[1], cfg, device, tick),
            describe=lambda job: f"{job[0]} seed={job[1]}",
            steps=n_evals,
            quiet=cfg.quiet,
        )
    elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu_started
    agg = _report.aggregate(
        runs,
        by=("method",),
        metrics=("accuracy", "final_naive_fraction", "mean_mask_rate"),
        means=("train_seconds",),
    )
    gap: dict[str, Any] = {}
    if "fixmatch" in cfg.methods and "fixmatch+saa" in cfg.methods:
        by = {(r["method"], r["seed"]): r["accuracy"] for r in runs}
        diffs = [by[("fixmatch+saa", s)] - by[("fixmatch", s)] for s in seeds]
        mu, sd = _report.mean_std(diffs)
        gap = {"per_seed": diffs, "mean": mu, "std": sd, "wins": sum(d > 0 for d in diffs)}
    header = ["method", "test acc. (%)", "mask rate (%)", "naive at end (%)", "s/run"]
    rows = [
        [
            a["method"],
            _report.pct_cell(a["accuracy_mean"], a["accuracy_std"], len(seeds)),
            _report.pct_cell(a["mean_mask_rate_mean"], a["mean_mask_rate_std"], len(seeds)),
            _report.pct_cell(
                a["final_naive_fraction_mean"], a["final_naive_fraction_std"], len(seeds)
            ),
            f"{a['train_seconds_mean']:.1f}",
        ]
        for a in agg
    ]
    notes = [
        f"Data: {data.name}, {cfg.labels_per_class} labels/class, {len(data.x_train)} unlabelled, "
        f"{len(data.x_test)} test; {cfg.steps} steps; seeds {seeds}.",
    ]
    if gap:
        verdict = "supports" if gap["mean"] > 0 else "does not support"
        notes.append(
            "Claim (Gui et al., ICCV 2023): SAA improves FixMatch. Measured FixMatch+SAA - "
            f"FixMatch: {_report.pp_cell(gap['mean'], gap['std'], len(seeds))} pp test accuracy "
            f"({gap['wins']}/{len(seeds)} seeds better): this run {verdict} the claim."
        )
    config = _report.resolved_config(
        cfg,
        seeds=seeds,
        device=device,
        threads=threads,
        **data.summary(),
        model=MODEL,
        elapsed_seconds=round(elapsed, 1),
        cpu_seconds=round(cpu_elapsed, 1),
    )
    results = {"runs": runs, "aggregate": agg, "gap": gap}
    out = Path(cfg.out)
    title = "posneg bench semisup"
    report = _report.write_report(
        out,
        title=title,
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes="\n\n".join(notes),
    )
    plots = [_plot(out, runs, cfg.methods)]
    if not cfg.quiet:
        _report.show(title, header, rows, notes, report=report, elapsed=elapsed)
    return {**results, "report": report, "plots": plots, "config": config}


#: `posneg bench semisup`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""Few-label digits: supervised-only vs FixMatch vs FixMatch + SAA, test accuracy.

    Per seed, a few labelled digits per class and the rest unlabelled; a small CNN is trained
    with each method and scored on the held-out split every --eval-every steps. Writes
    results.json, results.md and a PNG plot of accuracy over steps into --out.
    """,
    flags={"methods": ("--method", "-m"), "batch_size": ("--batch-size", "-b")},
)

#: The demo preset: all methods, one seed, 40 steps.
DEMO_CONFIG = BenchConfig(steps=40, eval_every=10, seeds=1, batch_size=16, uratio=2)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: the three methods, one seed, 40 steps."""
    result = run(BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out)}))
    rows = [
        (a["method"], "test accuracy (%)", f"{100 * a['accuracy_mean']:.1f}")
        for a in result["aggregate"]
    ]
    return _report.DemoSummary(family="semisup", rows=rows, report=Path(result["report"]))
