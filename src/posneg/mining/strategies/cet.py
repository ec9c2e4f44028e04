"""CET: coupled estimation of relevance and selection (pooling) bias, as its official code runs.

Cai, Guo, Fan, Ai, Zhang, Cheng. *Hard Negatives or False Negatives: Correcting Pooling Bias in
Training Neural Ranking Models.* CIKM 2022, arXiv 2209.05072. Official code:
``caiyinqiong/Coupled_Estimation_Technique`` at commit 8729d275c28b313f30c28b9423a59c1e3ae1b8b7,
``train.py`` (``train``: the coupled loop) and ``modeling.py`` (``Reranker`` = the relevance
model R, ``Observer`` = the selection model S, identical cross-encoders).

One training step on a batch of pairs ``(q, d+, d-)`` (the code's batch interleaves them:
rows ``0::2`` positives, ``1::2`` negatives, see :func:`split_pairs`):

1. both models in eval mode and without gradient score the pair's **negative only**, and each
   gives the *other* model its weight (``r`` = ``debias_ratio``)::

       w_R = 1 / (1 - sigmoid(s_S(q, d-) / r))      # R's weight, from S
       w_S = 1 / (1 - sigmoid(s_R(q, d-) / r))      # S's weight, from R

2. each model in train mode computes its per-pair CE ``softplus(s- - s+)`` (the code's
   ``CrossEntropyLoss([s+, s-], 0)``) and the weighted mean ``(1/P) sum_p w_p l_p``;
3. both backward, clip and step their own optimizer.

The weights are >= 1, neither normalised nor clipped (at ``r = 10`` they are about 2, so the
effective learning rate doubles). Positives are never reweighted.

``debias_ratio``: the code's argparse default is 2.0, the released training script
``ranker.sh`` passes 10.0. **posneg defaults to 10.0**, the value of the authors' runs.

The weight is computed as ``1 + exp(s / r)``, equal to ``1 / (1 - sigmoid(s / r))`` in exact
arithmetic; the code's form overflows to ``inf`` in float32 once ``sigmoid`` rounds to 1
(``s / r`` above about 17), ours only above about 88 (a test shows both).

Deprecated: :func:`cet_weights` and :func:`cet_nll`, an earlier formalisation from the paper
card (a Bayes posterior ``(1 - r)/(1 - r g)`` of probabilities, weights in [0, 1]), written
when no code had been found. They contradict the official code (its weights are >= 1 and come
from the other model's raw score) and warn with :class:`DeprecationWarning`; use
:func:`cet_weights_from_scores` and :func:`cet_losses`.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype, reduce_loss
from posneg._types import Reduction

__all__ = [
    "CITATION",
    "CETLoss",
    "CETLosses",
    "cet_losses",
    "cet_nll",
    "cet_pair_loss",
    "cet_weights",
    "cet_weights_from_scores",
    "split_pairs",
]

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

#: The released training script's value (``ranker.sh``); argparse's default is 2.0.
DEFAULT_DEBIAS_RATIO = 10.0


def _scores(fn: str, name: str, x: object, ref: torch.Tensor | None = None) -> torch.Tensor:
    t = _checks.check_float(fn, name, x)
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() != 1:
        raise ValueError(f"{fn}: {name} must have shape (P,) or (P, 1); got {tuple(t.shape)}")
    # An inf score would hide inside softplus (a zero loss) or the weights: refuse it.
    _checks.check_finite(fn, name, t)
    if ref is not None:
        _checks.check_same_device(fn, name, t, "pos_scores", ref)
        _checks.check_same_dtype(fn, name, t, "pos_scores", ref)
        if t.shape != ref.shape:
            raise ValueError(
                f"{fn}: {name} must have shape {tuple(ref.shape)} like pos_scores; "
                f"got {tuple(t.shape)}"
            )
    return t


def split_pairs(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The code's interleaved batch to (positive, negative) scores: rows ``0::2`` and ``1::2``.

    ``modeling.py`` scores a batch ``[d1+, d1-, d2+, d2-, ...]`` (a ``SequentialSampler`` keeps
    each pair together) and forms ``cat(score[0::2], score[1::2])``.

    Args:
        scores: (2P,) or (2P, 1) scores, positive first in every pair.

    Returns:
        ``(pos, neg)``, each (P,).

    Raises:
        TypeError: non-floating scores.
        ValueError: an odd or empty batch, another shape.

    Example:
        >>> import torch
        >>> split_pairs(torch.tensor([[3.0], [1.0], [2.0], [0.0]]))
        (tensor([3., 2.]), tensor([1., 0.]))
    """
    s = _scores("split_pairs", "scores", scores)
    if s.shape[0] == 0 or s.shape[0] % 2:
        raise ValueError(f"split_pairs: scores needs an even, non-zero length; got {s.shape[0]}")
    return s[0::2], s[1::2]


def cet_weights_from_scores(
    neg_scores: torch.Tensor, *, debias_ratio: float = DEFAULT_DEBIAS_RATIO
) -> torch.Tensor:
    """CET's pair weight ``1 / (1 - sigmoid(s / r))`` from the OTHER model's negative score.

    ``train.py``: ``1.0 / (1.0 - F.sigmoid(score[:, 1] / args.debias_ratio))`` under
    ``torch.no_grad()`` with the scoring model in eval mode. Computed as ``1 + exp(s / r)``
    (the same number; finite for far larger scores) and always detached.

    Args:
        neg_scores: (P,) or (P, 1) scores of the pairs' negatives by the other model.
        debias_ratio: ``r`` > 0 (default 10.0, ``ranker.sh``; argparse's default is 2.0).

    Returns:
        (P,) weights >= 1, detached, float32 for half inputs.

    Raises:
        TypeError: non-floating scores.
        ValueError: another shape, a non-positive or non-finite ``debias_ratio``.

    Example:
        >>> import torch
        >>> cet_weights_from_scores(torch.tensor([0.0, 10.0, -10.0]), debias_ratio=10.0)
        tensor([2.0000, 3.7183, 1.3679])
    """
    fn = "cet_weights_from_scores"
    s = _scores(fn, "neg_scores", neg_scores)
    r = _checks.check_positive(fn, "debias_ratio", debias_ratio)
    s = s.detach().to(compute_dtype(s))
    return 1 + torch.exp(s / r)


def cet_pair_loss(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Weighted pairwise CE ``(1/P) sum_p w_p softplus(s-_p - s+_p)`` (``modeling.py``'s loss).

    ``CrossEntropyLoss(cat(s+, s-), 0)`` per pair is ``softplus(s- - s+)``; the code's
    ``torch.dot(weight, loss) / (batch_size // 2)`` is a weighted *mean* over the P pairs, not
    normalised by the weights' sum. ``weights=None`` is the code's ``loss_origin`` (all ones;
    the code's own ``None`` path builds int64 ones that ``torch.dot`` would reject).

    Args:
        pos_scores: (P,) or (P, 1) scores of the positives.
        neg_scores: the negatives' scores, same shape, dtype and device.
        weights: optional (P,) weights (detached by the caller; gradients would flow through
            them otherwise).
        reduction: "mean" (the code's), "sum" or "none" (the weighted per-pair losses).

    Returns:
        The loss; float32 for half inputs.

    Raises:
        TypeError: non-floating inputs, mismatched dtypes.
        ValueError: mismatched shapes or devices, a bad reduction.

    Example:
        >>> import torch
        >>> pos, neg = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
        >>> cet_pair_loss(pos, neg, torch.tensor([2.0, 1.0]))
        tensor(0.6598)
    """
    fn = "cet_pair_loss"
    pos = _scores(fn, "pos_scores", pos_scores)
    neg = _scores(fn, "neg_scores", neg_scores, pos)
    _checks.check_reduction(fn, reduction)
    dtype = compute_dtype(pos)
    loss = F.softplus(neg.to(dtype) - pos.to(dtype))
    if weights is not None:
        w = _checks.check_float(fn, "weights", weights)
        _checks.check_same_device(fn, "weights", w, "pos_scores", pos)
        if w.shape != pos.shape:
            raise ValueError(
                f"{fn}: weights must have shape {tuple(pos.shape)}; got {tuple(w.shape)}"
            )
        loss = loss * w.to(dtype)
    return reduce_loss(loss, reduction)


class CETLosses(NamedTuple):
    """The two losses of one CET step and the weights each was given."""

    relevance: torch.Tensor
    selection: torch.Tensor
    relevance_weights: torch.Tensor
    selection_weights: torch.Tensor


def cet_losses(
    *,
    rel_pos: torch.Tensor,
    rel_neg: torch.Tensor,
    sel_pos: torch.Tensor,
    sel_neg: torch.Tensor,
    rel_neg_eval: torch.Tensor | None = None,
    sel_neg_eval: torch.Tensor | None = None,
    debias_ratio: float = DEFAULT_DEBIAS_RATIO,
) -> CETLosses:
    """Both losses of one coupled-estimation step (``train.py``'s loop body, no optimiser).

    Args:
        rel_pos, rel_neg: (P,) scores of the pairs' positives and negatives by the relevance
            model R in train mode (with gradient).
        sel_pos, sel_neg: the same by the selection model S.
        rel_neg_eval, sel_neg_eval: the negatives' scores by R and S in **eval mode** (the code
            rescores with dropout off under no_grad); ``None``: the train-mode scores,
            detached (the same for models without dropout).
        debias_ratio: ``r`` of :func:`cet_weights_from_scores` (default 10.0).

    Returns:
        :class:`CETLosses`: ``relevance = cet_pair_loss(rel_pos, rel_neg, w_R)`` with
        ``w_R`` from S's negative scores, ``selection`` likewise with ``w_S`` from R's, and
        both weight vectors. The weights are detached, so ``relevance + selection``
        backpropagates each loss into its own model only.

    Raises:
        TypeError / ValueError: as :func:`cet_pair_loss` and :func:`cet_weights_from_scores`.

    Example:
        >>> import torch
        >>> z = torch.zeros(2)
        >>> out = cet_losses(rel_pos=z, rel_neg=z, sel_pos=z, sel_neg=z)
        >>> out.relevance, out.relevance_weights
        (tensor(1.3863), tensor([2., 2.]))
    """
    fn = "cet_losses"
    rp = _scores(fn, "rel_pos", rel_pos)
    sp = _scores(fn, "sel_pos", sel_pos)
    _scores(fn, "rel_neg", rel_neg, rp)
    _scores(fn, "sel_neg", sel_neg, rp)
    _scores(fn, "sel_pos", sp, rp)
    r_eval = rel_neg if rel_neg_eval is None else _scores(fn, "rel_neg_eval", rel_neg_eval, rp)
    s_eval = sel_neg if sel_neg_eval is None else _scores(fn, "sel_neg_eval", sel_neg_eval, rp)
    w_r = cet_weights_from_scores(s_eval, debias_ratio=debias_ratio)
    w_s = cet_weights_from_scores(r_eval, debias_ratio=debias_ratio)
    return CETLosses(
        relevance=cet_pair_loss(rel_pos, rel_neg, w_r),
        selection=cet_pair_loss(sel_pos, sel_neg, w_s),
        relevance_weights=w_r,
        selection_weights=w_s,
    )


class CETLoss(nn.Module):
    """Module form of :func:`cet_losses`: returns ``relevance + selection`` (stateless).

    The weights are detached, so one ``backward`` of the sum gives R the gradient of its own
    weighted loss and S of its own, as the code's two ``backward`` calls do. Use
    :func:`cet_losses` to log the two losses apart.

    Example:
        >>> import torch
        >>> z = torch.zeros(2)
        >>> CETLoss(debias_ratio=2.0)(z, z, z, z)
        tensor(2.7726)
    """

    def __init__(self, *, debias_ratio: float = DEFAULT_DEBIAS_RATIO) -> None:
        super().__init__()
        self.debias_ratio = _checks.check_positive("CETLoss", "debias_ratio", debias_ratio)

    def forward(
        self,
        rel_pos: torch.Tensor,
        rel_neg: torch.Tensor,
        sel_pos: torch.Tensor,
        sel_neg: torch.Tensor,
        rel_neg_eval: torch.Tensor | None = None,
        sel_neg_eval: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sum of both models' weighted losses for (P,) scores (see :func:`cet_losses`)."""
        out = cet_losses(
            rel_pos=rel_pos,
            rel_neg=rel_neg,
            sel_pos=sel_pos,
            sel_neg=sel_neg,
            rel_neg_eval=rel_neg_eval,
            sel_neg_eval=sel_neg_eval,
            debias_ratio=self.debias_ratio,
        )
        return out.relevance + out.selection

    def extra_repr(self) -> str:
        return f"debias_ratio={self.debias_ratio}"


# ---------------------------------------------------------------------------------------------
# deprecated: the earlier card formalisation (contradicts the official code)
# ---------------------------------------------------------------------------------------------


def _deprecated(name: str) -> None:
    warnings.warn(
        f"{name} is deprecated: it follows an earlier unverified formalisation (a Bayes "
        "posterior of probabilities, weights in [0, 1]) that contradicts CET's official code; "
        "use cet_weights_from_scores / cet_losses / CETLoss",
        DeprecationWarning,
        stacklevel=3,
    )


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
    """**Deprecated**: weight ``P(non-relevant | unlabelled)`` (contradicts the official code).

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
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     print(cet_weights(r, g))
        tensor([0.9474, 0.1099, 1.0000])
    """
    _deprecated("cet_weights")
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
    """**Deprecated**: NLL of the labels under ``P(labelled) = r g`` (contradicts the code).

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
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     r, g = torch.tensor([0.9, 0.5]), torch.tensor([1.0, 0.2])
        ...     print(cet_nll(r, g, torch.tensor([1, 0])))
        tensor(0.1054)
    """
    _deprecated("cet_nll")
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
