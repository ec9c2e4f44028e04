"""The GDA theory's bGMM simulation: generalisation gap against the synthetic ratio gamma.

Zheng, Wu, Li, "Toward Understanding Generative Data Augmentation", NeurIPS 2023
(arXiv 2305.17476). The paper bounds the generalisation gap of a learner trained on
``S~ = S u S_G`` (``|S| = m``, ``|S_G| = m_G = int(gamma * m)``, ``S_G`` drawn from a generator
fitted on ``S``) and checks it on a binary Gaussian mixture model (bGMM). This module is that
simulation, transcribed from the official ``ML-GSAI/Understanding-GDA``
``main_simulation_bGMM.py`` (``simulation_gamma``, ``get_zero_one_loss``, ``get_NLL_loss``) and
``models/gaussnb.py`` (``GaussianNB``), commit 00719a0:

1. ``y in {0, 1}``, ``x ~ N(mu_y, sigma^2 I_d)``, ``mu_1 = -mu_0 = 1/sqrt(d) * 1``,
   ``sigma = 0.6``; ``m`` training points split evenly over the classes (``make_blobs``: the
   first class takes the odd one), a test set of ``10000``.
2. The generator: Gaussian naive Bayes on ``S``: class means ``mu^_k``, per-class unbiased
   variances ``v_k`` (``ddof = 1``, ``+ 1e-9``) pooled by the class priors
   ``v^ = sum_k pi^_k v_k``; ``S_G``: ``m_G`` points from ``N(mu^_k, diag v^)``, classes split
   evenly.
3. The learner: ``theta^ = (1 / |S~|) sum_{(x, y) in S~} (2y - 1) x``; predictor
   ``1[theta^ . x >= 0]``.
4. Losses: 0-1 and ``NLL(theta; S) = sum_i ||x_i - (2y_i - 1) theta||^2 / (2 sigma^2 n)`` with
   the *true* ``sigma``; the gap is ``|L(theta^; S~) - L(theta^; test)|`` (against the risk on
   the *augmented* set), averaged over repeats (1000 in the paper).

The paper's reading: for small ``m`` the gap shrinks as ``gamma`` grows and then plateaus (the
generator's own error), and the advantage fades as ``m`` grows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from posneg import _checks

__all__ = [
    "CITATION",
    "BGMMGap",
    "BGMMGapSimulation",
    "bgmm_fit",
    "bgmm_gap",
    "bgmm_generalization_gap",
    "bgmm_nll",
    "bgmm_sample",
    "bgmm_theta",
    "bgmm_zero_one_loss",
]

CITATION = """
@inproceedings{zheng2023toward,
  title     = {Toward Understanding Generative Data Augmentation},
  author    = {Zheng, Chenyu and Wu, Guoqiang and Li, Chongxuan},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2023},
  note      = {arXiv:2305.17476}
}
"""

#: The official grid of synthetic ratios (``--gamma_list``).
DEFAULT_GAMMAS: tuple[float, ...] = (0, 1, 2, 5, 10, 20, 50, 100)
#: The official variance floor of ``GaussianNB`` (``val_epsilon``).
VAR_EPSILON = 1e-9
FITS = ("gaussnb", "true")


class BGMMGap(NamedTuple):
    """Per-repeat generalisation gaps of :func:`bgmm_generalization_gap`.

    Attributes:
        gammas: the synthetic ratios ``(G,)`` float64.
        zero_one: 0-1 loss gaps ``(G, R)`` float64 (``R`` repeats).
        nll: NLL gaps ``(G, R)`` float64.
    """

    gammas: torch.Tensor
    zero_one: torch.Tensor
    nll: torch.Tensor


def _xy(fn: str, x: torch.Tensor, y: torch.Tensor, name: str = "x") -> tuple[torch.Tensor, ...]:
    x = _checks.check_float(fn, name, x)
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"{fn}: {name} must have shape (N, d) with N >= 1; got {tuple(x.shape)}")
    if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise TypeError(f"{fn}: labels for {name} must be an integer tensor of 0s and 1s")
    if y.shape != (x.shape[0],):
        raise ValueError(
            f"{fn}: labels for {name} must have shape ({x.shape[0]},); got {tuple(y.shape)}"
        )
    if bool(((y != 0) & (y != 1)).any()):
        raise ValueError(f"{fn}: labels for {name} must be 0 or 1")
    return x, y


def bgmm_fit(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``GaussianNB`` fit: class means ``(2, d)``, prior-pooled variance ``(d,)``.

    ``v^ = sum_k (n_k / n) * (var_{ddof=1}(x | y = k) + 1e-9)``.

    Raises:
        ValueError: a class with fewer than 2 points (its unbiased variance is undefined).
    """
    fn = "bgmm_fit"
    x, y = _xy(fn, x, y)
    counts = torch.bincount(y, minlength=2)
    if int(counts.min()) < 2:
        raise ValueError(f"{fn}: each class needs >= 2 points; got counts {counts.tolist()}")
    mus = torch.stack([x[y == k].mean(0) for k in (0, 1)])
    var = torch.stack([x[y == k].var(0, correction=1) + VAR_EPSILON for k in (0, 1)])
    prior = (counts.to(x.dtype) / y.numel())[:, None]
    return mus, (var * prior).sum(0)


def bgmm_theta(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The bGMM learner ``theta^ = (1/n) sum_i (2 y_i - 1) x_i``: ``(d,)``."""
    x, y = _xy("bgmm_theta", x, y)
    return ((2 * y - 1).to(x.dtype)[:, None] * x).sum(0) / y.numel()


def bgmm_zero_one_loss(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1 - mean(1[theta . x >= 0] == y)`` (a 0-dim tensor)."""
    x, y = _xy("bgmm_zero_one_loss", x, y)
    pred = (x @ theta >= 0).to(torch.int64)
    return 1 - (pred == y).to(x.dtype).mean()


def bgmm_nll(
    theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, sigma: float
) -> torch.Tensor:
    """``sum_i ||x_i - (2 y_i - 1) theta||^2 / (2 sigma^2 n)`` (a 0-dim tensor)."""
    fn = "bgmm_nll"
    x, y = _xy(fn, x, y)
    s = _checks.check_positive(fn, "sigma", sigma)
    r = x - (2 * y - 1).to(x.dtype)[:, None] * theta[None]
    return (r * r).sum() / (2 * s * s * y.numel())


def bgmm_sample(
    n: int,
    mus: torch.Tensor,
    std: torch.Tensor | float,
    *,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of the two-Gaussian mixture, classes split evenly (``make_blobs``'s rule).

    Class 0 gets ``n - n // 2`` points, class 1 ``n // 2``; ``x ~ N(mus[y], diag(std^2))``.

    Args:
        n: number of points, ``>= 0``.
        mus: class means ``(2, d)``.
        std: a scalar or per-dimension standard deviations ``(d,)``.
        generator: a ``torch.Generator`` on ``mus``' device, or None.

    Returns:
        ``(x (n, d), y (n,) int64)``, class 0 first.
    """
    fn = "bgmm_sample"
    n = _checks.check_int(fn, "n", n, min_value=0)
    mus = _checks.check_float(fn, "mus", mus)
    if mus.dim() != 2 or mus.shape[0] != 2:
        raise ValueError(f"{fn}: mus must have shape (2, d); got {tuple(mus.shape)}")
    _checks.check_generator(fn, generator, mus.device)
    y = torch.cat(
        [
            torch.zeros(n - n // 2, dtype=torch.int64, device=mus.device),
            torch.ones(n // 2, dtype=torch.int64, device=mus.device),
        ]
    )
    noise = torch.randn(n, mus.shape[1], generator=generator, dtype=mus.dtype, device=mus.device)
    return mus[y] + noise * std, y


def bgmm_gap(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    sigma: float,
    synthetic: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One repeat's gaps ``(|L01(S~) - L01(test)|, |NLL(S~) - NLL(test)|)`` with ``S~ = S u S_G``.

    Args:
        train: ``(x (m, d), y (m,))`` the real training set ``S``.
        test: ``(x (n, d), y (n,))`` the test set.
        sigma: the true standard deviation (the NLL's scale).
        synthetic: ``(x (m_G, d), y (m_G,))`` the generated set, or None (``gamma = 0``).

    Returns:
        Two 0-dim tensors: the 0-1 and the NLL gap.
    """
    x, y = train
    if synthetic is not None and synthetic[1].numel() > 0:
        x, y = torch.cat([x, synthetic[0]]), torch.cat([y, synthetic[1]])
    theta = bgmm_theta(x, y)
    zo = (bgmm_zero_one_loss(theta, x, y) - bgmm_zero_one_loss(theta, *test)).abs()
    nll = (bgmm_nll(theta, x, y, sigma=sigma) - bgmm_nll(theta, *test, sigma=sigma)).abs()
    return zo, nll


def bgmm_generalization_gap(
    *,
    m: int,
    d: int,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    sigma: float = 0.6,
    repeats: int = 1000,
    test_size: int = 10000,
    fit: str = "gaussnb",
    generator: torch.Generator | None = None,
) -> BGMMGap:
    """Monte-Carlo gaps of the bGMM learner against the synthetic ratio (``simulation_gamma``).

    For each repeat: draw ``S`` (``m`` points) and a test set, fit the generator on ``S``, and
    for each ``gamma`` draw ``int(gamma * m)`` generated points, train on ``S u S_G`` and record
    the 0-1 and NLL gaps (see the module docstring). Float64 on the CPU.

    Args:
        m: real training points, ``>= 4`` (each class needs 2 for the variance).
        d: dimension, ``>= 1``.
        gammas: synthetic ratios ``m_G / m``, each ``>= 0`` (default the official grid
            ``0, 1, 2, 5, 10, 20, 50, 100``).
        sigma: the mixture's standard deviation (0.6).
        repeats: Monte-Carlo repeats (1000 in the paper).
        test_size: test points per repeat (10000).
        fit: ``"gaussnb"`` (the official generator fitted on ``S``) or ``"true"`` (the true
            ``N(mu_k, sigma^2 I)``: a perfect generator, the gap then tends to 0 as gamma grows).
        generator: a CPU ``torch.Generator``, or None.

    Returns:
        :class:`BGMMGap` with ``(G, repeats)`` gaps; ``.zero_one.mean(1)`` is the curve the
        paper plots.

    Raises:
        ValueError: ``m < 4``, ``d``, ``repeats`` or ``test_size`` < 1, a negative gamma,
            ``sigma <= 0``, an unknown ``fit``.

    Example:
        >>> import torch
        >>> r = bgmm_generalization_gap(m=10, d=1, gammas=(0, 10), repeats=50, test_size=500,
        ...                             generator=torch.Generator().manual_seed(0))
        >>> tuple(r.zero_one.shape)
        (2, 50)
    """
    fn = "bgmm_generalization_gap"
    m = _checks.check_int(fn, "m", m, min_value=4)
    d = _checks.check_int(fn, "d", d, min_value=1)
    repeats = _checks.check_int(fn, "repeats", repeats, min_value=1)
    test_size = _checks.check_int(fn, "test_size", test_size, min_value=1)
    sigma = _checks.check_positive(fn, "sigma", sigma)
    _checks.check_choice(fn, "fit", fit, FITS)
    _checks.check_generator(fn, generator, torch.device("cpu"))
    gs = [_checks.check_nonnegative(fn, "gammas[i]", g) for g in gammas]
    if not gs:
        raise ValueError(f"{fn}: gammas must not be empty")
    mus = torch.stack([torch.full((d,), -1.0), torch.full((d,), 1.0)]).double() / math.sqrt(d)
    zo = torch.empty(len(gs), repeats, dtype=torch.float64)
    nll = torch.empty_like(zo)
    for r in range(repeats):
        train = bgmm_sample(m, mus, sigma, generator=generator)
        test = bgmm_sample(test_size, mus, sigma, generator=generator)
        if fit == "gaussnb":
            g_mus, g_var = bgmm_fit(*train)
            g_std: torch.Tensor | float = g_var.sqrt()
        else:
            g_mus, g_std = mus, sigma
        for j, gamma in enumerate(gs):
            n_gen = int(gamma * m)
            syn = bgmm_sample(n_gen, g_mus, g_std, generator=generator) if n_gen else None
            zo[j, r], nll[j, r] = bgmm_gap(train, test, sigma=sigma, synthetic=syn)
    return BGMMGap(torch.tensor(gs, dtype=torch.float64), zo, nll)


class BGMMGapSimulation(nn.Module):
    """The bGMM generalisation-gap simulation of GDA (Zheng et al., NeurIPS 2023) as a unit.

    A stateless module that stores validated hyperparameters; ``sim(m, d, generator=g)`` runs
    :func:`bgmm_generalization_gap` and returns a :class:`BGMMGap`. :meth:`predict` gives the
    mean 0-1 gap per gamma: the bGMM's prediction of how the gap moves with the synthetic ratio.

    Args:
        gammas: synthetic ratios (default the official grid).
        sigma: mixture standard deviation (0.6).
        repeats: Monte-Carlo repeats (1000).
        test_size: test points per repeat (10000).
        fit: ``"gaussnb"`` (official) or ``"true"``.

    Example:
        >>> import torch
        >>> sim = BGMMGapSimulation(gammas=(0, 5), repeats=20, test_size=200)
        >>> sim.predict(10, 1, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        *,
        gammas: Sequence[float] = DEFAULT_GAMMAS,
        sigma: float = 0.6,
        repeats: int = 1000,
        test_size: int = 10000,
        fit: str = "gaussnb",
    ) -> None:
        super().__init__()
        fn = "BGMMGapSimulation"
        self.gammas = tuple(float(_checks.check_nonnegative(fn, "gammas[i]", g)) for g in gammas)
        if not self.gammas:
            raise ValueError(f"{fn}: gammas must not be empty")
        self.sigma = _checks.check_positive(fn, "sigma", sigma)
        self.repeats = _checks.check_int(fn, "repeats", repeats, min_value=1)
        self.test_size = _checks.check_int(fn, "test_size", test_size, min_value=1)
        self.fit = _checks.check_choice(fn, "fit", fit, FITS)

    def forward(self, m: int, d: int, *, generator: torch.Generator | None = None) -> BGMMGap:
        return bgmm_generalization_gap(
            m=m,
            d=d,
            gammas=self.gammas,
            sigma=self.sigma,
            repeats=self.repeats,
            test_size=self.test_size,
            fit=self.fit,
            generator=generator,
        )

    def predict(self, m: int, d: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean 0-1 gap per gamma ``(G,)`` float64."""
        return self(m, d, generator=generator).zero_one.mean(1)

    def extra_repr(self) -> str:
        return (
            f"gammas={self.gammas}, sigma={self.sigma}, repeats={self.repeats}, "
            f"test_size={self.test_size}, fit={self.fit!r}"
        )
