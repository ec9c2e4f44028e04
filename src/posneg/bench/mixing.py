"""`posneg bench mixing`: a small CNN trained once per mixing/augmentation technique.

For every technique (a spec string such as ``mixup:alpha=0.4`` or ``corruptions:dataset=xray``)
and every seed, the bench trains the same small CNN classifier on the train split of
scikit-learn's bundled 8x8 digits, upsampled bilinearly to 32x32 (one channel, values in
[0, 1], so that boxes, Fourier masks and pasted patches are meaningful), or on a user
``--data file.npz`` of images, and reports on the held-out split:

- **clean accuracy**;
- **ECE**: expected calibration error with 15 equal-width confidence bins (Guo et al., 2017):
  ``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` with the max softmax probability as confidence,
  bin ``b`` holding confidences in ``(b/15, (b+1)/15]`` (:func:`expected_calibration_error`);
- **corrupted accuracy** at severities 1..5: the test split corrupted by each of a fixed set of
  :mod:`posneg.augment.corruptions` (:data:`TEST_CORRUPTIONS`) at that severity, with the
  official MedMNIST-C severities of ``corruption_dataset`` (DermaMNIST's by default), accuracy
  averaged over the corruptions. The corrupted test sets are built once per bench run from a
  fixed generator (seed :data:`CORRUPTION_SEED`), so every technique and seed is scored on the
  very same images.

Techniques (:data:`TECHNIQUES`): ``none`` (plain cross-entropy), the batch-mixing modules
``mixup``, ``cutmix``, ``fmix``, ``resizemix`` (every training batch is mixed; the loss is the
cross-entropy against the mixed soft targets), and the per-sample augmentations ``randaugment``
(:class:`~posneg.augment.RandAugment`, defaults N=2, M=9 of 31) and ``corruptions``
(:class:`~posneg.augment.Corruptions` in augmentation mode, DermaMNIST's list by default: one
corruption and a uniform parameter per sample, or identity). Spec arguments go to the
constructors; ``num_classes`` is set by the bench.

Model: ``Conv(C->16, 3x3, stride 2) BN ReLU MaxPool - Conv(16->32) BN ReLU MaxPool -
Conv(32->64) BN ReLU - global average pool - Linear(64->K)``, fed ``(x - mean) / std`` with one
scalar mean/std from the clean train pixels; Adam with a cosine learning-rate decay to 0 over
the run. Every draw (batch order, mixing, augmentation)
comes from one ``torch.Generator`` per run seeded with the run's seed, on the training device;
the weights are initialised under that seed in a forked RNG (the global state is left as it was).
Same seed, same device and same thread count give the same metrics.

Python use::

    from posneg.bench.mixing import BenchConfig, run
    result = run(BenchConfig(techniques=("none", "mixup"), epochs=5, seeds=1))
    result["aggregate"]          # per technique: mean/std of every metric
"""

from __future__ import annotations

import math
import os
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
import typer
from rich.console import Console
from torch import nn

from posneg.augment import Corruptions, RandAugment, corrupt
from posneg.bench._common import (
    DemoSummary,
    Spec,
    UsageError,
    atomic_save_figure,
    console,
    fmt,
    mean_std,
    parse_specs,
    progress_bar,
    resolve_device,
    rich_table,
    write_report,
)
from posneg.data.digits import MIN_SAMPLES, _encode_labels, stratified_split
from posneg.mixing import CutMix, FMix, MixUp, ResizeMix

__all__ = [
    "CORRUPTION_SEED",
    "DEFAULT_TECHNIQUES",
    "DEMO_CONFIG",
    "TECHNIQUES",
    "TEST_CORRUPTIONS",
    "BenchConfig",
    "ImageData",
    "SmallCNN",
    "cli",
    "demo",
    "expected_calibration_error",
    "load_image_digits",
    "load_image_npz",
    "run",
]


# ---------------------------------------------------------------------------------------------
# techniques
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Technique:
    """How the bench builds and uses one technique.

    Attributes:
        key: the spec name.
        kind: ``plain`` (no change), ``mix`` (a batch-mixing module: ``m(x, y, generator=)``
            returns mixed images and soft targets) or ``augment`` (``m(x, generator=)``).
        cls: the constructor (None for ``plain``).
        forced: constructor arguments the bench always sets (a spec may not override them).
    """

    key: str
    kind: str
    cls: Callable[..., nn.Module] | None = None
    forced: tuple[str, ...] = ()


#: Everything `--technique` accepts, in table order.
TECHNIQUES: dict[str, Technique] = {
    t.key: t
    for t in (
        Technique("none", "plain"),
        Technique("mixup", "mix", MixUp, forced=("num_classes",)),
        Technique("cutmix", "mix", CutMix, forced=("num_classes",)),
        Technique("fmix", "mix", FMix, forced=("num_classes",)),
        Technique("resizemix", "mix", ResizeMix, forced=("num_classes",)),
        Technique("randaugment", "augment", RandAugment),
        Technique("corruptions", "augment", Corruptions),
    )
}

#: The techniques run when `--technique` is not given: all of them.
DEFAULT_TECHNIQUES: tuple[str, ...] = tuple(TECHNIQUES)

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

#: The MedMNIST data set whose official severities the corrupted test sets use.
CORRUPTION_DATASET = "dermamnist"

#: Seed of the generator that builds the corrupted test sets (the same for every run).
CORRUPTION_SEED = 1234

#: Number of confidence bins of the expected calibration error.
ECE_BINS = 15


def _build_module(spec: Spec, n_classes: int) -> nn.Module | None:
    """Instantiate ``spec``'s technique; a bad argument becomes a one-line UsageError."""
    tech = TECHNIQUES[spec.key]
    where = f"--technique {spec.label()!r}"
    for name in tech.forced:
        if name in spec.kwargs:
            raise UsageError(f"{where}: {name} is set by the bench (the data's class count)")
    if tech.cls is None:
        if spec.kwargs:
            raise UsageError(f"{where}: 'none' takes no arguments")
        return None
    kwargs = dict(spec.kwargs)
    if "num_classes" in tech.forced:
        kwargs["num_classes"] = n_classes
    try:
        return tech.cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{where}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageData:
    """A stratified train/test split of a labelled image set, float32 pixels in [0, 1].

    Attributes:
        name: ``digits (8x8 -> 32x32)`` or the user file's path.
        x_train, x_test: (N, C, H, W) float32 in [0, 1].
        y_train, y_test: (N,) int64 labels in 0..K-1.
        classes: the original label values.
        mean, std: one scalar pair over the clean train pixels (the model's input scaling).
        note: how the pixels were scaled.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    mean: float
    std: float
    note: str = ""

    @property
    def n_classes(self) -> int:
        """K, the number of classes."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)


def _split_images(
    name: str, x: np.ndarray, y: np.ndarray, *, test_fraction: float, seed: int, fn: str, note: str
) -> ImageData:
    classes, codes = _encode_labels(fn, y)
    train_idx, test_idx = stratified_split(codes, test_fraction=test_fraction, seed=seed)
    x = x.astype(np.float32)
    x_train = x[train_idx]
    std = float(x_train.std())
    return ImageData(
        name=name,
        x_train=x_train,
        y_train=codes[train_idx],
        x_test=x[test_idx],
        y_test=codes[test_idx],
        classes=classes,
        mean=float(x_train.mean()),
        std=std if std > 1e-8 else 1.0,
        note=note,
    )


def load_image_digits(*, size: int = 32, test_fraction: float = 0.25, seed: int = 0) -> ImageData:
    """scikit-learn's 8x8 digits as (N, 1, size, size) images in [0, 1], bilinear upsampling.

    The split is :func:`posneg.data.stratified_split` (the same split as
    :func:`posneg.data.load_digits` under the same seed).
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = torch.as_tensor(np.asarray(bunch.data, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp(0.0, 1.0)
    return _split_images(
        f"digits (8x8 -> {size}x{size})",
        x.numpy(),
        np.asarray(bunch.target, dtype=np.int64),
        test_fraction=test_fraction,
        seed=seed,
        fn="load_image_digits",
        note=f"pixels / 16, bilinear upsampling to {size}x{size}",
    )


def load_image_npz(
    path: str | os.PathLike[str], *, test_fraction: float = 0.25, seed: int = 0
) -> ImageData:
    """A user's ``.npz`` with images ``X`` (N, C, H, W) or (N, H, W) and labels ``y`` (N,).

    Read with ``allow_pickle=False``. uint8 pixels are divided by 255; float pixels already in
    [0, 1] are kept, others are min-max scaled over the whole array to [0, 1].

    Raises:
        ValueError: unreadable file, missing arrays, wrong shapes or dtypes, NaN/inf pixels,
            images smaller than 8x8, fewer than 10 samples or a class with fewer than 2.
        FileNotFoundError: no such file.
    """
    fn = "load_image_npz"
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{fn}: no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise ValueError(f"{fn}: {path} is a single .npy array, not an .npz with X and y")
            names = list(npz.files)
            missing = [k for k in ("X", "y") if k not in names]
            if missing:
                raise ValueError(
                    f"{fn}: {path} must hold arrays 'X' (N, C, H, W) and 'y' (N,); missing "
                    f"{', '.join(repr(m) for m in missing)}; found: {', '.join(names) or 'nothing'}"
                )
            x = np.asarray(npz["X"])
            y = np.asarray(npz["y"])
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{fn}: cannot read {path} as .npz: {exc}") from None
    except ValueError as exc:
        if str(exc).startswith(fn):
            raise
        raise ValueError(f"{fn}: cannot read {path} as .npz: {exc}") from None
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"{fn}: X must have shape (N, C, H, W) or (N, H, W); got {x.shape}")
    if min(x.shape[2], x.shape[3]) < 8:
        raise ValueError(f"{fn}: images must be at least 8x8; got {x.shape[2]}x{x.shape[3]}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{fn}: y must have shape ({x.shape[0]},) matching X; got {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == y // 1):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{fn}: y must hold integer class labels; got dtype {y.dtype}")
    if x.shape[0] < MIN_SAMPLES:
        raise ValueError(f"{fn}: X must have at least {MIN_SAMPLES} samples; got {x.shape[0]}")
    if x.dtype == np.uint8:
        xf, note = x.astype(np.float64) / 255.0, "uint8 pixels / 255"
    elif np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer):
        xf = x.astype(np.float64)
        if not np.all(np.isfinite(xf)):
            bad = int(np.count_nonzero(~np.isfinite(xf)))
            raise ValueError(f"{fn}: X contains {bad} NaN or inf value(s)")
        lo, hi = float(xf.min()), float(xf.max())
        if lo >= 0.0 and hi <= 1.0:
            note = "float pixels in [0, 1], kept"
        else:
            xf = (xf - lo) / (hi - lo) if hi > lo else np.zeros_like(xf)
            note = f"pixels min-max scaled from [{lo:g}, {hi:g}] to [0, 1]"
    else:
        raise ValueError(f"{fn}: X must hold real numbers; got dtype {x.dtype}")
    return _split_images(
        path,
        xf,
        y.astype(np.int64),
        test_fraction=test_fraction,
        seed=seed,
        fn=fn,
        note=note,
    )


# ---------------------------------------------------------------------------------------------
# model and metrics
# ---------------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks (16, 32, 64 channels; the first with stride 2) and a linear head."""

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


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    return torch.cat([F.softmax(model(c), dim=1) for c in x.split(chunk)])


def _corrupted_sets(
    x: torch.Tensor,
    names: Sequence[str],
    device: torch.device,
    dataset: str = CORRUPTION_DATASET,
) -> dict[tuple[str, int], torch.Tensor]:
    """The test images under every corruption and severity (``dataset``'s official severities),
    from one fixed generator (CPU)."""
    gen = torch.Generator().manual_seed(CORRUPTION_SEED)
    xc = x.cpu()
    return {
        (name, sev): corrupt(xc, name, sev, dataset=dataset, generator=gen).to(device)
        for name in names
        for sev in range(1, 6)
    }


def _evaluate(
    model: nn.Module,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    corrupted: Mapping[tuple[str, int], torch.Tensor],
) -> dict[str, Any]:
    model.eval()
    probs = _predict(model, x_test)
    acc = float((probs.argmax(1) == y_test).double().mean())
    ece = expected_calibration_error(probs, y_test)
    per: dict[str, list[float]] = {}
    for (name, _sev), xc in corrupted.items():  # ordered by name, then severity 1..5
        pred = _predict(model, xc).argmax(1)
        per.setdefault(name, []).append(float((pred == y_test).double().mean()))
    by_sev = [float(np.mean([per[name][s] for name in per])) if per else math.nan for s in range(5)]
    return {
        "clean_accuracy": acc,
        "ece": ece,
        "corrupted_accuracy": by_sev,
        "mean_corrupted_accuracy": float(np.mean(by_sev)) if per else math.nan,
        "corrupted_accuracy_per_corruption": per,
    }


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (recorded in results.json).

    Attributes:
        techniques: spec strings (``none``, ``mixup:alpha=0.4``, ``randaugment:magnitude=5``).
        epochs: passes over the train split per run (the last partial batch is kept).
        batch_size: training batch size.
        seeds: number of training seeds (``first_seed``, ``first_seed + 1``, ...).
        first_seed: the first training seed.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``.
        data: a user ``.npz`` of images or ``None`` for the upsampled digits.
        size: side of the upsampled digits (ignored with ``data``).
        test_fraction: share of each class held out.
        split_seed: seed of the train/test split (fixed across training seeds).
        corruptions: the corruptions of the corrupted test sets.
        corruption_dataset: the MedMNIST data set (or modality alias) whose official severities
            the corrupted test sets use.
        threads: CPU threads for torch (0: min(4, available cores)).
        out: output folder.
        quiet: no progress bars and no table.
    """

    techniques: tuple[str, ...] = DEFAULT_TECHNIQUES
    epochs: int = 12
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


def _validate(cfg: BenchConfig) -> list[Spec]:
    specs = parse_specs(cfg.techniques, TECHNIQUES, flag="--technique", what="technique")
    if cfg.epochs < 1:
        raise UsageError(f"--epochs: must be >= 1; got {cfg.epochs}")
    if cfg.batch_size < 2:
        raise UsageError(
            f"--batch-size: must be >= 2 (mixing needs partners); got {cfg.batch_size}"
        )
    if cfg.seeds < 1:
        raise UsageError(f"--seeds: must be >= 1 (the number of seeds); got {cfg.seeds}")
    if cfg.first_seed < 0:
        raise UsageError(f"--first-seed: must be >= 0; got {cfg.first_seed}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise UsageError(f"--lr: must be a finite number > 0; got {cfg.lr}")
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise UsageError(f"--weight-decay: must be a finite number >= 0; got {cfg.weight_decay}")
    if not 8 <= cfg.size <= 256:
        raise UsageError(f"--size: must be in 8..256; got {cfg.size}")
    if not 0.0 < cfg.test_fraction < 1.0:
        raise UsageError(f"--test-fraction: must be in (0, 1); got {cfg.test_fraction}")
    from posneg.augment.corruptions import DATASET_NAMES, DATASETS, MODALITIES

    if cfg.corruption_dataset not in DATASET_NAMES:
        raise UsageError(
            f"--corruption-dataset: unknown data set {cfg.corruption_dataset!r}; known: "
            + ", ".join(DATASET_NAMES)
        )
    listed = DATASETS[MODALITIES.get(cfg.corruption_dataset, cfg.corruption_dataset)]
    for name in cfg.corruptions:
        if name not in listed:
            raise UsageError(
                f"--corruption: {name!r} is not a corruption of {cfg.corruption_dataset}; "
                f"known: {', '.join(listed)}"
            )
    if cfg.threads < 0:
        raise UsageError(f"--threads: must be >= 0 (0: automatic); got {cfg.threads}")
    if cfg.data is not None and not Path(cfg.data).is_file():
        raise UsageError(f"--data: no such file: {cfg.data}")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise UsageError(f"--out: {cfg.out} exists and is not a folder")
    return specs


def _load(cfg: BenchConfig) -> ImageData:
    if cfg.data is None:
        return load_image_digits(
            size=cfg.size, test_fraction=cfg.test_fraction, seed=cfg.split_seed
        )
    try:
        return load_image_npz(cfg.data, test_fraction=cfg.test_fraction, seed=cfg.split_seed)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--data: {exc}") from None


def _threads(cfg: BenchConfig) -> int:
    if cfg.threads:
        return cfg.threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets.to(logits.dtype) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _train_one(
    spec: Spec,
    data: ImageData,
    seed: int,
    cfg: BenchConfig,
    device: torch.device,
    corrupted: Mapping[tuple[str, int], torch.Tensor],
    tick: Callable[[], None],
) -> dict[str, Any]:
    tech = TECHNIQUES[spec.key]
    c = data.image_shape[0]
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = SmallCNN(c, data.n_classes, mean=data.mean, std=data.std).to(device)
    module = _build_module(spec, data.n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.as_tensor(data.x_train, device=device)
    y = torch.as_tensor(data.y_train, device=device)
    n = x.shape[0]
    bs = min(cfg.batch_size, n)
    steps_per_epoch = math.ceil(n / bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    start = time.perf_counter()
    cpu_start = time.process_time()
    epoch_losses: list[float] = []
    diverged_at: int | None = None
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, device=device, generator=gen)
        total = torch.zeros((), device=device, dtype=torch.float64)
        for step in range(steps_per_epoch):
            idx = perm[step * bs : (step + 1) * bs]
            xb, yb = x[idx], y[idx]
            if tech.kind == "mix" and module is not None:
                mixed = module(xb, yb, generator=gen)
                targets = cast(torch.Tensor, mixed.targets)  # given targets -> soft targets
                loss = _soft_cross_entropy(model(mixed.x), targets)
            else:
                if module is not None:
                    xb = module(xb, generator=gen)
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach().double()
        mean_loss = float(total) / steps_per_epoch
        epoch_losses.append(mean_loss)
        tick()
        if not math.isfinite(mean_loss):
            diverged_at = epoch + 1
            for _ in range(epoch + 1, cfg.epochs):
                tick()
            break
    train_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    x_test = torch.as_tensor(data.x_test, device=device)
    y_test = torch.as_tensor(data.y_test, device=device)
    if diverged_at is None:
        metrics = _evaluate(model, x_test, y_test, corrupted)
    else:
        metrics = {
            "clean_accuracy": math.nan,
            "ece": math.nan,
            "corrupted_accuracy": [math.nan] * 5,
            "mean_corrupted_accuracy": math.nan,
            "corrupted_accuracy_per_corruption": {},
        }
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


def _aggregate(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r["technique"], []).append(r)
    out = []
    for label, rs in groups.items():
        am, asd = mean_std([r["clean_accuracy"] for r in rs])
        em, esd = mean_std([r["ece"] for r in rs])
        mm, msd = mean_std([r["mean_corrupted_accuracy"] for r in rs])
        sev = [mean_std([r["corrupted_accuracy"][s] for r in rs]) for s in range(5)]
        out.append(
            {
                "technique": label,
                "seeds": [r["seed"] for r in rs],
                "clean_accuracy_mean": am,
                "clean_accuracy_std": asd,
                "ece_mean": em,
                "ece_std": esd,
                "corrupted_accuracy_mean": [m for m, _ in sev],
                "corrupted_accuracy_std": [s for _, s in sev],
                "mean_corrupted_accuracy_mean": mm,
                "mean_corrupted_accuracy_std": msd,
                "train_seconds_mean": mean_std([r["train_seconds"] for r in rs])[0],
                "train_cpu_seconds_mean": mean_std([r["train_cpu_seconds"] for r in rs])[0],
            }
        )
    return out


def _gap(runs: Sequence[Mapping[str, Any]], a: str, b: str, metric: str) -> dict[str, Any] | None:
    """Paired per-seed difference ``a - b`` of ``metric``."""
    by = {(r["technique"], r["seed"]): r for r in runs}
    seeds = sorted(s for (t, s) in by if t == a and (b, s) in by)
    if not seeds:
        return None
    d = [by[(a, s)][metric] - by[(b, s)][metric] for s in seeds]
    m, sd = mean_std(d)
    return {"seeds": seeds, "mean": m, "std": sd}


def _pct(mean: float, sd: float, n: int) -> str:
    return fmt(mean, sd, pct=True) if n > 1 or math.isnan(mean) else f"{100 * mean:.1f}"


def _plot(out: Path, agg: Sequence[Mapping[str, Any]]) -> Path:
    from matplotlib.figure import Figure

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
    labels = [a["technique"] for a in agg]
    xs = np.arange(len(labels))
    ax_acc.bar(
        xs,
        [100 * a["clean_accuracy_mean"] for a in agg],
        yerr=[100 * a["clean_accuracy_std"] for a in agg],
        capsize=2,
    )
    finite = [
        100 * a["clean_accuracy_mean"] for a in agg if math.isfinite(a["clean_accuracy_mean"])
    ]
    ax_acc.set_ylim(max(0.0, min(finite, default=0.0) - 5), 100)
    ax_acc.set_ylabel("clean accuracy (%)")
    ax_ece.bar(
        xs, [a["ece_mean"] for a in agg], yerr=[a["ece_std"] for a in agg], capsize=2, color="C1"
    )
    ax_ece.set_ylabel(f"ECE ({ECE_BINS} bins)")
    for axis in (ax_acc, ax_ece):
        axis.set_xticks(xs, labels, rotation=40, ha="right", fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    fig.suptitle("posneg bench mixing: accuracy vs corruption severity (mean ± std over seeds)")
    fig.tight_layout()
    return atomic_save_figure(fig, out / "accuracy_vs_severity.png")


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; write the reports; return the results.

    Returns:
        ``{"runs": [...], "aggregate": [...], "gaps": {...}, "report": path of results.md,
        "plots": [...], "config": {...}}``.

    Raises:
        UsageError: a bad spec, value or file (names the flag); the technique's own
            ValueError/TypeError text for a bad constructor argument.
    """
    specs = _validate(cfg)
    device = resolve_device(cfg.device)
    data = _load(cfg)
    for spec in specs:  # validate every spec before any training starts
        _build_module(spec, data.n_classes)
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    old_threads = torch.get_num_threads()
    threads = _threads(cfg)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    out = Path(cfg.out)
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        corrupted = _corrupted_sets(
            torch.as_tensor(data.x_test), cfg.corruptions, device, cfg.corruption_dataset
        )
        jobs = [(s, seed) for s in specs for seed in seeds]
        with progress_bar(disable=cfg.quiet) as progress:
            overall = progress.add_task("all runs", total=len(jobs) * cfg.epochs)
            current = progress.add_task("", total=cfg.epochs)
            for spec, seed in jobs:
                progress.reset(current, total=cfg.epochs, description=f"{spec.label()} seed={seed}")

                def tick() -> None:
                    progress.advance(current)
                    progress.advance(overall)

                runs.append(_train_one(spec, data, seed, cfg, device, corrupted, tick))
    finally:
        torch.set_num_threads(old_threads)
    elapsed = time.perf_counter() - started
    cpu_elapsed = time.process_time() - cpu_started
    agg = _aggregate(runs)
    labels = [s.label() for s in specs]
    gaps: dict[str, Any] = {}
    if "none" in labels:
        for lab in labels:
            if lab == "none":
                continue
            gaps[f"{lab} - none"] = {
                metric: _gap(runs, lab, "none", metric)
                for metric in ("clean_accuracy", "mean_corrupted_accuracy", "ece")
            }
    header = [
        "technique",
        "clean acc (%)",
        "ECE",
        *[f"sev {s} (%)" for s in range(1, 6)],
        "mean corr. (%)",
        "CPU s / run",
    ]
    rows = [
        (
            a["technique"],
            _pct(a["clean_accuracy_mean"], a["clean_accuracy_std"], len(a["seeds"])),
            fmt(a["ece_mean"], a["ece_std"]) if len(a["seeds"]) > 1 else f"{a['ece_mean']:.3f}",
            *[f"{100 * m:.1f}" for m in a["corrupted_accuracy_mean"]],
            _pct(
                a["mean_corrupted_accuracy_mean"], a["mean_corrupted_accuracy_std"], len(a["seeds"])
            ),
            f"{a['train_cpu_seconds_mean']:.1f}",
        )
        for a in agg
    ]
    c, h, w = data.image_shape
    config = {
        **asdict(cfg),
        "techniques": labels,
        "corruptions": list(cfg.corruptions),
        "seed_list": seeds,
        "resolved_device": str(device),
        "torch_threads": threads if device.type == "cpu" else old_threads,
        "data_name": data.name,
        "data_note": data.note,
        "image_shape": [c, h, w],
        "n_train": len(data.x_train),
        "n_test": len(data.x_test),
        "n_classes": data.n_classes,
        "model": "CNN conv16/s2-pool-conv32-pool-conv64-GAP-linear (BN, ReLU); Adam, cosine decay",
        "ece_bins": ECE_BINS,
        "corruption_seed": CORRUPTION_SEED,
        "elapsed_seconds": round(elapsed, 1),
        "cpu_seconds": round(cpu_elapsed, 1),
    }
    notes = [
        f"Held-out metrics on {data.name} ({len(data.x_train)} train / {len(data.x_test)} test, "
        f"{c}x{h}x{w}, stratified, split seed {cfg.split_seed}), mean ± sample std over seeds "
        f"{seeds}; {cfg.epochs} epochs per run, batch {cfg.batch_size}. ECE: {ECE_BINS} "
        "equal-width bins. Severity columns: accuracy on the test split corrupted by each of "
        f"{', '.join(cfg.corruptions)} at that severity (MedMNIST-C's official "
        f"{cfg.corruption_dataset} severities, spatial ones scaled by {min(h, w)}/224), averaged "
        f"over the corruptions (fixed generator seed {CORRUPTION_SEED}); mean corr.: the average "
        "over severities 1-5.",
    ]
    if gaps:
        notes += ["", "Paired gaps against `none` (percentage points, mean ± std over seeds):", ""]
        for name, g in gaps.items():
            ca, mc = g["clean_accuracy"], g["mean_corrupted_accuracy"]
            if ca is None or mc is None:
                continue
            n = len(ca["seeds"])
            notes.append(
                f"- {name}: clean {100 * ca['mean']:+.1f}"
                + (f" ± {100 * ca['std']:.1f}" if n > 1 else "")
                + f", mean corrupted {100 * mc['mean']:+.1f}"
                + (f" ± {100 * mc['std']:.1f}" if n > 1 else "")
            )
    diverged = [r for r in runs if r["diverged_at_epoch"] is not None]
    if diverged:
        notes += [
            "",
            "Diverged runs (non-finite loss; metrics n/a): "
            + ", ".join(
                f"{r['technique']} seed={r['seed']} (epoch {r['diverged_at_epoch']})"
                for r in diverged
            ),
        ]
    results = {"runs": runs, "aggregate": agg, "gaps": gaps}
    report = write_report(
        out,
        title="posneg bench mixing",
        config=config,
        results=results,
        header=header,
        rows=rows,
        notes="\n".join(notes),
    )
    plots = [_plot(out, agg)]
    if not cfg.quiet:
        table = rich_table("posneg bench mixing", header, rows)
        table.columns[0].min_width = max(len(r[0]) for r in rows)
        stdout = Console()
        if not stdout.is_terminal:
            stdout = Console(width=160)
        for column in table.columns[1:]:
            column.no_wrap = True
        stdout.print(table)
        for line in notes[1:]:
            if line:
                stdout.print(line, soft_wrap=True)
        console.print(
            f"finished in {elapsed:.0f} s ({cpu_elapsed:.0f} s CPU); report: [bold]{report}[/bold]"
        )
    return {**results, "report": report, "plots": plots, "config": config}


# ---------------------------------------------------------------------------------------------
# CLI and demo
# ---------------------------------------------------------------------------------------------


def cli(
    technique: Annotated[
        list[str] | None,
        typer.Option(
            "--technique",
            "-t",
            help="Technique spec, repeatable: none, mixup, cutmix, fmix, resizemix, "
            "randaugment, corruptions, with constructor arguments as in 'mixup:alpha=0.4' or "
            "'corruptions:dataset=xray'. Default: all.",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs per run.")] = BenchConfig.epochs,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", help="Training batch size.")
    ] = BenchConfig.batch_size,
    seeds: Annotated[
        int, typer.Option(help="Number of training seeds (first-seed, first-seed+1, ...).")
    ] = BenchConfig.seeds,
    first_seed: Annotated[int, typer.Option(help="First training seed.")] = BenchConfig.first_seed,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = BenchConfig.lr,
    weight_decay: Annotated[
        float, typer.Option(help="Adam weight decay.")
    ] = BenchConfig.weight_decay,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = BenchConfig.device,
    data: Annotated[
        Path | None,
        typer.Option(
            help=".npz with images X (N, C, H, W) or (N, H, W) and y (N,) int labels. "
            "Default: the 8x8 digits upsampled."
        ),
    ] = None,
    size: Annotated[
        int, typer.Option(help="Side of the upsampled digits (without --data).")
    ] = BenchConfig.size,
    test_fraction: Annotated[
        float, typer.Option(help="Share of each class held out.")
    ] = BenchConfig.test_fraction,
    split_seed: Annotated[
        int, typer.Option(help="Seed of the train/test split.")
    ] = BenchConfig.split_seed,
    corruption: Annotated[
        list[str] | None,
        typer.Option(
            "--corruption",
            help="Corruption of the corrupted test sets, repeatable. Default: "
            + ", ".join(TEST_CORRUPTIONS)
            + ".",
        ),
    ] = None,
    corruption_dataset: Annotated[
        str,
        typer.Option(
            help="MedMNIST data set (or modality) whose official severities the corrupted test "
            "sets use."
        ),
    ] = BenchConfig.corruption_dataset,
    threads: Annotated[
        int, typer.Option(help="CPU threads for torch (0: min(4, cores)).")
    ] = BenchConfig.threads,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path(BenchConfig.out),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no table.")] = False,
) -> None:
    """Train a small CNN per mixing/augmentation technique; clean, calibration, corrupted accuracy.

    Every technique and seed trains the same CNN on upsampled digits (or --data images); the
    held-out split is scored clean (accuracy, 15-bin ECE) and under corruptions at severities
    1-5. Writes results.json, results.md and a PNG plot into --out.
    """
    cfg = BenchConfig(
        techniques=tuple(technique) if technique else DEFAULT_TECHNIQUES,
        epochs=epochs,
        batch_size=batch_size,
        seeds=seeds,
        first_seed=first_seed,
        lr=lr,
        weight_decay=weight_decay,
        device=device,
        data=None if data is None else str(data),
        size=size,
        test_fraction=test_fraction,
        split_seed=split_seed,
        corruptions=tuple(corruption) if corruption else TEST_CORRUPTIONS,
        corruption_dataset=corruption_dataset,
        threads=threads,
        out=str(out),
        quiet=quiet,
    )
    result = run(cfg)
    if quiet:
        typer.echo(str(result["report"]))


#: The demo preset: every technique, one seed, few epochs (under a minute on 2 cores).
DEMO_CONFIG = BenchConfig(epochs=8, seeds=1)


def demo(out: Path) -> DemoSummary:
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
    return DemoSummary(family="mixing", rows=rows, report=Path(result["report"]))
