"""Section ``perstep`` of `posneg bench reasoning`: per-step DPO vs outcome DPO vs SFT on positives.

Setlur et al. (NeurIPS 2024): negatives with step-level credit (first-pit pairs, per-step DPO)
help more than outcome-level DPO pairs and than fine-tuning on the model's own correct samples
(RFT), which imitates spurious steps. Here, per seed, on the same ``n`` training problems:

1. the pretrained tiny GPT-2 samples ``k`` completions per problem; a problem with at least one
   correct and one wrong answer gives an outcome pair (:func:`~posneg.text.per_step.outcome_pair`:
   the first correct sample vs the wrong one farthest in edit distance);
2. the rejected trace is split into steps (``"d,"``, ..., ``"d=a."``); after each prefix the
   model samples ``m`` rollouts, and the first pit (:func:`~posneg.text.per_step.first_pit`) is
   the first prefix after which none reaches the right answer; the per-step pair
   (:func:`~posneg.text.per_step.per_step_pair`) is built from it (a full trace with a wrong
   answer has 0 successes by construction);
3. three copies of the model train for the same number of steps: SFT on the chosen positives
   (RFT), DPO on the outcome pairs, DPO on the per-step pairs (reference: the pretrained model,
   ``beta = 0.1``).

Reported: held-out answer accuracy and step accuracy (every intermediate value right) of each
arm and of the start model, the pairs' counts and the mean pit.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from posneg.bench._arith import ArithProblems, answer_correct, step_correct
from posneg.bench._reasoning_context import ReasoningContext, Section
from posneg.bench._tiny_gpt import CharTokenizer
from posneg.text.per_step import StepPair, dpo_loss, first_pit, outcome_pair, per_step_pair, sft_nll

__all__ = ["SECTIONS", "perstep_section", "sequence_logps", "split_steps"]


def split_steps(completion: str, n_ops: int) -> list[str] | None:
    """The steps of a well-formed completion (``"1,2,7=7."`` -> ``["1,", "2,", "7=7."]``)."""
    if not re.fullmatch(rf"(\d,){{{n_ops - 1}}}\d=\d\.", completion):
        return None
    return [completion[2 * i : 2 * i + 2] for i in range(n_ops - 1)] + [completion[2 * n_ops - 2 :]]


@torch.no_grad()
def _continue(
    model: Any, prefixes: list[str], k: int, temperature: float, g: torch.Generator, max_new: int
) -> list[str]:
    """``k`` sampled continuations of every prefix (all of one length), cut after ``.``."""
    tok = CharTokenizer()
    device = next(model.parameters()).device
    ids = torch.tensor([tok.encode(p) for p in prefixes for _ in range(k)], device=device)
    model.eval()
    new = []
    for _ in range(max_new):
        logits = model(input_ids=ids).logits[:, -1].float()
        nxt = torch.multinomial(torch.softmax(logits / temperature, -1).cpu(), 1, generator=g)
        new.append(nxt)
        ids = torch.cat([ids, nxt.to(device)], 1)
    out = []
    for row in torch.cat(new, 1).tolist():
        text = tok.decode(row)
        cut = text.find(".")
        out.append(text[: cut + 1] if cut >= 0 else text)
    return out


def sequence_logps(model: Any, prompts: list[str], responses: list[str]) -> torch.Tensor:
    """``(P,)`` summed log-probabilities of each response given its prompt (right padding)."""
    tok = CharTokenizer()
    device = next(model.parameters()).device
    rows = [tok.encode(p + r) for p, r in zip(prompts, responses, strict=True)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (row, p) in enumerate(zip(rows, prompts, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, len(p) : len(row)] = True
    ids, mask = ids.to(device), mask.to(device)
    att = (
        torch.arange(width, device=device)[None]
        < torch.tensor([len(r) for r in rows], device=device)[:, None]
    ).long()
    logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
    return (lp * mask[:, 1:]).sum(1)


def _pairs(
    ctx: ReasoningContext, probs: ArithProblems, g: torch.Generator, k: int, m: int
) -> tuple[list[StepPair], list[StepPair], list[int]]:
    """Outcome pairs, per-step pairs (from the outcome pairs' rejected traces) and the pits."""
    n, s = len(probs), probs.n_ops
    comps = ctx.sample(ctx.model, probs, k, g)
    rep = probs.subset(torch.arange(n).repeat_interleave(k))
    ok = answer_correct(rep, comps).reshape(n, k)
    prompts = probs.prompts()
    outcome: list[tuple[int, StepPair]] = []
    for i in range(n):
        row = comps[i * k : (i + 1) * k]
        pos = [c for c, y in zip(row, ok[i].tolist(), strict=True) if y]
        neg = [c for c, y in zip(row, ok[i].tolist(), strict=True) if not y and split_steps(c, s)]
        pair = outcome_pair(prompts[i], pos[0], neg) if pos else None
        if pair is not None:
            outcome.append((i, pair))
    if not outcome:
        return [], [], []
    counts = torch.zeros(len(outcome), s, dtype=torch.long)  # the full wrong trace: 0
    rollouts: list[list[list[str]]] = [[] for _ in outcome]
    for step in range(1, s):
        prefixes = [pr.prompt + pr.rejected[: 2 * step] for _, pr in outcome]
        conts = _continue(ctx.model, prefixes, m, ctx.temperature, g, 2 * (s - step) + 3)
        sub = probs.subset(torch.tensor([i for i, _ in outcome]).repeat_interleave(m))
        full = [prefixes[j // m][len(prompts[0]) :] + c for j, c in enumerate(conts)]
        good = answer_correct(sub, full).reshape(len(outcome), m)
        counts[:, step - 1] = good.sum(1)
        for j in range(len(outcome)):
            rollouts[j].append([conts[j * m + q] for q in range(m) if good[j, q]])
    pits = first_pit(counts).tolist()
    step_pairs: list[StepPair] = []
    for j, (i, pr) in enumerate(outcome):
        steps = split_steps(pr.rejected, s)
        if steps is None:  # traces without steps were filtered out above
            raise RuntimeError(f"perstep: rejected trace {j} has no steps after filtering")
        p = int(pits[j])
        found = per_step_pair(
            prompts[i],
            steps,
            p,
            positive=pr.chosen,
            completions=rollouts[j][p - 2] if p > 1 else (),
        )
        if found is not None:
            step_pairs.append(found)
    return [pr for _, pr in outcome], step_pairs, [int(p) for p in pits]


def _train(
    ctx: ReasoningContext,
    pairs: list[StepPair],
    kind: str,
    g: torch.Generator,
    steps: int,
    lr: float,
) -> Any:
    policy = ctx.fresh_policy()
    if not pairs:
        return policy
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    batch = min(32, len(pairs))
    for _ in range(steps):
        idx = torch.randperm(len(pairs), generator=g)[:batch].tolist()
        pr = [pairs[i].prompt for i in idx]
        ch = [pairs[i].chosen for i in idx]
        policy.train()
        if kind == "sft":
            loss = sft_nll(sequence_logps(policy, pr, ch))
        else:
            rj = [pairs[i].rejected for i in idx]
            with torch.no_grad():
                rc, rr = sequence_logps(ctx.model, pr, ch), sequence_logps(ctx.model, pr, rj)
            loss = dpo_loss(
                sequence_logps(policy, pr, ch), sequence_logps(policy, pr, rj), rc, rr, beta=0.1
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return policy.eval()


def _evaluate(ctx: ReasoningContext, model: Any, g: torch.Generator, k: int) -> tuple[float, float]:
    rep = ctx.test.subset(torch.arange(len(ctx.test)).repeat_interleave(k))
    comps = ctx.sample(model, ctx.test, k, g)
    return (
        float(answer_correct(rep, comps).float().mean()),
        float(step_correct(rep, comps).all(1).float().mean()),
    )


def perstep_section(ctx: ReasoningContext, g: torch.Generator) -> dict[str, Any]:
    """Held-out accuracy of SFT on positives, outcome DPO and per-step DPO (one seed)."""
    demo = ctx.preset == "demo"
    n = min(len(ctx.train), 12 if demo else 128)
    k, m = (4, 2) if demo else (4, 4)
    steps, lr, n_eval = (2, 1e-3, 1) if demo else (40, 1.5e-4, 1)
    outcome, per_step, pits = _pairs(ctx, ctx.train.subset(torch.arange(n)), g, k, m)
    out: dict[str, Any] = {
        "outcome_pairs": float(len(outcome)),
        "per_step_pairs": float(len(per_step)),
        "mean_pit": float(sum(p for p in pits if p) / max(1, sum(1 for p in pits if p))),
    }
    eval_seed = int(torch.randint(2**31, (1,), generator=g))
    acc, step_acc = _evaluate(ctx, ctx.model, torch.Generator().manual_seed(eval_seed), n_eval)
    out["start_accuracy"], out["start_step_accuracy"] = acc, step_acc
    positives = [StepPair(p.prompt, p.chosen, "") for p in outcome]
    for name, pairs, kind in (
        ("sft_positives", positives, "sft"),
        ("outcome_dpo", outcome, "dpo"),
        ("per_step_dpo", per_step, "dpo"),
    ):
        policy = _train(ctx, pairs, kind, torch.Generator().manual_seed(eval_seed + 1), steps, lr)
        acc, step_acc = _evaluate(ctx, policy, torch.Generator().manual_seed(eval_seed), n_eval)
        out[f"{name}_accuracy"], out[f"{name}_step_accuracy"] = acc, step_acc
    return out


SECTIONS: dict[str, Section] = {"perstep": perstep_section}
