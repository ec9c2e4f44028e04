"""SMOTE: Synthetic Minority Over-sampling Technique, on numpy arrays and torch tensors.

Chawla, Bowyer, Hall, Kegelmeyer. *SMOTE: Synthetic Minority Over-sampling Technique.* Journal of
Artificial Intelligence Research 16, 321-357, 2002 (arXiv 1106.1813). Semantics follow
imbalanced-learn's ``imblearn.over_sampling.SMOTE``, which users already know.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from posneg.oversampling import _io
from posneg.oversampling._base import OverSampler
from posneg.oversampling._neighbors import kneighbors
from posneg.oversampling._strategy import SamplingStrategy, check_strategy_value, resolve_strategy

__all__ = ["SMOTE", "smote_samples"]

CITATION = """
@article{chawla2002smote,
  title   = {{SMOTE}: Synthetic Minority Over-sampling Technique},
  author  = {Chawla, Nitesh V. and Bowyer, Kevin W. and Hall, Lawrence O. and
             Kegelmeyer, W. Philip},
  journal = {Journal of Artificial Intelligence Research},
  volume  = {16},
  pages   = {321--357},
  year    = {2002},
  note    = {arXiv:1106.1813}
}
"""

_PARAMS = ("sampling_strategy", "random_state", "k_neighbors", "knn", "n_probe")
_FITTED = ("sampling_strategy_", "n_features_in_", "feature_names_in_")


def smote_samples(
    X: torch.Tensor,
    neighbors: torch.Tensor,
    n_samples: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n_samples`` SMOTE points on segments between rows of ``X`` and their neighbours.

    Each point draws a base row ``i`` uniformly, one of its ``k`` neighbours ``j`` uniformly and
    one gap ``u ~ U[0, 1)``, and is ``x_i + u * (x_j - x_i)``: a random point on the segment,
    as the paper's text and imbalanced-learn have it (the paper's pseudocode draws one gap per
    feature, which leaves the segment; not followed).

    Args:
        X: ``(n, D)`` rows of one class.
        neighbors: int64 ``(n, k)`` indices into ``X`` of each row's neighbours.
        n_samples: number of points to make.
        generator: source of the draws (``None``: torch's global RNG).

    Returns:
        ``(n_samples, D)`` in ``X``'s dtype and device; gradients flow to ``X``.
    """
    out = torch.empty((n_samples, X.shape[1]), dtype=X.dtype, device=X.device)
    _smote_fill(X, None, neighbors, n_samples, generator)(out)
    return out


def _smote_fill(
    X: torch.Tensor,
    rows_of: torch.Tensor | None,
    neighbors: torch.Tensor,
    n_samples: int,
    generator: torch.Generator | None,
) -> Callable[[torch.Tensor], None]:
    """Draw (base row, neighbour column, gap) now; return the ``fill`` writing the points.

    ``neighbors`` index the rows ``rows_of`` of ``X`` (all rows when ``None``); the fill reads
    ``X`` itself, so no per-class copy has to stay alive until the output is assembled.
    """
    n, k = neighbors.shape
    dev = X.device
    rows = torch.randint(n, (n_samples,), device=dev, generator=generator)
    cols = torch.randint(k, (n_samples,), device=dev, generator=generator)
    steps = _io.draw_steps(n_samples, X, generator)
    base, other = rows, neighbors[rows, cols]
    if rows_of is not None:
        base, other = rows_of[base], rows_of[other]
    return _io.segment_fill(X, base, X, other, steps)


class SMOTE(OverSampler):
    """Over-sample classes with points interpolated between same-class nearest neighbours.

    Chawla, Bowyer, Hall, Kegelmeyer. *SMOTE: Synthetic Minority Over-sampling Technique.* JAIR
    2002, arXiv 1106.1813.

    For every class ``c`` that ``sampling_strategy`` asks ``n_c`` new samples of, the ``k``
    nearest other rows of class ``c`` (Euclidean) are found for each row of class ``c``; then
    each new sample draws a base row ``x_i`` uniformly, one of its neighbours ``x_j`` uniformly
    and a gap ``u ~ U[0, 1)``, and is ``x_i + u * (x_j - x_i)``. This is imbalanced-learn's
    ``SMOTE``: base rows drawn with replacement (the paper cycles through them), one gap per
    sample. Output: the input rows first, then the synthetic rows class by class in sorted class
    order, so class counts are imbalanced-learn's exactly.

    Neighbours (``knn``): ``"exact"`` (default) is a certified exact search on the input's
    device, by GEMM tiles with a float32 filter and float64 refinement, never holding more than
    one tile of distances; its neighbour sets equal ``sklearn.neighbors.NearestNeighbors``'s on
    data without distance ties. ``"approx"`` is faiss's inverted-file ``IndexIVFFlat`` (k-means
    lists, ``n_probe`` lists per query; faster, recall below 1; nothing is drawn from
    ``generator``; small inputs are searched exactly). ``"faiss"`` uses faiss's exact
    ``IndexFlatL2`` on the CPU. Both need ``pip install 'posneg[faiss]'``.

    Args:
        sampling_strategy: which classes to grow and to what size, in every form
            imbalanced-learn accepts: ``"auto"``/``"not majority"``, ``"minority"``,
            ``"not minority"``, ``"all"``, a float ratio minority/majority in (0, 1] (binary
            targets), a dict ``{class: target count}``, or a callable ``y -> dict``.
        random_state: ``None`` (torch's global RNG), an int seed (every fit starts from it: same
            output each time), a ``numpy.random.Generator``/``RandomState`` (a seed drawn from it
            per fit) or a ``torch.Generator`` on the input's device type (used as is). A
            ``generator=`` given to :meth:`fit_resample` takes precedence.
        k_neighbors: neighbours per sample, ``>= 1`` (numpy ints accepted, bools rejected);
            every class to grow needs more rows.
        knn: ``"exact"``, ``"approx"`` or ``"faiss"``.
        n_probe: lists searched per query with ``knn="approx"`` (default 4).

    Fitted attributes:
        sampling_strategy_: dict class -> number of samples generated (imbalanced-learn's).
        n_features_in_: D.
        feature_names_in_: the column names, when fitted on a DataFrame with string names.

    The constructor only stores its arguments (scikit-learn's rule, so ``set_params`` and
    ``clone`` work); they are checked by :meth:`fit_resample`. Inputs and outputs: numpy,
    lists, pandas (column names and dtypes kept), scipy sparse (densified for the search),
    string labels, a column or one-hot ``y``, or torch tensors on any device (see
    :meth:`~posneg.oversampling._base.OverSampler.fit_resample`). With a tensor ``X`` that
    requires grad, the output keeps the graph: each synthetic row is a differentiable convex
    combination of two input rows (detach it if you do not want that).

    Raises:
        ValueError: in :meth:`fit_resample`, for bad hyperparameters (named), X not
            (N, D) or holding NaN/inf, y of another length, fewer than 2 classes, a class to
            grow with ``<= k_neighbors`` rows (named with its size), or a sampling_strategy
            naming an absent class, asking for fewer samples than present or a ratio that would
            remove samples.
        TypeError: for non-floating X, a non-integer y tensor, or numpy/tensor mixes.

    Example:
        >>> import torch
        >>> X = torch.randn(60, 4, generator=torch.Generator().manual_seed(0))
        >>> y = torch.tensor([0] * 50 + [1] * 10)
        >>> X_res, y_res = SMOTE(k_neighbors=3).fit_resample(
        ...     X, y, generator=torch.Generator().manual_seed(0))
        >>> X_res.shape, torch.bincount(y_res).tolist()
        (torch.Size([100, 4]), [50, 50])
    """

    _PARAMS = _PARAMS
    _FITTED = _FITTED

    def __init__(
        self,
        *,
        sampling_strategy: SamplingStrategy = "auto",
        random_state: Any = None,
        k_neighbors: int = 5,
        knn: str = "exact",
        n_probe: int | None = None,
    ) -> None:
        self.sampling_strategy = sampling_strategy
        self.random_state = random_state
        self.k_neighbors = k_neighbors
        self.knn = knn
        self.n_probe = n_probe

    def _check_params(self, fn: str) -> None:
        check_strategy_value(fn, self.sampling_strategy)
        _io.check_int_param(fn, "k_neighbors", self.k_neighbors, 1)
        _io.check_knn(fn, self.knn, self.n_probe)

    def _resample(self, X: Any, y: Any, generator: torch.Generator | None) -> tuple[Any, Any]:
        fn = "SMOTE"
        k = int(self.k_neighbors)
        prep = _io.prepare(fn, X, y, generator)
        targets = resolve_strategy(fn, self.sampling_strategy, prep.counts, prep.y)
        _io.check_k_vs_classes(fn, "k_neighbors", k, prep.counts, targets)
        parts: list[_io.Part] = []
        for code, cls in enumerate(prep.classes):
            n_new = targets.get(cls, 0)
            if n_new == 0:
                continue
            idx = torch.nonzero(prep.codes == code).squeeze(1)
            X_class = prep.X.index_select(0, idx)
            nn = kneighbors(X_class, k, method=self.knn, generator=generator, n_probe=self.n_probe)
            del X_class
            fill = _smote_fill(prep.X, idx, nn, n_new, generator)
            parts.append(_io.Part(cls, n_new, fill))
        self.sampling_strategy_ = targets
        self.n_features_in_ = int(prep.X.shape[1])
        return _io.finish(fn, prep, parts)
