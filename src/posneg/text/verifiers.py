"""Resampling with an imperfect verifier: closed-form accuracy, its ceiling, utility, optimal K.

Stroebl, Kapoor, Narayanan, "Inference Scaling fLaws: The Limits of LLM Resampling with Imperfect
Verifiers", arXiv 2411.17501, 2024 (v3: "The Limits of Inference Scaling Through Resampling").
Official code: benediktstroebl/inference-scaling-limits (read at 11a8f6e),
``notebooks/limits_to_inference_scaling_model.ipynb``.

Policy: draw a sample, ask the verifier; stop at the first accepted sample or after ``k``
attempts (then abstain). A sample is correct with probability ``r``; the verifier accepts a
correct sample with probability ``c = 1 - fnr`` and an incorrect one with probability
``fpr = 1 - s``. With ``a = c r + fpr (1 - r)`` (an attempt is accepted) and ``beta = 1 - a``:

    Acc(k) = c r (1 - beta^k) / a                      (accepted and correct)
    Acc(inf) = c r / a                                 (the ceiling; < 1 whenever fpr > 0)
    U(k) = (1 - beta^k) / a * (c r - cost * fpr (1 - r))   (V_correct = 1, V_fp = -cost)

Per problem U(k) is monotone in k; a finite optimal k comes from heterogeneity. For a mixture
of problem types (rates ``r_j``, weights ``p_j``), the expected reward of attempt k is
``sum_j p_j beta_j^(k-1) [c r_j - cost fpr (1 - r_j)]`` and ``U(k)`` its cumulative sum
(:func:`mixture_utility`). The official notebook instead weights the per-type value with the
posterior ``pi_j(k) ~ p_j beta_j^(k-1)`` *and* multiplies by ``sum_j pi_j(k) beta_j^(k-1)``,
counting the belief update twice; posneg computes the exact marginal and offers the notebook's
as ``notebook=True`` (the tests show the two differ in value but agree on k* at the paper's
values).

:func:`resample` applies any verifier to any generator (both callables; draws from
``generator=``), :func:`noisy_verdicts` turns exact correctness into verdicts with known rates.

Example:
    >>> import torch
    >>> acc = resampling_accuracy(r=torch.tensor(0.5), k=torch.arange(1, 4), fpr=0.25)
    >>> [round(x, 4) for x in acc.tolist()]
    [0.5, 0.6875, 0.7578]
    >>> round(float(resampling_ceiling(r=torch.tensor(0.5), fpr=0.25)), 4)
    0.8
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from posneg._checks import check_bool, check_generator, check_int, check_range, check_tensor

__all__ = [
    "CITATION",
    "ImperfectVerifier",
    "ResampleResult",
    "mixture_utility",
    "noisy_verdicts",
    "optimal_k",
    "resample",
    "resampling_accuracy",
    "resampling_ceiling",
    "resampling_utility",
]

CITATION = """@article{stroebl2024inference,
  title={Inference Scaling {fLaws}: The Limits of {LLM} Resampling with Imperfect Verifiers},
  author={Stroebl, Benedikt and Kapoor, Sayash and Narayanan, Arvind},
  journal={arXiv preprint arXiv:2411.17501},
  year={2024}
}"""


def _rates(fn: str, fpr: float, fnr: float) -> tuple[float, float]:
    return check_range(fn, "fpr", fpr, 0.0, 1.0), check_range(fn, "fnr", fnr, 0.0, 1.0)


def _prob(fn: str, name: str, x: Any) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float64)
    if not t.is_floating_point():
        t = t.double()
    if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
        raise ValueError(f"{fn}: {name} must hold probabilities in [0, 1]")
    return t


def _ks(fn: str, k: Any) -> torch.Tensor:
    kt = torch.as_tensor(k)
    if kt.is_floating_point() or kt.dtype == torch.bool or (kt < 0).any():
        raise ValueError(f"{fn}: k must hold integers >= 0")
    return kt


def _accept_parts(r: torch.Tensor, fpr: float, fnr: float) -> tuple[torch.Tensor, torch.Tensor]:
    good = (1.0 - fnr) * r  # P(correct and accepted) per attempt
    a = good + fpr * (1.0 - r)  # P(accepted) per attempt
    return good, a


def _geometric(a: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``(1 - (1 - a)^k) / a``, equal to ``k`` at ``a = 0`` (expected attempts' reach)."""
    safe = torch.where(a > 0, a, torch.ones_like(a))
    val = (1.0 - (1.0 - a) ** k) / safe
    return torch.where(a > 0, val, k.to(val.dtype))


def resampling_accuracy(*, r: Any, k: Any, fpr: float, fnr: float = 0.0) -> torch.Tensor:
    """``Acc(k) = c r (1 - beta^k) / a``: P(the first accepted sample within k is correct).

    Args:
        r: per-problem probability that a sample is correct (tensor or float), broadcast with
            ``k``.
        k: attempts (int tensor or int, ``>= 0``; 0 gives 0).
        fpr: P(accept | incorrect) = 1 - soundness.
        fnr: P(reject | correct) = 1 - completeness.
    """
    fn = "resampling_accuracy"
    fpr, fnr = _rates(fn, fpr, fnr)
    rt, kt = _prob(fn, "r", r), _ks(fn, k)
    good, a = _accept_parts(rt, fpr, fnr)
    return good * _geometric(a, kt)


def resampling_ceiling(*, r: Any, fpr: float, fnr: float = 0.0) -> torch.Tensor:
    """``Acc(inf) = c r / (c r + fpr (1 - r))`` (0 where nothing is ever accepted)."""
    fn = "resampling_ceiling"
    fpr, fnr = _rates(fn, fpr, fnr)
    rt = _prob(fn, "r", r)
    good, a = _accept_parts(rt, fpr, fnr)
    return torch.where(a > 0, good / torch.where(a > 0, a, torch.ones_like(a)), torch.zeros_like(a))


def resampling_utility(
    *, r: Any, k: Any, fpr: float, fnr: float = 0.0, cost: float
) -> torch.Tensor:
    """``U(k) = (1 - beta^k) / a * (c r - cost fpr (1 - r))`` (V_fp = -cost, abstain 0)."""
    fn = "resampling_utility"
    fpr, fnr = _rates(fn, fpr, fnr)
    c_ = check_range(fn, "cost", cost, 0.0, float("inf"))
    rt, kt = _prob(fn, "r", r), _ks(fn, k)
    good, a = _accept_parts(rt, fpr, fnr)
    return _geometric(a, kt) * (good - c_ * fpr * (1.0 - rt))


def mixture_utility(
    *,
    rates: Any,
    weights: Any,
    k_max: int,
    fpr: float,
    fnr: float = 0.0,
    cost: float,
    notebook: bool = False,
) -> torch.Tensor:
    """``U(1..k_max)`` for a mixture of problem types (float64, ``(k_max,)``).

    Exact: the reward of attempt k is ``sum_j p_j beta_j^(k-1) v_j`` with
    ``v_j = c r_j - cost fpr (1 - r_j)``; U is its cumulative sum. ``notebook=True`` reproduces
    the official notebook: ``(sum_j pi_j v_j) * (sum_j pi_j beta_j^(k-1))`` with the posterior
    ``pi_j = p_j beta_j^(k-1) / sum_i p_i beta_i^(k-1)`` (the belief update counted twice).

    Args:
        rates: ``(J,)`` per-type probability that a sample is correct.
        weights: ``(J,)`` type probabilities (they must sum to 1).
        k_max: the largest k.
        fpr, fnr: the verifier's error rates.
        cost: the cost of a false positive relative to a true positive's benefit.
        notebook: use the notebook's (double-counting) expression.
    """
    fn = "mixture_utility"
    fpr, fnr = _rates(fn, fpr, fnr)
    c_ = check_range(fn, "cost", cost, 0.0, float("inf"))
    km = check_int(fn, "k_max", k_max, min_value=1)
    check_bool(fn, "notebook", notebook)
    r = _prob(fn, "rates", rates).double().reshape(-1)
    p = _prob(fn, "weights", weights).double().reshape(-1)
    if r.shape != p.shape:
        raise ValueError(
            f"{fn}: rates and weights must have one length; got {r.numel()}, {p.numel()}"
        )
    if abs(float(p.sum()) - 1.0) > 1e-6:
        raise ValueError(f"{fn}: weights must sum to 1; got {float(p.sum())}")
    good, a = _accept_parts(r, fpr, fnr)
    beta = 1.0 - a
    value = good - c_ * fpr * (1.0 - r)  # (J,)
    ks = torch.arange(km, dtype=torch.float64)[:, None]  # k - 1
    reach = beta[None, :] ** ks  # (k_max, J): beta_j^(k-1)
    if notebook:
        post = p * reach
        post = post / post.sum(1, keepdim=True)
        per = (post * value).sum(1) * (post * reach).sum(1)
    else:
        per = (p * reach * value).sum(1)
    return per.cumsum(0)


def optimal_k(utility: torch.Tensor) -> int:
    """``k* = argmax_k U(k)`` (1-based; the first maximum), or 0 if that maximum is negative."""
    u = check_tensor("optimal_k", "utility", utility)
    if u.dim() != 1 or u.numel() == 0:
        raise ValueError(
            f"optimal_k: utility must be a non-empty (K,) tensor; got {tuple(u.shape)}"
        )
    best = int(u.argmax())
    return 0 if float(u[best]) < 0 else best + 1


def noisy_verdicts(
    correct: torch.Tensor, *, fpr: float, fnr: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Verdicts of a verifier with known error rates: accept a correct item w.p. ``1 - fnr``,
    an incorrect one w.p. ``fpr`` (independent draws); ``(N,)`` bool in, ``(N,)`` bool out."""
    fn = "noisy_verdicts"
    fpr, fnr = _rates(fn, fpr, fnr)
    c = check_tensor(fn, "correct", correct)
    if c.dtype != torch.bool:
        raise TypeError(f"{fn}: correct must be a bool tensor; got {c.dtype}")
    check_generator(fn, generator, c.device)
    u = torch.rand(c.shape, generator=generator, device=c.device)
    return torch.where(c, u >= fnr, u < fpr)


@dataclass(frozen=True)
class ResampleResult:
    """The outcome of :func:`resample` for N items.

    Attributes:
        answers: the first accepted candidate of each item, or None (abstained).
        accepted: ``(N,)`` bool.
        attempts: ``(N,)`` int64 attempts used (k for an item that abstained).
    """

    answers: list[Any]
    accepted: torch.Tensor
    attempts: torch.Tensor


def resample(
    n: int,
    *,
    k: int,
    generate: Callable[[torch.Tensor, torch.Generator | None], list[Any]],
    verify: Callable[[torch.Tensor, list[Any], torch.Generator | None], torch.Tensor],
    generator: torch.Generator | None = None,
) -> ResampleResult:
    """Sample until the verifier accepts or ``k`` attempts, for ``n`` items at once.

    Args:
        n: the number of items (problems).
        k: the attempt budget per item.
        generate: ``generate(index, generator)``: one candidate for each item in ``index``
            (int64 ``(P,)``), a list of P.
        verify: ``verify(index, candidates, generator)``: ``(P,)`` bool verdicts.
        generator: passed to both callables (all draws of a run from one generator).
    """
    fn = "resample"
    n = check_int(fn, "n", n, min_value=1)
    k = check_int(fn, "k", k, min_value=1)
    check_generator(fn, generator)
    answers: list[Any] = [None] * n
    accepted = torch.zeros(n, dtype=torch.bool)
    attempts = torch.zeros(n, dtype=torch.long)
    pending = torch.arange(n)
    for _ in range(k):
        if pending.numel() == 0:
            break
        cands = list(generate(pending, generator))
        if len(cands) != pending.numel():
            raise ValueError(
                f"{fn}: generate returned {len(cands)} candidates for {pending.numel()} items"
            )
        ok = torch.as_tensor(verify(pending, cands, generator), dtype=torch.bool).cpu().reshape(-1)
        attempts[pending] += 1
        for j in torch.nonzero(ok).flatten().tolist():
            answers[int(pending[j])] = cands[j]
        accepted[pending[ok]] = True
        pending = pending[~ok]
    return ResampleResult(answers, accepted, attempts)


class ImperfectVerifier(nn.Module):
    """The closed forms of resampling with a verifier of rates ``fpr``, ``fnr`` and a FP ``cost``.

    ``forward(r, k) -> Acc(k)`` (:func:`resampling_accuracy`); :meth:`ceiling`,
    :meth:`utility`, :meth:`verdicts` (draws with ``generator=``).

    Example:
        >>> import torch
        >>> v = ImperfectVerifier(fpr=0.25, fnr=0.0, cost=1.0)
        >>> round(float(v.ceiling(torch.tensor(0.5))), 3)
        0.8
    """

    def __init__(self, *, fpr: float = 0.25, fnr: float = 0.0, cost: float = 1.0) -> None:
        super().__init__()
        self.fpr, self.fnr = _rates("ImperfectVerifier", fpr, fnr)
        self.cost = check_range("ImperfectVerifier", "cost", cost, 0.0, float("inf"))

    def extra_repr(self) -> str:
        return f"fpr={self.fpr}, fnr={self.fnr}, cost={self.cost}"

    def forward(self, r: torch.Tensor, k: Any) -> torch.Tensor:
        return resampling_accuracy(r=r, k=k, fpr=self.fpr, fnr=self.fnr)

    def ceiling(self, r: torch.Tensor) -> torch.Tensor:
        """:func:`resampling_ceiling` at this verifier's rates."""
        return resampling_ceiling(r=r, fpr=self.fpr, fnr=self.fnr)

    def utility(self, r: torch.Tensor, k: Any) -> torch.Tensor:
        """:func:`resampling_utility` at this verifier's rates and cost."""
        return resampling_utility(r=r, k=k, fpr=self.fpr, fnr=self.fnr, cost=self.cost)

    def verdicts(
        self, correct: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """:func:`noisy_verdicts` at this verifier's rates."""
        return noisy_verdicts(correct, fpr=self.fpr, fnr=self.fnr, generator=generator)
