"""Input validation: each error names the function, the argument, what was expected and what came.

All library code validates through these helpers so that messages look the same everywhere:
``dcl: key must have shape (B, D) matching query (32, 128); got (32, 64)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, cast

import torch

from posneg._types import REDUCTIONS, Reduction

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_tensor(fn: str, name: str, x: Any) -> torch.Tensor:
    """Raise TypeError unless ``x`` is a tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor; got {type(x).__name__}")
    return x


def check_float(fn: str, name: str, x: Any) -> torch.Tensor:
    """Raise TypeError unless ``x`` is a floating-point tensor."""
    check_tensor(fn, name, x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{fn}: {name} must be a floating-point tensor (float16, bfloat16, float32 or "
            f"float64); got {x.dtype}"
        )
    return x


def check_embeddings(fn: str, name: str, x: Any, *, min_rows: int = 1) -> torch.Tensor:
    """A floating (N, D) tensor with at least ``min_rows`` rows and D >= 1."""
    check_float(fn, name, x)
    if x.dim() != 2:
        raise ValueError(f"{fn}: {name} must have shape (B, D); got {_shape(x)}")
    if x.shape[1] < 1:
        raise ValueError(f"{fn}: {name} must have D >= 1; got {_shape(x)}")
    if x.shape[0] < min_rows:
        raise ValueError(
            f"{fn}: {name} must have at least {min_rows} rows (B >= {min_rows}); got {_shape(x)}"
        )
    return x


def check_same_shape(fn: str, name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """Raise ValueError unless ``x`` has the shape of ``ref``."""
    if x.shape != ref.shape:
        raise ValueError(
            f"{fn}: {name} must have shape (B, D) matching {ref_name} {_shape(ref)}; "
            f"got {_shape(x)}"
        )


def check_same_dim(fn: str, name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """Raise ValueError unless the last dimension of ``x`` equals that of ``ref``."""
    if x.shape[-1] != ref.shape[-1]:
        raise ValueError(
            f"{fn}: {name} must have dimension D={ref.shape[-1]} like {ref_name}; got {_shape(x)}"
        )


def check_same_device(
    fn: str, name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor
) -> None:
    """Raise ValueError when two tensors live on different devices (no silent copies)."""
    if x.device != ref.device:
        raise ValueError(
            f"{fn}: {name} is on {x.device} but {ref_name} is on {ref.device}; "
            "move them to one device"
        )


def check_same_dtype(fn: str, name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """Raise TypeError when two tensors have different dtypes (no silent casts)."""
    if x.dtype != ref.dtype:
        raise TypeError(f"{fn}: {name} has dtype {x.dtype} but {ref_name} has {ref.dtype}")


def check_finite(fn: str, name: str, x: torch.Tensor) -> None:
    """Raise ValueError if ``x`` holds NaN or inf."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{fn}: {name} contains NaN or inf values")


def check_labels(fn: str, name: str, labels: Any, n: int, device: torch.device) -> torch.Tensor:
    """Integer labels of shape (n,) on ``device``."""
    check_tensor(fn, name, labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"{fn}: {name} must be an integer tensor; got {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"{fn}: {name} must have shape ({n},); got {_shape(labels)}")
    if labels.device != device:
        raise ValueError(
            f"{fn}: {name} is on {labels.device} but the embeddings are on {device}; "
            "move them to one device"
        )
    return labels


def check_positive(fn: str, name: str, value: Any) -> float:
    """A finite real number > 0 (temperatures, scales)."""
    v = check_real(fn, name, value)
    if not v > 0:
        raise ValueError(f"{fn}: {name} must be > 0; got {value!r}")
    return v


def check_nonnegative(fn: str, name: str, value: Any) -> float:
    """A finite real number >= 0."""
    v = check_real(fn, name, value)
    if v < 0:
        raise ValueError(f"{fn}: {name} must be >= 0; got {value!r}")
    return v


def _is_int(value: Any) -> bool:
    """A Python or numpy integer scalar (``numbers.Integral``), never a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_real(fn: str, name: str, value: Any) -> float:
    """A finite real number: Python or numpy scalar (``numbers.Real``); bools rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a real number; got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{fn}: {name} must be finite; got {value!r}")
    return v


def check_range(
    fn: str,
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number in [low, high], with either end optionally open."""
    v = check_real(fn, name, value)
    bad_low = v <= low if low_open else v < low
    bad_high = v >= high if high_open else v > high
    if bad_low or bad_high:
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        raise ValueError(f"{fn}: {name} must be in {lb}{low}, {high}{hb}; got {value!r}")
    return v


def check_int(fn: str, name: str, value: Any, *, min_value: int | None = None) -> int:
    """An int, optionally >= ``min_value``, returned as a Python ``int``.

    Python ints and numpy integer scalars (``np.int64(5)``: any ``numbers.Integral``) are
    accepted alike everywhere; bools (also ``np.bool_``), floats and tensors are rejected.
    """
    if not _is_int(value):
        raise TypeError(f"{fn}: {name} must be an int; got {type(value).__name__}")
    v = int(value)
    if min_value is not None and v < min_value:
        raise ValueError(f"{fn}: {name} must be >= {min_value}; got {v}")
    return v


def check_choice(fn: str, name: str, value: Any, choices: Sequence[str]) -> str:
    """One of a fixed set of strings."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{fn}: {name} must be one of {allowed}; got {value!r}")
    return str(value)


def check_reduction(fn: str, reduction: Any) -> Reduction:
    """'mean', 'sum' or 'none'."""
    check_choice(fn, "reduction", reduction, REDUCTIONS)
    return cast(Reduction, reduction)


def check_generator(fn: str, generator: Any, device: torch.device | None = None) -> None:
    """``None`` or a torch.Generator (on ``device``'s type when given)."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{fn}: generator must be a torch.Generator or None; got {type(generator).__name__}"
        )
    if device is not None and generator.device.type != device.type:
        raise ValueError(
            f"{fn}: generator is on {generator.device} but the input is on {device}; "
            "create the generator on the input's device"
        )


def check_bool(fn: str, name: str, value: Any) -> bool:
    """A bool (flags such as ``normalize``); ints and other truthy values are rejected."""
    if not isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be a bool; got {type(value).__name__}")
    return value


def check_chunk_size(fn: str, chunk_size: Any) -> int | None:
    """``None`` or an int >= 1 (rows per block of a tiled objective)."""
    if chunk_size is None:
        return None
    return check_int(fn, "chunk_size", chunk_size, min_value=1)


def check_id_lists(
    fn: str,
    name: str,
    value: Any,
    num_rows: int,
    *,
    num_ids: int | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Per-row id lists (e.g. each query's positive corpus rows) as an int64 (Q, P) tensor.

    ``value`` is one sequence of ints per row, or an integer (Q, P) tensor padded with -1. Every
    row must hold at least one id; ids lie in ``[0, num_ids)`` when ``num_ids`` is given (-1 is
    padding in a tensor, an error in a list). The result has P >= 1, each row sorted ascending
    with repeated ids removed and -1 padding last, on ``device`` (CPU when None).
    """
    span = "ids >= 0" if num_ids is None else f"the corpus rows [0, {num_ids})"
    if isinstance(value, torch.Tensor):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise TypeError(f"{fn}: {name} must be an integer tensor; got {value.dtype}")
        if value.dim() != 2 or value.shape[0] != num_rows or value.shape[1] < 1:
            raise ValueError(
                f"{fn}: {name} must have shape ({num_rows}, P) with P >= 1 (pad with -1); "
                f"got {_shape(value)}"
            )
        mat = value.detach().to(device="cpu", dtype=torch.int64)
        bad = mat < -1
        if num_ids is not None:
            bad |= mat >= num_ids
        if bool(bad.any()):
            i, j = (int(t) for t in bad.nonzero()[0])
            raise ValueError(f"{fn}: {name}[{i}] holds {int(mat[i, j])}, outside {span}")
    else:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(
                f"{fn}: {name} must be a sequence of id sequences or an integer (Q, P) tensor "
                f"padded with -1; got {type(value).__name__}"
            )
        if len(value) != num_rows:
            raise ValueError(
                f"{fn}: {name} must hold one list per query ({num_rows}); got {len(value)}"
            )
        rows: list[list[int]] = []
        for i, row in enumerate(value):
            if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, torch.Tensor)):
                raise TypeError(
                    f"{fn}: {name}[{i}] must be a sequence of ints; got {type(row).__name__}"
                )
            raw = row.tolist() if isinstance(row, torch.Tensor) else list(row)
            ids = []
            for v in raw:
                if not _is_int(v):
                    raise TypeError(f"{fn}: {name}[{i}] must hold ints; got {type(v).__name__}")
                v = int(v)
                if v < 0 or (num_ids is not None and v >= num_ids):
                    raise ValueError(f"{fn}: {name}[{i}] holds {v}, outside {span}")
                ids.append(v)
            rows.append(ids)
        width = max([1, *(len(r) for r in rows)])
        mat = torch.full((num_rows, width), -1, dtype=torch.int64)
        if rows:
            lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
            filled = torch.arange(width).expand(num_rows, width) < lengths[:, None]
            mat[filled] = torch.tensor([v for r in rows for v in r], dtype=torch.int64)
    empty = (mat < 0).all(dim=1).nonzero()
    if empty.numel():
        i = int(empty[0])
        raise ValueError(
            f"{fn}: every query needs at least one positive; query {i} has none "
            f"({name}[{i}] is empty)"
        )
    # sort each row ascending with the padding last; repeated ids become padding
    big = torch.iinfo(torch.int64).max
    mat = torch.where(mat < 0, torch.full_like(mat, big), mat).sort(dim=1).values
    repeated = torch.zeros_like(mat, dtype=torch.bool)
    repeated[:, 1:] = mat[:, 1:] == mat[:, :-1]
    mat = torch.where(repeated, torch.full_like(mat, big), mat).sort(dim=1).values
    width = max(1, int((mat != big).sum(dim=1).max())) if num_rows else 1
    mat = mat[:, :width]
    return torch.where(mat == big, torch.full_like(mat, -1), mat).to(device)
