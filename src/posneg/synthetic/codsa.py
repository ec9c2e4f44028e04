"""CoDSA: allocate a synthetic budget over regions and draw it from a conditional generator.

Tian, Shen, "Conditional Data Synthesis Augmentation", arXiv 2504.07426 (2025). CoDSA picks
regions ``A_1..A_K`` of the conditioning space (under-represented classes or subpopulations,
rare covariate cells, high-error regions), fine-tunes a conditional generator on the data, and
draws ``m_k`` synthetic samples per region with ``m = sum_k m_k`` tilted toward sparse or
high-interest regions, then trains on real u synthetic; ``m`` and the allocation are chosen on
validation. **No official code was found**: the allocation rules below are posneg's concrete
reading of the paper's description, not a transcription:

- ``"balance"`` (top-up, the targeted rule): water-filling; region ``k`` receives
  ``a_k = max(0, L - n_k)`` for the largest integer level ``L`` the budget affords, and the
  rest of the budget goes one each to the lowest-index regions at the level. This is the same
  as handing the samples out one by one to the region with the fewest (real + allocated)
  samples, ties to the lowest index.
- ``"weighted"``: proportional to given non-negative weights (for example each region's
  validation error: the "high-error regions" reading).
- ``"uniform"``: ``m / K`` each; ``"proportional"``: proportional to the region sizes ``n_k``
  (the non-adaptive baselines; they must get the same total ``m``).

Proportional splits are made integer by the largest-remainder rule (ties to the lowest index),
so every allocation sums to ``m`` exactly and ``m = 0`` allocates nothing.

The generator is any callable ``sample(conditions, generator) -> samples`` that returns one
sample per entry of the int64 ``conditions`` tensor (a region id; map it to a label or a prompt
inside the callable): a fine-tuned diffusion model, an LLM or, in posneg's bench, a per-region
Gaussian stand-in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, NamedTuple

import torch
from torch import nn

from posneg import _checks

__all__ = ["CITATION", "CoDSA", "CoDSAResult", "codsa_allocate", "codsa_synthesize"]

CITATION = """
@article{tian2025conditional,
  title   = {Conditional Data Synthesis Augmentation},
  author  = {Tian, Xinyu and Shen, Xiaotong},
  journal = {arXiv preprint arXiv:2504.07426},
  year    = {2025}
}
"""

RULES = ("balance", "weighted", "uniform", "proportional")

#: A conditional generator: one sample per condition (region id), drawn from ``generator``.
ConditionalSampler = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


class CoDSAResult(NamedTuple):
    """The synthetic part of a CoDSA augmentation.

    Attributes:
        samples: the generated samples ``(m, ...)`` (as the generator returns them).
        regions: their region ids ``(m,)`` int64 (the conditions they were drawn for).
        allocation: samples per region ``(K,)`` int64, summing to ``m`` (on the regions'
            device).
    """

    samples: torch.Tensor
    regions: torch.Tensor
    allocation: torch.Tensor


def _largest_remainder(weights: torch.Tensor, budget: int) -> torch.Tensor:
    # exact rational arithmetic (floats are exact rationals), so equal remainders tie exactly
    w = [Fraction(float(v)) for v in weights.double().tolist()]
    total = sum(w, Fraction(0))
    shares = [v * budget / total for v in w]
    base = [int(v) for v in shares]  # floor: shares are >= 0
    order = sorted(range(len(w)), key=lambda i: (-(shares[i] - base[i]), i))
    for i in order[: budget - sum(base)]:
        base[i] += 1
    return torch.tensor(base, dtype=torch.int64)


def _water_fill(counts: torch.Tensor, budget: int) -> torch.Tensor:
    lo, hi = int(counts.min()), int(counts.min()) + budget
    while lo < hi:  # the largest L with need(L) = sum max(0, L - n_k) <= budget
        mid = (lo + hi + 1) // 2
        if int((mid - counts).clamp(min=0).sum()) <= budget:
            lo = mid
        else:
            hi = mid - 1
    alloc = (lo - counts).clamp(min=0)
    left = budget - int(alloc.sum())
    at_level = torch.nonzero(counts + alloc == lo).flatten()
    alloc[at_level[:left]] += 1
    return alloc


def codsa_allocate(
    region_counts: Sequence[int] | torch.Tensor,
    budget: int,
    *,
    rule: str = "balance",
    weights: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Split a synthetic budget ``m`` over ``K`` regions (CoDSA, Tian and Shen, 2025).

    Args:
        region_counts: real samples per region ``n_k``, ``(K,)`` non-negative ints.
        budget: the total ``m >= 0``.
        rule: ``"balance"`` (top-up to equal counts, water-filling), ``"weighted"``
            (proportional to ``weights``), ``"uniform"``, ``"proportional"`` (to ``n_k``). See
            the module docstring.
        weights: ``(K,)`` non-negative, not all zero; only (and required) for ``"weighted"``.

    Returns:
        ``(K,)`` int64 allocation summing to ``budget``.

    Raises:
        ValueError: an empty or negative ``region_counts``, a negative budget, an unknown rule,
            weights missing, misshaped, negative or all zero, ``"proportional"`` with all
            counts zero.
        TypeError: non-integer counts or budget.

    Example:
        >>> codsa_allocate([50, 5, 20], 40).tolist()
        [0, 28, 12]
        >>> codsa_allocate([50, 5, 20], 40, rule="uniform").tolist()
        [14, 13, 13]
    """
    fn = "codsa_allocate"
    if isinstance(region_counts, torch.Tensor):
        if region_counts.dtype.is_floating_point or region_counts.dtype == torch.bool:
            raise TypeError(f"{fn}: region_counts must hold integers; got {region_counts.dtype}")
        counts = region_counts.detach().to("cpu", torch.int64).flatten()
    else:
        if not all(_checks._is_int(c) for c in region_counts):
            raise TypeError(f"{fn}: region_counts must be ints; got {list(region_counts)!r:.60}")
        counts = torch.as_tensor(list(region_counts), dtype=torch.int64)
    if counts.numel() == 0:
        raise ValueError(f"{fn}: region_counts must not be empty")
    if bool((counts < 0).any()):
        raise ValueError(f"{fn}: region_counts must be >= 0; got {counts.tolist()}")
    m = _checks.check_int(fn, "budget", budget, min_value=0)
    _checks.check_choice(fn, "rule", rule, RULES)
    if (weights is not None) != (rule == "weighted"):
        raise ValueError(f"{fn}: weights must be given exactly when rule='weighted'")
    k = counts.numel()
    if m == 0:
        return torch.zeros(k, dtype=torch.int64)
    if rule == "balance":
        return _water_fill(counts, m)
    if rule == "uniform":
        return _largest_remainder(torch.ones(k), m)
    if rule == "proportional":
        if int(counts.sum()) == 0:
            raise ValueError(f"{fn}: rule='proportional' needs some non-empty region")
        return _largest_remainder(counts, m)
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if w.numel() != k:
        raise ValueError(f"{fn}: weights must have shape ({k},); got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"{fn}: weights must be finite, >= 0 and not all 0; got {w.tolist()}")
    return _largest_remainder(w, m)


def codsa_synthesize(
    regions: torch.Tensor,
    sample: ConditionalSampler,
    *,
    budget: int,
    rule: str = "balance",
    num_regions: int | None = None,
    weights: Sequence[float] | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> CoDSAResult:
    """Allocate ``budget`` over the regions of the real data and draw it from ``sample``.

    Args:
        regions: region id of every real sample ``(N,)`` int64 in ``[0, K)``.
        sample: the conditional generator, ``sample(conditions, generator)`` -> one sample per
            condition (``conditions`` is ``(m_k * ...)`` int64, grouped by region, region 0
            first); it is called once, and not at all when ``budget`` is 0.
        budget: the total number of synthetic samples ``m``.
        rule: the allocation rule (:func:`codsa_allocate`).
        num_regions: ``K``; default ``max(regions) + 1`` (regions absent from the data count 0
            real samples, so ``"balance"`` fills them first).
        weights: per-region weights for ``rule="weighted"``.
        generator: passed to ``sample``.

    Returns:
        :class:`CoDSAResult`.

    Raises:
        ValueError: misshaped regions or ids out of range, a generator output whose first
            dimension is not ``m``, and as :func:`codsa_allocate`.
        TypeError: a non-integer ``regions`` tensor or a non-callable ``sample``.

    Example:
        >>> import torch
        >>> regions = torch.tensor([0, 0, 0, 0, 1])
        >>> out = codsa_synthesize(regions, lambda c, g: c.float()[:, None], budget=3)
        >>> out.allocation.tolist(), out.regions.tolist()
        ([0, 3], [1, 1, 1])
    """
    fn = "codsa_synthesize"
    if not isinstance(regions, torch.Tensor) or regions.dtype.is_floating_point:
        raise TypeError(f"{fn}: regions must be an integer tensor")
    if regions.dim() != 1:
        raise ValueError(f"{fn}: regions must have shape (N,); got {tuple(regions.shape)}")
    if not callable(sample):
        raise TypeError(f"{fn}: sample must be callable; got {type(sample).__name__}")
    r = regions.detach().to("cpu", torch.int64)
    top = int(r.max()) + 1 if r.numel() else 0
    k = (
        top
        if num_regions is None
        else _checks.check_int(fn, "num_regions", num_regions, min_value=1)
    )
    if k == 0:
        raise ValueError(f"{fn}: regions is empty; give num_regions")
    if r.numel() and (int(r.min()) < 0 or top > k):
        raise ValueError(f"{fn}: region ids must be in [0, {k}); got [{int(r.min())}, {top - 1}]")
    alloc = codsa_allocate(torch.bincount(r, minlength=k), budget, rule=rule, weights=weights)
    conditions = torch.repeat_interleave(torch.arange(k), alloc).to(regions.device)
    alloc = alloc.to(regions.device)
    if int(alloc.sum()) == 0:
        return CoDSAResult(torch.empty(0, device=regions.device), conditions, alloc)
    out = sample(conditions, generator)
    if not isinstance(out, torch.Tensor) or out.shape[:1] != (conditions.numel(),):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{fn}: sample must return {conditions.numel()} samples; got {got}")
    return CoDSAResult(out, conditions, alloc)


class CoDSA(nn.Module):
    """CoDSA augmentation (Tian and Shen, arXiv 2504.07426, 2025): real plus targeted synthetic.

    Stores the budget as a ratio ``m / N`` (the paper's synthetic volume; ``m = int(ratio * N)``
    as in GDA's ``int(gamma * m)``), the allocation rule and optional weights; ``forward``
    allocates over the regions of the real batch, calls the conditional generator and returns
    the synthetic part (:class:`CoDSAResult`); concatenate it with the real data (or feed both to
    :class:`posneg.synthetic.mixing.GDAMixSampler`).

    Args:
        ratio: synthetic volume ``m / N``, ``>= 0``.
        rule: ``"balance"`` (default), ``"weighted"``, ``"uniform"`` or ``"proportional"``.
        weights: per-region weights for ``"weighted"``.
        num_regions: ``K`` (default: from the data).

    Example:
        >>> import torch
        >>> codsa = CoDSA(ratio=0.5)
        >>> out = codsa(torch.tensor([0, 0, 0, 1]), lambda c, g: c[:, None].float())
        >>> out.allocation.tolist()
        [0, 2]
    """

    def __init__(
        self,
        *,
        ratio: float = 1.0,
        rule: str = "balance",
        weights: Sequence[float] | None = None,
        num_regions: int | None = None,
    ) -> None:
        super().__init__()
        fn = "CoDSA"
        self.ratio = _checks.check_nonnegative(fn, "ratio", ratio)
        self.rule = _checks.check_choice(fn, "rule", rule, RULES)
        if (weights is not None) != (rule == "weighted"):
            raise ValueError(f"{fn}: weights must be given exactly when rule='weighted'")
        self.weights = None if weights is None else tuple(float(w) for w in weights)
        if num_regions is not None:
            num_regions = _checks.check_int(fn, "num_regions", num_regions, min_value=1)
        self.num_regions = num_regions

    def forward(
        self,
        regions: torch.Tensor,
        sample: ConditionalSampler,
        *,
        generator: torch.Generator | None = None,
    ) -> CoDSAResult:
        return codsa_synthesize(
            regions,
            sample,
            budget=int(self.ratio * regions.numel()),
            rule=self.rule,
            num_regions=self.num_regions,
            weights=self.weights,
            generator=generator,
        )

    def extra_repr(self) -> str:
        w: Any = self.weights
        return (
            f"ratio={self.ratio}, rule={self.rule!r}, weights={w}, num_regions={self.num_regions}"
        )
