"""FixMatch's unlabelled loss: hard pseudo-labels from the weak view, CE on the strong view.

Sohn, Berthelot, Li, Zhang, Carlini, Cubuk, Kurakin, Zhang, Raffel. *FixMatch: Simplifying
Semi-Supervised Learning with Consistency and Confidence.* NeurIPS 2020, arXiv 2001.07685.
Behaviour as in TorchSSL's ``consistency_loss`` (hard labels), the base that
GuanGui-nju/SAA builds on (``models/fixmatch/model_utils.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._tiling import reduce_loss
from posneg._types import Reduction

__all__ = ["FixMatchLoss", "FixMatchTerms", "fixmatch_loss", "fixmatch_terms"]

CITATION = """
@inproceedings{sohn2020fixmatch,
  title     = {FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence},
  author    = {Sohn, Kihyuk and Berthelot, David and Li, Chun-Liang and Zhang, Zizhao and
               Carlini, Nicholas and Cubuk, Ekin D. and Kurakin, Alex and Zhang, Han and
               Raffel, Colin},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2020},
  eprint    = {2001.07685},
  archivePrefix = {arXiv}
}
"""


class FixMatchTerms(NamedTuple):
    """The parts of FixMatch's unlabelled loss, per sample.

    Attributes:
        pseudo_labels: (B,) int64 ``argmax softmax(logits_weak)``.
        mask: (B,) float 1 where ``max softmax(logits_weak) >= threshold``, else 0.
        ce: (B,) the strong-view cross-entropy against the pseudo-label, *before* masking
            (with gradient; ``ce.detach()`` is what SAA records for every sample).
    """

    pseudo_labels: torch.Tensor
    mask: torch.Tensor
    ce: torch.Tensor


def _check(fn: str, logits_weak: object, logits_strong: object, threshold: object) -> float:
    weak = _checks.check_embeddings(fn, "logits_weak", logits_weak)
    strong = _checks.check_embeddings(fn, "logits_strong", logits_strong)
    _checks.check_same_shape(fn, "logits_strong", strong, "logits_weak", weak)
    _checks.check_same_device(fn, "logits_strong", strong, "logits_weak", weak)
    _checks.check_same_dtype(fn, "logits_strong", strong, "logits_weak", weak)
    # A NaN in the weak view fails the confidence threshold and would be masked out silently.
    _checks.check_finite(fn, "logits_weak", weak)
    _checks.check_finite(fn, "logits_strong", strong)
    return _checks.check_range(fn, "threshold", threshold, 0.0, 1.0)


def fixmatch_terms(
    logits_weak: torch.Tensor, logits_strong: torch.Tensor, *, threshold: float = 0.95
) -> FixMatchTerms:
    """Pseudo-labels, confidence mask and unmasked strong-view CE of one unlabelled batch.

    See :func:`fixmatch_loss` for the formula; the weak logits are detached.

    Args:
        logits_weak: (B, K) logits of the weakly augmented views.
        logits_strong: (B, K) logits of the strongly augmented views of the same samples.
        threshold: confidence cut-off tau in [0, 1] (0.95 in FixMatch).

    Returns:
        :class:`FixMatchTerms`.

    Example:
        >>> import torch
        >>> t = fixmatch_terms(torch.tensor([[9.0, 0.0]]), torch.zeros(1, 2))
        >>> t.pseudo_labels.tolist(), t.mask.tolist()
        ([0], [1.0])
    """
    fn = "fixmatch_terms"
    tau = _check(fn, logits_weak, logits_strong, threshold)
    work = torch.float64 if logits_strong.dtype == torch.float64 else torch.float32
    probs = torch.softmax(logits_weak.detach().to(work), dim=-1)
    conf, labels = probs.max(dim=-1)
    mask = (conf >= tau).to(logits_strong.dtype)
    ce = F.cross_entropy(logits_strong.to(work), labels, reduction="none").to(logits_strong.dtype)
    return FixMatchTerms(pseudo_labels=labels, mask=mask, ce=ce)


def fixmatch_loss(
    logits_weak: torch.Tensor,
    logits_strong: torch.Tensor,
    *,
    threshold: float = 0.95,
    lambda_u: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """FixMatch's unlabelled loss ``lambda_u * mean_i 1[max p_i >= tau] * CE(s_i, argmax p_i)``.

    Sohn et al. *FixMatch.* NeurIPS 2020, arXiv 2001.07685. With ``p_i = softmax(w_i)`` of the
    weak logits (detached: no gradient flows through the pseudo-label) and ``s_i`` the strong
    logits::

        L_u = lambda_u / B * sum_i 1[max_k p_ik >= tau] * (-log softmax(s_i)[argmax_k p_ik])

    "mean" divides by all B samples, not by the number above the threshold (TorchSSL's
    ``masked_loss.mean()``, as in the paper's eq. 4). Hard labels only (FixMatch's default).
    The full objective is ``CE(labelled) + fixmatch_loss(...)``. Softmax and CE run in float32
    for half-precision inputs and are cast back.

    Args:
        logits_weak: (B, K) logits of the weak views.
        logits_strong: (B, K) logits of the strong views.
        threshold: tau in [0, 1] (0.95).
        lambda_u: weight of the unlabelled loss, >= 0 (1.0).
        reduction: "mean" | "sum" | "none" (per-sample masked, weighted loss (B,)).

    Returns:
        A scalar, or (B,) for "none".

    Raises:
        TypeError: non-tensor or non-floating logits, mismatched dtypes.
        ValueError: logits not (B, K) or of different shapes/devices, threshold outside [0, 1],
            negative lambda_u, bad reduction.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> w, s = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
        >>> fixmatch_loss(w * 20, s, threshold=0.95).shape
        torch.Size([])
    """
    fn = "fixmatch_loss"
    _check(fn, logits_weak, logits_strong, threshold)
    lam = _checks.check_nonnegative(fn, "lambda_u", lambda_u)
    red = _checks.check_reduction(fn, reduction)
    terms = fixmatch_terms(logits_weak, logits_strong, threshold=threshold)
    return reduce_loss(lam * terms.mask * terms.ce, red)


class FixMatchLoss(nn.Module):
    """Module form of :func:`fixmatch_loss` (stores ``threshold``, ``lambda_u``, ``reduction``).

    Example:
        >>> import torch
        >>> FixMatchLoss(threshold=0.9)(torch.randn(4, 3), torch.randn(4, 3)).shape
        torch.Size([])
    """

    def __init__(
        self, *, threshold: float = 0.95, lambda_u: float = 1.0, reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        fn = "FixMatchLoss"
        self.threshold = _checks.check_range(fn, "threshold", threshold, 0.0, 1.0)
        self.lambda_u = _checks.check_nonnegative(fn, "lambda_u", lambda_u)
        self.reduction: Reduction = _checks.check_reduction(fn, reduction)

    def forward(self, logits_weak: torch.Tensor, logits_strong: torch.Tensor) -> torch.Tensor:
        """The unlabelled loss of one batch; see :func:`fixmatch_loss`."""
        return fixmatch_loss(
            logits_weak,
            logits_strong,
            threshold=self.threshold,
            lambda_u=self.lambda_u,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, lambda_u={self.lambda_u}, reduction={self.reduction!r}"
