"""Coresets for data-efficient augmentation: weighted per-class facility location on gradients.

Liu, Mirzasoleiman. *Data-Efficient Augmentation for Training Neural Networks*. NeurIPS 2022,
arXiv 2210.08363.

Transcribed from the released code, tianyu139/data-efficient-augmentation at 84d7eef
(``utils/subset.py``: ``grad_predictions``, ``get_coreset``; ``utils/craig.py``:
``get_orders_and_weights``, ``faciliy_location_order``), which calls submodlib's dense
euclidean ``FacilityLocationFunction`` with ``LazyGreedy``:

1. gradient proxy on un-augmented inputs: ``g_i = softmax(z_i) - onehot(y_i)`` (C values), or
   with ``features`` (``--use_linear``) the last-layer gradient ``g_i ⊗ h_i`` flattened class
   major (``g[:, c * E + e] = (p - y)[:, c] * h[:, e]``);
2. per-class budgets (``equal_num``): ``k_c = ceil(B / C)``; classes with fewer points than
   that are minorities, and every other class gets ``ceil(extra / #minorities)`` more, with
   ``extra = sum_c max(0, ceil(B / C) - n_c)`` (the code divides by the number of *minority*
   classes, kept as is);
3. per class, greedy maximisation of ``F(S) = sum_i max_{j in S} s_ij`` with submodlib's
   euclidean kernel ``s_ij = exp(-||g_i - g_j||_2 / dim(g))``;
4. weights: every class member joins its most similar pick; ``w_j`` = cluster size, 0 -> 1;
   then ``w <- w / sum(w) * |S|`` (mean 1).

Deliberate differences from the code (each shown in tests/selection/test_coresets.py):
  * a class budget larger than the class is capped at the class size (the whole class is
    selected); submodlib raises there, and ``get_coreset`` then falls back to a random subset;
  * the greedy is the plain (non-lazy) greedy, ties broken by the lowest index; LazyGreedy
    picks the same set up to tie order (the lazy bound is exact for a submodular F);
  * a member equally similar to two picks joins the earlier pick (numpy's ``argmax`` on the
    greedy order, as in the code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from posneg import _checks

__all__ = [
    "CITATION",
    "Coreset",
    "CoresetSelector",
    "class_budgets",
    "cluster_weights",
    "facility_location_similarity",
    "gradient_proxy",
    "greedy_facility_location",
    "random_subset",
    "select_coreset",
]

CITATION = """
@inproceedings{liu2022dataefficient,
  title     = {Data-Efficient Augmentation for Training Neural Networks},
  author    = {Liu, Tian Yu and Mirzasoleiman, Baharan},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2022},
  eprint    = {2210.08363},
  archivePrefix = {arXiv}
}
"""


@dataclass(frozen=True)
class Coreset:
    """A weighted subset.

    Attributes:
        indices: (K,) int64 indices into the data, class by class in greedy order.
        weights: (K,) per-point weights (cluster sizes; mean 1 when normalised), in the
            gradients' dtype.
    """

    indices: torch.Tensor
    weights: torch.Tensor


def _check_labels(fn: str, labels: torch.Tensor, n: int, num_classes: int) -> None:
    _checks.check_tensor(fn, "labels", labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dim() != 1:
        raise TypeError(
            f"{fn}: labels must be a 1-D integer tensor; got {labels.dtype} "
            f"of shape {tuple(labels.shape)}"
        )
    if labels.numel() != n:
        raise ValueError(f"{fn}: labels must have {n} entries (one per row); got {labels.numel()}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{fn}: labels must lie in [0, num_classes={num_classes})")


def gradient_proxy(
    *, logits: torch.Tensor, labels: torch.Tensor, features: torch.Tensor | None = None
) -> torch.Tensor:
    """The last-layer gradient proxy ``softmax(z) - onehot(y)``, optionally ``⊗ h``.

    Args:
        logits: (N, C) logits on the un-augmented inputs.
        labels: (N,) int class labels.
        features: optional (N, E) penultimate features h (the code's ``--use_linear``).

    Returns:
        (N, C) or (N, C * E), with ``out[:, c * E + e] = (p - y)[:, c] * h[:, e]``.

    Example:
        >>> g = gradient_proxy(logits=torch.zeros(2, 3), labels=torch.tensor([0, 2]))
        >>> g[0].tolist()  # doctest: +ELLIPSIS
        [-0.66..., 0.33..., 0.33...]
    """
    fn = "gradient_proxy"
    _checks.check_tensor(fn, "logits", logits)
    if logits.dim() != 2 or not logits.dtype.is_floating_point:
        raise ValueError(f"{fn}: logits must be a (N, C) float tensor; got {tuple(logits.shape)}")
    n, c = logits.shape
    _check_labels(fn, labels, n, c)
    g = logits.detach().softmax(dim=1)
    g = g - torch.nn.functional.one_hot(labels.long(), c).to(g.dtype)
    if features is None:
        return g
    _checks.check_tensor(fn, "features", features)
    if features.dim() != 2 or features.shape[0] != n:
        raise ValueError(f"{fn}: features must be (N={n}, E); got {tuple(features.shape)}")
    return (g[:, :, None] * features.detach().to(g.dtype)[:, None, :]).reshape(n, -1)


def facility_location_similarity(gradients: torch.Tensor) -> torch.Tensor:
    """submodlib's dense euclidean kernel ``s_ij = exp(-||g_i - g_j||_2 / d)``, d = dim(g).

    Args:
        gradients: (n, d) float.

    Returns:
        (n, n) similarities in (0, 1], ones on the diagonal.
    """
    fn = "facility_location_similarity"
    _checks.check_tensor(fn, "gradients", gradients)
    if gradients.dim() != 2 or not gradients.dtype.is_floating_point:
        raise ValueError(
            f"{fn}: gradients must be a (n, d) float tensor; "
            f"got {gradients.dtype} {tuple(gradients.shape)}"
        )
    sq = (gradients * gradients).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * gradients @ gradients.T).clamp_min(0.0)
    d2.fill_diagonal_(0.0)
    return torch.exp(-d2.sqrt() / gradients.shape[1])


def greedy_facility_location(sim: torch.Tensor, budget: int) -> torch.Tensor:
    """Greedy maximisation of ``F(S) = sum_i max_{j in S} sim_ij`` (``F(∅) = 0``).

    Each step adds the point with the largest gain ``sum_i max(0, sim_ij - cur_i)``; ties go to
    the lowest index. O(budget · n²) time, O(n) memory beyond ``sim``.

    Args:
        sim: (n, n) non-negative similarities.
        budget: number of picks, 0 <= budget <= n.

    Returns:
        (budget,) int64 picks in greedy order.
    """
    fn = "greedy_facility_location"
    _checks.check_tensor(fn, "sim", sim)
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"{fn}: sim must be square (n, n); got {tuple(sim.shape)}")
    n = sim.shape[0]
    if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget <= n:
        raise ValueError(f"{fn}: budget must be an int in [0, {n}]; got {budget!r}")
    cur = torch.zeros(n, dtype=sim.dtype, device=sim.device)
    taken = torch.zeros(n, dtype=torch.bool, device=sim.device)
    picks: list[int] = []
    for _ in range(budget):
        gain = (sim - cur[:, None]).clamp_min(0.0).sum(0)
        gain = gain.masked_fill(taken, -math.inf)
        j = int(torch.argmax(gain))  # first maximum: lowest index on ties
        picks.append(j)
        taken[j] = True
        cur = torch.maximum(cur, sim[:, j])
    return torch.tensor(picks, dtype=torch.int64, device=sim.device)


def cluster_weights(sim: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """Cluster sizes: each row joins its most similar pick (first on ties); empty -> 1.

    Args:
        sim: (n, n) similarities; picks: (k,) int64 picks in greedy order.

    Returns:
        (k,) cluster sizes in ``sim``'s dtype (rows whose best similarity is <= 0 join no cluster).
    """
    if picks.numel() == 0:
        return torch.zeros(0, dtype=sim.dtype, device=sim.device)
    cols = sim[:, picks]
    best, arg = cols.max(dim=1)
    arg = arg[best > 0]
    sizes = torch.bincount(arg, minlength=picks.numel()).to(sim.dtype)
    return torch.where(sizes == 0, torch.ones_like(sizes), sizes)


def class_budgets(labels: torch.Tensor, budget: int, num_classes: int) -> list[int]:
    """The code's ``equal_num`` per-class budgets (before capping at the class size).

    ``k_c = ceil(B / C)``; if some classes have ``n_c < ceil(B / C)``, every other class gets
    ``ceil(extra / #minority)`` more, ``extra = sum_c max(0, ceil(B / C) - n_c)``.
    """
    counts = torch.bincount(labels.long().cpu(), minlength=num_classes).tolist()
    base = math.ceil(budget / num_classes)
    out = [base] * num_classes
    minority = [n < base for n in counts]
    if any(minority):
        extra = sum(max(0, base - n) for n in counts)
        add = math.ceil(extra / sum(minority))
        out = [k if m else k + add for k, m in zip(out, minority, strict=True)]
    return out


def _budget_of(fn: str, n: int, fraction: float | None, budget: int | None) -> int:
    if (fraction is None) == (budget is None):
        raise ValueError(f"{fn}: give exactly one of fraction and budget")
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget <= n:
            raise ValueError(f"{fn}: budget must be an int in [0, {n}]; got {budget!r}")
        return budget
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not (0.0 < float(fraction) <= 1.0)
    ):
        raise ValueError(f"{fn}: fraction must be in (0, 1]; got {fraction!r}")
    return int(float(fraction) * n)


def select_coreset(
    *,
    gradients: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    fraction: float | None = None,
    budget: int | None = None,
    normalize_weights: bool = True,
) -> Coreset:
    """Per-class greedy facility-location coreset with cluster-size weights (``get_coreset``).

    Args:
        gradients: (N, d) gradient proxies (:func:`gradient_proxy`).
        labels: (N,) int labels in ``[0, num_classes)``.
        num_classes: C.
        fraction: s, with ``B = int(s N)``; or give ``budget`` B directly.
        budget: B.
        normalize_weights: rescale the weights to mean 1 (``w / sum(w) * |S|``).

    Returns:
        :class:`Coreset` of about B points (per-class budgets are ``ceil``-ed, so the total may
        exceed B by up to C - 1, as in the code; a class smaller than its budget is taken whole).

    Example:
        >>> g = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
        >>> y = torch.arange(40) % 2
        >>> cs = select_coreset(gradients=g, labels=y, num_classes=2, fraction=0.25)
        >>> cs.indices.shape, float(cs.weights.mean())
        (torch.Size([10]), 1.0)
    """
    fn = "select_coreset"
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{fn}: num_classes must be an int >= 1; got {num_classes!r}")
    _checks.check_tensor(fn, "gradients", gradients)
    if gradients.dim() != 2 or not gradients.dtype.is_floating_point:
        raise ValueError(
            f"{fn}: gradients must be a (N, d) float tensor; "
            f"got {gradients.dtype} {tuple(gradients.shape)}"
        )
    n = gradients.shape[0]
    _check_labels(fn, labels, n, num_classes)
    b = _budget_of(fn, n, fraction, budget)
    per_class = class_budgets(labels, b, num_classes)
    idx_parts: list[torch.Tensor] = []
    w_parts: list[torch.Tensor] = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        k = min(per_class[c], members.numel())
        if k == 0:
            continue
        sim = facility_location_similarity(gradients[members])
        picks = greedy_facility_location(sim, k)
        idx_parts.append(members[picks])
        w_parts.append(cluster_weights(sim, picks))
    if not idx_parts:
        empty = torch.zeros(0, dtype=torch.int64, device=gradients.device)
        return Coreset(empty, torch.zeros(0, dtype=gradients.dtype, device=gradients.device))
    indices = torch.cat(idx_parts).to(torch.int64)
    weights = torch.cat(w_parts)
    if normalize_weights:
        weights = weights / weights.sum() * weights.numel()
    return Coreset(indices, weights)


def random_subset(n: int, budget: int, *, generator: torch.Generator | None = None) -> Coreset:
    """The random baseline (``get_random_subset``): B indices without replacement, weight 1."""
    fn = "random_subset"
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{fn}: n must be an int >= 0; got {n!r}")
    b = _budget_of(fn, n, None, budget)
    dev = generator.device if generator is not None else torch.device("cpu")
    order = torch.randperm(n, generator=generator, device=dev)[:b].cpu()
    return Coreset(order, torch.ones(b))


class CoresetSelector(nn.Module):
    """Stateless selector: ``forward(logits, labels, features=None) -> Coreset``.

    Stores ``num_classes``, ``fraction`` and ``normalize_weights``; passing ``features`` is
    the code's ``--use_linear`` (``g ⊗ h``). It calls :func:`gradient_proxy` then
    :func:`select_coreset`. Call it every R epochs on the un-augmented training data, with the
    model in eval mode, and train on the (weighted) coreset plus its augmented copy.

    Example:
        >>> sel = CoresetSelector(num_classes=3, fraction=0.5)
        >>> z = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
        >>> cs = sel(z, torch.arange(12) % 3)
        >>> len(cs.indices)
        6
    """

    def __init__(
        self, num_classes: int, fraction: float = 0.3, *, normalize_weights: bool = True
    ) -> None:
        super().__init__()
        name = "CoresetSelector"
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"{name}: num_classes must be an int >= 1; got {num_classes!r}")
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not (0.0 < float(fraction) <= 1.0)
        ):
            raise ValueError(f"{name}: fraction must be in (0, 1]; got {fraction!r}")
        self.num_classes = num_classes
        self.fraction = float(fraction)
        self.normalize_weights = bool(normalize_weights)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, fraction={self.fraction}, "
            f"normalize_weights={self.normalize_weights}"
        )

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, features: torch.Tensor | None = None
    ) -> Coreset:
        g = gradient_proxy(logits=logits, labels=labels, features=features)
        return select_coreset(
            gradients=g,
            labels=labels,
            num_classes=self.num_classes,
            fraction=self.fraction,
            normalize_weights=self.normalize_weights,
        )
