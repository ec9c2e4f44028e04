"""Composed two-digit images, relation captions and negatives; the digit CIR task."""

from __future__ import annotations

import pytest
import torch

from posneg.data.composed import (
    TRANSFORMS,
    VOCAB,
    apply_transform,
    digit_prompts,
    make_composed_digits,
    make_digit_cir,
    tokenize,
)


def _words(tokens: torch.Tensor) -> list[str]:
    return [VOCAB[int(t)] for t in tokens if int(t) != 0]


@pytest.fixture(scope="module")
def composed() -> tuple:
    return make_composed_digits(n_train=60, n_test=30, seed=1)


def test_images_are_left_and_right_digits(composed: tuple) -> None:
    train, _ = composed
    n = train.images.shape[0]
    assert train.images.shape == (n, 1, 8, 16) and 40 < n <= 60
    assert bool((train.left != train.right).all())
    assert float(train.images.min()) >= 0.0 and float(train.images.max()) <= 1.0


def test_captions_and_sample_major_negatives(composed: tuple) -> None:
    train, _ = composed
    n = train.images.shape[0]
    assert train.negatives.shape[0] == 4 * n
    for i in range(n):
        a, b = str(int(train.left[i])), str(int(train.right[i]))
        assert _words(train.captions[i]) == [a, "left", b]
        assert sorted(_words(train.unordered_captions[i])) == sorted([a, b])
        swap, rep_l, rep_r, swap_rep = (_words(train.negatives[4 * i + k]) for k in range(4))
        assert swap == [b, "left", a]
        c = rep_l[0]
        assert c not in (a, b) and rep_l == [c, "left", b] and rep_r == [a, "left", c]
        assert swap_rep == [b, "left", c]


def test_single_digit_images_and_prompts(composed: tuple) -> None:
    train, _ = composed
    m = train.single_images.shape[0]
    half = m // 2
    assert bool((train.single_images[:half, :, :, 8:] == 0).all())
    assert bool((train.single_images[half:, :, :, :8] == 0).all())
    assert [_words(p) for p in digit_prompts()] == [[str(d)] for d in range(10)]


def test_same_seed_same_data_other_seed_other_pairs() -> None:
    a, _ = make_composed_digits(n_train=20, n_test=10, seed=3)
    b, _ = make_composed_digits(n_train=20, n_test=10, seed=3)
    c, _ = make_composed_digits(n_train=20, n_test=10, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.negatives, b.negatives)
    assert not torch.equal(a.captions, c.captions)


def test_transforms_are_what_they_say() -> None:
    x = torch.zeros(1, 8, 8)
    x[0, 3, 3] = 1.0
    assert apply_transform(x, "shift_right")[0, 3, 5] == 1.0
    assert apply_transform(x, "shift_up")[0, 1, 3] == 1.0
    assert torch.equal(apply_transform(x, "invert"), 1 - x)
    assert int((apply_transform(x, "thicken") > 0).sum()) == 9
    r = apply_transform(x, "rotate_left")
    assert r.shape == x.shape and not torch.equal(r, x)


def test_cir_task_has_unique_targets_and_disjoint_references() -> None:
    task = make_digit_cir(n_references=12, seed=2)
    t = len(TRANSFORMS)
    assert task.gallery.shape == (12 * t, 64)
    r = int(task.query_reference[17])
    name = TRANSFORMS[int(task.query_transform[17])]
    expected = apply_transform(task.references[r].reshape(1, 8, 8), name).reshape(64)
    torch.testing.assert_close(task.gallery[int(task.query_target[17])], expected)
    train_refs = set(task.query_reference[task.train_queries].tolist())
    test_refs = set(task.query_reference[task.test_queries].tolist())
    assert train_refs and test_refs and not train_refs & test_refs
    assert task.caption(17) == [str(int(task.reference_labels[r])), name]
    assert _words(task.modification_tokens(torch.tensor([17]))[0]) == [name]


def test_errors() -> None:
    with pytest.raises(ValueError, match="tokenize: unknown word 'cat'"):
        tokenize(["cat"])
    with pytest.raises(ValueError, match="make_composed_digits: n_train must be"):
        make_composed_digits(n_train=1)
    with pytest.raises(ValueError, match="apply_transform: name must be one of"):
        apply_transform(torch.zeros(1, 8, 8), "blur")
    with pytest.raises(ValueError, match="make_digit_cir: n_references"):
        make_digit_cir(n_references=2)
