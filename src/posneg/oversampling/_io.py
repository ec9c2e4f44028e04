"""Input checks and output assembly shared by the over-samplers.

The samplers follow scikit-learn's contract: numpy in, numpy out; a torch tensor in, a tensor out
on the same device. Internally everything runs on tensors: a numpy ``X`` is wrapped without a
copy (``torch.from_numpy``) and the result converted back. Labels may be any values
``numpy.unique`` sorts (ints, strings) on the numpy path, and an integer tensor on the tensor path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from posneg import _checks
from posneg.oversampling._strategy import label

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass
class Prepared:
    """Validated inputs.

    Attributes:
        X: the samples as a tensor (shares memory with a numpy input); ``(N, D)``.
        codes: int64 class codes on ``X``'s device, ``(N,)``; code ``i`` is ``classes[i]``.
        classes: the sorted class labels (python scalars or numpy scalars).
        counts: class label -> count, in sorted class order.
        numpy: whether the caller passed numpy (outputs are converted back).
        y: the labels as passed (numpy array or tensor).
    """

    X: torch.Tensor
    codes: torch.Tensor
    classes: list[Any]
    counts: dict[Any, int]
    numpy: bool
    y: Any


def prepare(fn: str, X: Any, y: Any, generator: Any) -> Prepared:
    """Validate ``X`` (N, D) floating and finite, ``y`` (N,) with >= 2 classes, the generator."""
    if isinstance(X, torch.Tensor):
        if not isinstance(y, torch.Tensor):
            raise TypeError(
                f"{fn}: y must be a torch.Tensor when X is one (tensor in, tensor out); "
                f"got {type(y).__name__}"
            )
        Xt = X
        is_numpy = False
    else:
        if isinstance(y, torch.Tensor):
            raise TypeError(
                f"{fn}: X must be a torch.Tensor when y is one (tensor in, tensor out); "
                f"got {type(X).__name__}"
            )
        arr = np.asarray(X)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(
                f"{fn}: X must hold floating-point values (float16, float32 or float64); got "
                f"dtype {arr.dtype}; convert it first, e.g. X.astype(np.float64)"
            )
        Xt = torch.from_numpy(np.ascontiguousarray(arr))
        is_numpy = True
    if Xt.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{fn}: X must be a floating-point tensor (float16, bfloat16, float32 or float64); "
            f"got {Xt.dtype}"
        )
    if Xt.dim() != 2:
        raise ValueError(f"{fn}: X must have shape (N, D); got {tuple(Xt.shape)}")
    if Xt.shape[1] < 1:
        raise ValueError(f"{fn}: X must have at least one feature (D >= 1); got {tuple(Xt.shape)}")
    n = Xt.shape[0]
    if is_numpy:
        ya = np.asarray(y)
        if ya.ndim != 1 or ya.shape[0] != n:
            raise ValueError(
                f"{fn}: y must have shape ({n},) matching X {tuple(Xt.shape)}; got {ya.shape}"
            )
        classes_np, inverse, counts_np = np.unique(ya, return_inverse=True, return_counts=True)
        codes = torch.from_numpy(inverse.reshape(-1).astype(np.int64))
        classes: list[Any] = list(classes_np)
        counts_list = [int(c) for c in counts_np]
        y_out: Any = ya
    else:
        yt = y
        if yt.dtype.is_floating_point or yt.dtype == torch.bool or yt.is_complex():
            raise TypeError(f"{fn}: y must be an integer tensor; got {yt.dtype}")
        if yt.dim() != 1 or yt.shape[0] != n:
            raise ValueError(
                f"{fn}: y must have shape ({n},) matching X {tuple(Xt.shape)}; "
                f"got {tuple(yt.shape)}"
            )
        if yt.device != Xt.device:
            raise ValueError(
                f"{fn}: y is on {yt.device} but X is on {Xt.device}; move them to one device"
            )
        uniq, inverse_t, counts_t = torch.unique(yt, return_inverse=True, return_counts=True)
        codes = inverse_t.to(torch.int64)
        classes = [int(c) for c in uniq.tolist()]
        counts_list = [int(c) for c in counts_t.tolist()]
        y_out = yt
    if len(classes) < 2:
        raise ValueError(
            f"{fn}: y must contain at least 2 classes to resample; got {len(classes)} "
            f"({', '.join(label(c) for c in classes) or 'no samples'})"
        )
    step = max(1, (1 << 20) // max(1, Xt.shape[1]))  # bounded temporaries on large inputs
    for s in range(0, n, step):
        _checks.check_finite(fn, "X", Xt[s : s + step])
    _checks.check_generator(fn, generator, Xt.device)
    counts = dict(zip(classes, counts_list, strict=True))
    return Prepared(Xt, codes.to(Xt.device), classes, counts, is_numpy, y_out)


def check_k_vs_classes(
    fn: str, name: str, k: int, counts: dict[Any, int], targets: dict[Any, int]
) -> None:
    """``k`` neighbours within a class need more than ``k`` samples in every class oversampled."""
    for cls, n_new in targets.items():
        if n_new > 0 and counts[cls] <= k:
            raise ValueError(
                f"{fn}: {name}={k} needs more than {k} samples in every class to oversample; "
                f"class {label(cls)} has {counts[cls]}; lower {name} to at most {counts[cls] - 1}"
            )


@dataclass
class Part:
    """Synthetic rows of one class: ``fill(out)`` writes them into ``out`` (n, D)."""

    label: Any
    n: int
    fill: Callable[[torch.Tensor], None]


def finish(fn: str, prep: Prepared, parts: list[Part]) -> tuple[Any, Any]:
    """Originals then each part's rows, written into one preallocated output (no per-class
    copies, no concatenation); numpy or tensors like the input."""
    n, d = prep.X.shape
    total = sum(p.n for p in parts)
    X_res = torch.empty((n + total, d), dtype=prep.X.dtype, device=prep.X.device)
    X_res[:n] = prep.X
    offset = n
    for part in parts:
        part.fill(X_res[offset : offset + part.n])
        offset += part.n
    if prep.numpy:
        ya = prep.y
        extra = [np.full(p.n, p.label, dtype=ya.dtype) for p in parts]
        y_res = np.concatenate([ya, *extra]) if extra else ya.copy()
        return X_res.detach().cpu().numpy(), y_res
    yt = prep.y
    extra_t = [torch.full((p.n,), p.label, dtype=yt.dtype, device=yt.device) for p in parts]
    return X_res, (torch.cat([yt, *extra_t]) if extra_t else yt.clone())


#: Synthetic rows interpolated per block (bounds the temporaries of the gathers).
_FILL_ROWS = 1 << 13


def segment_fill(
    base_pool: torch.Tensor,
    base_idx: torch.Tensor,
    other_pool: torch.Tensor,
    other_idx: torch.Tensor,
    steps: torch.Tensor,
) -> Callable[[torch.Tensor], None]:
    """A ``fill`` writing ``base_pool[base_idx] + steps * (other_pool[other_idx] - base)``."""

    def fill(out: torch.Tensor) -> None:
        for s in range(0, out.shape[0], _FILL_ROWS):
            e = s + _FILL_ROWS
            out[s:e] = interpolate(base_pool[base_idx[s:e]], other_pool[other_idx[s:e]], steps[s:e])

    return fill


def interpolate(base: torch.Tensor, other: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """``base + steps * (other - base)`` computed in at least float32, cast to ``base``'s dtype.

    ``steps`` has shape ``(n,)`` or ``(n, 1)``. Half inputs are interpolated in float32.
    """
    work = base.dtype if base.dtype in (torch.float32, torch.float64) else torch.float32
    b = base.to(work)
    o = other.to(work)
    s = steps.to(work).reshape(-1, 1)
    return (b + s * (o - b)).to(base.dtype)


def check_int_param(fn: str, name: str, value: Any, min_value: int) -> int:
    """An int >= ``min_value`` (numpy ints accepted, bools rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int; got {type(value).__name__}")
    if int(value) < min_value:
        raise ValueError(f"{fn}: {name} must be >= {min_value}; got {value}")
    return int(value)


def check_knn(fn: str, knn: Any, n_probe: Any) -> None:
    """``knn`` in ``"exact"``, ``"approx"``, ``"faiss"``; ``n_probe`` None or an int >= 1."""
    _checks.check_choice(fn, "knn", knn, ("exact", "approx", "faiss"))
    if n_probe is not None:
        check_int_param(fn, "n_probe", n_probe, 1)


def draw_steps(n: int, X: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` gaps uniform on [0, 1), in float64 for float64 data, float32 otherwise."""
    dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
    return torch.rand(n, dtype=dtype, device=X.device, generator=generator)


def as_output_indices(prep: Prepared, idx: torch.Tensor) -> Any:
    """Row indices as the caller's array type (numpy for numpy input)."""
    return idx.cpu().numpy() if prep.numpy else idx


def state_of(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """Hyperparameters and (where fitted) the fitted attributes of a sampler, by name."""
    return {name: getattr(obj, name) for name in names if hasattr(obj, name)}


def load_state(obj: Any, state: dict[str, Any], names: tuple[str, ...], fn: str) -> None:
    unknown = sorted(set(state) - set(names))
    if unknown:
        raise ValueError(
            f"{fn}: load_state_dict got unknown keys {unknown}; expected {list(names)}"
        )
    for name, value in state.items():
        setattr(obj, name, value)


def format_repr(name: str, params: dict[str, Any]) -> str:
    return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"
