"""ASPIRE (posneg.synthetic.aspire): flip test, scores, phrase merging, the per-class cap.

Reference: ``Sreyan88/ASPIRE`` at commit ``34f9107bdc4945c4cd9bcc1df66c014e7c854210``,
``Grounded-Segment-Anything/Inpaint-Anything/parse_top_k_classes.py``: a group's score is the
sum over its objects of ``flips / occurrences`` (``temp_score``), its count the sum of flips;
groups are sorted by ``(score, count, idx)`` descending; the loop takes ``min(cnt, 15)`` from
the first group and ``min(cnt, 10)`` from the next ones up to ``max_lim = 35``.
"""

from __future__ import annotations

import math

import pytest
import torch

from posneg.synthetic.aspire import (
    ASPIRESelector,
    flip_test,
    image_cap,
    merge_phrases,
    normalize_phrase,
    rank_feature_groups,
    spurious_scores,
)


def _official_cap(counts: list[int]) -> list[int]:
    """The cap loop of ``parse_top_k_classes.py`` (``rand_list`` replaced by the count)."""
    out, count, max_lim = [], 0, 35
    for idx, cnt in enumerate(counts):
        if count >= max_lim:
            out.append(0)
            continue
        temp = min(cnt, 15) if idx == 0 else min(cnt, 10)
        req = max_lim - count
        if temp > req:
            temp = req
        out.append(temp)
        count += temp
    return out


# ---- formula / reference ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts", [[20, 12, 30, 4], [3, 50, 50, 50, 50], [40], [15, 10, 10, 10], [0, 0, 11]]
)
def test_cap_matches_the_official_loop(counts: list[int]) -> None:
    assert image_cap(counts) == _official_cap(counts)


def test_cap_is_35_with_the_15_10_split() -> None:
    # card test 3
    assert image_cap([100, 100, 100, 100]) == [15, 10, 10, 0]
    assert sum(image_cap([100] * 6)) == 35


def test_score_on_toy_counts_and_group_sum() -> None:
    # card test 1: class 0 shows 'patch' 4 times, 2 flips -> 0.5; 'patches' 2 times, 2 flips -> 1
    occurs = torch.tensor([[1, 0], [1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [1, 1]]).bool()
    flipped = torch.tensor([[1, 0], [1, 0], [0, 0], [0, 0], [0, 1], [0, 1], [0, 0]]).bool()
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1])
    score, flips = spurious_scores(flipped, occurs, labels, num_classes=2)
    assert score[0].tolist() == [0.5, 1.0]
    assert score[1].tolist() == [0.0, 0.0]
    ranked = rank_feature_groups(score[0], flips[0], ["red patch", "red patches"])
    assert ranked == [([0, 1], 1.5, 4)]  # temp_score is a sum of ratios, not a ratio of sums
    nan_score, _ = spurious_scores(
        flipped, occurs, torch.tensor([0, 0, 0, 0, 0, 0, 0]), num_classes=2
    )
    assert math.isnan(float(nan_score[1, 0]))


def test_groups_sort_by_score_then_count_then_index() -> None:
    scores = torch.tensor([0.5, 0.5, 0.9, 0.5], dtype=torch.float64)
    flips = torch.tensor([3, 5, 1, 3])
    ranked = rank_feature_groups(scores, flips, ["sky", "grass", "frame", "water"])
    # flipped objects listed by count: grass(5), sky(3), water(3), frame(1) -> groups 0..3
    assert [r[0] for r in ranked] == [[2], [1], [3], [0]]


# ---- properties ------------------------------------------------------------------------------


def test_phrase_collapsing_merges_plurals() -> None:
    # card test 2
    assert merge_phrases(["red patch", "red patches", "blue frame"]) == [[0, 1], [2]]
    assert normalize_phrase("Red Patches") == "red patch"
    assert normalize_phrase("berries") == "berry"
    # "patch" vs "red patch": cosine 1/sqrt(2) = 0.707 >= 0.7 (bag of words, as the code)
    assert merge_phrases(["patch", "red patch"]) == [[0, 1]]
    assert merge_phrases(["patch", "red patch"], threshold=0.75) == [[0], [1]]


def test_exact_normaliser_can_be_passed() -> None:
    # the code's normaliser is nltk's; any str -> str callable plugs in
    assert merge_phrases(["Tree", "trees"], normalize=lambda s: s.lower().rstrip("s")) == [[0, 1]]


def _predict(x: torch.Tensor) -> torch.Tensor:
    return x[:, :2]  # logits = the first two features


def test_ignored_feature_gives_zero_flips() -> None:
    # card test 4: editing column 2, which the classifier does not read
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=g)
    y = x[:, :2].argmax(1)

    def edit(z: torch.Tensor, feature: str) -> torch.Tensor:
        z = z.clone()
        z[:, 2 if feature == "tint" else 0] = -10.0 if feature != "tint" else 5.0
        return z

    occurs = torch.ones(50, 2, dtype=torch.bool)
    res = flip_test(_predict, x, y, features=["tint", "frame"], occurs=occurs, edit=edit)
    assert int(res.flipped[:, 0].sum()) == 0
    assert int(res.flipped[:, 1].sum()) == int((y == 0).sum())  # class-0 rows lose their logit
    assert res.correct.all()


def test_only_correct_images_are_probed() -> None:
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 0])  # the second is misclassified
    calls: list[int] = []

    def edit(z: torch.Tensor, f: str) -> torch.Tensor:
        calls.append(len(z))
        return z.flip(1)

    res = flip_test(
        _predict, x, y, features=["a"], occurs=torch.ones(2, 1, dtype=torch.bool), edit=edit
    )
    assert calls == [1] and res.flipped[:, 0].tolist() == [True, False]


def test_selector_caps_and_keeps_edited_images() -> None:
    n = 60
    x = torch.stack([torch.full((n,), 2.0), torch.zeros(n)], 1)
    y = torch.zeros(n, dtype=torch.long)
    occurs = torch.ones(n, 3, dtype=torch.bool)
    res = flip_test(_predict, x, y, features=["patch", "patches", "frame"], occurs=occurs,
                    edit=lambda z, f: z.flip(1))  # fmt: skip
    sel = ASPIRESelector()(res, y, features=["patch", "patches", "frame"],
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert len(sel.labels) == 25  # 15 from the merged patch group, 10 from frame
    assert torch.equal(sel.images, x[sel.source].flip(1))
    assert sel.ranking[0][0][0] == [0, 1]
    small = ASPIRESelector(first_cap=2, other_cap=1, class_cap=3)
    assert len(small(res, y, features=["patch", "patches", "frame"]).labels) == 3


# ---- errors ----------------------------------------------------------------------------------


def test_errors() -> None:
    x, y = torch.ones(2, 2), torch.tensor([0, 1])
    with pytest.raises(
        ValueError, match=r"flip_test: occurs must be a bool tensor of shape \(2, 1\)"
    ):
        flip_test(_predict, x, y, features=["a"], occurs=torch.ones(2, 2, dtype=torch.bool),
                  edit=lambda z, f: z)  # fmt: skip
    with pytest.raises(ValueError, match="flip_test: edit must return images of shape"):
        occurs = torch.ones(2, 1, dtype=torch.bool)
        flip_test(_predict, x, torch.tensor([0, 0]), features=["a"], occurs=occurs,
                  edit=lambda z, f: z[:, :1])  # fmt: skip
    with pytest.raises(ValueError, match=r"merge_phrases: threshold must be in \[0.0, 1.0\]"):
        merge_phrases(["a"], threshold=2.0)
    with pytest.raises(TypeError, match="merge_phrases: phrases must be a sequence of str"):
        merge_phrases("abc")
    with pytest.raises(ValueError, match="image_cap: first must be >= 0"):
        image_cap([1], first=-1)
    with pytest.raises(TypeError, match="ASPIRESelector: result must be a FlipResult"):
        ASPIRESelector()(None, y, features=["a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ASPIRESelector: class_cap must be >= 0"):
        ASPIRESelector(class_cap=-1)
    assert "class_cap=35" in repr(ASPIRESelector())
