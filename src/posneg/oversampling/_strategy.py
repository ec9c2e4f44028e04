"""``sampling_strategy`` resolution, identical to imbalanced-learn's for over-samplers.

imbalanced-learn (``imblearn.utils.check_sampling_strategy`` with ``sampling_type=
"over-sampling"``) turns a strategy into an ordered mapping ``class -> number of samples to
generate``, sorted by class. Every form it accepts for over-samplers is accepted here and
resolved to the same counts:

- ``"auto"`` / ``"not majority"``: every class except the majority is raised to the majority
  count; ``"minority"``: only the minority class; ``"not minority"``: every class except the
  minority; ``"all"``: every class (the majority gets 0 new samples). Ties for majority or
  minority go to the smallest class label, as in imbalanced-learn (``max``/``min`` over classes
  in sorted order return the first extreme).
- a float ``r`` in (0, 1], binary targets only: the minority class is raised to
  ``int(r * n_majority)``; a ratio that would not add at least one sample is an error (the
  minority would have to lose samples, or stay as it is).
- a dict ``{class: target count}``: each listed class is raised to its count; a count below the
  class's current size is an error.
- a callable ``f(y) -> dict``: called with ``y`` as the caller passed it, then read as a dict.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any


def label(cls: Any) -> str:
    """A class label for messages: numpy scalars shown as plain Python values."""
    item = getattr(cls, "item", None)
    return repr(item() if callable(item) and not isinstance(cls, (str, bytes)) else cls)


STRATEGY_STRINGS = ("auto", "minority", "not minority", "not majority", "all")

#: The forms ``sampling_strategy`` may take (for type hints in the samplers' signatures).
SamplingStrategy = str | float | Mapping[Any, int] | Callable[[Any], Mapping[Any, int]]


def check_strategy_value(fn: str, strategy: Any) -> None:
    """Validate the *form* of ``sampling_strategy`` at construction (no data needed)."""
    if isinstance(strategy, str):
        if strategy not in STRATEGY_STRINGS:
            allowed = ", ".join(repr(s) for s in STRATEGY_STRINGS)
            raise ValueError(
                f"{fn}: sampling_strategy must be one of {allowed}, a float in (0, 1], a dict "
                f"or a callable; got {strategy!r}"
            )
        return
    if isinstance(strategy, bool):
        raise TypeError(f"{fn}: sampling_strategy must be a str, float, dict or callable; got bool")
    if isinstance(strategy, numbers.Real):
        value = float(strategy)
        if not 0.0 < value <= 1.0:
            raise ValueError(
                f"{fn}: sampling_strategy as a float must be in (0, 1] (the minority's size "
                f"over the majority's after resampling); got {strategy!r}"
            )
        return
    if isinstance(strategy, Mapping) or callable(strategy):
        return
    raise TypeError(
        f"{fn}: sampling_strategy must be a str, float, dict or callable; "
        f"got {type(strategy).__name__}"
    )


def _majority(counts: dict[Any, int]) -> Any:
    return max(counts, key=lambda c: counts[c])


def _minority(counts: dict[Any, int]) -> Any:
    return min(counts, key=lambda c: counts[c])


def _from_dict(fn: str, targets: Mapping[Any, Any], counts: dict[Any, int]) -> dict[Any, int]:
    missing = [c for c in targets if c not in counts]
    if missing:
        present = ", ".join(label(c) for c in counts)
        raise ValueError(
            f"{fn}: sampling_strategy names class(es) {', '.join(label(c) for c in missing)} "
            f"that are not in y (classes present: {present})"
        )
    out: dict[Any, int] = {}
    for cls, target in targets.items():
        if isinstance(target, bool) or not isinstance(target, numbers.Integral):
            raise TypeError(
                f"{fn}: sampling_strategy[{label(cls)}] must be an int (a target class count); "
                f"got {type(target).__name__}"
            )
        target = int(target)
        if target < 0:
            raise ValueError(
                f"{fn}: sampling_strategy[{label(cls)}] must be >= 0 (a target class count); "
                f"got {target}"
            )
        have = counts[cls]
        if target < have:
            raise ValueError(
                f"{fn}: sampling_strategy[{label(cls)}] = {target} asks for fewer samples "
                f"than class {label(cls)} has ({have}); an over-sampler can only add samples"
            )
        out[cls] = target - have
    return out


def resolve_strategy(fn: str, strategy: Any, counts: dict[Any, int], y: Any) -> dict[Any, int]:
    """``class -> number of samples to generate``, sorted by class, as imbalanced-learn resolves it.

    Args:
        fn: the caller's name, for error messages.
        strategy: the ``sampling_strategy`` argument.
        counts: class -> number of samples, in sorted class order (at least two classes).
        y: the labels as the caller passed them (given to a callable strategy).

    Raises:
        ValueError: an unknown string, a float outside (0, 1] or with more than two classes, a
            ratio that would not add samples, a dict naming a class not in ``y`` or asking for
            fewer samples than present.
        TypeError: a strategy of another type, or a dict whose counts are not ints.
    """
    check_strategy_value(fn, strategy)
    n_major = max(counts.values())
    if isinstance(strategy, str):
        if strategy in ("auto", "not majority"):
            major = _majority(counts)
            out = {c: n_major - n for c, n in counts.items() if c != major}
        elif strategy == "not minority":
            minor = _minority(counts)
            out = {c: n_major - n for c, n in counts.items() if c != minor}
        elif strategy == "minority":
            minor = _minority(counts)
            out = {minor: n_major - counts[minor]}
        else:  # "all"
            out = {c: n_major - n for c, n in counts.items()}
    elif isinstance(strategy, numbers.Real):
        if len(counts) != 2:
            raise ValueError(
                f"{fn}: sampling_strategy as a float needs a binary target (2 classes); y has "
                f"{len(counts)} classes; use a dict of target counts instead"
            )
        major = _majority(counts)
        out = {c: int(n_major * float(strategy) - n) for c, n in counts.items() if c != major}
        bad = {c: n for c, n in out.items() if n <= 0}
        if bad:
            cls = next(iter(bad))
            raise ValueError(
                f"{fn}: sampling_strategy={strategy!r} asks for {int(n_major * float(strategy))} "
                f"samples of class {label(cls)}, which already has {counts[cls]}: the ratio would "
                "remove samples (or add none); increase the ratio"
            )
    elif isinstance(strategy, Mapping):
        out = _from_dict(fn, strategy, counts)
    else:
        targets = strategy(y)
        if not isinstance(targets, Mapping):
            raise TypeError(
                f"{fn}: a callable sampling_strategy must return a dict of target counts; "
                f"got {type(targets).__name__}"
            )
        out = _from_dict(fn, targets, counts)
    order = {c: i for i, c in enumerate(counts)}
    return {c: out[c] for c in sorted(out, key=lambda c: order[c])}
