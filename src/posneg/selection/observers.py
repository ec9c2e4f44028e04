"""Segmentation with negative frames and multiple observer labels: label fusion, frame labels,
a classifier pre-screen and the frame-level / pixel-level metrics around it.

Chalcroft, Qu, Martin, Gayo, Minore, Singh, Saeed, Yang, Baum, Altmann, Hu. *Development and
evaluation of intraoperative ultrasound segmentation with negative image frames and multiple
observer labels.* ASMUS 2021 (MICCAI workshop), arXiv 2108.04114. Transcribed from the official
``liamchalcroft/RectAngle`` (commit 4859d9d): ``src/rectangle/utils/io.py`` (``H5DataLoader``,
``ClassifyDataLoader``, ``PreScreenLoader``), ``src/rectangle/utils/metrics.py`` (``DiceLoss``,
``Precision``, ``Recall``) and ``train.py`` (the threshold sweep).

Every frame has ``K`` observer masks (the paper: 3). The pieces:

1. label fusion at every fetch (:func:`fuse_observer_labels`): ``random`` (one observer drawn
   uniformly per frame), ``vote`` (``round(mean)``) or ``mean`` (the soft target);
2. the frame label (:func:`frame_labels`): a frame is positive iff at least ``min_observers``
   (code: 2 of 3) observers drew a non-empty mask; this is the pre-screen classifier's target;
3. the pre-screen gate (:func:`prescreen_gate`): segment only frames whose classifier
   probability is ``> theta``, with ``theta`` swept over ``linspace(0, 0.6, 20)``
   (:func:`prescreen_thresholds`);
4. metrics: frame-level FP / FN (:func:`frame_outcomes`) and per-frame Dice, precision, recall
   with the code's ``1e-7`` smoothing (:func:`segmentation_scores`);
5. the segmenter's loss, the soft Dice over the whole flattened batch (:func:`batch_soft_dice`),
   which is :func:`posneg.losses.dice.dice` in its set form with the code's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import nn

from posneg import _checks
from posneg.losses.dice import dice

__all__ = [
    "PRESCREEN_THRESHOLDS",
    "STRATEGIES",
    "FrameOutcomes",
    "FusionStrategy",
    "ObserverLabelFusion",
    "SegmentationScores",
    "batch_soft_dice",
    "draw_observers",
    "frame_labels",
    "frame_outcomes",
    "fuse_observer_labels",
    "prescreen_gate",
    "prescreen_thresholds",
    "segmentation_scores",
]

CITATION = """
@inproceedings{chalcroft2021negative,
  title     = {Development and Evaluation of Intraoperative Ultrasound Segmentation with
               Negative Image Frames and Multiple Observer Labels},
  author    = {Chalcroft, Liam F. and Qu, Jiongqi and Martin, Sophie A. and Gayo, Iani JMB and
               Minore, Giulio V. and Singh, Imraj RD and Saeed, Shaheer U. and Yang, Qianye and
               Baum, Zachary M. C. and Altmann, Andre and Hu, Yipeng},
  booktitle = {Simplifying Medical Ultrasound (ASMUS 2021), MICCAI Workshop, LNCS 12967},
  pages     = {25--34},
  year      = {2021},
  eprint    = {2108.04114},
  archivePrefix = {arXiv}
}
"""

FusionStrategy = Literal["random", "vote", "mean"]
#: The label strategies of ``H5DataLoader(label=...)``.
STRATEGIES: tuple[str, ...] = ("random", "vote", "mean")
#: The official smoothing constant of ``DiceLoss``, ``Precision`` and ``Recall``.
EPS = 1e-7
#: The official pre-screen sweep, ``np.linspace(0, 0.6, 20)`` in ``train.py``.
PRESCREEN_THRESHOLDS: tuple[float, ...] = tuple(0.6 * i / 19 for i in range(20))


def _check_labels(fn: str, labels: Any) -> torch.Tensor:
    _checks.check_tensor(fn, "labels", labels)
    if labels.is_complex():
        raise TypeError(f"{fn}: labels must be a real tensor; got {labels.dtype}")
    if labels.dim() < 2 or labels.shape[1] < 1:
        raise ValueError(
            f"{fn}: labels must have shape (N, K, *S) with K >= 1 observers; "
            f"got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point:
        _checks.check_finite(fn, "labels", labels)
    return labels


def _float(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype.is_floating_point else x.to(torch.float32)


def draw_observers(
    n: int,
    num_observers: int,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One observer index per frame, uniform on ``0..K-1`` (the code's ``random.randint(0, 2)``).

    Args:
        n: number of frames, >= 0.
        num_observers: ``K`` >= 1.
        device: where the indices live.
        generator: the only randomness (``None``: torch's global RNG).

    Returns:
        (n,) int64 observer indices.

    Example:
        >>> import torch
        >>> r = draw_observers(5, 3, generator=torch.Generator().manual_seed(0))
        >>> bool(((r >= 0) & (r < 3)).all())
        True
    """
    fn = "draw_observers"
    n = _checks.check_int(fn, "n", n, min_value=0)
    k = _checks.check_int(fn, "num_observers", num_observers, min_value=1)
    _checks.check_generator(fn, generator, torch.device(device) if device is not None else None)
    return torch.randint(k, (n,), device=device, generator=generator)


def fuse_observer_labels(
    labels: torch.Tensor,
    *,
    strategy: FusionStrategy = "vote",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fuse ``K`` observer masks per frame into one training target.

    Chalcroft et al., ASMUS 2021; ``H5DataLoader.__getitem__`` in the official ``io.py``. With
    ``L_1..L_K`` the masks of one frame:

    - ``random``: ``L_r`` with ``r ~ U{0..K-1}`` drawn anew for every frame at every call
      (every fetch; each epoch can see a different observer);
    - ``vote``: ``round(mean_k L_k)`` with torch's round, which rounds halves to even: for binary
      masks a pixel is 1 iff **more than half** of the observers marked it (``count > K/2``);
      an exact tie ``count = K/2`` (even ``K``) gives 0. For ``K = 3`` that is ">= 2 of 3";
    - ``mean``: ``mean_k L_k``, a soft target in ``{0, 1/K, ..., 1}`` for binary masks.

    The code uses ``vote`` for validation and test whatever the training strategy.

    Args:
        labels: (N, K, *S) observer masks (bool, integer or float; binary in the paper),
            observers on dimension 1.
        strategy: ``"random"``, ``"vote"`` (default, the evaluation target) or ``"mean"``.
        generator: draws of ``random`` (``None``: torch's global RNG); unused otherwise.

    Returns:
        (N, *S) target in ``labels``' dtype if floating, else float32.

    Raises:
        TypeError: non-tensor ``labels``, a bad ``generator``.
        ValueError: fewer than 2 dimensions, NaN/inf, unknown ``strategy``.

    Example:
        >>> import torch
        >>> a = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
        >>> masks = torch.stack([a, a, torch.zeros_like(a)], dim=1)  # (1, 3, 4)
        >>> fuse_observer_labels(masks, strategy="vote")
        tensor([[1., 1., 0., 0.]])
        >>> fuse_observer_labels(masks, strategy="mean")
        tensor([[0.6667, 0.6667, 0.0000, 0.0000]])
    """
    fn = "fuse_observer_labels"
    _checks.check_choice(fn, "strategy", strategy, STRATEGIES)
    labels = _check_labels(fn, labels)
    _checks.check_generator(fn, generator, labels.device)
    x = _float(labels)
    if strategy == "mean":
        return x.mean(dim=1)
    if strategy == "vote":
        return torch.round(x.mean(dim=1))
    r = draw_observers(x.shape[0], x.shape[1], device=x.device, generator=generator)
    return x[torch.arange(x.shape[0], device=x.device), r]


def frame_labels(labels: torch.Tensor, *, min_observers: int = 2) -> torch.Tensor:
    """The frame label: positive iff at least ``min_observers`` observers drew a non-empty mask.

    ``ClassifyDataLoader.__getitem__`` (official ``io.py``): ``sum(label_k != 0 over pixels)``
    per observer, then ``count(sums != 0) >= 2``. The only definition of a negative frame; the
    pre-screen classifier's target. ``min_observers = 1`` is "any observer", ``K`` is "all".

    Args:
        labels: (N, K, *S) observer masks.
        min_observers: 1 <= ``min_observers`` <= K (code: 2).

    Returns:
        (N,) bool, True for a positive frame.

    Raises:
        TypeError: non-tensor ``labels``, non-int ``min_observers``.
        ValueError: bad shape, NaN/inf, ``min_observers`` outside ``[1, K]``.

    Example:
        >>> import torch
        >>> m = torch.zeros(2, 3, 4)
        >>> m[0, :2, 0] = 1.0  # two observers mark frame 0
        >>> m[1, 0, 1] = 1.0  # one observer marks frame 1
        >>> frame_labels(m)
        tensor([ True, False])
    """
    fn = "frame_labels"
    labels = _check_labels(fn, labels)
    k = labels.shape[1]
    m = _checks.check_int(fn, "min_observers", min_observers, min_value=1)
    if m > k:
        raise ValueError(f"{fn}: min_observers must be <= K = {k} observers; got {m}")
    sums = _float(labels).reshape(labels.shape[0], k, -1).sum(dim=-1)
    return (sums != 0).sum(dim=1) >= m


def prescreen_thresholds(
    start: float = 0.0, stop: float = 0.6, num: int = 20, *, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The pre-screen threshold sweep, ``np.linspace(start, stop, num)`` (code: 0, 0.6, 20).

    Example:
        >>> t = prescreen_thresholds()
        >>> (len(t), float(t[0]), round(float(t[-1]), 6))
        (20, 0.0, 0.6)
    """
    fn = "prescreen_thresholds"
    a = _checks.check_real(fn, "start", start)
    b = _checks.check_real(fn, "stop", stop)
    n = _checks.check_int(fn, "num", num, min_value=1)
    return torch.linspace(a, b, n, dtype=dtype)


def prescreen_gate(probabilities: torch.Tensor, *, threshold: float) -> torch.Tensor:
    """Which frames the segmenter sees: classifier probability ``> threshold`` (strict).

    ``PreScreenLoader`` keeps a frame iff ``screen_pred.item() > self.threshold``. ``theta = 0``
    keeps every frame with a non-zero probability (the standalone segmenter); ``theta >= 1``
    keeps none. The official loader *rejection-samples* frames until one is accepted, so its
    test metrics cover accepted frames only; here the gate is a mask, and the screened-out
    frames are counted by :func:`frame_outcomes`.

    Args:
        probabilities: floating tensor of any shape, values in [0, 1].
        threshold: a finite real ``theta``.

    Returns:
        bool tensor of ``probabilities``' shape.

    Raises:
        TypeError: non-floating ``probabilities``, non-real ``threshold``.
        ValueError: NaN/inf or values outside [0, 1].

    Example:
        >>> import torch
        >>> prescreen_gate(torch.tensor([0.1, 0.5, 0.9]), threshold=0.5)
        tensor([False, False,  True])
    """
    fn = "prescreen_gate"
    p = _checks.check_float(fn, "probabilities", probabilities)
    _checks.check_finite(fn, "probabilities", p)
    t = _checks.check_real(fn, "threshold", threshold)
    if p.numel() and bool(((p < 0) | (p > 1)).any()):
        raise ValueError(
            f"{fn}: probabilities must be in [0, 1]; got values in "
            f"[{float(p.min())}, {float(p.max())}]"
        )
    return p > t


@dataclass(frozen=True)
class FrameOutcomes:
    """Frame-level confusion of a (gated) segmenter.

    A frame is *segmented* iff it was accepted by the gate and its prediction is non-empty.

    Attributes:
        segmented: (N,) bool.
        tp: positive frames segmented.
        fp: negative frames segmented (the paper's FP frames).
        fn: positive frames not segmented: screened out, or accepted with an empty prediction.
        tn: negative frames not segmented.
        screened_out_positives: positive frames the gate rejected (a subset of ``fn``).
    """

    segmented: torch.Tensor
    tp: int
    fp: int
    fn: int
    tn: int
    screened_out_positives: int


def frame_outcomes(
    predictions: torch.Tensor, positive: torch.Tensor, *, accepted: torch.Tensor | None = None
) -> FrameOutcomes:
    """Frame-level FP / FN of binary predictions, optionally behind a pre-screen gate.

    FP: a negative frame gets segmented (non-empty prediction, accepted); FN: a positive frame
    does not (screened out by the classifier, or segmented as empty).

    Args:
        predictions: (N, *S) binarised masks (bool or 0/1 numbers); non-zero is "marked".
        positive: (N,) bool frame labels (:func:`frame_labels`).
        accepted: (N,) bool gate (:func:`prescreen_gate`); ``None``: every frame.

    Returns:
        A :class:`FrameOutcomes`.

    Raises:
        TypeError: non-tensor or non-bool ``positive`` / ``accepted``.
        ValueError: shapes that disagree.

    Example:
        >>> import torch
        >>> pred = torch.tensor([[1, 0], [0, 0], [1, 1]])
        >>> out = frame_outcomes(pred, torch.tensor([True, True, False]))
        >>> (out.tp, out.fp, out.fn, out.tn)
        (1, 1, 1, 0)
    """
    fn = "frame_outcomes"
    _checks.check_tensor(fn, "predictions", predictions)
    if predictions.dim() < 1:
        raise ValueError(f"{fn}: predictions must have shape (N, *S); got ()")
    n = predictions.shape[0]
    pos = _check_mask(fn, "positive", positive, n, predictions.device)
    acc = (
        torch.ones_like(pos)
        if accepted is None
        else _check_mask(fn, "accepted", accepted, n, predictions.device)
    )
    marked = (predictions.reshape(n, -1) != 0).any(dim=1)
    seg = acc & marked
    return FrameOutcomes(
        segmented=seg,
        tp=int((pos & seg).sum()),
        fp=int((~pos & seg).sum()),
        fn=int((pos & ~seg).sum()),
        tn=int((~pos & ~seg).sum()),
        screened_out_positives=int((pos & ~acc).sum()),
    )


def _check_mask(fn: str, name: str, x: Any, n: int, device: torch.device) -> torch.Tensor:
    _checks.check_tensor(fn, name, x)
    if x.dtype != torch.bool:
        raise TypeError(f"{fn}: {name} must be a bool tensor; got {x.dtype}")
    if tuple(x.shape) != (n,):
        raise ValueError(f"{fn}: {name} must have shape ({n},); got {tuple(x.shape)}")
    if x.device != device:
        raise ValueError(f"{fn}: {name} is on {x.device} but predictions are on {device}")
    return x


@dataclass(frozen=True)
class SegmentationScores:
    """Per-frame scores, each (N,) in the input's floating dtype (float32 for others)."""

    dice: torch.Tensor
    precision: torch.Tensor
    recall: torch.Tensor


def segmentation_scores(
    predictions: torch.Tensor, target: torch.Tensor, *, eps: float = EPS
) -> SegmentationScores:
    """Per-frame Dice, precision and recall as the official ``metrics.py`` computes them.

    Per frame (the official test loader has batch size 1), with ``p`` the prediction (the code
    binarises at 0.5 and keeps the largest component first) and ``y`` the vote target::

        Dice      = (2 sum p y + eps) / (sum p + sum y + eps)        (1 - DiceLoss)
        precision = (TP + eps) / (TP + FP + eps),  TP = sum p y,  FP = #(p == 1 and y == 0)
        recall    = (TP + eps) / (TP + FN + eps),  FN = #(p == 0 and y == 1)

    Quirks kept: an empty prediction on an empty target scores 1 on all three (``eps / eps``);
    FP and FN count exact 0/1 entries only (soft values in between add to TP alone). The code's
    ``Recall`` names its FN count ``FP``; the value is recall.

    Args:
        predictions: (N, *S) predictions, binary in the code (bool, integer or float).
        target: (N, *S) targets of the same shape.
        eps: smoothing, > 0 (code: 1e-7).

    Returns:
        A :class:`SegmentationScores`.

    Raises:
        TypeError: non-tensor inputs, non-real ``eps``.
        ValueError: shapes that differ, no frame dimension, ``eps <= 0``.

    Example:
        >>> import torch
        >>> s = segmentation_scores(torch.tensor([[1, 1, 0, 0]]), torch.tensor([[1, 0, 0, 0]]))
        >>> round(float(s.dice[0]), 4), round(float(s.precision[0]), 4), float(s.recall[0])
        (0.6667, 0.5, 1.0)
    """
    fn = "segmentation_scores"
    _checks.check_tensor(fn, "predictions", predictions)
    _checks.check_tensor(fn, "target", target)
    _checks.check_same_shape(fn, "target", target, "predictions", predictions)
    _checks.check_same_device(fn, "target", target, "predictions", predictions)
    if predictions.dim() < 1:
        raise ValueError(f"{fn}: predictions must have shape (N, *S); got ()")
    e = _checks.check_positive(fn, "eps", eps)
    dtype = predictions.dtype if predictions.dtype.is_floating_point else torch.float32
    n = predictions.shape[0]
    p = predictions.reshape(n, -1).to(dtype)
    y = target.reshape(n, -1).to(dtype)
    tp = (p * y).sum(dim=1)
    fp = ((p == 1) & (y == 0)).sum(dim=1).to(dtype)
    fneg = ((p == 0) & (y == 1)).sum(dim=1).to(dtype)
    return SegmentationScores(
        dice=(2.0 * tp + e) / (p.sum(dim=1) + y.sum(dim=1) + e),
        precision=(tp + e) / (tp + fp + e),
        recall=(tp + e) / (tp + fneg + e),
    )


def batch_soft_dice(
    input: torch.Tensor, target: torch.Tensor, *, eps: float = EPS, from_logits: bool = False
) -> torch.Tensor:
    """The segmenter's loss: soft Dice over the **whole flattened batch** (official ``DiceLoss``).

    ``L = 1 - (2 sum p y + eps) / (sum p + sum y + eps)`` with every pixel of every frame in one
    sum, ``eps = 1e-7``, ``p`` the sigmoid output (the official U-Net ends in a sigmoid, so the
    default here takes probabilities). This is :func:`posneg.losses.dice.dice` with
    ``form="set", alpha=0, gamma=eps, square_denominator=False``; that function's *defaults*
    differ (per-instance form, ``alpha = 0.01``, ``gamma = 1``, squared denominator, logits),
    so this wrapper pins the code's configuration. On an all-negative batch the loss is about 1
    with a vanishing gradient ``eps / (sum p + eps)^2``: negative frames act mainly through
    ``sum p`` in the denominator of mixed batches.

    Args:
        input: probabilities in [0, 1] (or logits with ``from_logits=True``), any shape.
        target: same shape, values in [0, 1] (hard, vote, or the soft ``mean`` target).
        eps: smoothing, > 0 (code: 1e-7).
        from_logits: ``input`` holds logits.

    Returns:
        Scalar loss (float32 for half inputs, else ``input``'s dtype).

    Raises:
        TypeError, ValueError: as :func:`posneg.losses.dice.dice`, and ``eps <= 0``.

    Example:
        >>> import torch
        >>> y = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        >>> float(batch_soft_dice(y, y))
        0.0
    """
    fn = "batch_soft_dice"
    e = _checks.check_positive(fn, "eps", eps)
    _checks.check_float(fn, "input", input)
    _checks.check_tensor(fn, "target", target)
    _checks.check_same_shape(fn, "target", target, "input", input)
    return dice(
        input,
        target,
        alpha=0.0,
        gamma=e,
        form="set",
        square_denominator=False,
        from_logits=from_logits,
        reduction="mean",
    )


class ObserverLabelFusion(nn.Module):
    """Module form of :func:`fuse_observer_labels` (stateless; the strategy validated here).

    Args:
        strategy: ``"random"``, ``"vote"`` (default) or ``"mean"``.

    Example:
        >>> import torch
        >>> fuse = ObserverLabelFusion(strategy="random")
        >>> masks = (torch.rand(4, 3, 8, 8) > 0.5).float()
        >>> fuse(masks, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 8, 8])
    """

    def __init__(self, *, strategy: FusionStrategy = "vote") -> None:
        super().__init__()
        self.strategy = cast(
            FusionStrategy,
            _checks.check_choice("ObserverLabelFusion", "strategy", strategy, STRATEGIES),
        )

    def forward(
        self, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Fused (N, *S) target of (N, K, *S) observer masks."""
        return fuse_observer_labels(labels, strategy=self.strategy, generator=generator)

    def extra_repr(self) -> str:
        """Hyperparameters."""
        return f"strategy={self.strategy!r}"
