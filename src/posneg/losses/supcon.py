"""Supervised contrastive loss (SupCon, the L_out form of Khosla et al., 2020)."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._lse import row_logsumexp
from posneg._tiling import compute_dtype
from posneg._types import Reduction

__all__ = ["CITATION", "NoPositive", "SupConLoss", "supcon", "supcon_has_positive"]

CITATION = """
@inproceedings{khosla2020supervised,
  title     = {Supervised Contrastive Learning},
  author    = {Khosla, Prannay and Teterwak, Piotr and Wang, Chen and Sarna, Aaron and
               Tian, Yonglong and Isola, Phillip and Maschinot, Aaron and Liu, Ce and
               Krishnan, Dilip},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume    = {33},
  pages     = {18661--18673},
  year      = {2020},
  eprint    = {2004.11362},
  archivePrefix = {arXiv}
}
"""

NoPositive = Literal["exclude", "zero", "error"]
_NO_POSITIVE: tuple[str, ...] = ("exclude", "zero", "error")


def supcon_has_positive(labels: torch.Tensor) -> torch.Tensor:
    """Which anchors have at least one positive: a bool (N,) mask, True where the label repeats.

    This is the mask of anchors that :func:`supcon` counts; with ``reduction="none"`` the
    other entries are NaN. Costs O(N log N) (a sort of the labels), never an N x N tensor.
    """
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    return counts[inverse] > 1


def supcon(
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 0.1,
    normalize: bool = True,
    no_positive: NoPositive = "exclude",
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""Supervised contrastive loss: every same-label sample is a positive of the anchor.

    Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu, Krishnan. *Supervised
    Contrastive Learning*. NeurIPS 2020, arXiv 2004.11362. This is the paper's
    :math:`\mathcal{L}^{sup}_{out}` (Eq. 2), the mean over positives taken *outside* the log:

    .. math::

        \ell_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)}
            \log \frac{\exp(z_i \cdot z_p / \mathrm{temperature})}
                      {\sum_{a \in A(i)} \exp(z_i \cdot z_a / \mathrm{temperature})}
               = \operatorname{logsumexp}_{a \in A(i)} \frac{z_i \cdot z_a}{\mathrm{temperature}}
                 - \frac{1}{|P(i)|} \sum_{p \in P(i)} \frac{z_i \cdot z_p}{\mathrm{temperature}}

    with ``z = features`` (L2-normalised when ``normalize``), :math:`A(i)` every sample but
    ``i`` (positives included in the denominator, as in the paper) and :math:`P(i)` the samples
    other than ``i`` with ``labels[i]``. Several views of one image enter as separate rows with
    the same label (``torch.cat([z1, z2])`` with ``torch.cat([y, y])``), which is the paper's
    multiview batch. The paper sums over anchors; ``reduction="mean"`` divides by the number of
    counted anchors (see ``no_positive``). The reference code's extra factor
    ``temperature / base_temperature`` (1 at its defaults) is not applied, as in the paper and
    in pytorch-metric-learning.

    Anchors without a positive (a label that occurs once in the batch) have no :math:`\ell_i`:
    the paper's formula divides by :math:`|P(i)| = 0`. Here:

    - ``no_positive="exclude"`` (default): such anchors are dropped; ``"mean"`` averages over
      the anchors that have a positive, ``"sum"`` sums over them, ``"none"`` returns NaN in
      their entries (``supcon_has_positive(labels)`` is the mask of finite entries; the NaN is
      put in with ``torch.where`` so the finite entries backpropagate cleanly). They still act as
      negatives (denominator terms) of the other anchors. If *no* anchor has a positive,
      ``"mean"`` and ``"sum"`` return a zero that stays connected to ``features``' graph (zero
      gradient) and a ``UserWarning`` is issued; ``"none"`` returns all NaN with the warning.
      This equals pytorch-metric-learning's ``SupConLoss`` with its default
      ``AvgNonZeroReducer``.
    - ``no_positive="zero"``: the reference code's behaviour (HobbitLong/SupContrast,
      ``losses.py``, commit 66a8fe5: ``mask_pos_pairs`` is set to 1 where an anchor has no
      positive, so its ``mean_log_prob_pos`` is 0, and the final ``.mean()`` runs over all
      anchors). Such anchors count as 0 and ``"mean"`` divides by all N anchors; ``"none"`` has
      0 in their entries; ``"sum"`` equals the ``"exclude"`` sum. A batch with no positive at
      all gives a connected 0 without a warning (the value is defined by this convention).
      With labels ``[0, 1, 1, 2]`` the ``"zero"`` mean is exactly half the ``"exclude"`` mean.
    - ``no_positive="error"``: raise ``ValueError`` when any anchor lacks a positive.

    Why ``"exclude"`` is the default: an anchor without a positive carries no supervised signal,
    and averaging zeros in makes the loss's scale (and the effective learning rate) depend on how
    many singleton labels a batch happens to hold; excluding them keeps every counted term the
    paper's :math:`\ell_i`. It is also the behaviour posneg has always had, so results for the
    same seeds are unchanged. Choose ``"zero"`` to reproduce numbers from the reference code.

    Every mode reads the label counts on the host (one small device sync).

    Unlike pytorch-metric-learning, a batch whose samples all share one label is not set to 0:
    the formula is defined there (every other sample is a positive and in the denominator) and
    is returned as such.

    The score matrix is never part of the contract: the denominator is a row log-sum-exp
    (:func:`posneg._lse.row_logsumexp`, scores computed one row tile at a time with a custom
    backward that recomputes each tile once), and the positive sum is a dot product with the sum
    of the anchor's class, :math:`\sum_{p \in P(i)} z_i \cdot z_p = z_i \cdot (\sum_{y_c =
    y_i} z_c - z_i)`, so memory is O(N * D + chunk_size * N) and every operation is
    deterministic.

    Args:
        features: (N, D) embeddings, N >= 2. float16/bfloat16 are computed in float32.
        labels: (N,) integer class labels on ``features``' device.
        temperature: softmax temperature, > 0.
        normalize: L2-normalise ``features`` first (cosine similarity), as the paper does.
        no_positive: ``"exclude"`` (default), ``"zero"`` (the reference code) or ``"error"``;
            see above.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        chunk_size: anchor rows per block; ``None`` picks a block within the default budget.

    Returns:
        ``"mean"``/``"sum"``: a scalar (float32 for half inputs, else ``features``' dtype).
        ``"none"``: (N,) per-anchor losses; for anchors without a positive NaN
        (``"exclude"``) or 0 (``"zero"``).

    Raises:
        TypeError: ``features`` not a floating tensor, ``labels`` not an integer tensor, or a
            hyperparameter of the wrong type.
        ValueError: wrong shapes, N < 2, labels of the wrong length or on another device,
            non-finite features, ``temperature <= 0``, an unknown ``no_positive`` or
            ``reduction``, or ``no_positive="error"`` with an anchor that has no positive.

    Example:
        >>> import torch
        >>> from posneg.losses import supcon
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(8, 16, generator=g)
        >>> y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> loss = supcon(z, y, temperature=0.1)
        >>> loss.shape, bool(loss > 0)
        (torch.Size([]), True)
        >>> y_single = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])  # labels 3 and 4 occur once
        >>> supcon(z, y_single, reduction="none")[-2:].isnan().tolist()
        [True, True]
        >>> bool(supcon(z, y_single, no_positive="zero") < supcon(z, y_single))  # 6 of 8 anchors
        True
    """
    fn = "supcon"
    _checks.check_embeddings(fn, "features", features, min_rows=2)
    n = int(features.shape[0])
    _checks.check_labels(fn, "labels", labels, n, features.device)
    temperature = _checks.check_positive(fn, "temperature", temperature)
    _checks.check_choice(fn, "no_positive", no_positive, _NO_POSITIVE)
    _checks.check_bool(fn, "normalize", normalize)
    reduction = _checks.check_reduction(fn, reduction)
    _checks.check_chunk_size(fn, chunk_size)
    _checks.check_finite(fn, "features", features)

    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    n_pos = counts[inverse] - 1
    has_pos = n_pos > 0
    n_valid = int(has_pos.sum())
    if no_positive == "error" and n_valid < n:
        raise ValueError(
            f"{fn}: every anchor must have a positive (a label that occurs at least twice) "
            f"with no_positive='error'; got {n - n_valid} of {n} anchors without one "
            "(pass no_positive='exclude' to drop them)"
        )

    z = features.to(compute_dtype(features))
    if normalize:
        z = F.normalize(z, dim=1)
    inv_t = 1.0 / temperature

    # every anchor counted with the same weight when all have a positive (a "mean" or "sum")
    uniform = reduction != "none" and n_valid == n
    log_denominator = row_logsumexp(
        z, z, scale=inv_t, exclude_offsets=(0,), chunk_size=chunk_size, uniform_grad=uniform
    )
    # sum of the positives' embeddings: the anchor's class sum minus the anchor (O(N * D))
    class_sum = torch.zeros(counts.shape[0], z.shape[1], dtype=z.dtype, device=z.device)
    positives = class_sum.index_add(0, inverse, z)[inverse] - z
    positive_sum = (z * positives).sum(dim=1) * inv_t
    per_anchor = log_denominator - positive_sum / n_pos.clamp_min(1).to(z.dtype)

    if n_valid == 0 and no_positive == "exclude":
        warnings.warn(
            f"{fn}: no anchor has a positive (every label occurs once in a batch of {n}); "
            "the loss is undefined: returning a zero connected to the graph "
            "(NaN per anchor for reduction='none')",
            UserWarning,
            stacklevel=2,
        )
    fill = 0.0 if no_positive == "zero" else float("nan")
    if reduction == "none":
        return torch.where(has_pos, per_anchor, torch.full_like(per_anchor, fill))
    total = torch.where(has_pos, per_anchor, torch.zeros_like(per_anchor)).sum()
    if reduction == "sum" or n_valid == 0:
        return total
    return total / (n if no_positive == "zero" else n_valid)


class SupConLoss(nn.Module):
    """Module form of :func:`supcon` (Khosla et al., NeurIPS 2020, arXiv 2004.11362).

    Stores validated hyperparameters; ``forward(features, labels)`` calls :func:`supcon`.
    See :func:`supcon` for the formula and for anchors that have no positive.

    Example:
        >>> import torch
        >>> loss_fn = SupConLoss(temperature=0.07)
        >>> z = torch.randn(6, 8)
        >>> loss_fn(z, torch.tensor([0, 1, 2, 0, 1, 2])).dim()
        0
    """

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        normalize: bool = True,
        no_positive: NoPositive = "exclude",
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        fn = "SupConLoss"
        self.temperature = _checks.check_positive(fn, "temperature", temperature)
        self.normalize = _checks.check_bool(fn, "normalize", normalize)
        _checks.check_choice(fn, "no_positive", no_positive, _NO_POSITIVE)
        self.no_positive: NoPositive = no_positive
        self.reduction: Reduction = _checks.check_reduction(fn, reduction)
        self.chunk_size = _checks.check_chunk_size(fn, chunk_size)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of ``features`` (N, D) with integer ``labels`` (N,)."""
        return supcon(
            features,
            labels,
            temperature=self.temperature,
            normalize=self.normalize,
            no_positive=self.no_positive,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, normalize={self.normalize}, "
            f"no_positive={self.no_positive!r}, reduction={self.reduction!r}, "
            f"chunk_size={self.chunk_size}"
        )
