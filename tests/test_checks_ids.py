"""The shared per-query id-list validator (``posneg._checks.check_id_lists``) used by the miner,
the retrieval metrics and the strategies."""

from __future__ import annotations

import pytest
import torch

from posneg._checks import check_id_lists


def test_lists_and_padded_tensors_give_the_same_sorted_deduplicated_table() -> None:
    from_lists = check_id_lists("f", "positives", [[3, 1, 3], [2]], 2, num_ids=5)
    from_tensor = check_id_lists("f", "positives", torch.tensor([[1, -1, 3], [2, -1, 2]]), 2)
    assert from_lists.tolist() == [[1, 3], [2, -1]]
    assert torch.equal(from_lists, from_tensor) and from_lists.dtype == torch.int64


@pytest.mark.parametrize(
    ("value", "exc", "match"),
    [
        ("ab", TypeError, "f: positives must be a sequence of id sequences"),
        ([[0]], ValueError, r"one list per query \(2\); got 1"),
        ([[0], 1], TypeError, r"positives\[1\] must be a sequence of ints"),
        ([[0], [1.0]], TypeError, r"positives\[1\] must hold ints; got float"),
        ([[0], [True]], TypeError, r"positives\[1\] must hold ints; got bool"),
        ([[0], [-1]], ValueError, r"positives\[1\] holds -1, outside the corpus rows \[0, 4\)"),
        ([[0], [4]], ValueError, r"positives\[1\] holds 4, outside the corpus rows \[0, 4\)"),
        ([[0], []], ValueError, r"query 1 has none \(positives\[1\] is empty\)"),
        (torch.tensor([[0], [-1]]), ValueError, r"query 1 has none"),
        (torch.tensor([[0], [-2]]), ValueError, r"positives\[1\] holds -2"),
        (torch.tensor([[0.0], [1.0]]), TypeError, "must be an integer tensor"),
        (torch.tensor([0, 1]), ValueError, r"must have shape \(2, P\)"),
    ],
)
def test_errors_name_the_argument_and_the_row(value: object, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        check_id_lists("f", "positives", value, 2, num_ids=4)
