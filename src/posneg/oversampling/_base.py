"""What SMOTE, BorderlineSMOTE, ADASYN and SMOTENC share: scikit-learn's estimator protocol.

- The constructor only stores its arguments (as given, so ``sklearn.base.clone`` finds the same
  objects); they are validated when :meth:`OverSampler.fit_resample` runs, so ``set_params``
  can set any of them and a bad value is reported at the next fit, naming the argument.
- ``random_state``: ``None`` (torch's global RNG, as without it), an int seed (each fit starts
  a fresh ``torch.Generator`` from it, so two fits give the same output), a
  ``numpy.random.Generator`` or ``RandomState`` (one seed drawn from it per fit, so consecutive
  fits differ and the sequence is reproducible), or a ``torch.Generator`` (used as is). A
  ``generator=`` given to ``fit_resample`` takes precedence over ``random_state``.
- Inputs in the types imbalanced-learn accepts, results in the same types (``_adapt``).
- ``feature_names_in_`` (for a DataFrame with string column names), ``n_features_in_``,
  ``get_feature_names_out``, ``__sklearn_tags__`` (imbalanced-learn's sampler tags, built on
  scikit-learn's; scikit-learn is imported only when the tags are asked for).
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, ClassVar

import numpy as np
import torch

from posneg.oversampling import _adapt, _io

__all__ = ["OverSampler", "resolve_random_state"]


def resolve_random_state(fn: str, random_state: Any, X: Any) -> torch.Generator | None:
    """The ``torch.Generator`` one fit draws from, on ``X``'s device (CPU for numpy).

    Raises:
        TypeError: a ``random_state`` of another type (bools included).
        ValueError: a negative or too large seed, or a torch.Generator on another device type.
    """
    device = X.device if isinstance(X, torch.Tensor) else torch.device("cpu")
    if random_state is None:
        return None
    if isinstance(random_state, torch.Generator):
        if random_state.device.type != device.type:
            raise ValueError(
                f"{fn}: random_state is a torch.Generator on {random_state.device} but the input "
                f"is on {device}; create it on the input's device"
            )
        return random_state
    if isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(0, 2**63 - 1))
    elif isinstance(random_state, np.random.RandomState):
        seed = int(random_state.randint(0, np.iinfo(np.int32).max))
    elif isinstance(random_state, numbers.Integral) and not isinstance(
        random_state, (bool, np.bool_)
    ):
        seed = int(random_state)
        if not 0 <= seed < 2**64:
            raise ValueError(f"{fn}: random_state must be in [0, 2**64) as a seed; got {seed}")
    else:
        raise TypeError(
            f"{fn}: random_state must be None, an int seed, a numpy.random.Generator, a "
            f"numpy.random.RandomState or a torch.Generator; got {type(random_state).__name__}"
        )
    return torch.Generator(device=device).manual_seed(seed)


@functools.cache
def _tag_types() -> tuple[type, type, type, type]:
    """imbalanced-learn's tag layout (``input_tags.dataframe``, ``sampler_tags``) on
    scikit-learn's dataclasses; scikit-learn is imported here, when tags are asked for."""
    from dataclasses import dataclass

    from sklearn.utils import InputTags, Tags, TargetTags

    @dataclass(slots=True)
    class SamplerInputTags(InputTags):
        dataframe: bool = False

    @dataclass(slots=True)
    class SamplerTags:
        sample_indices: bool = False

    @dataclass(slots=True)
    class SamplerEstimatorTags(Tags):
        sampler_tags: SamplerTags | None = None

    return SamplerEstimatorTags, SamplerInputTags, SamplerTags, TargetTags


class OverSampler:
    """Base of the SMOTE-family samplers (scikit-learn's estimator protocol; see the module).

    Subclasses set ``_PARAMS`` (constructor arguments), ``_FITTED`` (fitted attributes kept by
    ``state_dict``) and implement ``_check_params`` and ``_resample`` on numpy/tensors.
    """

    _PARAMS: ClassVar[tuple[str, ...]]
    _FITTED: ClassVar[tuple[str, ...]]

    random_state: Any
    n_features_in_: int
    feature_names_in_: np.ndarray

    def _check_params(self, fn: str) -> None:
        raise NotImplementedError

    def _resample(self, X: Any, y: Any, generator: torch.Generator | None) -> tuple[Any, Any]:
        raise NotImplementedError

    def fit_resample(
        self, X: Any, y: Any, *, generator: torch.Generator | None = None
    ) -> tuple[Any, Any]:
        """Resample ``X`` (N, D) and ``y``.

        Args:
            X: ``(N, D)`` finite floating values: a numpy array, list, pandas DataFrame, scipy
                sparse matrix (densified for the search, returned sparse) or a floating torch
                tensor on any device.
            y: labels: ``(N,)`` array-like or pandas Series (any sortable labels: ints,
                strings, whole-number floats), a column ``(N, 1)``, a one-hot ``(N, C)``
                indicator, or, with tensor ``X``, an integer tensor ``(N,)`` on its device.
            generator: a ``torch.Generator`` on ``X``'s device type (CPU for non-tensor
                input); overrides ``random_state``. With neither, torch's global RNG is used.

        Returns:
            ``(X_resampled, y_resampled)``: originals first, then synthetic rows per class in
            sorted class order, in the types passed (numpy for numpy, a DataFrame with the same
            columns for a DataFrame, a list for a list, the same sparse type, tensors on ``X``'s
            device). Same generator state (or seed), inputs and device: same output.

        Raises:
            ValueError: bad hyperparameters (named), continuous or multilabel ``y``, and the
                data errors listed in the class docstring.
            TypeError: hyperparameters or inputs of the wrong type.
        """
        fn = type(self).__name__
        self._check_params(fn)
        data = _adapt.adapt(fn, X, y)
        if generator is None:
            generator = resolve_random_state(fn, self.random_state, data.X)
        names = _adapt.feature_names(X)
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        X_res, y_res = self._resample(data.X, data.y, generator)
        return data.restore_X(X_res), data.restore_y(y_res)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output column names (the samplers keep the input's columns), as scikit-learn does.

        Args:
            input_features: ``None`` (``feature_names_in_`` if fitted on a DataFrame with string
                column names, else ``x0, x1, ...``) or ``n_features_in_`` names, equal to
                ``feature_names_in_`` where that exists.

        Returns:
            An object array of ``n_features_in_`` strings.

        Raises:
            ValueError: not fitted yet; names of another length or other than the fitted ones.
        """
        fn = f"{type(self).__name__}.get_feature_names_out"
        if not hasattr(self, "n_features_in_"):
            raise ValueError(f"{fn}: this sampler is not fitted yet; call fit_resample first")
        fitted = getattr(self, "feature_names_in_", None)
        if input_features is None:
            if fitted is not None:
                return np.asarray(fitted, dtype=object)
            return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)
        names = np.asarray(input_features, dtype=object)
        if names.ndim != 1 or names.shape[0] != self.n_features_in_:
            raise ValueError(
                f"{fn}: input_features should have length equal to number of features "
                f"({self.n_features_in_}), got {names.size}"
            )
        if fitted is not None and not np.array_equal(names, fitted):
            raise ValueError(f"{fn}: input_features is not equal to feature_names_in_")
        return names

    def __sklearn_tags__(self) -> Any:
        """imbalanced-learn's sampler tags (needs scikit-learn): 2-D dense or sparse arrays and
        DataFrames, no NaN, a required single-output target."""
        tags_type, input_type, sampler_type, target_type = _tag_types()
        return tags_type(
            estimator_type="sampler",
            target_tags=target_type(required=True),
            input_tags=input_type(two_d_array=True, sparse=True, dataframe=True),
            sampler_tags=sampler_type(),
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments, as given (scikit-learn's ``clone`` protocol)."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params: Any) -> Any:
        """Set constructor arguments (validated at the next ``fit_resample``); returns self.

        Raises:
            ValueError: a name that is not a constructor argument.
        """
        unknown = sorted(set(params) - set(self._PARAMS))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown parameters {unknown}; expected "
                f"{list(self._PARAMS)}"
            )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and fitted attributes."""
        return _io.state_of(self, self._PARAMS + self._FITTED)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        _io.load_state(self, state, self._PARAMS + self._FITTED, type(self).__name__)

    def __repr__(self) -> str:
        return _io.format_repr(type(self).__name__, self.get_params())
