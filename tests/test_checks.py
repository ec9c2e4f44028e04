"""posneg._checks: numbers are accepted alike across units (issue 22).

``np.int64`` used to be rejected for ``k``/``capacity`` (``isinstance(value, int)``) but accepted
for SMOTE's ``k_neighbors``. The shared checks now take any integer scalar (``numbers.Integral``:
Python and numpy integers) and any real scalar for reals, and reject bools everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posneg import _checks
from posneg.losses import DCLLoss
from posneg.mining.index import ExactIndex
from posneg.negatives import MemoryQueue
from posneg.oversampling import SMOTE

_INTS = [5, np.int64(5), np.int32(5), np.uint8(5), np.intp(5)]


@pytest.mark.parametrize("value", _INTS)
def test_check_int_accepts_numpy_integers(value: object) -> None:
    got = _checks.check_int("f", "k", value, min_value=1)
    assert got == 5 and type(got) is int


@pytest.mark.parametrize(
    "value", [True, np.bool_(False), 5.0, np.float64(5.0), "5", torch.tensor(5)]
)
def test_check_int_rejects_bools_floats_and_tensors(value: object) -> None:
    with pytest.raises(TypeError, match=r"^f: k must be an int; got "):
        _checks.check_int("f", "k", value)


def test_check_int_range_message_uses_the_plain_value() -> None:
    with pytest.raises(ValueError, match=r"^f: k must be >= 1; got 0$"):
        _checks.check_int("f", "k", np.int64(0), min_value=1)


@pytest.mark.parametrize("value", [0.5, np.float32(0.5), np.float64(0.5), np.int64(1)])
def test_check_real_accepts_numpy_scalars(value: object) -> None:
    assert isinstance(_checks.check_positive("f", "temperature", value), float)


@pytest.mark.parametrize("value", [True, np.bool_(True), "0.5", None, torch.tensor(0.5)])
def test_check_real_rejects_non_numbers(value: object) -> None:
    with pytest.raises(TypeError, match="f: t must be a real number"):
        _checks.check_real("f", "t", value)


def test_check_real_still_refuses_non_finite_numpy_values() -> None:
    with pytest.raises(ValueError, match="f: t must be finite"):
        _checks.check_real("f", "t", np.float32("nan"))


def test_id_lists_accept_numpy_integers() -> None:
    got = _checks.check_id_lists("f", "positives", [[np.int64(2), 0], [np.int32(1)]], 2)
    assert got.tolist() == [[0, 2], [1, -1]]
    with pytest.raises(TypeError, match=r"f: positives\[0\] must hold ints; got bool"):
        _checks.check_id_lists("f", "positives", [[np.bool_(True)]], 1)


def test_numpy_integers_behave_alike_across_units() -> None:
    """The same np.int64 works for k, capacity, k_neighbors and chunk_size; bools fail all."""
    k = np.int64(2)
    index = ExactIndex()
    index.add(torch.eye(3))
    assert index.search(torch.eye(3), k=k)[1].shape == (3, 2)
    assert MemoryQueue(capacity=k, dim=np.int64(3)).capacity == 2
    assert DCLLoss(chunk_size=k).chunk_size == 2
    x = np.random.default_rng(0).normal(size=(12, 2))
    y = np.r_[np.zeros(9, dtype=int), np.ones(3, dtype=int)]
    assert SMOTE(k_neighbors=k, random_state=0).fit_resample(x, y)[0].shape == (18, 2)
    with pytest.raises(TypeError, match="k must be an int; got bool"):
        index.search(torch.eye(3), k=np.bool_(True))
    with pytest.raises(TypeError, match="capacity must be an int; got bool"):
        MemoryQueue(capacity=True, dim=3)
