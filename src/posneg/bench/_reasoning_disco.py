"""Section ``disco`` of `posneg bench reasoning`: DISCO-filtered vs unfiltered counterfactuals.

Chen et al. (ACL 2023) claim students trained with DISCO counterfactuals are more robust on NLI
stress tests. The check here (the card's small CPU version; no LLM, no download):

- **Task**: template NLI. Premise ``"the S V the O"``; hypothesis with the same subject and object
  (entailment), the same subject and another object (contradiction: one thing held at a time),
  or another subject (neutral). A shortcut word ``"really"`` in the hypothesis goes with
  entailment in 90% of training examples (10% otherwise); the **stress test** flips it.
- **Student / teacher**: a small MLP on slot one-hots (premise and hypothesis words) and the
  shortcut flag. The teacher is the same MLP trained on a larger shortcut-free set.
- **Generator** (the LLM stand-in): for an entailment example, target contradiction (span = the
  object) or neutral (span = the subject), and a proposal that is a valid new word (40%), the
  original word copied (15%), an adjective before the original word ("big ball": the label
  does not change, and no heuristic sees it; 25%), a word of the wrong slot (10%), a negated
  word (5%) or a forbidden phrase (5%): mostly invalid, as the card asks.
- **Arms**: (a) the original data, (b) + every proposal labelled with its target,
  (c) + the proposals DISCO keeps (:class:`~posneg.text.disco.DiscoPipeline`, heuristics with
  whole-word negation, teacher threshold 0.25). Also counted: how many proposals the released
  substring negation test would have rejected (the word ``"notebook"`` contains ``"no"``).

Reported per seed: in-distribution and stress accuracy of each arm, counts and the share of
accepted proposals that are truly valid.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from posneg.bench._reasoning_context import ReasoningContext, Section
from posneg.text.disco import DiscoPipeline, heuristic_reason

__all__ = ["SECTIONS", "disco_section", "make_nli"]

SUBJ = ("man", "woman", "boy", "girl", "dog", "cat")
VERB = ("holds", "sees", "likes", "finds")
OBJ = ("ball", "book", "cup", "hat", "kite", "notebook")
ADJ = ("big", "old", "small", "red")
WORDS = ("the", "really", "not", "[blank]", *SUBJ, *VERB, *OBJ)
_IDX = {w: i for i, w in enumerate(WORDS)}
ENT, NEU, CON = 0, 1, 2


def make_nli(
    n: int, *, shortcut: float, generator: torch.Generator
) -> tuple[list[str], list[str], list[int]]:
    """``n`` template pairs; ``"really"`` goes with entailment with probability ``shortcut``."""
    prem, hyp, lab = [], [], []
    for _ in range(n):
        s, v, o, y = (int(torch.randint(k, (1,), generator=generator)) for k in (6, 4, 6, 3))
        s2, o2 = s, o
        if y == CON:
            o2 = (o + 1 + int(torch.randint(5, (1,), generator=generator))) % 6
        elif y == NEU:
            s2 = (s + 1 + int(torch.randint(5, (1,), generator=generator))) % 6
        p_really = shortcut if y == ENT else 1.0 - shortcut
        really = float(torch.rand((), generator=generator)) < p_really
        prem.append(f"the {SUBJ[s]} {VERB[v]} the {OBJ[o]}")
        adv = "really " if really else ""
        hyp.append(f"the {SUBJ[s2]} {adv}{VERB[v]} the {OBJ[o2]}")
        lab.append(y)
    return prem, hyp, lab


def _slots(sentence: str) -> tuple[str, str, str]:
    """(subject, verb, object): the word before the verb, the verb, the last word."""
    words = [w for w in sentence.split() if w != "really"]
    verb = next((i for i, w in enumerate(words) if w in VERB), None)
    if verb is None or verb == 0:
        return ("the", "the", words[-1] if words else "the")
    return (words[verb - 1], words[verb], words[-1])


def _features(prem: list[str], hyp: list[str]) -> torch.Tensor:
    """Slot one-hots of both sentences (unknown words -> the id of ``"the"``) and the shortcut."""
    rows = []
    for p, h in zip(prem, hyp, strict=True):
        x = torch.zeros(6 * len(WORDS) + 1)
        for k, sent in enumerate((p, h)):
            for j, w in enumerate(_slots(sent)):
                x[(3 * k + j) * len(WORDS) + _IDX.get(w, 0)] = 1.0
        x[-1] = float("really" in h.split())
        rows.append(x)
    return torch.stack(rows)


def _fit(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, steps: int) -> nn.Module:
    torch_seed = int(torch.randint(2**31, (1,), generator=g))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        net = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 3))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def _acc(net: nn.Module, data: tuple[list[str], list[str], list[int]]) -> float:
    with torch.no_grad():
        pred = net(_features(data[0], data[1])).argmax(1)
    return float((pred == torch.tensor(data[2])).float().mean())


def _propose(p: str, h: str, span: str, target: int, g: torch.Generator | None) -> list[str]:
    """The LLM stand-in: one mostly-invalid proposal for the blank."""
    u = float(torch.rand((), generator=g))
    vocab = OBJ if target == CON else SUBJ
    pick = vocab[int(torch.randint(len(vocab), (1,), generator=g))]
    if u < 0.4:
        return [pick]
    if u < 0.55:
        return [span]
    if u < 0.8:
        return [f"{ADJ[int(torch.randint(len(ADJ), (1,), generator=g))]} {span}"]
    if u < 0.9:
        return [VERB[int(torch.randint(len(VERB), (1,), generator=g))]]
    if u < 0.95:
        return [f"not {pick}"]
    return ["[blank]"]


def _truth(p: str, h: str) -> int | None:
    """The true label of a template pair, ``None`` when the premise is malformed."""
    (s1, v1, o1), (s2, _, o2) = _slots(p), _slots(h)
    if s1 not in SUBJ or v1 not in VERB or o1 not in OBJ or len(p.split()) > 6:
        return None
    if s1 != s2:
        return NEU
    return ENT if o1 == o2 else CON


def disco_section(ctx: ReasoningContext, g: torch.Generator) -> dict[str, Any]:
    """Student accuracy with no / unfiltered / DISCO-filtered counterfactuals (one seed)."""
    demo = ctx.preset == "demo"
    n_train, n_teacher, n_test, steps = (40, 150, 60, 30) if demo else (300, 3000, 600, 300)
    train = make_nli(n_train, shortcut=0.9, generator=g)
    clean = make_nli(n_teacher, shortcut=0.5, generator=g)
    test = make_nli(n_test, shortcut=0.9, generator=g)
    stress = make_nli(n_test, shortcut=0.1, generator=g)
    teacher = _fit(_features(clean[0], clean[1]), torch.tensor(clean[2]), g, steps)

    def teach(prem: list[str], hyp: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(teacher(_features(prem, hyp)), -1)

    src = [i for i, y in enumerate(train[2]) if y == ENT]
    targets = [CON if float(torch.rand((), generator=g)) < 0.5 else NEU for _ in src]
    spans = [train[0][i].split()[4 if t == CON else 1] for i, t in zip(src, targets, strict=True)]
    pipe = DiscoPipeline(_propose, [teach])
    cfs = pipe.run(
        [train[0][i] for i in src],
        [train[1][i] for i in src],
        [ENT] * len(src),
        spans,
        targets,
        generator=g,
    )
    substring_rejects = sum(
        heuristic_reason(
            train[0][src[c.index]], train[1][src[c.index]], c.gen_out, c.premise,
            new_label="contradiction" if c.new_label == CON else "neutral",
            negation_match="substring",
        ) is not None
        for c in cfs
        if c.reason is None
    )  # fmt: skip
    out: dict[str, Any] = {
        "proposals": float(len(cfs)),
        "heuristic_rejected": float(sum(c.reason is not None for c in cfs)),
        "accepted": float(sum(c.accepted for c in cfs)),
        "valid_share_all": float(
            sum(_truth(c.premise, c.hypothesis) == c.new_label for c in cfs) / max(1, len(cfs))
        ),
        "valid_share_accepted": float(
            sum(_truth(c.premise, c.hypothesis) == c.new_label for c in cfs if c.accepted)
            / max(1, sum(c.accepted for c in cfs))
        ),
        "substring_negation_rejects": float(substring_rejects),
        "teacher_accuracy": _acc(teacher, test),
    }
    arms = {"original": [], "unfiltered": cfs, "disco": [c for c in cfs if c.accepted]}
    seed = int(torch.randint(2**31, (1,), generator=g))
    for name, extra in arms.items():
        prem = train[0] + [c.premise for c in extra]
        hyp = train[1] + [c.hypothesis for c in extra]
        lab = train[2] + [c.new_label for c in extra]
        net = _fit(
            _features(prem, hyp), torch.tensor(lab), torch.Generator().manual_seed(seed), steps
        )
        out[f"{name}_test_accuracy"] = _acc(net, test)
        out[f"{name}_stress_accuracy"] = _acc(net, stress)
    return out


SECTIONS: dict[str, Section] = {"disco": disco_section}
