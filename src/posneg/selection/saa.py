"""Sample Adaptive Augmentation (SAA): find "naive" unlabelled samples, augment them harder.

Gui, Zhao, Qi, Zhou, Wang, Shi. *Enhancing Sample Utilization through Sample Adaptive
Augmentation in Semi-Supervised Learning.* ICCV 2023, arXiv 2309.03598. Transcribed from the
official GuanGui-nju/SAA (commit e044aa6, ``datasets/dataset.py``: ``update_loss``,
``update_mask``, ``__getitem__``; ``models/fixmatch/fixmatch.py``):

1. every time an unlabelled sample i is drawn, its strong-view CE against the pseudo-label
   (recorded *before* the confidence mask, detached) updates ``H_i <- m H_i + (1 - m) l_i``
   with ``m = history_momentum = 0.001`` (:func:`update_loss_history`);
2. after each outer epoch (official: only once ``i > 400`` of 4096 epochs), Otsu's threshold
   ``t`` of all N histories (256 bins, skimage's ``threshold_otsu``) flags ``H_i < t`` naive
   and ``H_i > t`` not naive; ties keep their flag (:func:`update_naive_mask`). Never-drawn
   samples keep ``H = 0`` and are naive;
3. a naive sample's strong view is two independent RandAugment views A, B with B's left half
   (probability 1/2) or top half pasted over A (:func:`apply_saa_paste`); the others get A.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from posneg import _checks, _rng

__all__ = [
    "NaiveSampleTracker",
    "SAAPasteParams",
    "SampleAdaptiveAugmentation",
    "apply_saa_paste",
    "otsu_threshold",
    "saa_strong_views",
    "sample_saa_paste_params",
    "update_loss_history",
    "update_naive_mask",
]

CITATION = """
@inproceedings{gui2023saa,
  title     = {Enhancing Sample Utilization through Sample Adaptive Augmentation in
               Semi-Supervised Learning},
  author    = {Gui, Guan and Zhao, Zhen and Qi, Lei and Zhou, Luping and Wang, Lei and
               Shi, Yinghuan},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2023},
  eprint    = {2309.03598},
  archivePrefix = {arXiv}
}
"""

#: The official exponential-moving-average weight of the old history (``0.001 * H``).
HISTORY_MOMENTUM = 0.001
#: Histogram bins of Otsu's threshold (skimage's default).
OTSU_BINS = 256


def _check_history(fn: str, history: object) -> torch.Tensor:
    h = _checks.check_float(fn, "history", history)
    if h.dim() != 1 or h.shape[0] < 1:
        raise ValueError(f"{fn}: history must have shape (N,) with N >= 1; got {tuple(h.shape)}")
    return h


def otsu_threshold(values: torch.Tensor, *, bins: int = OTSU_BINS) -> torch.Tensor:
    """Otsu's threshold of a 1-D set of values, as ``skimage.filters.threshold_otsu``.

    A histogram of ``bins`` equal bins over ``[min, max]`` (numpy's: the last bin closed) and
    the bin centre ``c_k`` that maximises the between-class variance
    ``w1(k) w2(k+1) (mu1(k) - mu2(k+1))^2``, with ``w1, mu1`` the count and mean of bins
    ``0..k`` and ``w2, mu2`` of bins ``k+1..``; the first maximum wins. All values equal: that
    value. The threshold is a bin *centre*, so a value of the low class that lies above the
    centre of its bin is not below it (a quirk SAA inherits with ``H < t``).

    Args:
        values: (N,) floating tensor, N >= 1, finite.
        bins: >= 2.

    Returns:
        A 0-d tensor of ``values``' dtype and device.

    Example:
        >>> import torch
        >>> float(otsu_threshold(torch.tensor([0.0, 0.1, 0.9, 1.0]))) < 0.9
        True
    """
    fn = "otsu_threshold"
    v = _check_history(fn, values)
    _checks.check_finite(fn, "values", v)
    n_bins = _checks.check_int(fn, "bins", bins, min_value=2)
    lo, hi = v.min(), v.max()
    if bool(lo == hi):
        return lo.clone()
    work = v if v.dtype in (torch.float32, torch.float64) else v.float()
    edges = torch.linspace(float(lo), float(hi), n_bins + 1, dtype=torch.float64, device=v.device)
    edges = edges.to(work.dtype)
    idx = torch.bucketize(work, edges[1:-1], right=True)
    counts = torch.bincount(idx, minlength=n_bins).to(torch.float64)
    centers = ((edges[:-1] + edges[1:]) / 2.0).to(torch.float64)
    w1 = counts.cumsum(0)
    w2 = counts.flip(0).cumsum(0).flip(0)
    mass = counts * centers
    mu1 = mass.cumsum(0) / w1
    mu2 = (mass.flip(0).cumsum(0) / w2.flip(0)).flip(0)
    between = w1[:-1] * w2[1:] * (mu1[:-1] - mu2[1:]) ** 2
    between = torch.nan_to_num(between, nan=-1.0)  # empty leading bins: 0/0
    k = int(torch.argmax(between))
    return ((edges[k] + edges[k + 1]) / 2.0).to(v.dtype)


def update_loss_history(
    history: torch.Tensor,
    index: torch.Tensor,
    loss: torch.Tensor,
    *,
    momentum: float = HISTORY_MOMENTUM,
) -> torch.Tensor:
    """``H[index] <- momentum * H[index] + (1 - momentum) * loss`` (official ``update_loss``).

    The loss is detached. Returns a new tensor (``history`` is not modified). A sample drawn
    twice in one batch (sampling with replacement) takes its *last* occurrence's update, each
    computed from the old ``H`` (the official index assignment leaves this to the backend).

    Args:
        history: (N,) float loss history.
        index: (B,) int64 sample indices in [0, N).
        loss: (B,) per-sample strong-view CE, recorded before the confidence mask.
        momentum: weight of the old history in [0, 1] (0.001 officially; 0 keeps the last loss).

    Returns:
        (N,) updated history of ``history``'s dtype.

    Example:
        >>> import torch
        >>> i, l = torch.tensor([2]), torch.tensor([1.0])
        >>> h = update_loss_history(torch.zeros(3), i, l, momentum=0.0)
        >>> h.tolist()
        [0.0, 0.0, 1.0]
    """
    fn = "update_loss_history"
    h = _check_history(fn, history)
    m = _checks.check_range(fn, "momentum", momentum, 0.0, 1.0)
    _checks.check_tensor(fn, "index", index)
    if index.dtype != torch.int64 or index.dim() != 1:
        raise TypeError(
            f"{fn}: index must be a (B,) int64 tensor; got {index.dtype} {tuple(index.shape)}"
        )
    lv = _checks.check_float(fn, "loss", loss)
    if lv.shape != index.shape:
        raise ValueError(
            f"{fn}: loss must have shape {tuple(index.shape)} like index; got {tuple(lv.shape)}"
        )
    _checks.check_same_device(fn, "index", index, "history", h)
    _checks.check_same_device(fn, "loss", lv, "history", h)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= h.shape[0]):
        raise ValueError(f"{fn}: index values must be in [0, {h.shape[0]}); got {index.tolist()}")
    out = h.clone()
    if index.numel() == 0:
        return out
    new = m * h[index] + (1.0 - m) * lv.detach().to(h.dtype)
    pos = torch.arange(index.numel(), device=h.device)
    last = torch.full_like(h, -1, dtype=torch.int64).scatter_reduce(0, index, pos, reduce="amax")
    keep = last >= 0
    out[keep] = new[last[keep]]
    return out


def update_naive_mask(
    history: torch.Tensor, naive: torch.Tensor | None = None, *, bins: int = OTSU_BINS
) -> torch.Tensor:
    """Official ``update_mask``: ``t = otsu(H)``; ``H < t`` naive, ``H > t`` not, ties unchanged.

    Args:
        history: (N,) loss history (:func:`update_loss_history`).
        naive: (N,) bool previous flags (``None``: all False, the official start).
        bins: Otsu's histogram bins (256).

    Returns:
        (N,) bool flags, a new tensor.

    Example:
        >>> import torch
        >>> update_naive_mask(torch.tensor([0.0, 0.1, 2.0, 2.1])).tolist()
        [True, True, False, False]
    """
    fn = "update_naive_mask"
    h = _check_history(fn, history)
    if naive is None:
        prev = torch.zeros(h.shape, dtype=torch.bool, device=h.device)
    else:
        _checks.check_tensor(fn, "naive", naive)
        if naive.dtype != torch.bool or naive.shape != h.shape:
            raise ValueError(
                f"{fn}: naive must be a bool tensor of shape {tuple(h.shape)}; "
                f"got {naive.dtype} {tuple(naive.shape)}"
            )
        _checks.check_same_device(fn, "naive", naive, "history", h)
        prev = naive
    t = otsu_threshold(h, bins=bins)
    out = prev.clone()
    out[h < t] = True
    out[h > t] = False
    return out


@dataclass(frozen=True)
class SAAPasteParams:
    """One draw of SAA's paste direction.

    Attributes:
        left: (B,) bool: True pastes view B's left half (columns ``[0, W // 2)``), False its
            top half (rows ``[0, H // 2)``). Official: ``torch.rand(1) > 0.5`` means left.
    """

    left: torch.Tensor


def sample_saa_paste_params(
    batch: int,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> SAAPasteParams:
    """Draw each sample's paste direction: left half iff ``U(0, 1) > 0.5`` (official).

    Example:
        >>> sample_saa_paste_params(4, generator=torch.Generator().manual_seed(0)).left.shape
        torch.Size([4])
    """
    fn = "sample_saa_paste_params"
    b = _checks.check_int(fn, "batch", batch, min_value=0)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    _checks.check_generator(fn, generator, dev)
    return SAAPasteParams(left=_rng.uniform((b,), device=dev, generator=generator) > 0.5)


def _check_views(fn: str, view_a: object, view_b: object, naive: object) -> torch.Tensor:
    a = _checks.check_tensor(fn, "view_a", view_a)
    b = _checks.check_tensor(fn, "view_b", view_b)
    if a.dim() not in (2, 3, 4) or a.shape[0] < 0:
        raise ValueError(
            f"{fn}: view_a must be (B, L), (B, C, L) or (B, C, H, W); got {tuple(a.shape)}"
        )
    _checks.check_same_shape(fn, "view_b", b, "view_a", a)
    _checks.check_same_dtype(fn, "view_b", b, "view_a", a)
    _checks.check_same_device(fn, "view_b", b, "view_a", a)
    m = _checks.check_tensor(fn, "naive", naive)
    if m.dtype != torch.bool or m.shape != a.shape[:1]:
        raise ValueError(
            f"{fn}: naive must be a bool tensor of shape ({a.shape[0]},); "
            f"got {m.dtype} {tuple(m.shape)}"
        )
    _checks.check_same_device(fn, "naive", m, "view_a", a)
    return a


def apply_saa_paste(
    view_a: torch.Tensor, view_b: torch.Tensor, naive: torch.Tensor, params: SAAPasteParams
) -> torch.Tensor:
    """SAA's stronger view: naive samples get B's left or top half pasted over A; others get A.

    Images (B, C, H, W): left = columns ``[0, W // 2)``, top = rows ``[0, H // 2)`` (the
    official code uses ``int(W / 2)`` for both, the same on its square images). Sequences
    (B, L) or (B, C, L): both directions paste the first ``L // 2`` steps (the 1-D analogue).
    Deterministic.

    Args:
        view_a, view_b: two independently augmented views, same shape, dtype and device.
        naive: (B,) bool flags.
        params: from :func:`sample_saa_paste_params` with ``batch = B``.

    Returns:
        A new tensor shaped like ``view_a``.
    """
    fn = "apply_saa_paste"
    a = _check_views(fn, view_a, view_b, naive)
    if not isinstance(params, SAAPasteParams):
        raise TypeError(f"{fn}: params must be SAAPasteParams; got {type(params).__name__}")
    if params.left.shape != a.shape[:1]:
        raise ValueError(
            f"{fn}: params.left must have shape ({a.shape[0]},); got {tuple(params.left.shape)}"
        )
    out = a.clone()
    if a.dim() < 4:
        half = a.shape[-1] // 2
        region = torch.zeros(a.shape[-1], dtype=torch.bool, device=a.device)
        region[:half] = True
        sel = naive.view(-1, *([1] * (a.dim() - 1))) & region
    else:
        h, w = a.shape[-2:]
        cols = (torch.arange(w, device=a.device) < w // 2).view(1, 1, 1, w)
        rows = (torch.arange(h, device=a.device) < h // 2).view(1, 1, h, 1)
        left = params.left.to(a.device).view(-1, 1, 1, 1)
        sel = naive.view(-1, 1, 1, 1) & torch.where(left, cols, rows)
    return torch.where(sel, view_b, out)


Augment = Callable[..., torch.Tensor]


def saa_strong_views(
    x: torch.Tensor,
    naive: torch.Tensor,
    augment: Augment,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Strong views of a batch: ``augment(x)`` for all, with the SAA paste for naive samples.

    Draw order from ``generator``: view A of the whole batch, view B of the naive samples only
    (``augment(x[naive])``), then the paste directions of the whole batch. ``augment`` is any
    callable ``augment(x, generator=g)`` (e.g. :class:`posneg.augment.RandAugment`). With no
    naive sample the result is ``augment(x)`` exactly (FixMatch).

    Args:
        x: (B, ...) batch.
        naive: (B,) bool flags (:class:`NaiveSampleTracker`'s ``naive_[index]``).
        augment: the strong augmentation.
        generator: source of every draw.

    Returns:
        (B, ...) strong views.
    """
    fn = "saa_strong_views"
    _checks.check_tensor(fn, "x", x)
    _checks.check_generator(fn, generator, x.device)
    if not callable(augment):
        raise TypeError(f"{fn}: augment must be callable; got {type(augment).__name__}")
    view_a = augment(x, generator=generator)
    _check_views(fn, view_a, view_a, naive)
    if not bool(naive.any()):
        return view_a
    view_b = view_a.clone()
    view_b[naive] = augment(x[naive], generator=generator)
    params = sample_saa_paste_params(x.shape[0], device=x.device, generator=generator)
    return apply_saa_paste(view_a, view_b, naive, params)


class NaiveSampleTracker:
    """Per-sample loss history and naive flags of N unlabelled samples (SAA's bookkeeping).

    Fitted state: ``history_`` (N,) float64 loss history, ``naive_`` (N,) bool flags,
    ``n_updates_`` (N,) int64 times each sample was recorded, ``n_mask_updates_``.

    Args:
        num_samples: N >= 1.
        history_momentum: weight of the old history (official 0.001; paper unspecified).
        bins: Otsu's histogram bins (256).

    Example:
        >>> import torch
        >>> t = NaiveSampleTracker(4, history_momentum=0.0)
        >>> t.update(torch.tensor([0, 1, 2, 3]), torch.tensor([0.0, 0.1, 2.0, 2.1]))
        >>> t.update_mask().tolist()
        [True, True, False, False]
    """

    def __init__(
        self, num_samples: int, *, history_momentum: float = HISTORY_MOMENTUM, bins: int = OTSU_BINS
    ) -> None:
        fn = "NaiveSampleTracker"
        self.num_samples = _checks.check_int(fn, "num_samples", num_samples, min_value=1)
        self.history_momentum = _checks.check_range(
            fn, "history_momentum", history_momentum, 0.0, 1.0
        )
        self.bins = _checks.check_int(fn, "bins", bins, min_value=2)
        self.history_ = torch.zeros(self.num_samples, dtype=torch.float64)
        self.naive_ = torch.zeros(self.num_samples, dtype=torch.bool)
        self.n_updates_ = torch.zeros(self.num_samples, dtype=torch.int64)
        self.n_mask_updates_ = 0

    def update(self, index: torch.Tensor, loss: torch.Tensor) -> None:
        """Record the (unmasked) strong-view losses of the drawn samples ``index``."""
        idx = index.to(self.history_.device)
        self.history_ = update_loss_history(
            self.history_,
            idx,
            loss.detach().to(self.history_.device, torch.float64),
            momentum=self.history_momentum,
        )
        self.n_updates_.index_add_(0, idx, torch.ones_like(idx))

    def update_mask(self) -> torch.Tensor:
        """Re-flag naive samples with Otsu's threshold of the histories; returns ``naive_``."""
        self.naive_ = update_naive_mask(self.history_, self.naive_, bins=self.bins)
        self.n_mask_updates_ += 1
        return self.naive_

    def naive_fraction(self) -> float:
        """Share of samples flagged naive."""
        return float(self.naive_.double().mean())

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and fitted state (tensors cloned)."""
        return {
            "num_samples": self.num_samples,
            "history_momentum": self.history_momentum,
            "bins": self.bins,
            "history_": self.history_.clone(),
            "naive_": self.naive_.clone(),
            "n_updates_": self.n_updates_.clone(),
            "n_mask_updates_": self.n_mask_updates_,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (checked against ``num_samples``)."""
        fn = "NaiveSampleTracker.load_state_dict"
        if int(state["num_samples"]) != self.num_samples:
            raise ValueError(
                f"{fn}: state has num_samples={state['num_samples']}; "
                f"this tracker has {self.num_samples}"
            )
        self.history_momentum = float(state["history_momentum"])
        self.bins = int(state["bins"])
        self.history_ = state["history_"].clone().to(torch.float64)
        self.naive_ = state["naive_"].clone().to(torch.bool)
        self.n_updates_ = state["n_updates_"].clone().to(torch.int64)
        self.n_mask_updates_ = int(state["n_mask_updates_"])

    def __repr__(self) -> str:
        return (
            f"NaiveSampleTracker(num_samples={self.num_samples}, "
            f"history_momentum={self.history_momentum}, bins={self.bins})"
        )


class SampleAdaptiveAugmentation(nn.Module):
    """Module form of :func:`saa_strong_views`: stores the strong augmentation.

    Args:
        augment: an ``nn.Module`` called as ``augment(x, generator=g)`` (e.g.
            ``RandAugment(num_ops=3)``).

    Example:
        >>> import torch
        >>> from posneg.augment.randaugment import RandAugment
        >>> saa = SampleAdaptiveAugmentation(RandAugment(num_ops=3))
        >>> x = torch.rand(4, 1, 16, 16)
        >>> saa(x, torch.tensor([True, False, True, False])).shape
        torch.Size([4, 1, 16, 16])
    """

    def __init__(self, augment: nn.Module) -> None:
        super().__init__()
        if not isinstance(augment, nn.Module):
            raise TypeError(
                "SampleAdaptiveAugmentation: augment must be an nn.Module; "
                f"got {type(augment).__name__}"
            )
        self.augment = augment

    def forward(
        self, x: torch.Tensor, naive: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Strong views of ``x`` with naive samples pasted; see :func:`saa_strong_views`."""
        return saa_strong_views(x, naive, self.augment, generator=generator)
