"""CET-style false-negative weights from a relevance and a selection (pooling) model.

**[paper, unverified]**: no public code was found and the method section could not be
retrieved; the formalisation below is the one in posneg's paper card, not a checked copy of the
paper's equations. Treat the exact form as a hyperparameter-free default that may differ from
the authors'.
"""

from __future__ import annotations

import torch

from posneg import _checks
from posneg._tiling import compute_dtype, reduce_loss
from posneg._types import Reduction

__all__ = ["CITATION", "cet_nll", "cet_weights"]

CITATION = """
@inproceedings{cai2022hard,
  title     = {Hard Negatives or False Negatives: Correcting Pooling Bias in Training Neural
               Ranking Models},
  author    = {Cai, Yinqiong and Guo, Jiafeng and Fan, Yixing and Ai, Qingyao and Zhang, Ruqing
               and Cheng, Xueqi},
  booktitle = {Proceedings of the 31st ACM International Conference on Information and
               Knowledge Management (CIKM '22)},
  year      = {2022},
  note      = {arXiv:2209.05072}
}
"""


def _check_probs(
    fn: str, relevance_prob: object, selection_prob: object
) -> tuple[torch.Tensor, torch.Tensor]:
    r = _checks.check_float(fn, "relevance_prob", relevance_prob)
    g = _checks.check_float(fn, "selection_prob", selection_prob)
    _checks.check_same_device(fn, "selection_prob", g, "relevance_prob", r)
    _checks.check_same_dtype(fn, "selection_prob", g, "relevance_prob", r)
    try:
        torch.broadcast_shapes(r.shape, g.shape)
    except RuntimeError:
        raise ValueError(
            f"{fn}: selection_prob of shape {tuple(g.shape)} does not broadcast with "
            f"relevance_prob of shape {tuple(r.shape)}"
        ) from None
    for name, x in (("relevance_prob", r), ("selection_prob", g)):
        if not bool(((x >= 0) & (x <= 1)).all()):
            raise ValueError(f"{fn}: {name} must hold probabilities in [0, 1] (no NaN)")
    return r, g


def cet_weights(relevance_prob: torch.Tensor, selection_prob: torch.Tensor) -> torch.Tensor:
    """Weight of an unlabelled candidate as a negative: ``P(non-relevant | unlabelled)``.

    Cai, Guo, Fan, Ai, Zhang, Cheng. *Hard Negatives or False Negatives: Correcting Pooling
    Bias in Training Neural Ranking Models.* CIKM 2022, arXiv 2209.05072. **[paper,
    unverified]**: the form follows posneg's paper card, not the authors' code (none found).

    A document is labelled positive only if it is relevant (``r = P(rel = 1 | q, d)``, the
    relevance model) *and* was selected into the annotation pool (``g = P(sel = 1 | q, d)``,
    the selection model), so ``P(labelled) = r g`` and, by Bayes::

        w = P(rel = 0 | unlabelled) = (1 - r) / (1 - r g)

    Down-weighting each sampled negative by ``w`` discounts probable false negatives: relevant
    documents the pool missed (high ``r``, low ``g``). With ``g = 1`` (every relevant document
    was pooled) ``w = 1`` for every ``r < 1`` and training is standard; the 0/0 case
    ``r = g = 1`` is defined as 1 (its limit along ``g = 1``). Gradients flow through both
    inputs; detach them to use the weights as fixed, as the alternating estimation does.

    Args:
        relevance_prob: ``r`` in [0, 1], any shape (e.g. (B, N) per sampled negative).
        selection_prob: ``g`` in [0, 1], broadcastable with ``relevance_prob``, same dtype.

    Returns:
        The weights in [0, 1], of the broadcast shape; float32 for half inputs.

    Raises:
        TypeError: non-floating inputs or mismatched dtypes.
        ValueError: values outside [0, 1] or NaN, shapes that do not broadcast, mismatched
            devices.

    Example:
        >>> import torch
        >>> r = torch.tensor([0.1, 0.9, 0.9])
        >>> g = torch.tensor([0.5, 0.1, 1.0])
        >>> cet_weights(r, g)
        tensor([0.9474, 0.1099, 1.0000])
    """
    r, g = _check_probs("cet_weights", relevance_prob, selection_prob)
    dtype = compute_dtype(r)
    r, g = r.to(dtype), g.to(dtype)
    den = 1 - r * g
    ok = den > 0
    return torch.where(ok, (1 - r) / torch.where(ok, den, torch.ones_like(den)), 1.0)


def cet_nll(
    relevance_prob: torch.Tensor,
    selection_prob: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float = 1e-7,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Negative log-likelihood of the observed labels under ``P(labelled) = r g``.

    Cai et al., CIKM 2022, arXiv 2209.05072 **[paper, unverified]** (posneg's card): an observed
    positive needs ``rel = 1`` and ``sel = 1``; an unlabelled document is non-relevant or
    relevant but unselected::

        nll = -[ y log(r g) + (1 - y) log(1 - r g) ]

    Fit the selection model by minimising this with ``r`` detached, then the relevance model
    with ``g`` detached (or its loss re-weighted by :func:`cet_weights`), alternating.

    Args:
        relevance_prob: ``r`` in [0, 1].
        selection_prob: ``g`` in [0, 1], broadcastable with ``r``.
        labels: 0/1 labels (bool or numeric) broadcastable with both (1 = labelled positive).
        eps: probabilities are clamped to [eps, 1 - eps] inside the logs, in (0, 0.5).
        reduction: "mean", "sum" or "none" (elementwise).

    Returns:
        The reduced loss; float32 for half inputs.

    Raises:
        TypeError / ValueError: as :func:`cet_weights`, plus labels not 0/1, a bad eps or
            reduction.

    Example:
        >>> import torch
        >>> cet_nll(torch.tensor([0.9, 0.5]), torch.tensor([1.0, 0.2]), torch.tensor([1, 0]))
        tensor(0.1054)
    """
    fn = "cet_nll"
    r, g = _check_probs(fn, relevance_prob, selection_prob)
    e = _checks.check_range(fn, "eps", eps, 0.0, 0.5, low_open=True, high_open=True)
    _checks.check_reduction(fn, reduction)
    y = _checks.check_tensor(fn, "labels", labels)
    _checks.check_same_device(fn, "labels", y, "relevance_prob", r)
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError(f"{fn}: labels must be 0 or 1")
    dtype = compute_dtype(r)
    p = (r.to(dtype) * g.to(dtype)).clamp(e, 1 - e)
    yy = y.to(dtype)
    loss = -(yy * torch.log(p) + (1 - yy) * torch.log1p(-p))
    return reduce_loss(loss, reduction)
