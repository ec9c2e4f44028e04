"""`posneg bench policies`: learned augmentation policies against fixed augmentations.

Every policy (a runner collected from :data:`RUNNER_MODULES`, each ``posneg.bench._policies_*``
file exporting ``RUNNERS``; absent modules are skipped) trains the same classifier under the
protocol of :mod:`posneg.bench._policy_context`: the same data split (a validation share carved
from the training split for the policies' own outer loops), the same CNN (the bench mixing
``SmallCNN`` on the upsampled digits, ``SmallCNN1d`` on MNIST-1D), the same epoch budget, Adam
with a cosine decay. Reports test accuracy and 15-bin ECE, mean ± std over seeds, the paired
gaps behind the papers' claims, and a plot. See ``docs/policies.md``.

Python use::

    from posneg.bench.policies import BenchConfig, run
    result = run(BenchConfig(policies=("none", "adautomix"), epochs=2, seeds=1, quiet=True))
    result["aggregate"]
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._classifier import SmallCNN
from posneg.bench._models1d import SmallCNN1d, load_mnist1d
from posneg.bench._policy_context import PolicyContext, PolicyRunner
from posneg.data.images import load_image_digits

__all__ = ["CLAIMS", "DATASETS", "DEMO_CONFIG", "RUNNER_MODULES", "BenchConfig", "cli", "demo"]
__all__ += ["collect_runners", "run"]

#: The runner modules, in table order (a missing one is skipped).
RUNNER_MODULES: tuple[str, ...] = (
    "_policies_fixed",
    "_policies_adautomix",
    "_policies_noise_mask",
    "_policies_madaug",
    "_policies_invariance",
)

DATASETS: tuple[str, ...] = ("digits", "mnist1d")

#: (paper's claim, policy, compared with): the paired gaps the report states, whichever way.
CLAIMS: tuple[tuple[str, str, str], ...] = (
    ("AdAutoMix beats the fixed mixes (MixUp)", "adautomix", "mixup"),
    ("AdAutoMix beats the fixed mixes (CutMix)", "adautomix", "cutmix"),
    ("AdAutoMix >= its cooperative-only ablation", "adautomix", "adautomix_coop"),
    ("MADAug beats RandAugment", "madaug", "randaugment"),
    ("Invariance-constrained sampling beats fixed RandAugment", "invariance", "randaugment"),
    ("The noise-mask policy beats random masking", "noise_mask", "random_mask"),
)


def collect_runners() -> dict[str, PolicyRunner]:
    """Every runner of the present :data:`RUNNER_MODULES`, in order."""
    return harness.collect(RUNNER_MODULES, "RUNNERS")


@dataclass(frozen=True)
class BenchConfig:
    """Everything a run depends on (recorded in results.json).

    Attributes:
        policies: policy names (default: every collected runner).
        dataset: ``digits`` (8x8 digits upsampled to --size, 2-D CNN) or ``mnist1d``.
        epochs: passes over the training split per run.
        batch_size: mini-batch size.
        seeds: number of seeds.
        first_seed: the first seed.
        lr: Adam learning rate.
        size: side of the upsampled digits.
        train_limit: use at most this many training samples (0: all).
        val_fraction: share of the training split held out as the policies' validation set.
        split_seed: seed of the splits (fixed across seeds).
        device: auto, cpu, cuda.
        threads: CPU threads for torch.
        out: output folder.
        quiet: no progress, no table.
    """

    policies: tuple[str, ...] = ()
    dataset: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    seeds: int = 3
    first_seed: int = 0
    lr: float = 3e-3
    size: int = 16
    train_limit: int = 600
    val_fraction: float = 0.15
    split_seed: int = 0
    device: str = "cpu"
    threads: int = 1
    out: str = "runs/policies"
    quiet: bool = False


def _contexts(cfg: BenchConfig, device: torch.device) -> tuple[dict[str, Any], Any]:
    """The shared tensors (train/val/test) and the model factory."""
    if cfg.dataset == "mnist1d":
        try:
            data: Any = load_mnist1d()
        except ImportError as exc:
            raise harness.UsageError(f"--dataset mnist1d: {exc}") from None
        net: Any = SmallCNN1d
    else:
        data = load_image_digits(size=cfg.size, seed=cfg.split_seed)
        net = SmallCNN
    rng = np.random.default_rng(cfg.split_seed)
    order = rng.permutation(len(data.y_train))
    if cfg.train_limit:
        order = order[: cfg.train_limit]
    n_val = max(1, round(cfg.val_fraction * len(order)))
    val, tr = order[:n_val], order[n_val:]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a)).to(device)

    tensors = {
        "train_x": t(data.x_train[tr]),
        "train_y": t(data.y_train[tr]),
        "val_x": t(data.x_train[val]),
        "val_y": t(data.y_train[val]),
        "test_x": t(data.x_test),
        "test_y": t(data.y_test),
        "kind": "sequence" if cfg.dataset == "mnist1d" else "image",
        "num_classes": data.n_classes,
    }

    def make_model() -> nn.Module:
        return net(data.x_train.shape[1], data.n_classes, mean=data.mean, std=data.std)

    return tensors, (make_model, data)


def _validate(cfg: BenchConfig, runners: dict[str, PolicyRunner]) -> list[str]:
    if cfg.dataset not in DATASETS:
        raise harness.UsageError(
            f"--dataset: unknown {cfg.dataset!r}; known: {', '.join(DATASETS)}"
        )
    names = list(cfg.policies) or list(runners)
    harness.check_known("--policy", names, list(runners))
    harness.check_common(cfg)
    harness.check_number("--epochs", cfg.epochs, low=1)
    harness.check_number("--batch-size", cfg.batch_size, low=2)
    harness.check_number("--lr", cfg.lr, low=0.0, closed="none")
    harness.check_number("--size", cfg.size, low=8, high=64, closed="both")
    harness.check_number("--train-limit", cfg.train_limit, low=0)
    harness.check_number("--val-fraction", cfg.val_fraction, low=0.0, high=1.0, closed="none")
    return list(dict.fromkeys(names))


def _claims(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["policy"], r["seed"]): r for r in runs}
    out = []
    for claim, a, b in CLAIMS:
        seeds = sorted({s for (p, s) in by if p == a} & {s for (p, s) in by if p == b})
        diffs = [by[(a, s)]["accuracy"] - by[(b, s)]["accuracy"] for s in seeds]
        diffs = [d for d in diffs if math.isfinite(d)]
        if not diffs:
            continue
        m, sd = _report.mean_std(diffs)
        verdict = "supported" if m - sd > 0 else ("contradicted" if m + sd < 0 else "inconclusive")
        out.append({"claim": claim, "policy": a, "versus": b, "seeds": seeds,
                    "accuracy_gap_mean": m, "accuracy_gap_std": sd,
                    "wins": sum(d > 0 for d in diffs), "verdict": verdict})  # fmt: skip
    return out


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench; write results.json, results.md and policies.png into ``cfg.out``."""
    runners = collect_runners()
    names = _validate(cfg, runners)
    device = harness.resolve_device(cfg.device)
    tensors, (make_model, data) = _contexts(cfg, device)
    seeds = harness.seed_list(cfg)
    started = time.perf_counter()

    def one(job: tuple[str, int], tick: Any) -> dict[str, Any]:
        name, seed = job
        ctx = PolicyContext(
            **tensors,
            make_model=make_model,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=seed,
            device=device,
        )
        gen = torch.Generator(device=device).manual_seed(seed)
        res = runners[name](ctx, gen)
        return {
            "policy": name,
            "seed": seed,
            "accuracy": res.accuracy,
            "ece": res.ece,
            "seconds": round(res.seconds, 2),
            "curve": list(res.curve),
            "notes": res.notes,
        }

    with harness.torch_threads(cfg.threads, device) as threads:
        runs = harness.run_grid(
            [(p, s) for p in names for s in seeds],
            one,
            describe=lambda j: f"{j[0]} seed={j[1]}",
            quiet=cfg.quiet,
        )
    elapsed = time.perf_counter() - started
    agg = _report.aggregate(
        runs, by=("policy",), metrics=("accuracy", "ece"), keep=("notes",), means=("seconds",)
    )
    claims = _claims(runs)
    n = len(seeds)
    header = ["policy", "test accuracy (%)", "ECE", "seconds/run", "notes"]
    rows = [
        [a["policy"], _report.pct_cell(a["accuracy_mean"], a["accuracy_std"], n),
         _report.fmt(a["ece_mean"], a["ece_std"]), f"{a['seconds_mean']:.1f}", a["notes"]]
        for a in agg
    ]  # fmt: skip
    notes = [
        f"Setup: {data.name}, {len(tensors['train_y'])} train / {len(tensors['val_y'])} val / "
        f"{len(tensors['test_y'])} test, {cfg.epochs} epochs, batch {cfg.batch_size}, Adam lr "
        f"{cfg.lr} cosine, seeds {seeds}.",
        "Claims (paired accuracy gap policy - comparison, mean ± std over seeds; supported when "
        "mean - std > 0, contradicted when mean + std < 0):",
    ]
    notes += [
        f"- {c['claim']}: {_report.pp_cell(c['accuracy_gap_mean'], c['accuracy_gap_std'], n)} pp"
        f" ({c['wins']}/{len(c['seeds'])} seeds) -> {c['verdict']}"
        for c in claims
    ]
    config = _report.resolved_config(
        cfg, seeds=seeds, device=device, threads=threads, policies=names,
        elapsed_seconds=round(elapsed, 1),
    )  # fmt: skip
    results = {"runs": runs, "aggregate": agg, "claims": claims}
    return _report.publish(
        cfg.out,
        title="posneg bench policies",
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes=notes,
        plots=lambda out: [_plot(out, agg, data.name)],
        quiet=cfg.quiet,
        elapsed=elapsed,
        keep_first_column=True,
    )


def _plot(out: Path, agg: list[dict[str, Any]], name: str) -> Path:
    rows = [{**a, "set": name} for a in agg if math.isfinite(a["accuracy_mean"])]
    plot = _report.MetricPlot(
        title="posneg bench policies: test accuracy per policy (mean ± std over seeds)",
        label="policy",
        group="set",
        metrics=(("accuracy", "test accuracy (%)"),),
        kind="point",
        scale=100.0,
        margin=0.1,
    )
    return plot.save(out / "policies.png", rows)


#: `posneg bench policies`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""Compare learned augmentation policies with none/MixUp/CutMix/RandAugment.

    Every policy trains the same CNN on the same split of the upsampled digits (or MNIST-1D with
    --dataset mnist1d) for the same epochs; reports test accuracy and ECE (mean ± std over
    seeds), the papers' claims as paired gaps, and a plot. Writes results.json, results.md and
    policies.png into --out.
    """,
    flags={"policies": ("--policy", "-p"), "batch_size": ("--batch-size", "-b")},
    help={"policies": "Policy name, repeatable. Default: every available policy."},
)

#: The demo preset: three policies, one seed, two epochs on 150 digits at 16x16.
DEMO_CONFIG = BenchConfig(
    policies=("none", "adautomix", "noise_mask"), epochs=2, seeds=1, train_limit=150
)


def demo(out: Path) -> _report.DemoSummary:
    """A tiny preset for `posneg demo` (a few seconds)."""
    cfg = replace(DEMO_CONFIG, out=str(out), quiet=True)
    result = run(BenchConfig(**asdict(cfg)))
    rows = [
        (a["policy"], "test accuracy (%), ECE",
         f"{100 * a['accuracy_mean']:.1f}, {a['ece_mean']:.3f}")
        for a in result["aggregate"]
    ]  # fmt: skip
    return _report.DemoSummary(family="policies", rows=rows, report=Path(result["report"]))
