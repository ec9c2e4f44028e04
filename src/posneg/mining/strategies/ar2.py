"""AR2: adversarial retriever-ranker co-training (the retriever's and the ranker's losses).

Zhang, Gong, Shen, Lv, Duan, Chen. *Adversarial Retriever-Ranker for Dense Text Retrieval.*
ICLR 2022, arXiv 2110.03611. Official code: ``microsoft/AR2`` at commit
``c8df9379e0f7d50f9f52aa34982908c88b408a24``, ``AR2/wiki/co_training_wiki_train.py::train``
(both steps and the schedule) and ``AR2/utils/util.py`` (``TraditionDataset``: a group per query
is its positive plus 15 hard negatives re-shuffled at every access, repeated when fewer).

Every query comes with a *group* of G documents, the positive first. The retriever scores them
by inner product, the ranker (a cross-encoder) by logits ``l``. On the retriever's step (ranker
frozen, no gradient)::

    p_theta(j) = softmax_j(q . d_j)                    (over the query's own group only)
    p_phi(j)   = softmax_j(l_j / T)
    normal     = -(1/B) sum_q sum_j p_phi(j) log(p_theta(j) + 1e-7)
    reward_j   = log(sigmoid(l_0 - l_j) + 1e-7)        (j = 0 gives log 1/2)
    adv        = sum_q sum_j reward_j log(p_theta(j) + 1e-7)      (SUMMED, not averaged)
    L_G        = lambda adv + (1 - lambda) normal

and on the ranker's step ``L_D = CE(l, 0)``. As ``reward <= 0``, descending ``adv`` raises the
retriever's probability of the documents the ranker confuses with the positive. Which model
trains at a step is :func:`ar2_trains_ranker` (the script's ``train_flag`` logic, boundary quirk
included); the negatives are rebuilt at the end of each block (re-encode the corpus, mine the
new top documents): :class:`~posneg.mining.strategies.refresh.HardNegativePool` with
``refresh_every = iteration_step`` does that, and its ``sample`` draws a group's negatives as
``TraditionDataset`` does.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype

__all__ = [
    "CITATION",
    "AR2Loss",
    "ar2_ranker_loss",
    "ar2_retriever_loss",
    "ar2_trains_ranker",
]

CITATION = """@inproceedings{zhang2022ar2,
  title     = {Adversarial Retriever-Ranker for Dense Text Retrieval},
  author    = {Zhang, Hang and Gong, Yeyun and Shen, Yelong and Lv, Jiancheng and Duan, Nan and
               Chen, Weizhu},
  booktitle = {International Conference on Learning Representations},
  year      = {2022}
}"""

#: The official code's epsilon inside both logarithms.
EPS = 1e-7

AdvReduction = Literal["sum", "mean"]


def _check_group(fn: str, query: torch.Tensor, docs: torch.Tensor, logits: torch.Tensor) -> None:
    _checks.check_float(fn, "query", query)
    _checks.check_float(fn, "docs", docs)
    _checks.check_float(fn, "ranker_logits", logits)
    if query.dim() != 2:
        raise ValueError(f"{fn}: query must have shape (B, D); got {tuple(query.shape)}")
    b, d = query.shape
    if docs.dim() != 3 or docs.shape[0] != b or docs.shape[2] != d:
        raise ValueError(
            f"{fn}: docs must have shape (B, G, D) = ({b}, G, {d}); got {tuple(docs.shape)}"
        )
    if tuple(logits.shape) != tuple(docs.shape[:2]):
        raise ValueError(
            f"{fn}: ranker_logits must have shape (B, G) = {tuple(docs.shape[:2])}; "
            f"got {tuple(logits.shape)}"
        )
    if docs.shape[1] < 1:
        raise ValueError(f"{fn}: a group needs at least one document (G >= 1)")


def ar2_retriever_loss(
    query: torch.Tensor,
    docs: torch.Tensor,
    ranker_logits: torch.Tensor,
    *,
    adv_lambda: float = 0.5,
    temperature: float = 1.0,
    retriever_temperature: float = 1.0,
    adv_reduction: AdvReduction = "sum",
) -> torch.Tensor:
    """AR2's retriever loss ``lambda adv + (1 - lambda) normal`` over per-query groups.

    Zhang et al., ICLR 2022 (arXiv 2110.03611); ``co_training_wiki_train.py::train``,
    ``train_flag == 0``. The ranker side is read under ``no_grad`` (its logits are detached).

    Formula (``s_j = q . d_j / retriever_temperature``, ``l`` the ranker logits)::

        p_theta = softmax(s),  p_phi = softmax(l / temperature)
        normal  = -(1/B) sum p_phi log(p_theta + 1e-7)
        adv     = sum log(sigmoid(l_0 - l_j) + 1e-7) log(p_theta(j) + 1e-7)

    Args:
        query: (B, D) retriever query embeddings.
        docs: (B, G, D) each query's group, the positive at index 0.
        ranker_logits: (B, G) the ranker's logits of the same groups (detached here).
        adv_lambda: lambda in [0, 1]; 0.5 in the README (the argparse default is 0).
        temperature: T of the ranker's distribution (``temperature_normal``, 1).
        retriever_temperature: divides ``q . d`` (1: the code, whose ``--scale_simmila`` is
            off; set it for unit-norm embeddings).
        adv_reduction: ``"sum"`` (the code: the term grows with B*G) or ``"mean"`` (divided by
            B, as ``normal`` is).

    Returns:
        A scalar tensor.

    Raises:
        TypeError: non-floating inputs.
        ValueError: wrong shapes, ``adv_lambda`` outside [0, 1], a non-positive temperature,
            an unknown ``adv_reduction``.

    Example:
        >>> q, d, l = torch.randn(2, 4), torch.randn(2, 3, 4), torch.randn(2, 3)
        >>> ar2_retriever_loss(q, d, l).shape
        torch.Size([])
    """
    fn = "ar2_retriever_loss"
    _check_group(fn, query, docs, ranker_logits)
    _checks.check_range(fn, "adv_lambda", adv_lambda, 0.0, 1.0)
    _checks.check_positive(fn, "temperature", temperature)
    _checks.check_positive(fn, "retriever_temperature", retriever_temperature)
    _checks.check_choice(fn, "adv_reduction", adv_reduction, ("sum", "mean"))
    ct = compute_dtype(query)  # half inputs: float32 arithmetic and result
    sim = torch.einsum("bh,bgh->bg", query.to(ct), docs.to(ct)) / retriever_temperature
    log_p_theta = torch.log(F.softmax(sim, dim=1) + EPS)
    with torch.no_grad():
        logits = ranker_logits.detach().to(sim.dtype)
        p_phi = F.softmax(logits / temperature, dim=1)
        # the code: a 2-way softmax of (l_0, l_j), i.e. sigmoid(l_0 - l_j)
        reward = torch.log(torch.sigmoid(logits[:, :1] - logits) + EPS)
    normal = -(p_phi * log_p_theta).sum() / query.shape[0]
    adv = (reward * log_p_theta).sum()
    if adv_reduction == "mean":
        adv = adv / query.shape[0]
    return adv_lambda * adv + (1.0 - adv_lambda) * normal


def ar2_ranker_loss(logits: torch.Tensor) -> torch.Tensor:
    """AR2's ranker loss: cross-entropy of each group's logits to its positive (index 0).

    ``co_training_wiki_train.py::train``, ``train_flag == 1`` (the ``0 * binary_logits.sum()``
    there only keeps DDP quiet and is left out).

    Args:
        logits: (B, G) ranker logits, the positive at index 0.

    Returns:
        The mean over queries of ``-log softmax(logits)[:, 0]``.

    Raises:
        TypeError, ValueError: a non-floating or non-(B, G) ``logits``.

    Example:
        >>> float(ar2_ranker_loss(torch.zeros(2, 4)))  # log 4
        1.3862943649291992
    """
    fn = "ar2_ranker_loss"
    _checks.check_float(fn, "logits", logits)
    if logits.dim() != 2 or logits.shape[1] < 1 or logits.shape[0] < 1:
        raise ValueError(
            f"{fn}: logits must have shape (B, G), B, G >= 1; got {tuple(logits.shape)}"
        )
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


def ar2_trains_ranker(step: int, *, iteration_step: int = 2000, ranker_steps: int = 500) -> bool:
    """Whether the ranker (True) or the retriever (False) trains at 0-based ``step``.

    The script's ``train_flag`` starts at 1 and, after each optimiser step (``global_step`` =
    steps done), becomes 0 when ``gs % I > R``, 1 when ``0 < gs % I < R``, 1 at ``gs % I == 0``
    (save, break; the generate script re-mines and training restarts), and is left unchanged at
    ``gs % I == R``. So the step taken after ``step`` steps trains the ranker iff
    ``step % I <= R``: R + 1 ranker steps per block of I (501 of 2000 in the README), the
    boundary step included.

    Args:
        step: steps done so far (>= 0).
        iteration_step: I, the block length (``--iteration_step``, 2000).
        ranker_steps: R (``--iteration_reranker_step``, 500), >= 0.

    Example:
        >>> [ar2_trains_ranker(s, iteration_step=5, ranker_steps=2) for s in range(7)]
        [True, True, True, False, False, True, True]
    """
    fn = "ar2_trains_ranker"
    _checks.check_int(fn, "step", step, min_value=0)
    _checks.check_int(fn, "iteration_step", iteration_step, min_value=1)
    _checks.check_int(fn, "ranker_steps", ranker_steps, min_value=0)
    return step % iteration_step <= ranker_steps


class AR2Loss(nn.Module):
    """Module form of :func:`ar2_retriever_loss` (stateless; see there for the formula).

    Args:
        adv_lambda, temperature, retriever_temperature, adv_reduction: as in
            :func:`ar2_retriever_loss`.

    Example:
        >>> loss = AR2Loss(adv_lambda=0.5)
        >>> loss(torch.randn(2, 4), torch.randn(2, 3, 4), torch.randn(2, 3)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        adv_lambda: float = 0.5,
        temperature: float = 1.0,
        retriever_temperature: float = 1.0,
        adv_reduction: AdvReduction = "sum",
    ) -> None:
        super().__init__()
        fn = "AR2Loss"
        self.adv_lambda = _checks.check_range(fn, "adv_lambda", adv_lambda, 0.0, 1.0)
        self.temperature = _checks.check_positive(fn, "temperature", temperature)
        self.retriever_temperature = _checks.check_positive(
            fn, "retriever_temperature", retriever_temperature
        )
        _checks.check_choice(fn, "adv_reduction", adv_reduction, ("sum", "mean"))
        self.adv_reduction: AdvReduction = adv_reduction

    def forward(
        self, query: torch.Tensor, docs: torch.Tensor, ranker_logits: torch.Tensor
    ) -> torch.Tensor:
        """(B, D), (B, G, D), (B, G) -> scalar."""
        return ar2_retriever_loss(
            query,
            docs,
            ranker_logits,
            adv_lambda=self.adv_lambda,
            temperature=self.temperature,
            retriever_temperature=self.retriever_temperature,
            adv_reduction=self.adv_reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"adv_lambda={self.adv_lambda}, temperature={self.temperature}, "
            f"retriever_temperature={self.retriever_temperature}, "
            f"adv_reduction={self.adv_reduction!r}"
        )
