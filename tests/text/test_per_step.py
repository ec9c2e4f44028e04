"""Per-step negatives: first pit, MC advantages, per-step / outcome pairs, DPO and SFT losses.

Transcribed behaviour of Self-Explore (hbin0701/Self-Explore @ 8d037db), the code Setlur et al.
(arXiv 2406.14532) follow: ``gen/gen_step_explore.py`` ``test`` (a sample is "completed" at the
first step whose k completions contain no correct answer, or at its last step; at most 20 steps)
and the pair rules of ``form_gpair`` / ``collect_dpo_gsm8k`` as described on the card.
"""

from __future__ import annotations

import math

import pytest
import torch

from posneg.text.per_step import (
    PerStepDPOLoss,
    StepPair,
    advantage_weighted_nll,
    dpo_loss,
    edit_distance,
    first_pit,
    mc_values,
    outcome_pair,
    per_step_pair,
    sft_nll,
    step_advantages,
)


def _self_explore_pit(counts: list[int], num_steps: int, cap: int = 20) -> int:
    """Transcription of the exploration loop for one sample: the step at which it completes
    because no completion was correct (1-based), or 0 when it completes only by running out."""
    for step_idx in range(min(num_steps, cap)):
        if counts[step_idx] == 0:
            return step_idx + 1
    return 0


def test_first_pit_matches_the_exploration_loop() -> None:
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 3, (200, 25), generator=g)
    lengths = torch.randint(0, 26, (200,), generator=g)
    got = first_pit(counts, lengths=lengths).tolist()
    want = [_self_explore_pit(c, int(n)) for c, n in zip(counts.tolist(), lengths, strict=True)]
    assert got == want


def test_first_pit_cases() -> None:
    c = torch.tensor([[2, 1, 0, 0], [1, 1, 1, 3], [0, 4, 4, 4]])
    assert first_pit(c).tolist() == [3, 0, 1]
    assert first_pit(c, max_steps=2).tolist() == [0, 0, 1]
    assert first_pit(c, lengths=torch.tensor([2, 4, 4])).tolist() == [0, 0, 1]
    assert first_pit(c.bool()).tolist() == [3, 0, 1]


def test_pit_is_zero_success_not_the_first_drop() -> None:
    """Paper vs code: the paper calls a step with A << 0 a critical mistake; Self-Explore's pit
    (followed here) is the first step with *no* successful rollout, which can come later."""
    counts = torch.tensor([[4, 2, 1, 0]])
    q = torch.cat([torch.ones(1, 1), counts / 4.0], 1)
    first_drop = int((step_advantages(q) < 0).float().argmax()) + 1
    assert first_drop == 2
    assert first_pit(counts).tolist() == [4]


def test_mc_advantages_telescope() -> None:
    g = torch.Generator().manual_seed(1)
    outcomes = torch.rand(5, 7, 16, generator=g) < 0.4
    q = mc_values(outcomes)
    a = step_advantages(q)
    torch.testing.assert_close(a.sum(1), q[:, -1] - q[:, 0])
    torch.testing.assert_close(q, outcomes.float().mean(2))


def test_mc_advantage_converges_on_a_known_tree() -> None:
    """Q(prefix) known exactly: rollouts succeed with prob Q; the MC advantage converges."""
    q_true = torch.tensor([0.6, 0.7, 0.2, 0.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    errs = []
    for m in (16, 4096):
        outcomes = torch.rand(1, 4, m, generator=g, dtype=torch.float64) < q_true[None, :, None]
        errs.append(
            float((step_advantages(mc_values(outcomes).double()) - q_true.diff()).abs().max())
        )
    assert errs[1] < 0.05 and errs[1] < errs[0] + 1e-9


def test_dpo_against_naive_float64_loop() -> None:
    g = torch.Generator().manual_seed(3)
    pc, pr, rc, rr = (torch.randn(6, generator=g, dtype=torch.float64) * 3 for _ in range(4))
    beta = 0.3
    naive = []
    for i in range(6):
        z = beta * ((float(pc[i]) - float(rc[i])) - (float(pr[i]) - float(rr[i])))
        naive.append(-math.log(1.0 / (1.0 + math.exp(-z))))
    got = dpo_loss(pc, pr, rc, rr, beta=beta, reduction="none")
    torch.testing.assert_close(got, torch.tensor(naive, dtype=torch.float64))
    torch.testing.assert_close(dpo_loss(pc, pr, rc, rr, beta=beta), got.mean())
    torch.testing.assert_close(dpo_loss(pc, pr, rc, rr, beta=beta, reduction="sum"), got.sum())


def test_dpo_is_log2_at_reference_and_a_step_raises_chosen() -> None:
    z = torch.randn(5, generator=torch.Generator().manual_seed(4))
    assert float(dpo_loss(z, z + 1, z, z + 1)) == pytest.approx(math.log(2))
    theta = torch.zeros(2, requires_grad=True)  # a two-outcome policy: log pi = log_softmax
    ref = torch.log_softmax(torch.zeros(2), 0)
    lp = torch.log_softmax(theta, 0)
    loss = dpo_loss(lp[:1], lp[1:], ref[:1], ref[1:])
    loss.backward()
    with torch.no_grad():
        new = torch.log_softmax(theta - 1.0 * theta.grad, 0)  # type: ignore[operator]
    assert float(new[0]) > float(lp[0].detach())


def test_per_step_pair_rules() -> None:
    steps = ["5,", "1,", "3=3."]
    # p = 1: the outcome-level pair restricted to the first step (the card's property).
    assert per_step_pair("2+3*2-1:", steps, 1, positive="5,0,9=9.") == StepPair(
        "2+3*2-1:", "5,0,9=9.", "5,"
    )
    # p > 1: shortest unused correct completion not containing the rejected step.
    used: set[str] = set()
    comps = ["0,9=9.", "1,0,9=9.", "0,9=9.."]
    pair = per_step_pair("2+3*2-1:", steps, 2, positive="x", completions=comps, used=used)
    assert pair == StepPair("2+3*2-1:5,", "0,9=9.", "1,")
    assert used == {"0,9=9."}
    again = per_step_pair("2+3*2-1:", steps, 2, positive="x", completions=comps, used=used)
    assert again is not None and again.chosen == "0,9=9.."
    assert per_step_pair("p", steps, 0, positive="x") is None
    assert per_step_pair("p", steps, 3, positive="x", completions=["3=3."]) is None


def test_pair_shares_the_prefix_as_text_and_tokens() -> None:
    from posneg.bench._tiny_gpt import CharTokenizer

    tok = CharTokenizer()
    pair = per_step_pair("2+3*2-1:", ["5,", "1,", "3=3."], 3, positive="x", completions=["9=9."])
    assert pair is not None
    for resp in (pair.chosen, pair.rejected):
        ids = tok.encode(pair.prompt + resp)
        assert ids[: len(pair.prompt)] == tok.encode(pair.prompt)


def test_outcome_pair_takes_the_farthest_negative() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([1, 2, 3], []) == 3
    pair = outcome_pair("x", "1,2,3=3.", ["1,2,4=4.", "9,8,7=7.", "1,2,3=4."])
    assert pair == StepPair("x", "1,2,3=3.", "9,8,7=7.")
    assert outcome_pair("x", "a", []) is None


def test_per_step_equals_outcome_dpo_when_the_pit_is_the_first_step_of_a_one_step_trace() -> None:
    """All steps equally good (one step, the whole trace wrong): pit 1, same pair, same loss."""
    pos, neg = "7=7.", "3=3."
    step = per_step_pair("1+6:", [neg], 1, positive=pos)
    out = outcome_pair("1+6:", pos, [neg])
    assert step == out


def test_sft_and_advantage_weighted() -> None:
    lp = torch.tensor([-1.0, -2.0, -3.0])
    assert float(sft_nll(lp)) == pytest.approx(2.0)
    steps = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]])
    assert float(advantage_weighted_nll(steps, torch.zeros(2, 2))) == pytest.approx(2.0)
    a = torch.tensor([[0.1, -0.2], [0.0, 0.3]])
    naive = (
        -sum(
            math.exp(float(a[i, j]) / 0.1) * float(steps[i, j]) for i in range(2) for j in range(2)
        )
        / 2
    )
    assert float(advantage_weighted_nll(steps, a, beta=0.1)) == pytest.approx(naive, rel=1e-6)


def test_module_repr_and_call() -> None:
    loss = PerStepDPOLoss(beta=0.2, reduction="sum")
    assert "beta=0.2" in repr(loss) and "'sum'" in repr(loss)
    z = torch.zeros(3)
    assert float(loss(z, z, z, z)) == pytest.approx(3 * math.log(2))


def test_errors_name_function_and_argument() -> None:
    with pytest.raises(ValueError, match="first_pit: correct_counts"):
        first_pit(torch.zeros(3))
    with pytest.raises(ValueError, match="first_pit: correct_counts"):
        first_pit(torch.tensor([[-1]]))
    with pytest.raises(ValueError, match="first_pit: lengths"):
        first_pit(torch.zeros(2, 3, dtype=torch.long), lengths=torch.tensor([4, 1]))
    with pytest.raises(ValueError, match="dpo_loss: beta"):
        dpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2), beta=0.0)
    with pytest.raises(ValueError, match="dpo_loss: ref_chosen"):
        dpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(3), torch.zeros(2))
    with pytest.raises(TypeError, match="dpo_loss: policy_chosen"):
        dpo_loss(torch.zeros(2, dtype=torch.long), *(torch.zeros(2) for _ in range(3)))
    with pytest.raises(ValueError, match="per_step_pair: pit"):
        per_step_pair("p", ["a"], 2, positive="x")
    with pytest.raises(ValueError, match="PerStepDPOLoss: beta"):
        PerStepDPOLoss(beta=-1.0)
    with pytest.raises(ValueError, match="mc_values: correct"):
        mc_values(torch.zeros(2, 3))
