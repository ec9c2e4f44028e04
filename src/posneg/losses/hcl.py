"""Hard negative contrastive loss (HCL) and its cross-modal form (CMC with hard negatives, HAR).

Every sum over negatives is a row log-sum-exp (:func:`posneg._lse.row_logsumexp_scales`: the
reweighting's two sums at scales ``(1 + beta) / t`` and ``beta / t`` share one score tile; a
custom backward recomputes each tile once and forms the gradients directly), with one shift per
row, so no exp() of a score is taken before the row's maximum is removed and nothing overflows
for any temperature. The rest of the estimator costs O(B) per row.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from posneg import _checks
from posneg._lse import row_logsumexp, row_logsumexp_scales
from posneg._tiling import reduce_loss
from posneg._types import Reduction
from posneg.losses.info_nce import (
    _check_hparams,
    _check_pair,
    _cross_rows,
    _prepare,
    _two_view_rows,
    _two_views,
)

__all__ = ["CrossModalHCLLoss", "HCLLoss", "hcl", "hcl_beta_schedule", "hcl_cross_modal"]

Estimator = Literal["hard", "easy"]
NumNegatives = Literal["corrected", "faithful"]
ESTIMATORS: tuple[str, ...] = ("hard", "easy")
NUM_NEGATIVES: tuple[str, ...] = ("corrected", "faithful")

CITATION = """
@inproceedings{robinson2021hcl,
  title     = {Contrastive Learning with Hard Negative Samples},
  author    = {Robinson, Joshua and Chuang, Ching-Yao and Sra, Suvrit and Jegelka, Stefanie},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2021},
  note      = {arXiv:2010.04592}
}
"""

CITATION_HAR = """
@article{choi2023multimodal,
  title   = {Multimodal Contrastive Learning with Hard Negative Sampling for Human Activity
             Recognition},
  author  = {Choi, Hyeongju and Beedu, Apoorva and Essa, Irfan},
  journal = {arXiv preprint arXiv:2309.01262},
  year    = {2023}
}
"""

#: Per-technique BibTeX (read by ``posneg.registry``): the cross-modal form cites the HAR paper.
CITATIONS = {"HCLLoss": CITATION, "CrossModalHCLLoss": CITATION_HAR}


def _check_hcl_hparams(
    fn: str, beta: object, tau_plus: object, estimator: object
) -> tuple[float, float]:
    b = _checks.check_nonnegative(fn, "beta", beta)
    tp = _checks.check_range(fn, "tau_plus", tau_plus, 0.0, 1.0, high_open=True)
    _checks.check_choice(fn, "estimator", estimator, ESTIMATORS)
    return b, tp


def _hcl_rows(
    pos: torch.Tensor,
    rows: torch.Tensor,
    cands: torch.Tensor,
    offsets: tuple[int, ...],
    *,
    n_candidates: int,
    n_prior: int,
    beta: float,
    tau_plus: float,
    temperature: float,
    estimator: str,
    chunk_size: int | None,
) -> torch.Tensor:
    """Per-row HCL loss from scaled anchor rows.

    Args:
        pos: (R,) positive logits ``s_pos / t``.
        rows: (R, D) anchors scaled by ``1 / t``; the scores are ``rows @ cands.T``.
        cands: (C, D) candidates; the columns on the diagonals ``offsets`` are not negatives.
        offsets: excluded diagonals (the anchor itself, its positive).
        n_candidates: K, the number of negatives per row (``C - len(offsets)``).
        n_prior: N, the count used in the tau_plus term and the clamp.
    """
    if estimator == "easy":
        lse = row_logsumexp(rows, cands, exclude_offsets=offsets, chunk_size=chunk_size)
        return torch.logaddexp(pos, lse) - pos
    # log of reweight = sum_j imp_j neg_j / mean_j imp_j with imp = exp(beta a), neg = exp(a).
    lse = row_logsumexp_scales(
        rows, cands, scales=(1.0 + beta, beta), exclude_offsets=offsets, chunk_size=chunk_size
    )
    log_rw = lse[0] - lse[1] + math.log(n_candidates)
    log_floor = math.log(n_prior) - 1.0 / temperature
    # One shift per row; the result does not depend on it, so it carries no gradient.
    c = torch.maximum(log_rw, pos).clamp(min=log_floor).detach()
    ng = (torch.exp(log_rw - c) - tau_plus * n_prior * torch.exp(pos - c)) / (1.0 - tau_plus)
    floor = torch.exp(log_floor - c)
    ng = torch.where(ng > floor, ng, floor)
    return torch.log(torch.exp(pos - c) + ng) + c - pos


def hcl(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    temperature: float = 0.5,
    beta: float = 1.0,
    tau_plus: float = 0.1,
    estimator: Estimator = "hard",
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """HCL: debiased contrastive loss with negatives reweighted towards the hard ones.

    Robinson, Chuang, Sra, Jegelka. *Contrastive Learning with Hard Negative Samples.*
    ICLR 2021, arXiv 2010.04592. Computed as the official code (joshr17/HCL, ``image/main.py``)
    does for SimCLR's two views.

    With ``z = cat([z1, z2])`` (2B, D), L2-normalised when ``normalize``, ``t = temperature``,
    anchor r, its other view ``p(r) = (r + B) mod 2B``, ``pos = exp(s(r, p(r)) / t)``, and the
    K = N = 2B - 2 negatives j (everything but r and p(r)) with ``a_j = s(r, j) / t``::

        imp_j = exp(beta * a_j)                                   (importance weights)
        rw    = sum_j imp_j * exp(a_j) / mean_j imp_j             (= K * E_{q_beta}[exp(a)])
        Ng    = max( (rw - tau_plus * N * pos) / (1 - tau_plus),  N * exp(-1 / t) )
        L_r   = -log( pos / (pos + Ng) )

    ``beta`` multiplies ``s / t``, as in the official code: the paper's concentration
    ``beta_paper`` (in ``q_beta(x-) ~ exp(beta_paper * f(x).f(x-))``) equals ``beta / t``.
    The importance weights are *not* detached (gradient flows through them, as in the official
    code). The clamp is the code's: ``N * exp(-1/t)`` is the smallest possible negative sum for
    unit-norm embeddings (with ``normalize=False`` it is kept as the same constant).
    Special cases: ``beta=0`` gives the debiased contrastive loss of Chuang et al. (NeurIPS
    2020, arXiv 2007.00224); ``beta=0, tau_plus=0`` gives NT-Xent whenever the clamp is
    inactive; ``estimator="easy"`` is the code's plain ``Ng = sum_j exp(a_j)`` (NT-Xent, beta and
    tau_plus unused). "mean" averages over the 2B anchors.

    The official ``--anneal down`` flag decays beta to 0 over training in 9 steps; that schedule
    is :func:`hcl_beta_schedule` (set ``HCLLoss.beta`` from it at the start of each epoch).

    Args:
        z1: (B, D) embeddings of the first view.
        z2: (B, D) embeddings of the second view; ``z2[i]`` is the positive of ``z1[i]``.
        temperature: t > 0 (official default 0.5).
        beta: concentration >= 0 on the ``s / t`` scale (official default 1.0).
        tau_plus: class prior in [0, 1) for debiasing (official default 0.1).
        estimator: "hard" (HCL) or "easy" (plain NT-Xent), as the official ``--estimator``.
        normalize: L2-normalise the embeddings first.
        reduction: "mean" | "sum" | "none".
        chunk_size: anchor rows per block (``None``: automatic, bounded memory).

    Returns:
        "mean"/"sum": a scalar; "none": (2B,) ordered [view-1 anchors, view-2 anchors].

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, non-bool ``normalize``.
        ValueError: wrong rank or shape, mismatched batch/dimension/device, B < 2,
            temperature <= 0, beta < 0, tau_plus outside [0, 1), bad estimator, reduction or
            chunk_size.

    Example:
        >>> import torch
        >>> from posneg.losses import hcl
        >>> g = torch.Generator().manual_seed(0)
        >>> z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
        >>> hcl(z1, z2, beta=1.0, tau_plus=0.1, reduction="none").shape
        torch.Size([16])
    """
    fn = "hcl"
    t = _check_hparams(fn, temperature, normalize, reduction, chunk_size)
    b, tp = _check_hcl_hparams(fn, beta, tau_plus, estimator)
    z, n = _two_views(fn, z1, z2, normalize)
    rows, pos = _two_view_rows(z, n, t)
    per_row = _hcl_rows(
        pos,
        rows,
        z,
        (0, n),
        n_candidates=2 * n - 2,
        n_prior=2 * n - 2,
        beta=b,
        tau_plus=tp,
        temperature=t,
        estimator=estimator,
        chunk_size=chunk_size,
    )
    return reduce_loss(per_row, reduction)


def hcl_cross_modal(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    temperature: float = 0.1,
    beta: float = 1.0,
    tau_plus: float = 0.1,
    num_negatives: NumNegatives = "corrected",
    estimator: Estimator = "hard",
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Cross-modal HCL: CMC with hard-negative reweighting and debiasing, both directions.

    Choi, Beedu, Essa. *Multimodal Contrastive Learning with Hard Negative Sampling for Human
    Activity Recognition.* arXiv 2309.01262, 2023 (official code:
    hyeong96/Multimodal-Contrastive-Learning-HAR-with-HNS, ``models/cmchnl.py``), built on
    HCL (Robinson et al., ICLR 2021, arXiv 2010.04592).

    ``a`` and ``b`` are the same B samples seen by two modalities (e.g. skeleton and IMU). For
    anchor ``a_i`` the positive is ``b_i`` and the negatives are the K = B - 1 other ``b_j``
    (cross-modal only, no same-modality negatives); the direction ``b_i -> a`` is computed the
    same way. Within one direction, with ``x_j = s(a_i, b_j) / t`` over the negatives and
    ``pos = exp(s(a_i, b_i) / t)``, HCL's estimator is unchanged::

        rw  = sum_j exp((1 + beta) * x_j) / mean_j exp(beta * x_j)
        Ng  = max( (rw - tau_plus * N * pos) / (1 - tau_plus),  N * exp(-1 / t) )
        L   = -log( pos / (pos + Ng) )

    How N is counted is a deliberate choice. The official code keeps SimCLR's ``N = 2B - 2`` in
    the tau_plus term and the clamp although each anchor has only ``B - 1`` negatives and
    ``rw`` is on the scale of ``(B - 1) * E[exp(x)]``. ``num_negatives="corrected"`` (default)
    uses ``N = B - 1``, consistent with HCL's derivation; ``num_negatives="faithful"`` uses
    ``N = 2B - 2`` and reproduces the official code. ``estimator="easy"`` is the code's plain CMC
    (``Ng = sum_j exp(x_j)``, i.e. symmetric cross-modal InfoNCE; beta, tau_plus and
    num_negatives unused). ``beta`` multiplies ``s / t`` (the HCL paper's beta is ``beta / t``);
    the importance weights are not detached. No labels are used: the abstract's "hard negatives
    that have different labels" is handled only through the tau_plus debiasing.

    What "faithful" reproduces, and what it does not. The official ``MM_HNL.get_CMCHNL_loss``
    (commit bf2d088db4d50053f4770622939f5a4dea769105) keeps the positives as a (2B, 1) column
    (``similarity_matrix[mask].view(batch_size, -1)``) and the per-anchor negative sums as a
    (2B,) vector, so ``-tau_plus * N * pos + reweight_neg`` and ``pos / (pos + Ng)`` broadcast
    to (2B, 2B): every anchor's positive is paired with every anchor's negative sum
    ``Ng[i, j]``, and the loss is the mean over all (2B)^2 pairs (the ``"easy"`` estimator
    broadcasts the same way). posneg computes the per-anchor loss the authors evidently meant,
    which is the official code with the positive squeezed to (2B,): with
    ``num_negatives="faithful"`` it equals that squeezed version exactly (the tau_plus term
    and clamp with ``N = 2B - 2``), and it differs from the code as written, whose (2B, 2B)
    mean posneg does not offer. Both are tested against a transcription of ``MM_HNL``.

    Args:
        a: (B, D) embeddings of modality A.
        b: (B, D) embeddings of modality B; ``b[i]`` is the positive of ``a[i]``.
        temperature: t > 0 (official default 0.1).
        beta: concentration >= 0 on the ``s / t`` scale (official default 1.0).
        tau_plus: class prior in [0, 1) (official default 0.1).
        num_negatives: "corrected" (N = B - 1) or "faithful" (N = 2B - 2, the official code).
        estimator: "hard" or "easy" (plain CMC).
        normalize: L2-normalise the embeddings first.
        reduction: "mean" | "sum" | "none".
        chunk_size: anchor rows per block (``None``: automatic, bounded memory).

    Returns:
        "none": (B,), per sample the average of its two directions ``(L_{a_i->b} +
        L_{b_i->a}) / 2`` (the convention of ``info_nce(..., symmetric=True)``); "mean": their
        mean (= the mean over the 2B anchors, as the official code); "sum": their sum.
        Swapping ``a`` and ``b`` leaves every reduction unchanged.

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, non-bool ``normalize``.
        ValueError: wrong rank or shape, mismatched batch/dimension/device, B < 2,
            temperature <= 0, beta < 0, tau_plus outside [0, 1), bad num_negatives, estimator,
            reduction or chunk_size.

    Example:
        >>> import torch
        >>> from posneg.losses import hcl_cross_modal
        >>> g = torch.Generator().manual_seed(0)
        >>> skel, imu = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
        >>> hcl_cross_modal(skel, imu, reduction="none").shape
        torch.Size([8])
    """
    fn = "hcl_cross_modal"
    t = _check_hparams(fn, temperature, normalize, reduction, chunk_size)
    bt, tp = _check_hcl_hparams(fn, beta, tau_plus, estimator)
    _checks.check_choice(fn, "num_negatives", num_negatives, NUM_NEGATIVES)
    _check_pair(fn, ("a", "b"), a, b, min_rows=2)
    n = int(a.shape[0])
    za, zb = _prepare(a, normalize), _prepare(b, normalize)
    n_prior = n - 1 if num_negatives == "corrected" else 2 * n - 2

    def direction(anchors: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        rows, pos = _cross_rows(anchors, cands, t)
        return _hcl_rows(
            pos,
            rows,
            cands,
            (0,),
            n_candidates=n - 1,
            n_prior=n_prior,
            beta=bt,
            tau_plus=tp,
            temperature=t,
            estimator=estimator,
            chunk_size=chunk_size,
        )

    return reduce_loss(0.5 * (direction(za, zb) + direction(zb, za)), reduction)


def hcl_beta_schedule(epoch: int, *, epochs: int, beta: float = 1.0, steps: int = 9) -> float:
    """HCL's ``--anneal down`` schedule: the beta to train epoch ``epoch`` (0-based) with.

    Robinson et al., ICLR 2021, arXiv 2010.04592; official code joshr17/HCL, ``image/main.py``
    (commit 7b4647fac271c78a2a9d619fe3f2929ecfaf33df): ``betas = iter(np.linspace(beta, 0,
    n_steps))`` with ``n_steps = 9``, and after every official (1-based) epoch that is a
    multiple of ``every = int(epochs / n_steps)`` the next value is taken. The first value taken
    is ``beta`` itself, so with ``k = epoch // every`` updates done before this epoch::

        beta_epoch = beta                                           if k == 0
                   = beta * (1 - (min(k, steps) - 1) / (steps - 1))  otherwise

    For the official 400 epochs: beta for epochs 0..87, then 7/8 beta from epoch 88, ..., and
    0 from epoch 396 (the 9th value, taken after official epoch 396).

    Deliberate differences, both where the official loop fails: when ``epochs`` is a multiple of
    ``every`` with more than ``steps`` multiples (e.g. ``epochs=10``: ``every=1``) the official
    iterator is exhausted and ``next(betas)`` raises ``StopIteration`` after the last epoch;
    here beta simply stays at 0. With ``epochs < steps`` the official ``epoch % 0`` raises
    ``ZeroDivisionError``; here that is a ``ValueError``.

    Args:
        epoch: the epoch about to be trained, 0-based, in ``[0, epochs)``.
        epochs: total epochs, >= ``steps``.
        beta: the starting beta, >= 0 (official default 1.0).
        steps: number of values from ``beta`` down to 0 (official 9), >= 2.

    Returns:
        The beta for ``epoch`` (a float).

    Raises:
        TypeError: non-int ``epoch``, ``epochs`` or ``steps``; non-real ``beta``.
        ValueError: ``epoch`` outside ``[0, epochs)``, ``epochs < steps``, ``steps < 2``,
            ``beta < 0``.

    Example:
        >>> [hcl_beta_schedule(e, epochs=20, beta=1.0) for e in (0, 3, 4, 6, 19)]
        [1.0, 1.0, 0.875, 0.75, 0.0]
    """
    fn = "hcl_beta_schedule"
    n_steps = _checks.check_int(fn, "steps", steps, min_value=2)
    total = _checks.check_int(fn, "epochs", epochs, min_value=n_steps)
    e = _checks.check_int(fn, "epoch", epoch, min_value=0)
    if e >= total:
        raise ValueError(f"{fn}: epoch must be < epochs={total} (0-based); got {e}")
    b = _checks.check_nonnegative(fn, "beta", beta)
    k = e // (total // n_steps)
    if k == 0:
        return b
    return b * (1.0 - (min(k, n_steps) - 1) / (n_steps - 1))


class HCLLoss(nn.Module):
    """Module form of :func:`hcl` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> HCLLoss(beta=1.0, tau_plus=0.1)(torch.randn(4, 8), torch.randn(4, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.5,
        beta: float = 1.0,
        tau_plus: float = 0.1,
        estimator: Estimator = "hard",
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        fn = "HCLLoss"
        self.temperature = _check_hparams(fn, temperature, normalize, reduction, chunk_size)
        self.beta, self.tau_plus = _check_hcl_hparams(fn, beta, tau_plus, estimator)
        self.estimator: Estimator = estimator
        self.normalize = normalize
        self.reduction: Reduction = reduction
        self.chunk_size = chunk_size

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Loss of two views ``z1``, ``z2`` (B, D)."""
        return hcl(
            z1,
            z2,
            temperature=self.temperature,
            beta=self.beta,
            tau_plus=self.tau_plus,
            estimator=self.estimator,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, beta={self.beta}, tau_plus={self.tau_plus}, "
            f"estimator={self.estimator!r}, normalize={self.normalize}, "
            f"reduction={self.reduction!r}, chunk_size={self.chunk_size}"
        )


class CrossModalHCLLoss(nn.Module):
    """Module form of :func:`hcl_cross_modal` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> CrossModalHCLLoss(temperature=0.1)(torch.randn(4, 8), torch.randn(4, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        beta: float = 1.0,
        tau_plus: float = 0.1,
        num_negatives: NumNegatives = "corrected",
        estimator: Estimator = "hard",
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        fn = "CrossModalHCLLoss"
        self.temperature = _check_hparams(fn, temperature, normalize, reduction, chunk_size)
        self.beta, self.tau_plus = _check_hcl_hparams(fn, beta, tau_plus, estimator)
        _checks.check_choice(fn, "num_negatives", num_negatives, NUM_NEGATIVES)
        self.num_negatives: NumNegatives = num_negatives
        self.estimator: Estimator = estimator
        self.normalize = normalize
        self.reduction: Reduction = reduction
        self.chunk_size = chunk_size

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Loss of modality embeddings ``a``, ``b`` (B, D) of the same B samples."""
        return hcl_cross_modal(
            a,
            b,
            temperature=self.temperature,
            beta=self.beta,
            tau_plus=self.tau_plus,
            num_negatives=self.num_negatives,
            estimator=self.estimator,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, beta={self.beta}, tau_plus={self.tau_plus}, "
            f"num_negatives={self.num_negatives!r}, estimator={self.estimator!r}, "
            f"normalize={self.normalize}, reduction={self.reduction!r}, "
            f"chunk_size={self.chunk_size}"
        )
