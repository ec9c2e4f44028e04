"""Borderline-SMOTE: SMOTE from the minority samples on the class border ("danger" samples).

Han, Wang, Mao. *Borderline-SMOTE: A New Over-Sampling Method in Imbalanced Data Sets
Learning.* ICIC 2005, LNCS 3644, 878-887. Semantics follow imbalanced-learn's
``imblearn.over_sampling.BorderlineSMOTE`` (kinds ``"borderline-1"`` and ``"borderline-2"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from posneg import _checks
from posneg.oversampling import _io
from posneg.oversampling._base import OverSampler
from posneg.oversampling._neighbors import kneighbors
from posneg.oversampling._strategy import SamplingStrategy, check_strategy_value, resolve_strategy

__all__ = ["KINDS", "BorderlineSMOTE"]

CITATION = """
@inproceedings{han2005borderline,
  title     = {Borderline-{SMOTE}: A New Over-Sampling Method in Imbalanced Data Sets Learning},
  author    = {Han, Hui and Wang, Wen-Yuan and Mao, Bing-Huan},
  booktitle = {Advances in Intelligent Computing (ICIC 2005)},
  series    = {Lecture Notes in Computer Science},
  volume    = {3644},
  pages     = {878--887},
  publisher = {Springer},
  year      = {2005}
}
"""

#: The two variants, named as imbalanced-learn names them.
KINDS: tuple[str, ...] = ("borderline-1", "borderline-2")
_PARAMS = (
    "sampling_strategy",
    "random_state",
    "k_neighbors",
    "m_neighbors",
    "kind",
    "knn",
    "n_probe",
)
_FITTED = ("sampling_strategy_", "in_danger_indices_", "n_features_in_", "feature_names_in_")


class BorderlineSMOTE(OverSampler):
    """SMOTE that only interpolates from minority samples on the border with other classes.

    Han, Wang, Mao. *Borderline-SMOTE.* ICIC 2005.

    For each class ``c`` to grow, each of its rows gets its ``m_neighbors`` nearest rows in the
    whole data set (itself excluded); with ``m'`` of them from other classes, the row is in
    *danger* when ``m / 2 <= m' < m`` (``m' = m`` is noise, ``m' < m / 2`` safe). New samples
    are then made from danger rows only, as in SMOTE (base row uniform among danger rows,
    neighbour uniform among its ``k_neighbors``, gap ``u ~ U[0, 1)``):

    - ``kind="borderline-1"``: neighbours are the ``k`` nearest rows of class ``c``.
    - ``kind="borderline-2"``: neighbours are the ``k`` nearest rows of the whole data set; when
      the chosen neighbour belongs to another class, its difference is also scaled by
      ``v ~ U[0, 0.5)`` so the point stays nearer the minority sample:
      ``x_i + u * v * (x_j - x_i)``. This is imbalanced-learn's rule; the paper states a single
      gap in ``[0, 0.5]`` for such neighbours (``u * v`` here has a different law on the same
      range). imbalanced-learn's rule is kept, since its users expect it.

    A class without danger rows gets no new samples (imbalanced-learn's behaviour), so its
    final count may fall short of ``sampling_strategy``; ``sampling_strategy_`` records the
    targets and ``in_danger_indices_`` which rows were in danger.

    Args:
        sampling_strategy: as in :class:`~posneg.oversampling.SMOTE` (every imbalanced-learn
            form).
        random_state: as in :class:`~posneg.oversampling.SMOTE` (int seed, numpy or torch
            generator; ``generator=`` in :meth:`fit_resample` takes precedence).
        k_neighbors: neighbours used for interpolation, ``>= 1``.
        m_neighbors: neighbours used to decide danger, ``>= 1``.
        kind: ``"borderline-1"`` or ``"borderline-2"``.
        knn: ``"exact"`` (default), ``"approx"`` or ``"faiss"`` (see SMOTE).
        n_probe: lists searched per query with ``knn="approx"``.

    Fitted attributes:
        sampling_strategy_: dict class -> samples asked for.
        in_danger_indices_: dict class -> row indices (into ``X``) of its danger rows, for the
            classes that were resampled and had any (numpy for numpy input, else a tensor).
        n_features_in_: D.
        feature_names_in_: the column names, when fitted on a DataFrame with string names.

    The constructor only stores its arguments; :meth:`fit_resample` checks them. Inputs,
    outputs, ``random_state``, feature names and gradients as in
    :class:`~posneg.oversampling.SMOTE`.

    Raises:
        ValueError: as SMOTE; also when ``m_neighbors`` is not below N, or (borderline-1) a
            class to grow has ``<= k_neighbors`` rows, or (borderline-2) N ``<= k_neighbors``.
        TypeError: as SMOTE.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.cat([torch.randn(80, 2, generator=g), torch.randn(20, 2, generator=g) + 1])
        >>> y = torch.tensor([0] * 80 + [1] * 20)
        >>> sampler = BorderlineSMOTE(k_neighbors=3, m_neighbors=6)
        >>> X_res, y_res = sampler.fit_resample(X, y, generator=g)
        >>> bool((torch.bincount(y_res) <= 80).all())
        True
    """

    _PARAMS = _PARAMS
    _FITTED = _FITTED

    def __init__(
        self,
        *,
        sampling_strategy: SamplingStrategy = "auto",
        random_state: Any = None,
        k_neighbors: int = 5,
        m_neighbors: int = 10,
        kind: str = "borderline-1",
        knn: str = "exact",
        n_probe: int | None = None,
    ) -> None:
        self.sampling_strategy = sampling_strategy
        self.random_state = random_state
        self.k_neighbors = k_neighbors
        self.m_neighbors = m_neighbors
        self.kind = kind
        self.knn = knn
        self.n_probe = n_probe

    def _check_params(self, fn: str) -> None:
        check_strategy_value(fn, self.sampling_strategy)
        _io.check_int_param(fn, "k_neighbors", self.k_neighbors, 1)
        _io.check_int_param(fn, "m_neighbors", self.m_neighbors, 1)
        _checks.check_choice(fn, "kind", self.kind, KINDS)
        _io.check_knn(fn, self.knn, self.n_probe)

    def _search(
        self, data: torch.Tensor, k: int, query: torch.Tensor | None, generator: Any
    ) -> torch.Tensor:
        return kneighbors(
            data, k, query=query, method=self.knn, generator=generator, n_probe=self.n_probe
        )

    def _resample(self, X: Any, y: Any, generator: torch.Generator | None) -> tuple[Any, Any]:
        fn = "BorderlineSMOTE"
        prep = _io.prepare(fn, X, y, generator)
        targets = resolve_strategy(fn, self.sampling_strategy, prep.counts, prep.y)
        n = prep.X.shape[0]
        k, m = int(self.k_neighbors), int(self.m_neighbors)
        if any(v > 0 for v in targets.values()):
            if m >= n:
                raise ValueError(f"{fn}: m_neighbors={m} must be below the number of samples ({n})")
            if self.kind == "borderline-1":
                _io.check_k_vs_classes(fn, "k_neighbors", k, prep.counts, targets)
            elif k >= n:
                raise ValueError(f"{fn}: k_neighbors={k} must be below the number of samples ({n})")
        parts: list[_io.Part] = []
        danger_out: dict[Any, Any] = {}
        for code, cls in enumerate(prep.classes):
            n_new = targets.get(cls, 0)
            if n_new == 0:
                continue
            idx = torch.nonzero(prep.codes == code).squeeze(1)
            m_nn = self._search(prep.X, m, idx, generator)
            n_other = (prep.codes[m_nn] != code).sum(1)
            danger = (n_other * 2 >= m) & (n_other < m)
            if not bool(danger.any()):
                continue
            danger_rows = idx[danger]
            danger_out[cls] = _io.as_output_indices(prep, danger_rows)
            if self.kind == "borderline-1":
                X_class = prep.X.index_select(0, idx)
                pos = torch.nonzero(danger).squeeze(1)  # danger rows within the class
                nn_global = idx[self._search(X_class, k, pos, generator)]
                del X_class
                other_class = None
            else:
                nn_global = self._search(prep.X, k, danger_rows, generator)
                other_class = prep.codes[nn_global] != code
            fill = _generate(prep.X, danger_rows, nn_global, other_class, n_new, generator)
            parts.append(_io.Part(cls, n_new, fill))
        self.sampling_strategy_ = targets
        self.in_danger_indices_ = danger_out
        self.n_features_in_ = int(prep.X.shape[1])
        return _io.finish(fn, prep, parts)


def _generate(
    X: torch.Tensor,
    base_rows: torch.Tensor,
    nn_rows: torch.Tensor,
    other_class: torch.Tensor | None,
    n_samples: int,
    generator: torch.Generator | None,
) -> Callable[[torch.Tensor], None]:
    """SMOTE points from rows ``X[base_rows[i]]`` towards ``X[nn_rows[i, j]]`` (global row
    indices); pairs flagged in ``other_class`` have their step also scaled by ``U[0, 0.5)``
    (borderline-2)."""
    n, k = nn_rows.shape
    dev = X.device
    rows = torch.randint(n, (n_samples,), device=dev, generator=generator)
    cols = torch.randint(k, (n_samples,), device=dev, generator=generator)
    steps = _io.draw_steps(n_samples, X, generator)
    if other_class is not None:
        shrink = 0.5 * _io.draw_steps(n_samples, X, generator)
        steps = torch.where(other_class[rows, cols], steps * shrink, steps)
    return _io.segment_fill(X, base_rows[rows], X, nn_rows[rows, cols], steps)
