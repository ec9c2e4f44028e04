"""DISCO filters against the released code (eric11eca/disco @ 3675ab5, distiller/filter/core.py:
``SentencePairHeuristicFilter.heuristic_filtering``, ``SentencePairModelFilter.critic_metric``,
``ensemble``, ``run``), with the two deliberate fixes (explicit 0.25 threshold, whole-word
negation) shown against the release's behaviour."""

from __future__ import annotations

import math

import pytest
import torch

from posneg.text.disco import (
    DiscoPipeline,
    DiscoTeacherFilter,
    critic_scores,
    ensemble_scores,
    heuristic_reason,
    jaccard,
    normalize,
    teacher_filter,
)

P, H = "A man walks in the park.", "A man is outside."


def _release_run(scores: list[list[float]], threshold: float = 0.5) -> list[bool]:
    """Transcription of ``run``'s vote: softmax-weighted ensemble, accept iff > threshold / 2."""
    out = []
    for row in scores:
        w = [math.exp(s) for s in row]
        z = sum(w)
        vote = sum(wi / z * s for wi, s in zip(w, row, strict=True))
        out.append(vote > threshold / 2)
    return out


def test_critic_metric_on_hand_set_probabilities() -> None:
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    q = torch.tensor([[0.1, 0.3, 0.6], [0.5, 0.3, 0.2]])
    natural, counter = critic_scores(p, q, torch.tensor([0, 2]), torch.tensor([2, 0]))
    torch.testing.assert_close(natural, torch.tensor([0.6, 0.6]))
    torch.testing.assert_close(counter, torch.tensor([0.5, 0.4]))


def test_ensemble_against_naive_loop_and_single_teacher_identity() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.rand(7, 3, generator=g, dtype=torch.float64) * 2 - 1
    naive = []
    for row in s.tolist():
        w = [math.exp(v) for v in row]
        naive.append(sum(wi / sum(w) * v for wi, v in zip(w, row, strict=True)))
    torch.testing.assert_close(ensemble_scores(s), torch.tensor(naive, dtype=torch.float64))
    torch.testing.assert_close(ensemble_scores(s[:, :1]), s[:, 0])


def test_threshold_is_the_release_half_of_half_and_strict() -> None:
    scores = [[0.25], [0.2500001], [0.3, 0.1], [0.9, -0.9]]
    release = _release_run(scores)
    ours = [bool(ensemble_scores(torch.tensor([r], dtype=torch.float64))[0] > 0.25) for r in scores]
    assert ours == release
    assert release[0] is False  # counter = 0.25 is rejected (strict >)
    p = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    q = torch.tensor([[0.75, 0.0, 0.25]], dtype=torch.float64)
    acc, score = teacher_filter(p, q, torch.tensor([0]), torch.tensor([2]))
    assert float(score[0]) == pytest.approx(0.25) and not bool(acc[0])


def test_multi_teacher_filter_is_self_weighted() -> None:
    p = torch.tensor([[[0.8, 0.1, 0.1]], [[0.8, 0.1, 0.1]]])
    q = torch.tensor([[[0.1, 0.1, 0.8]], [[0.7, 0.1, 0.2]]])  # gains 0.7 and 0.1
    acc, score = teacher_filter(p, q, torch.tensor([0]), torch.tensor([2]))
    w = torch.softmax(torch.tensor([0.7, 0.1]), 0)
    assert float(score[0]) == pytest.approx(float(w[0] * 0.7 + w[1] * 0.1), rel=1e-5)
    assert float(score[0]) > 0.4  # not the uniform mean 0.4
    assert bool(acc[0])


@pytest.mark.parametrize(
    ("out", "label", "reason"),
    [
        ("a man is outside", "neutral", "copied_sentence2"),
        ("really a man is outside now", "neutral", "coverd_sentence2"),
        ("is outside", "neutral", "coverd_by_sentence2"),
        ("the park", "neutral", "coverd_by_sentence1"),
        ("man is a outside too", "neutral", "overlap_sentence2"),
        ("walks in the city", "neutral", "overlap_sentence1"),
        ("it is true that x", "neutral", "forbidden_phrase"),
        ("[blank] room", "neutral", "forbidden_phrase"),
        ("not a garden", "contradiction", "negation_word"),
        ("dark_room", "neutral", "large_gap"),
    ],
)
def test_each_heuristic_rule_fires(out: str, label: str, reason: str) -> None:
    new = P.replace("the park", out)
    assert heuristic_reason(P, H, out, new, new_label=label) == reason


def test_overlap_of_the_whole_new_sentence() -> None:
    p, h = "the man holds the cup", "the man holds the cup"
    assert heuristic_reason(p, h, "mug", "the man holds the mug", new_label="neutral") is None
    h2 = "the man holds the mug"
    assert heuristic_reason(p, h2, "plate", "the man holds the mug", new_label="neutral") == (
        "overlap_sentence2_all"
    )


def test_negation_whole_word_differs_from_release_substring() -> None:
    out = "snow storm"
    new = P.replace("the park", out)
    assert heuristic_reason(P, H, out, new, new_label="contradiction") is None
    assert (
        heuristic_reason(P, H, out, new, new_label="contradiction", negation_match="substring")
        == "negation_word"
    )
    # the rule only applies when the target is contradiction
    assert heuristic_reason(P, H, "no car", P, new_label="neutral") is None


def test_normalize_and_multiset_jaccard() -> None:
    assert normalize("A Man, walks!") == "a man walks"
    assert jaccard(["a", "a", "b"], ["a", "b"]) == pytest.approx(2 / 3)
    assert jaccard([], []) == 1.0


def test_pipeline_routes_through_both_filters() -> None:
    def gen(p: str, h: str, span: str, target: int, g: torch.Generator | None) -> list[str]:
        return ["the beach", "not a shop", "the kitchen"]

    def teacher(prem: list[str], hyp: list[str]) -> torch.Tensor:
        rows = [[0.1, 0.1, 0.8] if "kitchen" in p else [0.8, 0.1, 0.1] for p in prem]
        return torch.tensor(rows)

    pipe = DiscoPipeline(gen, [teacher])
    cfs = pipe.run([P], [H], [0], ["the park"], [2])
    by = {c.gen_out: c for c in cfs}
    assert by["not a shop"].reason == "negation_word" and not by["not a shop"].accepted
    assert by["the kitchen"].accepted and by["the kitchen"].premise.endswith("the kitchen.")
    assert not by["the beach"].accepted and by["the beach"].reason is None
    assert pipe.reasons["negation_word"] == 1


def test_module_and_errors() -> None:
    f = DiscoTeacherFilter(threshold=0.3)
    assert "threshold=0.3" in repr(f)
    p = torch.tensor([[0.8, 0.1, 0.1]])
    s = f(p, torch.tensor([[0.1, 0.1, 0.8]]), torch.tensor([0]), torch.tensor([2]))
    assert f.accept(s).tolist() == [True]
    with pytest.raises(ValueError, match="critic_scores: probs_counter"):
        critic_scores(p, torch.zeros(2, 3), torch.tensor([0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="critic_scores: new_label"):
        critic_scores(p, p, torch.tensor([0]), torch.tensor([3]))
    with pytest.raises(ValueError, match="heuristic_reason: negation_match"):
        heuristic_reason(P, H, "x", P, new_label="neutral", negation_match="regex")
    with pytest.raises(ValueError, match="DiscoTeacherFilter: threshold"):
        DiscoTeacherFilter(threshold=2.0)
    with pytest.raises(ValueError, match=r"DiscoPipeline\.run: span"):
        DiscoPipeline(lambda *a: [], [lambda a, b: p]).run([P], [H], [0], ["zzz"], [2])
