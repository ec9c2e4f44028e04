"""A generated multi-step arithmetic task whose answers and steps can be checked exactly.

A problem is a start digit and ``n_ops`` operations ``(op, digit)`` with ``op`` in ``+ - *``,
evaluated left to right modulo 10. The prompt is the expression and a colon, the completion
lists every intermediate value, then ``=`` and the answer, then ``.``::

    prompt      "3+8*2-5:"
    completion  "1,2,7=7."          (3+8=11 -> 1, 1*2 = 2, 2-5 = -3 -> 7)

Every prompt of a task has the same length, so batches need no padding. The exact verifier
compares the answer; :func:`step_correct` checks every intermediate value against the truth;
:func:`noisy_verify` is a verifier with known false-positive and false-negative rates (drawn
with a ``torch.Generator``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from posneg.text.verifiers import noisy_verdicts

__all__ = [
    "OPS",
    "ArithProblems",
    "answer_correct",
    "make_problems",
    "noisy_verify",
    "parse_completion",
    "step_correct",
    "step_reward",
]

#: The operations, in id order.
OPS = "+-*"


@dataclass(frozen=True)
class ArithProblems:
    """A batch of problems.

    Attributes:
        start: ``(N,)`` int64 start digits in ``[0, 10)``.
        ops: ``(N, S)`` int64 operation ids (index into :data:`OPS`).
        operands: ``(N, S)`` int64 operand digits in ``[0, 10)``.
    """

    start: torch.Tensor
    ops: torch.Tensor
    operands: torch.Tensor

    def __len__(self) -> int:
        return int(self.start.shape[0])

    @property
    def n_ops(self) -> int:
        """Operations per problem (``S``)."""
        return int(self.ops.shape[1])

    def steps(self) -> torch.Tensor:
        """``(N, S)`` the true intermediate values (the last one is the answer)."""
        vals = []
        cur = self.start.clone()
        for j in range(self.n_ops):
            op, d = self.ops[:, j], self.operands[:, j]
            cur = torch.where(op == 0, cur + d, torch.where(op == 1, cur - d, cur * d)) % 10
            vals.append(cur)
        return torch.stack(vals, 1)

    def answers(self) -> torch.Tensor:
        """``(N,)`` the true answers."""
        return self.steps()[:, -1]

    def prompts(self) -> list[str]:
        """The prompt strings (``"3+8*2-5:"``), all of length ``2 * S + 2``."""
        out = []
        for i in range(len(self)):
            s = str(int(self.start[i]))
            for j in range(self.n_ops):
                s += OPS[int(self.ops[i, j])] + str(int(self.operands[i, j]))
            out.append(s + ":")
        return out

    def completions(self) -> list[str]:
        """The correct completion strings (``"1,2,7=7."``)."""
        steps = self.steps().tolist()
        return [",".join(str(v) for v in row) + f"={row[-1]}." for row in steps]

    def subset(self, index: torch.Tensor) -> ArithProblems:
        """The problems at ``index``."""
        return ArithProblems(self.start[index], self.ops[index], self.operands[index])


def make_problems(
    n: int, *, n_ops: int = 3, generator: torch.Generator | None = None
) -> ArithProblems:
    """Draw ``n`` problems with ``n_ops`` operations each (uniform digits and operations)."""
    if n < 1 or n_ops < 1:
        raise ValueError(f"make_problems: n and n_ops must be >= 1; got {n}, {n_ops}")
    start = torch.randint(10, (n,), generator=generator)
    ops = torch.randint(len(OPS), (n, n_ops), generator=generator)
    operands = torch.randint(10, (n, n_ops), generator=generator)
    return ArithProblems(start, ops, operands)


def parse_completion(text: str, n_ops: int) -> tuple[list[int | None], int | None]:
    """``(steps, answer)`` read from a completion; unreadable parts are ``None``.

    The text is cut at the first ``.``; steps are the comma-separated items before ``=``
    (padded with ``None`` or cut to ``n_ops``), the answer the item after it.
    """
    body = text.split(".", 1)[0]
    if "=" in body:
        head, ans_txt = body.split("=", 1)
    else:
        head, ans_txt = body, ""
    items = head.split(",") if head else []

    def num(s: str) -> int | None:
        return int(s) if len(s) == 1 and s.isdigit() else None

    steps = [num(s) for s in items[:n_ops]]
    steps += [None] * (n_ops - len(steps))
    return steps, num(ans_txt)


def answer_correct(problems: ArithProblems, completions: list[str]) -> torch.Tensor:
    """``(N,)`` bool: the exact verifier (the completion's answer equals the true answer)."""
    truth = problems.answers().tolist()
    return torch.tensor(
        [
            parse_completion(c, problems.n_ops)[1] == t
            for c, t in zip(completions, truth, strict=True)
        ]
    )


def step_correct(problems: ArithProblems, completions: list[str]) -> torch.Tensor:
    """``(N, S)`` bool: which intermediate values are right (step ``j`` against the truth)."""
    truth = problems.steps().tolist()
    rows = []
    for c, t in zip(completions, truth, strict=True):
        steps, _ = parse_completion(c, problems.n_ops)
        rows.append([s == v for s, v in zip(steps, t, strict=True)])
    return torch.tensor(rows, dtype=torch.bool)


def step_reward(problems: ArithProblems, completions: list[str]) -> torch.Tensor:
    """``(N,)`` float reward in ``[0, 1]``: the share of correct steps and answer (S + 1 checks)."""
    checks = torch.cat(
        [step_correct(problems, completions), answer_correct(problems, completions)[:, None]], 1
    )
    return checks.float().mean(1)


def noisy_verify(
    problems: ArithProblems,
    completions: list[str],
    *,
    fpr: float,
    fnr: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``(N,)`` bool verdicts of a verifier with known error rates on the exact check.

    A correct completion is rejected with probability ``fnr``, an incorrect one accepted with
    probability ``fpr`` (independently per call).
    """
    return noisy_verdicts(
        answer_correct(problems, completions), fpr=fpr, fnr=fnr, generator=generator
    )
