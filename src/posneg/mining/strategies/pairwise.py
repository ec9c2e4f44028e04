"""The pairwise logistic (RankNet) loss that STAR, ADORE and DRhard's baselines all use.

For a query with a positive scored ``s_pos`` and a negative scored ``s_neg``::

    l = -log softmax([s_pos, s_neg])[0] = log(1 + exp(s_neg - s_pos)) = softplus(s_neg - s_pos)

This is a two-way softmax per pair, not a listwise InfoNCE over all negatives at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype
from posneg._types import Reduction
from posneg.mining.strategies._inputs import check_mask

__all__ = ["CITATION", "PairwiseLogisticLoss", "pairwise_logistic"]

CITATION = """
@inproceedings{zhan2021optimizing,
  title     = {Optimizing Dense Retrieval Model Training with Hard Negatives},
  author    = {Zhan, Jingtao and Mao, Jiaxin and Liu, Yiqun and Guo, Jiafeng and Zhang, Min and
               Ma, Shaoping},
  booktitle = {Proceedings of the 44th International ACM SIGIR Conference on Research and
               Development in Information Retrieval (SIGIR '21)},
  year      = {2021},
  note      = {arXiv:2104.08051}
}
"""


def pairwise_logistic(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Pairwise logistic loss ``softplus(neg_scores - pos_scores)`` per (positive, negative) pair.

    Zhan, Mao, Liu, Guo, Zhang, Ma. *Optimizing Dense Retrieval Model Training with Hard
    Negatives.* SIGIR 2021, arXiv 2104.08051 (the loss of DRhard's ``model.py``, written there as
    ``-log_softmax([s_pos, s_neg])[0]``; identical to ``softplus(s_neg - s_pos)``).

    ``pos_scores`` broadcasts against ``neg_scores``: (B,) against (B,) scores one pair per row;
    (B,) against (B, N) scores each row's positive against its N negatives (the positive is
    taken as a column).

    Args:
        pos_scores: (B,) scores of the positives.
        neg_scores: (B,) or (B, N) scores of the negatives, same dtype and device.
        valid: optional bool mask of ``neg_scores``' shape; False drops the pair (for example a
            "negative" that is in fact relevant). ``None``: every pair counts.
        reduction: "mean" (over the valid pairs), "sum" or "none".

    Returns:
        "mean"/"sum": a scalar; "none": the per-pair losses in ``neg_scores``' shape, 0 where
        ``valid`` is False. float16/bfloat16 inputs compute and return float32.
        With no valid pair, "mean" returns 0 (kept connected to the graph).

    Raises:
        TypeError: non-tensor or non-floating scores, mismatched dtypes, a non-bool mask.
        ValueError: shapes other than above, mismatched devices, a mask of another shape,
            a bad reduction.

    Example:
        >>> import torch
        >>> pos = torch.tensor([2.0, 0.0])
        >>> neg = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
        >>> pairwise_logistic(pos, neg, reduction="none")
        tensor([[0.3133, 0.6931],
                [0.6931, 0.3133]])
    """
    fn = "pairwise_logistic"
    _checks.check_float(fn, "pos_scores", pos_scores)
    _checks.check_float(fn, "neg_scores", neg_scores)
    _checks.check_same_device(fn, "neg_scores", neg_scores, "pos_scores", pos_scores)
    _checks.check_same_dtype(fn, "neg_scores", neg_scores, "pos_scores", pos_scores)
    _checks.check_reduction(fn, reduction)
    if pos_scores.dim() != 1:
        raise ValueError(f"{fn}: pos_scores must have shape (B,); got {tuple(pos_scores.shape)}")
    if neg_scores.dim() not in (1, 2) or neg_scores.shape[0] != pos_scores.shape[0]:
        raise ValueError(
            f"{fn}: neg_scores must have shape (B,) or (B, N) with B={pos_scores.shape[0]} "
            f"like pos_scores; got {tuple(neg_scores.shape)}"
        )
    dtype = compute_dtype(pos_scores)
    pos = pos_scores.to(dtype)
    neg = neg_scores.to(dtype)
    if neg.dim() == 2:
        pos = pos[:, None]
    loss = F.softplus(neg - pos)
    if valid is not None:
        check_mask(fn, "valid", valid, tuple(neg.shape), neg.device)
        loss = loss * valid.to(dtype)
        count = valid.sum()
    else:
        count = torch.tensor(loss.numel(), device=loss.device)
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / count.clamp_min(1).to(dtype)


class PairwiseLogisticLoss(nn.Module):
    """Module form of :func:`pairwise_logistic` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> PairwiseLogisticLoss()(torch.zeros(3), torch.zeros(3, 2))
        tensor(0.6931)
    """

    def __init__(self, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction: Reduction = _checks.check_reduction("PairwiseLogisticLoss", reduction)

    def forward(
        self,
        pos_scores: torch.Tensor,
        neg_scores: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of positive scores (B,) against negative scores (B,) or (B, N)."""
        return pairwise_logistic(pos_scores, neg_scores, valid=valid, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
