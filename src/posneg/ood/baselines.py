"""Post-hoc OOD baselines on logits or features: MSP, MaxLogit, Energy and k-NN distance.

Every score is **higher = more out-of-distribution**:

- **MSP** (Hendrycks & Gimpel, ICLR 2017): ``-max_c softmax(z)_c``.
- **MaxLogit** (Hendrycks et al., ICML 2022, "Scaling OOD detection"): ``-max_c z_c``.
- **Energy** (Liu et al., NeurIPS 2020): the free energy ``E(z) = -T logsumexp(z / T)``.
- **k-NN** (Sun et al., ICML 2022, "Out-of-distribution detection with deep nearest
  neighbors"): features are L2-normalised; the score is the distance to the ``k``-th nearest
  normalised training feature (exact search through :mod:`posneg._knn`, the distance recomputed
  in float64 from the found neighbour).

Detectors follow the package convention ``fit(features, labels)`` / ``score(features)``; MSP,
MaxLogit and Energy need no fitting (``fit`` checks and returns ``self``) and take logits as
their "features". Fitted state ends in ``_`` and round-trips through ``state_dict``.

Example:
    >>> import torch
    >>> logits = torch.tensor([[4.0, 0.0, 0.0], [0.3, 0.2, 0.1]])
    >>> EnergyScore(temperature=1.0).score(logits)[0] < EnergyScore().score(logits)[1]
    tensor(True)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from posneg import _checks, _knn

__all__ = [
    "EnergyScore",
    "KNNDistance",
    "MaxLogit",
    "MaxSoftmax",
    "energy_score",
    "knn_score",
    "max_logit_score",
    "msp_score",
]

CITATION = """
@inproceedings{hendrycks2017baseline,
  title     = {A Baseline for Detecting Misclassified and Out-of-Distribution Examples in
               Neural Networks},
  author    = {Hendrycks, Dan and Gimpel, Kevin},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2017},
  note      = {arXiv:1610.02136}
}
@inproceedings{liu2020energy,
  title     = {Energy-based Out-of-distribution Detection},
  author    = {Liu, Weitang and Wang, Xiaoyun and Owens, John and Li, Yixuan},
  booktitle = {Advances in Neural Information Processing Systems 33 (NeurIPS 2020)},
  year      = {2020},
  note      = {arXiv:2010.03759}
}
@inproceedings{sun2022knn,
  title     = {Out-of-Distribution Detection with Deep Nearest Neighbors},
  author    = {Sun, Yiyou and Ming, Yifei and Zhu, Xiaojin and Li, Yixuan},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2022},
  note      = {arXiv:2204.06507}
}
"""


def _bib(key: str, title: str, authors: str, venue: str, year: int, arxiv: str) -> str:
    return (
        f"@inproceedings{{{key},\n  title     = {{{title}}},\n  author    = {{{authors}}},\n"
        f"  booktitle = {{{venue}}},\n  year      = {{{year}}},\n"
        f"  note      = {{arXiv:{arxiv}}}\n}}"
    )


#: Per-class BibTeX (the registry's ``citation()`` prefers these over ``CITATION``).
CITATIONS: dict[str, str] = {
    "MaxSoftmax": _bib(
        "hendrycks2017baseline",
        "A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural "
        "Networks",
        "Hendrycks, Dan and Gimpel, Kevin",
        "International Conference on Learning Representations (ICLR)",
        2017,
        "1610.02136",
    ),
    "MaxLogit": _bib(
        "hendrycks2022scaling",
        "Scaling Out-of-Distribution Detection for Real-World Settings",
        "Hendrycks, Dan and Basart, Steven and Mazeika, Mantas and Zou, Andy and Kwon, Joe and "
        "Mostajabi, Mohammadreza and Steinhardt, Jacob and Song, Dawn",
        "International Conference on Machine Learning (ICML)",
        2022,
        "1911.11132",
    ),
    "EnergyScore": _bib(
        "liu2020energy",
        "Energy-based Out-of-distribution Detection",
        "Liu, Weitang and Wang, Xiaoyun and Owens, John and Li, Yixuan",
        "Advances in Neural Information Processing Systems 33 (NeurIPS 2020)",
        2020,
        "2010.03759",
    ),
    "KNNDistance": _bib(
        "sun2022knn",
        "Out-of-Distribution Detection with Deep Nearest Neighbors",
        "Sun, Yiyou and Ming, Yifei and Zhu, Xiaojin and Li, Yixuan",
        "International Conference on Machine Learning (ICML)",
        2022,
        "2204.06507",
    ),
}

_GROUP = 64


def _logits(fn: str, logits: Any) -> torch.Tensor:
    _checks.check_float(fn, "logits", logits)
    if logits.dim() != 2 or logits.shape[1] < 1:
        raise ValueError(
            f"{fn}: logits must have shape (N, C) with C >= 1; got {tuple(logits.shape)}"
        )
    return logits


def msp_score(logits: torch.Tensor) -> torch.Tensor:
    """Negative maximum softmax probability, ``(N, C) -> (N,)``; higher = more OOD."""
    z = _logits("msp_score", logits)
    return -torch.softmax(z, dim=1).amax(dim=1)


def max_logit_score(logits: torch.Tensor) -> torch.Tensor:
    """Negative maximum logit, ``(N, C) -> (N,)``; higher = more OOD."""
    return -_logits("max_logit_score", logits).amax(dim=1)


def energy_score(logits: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
    """Free energy ``-T logsumexp(z / T)``, ``(N, C) -> (N,)``; higher = more OOD."""
    fn = "energy_score"
    z = _logits(fn, logits)
    t = _checks.check_positive(fn, "temperature", temperature)
    return -t * torch.logsumexp(z / t, dim=1)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def knn_score(features: torch.Tensor, *, bank: torch.Tensor, k: int = 50) -> torch.Tensor:
    """Distance from each normalised feature to its ``k``-th nearest normalised bank row.

    Args:
        features: ``(N, D)`` query features.
        bank: ``(M, D)`` fitted (training) features, normalised here too; ``M >= k``.
        k: which neighbour (1 = nearest).

    Returns:
        ``(N,)`` distances in ``[0, 2]`` in the dtype of ``features``; higher = more OOD.
    """
    fn = "knn_score"
    q = _checks.check_embeddings(fn, "features", features)
    b = _checks.check_embeddings(fn, "bank", bank)
    _checks.check_same_dim(fn, "features", q, "bank", b)
    _checks.check_same_device(fn, "features", q, "bank", b)
    k = _checks.check_int(fn, "k", k, min_value=1)
    if k > b.shape[0]:
        raise ValueError(f"{fn}: k must be <= the bank size {b.shape[0]}; got {k}")
    qn, bn = _normalize(q.detach().double()), _normalize(b.detach().double())
    chunk = min(32768, -(-b.shape[0] // _GROUP) * _GROUP)
    _, pos = _knn.topk_ip(
        qn, bn, k, query_chunk=1024, doc_chunk=chunk, compute=torch.float64, group=_GROUP
    )
    kth = bn[pos[:, k - 1]]
    return (qn - kth).norm(dim=1).to(q.dtype)


class MaxSoftmax(nn.Module):
    """MSP detector (Hendrycks & Gimpel, 2017): ``score(logits) = -max softmax``.

    Example:
        >>> MaxSoftmax().fit(torch.randn(8, 3)).score(torch.randn(4, 3)).shape
        torch.Size([4])
    """

    def fit(self, logits: torch.Tensor, labels: torch.Tensor | None = None) -> MaxSoftmax:
        """Nothing to fit; checks ``logits`` and returns ``self``."""
        _logits("MaxSoftmax.fit", logits)
        return self

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` logits -> ``(N,)`` scores, higher = more OOD."""
        return msp_score(logits)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.score(logits)


class MaxLogit(nn.Module):
    """MaxLogit detector: ``score(logits) = -max logit``."""

    def fit(self, logits: torch.Tensor, labels: torch.Tensor | None = None) -> MaxLogit:
        """Nothing to fit; checks ``logits`` and returns ``self``."""
        _logits("MaxLogit.fit", logits)
        return self

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` logits -> ``(N,)`` scores, higher = more OOD."""
        return max_logit_score(logits)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.score(logits)


class EnergyScore(nn.Module):
    """Energy detector (Liu et al., 2020): ``score(logits) = -T logsumexp(logits / T)``.

    Args:
        temperature: ``T > 0`` (the paper uses 1).
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = _checks.check_positive("EnergyScore", "temperature", temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def fit(self, logits: torch.Tensor, labels: torch.Tensor | None = None) -> EnergyScore:
        """Nothing to fit; checks ``logits`` and returns ``self``."""
        _logits("EnergyScore.fit", logits)
        return self

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` logits -> ``(N,)`` scores, higher = more OOD."""
        return energy_score(logits, temperature=self.temperature)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.score(logits)


class KNNDistance(nn.Module):
    """k-NN detector (Sun et al., 2022): distance to the k-th nearest normalised train feature.

    Args:
        k: the neighbour rank (the paper uses 50 on CIFAR-10 and 1000 on ImageNet with 1%).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> det = KNNDistance(k=5).fit(torch.randn(100, 8, generator=g))
        >>> det.score(torch.randn(3, 8, generator=g)).shape
        torch.Size([3])
    """

    bank_: torch.Tensor | None

    def __init__(self, k: int = 50) -> None:
        super().__init__()
        self.k = _checks.check_int("KNNDistance", "k", k, min_value=1)
        self.register_buffer("bank_", None)

    def extra_repr(self) -> str:
        return f"k={self.k}"

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> KNNDistance:
        """Store the normalised ``(M, D)`` features (labels are ignored); ``M >= k``."""
        fn = "KNNDistance.fit"
        x = _checks.check_embeddings(fn, "features", features, min_rows=self.k)
        _checks.check_finite(fn, "features", x)
        self.bank_ = _normalize(x.detach().clone())
        return self

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` -> ``(N,)`` k-th neighbour distances, higher = more OOD."""
        if self.bank_ is None:
            raise ValueError("KNNDistance.score: call fit(features) first")
        return knn_score(features, bank=self.bank_, k=self.k)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.score(features)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        key = prefix + "bank_"
        if self.bank_ is None and key in state_dict:
            self.bank_ = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args)
