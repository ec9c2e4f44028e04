"""Per-step negatives from incorrect synthetic traces (Setlur et al., NeurIPS 2024).

Setlur, Garg, Geng, Garg, Smith, Kumar. *RL on Incorrect Synthetic Data Scales the Efficiency of
LLM Math Reasoning by Eight-Fold.* NeurIPS 2024, arXiv 2406.14532. The official repository
(``ars22/scaling-LLM-math-synthetic-data``) is empty; the per-step DPO it uses follows Hwang et
al.'s Self-Explore (``hbin0701/Self-Explore``), whose code is transcribed here:

- **First pit** (``gen/gen_step_explore.py``, ``test``): for a wrong trace ``y-`` split into
  steps ``y_1..y_L``, sample ``k = 4`` completions after every prefix ``x + y_{1:i}``; the pit is
  the first ``i`` with **no** correct completion (the Monte-Carlo success estimate drops to 0),
  searched over at most 20 steps; a trace without a pit is dropped. :func:`first_pit`.
- **Per-step pair** (``form_gpair``): pit ``p = 1``: prompt ``x``, rejected ``y-_1``, chosen the
  original positive ``y+``; pit ``p > 1``: prompt ``x + y-_{1:p-1}``, rejected ``y-_p`` (only the
  pit step), chosen the shortest correct completion sampled after that prefix that was not used
  yet and does not contain the rejected text. :func:`per_step_pair`.
- **Outcome pair** (``gen/get_dpo_data.py``, GSM8K): per positive, the wrong sample with the
  largest edit distance to it. :func:`outcome_pair`.
- **Objective**: DPO on the pairs, ``beta = 0.1`` (``scripts/gsm8k/dpo/config.yaml``).
  :func:`dpo_loss` (the same function serves outcome DPO); SFT on positives is
  :func:`sft_nll`.

The paper's Monte-Carlo advantages (``Q_hat`` = share of correct rollouts after a prefix,
``A(y_i) = Q_hat(y_{1:i}) - Q_hat(y_{1:i-1})``) are :func:`mc_values` / :func:`step_advantages`,
and its advantage-weighted equivalent :func:`advantage_weighted_nll` (**[paper, unverified]**).
Everything works on tensors of success counts and summed log-probabilities; running a model is
the caller's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from posneg._checks import (
    check_int,
    check_positive,
    check_reduction,
    check_same_shape,
    check_tensor,
)
from posneg._tiling import reduce_loss
from posneg._types import Reduction

__all__ = [
    "CITATION",
    "PerStepDPOLoss",
    "StepPair",
    "advantage_weighted_nll",
    "dpo_loss",
    "edit_distance",
    "first_pit",
    "mc_values",
    "outcome_pair",
    "per_step_pair",
    "sft_nll",
    "step_advantages",
]

CITATION = """@inproceedings{setlur2024rl,
  title     = {{RL} on Incorrect Synthetic Data Scales the Efficiency of {LLM} Math Reasoning
               by Eight-Fold},
  author    = {Setlur, Amrith and Garg, Saurabh and Geng, Xinyang and Garg, Naman and
               Smith, Virginia and Kumar, Aviral},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2024},
  note      = {arXiv:2406.14532}
}
"""

#: Self-Explore's hard limit on the steps searched for a pit.
MAX_PIT_STEPS = 20


def _float(fn: str, name: str, x: object) -> torch.Tensor:
    t = check_tensor(fn, name, x)
    if not t.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating tensor; got {t.dtype}")
    return t


def first_pit(
    correct_counts: torch.Tensor,
    *,
    lengths: torch.Tensor | None = None,
    max_steps: int = MAX_PIT_STEPS,
) -> torch.Tensor:
    """The first pit of each wrong trace: the first step after which no rollout succeeds.

    Self-Explore (``gen/gen_step_explore.py``, ``test``, 8d037db): ``correct_counts[n, i]`` is
    the number of correct completions among the ``k`` sampled after ``x + y_{1:i+1}``; the pit
    is the first step ``i`` (1-based) with a count of 0, searched over the first
    ``min(length, max_steps)`` steps. Steps after the pit are never explored in the code, so
    their counts are ignored here.

    Args:
        correct_counts: ``(N, L)`` integer (or bool) counts, step ``i + 1`` in column ``i``.
        lengths: ``(N,)`` the number of real steps of each trace (``None``: ``L``).
        max_steps: the search limit (20 in Self-Explore).

    Returns:
        ``(N,)`` int64 1-based pit steps; 0 where a trace has no pit (the code drops it).

    Example:
        >>> import torch
        >>> first_pit(torch.tensor([[2, 1, 0, 0], [1, 1, 1, 3]])).tolist()
        [3, 0]
    """
    fn = "first_pit"
    c = check_tensor(fn, "correct_counts", correct_counts)
    if c.dim() != 2 or c.is_floating_point() or c.is_complex():
        raise ValueError(
            f"{fn}: correct_counts must be a 2-D integer tensor; got {c.dtype} {tuple(c.shape)}"
        )
    if bool((c < 0).any()):
        raise ValueError(f"{fn}: correct_counts must be >= 0")
    cap = check_int(fn, "max_steps", max_steps, min_value=1)
    n, steps = c.shape
    if lengths is None:
        lens = torch.full((n,), steps, dtype=torch.long, device=c.device)
    else:
        lens = check_tensor(fn, "lengths", lengths).to(torch.long)
        if lens.shape != (n,) or bool(((lens < 0) | (lens > steps)).any()):
            raise ValueError(f"{fn}: lengths must be (N,) in [0, L]; got {tuple(lens.shape)}")
    idx = torch.arange(1, steps + 1, device=c.device)
    live = (idx[None] <= lens[:, None]) & (idx[None] <= cap)
    pit = (c == 0) & live
    first = torch.where(pit, idx[None], torch.full_like(idx[None], steps + 1)).amin(1)
    return torch.where(first > steps, torch.zeros_like(first), first)


def mc_values(correct: torch.Tensor) -> torch.Tensor:
    """Monte-Carlo success estimates ``Q_hat`` from rollout outcomes.

    ``Q_hat(x, y_{1:i}) = (1/M) sum_m 1[rollout m after y_{1:i} is correct]`` (Setlur et al.,
    Sec. 5). Column 0 is the prompt alone (``i = 0``).

    Args:
        correct: ``(N, L + 1, M)`` bool/0-1 outcomes of ``M`` rollouts after each prefix.

    Returns:
        ``(N, L + 1)`` float32 estimates in ``[0, 1]``.
    """
    c = check_tensor("mc_values", "correct", correct)
    if c.dim() != 3 or c.shape[2] < 1:
        raise ValueError(
            f"mc_values: correct must be (N, L + 1, M) with M >= 1; got {tuple(c.shape)}"
        )
    return c.to(torch.float32 if not c.is_floating_point() else c.dtype).mean(2)


def step_advantages(values: torch.Tensor) -> torch.Tensor:
    """Per-step advantages ``A(y_i) = Q_hat(y_{1:i}) - Q_hat(y_{1:i-1})``.

    Args:
        values: ``(N, L + 1)`` success estimates, column 0 the prompt alone.

    Returns:
        ``(N, L)``; the advantages telescope: ``A.sum(1) = values[:, -1] - values[:, 0]``.
    """
    v = _float("step_advantages", "values", values)
    if v.dim() != 2 or v.shape[1] < 2:
        raise ValueError(
            f"step_advantages: values must be (N, L + 1) with L >= 1; got {tuple(v.shape)}"
        )
    return v[:, 1:] - v[:, :-1]


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float = 0.1,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """The DPO loss on (chosen, rejected) pairs: per-step when the pairs are per-step.

    ``L = -log sigmoid(beta * [(log pi(c) - log pi_ref(c)) - (log pi(r) - log pi_ref(r))])``
    with ``log pi(.)`` the summed token log-probabilities of a response given its pair's prompt.
    Per-step DPO (Self-Explore / Setlur et al.) and outcome DPO differ only in the pairs.
    Computed in float32 at least.

    Args:
        policy_chosen / policy_rejected: ``(P,)`` log-probabilities under the policy.
        ref_chosen / ref_rejected: ``(P,)`` under the frozen reference (the RFT/SFT model).
        beta: the KL strength (0.1 in Self-Explore's configs).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or ``(P,)`` for ``"none"``; ``log 2`` per pair when policy equals reference.

    Example:
        >>> import torch
        >>> z = torch.zeros(3)
        >>> round(float(dpo_loss(z, z, z, z)), 4)
        0.6931
    """
    fn = "dpo_loss"
    pc = _float(fn, "policy_chosen", policy_chosen)
    for name, t in (
        ("policy_rejected", policy_rejected),
        ("ref_chosen", ref_chosen),
        ("ref_rejected", ref_rejected),
    ):
        check_same_shape(fn, name, _float(fn, name, t), "policy_chosen", pc)
    if pc.dim() != 1:
        raise ValueError(f"{fn}: log-probabilities must be 1-D (P,); got {tuple(pc.shape)}")
    b = check_positive(fn, "beta", beta)
    red = check_reduction(fn, reduction)
    dt = torch.promote_types(pc.dtype, torch.float32)
    margin = (pc.to(dt) - ref_chosen.to(dt)) - (policy_rejected.to(dt) - ref_rejected.to(dt))
    return reduce_loss(-F.logsigmoid(b * margin), red)


def sft_nll(logps: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """SFT on positives (the RFT baseline): the negative log-likelihood ``-log pi(y+ | x)``.

    Args:
        logps: ``(P,)`` summed log-probabilities of the positives.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    t = _float("sft_nll", "logps", logps)
    red = check_reduction("sft_nll", reduction)
    return reduce_loss(-t.to(torch.promote_types(t.dtype, torch.float32)), red)


def advantage_weighted_nll(
    step_logps: torch.Tensor, advantages: torch.Tensor, *, beta: float = 0.1
) -> torch.Tensor:
    """The advantage-weighted RL objective per-step DPO approximates (**[paper, unverified]**).

    ``L = -mean_n sum_i exp(A(y_i) / beta) * log pi(y_i | x, y_{1:i-1})`` (Setlur et al.,
    Sec. 5). With all advantages 0 it is the SFT loss on the whole trace.

    Args:
        step_logps: ``(N, L)`` log-probabilities of each step.
        advantages: ``(N, L)`` per-step advantages (no gradient flows into them).
        beta: temperature of the weights.
    """
    fn = "advantage_weighted_nll"
    lp = _float(fn, "step_logps", step_logps)
    a = _float(fn, "advantages", advantages)
    check_same_shape(fn, "advantages", a, "step_logps", lp)
    b = check_positive(fn, "beta", beta)
    dt = torch.promote_types(lp.dtype, torch.float32)
    w = torch.exp(a.detach().to(dt) / b)
    return -(w * lp.to(dt)).sum(-1).mean()


@dataclass(frozen=True)
class StepPair:
    """One preference pair: the chosen and rejected responses share ``prompt`` exactly."""

    prompt: str
    chosen: str
    rejected: str


def per_step_pair(
    prompt: str,
    steps: Sequence[str],
    pit: int,
    *,
    positive: str,
    completions: Sequence[str] = (),
    used: set[str] | None = None,
) -> StepPair | None:
    """The per-step pair of a wrong trace at its first pit (Self-Explore's ``form_gpair``).

    Args:
        prompt: the problem ``x``.
        steps: the wrong trace's steps ``y-_1..y-_L`` (concatenating them gives the trace).
        pit: the 1-based first pit (:func:`first_pit`); 0 means none (returns ``None``).
        positive: the original positive ``y+`` (the chosen response when ``pit == 1``).
        completions: correct completions sampled after ``x + y-_{1:pit-1}`` (``pit > 1``).
        used: chosen texts already used for this problem; the pick is added to it.

    Returns:
        ``StepPair`` or ``None`` (no pit, or no usable correct completion).

    Example:
        >>> per_step_pair("2+3*2:", ["5,", "1,"], 2, positive="5,0=0.", completions=["0=0."])
        StepPair(prompt='2+3*2:5,', chosen='0=0.', rejected='1,')
    """
    fn = "per_step_pair"
    p = check_int(fn, "pit", pit, min_value=0)
    if p > len(steps):
        raise ValueError(f"{fn}: pit must be <= the number of steps ({len(steps)}); got {p}")
    if p == 0:
        return None
    rejected = steps[p - 1]
    if p == 1:
        return StepPair(prompt, positive, rejected)
    pool = sorted(
        (c for c in completions if c not in (used or set()) and rejected not in c),
        key=len,
    )
    if not pool:
        return None
    if used is not None:
        used.add(pool[0])
    return StepPair(prompt + "".join(steps[: p - 1]), pool[0], rejected)


def edit_distance(a: Sequence[object], b: Sequence[object]) -> int:
    """Levenshtein distance (unit costs) between two sequences (strings or token lists)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def outcome_pair(prompt: str, positive: str, negatives: Sequence[str]) -> StepPair | None:
    """The outcome-level pair: the wrong sample farthest (edit distance) from the positive.

    Self-Explore ``gen/get_dpo_data.py`` (``collect_dpo_gsm8k``): ties go to the first. ``None``
    without negatives.
    """
    if not negatives:
        return None
    dists = [edit_distance(positive, n) for n in negatives]
    return StepPair(prompt, positive, negatives[dists.index(max(dists))])


class PerStepDPOLoss(nn.Module):
    """DPO on per-step (first-pit) pairs; see :func:`dpo_loss` and :func:`per_step_pair`.

    Example:
        >>> import torch
        >>> loss = PerStepDPOLoss(beta=0.1)
        >>> z = torch.zeros(4)
        >>> round(float(loss(z, z, z, z)), 4)
        0.6931
    """

    def __init__(self, beta: float = 0.1, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.beta = check_positive("PerStepDPOLoss", "beta", beta)
        self.reduction = check_reduction("PerStepDPOLoss", reduction)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, reduction={self.reduction!r}"

    def forward(
        self,
        policy_chosen: torch.Tensor,
        policy_rejected: torch.Tensor,
        ref_chosen: torch.Tensor,
        ref_rejected: torch.Tensor,
    ) -> torch.Tensor:
        return dpo_loss(
            policy_chosen,
            policy_rejected,
            ref_chosen,
            ref_rejected,
            beta=self.beta,
            reduction=self.reduction,
        )
