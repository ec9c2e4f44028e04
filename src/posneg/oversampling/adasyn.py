"""ADASYN: adaptive synthetic sampling, more samples where the minority is harder to learn.

He, Bai, Garcia, Li. *ADASYN: Adaptive Synthetic Sampling Approach for Imbalanced Learning.*
IJCNN 2008, 1322-1328. Semantics follow imbalanced-learn's ``imblearn.over_sampling.ADASYN``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from posneg.oversampling import _io
from posneg.oversampling._base import OverSampler
from posneg.oversampling._neighbors import kneighbors
from posneg.oversampling._strategy import (
    SamplingStrategy,
    check_strategy_value,
    label,
    resolve_strategy,
)

__all__ = ["ADASYN"]

CITATION = """
@inproceedings{he2008adasyn,
  title     = {{ADASYN}: Adaptive Synthetic Sampling Approach for Imbalanced Learning},
  author    = {He, Haibo and Bai, Yang and Garcia, Edwardo A. and Li, Shutao},
  booktitle = {IEEE International Joint Conference on Neural Networks (IJCNN)},
  pages     = {1322--1328},
  year      = {2008}
}
"""

_PARAMS = ("sampling_strategy", "random_state", "n_neighbors", "knn", "n_probe")
_FITTED = ("sampling_strategy_", "generated_per_sample_", "n_features_in_", "feature_names_in_")


class ADASYN(OverSampler):
    """Over-sample each minority row in proportion to how many of its neighbours are foreign.

    He, Bai, Garcia, Li. *ADASYN.* IJCNN 2008.

    For a class ``c`` asked for ``G`` new samples (``sampling_strategy``): each row ``i`` of
    class ``c`` finds its ``K = n_neighbors`` nearest rows in the whole data set (itself
    excluded); ``r_i = Delta_i / K`` with ``Delta_i`` of them from other classes;
    ``r_hat_i = r_i / sum_j r_j``; row ``i`` makes ``g_i = rint(r_hat_i * G)`` samples (round half
    to even, so the total may differ from ``G`` by rounding, as in imbalanced-learn). Each sample
    from row ``i`` takes one of its ``K`` nearest rows *of class c* uniformly and a gap
    ``u ~ U[0, 1)``: ``x_i + u * (x_j - x_i)``. This is imbalanced-learn's ADASYN (one-vs-rest
    ratio ``r_i``, ``K`` same-class neighbours for interpolation).

    The per-row counts ``g_i`` are computed in float64 numpy exactly as written above, so they
    equal imbalanced-learn's on the same neighbour sets.

    Args:
        sampling_strategy: as in :class:`~posneg.oversampling.SMOTE`.
        random_state: as in :class:`~posneg.oversampling.SMOTE` (int seed, numpy or torch
            generator; ``generator=`` in :meth:`fit_resample` takes precedence).
        n_neighbors: ``K``, ``>= 1`` (imbalanced-learn's name).
        knn: ``"exact"`` (default), ``"approx"`` or ``"faiss"`` (see SMOTE).
        n_probe: lists searched per query with ``knn="approx"``.

    Fitted attributes:
        sampling_strategy_: dict class -> samples asked for.
        generated_per_sample_: dict class -> ``g_i`` for the class's rows in the order they
            appear in ``X`` (numpy int64 array).
        n_features_in_: D.
        feature_names_in_: the column names, when fitted on a DataFrame with string names.

    The constructor only stores its arguments; :meth:`fit_resample` checks them. Inputs,
    outputs, ``random_state``, feature names and gradients as in
    :class:`~posneg.oversampling.SMOTE`.

    Raises:
        ValueError: as SMOTE (a class to grow needs more than ``n_neighbors`` rows); also when
            no row of a class to grow has a foreign neighbour (the weights are 0/0;
            imbalanced-learn raises too) or when rounding leaves no sample to generate.
        TypeError: as SMOTE.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.cat([torch.randn(80, 2, generator=g), torch.randn(20, 2, generator=g) + 1])
        >>> y = torch.tensor([0] * 80 + [1] * 20)
        >>> sampler = ADASYN(n_neighbors=3)
        >>> X_res, y_res = sampler.fit_resample(X, y, generator=g)
        >>> int(sampler.generated_per_sample_[1].sum()) == X_res.shape[0] - 100
        True
    """

    _PARAMS = _PARAMS
    _FITTED = _FITTED

    def __init__(
        self,
        *,
        sampling_strategy: SamplingStrategy = "auto",
        random_state: Any = None,
        n_neighbors: int = 5,
        knn: str = "exact",
        n_probe: int | None = None,
    ) -> None:
        self.sampling_strategy = sampling_strategy
        self.random_state = random_state
        self.n_neighbors = n_neighbors
        self.knn = knn
        self.n_probe = n_probe

    def _check_params(self, fn: str) -> None:
        check_strategy_value(fn, self.sampling_strategy)
        _io.check_int_param(fn, "n_neighbors", self.n_neighbors, 1)
        _io.check_knn(fn, self.knn, self.n_probe)

    def _resample(self, X: Any, y: Any, generator: torch.Generator | None) -> tuple[Any, Any]:
        fn = "ADASYN"
        prep = _io.prepare(fn, X, y, generator)
        targets = resolve_strategy(fn, self.sampling_strategy, prep.counts, prep.y)
        k = int(self.n_neighbors)
        _io.check_k_vs_classes(fn, "n_neighbors", k, prep.counts, targets)
        parts: list[_io.Part] = []
        per_sample: dict[Any, np.ndarray] = {}
        dev = prep.X.device
        for code, cls in enumerate(prep.classes):
            n_new = targets.get(cls, 0)
            if n_new == 0:
                continue
            idx = torch.nonzero(prep.codes == code).squeeze(1)
            nn_all = kneighbors(
                prep.X, k, query=idx, method=self.knn, generator=generator, n_probe=self.n_probe
            )
            n_other = (prep.codes[nn_all] != code).sum(1).cpu().numpy()
            ratio = n_other / k
            if not np.sum(ratio):
                raise ValueError(
                    f"{fn}: no sample of class {label(cls)} has a neighbour from another class "
                    f"among its n_neighbors={k}, so ADASYN's weights are undefined (0/0); use "
                    "SMOTE for this data"
                )
            ratio = ratio / np.sum(ratio)
            counts = np.rint(ratio * n_new).astype(np.int64)
            total = int(counts.sum())
            if total == 0:
                raise ValueError(
                    f"{fn}: rounding the per-sample counts leaves no sample to generate for "
                    f"class {label(cls)} (asked for {n_new}); ask for more samples"
                )
            per_sample[cls] = counts
            X_class = prep.X.index_select(0, idx)
            nn_class = kneighbors(
                X_class, k, method=self.knn, generator=generator, n_probe=self.n_probe
            )
            rows = torch.repeat_interleave(
                torch.arange(idx.shape[0], device=dev), torch.from_numpy(counts).to(dev)
            )
            cols = torch.randint(k, (total,), device=dev, generator=generator)
            steps = _io.draw_steps(total, prep.X, generator)
            del X_class  # the fill reads X by global row index
            fill = _io.segment_fill(prep.X, idx[rows], prep.X, idx[nn_class[rows, cols]], steps)
            parts.append(_io.Part(cls, total, fill))
        self.sampling_strategy_ = targets
        self.generated_per_sample_ = per_sample
        self.n_features_in_ = int(prep.X.shape[1])
        return _io.finish(fn, prep, parts)
