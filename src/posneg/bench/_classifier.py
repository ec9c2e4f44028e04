"""The image classifier of `posneg bench mixing`, its held-out metrics and their aggregation.

:class:`SmallCNN`; :func:`expected_calibration_error` (Guo et al., ICML 2017); the fixed
corrupted test sets (:func:`check_corruptions`, :func:`corrupted_sets`); :func:`evaluate`; the
mean/std over seeds (:func:`aggregate`), the paired gaps against ``none`` (:func:`gaps`), and
the summary table and notes of the report (:func:`table`, :func:`run_notes`). Kept apart from the
recipe so that it reads as data, train step, report and plot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posneg.augment import corrupt
from posneg.bench._harness import UsageError
from posneg.bench._models1d import SequenceData
from posneg.bench._report import fmt, mean_std, save_figure
from posneg.data.images import ImageData

if TYPE_CHECKING:
    from posneg.bench.mixing import BenchConfig

__all__ = [
    "CORRUPTION_DATASET",
    "CORRUPTION_SEED",
    "ECE_BINS",
    "TEST_CORRUPTIONS",
    "SmallCNN",
    "aggregate",
    "check_corruptions",
    "corrupted_sets",
    "evaluate",
    "expected_calibration_error",
    "gaps",
    "nan_metrics",
    "plot",
    "predict",
    "run_notes",
    "soft_cross_entropy",
    "table",
]

#: The MedMNIST data set whose official severities the corrupted test sets use by default.
CORRUPTION_DATASET = "dermamnist"

#: The corruptions of the corrupted test sets (mean over them per severity), all in DermaMNIST's
#: official list: noises, blurs, pixelate, JPEG and a contrast loss. Eight keep the evaluation
#: within the CPU budget.
TEST_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "impulse_noise",
    "speckle_noise",
    "defocus_blur",
    "motion_blur",
    "pixelate",
    "jpeg_compression",
    "contrast_down",
)

#: Seed of the generator that builds the corrupted test sets (the same for every run).
CORRUPTION_SEED = 1234

#: Number of confidence bins of the expected calibration error.
ECE_BINS = 15


def nan_metrics() -> dict[str, Any]:
    """The metrics of a run that diverged: NaN everywhere."""
    return {
        "clean_accuracy": math.nan,
        "ece": math.nan,
        "corrupted_accuracy": [math.nan] * 5,
        "mean_corrupted_accuracy": math.nan,
        "corrupted_accuracy_per_corruption": {},
    }


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks (16, 32, 64 channels; the first with stride 2) and a linear head.

    ``Conv(C->16, stride 2) BN ReLU MaxPool - Conv(16->32) BN ReLU MaxPool - Conv(32->64) BN
    ReLU - global average pool - Linear(64->K)``, fed ``(x - mean) / std`` with one scalar
    mean/std (the clean train pixels').

    Args:
        in_channels: C.
        n_classes: K.
        mean, std: the input scaling.

    Example:
        >>> SmallCNN(1, 10, mean=0.5, std=0.25)(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 10])
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, in_channels: int, n_classes: int, *, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

        def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]

        self.features = nn.Sequential(
            *block(in_channels, 16, 2),
            nn.MaxPool2d(2, ceil_mode=True),
            *block(16, 32),
            nn.MaxPool2d(2, ceil_mode=True),
            *block(32, 64),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of images (B, C, H, W) in [0, 1]."""
        return self.head(self.features((x - self.mean) / self.std))


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = ECE_BINS
) -> float:
    """Expected calibration error with ``n_bins`` equal-width confidence bins.

    Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017.
    ``ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` where confidence is the largest class
    probability, the prediction its class (ties: the lowest index), and bin ``b`` (0-based)
    holds confidences in ``(b / n_bins, (b + 1) / n_bins]`` (a confidence of 0 joins bin 0).

    Args:
        probs: (N, K) class probabilities.
        labels: (N,) integer labels.
        n_bins: number of bins (>= 1).

    Returns:
        The ECE in [0, 1] as a Python float (computed in float64).

    Raises:
        ValueError: bad shapes or ``n_bins < 1``.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
        >>> round(expected_calibration_error(p, torch.tensor([0, 1])), 6)
        0.35
    """
    if probs.dim() != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(
            "expected_calibration_error: probs must be (N, K) and labels (N,); got "
            f"{tuple(probs.shape)} and {tuple(labels.shape)}"
        )
    if n_bins < 1:
        raise ValueError(f"expected_calibration_error: n_bins must be >= 1; got {n_bins}")
    n = probs.shape[0]
    if n == 0:
        return math.nan
    p = probs.double()
    conf, pred = p.max(dim=1)
    correct = (pred == labels).double()
    idx = (torch.ceil(conf * n_bins) - 1).clamp(0, n_bins - 1).long()
    count = torch.zeros(n_bins, dtype=torch.float64, device=p.device)
    count.scatter_add_(0, idx, torch.ones_like(conf))
    acc_sum = torch.zeros_like(count).scatter_add_(0, idx, correct)
    conf_sum = torch.zeros_like(count).scatter_add_(0, idx, conf)
    return float((acc_sum - conf_sum).abs().sum() / n)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (B, K) against soft targets (B, K)."""
    return -(targets.to(logits.dtype) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Softmax probabilities (N, K) of ``model`` on ``x``, ``chunk`` rows at a time."""
    return torch.cat([F.softmax(model(c), dim=1) for c in x.split(chunk)])


def corrupted_sets(
    x: torch.Tensor, names: Sequence[str], device: torch.device, dataset: str = CORRUPTION_DATASET
) -> dict[tuple[str, int], torch.Tensor]:
    """The test images ``x`` under every corruption of ``names`` at severities 1..5.

    ``dataset``'s official MedMNIST-C severities, drawn on the CPU from one generator seeded with
    :data:`CORRUPTION_SEED` (the same images for every run); keys ``(name, severity)`` ordered by
    name, then severity.
    """
    gen = torch.Generator().manual_seed(CORRUPTION_SEED)
    xc = x.cpu()
    return {
        (name, sev): corrupt(xc, name, sev, dataset=dataset, generator=gen).to(device)
        for name in names
        for sev in range(1, 6)
    }


def evaluate(
    model: nn.Module,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    corrupted: Mapping[tuple[str, int], torch.Tensor],
) -> dict[str, Any]:
    """Clean accuracy, ECE and accuracy under each corrupted set (mean per severity)."""
    model.eval()
    probs = predict(model, x_test)
    per: dict[str, list[float]] = {}
    for (name, _sev), xc in corrupted.items():  # ordered by name, then severity 1..5
        pred = predict(model, xc).argmax(1)
        per.setdefault(name, []).append(float((pred == y_test).double().mean()))
    by_sev = [float(np.mean([per[name][s] for name in per])) if per else math.nan for s in range(5)]
    return {
        "clean_accuracy": float((probs.argmax(1) == y_test).double().mean()),
        "ece": expected_calibration_error(probs, y_test),
        "corrupted_accuracy": by_sev,
        "mean_corrupted_accuracy": float(np.mean(by_sev)) if per else math.nan,
        "corrupted_accuracy_per_corruption": per,
    }


def check_corruptions(names: Sequence[str], dataset: str) -> None:
    """Raise a UsageError naming the flag unless ``dataset`` is a MedMNIST data set (or modality)
    and every name one of its official corruptions."""
    from posneg.augment.corruptions import DATASET_NAMES, DATASETS, MODALITIES

    if dataset not in DATASET_NAMES:
        raise UsageError(
            f"--corruption-dataset: unknown data set {dataset!r}; known: "
            + ", ".join(DATASET_NAMES)
        )
    listed = DATASETS[MODALITIES.get(dataset, dataset)]
    for name in names:
        if name not in listed:
            raise UsageError(
                f"--corruption: {name!r} is not a corruption of {dataset}; "
                f"known: {', '.join(listed)}"
            )


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """:func:`mean_std`, NaN for both when a value is NaN (a diverged run, no corrupted sets)."""
    if any(math.isnan(float(v)) for v in values):
        return math.nan, math.nan
    return mean_std(values)


def aggregate(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per technique (in run order): mean and sample std over seeds of every metric."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r["technique"], []).append(r)
    out = []
    for label, rs in groups.items():
        row: dict[str, Any] = {"technique": label, "seeds": [r["seed"] for r in rs]}
        for name, metric in (
            ("clean_accuracy", "clean_accuracy"),
            ("ece", "ece"),
            ("mean_corrupted_accuracy", "mean_corrupted_accuracy"),
        ):
            row[f"{name}_mean"], row[f"{name}_std"] = _mean_std([r[metric] for r in rs])
        sev = [_mean_std([r["corrupted_accuracy"][s] for r in rs]) for s in range(5)]
        row["corrupted_accuracy_mean"] = [m for m, _ in sev]
        row["corrupted_accuracy_std"] = [s for _, s in sev]
        for name in ("train_seconds", "train_cpu_seconds"):
            row[f"{name}_mean"] = _mean_std([r[name] for r in rs])[0]
        out.append(row)
    return out


def _gap(runs: Sequence[Mapping[str, Any]], a: str, b: str, metric: str) -> dict[str, Any] | None:
    """Paired per-seed difference ``a - b`` of ``metric``."""
    by = {(r["technique"], r["seed"]): r for r in runs}
    seeds = sorted(s for (t, s) in by if t == a and (b, s) in by)
    if not seeds:
        return None
    m, sd = _mean_std([by[(a, s)][metric] - by[(b, s)][metric] for s in seeds])
    return {"seeds": seeds, "mean": m, "std": sd}


def gaps(runs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    """Paired per-seed gaps of every technique against ``none`` (empty without ``none``)."""
    if "none" not in labels:
        return {}
    return {
        f"{lab} - none": {
            metric: _gap(runs, lab, "none", metric)
            for metric in ("clean_accuracy", "mean_corrupted_accuracy", "ece")
        }
        for lab in labels
        if lab != "none"
    }


def _pct(mean: float, sd: float, n: int) -> str:
    """A percentage cell: mean ± std over ``n`` seeds, the mean alone for one seed."""
    return fmt(mean, sd, pct=True) if n > 1 or math.isnan(mean) else f"{100 * mean:.1f}"


def table(
    agg: Sequence[Mapping[str, Any]], *, corrupted: bool = True
) -> tuple[list[str], list[tuple[str, ...]]]:
    """The summary table of :func:`aggregate`'s rows: header and one row per technique.

    Without ``corrupted`` (sequences), the severity and mean-corrupted columns are left out.
    """
    header = ["technique", "clean acc (%)", "ECE"]
    if corrupted:
        header += [*[f"sev {s} (%)" for s in range(1, 6)], "mean corr. (%)"]
    header += ["CPU s / run"]
    rows = []
    for a in agg:
        n = len(a["seeds"])
        corr = (
            [f"{100 * m:.1f}" for m in a["corrupted_accuracy_mean"]]
            + [_pct(a["mean_corrupted_accuracy_mean"], a["mean_corrupted_accuracy_std"], n)]
            if corrupted
            else []
        )
        rows.append(
            (
                a["technique"],
                _pct(a["clean_accuracy_mean"], a["clean_accuracy_std"], n),
                fmt(a["ece_mean"], a["ece_std"]) if n > 1 else f"{a['ece_mean']:.3f}",
                *corr,
                f"{a['train_cpu_seconds_mean']:.1f}",
            )
        )
    return header, rows


def plot(out: Path, agg: Sequence[Mapping[str, Any]], *, corrupted: bool = True) -> Path:
    """``accuracy_vs_severity.png`` (images) or ``accuracy_ece.png`` (sequences) in ``out``.

    Images: accuracy against corruption severity, then clean accuracy and ECE bars; sequences
    (``corrupted=False``): the two bar charts only. Error bars: std over seeds.
    """
    from matplotlib.figure import Figure

    if corrupted:
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
    else:
        fig = Figure(figsize=(8, 4.8))
        ax_acc, ax_ece = fig.subplots(1, 2)
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
    if corrupted:
        fig.suptitle("posneg bench mixing: accuracy vs corruption severity (mean ± std over seeds)")
    else:
        fig.suptitle("posneg bench mixing: test accuracy and ECE (mean ± std over seeds)")
    fig.tight_layout()
    name = "accuracy_vs_severity.png" if corrupted else "accuracy_ece.png"
    return save_figure(fig, out / name)


def _sequence_protocol(
    cfg: BenchConfig, data: SequenceData, seeds: Sequence[int], skipped: Mapping[str, str]
) -> list[str]:
    """The protocol note of a sequence data set, and why techniques were skipped."""
    c, length = data.image_shape
    notes = [
        f"Held-out metrics on {data.name} ({len(data.x_train)} train / {len(data.x_test)} test, "
        f"{c}x{length}, {data.note}), mean ± sample std over seeds {list(seeds)}; "
        f"{cfg.epochs} epochs per run, batch {cfg.batch_size}; a 1-D CNN. ECE: {ECE_BINS} "
        "equal-width bins. No corrupted test sets: MedMNIST-C's corruptions are 2-D.",
    ]
    if skipped:
        notes += ["", "Skipped on sequences:", ""]
        notes += [f"- {label}: {why}." for label, why in skipped.items()]
    return notes


def run_notes(
    cfg: BenchConfig,
    data: ImageData | SequenceData,
    seeds: Sequence[int],
    runs: Sequence[Mapping[str, Any]],
    paired: Mapping[str, Any],
    skipped: Mapping[str, str] | None = None,
) -> list[str]:
    """The notes of results.md: the protocol, the paired gaps against ``none``, diverged runs.

    On sequences the gaps are in clean accuracy and ECE and ``skipped`` (label -> reason) lists
    the techniques that do not apply; on images, in clean and mean corrupted accuracy.
    """
    if isinstance(data, SequenceData):
        notes = _sequence_protocol(cfg, data, seeds, skipped or {})
        if paired:
            notes += ["", "Paired gaps against `none` (mean ± std over seeds):", ""]
            for name, g in paired.items():
                ca, ece = g["clean_accuracy"], g["ece"]
                if ca is None or ece is None:
                    continue
                many = len(ca["seeds"]) > 1
                notes.append(
                    f"- {name}: accuracy {100 * ca['mean']:+.1f}"
                    + (f" ± {100 * ca['std']:.1f}" if many else "")
                    + f" pp, ECE {ece['mean']:+.3f}"
                    + (f" ± {ece['std']:.3f}" if many else "")
                )
        return notes + _diverged(runs)
    c, h, w = data.image_shape
    notes = [
        f"Held-out metrics on {data.name} ({len(data.x_train)} train / {len(data.x_test)} test, "
        f"{c}x{h}x{w}, stratified, split seed {cfg.split_seed}), mean ± sample std over seeds "
        f"{list(seeds)}; {cfg.epochs} epochs per run, batch {cfg.batch_size}. ECE: {ECE_BINS} "
        "equal-width bins. Severity columns: accuracy on the test split corrupted by each of "
        f"{', '.join(cfg.corruptions)} at that severity (MedMNIST-C's official "
        f"{cfg.corruption_dataset} severities, spatial ones in pixels at {h}x{w} as the official "
        "code applies them), averaged "
        f"over the corruptions (fixed generator seed {CORRUPTION_SEED}); mean corr.: the average "
        "over severities 1-5.",
    ]
    if paired:
        notes += ["", "Paired gaps against `none` (percentage points, mean ± std over seeds):", ""]
        for name, g in paired.items():
            ca, mc = g["clean_accuracy"], g["mean_corrupted_accuracy"]
            if ca is None or mc is None:
                continue
            sd = [f" ± {100 * g['std']:.1f}" if len(ca["seeds"]) > 1 else "" for g in (ca, mc)]
            notes.append(
                f"- {name}: clean {100 * ca['mean']:+.1f}{sd[0]}, "
                f"mean corrupted {100 * mc['mean']:+.1f}{sd[1]}"
            )
    return notes + _diverged(runs)


def _diverged(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The note on runs that diverged (none when every run finished)."""
    diverged = [r for r in runs if r["diverged_at_epoch"] is not None]
    notes: list[str] = []
    if diverged:
        notes += [
            "",
            "Diverged runs (non-finite loss; metrics n/a): "
            + ", ".join(
                f"{r['technique']} seed={r['seed']} (epoch {r['diverged_at_epoch']})"
                for r in diverged
            ),
        ]
    return notes
