"""From Fake to Real (FFR): pretrain on balanced synthetic data, then fine-tune on real data only.

Qraitem, Saenko, Plummer, "From Fake to Real: Pretraining on Balanced Synthetic Images to
Prevent Spurious Correlations in Image Recognition", arXiv 2308.04553 (2023).

Each sample has a class ``y`` and a bias attribute ``b``; a **group** is ``g = (y, b)``, with id
``y * num_biases + b``. With ``n_g`` the real count of group ``g`` and ``G = C * K`` groups:

- the **budget** is ``num_gen = sum_g (max_g' n_g' - n_g)``: the synthetic images needed to
  top every group up to the largest one (:func:`balancing_budget`);
- **FFR step 1** trains on synthetic images only, ``num_gen // G`` per group (balanced);
  **step 2** initialises from step 1 and trains on real images only (:class:`FakeToRealTrainer`);
- the baselines mix the two sources: **USB** = real + the top-up of every group (one mixed set,
  equal group counts), **ASB** = real + ``num_gen // G`` synthetic per group
  (:func:`synthetic_plan` gives the groups to generate for each mode);
- :func:`make_harder` cuts each class's minority group to ``n_min = max(n_max (1 - r) / r, 10)``
  (``r`` = ``minority_to_keep``), the paper's bias strength;
- :func:`group_stats`: worst-group accuracy (min over groups) and balanced accuracy (mean).

Transcribed from the official code, ``mqraitem/From-Fake-to-Real`` at commit
``12e522faa81730cda75ada364e3faaca2d9a9fac``: ``datasets/dataset.py`` (``make_harder``,
``load_gen_data_balance``, ``get_gen_ratio``, ``load_gen_data``), ``training_code/
train_erm_ffr_1.py`` (``num_per_group = num_gen // len(GROUPS)``; Adam lr 1e-4, weight decay
1e-5, 50 epochs), ``train_erm_ffr_2.py`` (Adam lr 1e-3, optional ``--freeze_bn``) and
``utils.py`` (``compute_stats``). Deliberate differences, each with its own test:

- ``compute_stats`` divides by ``len(idx)`` for every group, so a group without test samples
  makes both numbers NaN; :func:`group_stats` leaves such groups out (``per_group`` keeps NaN).
- ``make_harder`` asks ``np.random.choice`` for a negative number of samples (an error) when a
  minority group has fewer than 10 images; here such a group is kept whole.

The generator is the caller's: :func:`synthetic_plan` returns the ``(labels, bias)`` of the
images to generate, and any class-and-attribute-conditional generator (the paper: Stable
Diffusion v1.4 prompted per group, e.g. "a headshot of a {gender} celebrity {smiling}") turns
them into images.

Example:
    >>> import torch
    >>> y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    >>> b = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0])
    >>> counts = group_counts(y, b, num_classes=2, num_biases=2)
    >>> counts.tolist()
    [[3, 1], [1, 3]]
    >>> int(balancing_budget(counts).sum()), ffr_per_group(counts)
    (4, 1)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._progress import ProgressCallback, check_progress, tracker

__all__ = [
    "FakeToRealTrainer",
    "GroupStats",
    "balancing_budget",
    "erm_step",
    "ffr_per_group",
    "group_counts",
    "group_stats",
    "make_harder",
    "synthetic_plan",
    "train_stage",
]

CITATION = """
@article{qraitem2023fake,
  title   = {From Fake to Real: Pretraining on Balanced Synthetic Images to Prevent Spurious
             Correlations in Image Recognition},
  author  = {Qraitem, Maan and Saenko, Kate and Plummer, Bryan A.},
  journal = {arXiv preprint arXiv:2308.04553},
  year    = {2023}
}
"""

_MODES = ("ffr", "usb", "asb")


def _int_labels(fn: str, name: str, x: Any, n: int | None = None) -> torch.Tensor:
    _checks.check_tensor(fn, name, x)
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.dim() != 1:
        raise TypeError(
            f"{fn}: {name} must be a 1-D integer tensor; got {x.dtype} {tuple(x.shape)}"
        )
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{fn}: {name} must have shape ({n},); got {tuple(x.shape)}")
    if x.numel() and int(x.min()) < 0:
        raise ValueError(f"{fn}: {name} must be >= 0")
    return x


def _sizes(fn: str, labels: torch.Tensor, bias: torch.Tensor, c: Any, k: Any) -> tuple[int, int]:
    c = int(labels.max()) + 1 if c is None and labels.numel() else c
    k = int(bias.max()) + 1 if k is None and bias.numel() else k
    c = _checks.check_int(fn, "num_classes", c if c is not None else 1, min_value=1)
    k = _checks.check_int(fn, "num_biases", k if k is not None else 1, min_value=1)
    if labels.numel() and int(labels.max()) >= c:
        raise ValueError(f"{fn}: labels must be < num_classes={c}; got {int(labels.max())}")
    if bias.numel() and int(bias.max()) >= k:
        raise ValueError(f"{fn}: bias must be < num_biases={k}; got {int(bias.max())}")
    return c, k


def group_counts(
    labels: torch.Tensor,
    bias: torch.Tensor,
    *,
    num_classes: int | None = None,
    num_biases: int | None = None,
) -> torch.Tensor:
    """``(C, K)`` int64 counts ``n_{y,b}`` of every group (``set_group_counts`` of the code).

    Args:
        labels: ``(N,)`` class ids in ``[0, C)``.
        bias: ``(N,)`` bias-attribute ids in ``[0, K)``.
        num_classes: ``C`` (default: ``labels.max() + 1``).
        num_biases: ``K`` (default: ``bias.max() + 1``).
    """
    fn = "group_counts"
    labels = _int_labels(fn, "labels", labels)
    bias = _int_labels(fn, "bias", bias, labels.shape[0])
    c, k = _sizes(fn, labels, bias, num_classes, num_biases)
    flat = torch.bincount((labels * k + bias).long(), minlength=c * k)
    return flat.reshape(c, k)


def _counts(fn: str, counts: Any) -> torch.Tensor:
    _checks.check_tensor(fn, "counts", counts)
    if counts.dtype.is_floating_point or counts.dim() != 2 or counts.numel() == 0:
        raise ValueError(f"{fn}: counts must be a non-empty (C, K) integer tensor of group counts")
    if int(counts.min()) < 0:
        raise ValueError(f"{fn}: counts must be >= 0")
    return counts.long()


def balancing_budget(counts: torch.Tensor) -> torch.Tensor:
    """``(C, K)`` synthetic images per group that top every group up to the largest: USB's set.

    ``load_gen_data_balance``: ``to_add_g = max_g' n_g' - n_g``; ``num_gen = to_add.sum()``.
    """
    counts = _counts("balancing_budget", counts)
    return counts.max() - counts


def ffr_per_group(counts: torch.Tensor) -> int:
    """Synthetic images per group of FFR step 1 (and ASB): ``num_gen // G`` (same budget as USB)."""
    counts = _counts("ffr_per_group", counts)
    return int(balancing_budget(counts).sum()) // counts.numel()


def synthetic_plan(counts: torch.Tensor, *, mode: str = "ffr") -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels, bias)`` of the synthetic images to generate for ``mode``, group by group.

    Args:
        counts: ``(C, K)`` real group counts (:func:`group_counts`).
        mode: ``"ffr"`` (step 1) and ``"asb"``: ``num_gen // G`` per group; ``"usb"``: each group
            topped up to the largest (:func:`balancing_budget`).

    Returns:
        Two int64 tensors of equal length (groups in order ``(0, 0), (0, 1), ...``).
    """
    fn = "synthetic_plan"
    mode = _checks.check_choice(fn, "mode", mode, _MODES)
    counts = _counts(fn, counts)
    c, k = counts.shape
    if mode == "usb":
        per = balancing_budget(counts).reshape(-1)
    else:
        per = torch.full((c * k,), ffr_per_group(counts), dtype=torch.long)
    gid = torch.repeat_interleave(torch.arange(c * k), per)
    return gid // k, gid % k


def make_harder(
    labels: torch.Tensor,
    bias: torch.Tensor,
    *,
    minority_to_keep: float,
    min_keep: int = 10,
    num_biases: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices (sorted, int64) of the samples kept after cutting each class's minority group.

    Per class: ``max``/``min`` groups among its ``K`` groups (first in bias order on ties);
    ``to_keep = n_max (1 - r) / r``; nothing changes when ``to_keep > n_min``; else
    ``to_keep = max(to_keep, min_keep)`` and ``int(n_min - to_keep)`` random minority samples
    are removed (so ``ceil``-like ``n_min - int(n_min - to_keep)`` remain). A minority group
    smaller than ``min_keep`` is kept whole (the official code errors there).

    Args:
        labels: ``(N,)`` class ids.
        bias: ``(N,)`` bias ids.
        minority_to_keep: ``r`` in ``(0, 1)``; the paper uses 0.9-0.999.
        min_keep: the floor of the minority group (10 in the code).
        num_biases: ``K`` (default ``bias.max() + 1``).
        generator: draws which minority samples go.
    """
    fn = "make_harder"
    labels = _int_labels(fn, "labels", labels)
    bias = _int_labels(fn, "bias", bias, labels.shape[0])
    r = _checks.check_range(
        fn, "minority_to_keep", minority_to_keep, 0.0, 1.0, low_open=True, high_open=True
    )
    min_keep = _checks.check_int(fn, "min_keep", min_keep, min_value=0)
    _checks.check_generator(fn, generator, labels.device)
    c, k = _sizes(fn, labels, bias, None, num_biases)
    counts = group_counts(labels, bias, num_classes=c, num_biases=k)
    keep = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
    for cls in range(c):
        row = counts[cls].tolist()
        if labels.numel() == 0 or not bool((labels == cls).any()):
            continue
        n_max, n_min = max(row), min(row)
        b_min = row.index(n_min)
        to_keep = n_max * (1.0 - r) / r
        if to_keep > n_min:
            continue
        to_keep = max(to_keep, float(min_keep))
        remove = int(n_min - to_keep)
        if remove <= 0:
            continue
        idx = torch.nonzero((labels == cls) & (bias == b_min)).flatten()
        pick = torch.randperm(idx.numel(), generator=generator, device=idx.device)[:remove]
        keep[idx[pick]] = False
    return torch.nonzero(keep).flatten()


@dataclass(frozen=True)
class GroupStats:
    """Per-group accuracies: ``worst`` (min), ``balanced`` (mean) over non-empty groups.

    ``per_group`` is ``(C * K,)`` float64 with NaN for groups without samples; ``counts`` their
    sizes.
    """

    worst: float
    balanced: float
    per_group: torch.Tensor
    counts: torch.Tensor


def group_stats(
    *,
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    bias: torch.Tensor,
    num_classes: int | None = None,
    num_biases: int | None = None,
) -> GroupStats:
    """Worst-group and balanced accuracy (``compute_stats`` of the official ``utils.py``).

    Args:
        y_true: ``(N,)`` labels.
        y_pred: ``(N,)`` predicted labels or ``(N, C)`` scores (argmax taken).
        bias: ``(N,)`` bias ids.
        num_classes: ``C`` (default from the labels).
        num_biases: ``K`` (default from the bias).

    Example:
        >>> import torch
        >>> s = group_stats(y_true=torch.tensor([0, 0, 1, 1]), y_pred=torch.tensor([0, 1, 1, 1]),
        ...                 bias=torch.tensor([0, 1, 0, 1]))
        >>> s.worst, s.balanced
        (0.0, 0.75)
    """
    fn = "group_stats"
    y_true = _int_labels(fn, "y_true", y_true)
    _checks.check_tensor(fn, "y_pred", y_pred)
    if y_pred.dim() == 2:
        y_pred = y_pred.argmax(1)
    y_pred = _int_labels(fn, "y_pred", y_pred, y_true.shape[0])
    bias = _int_labels(fn, "bias", bias, y_true.shape[0])
    if y_true.numel() == 0:
        raise ValueError(f"{fn}: y_true must not be empty")
    c, k = _sizes(fn, y_true, bias, num_classes, num_biases)
    gid = (y_true * k + bias).long()
    n = torch.bincount(gid, minlength=c * k).double()
    hit = torch.bincount(gid, weights=(y_pred == y_true).double(), minlength=c * k)
    acc = torch.where(n > 0, hit / n.clamp_min(1), torch.full_like(n, math.nan))
    seen = acc[n > 0]
    return GroupStats(float(seen.min()), float(seen.mean()), acc.cpu(), n.long().cpu())


def erm_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> float:
    """One cross-entropy step on ``(x, y)``; returns the loss (the official ``train`` loop body)."""
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


#: ``select(model) -> score``: higher is better (the official code: real-val worst-group acc).
Selector = Callable[[nn.Module], float]


def _set_train(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def train_stage(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    freeze_bn: bool = False,
    select: Selector | None = None,
    generator: torch.Generator | None = None,
    progress: bool | ProgressCallback = False,
) -> nn.Module:
    """One FFR stage: Adam, shuffled mini-batches (last one partial), ``epochs`` passes.

    With ``select`` the state with the highest ``select(model)`` after an epoch is restored at
    the end (first best on ties), as the official scripts keep ``best_model_{seed}.pth``.
    Returns ``model`` (trained in place).
    """
    fn = "train_stage"
    _checks.check_float(fn, "x", x)
    y = _int_labels(fn, "y", y, x.shape[0])
    if x.shape[0] == 0:
        raise ValueError(f"{fn}: x must not be empty")
    epochs = _checks.check_int(fn, "epochs", epochs, min_value=0)
    batch_size = _checks.check_int(fn, "batch_size", batch_size, min_value=1)
    _checks.check_generator(fn, generator)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state = -math.inf, None
    n = x.shape[0]
    with tracker(progress, fn, epochs) as advance:
        for _ in range(epochs):
            _set_train(model, freeze_bn)
            dev = generator.device if generator is not None else x.device
            order = torch.randperm(n, generator=generator, device=dev).to(x.device)
            for part in order.split(batch_size):
                erm_step(model, opt, x[part], y[part])
            if select is not None:
                model.eval()
                with torch.no_grad():
                    score = float(select(model))
                if score > best:
                    best, best_state = score, copy.deepcopy(model.state_dict())
            advance(1)
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval()


class FakeToRealTrainer:
    """The two-stage FFR trainer: synthetic-only pretraining, then real-only fine-tuning.

    Stores validated hyperparameters (defaults: the official scripts' Adam settings; the
    epochs are the caller's budget); :meth:`fit` runs :func:`train_stage` twice on one model.
    The step-1 set must be synthetic only and group-balanced (:func:`synthetic_plan` with
    ``mode="ffr"``); step 2 sees only real data. The paper's step 2 may also be resampling,
    GroupDRO or DFR; this trainer runs the ERM variant (``train_erm_ffr_2.py``).

    Args:
        pretrain_epochs: epochs of step 1 (the code: 50).
        finetune_epochs: epochs of step 2 (the code: 50).
        batch_size: mini-batch size (the code: 128).
        pretrain_lr: step-1 Adam learning rate (1e-4).
        finetune_lr: step-2 Adam learning rate (1e-3).
        weight_decay: Adam weight decay of both steps (1e-5).
        freeze_bn: keep BatchNorm layers in eval mode during step 2 (``--freeze_bn``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> g = torch.Generator().manual_seed(0)
        >>> xs, ys = torch.randn(16, 4, generator=g), torch.arange(16) % 2
        >>> xr, yr = torch.randn(8, 4, generator=g), torch.arange(8) % 2
        >>> model = FakeToRealTrainer(pretrain_epochs=2, finetune_epochs=2).fit(
        ...     nn.Linear(4, 2), synthetic_x=xs, synthetic_y=ys, real_x=xr, real_y=yr, generator=g)
        >>> model(xr).shape
        torch.Size([8, 2])
    """

    def __init__(
        self,
        *,
        pretrain_epochs: int = 50,
        finetune_epochs: int = 50,
        batch_size: int = 128,
        pretrain_lr: float = 1e-4,
        finetune_lr: float = 1e-3,
        weight_decay: float = 1e-5,
        freeze_bn: bool = False,
    ) -> None:
        fn = "FakeToRealTrainer"
        self.pretrain_epochs = _checks.check_int(
            fn, "pretrain_epochs", pretrain_epochs, min_value=0
        )
        self.finetune_epochs = _checks.check_int(
            fn, "finetune_epochs", finetune_epochs, min_value=0
        )
        self.batch_size = _checks.check_int(fn, "batch_size", batch_size, min_value=1)
        self.pretrain_lr = _checks.check_positive(fn, "pretrain_lr", pretrain_lr)
        self.finetune_lr = _checks.check_positive(fn, "finetune_lr", finetune_lr)
        self.weight_decay = _checks.check_nonnegative(fn, "weight_decay", weight_decay)
        self.freeze_bn = _checks.check_bool(fn, "freeze_bn", freeze_bn)

    def fit(
        self,
        model: nn.Module,
        *,
        synthetic_x: torch.Tensor,
        synthetic_y: torch.Tensor,
        real_x: torch.Tensor,
        real_y: torch.Tensor,
        select: Selector | None = None,
        generator: torch.Generator | None = None,
        progress: bool | ProgressCallback = False,
    ) -> nn.Module:
        """Step 1 on the synthetic set, step 2 on the real set; returns ``model``.

        Args:
            model: the classifier (trained in place; returned in eval mode).
            synthetic_x: ``(S, ...)`` synthetic images only, balanced over groups.
            synthetic_y: ``(S,)`` their labels.
            real_x: ``(N, ...)`` real images only.
            real_y: ``(N,)`` their labels.
            select: optional ``select(model) -> score`` on **real** validation data (the
                paper: worst-group accuracy), used to pick each stage's best epoch.
            generator: draws the mini-batch order of both stages.
            progress: ``True`` for a tqdm bar or a ``(desc, done, total)`` callback.
        """
        fn = "FakeToRealTrainer.fit"
        if not isinstance(model, nn.Module):
            raise TypeError(f"{fn}: model must be an nn.Module; got {type(model).__name__}")
        _checks.check_float(fn, "synthetic_x", synthetic_x)
        _checks.check_float(fn, "real_x", real_x)
        if synthetic_x.shape[1:] != real_x.shape[1:]:
            raise ValueError(
                f"{fn}: synthetic_x and real_x must share the sample shape; got "
                f"{tuple(synthetic_x.shape[1:])} and {tuple(real_x.shape[1:])}"
            )
        check_progress(fn, progress)
        bs, wd = self.batch_size, self.weight_decay
        train_stage(
            model, synthetic_x, synthetic_y, epochs=self.pretrain_epochs, lr=self.pretrain_lr,
            batch_size=bs, weight_decay=wd, select=select, generator=generator,
            progress=progress,
        )  # fmt: skip
        return train_stage(
            model, real_x, real_y, epochs=self.finetune_epochs, lr=self.finetune_lr,
            batch_size=bs, weight_decay=wd, freeze_bn=self.freeze_bn, select=select,
            generator=generator, progress=progress,
        )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"FakeToRealTrainer(pretrain_epochs={self.pretrain_epochs}, "
            f"finetune_epochs={self.finetune_epochs}, batch_size={self.batch_size}, "
            f"pretrain_lr={self.pretrain_lr}, finetune_lr={self.finetune_lr}, "
            f"weight_decay={self.weight_decay}, freeze_bn={self.freeze_bn})"
        )
