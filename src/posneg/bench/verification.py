"""`posneg bench verification`: open-set verification with margin heads, with and without UNPG.

The face-recognition protocol behind UNPG (Jung et al., BMVC 2022, arXiv 2203.11593) trains a
classifier over identities and then verifies pairs of *unseen* identities by the cosine of their
embeddings. Here the digit classes are the identities: the embedding network trains on classes
``0 .. train_classes - 1`` (their train split) and is verified on every pair of samples of the
held-out classes (train and test splits together: none of them was seen), open-set as in face
recognition. Data: MNIST-1D (:func:`posneg.data.mnist1d.load_mnist1d`, default: not saturated)
or scikit-learn's 8x8 digits (:func:`posneg.data.load_digits`).

Techniques: ``softmax`` (a bias-free linear classifier on the embedding, plain cross-entropy),
``cosface``, ``arcface`` (:class:`~posneg.losses.unpg.CosFaceLoss`, ``ArcFaceLoss``) and
``cosface+unpg``, ``arcface+unpg`` (:class:`~posneg.losses.unpg.UNPGLoss`), all with the same
scale, margin and network. Metrics: TAR at FAR 1e-1, 1e-2, 1e-3, 1e-4 (a FAR is reported only
where at least 10 negative pairs may be accepted at it), ROC AUC, mean +- std over seeds, and a
ROC plot. Every draw comes from a ``torch.Generator`` seeded with the run's seed; weights are
initialised under that seed in a forked RNG. See ``docs/verification.md``.

Python use::

    from posneg.bench.verification import BenchConfig, run
    result = run(BenchConfig(techniques=("cosface", "cosface+unpg"), seeds=1, epochs=5))
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posneg.bench import _harness as harness
from posneg.bench import _report
from posneg.bench._verification_metrics import (
    pair_scores,
    plot_roc,
    reportable_fars,
    roc_points,
    roc_sweep,
    tar_at_far,
)
from posneg.losses.unpg import ArcFaceLoss, CosFaceLoss, UNPGLoss

__all__ = ["DEMO_CONFIG", "TECHNIQUES", "BenchConfig", "EmbeddingMLP", "cli", "demo", "run"]

#: Everything `--technique` accepts, in table order.
TECHNIQUES: tuple[str, ...] = ("softmax", "cosface", "cosface+unpg", "arcface", "arcface+unpg")
DATASETS: tuple[str, ...] = ("mnist1d", "digits")
FARS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
MODEL = "MLP in-256-256-emb (BN, ReLU), L2-normalised embedding at test; Adam, cosine decay"


class EmbeddingMLP(nn.Module):
    """in -> 256 -> 256 -> ``dim`` with BatchNorm and ReLU (the embedding network)."""

    def __init__(self, n_in: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Linear(256, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Linear(256, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.net(x))


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        techniques: any of softmax, cosface, cosface+unpg, arcface, arcface+unpg.
        dataset: ``mnist1d`` (4000 + 1000 sequences) or ``digits`` (1797 8x8 images).
        train_classes: identities 0..N-1 train; the others are held out for verification.
        epochs: passes over the training identities.
        batch_size: training batch size (UNPG's negative pairs come from the batch).
        embedding_dim: dimension of the embedding.
        scale: the heads' scale s (the official zoo uses 64 on 512-d face embeddings).
        margin: the heads' margin m (0.5 for both heads in the official zoo).
        wisk: UNPG's box-and-whisker k (1.5 in the official zoo).
        seeds: number of training seeds.
        first_seed: the first training seed.
        lr: Adam learning rate.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        threads: CPU threads for torch (0: automatic).
        out: output folder.
        quiet: no progress bars and no table.
    """

    techniques: tuple[str, ...] = TECHNIQUES
    dataset: str = "mnist1d"
    train_classes: int = 6
    epochs: int = 30
    batch_size: int = 128
    embedding_dim: int = 32
    scale: float = 32.0
    margin: float = 0.35
    wisk: float = 1.5
    seeds: int = 3
    first_seed: int = 0
    lr: float = 2e-3
    device: str = "auto"
    threads: int = 1
    out: str = "runs/verification"
    quiet: bool = False


@dataclass(frozen=True)
class _Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    n_train_classes: int
    n_eval_classes: int


def _validate(cfg: BenchConfig) -> BenchConfig:
    unknown = [t for t in cfg.techniques if t not in TECHNIQUES]
    if unknown or not cfg.techniques:
        raise harness.UsageError(
            f"--technique: unknown {', '.join(map(repr, unknown)) or 'none given'}; "
            f"known: {', '.join(TECHNIQUES)}"
        )
    if cfg.dataset not in DATASETS:
        raise harness.UsageError(
            f"--dataset: unknown {cfg.dataset!r}; known: {', '.join(DATASETS)}"
        )
    harness.check_common(cfg)
    harness.check_number("--train-classes", cfg.train_classes, low=2, high=9, closed="both")
    harness.check_number("--epochs", cfg.epochs, low=1)
    harness.check_number("--batch-size", cfg.batch_size, low=2)
    harness.check_number("--embedding-dim", cfg.embedding_dim, low=2)
    harness.check_number("--scale", cfg.scale, low=0.0, closed="none")
    harness.check_number("--margin", cfg.margin, low=0.0)
    harness.check_number("--wisk", cfg.wisk, low=0.0)
    harness.check_number("--lr", cfg.lr, low=0.0, closed="none")
    return replace(cfg, techniques=tuple(dict.fromkeys(cfg.techniques)))


def _load(cfg: BenchConfig) -> _Split:
    """Training identities' train split; every sample of the held-out identities."""
    if cfg.dataset == "mnist1d":
        from posneg.data.mnist1d import load_mnist1d

        try:
            data = load_mnist1d()
        except ImportError as exc:
            raise harness.UsageError(f"--dataset mnist1d: {exc}") from None
    else:
        from posneg.data.digits import load_digits

        data = load_digits()
    train = data.y_train < cfg.train_classes
    x_all = np.concatenate([data.x_train, data.x_test])
    y_all = np.concatenate([data.y_train, data.y_test])
    held = y_all >= cfg.train_classes
    x_tr = data.x_train[train].astype(np.float64)
    mean, std = x_tr.mean(), x_tr.std()  # scalar, from the training identities only
    return _Split(
        x_train=((x_tr - mean) / std).astype(np.float32),
        y_train=data.y_train[train],
        x_eval=((x_all[held] - mean) / std).astype(np.float32),
        y_eval=y_all[held],
        n_train_classes=cfg.train_classes,
        n_eval_classes=int(data.n_classes) - cfg.train_classes,
    )


def _head(
    name: str, cfg: BenchConfig, n_classes: int, gen: torch.Generator
) -> Callable[..., torch.Tensor] | nn.Module:
    dim = cfg.embedding_dim
    hyper = {"scale": cfg.scale, "margin": cfg.margin, "generator": gen}
    if name == "softmax":
        return nn.Linear(dim, n_classes, bias=False)
    if name == "cosface":
        return CosFaceLoss(n_classes, dim, **hyper)  # type: ignore[arg-type]
    if name == "arcface":
        return ArcFaceLoss(n_classes, dim, **hyper)  # type: ignore[arg-type]
    head = name.split("+")[0]
    return UNPGLoss(n_classes, dim, head=head, wisk=cfg.wisk, **hyper)  # type: ignore[arg-type]


def _train_one(
    name: str,
    split: _Split,
    seed: int,
    cfg: BenchConfig,
    device: torch.device,
    tick: Callable[[], None],
) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    with harness.seeded(device, seed):
        model = EmbeddingMLP(split.x_train.shape[1], cfg.embedding_dim)
        head = cast(nn.Module, _head(name, cfg, split.n_train_classes, gen))
    model, head = model.to(device), head.to(device)
    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    x = torch.as_tensor(split.x_train, device=device)
    y = torch.as_tensor(split.y_train, device=device)
    n = x.shape[0]
    bs = min(cfg.batch_size, n)
    steps = n // bs  # drop the last partial batch (BatchNorm, and UNPG's pair count)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps)
    start = time.perf_counter()
    losses: list[float] = []
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for step in range(steps):
            idx = perm[step * bs : (step + 1) * bs]
            emb = model(x[idx])
            if name == "softmax":
                loss = F.cross_entropy(head(emb), y[idx])
            else:
                loss = head(emb, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        losses.append(total / steps)
        tick()
    train_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        emb = model(torch.as_tensor(split.x_eval, device=device))
    pos, neg = pair_scores(emb, torch.as_tensor(split.y_eval, device=device))
    far, tar = roc_sweep(pos, neg)
    auc = float(np.trapezoid(np.concatenate([[0.0], tar]), np.concatenate([[0.0], far])))
    tars = tar_at_far(pos, neg, FARS)
    return {
        "technique": name,
        "seed": seed,
        **{f"tar@{f:g}": tars[f] for f in FARS},
        "auc": auc,
        "n_positive_pairs": int(pos.size),
        "n_negative_pairs": int(neg.size),
        "roc": roc_points(pos, neg),
        "final_loss": losses[-1],
        "epoch_losses": losses,
        "train_seconds": round(train_s, 3),
    }


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Returns:
        ``{"runs": [...], "aggregate": [...], "gaps": [...], "report": path of results.md,
        "plots": [...], "config": {...}}``.

    Raises:
        UsageError: a bad option (names the flag).
    """
    cfg = _validate(cfg)
    device = harness.resolve_device(cfg.device)
    split = _load(cfg)
    seeds = harness.seed_list(cfg)
    started = time.perf_counter()
    with harness.torch_threads(cfg.threads, device) as threads:
        runs = harness.run_grid(
            [(t, s) for t in cfg.techniques for s in seeds],
            lambda job, tick: _train_one(job[0], split, job[1], cfg, device, tick),
            describe=lambda job: f"{job[0]} seed={job[1]}",
            steps=cfg.epochs,
            quiet=cfg.quiet,
        )
    elapsed = time.perf_counter() - started
    fars = reportable_fars(runs[0]["n_negative_pairs"], FARS)
    metrics = [f"tar@{f:g}" for f in fars] + ["auc"]
    agg = _report.aggregate(runs, by=["technique"], metrics=metrics, means=["train_seconds"])
    header = ["technique", *(f"TAR@FAR={f:g} (%)" for f in fars), "AUC"]
    rows = [
        [
            a["technique"],
            *(_report.pct_cell(a[f"{m}_mean"], a[f"{m}_std"], len(seeds)) for m in metrics[:-1]),
            _report.fmt(a["auc_mean"], a["auc_std"], digits=4),
        ]
        for a in agg
    ]
    gaps = _gaps(runs, fars)
    config = _report.resolved_config(
        cfg,
        seeds=seeds,
        device=device,
        threads=threads,
        model=MODEL,
        train_samples=int(split.x_train.shape[0]),
        eval_samples=int(split.x_eval.shape[0]),
        eval_identities=split.n_eval_classes,
        positive_pairs=runs[0]["n_positive_pairs"],
        negative_pairs=runs[0]["n_negative_pairs"],
        reported_fars=fars,
        elapsed_seconds=round(elapsed, 1),
    )
    notes = _notes(cfg, split, runs[0], fars, gaps, seeds)
    curves = {t: [r["roc"] for r in runs if r["technique"] == t] for t in cfg.techniques}
    title = f"posneg bench verification ({cfg.dataset}, open set)"
    return _report.publish(
        cfg.out,
        title="posneg bench verification",
        config=config,
        results={"runs": runs, "aggregate": agg, "gaps": gaps},
        header=header,
        rows=rows,
        notes=notes,
        plots=lambda out: [plot_roc(out, curves, fars, title)],
        quiet=cfg.quiet,
        elapsed=elapsed,
        keep_first_column=True,
    )


def _gaps(runs: list[dict[str, Any]], fars: list[float]) -> list[dict[str, Any]]:
    """UNPG minus its base head, per FAR, paired by seed (mean, std, seeds where UNPG won)."""
    out = []
    for base in ("cosface", "arcface"):
        for f in fars:
            key = f"tar@{f:g}"
            a = {r["seed"]: r[key] for r in runs if r["technique"] == base}
            b = {r["seed"]: r[key] for r in runs if r["technique"] == f"{base}+unpg"}
            common = sorted(set(a) & set(b))
            if not common:
                continue
            diffs = [b[s] - a[s] for s in common]
            mean, sd = _report.mean_std(diffs)
            wins = sum(d > 0 for d in diffs)
            out.append(
                {"base": base, "far": f, "mean": mean, "std": sd, "wins": wins, "n": len(common)}
            )
    return out


def _notes(
    cfg: BenchConfig,
    split: _Split,
    run0: dict[str, Any],
    fars: list[float],
    gaps: list[dict[str, Any]],
    seeds: list[int],
) -> list[str]:
    setup = (
        f"Setup: {cfg.dataset}; train on identities 0-{cfg.train_classes - 1} "
        f"({split.x_train.shape[0]} samples), verify every pair of the "
        f"{split.n_eval_classes} held-out identities ({split.x_eval.shape[0]} samples: "
        f"{run0['n_positive_pairs']} positive, {run0['n_negative_pairs']} negative pairs); "
        f"{MODEL}; s={cfg.scale}, m={cfg.margin}, wisk={cfg.wisk}, batch {cfg.batch_size}, "
        f"{cfg.epochs} epochs, seeds {seeds}. FARs with fewer than 10 acceptable negative "
        "pairs are not reported."
    )
    lines = [setup, ""]
    for g in gaps:
        lines.append(
            f"{g['base']}+unpg - {g['base']} at FAR={g['far']:g}: "
            f"{_report.pp_cell(g['mean'], g['std'], g['n'])} pp TAR "
            f"(UNPG higher in {g['wins']}/{g['n']} seeds)"
        )
    if math.isnan(run0["final_loss"]):
        lines.append("A run diverged (NaN loss).")
    return lines


#: `posneg bench verification`: one option per field of :class:`BenchConfig`.
cli = harness.command(
    BenchConfig,
    run,
    doc="""Open-set verification (TAR at low FAR) with CosFace/ArcFace heads, with and without UNPG.

    Digit classes act as identities: an embedding MLP trains on some classes and every pair of
    samples of the held-out classes is verified by cosine similarity. Writes results.json,
    results.md and a ROC plot (roc.png) into --out.
    """,
    flags={"techniques": ("--technique", "-t"), "batch_size": ("--batch-size", "-b")},
    help={"techniques": "Technique, repeatable: " + ", ".join(TECHNIQUES) + ". Default: all."},
)

#: The demo preset: CosFace with and without UNPG on digits, one seed, few epochs.
DEMO_CONFIG = BenchConfig(
    techniques=("cosface", "cosface+unpg"), dataset="digits", epochs=6, seeds=1
)


def demo(out: Path) -> _report.DemoSummary:
    """A small preset for `posneg demo`: CosFace +- UNPG on digits, one seed, 6 epochs."""
    cfg = BenchConfig(**{**asdict(DEMO_CONFIG), "out": str(out)})
    result = run(cfg)
    fars = result["config"]["reported_fars"]
    low = f"tar@{min(fars):g}"
    rows = [
        (a["technique"], f"TAR@FAR={min(fars):g} (%)", f"{100 * a[f'{low}_mean']:.1f}")
        for a in result["aggregate"]
    ]
    return _report.DemoSummary(family="verification", rows=rows, report=Path(result["report"]))
