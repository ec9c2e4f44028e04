"""MhERGAN stand-in: Metropolis-Hastings selection of GAN samples with a calibrated D ensemble.

Feng, Shen, Hu, Liang, Wang, Du. *Enhancing Few-Shot Learning with Integrated Data and GAN
Model Approaches.* arXiv 2411.16567, 2024.

**Stand-in.** No official code of MhERGAN was found and its method text (the "MHLoss", the
"reparameterized GAN ensemble") could not be verified. What ships here is the verifiable part it
builds on: MH-GAN's independence sampler (Turner et al., ICML 2019, arXiv 1811.11357; code
``uber-research/metropolis-hastings-gans``, ``mhgan/mh.py``) driven by an *ensemble* of
discriminators whose mean logit is calibrated on held-out real vs fake samples:

- ensemble: ``D_ens(x) = sigmoid(a * mean_e logit_e(x) + b)``; ``(a, b)`` are fitted by logistic
  regression on the mean logit (MH-GAN's ``Beta1`` calibrator in ``mhgan/classification.py``:
  scikit-learn ``LogisticRegression`` on ``logit(D)``, L2 penalty ``1 / (2C)`` on ``a``, C = 1);
- acceptance of a proposal ``x'`` from the current state ``x`` (``accept_prob_MH_disc``)::

      alpha = fmin(1, (1 / D(x) - 1) / (1 / D(x') - 1))     (NaN -> 1, as numpy's fmin)

- chains start at a real sample, take ``K`` independent generator proposals in order, accept
  each with probability alpha (``u <= alpha``, ``u ~ U[0, 1)``), and output the last accepted
  proposal. A chain that accepted none returns index ``-1`` (MH-GAN then reruns the chain; here
  the caller drops or redraws it).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from posneg import _checks

__all__ = [
    "MHERGANSelector",
    "MHSelection",
    "ensemble_probability",
    "fit_logistic_calibration",
    "mh_accept_prob",
    "mh_select",
]

CITATION = """
@article{feng2024mhergan,
  title   = {Enhancing Few-Shot Learning with Integrated Data and GAN Model Approaches},
  author  = {Feng, Yinghui and Shen, Lei and Hu, Jie and Liang, Jiaxin and Wang, Haonan and
             Du, Jingyi},
  journal = {arXiv preprint arXiv:2411.16567},
  year    = {2024}
}
"""


class MHSelection(NamedTuple):
    """The outcome of one MH chain per start.

    Attributes:
        choice: (N,) int64 index into the chain's K proposals of the output, ``-1`` where no
            proposal was accepted (the chain stayed on its real start).
        accepted: (N,) int64 number of accepted moves per chain.
    """

    choice: torch.Tensor
    accepted: torch.Tensor


def _check_prob(fn: str, name: str, p: torch.Tensor) -> None:
    _checks.check_float(fn, name, p)
    if bool(((p < 0) | (p > 1)).any()):
        raise ValueError(f"{fn}: {name} must hold probabilities in [0, 1] (not logits)")


def mh_accept_prob(d_current: torch.Tensor, d_proposal: torch.Tensor) -> torch.Tensor:
    """MH-GAN's acceptance probability from calibrated discriminator probabilities.

    ``alpha = fmin(1, (1/D(x) - 1) / (1/D(x') - 1))``: the MH ratio ``p(x') q(x) / (p(x) q(x'))``
    with target ``p = p_data`` and independence proposal ``q = p_G``, since
    ``D = p_data / (p_data + p_G)``. NaN (from ``D`` in {0, 1}) gives 1, as numpy's ``fmin``.

    Args:
        d_current: D of the current states, any shape, values in [0, 1].
        d_proposal: D of the proposals, broadcastable with ``d_current``.

    Returns:
        alpha in [0, 1], the broadcast shape.

    Example:
        >>> mh_accept_prob(torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.25]))
        tensor([1.0000, 0.3333])
    """
    fn = "mh_accept_prob"
    _check_prob(fn, "d_current", d_current)
    _check_prob(fn, "d_proposal", d_proposal)
    ratio = (1.0 / d_current - 1.0) / (1.0 / d_proposal - 1.0)
    return torch.fmin(torch.ones_like(ratio), ratio)


def ensemble_probability(
    logits: torch.Tensor, *, scale: float = 1.0, bias: float = 0.0
) -> torch.Tensor:
    """Calibrated ensemble probability ``sigmoid(scale * mean_e logits[e] + bias)``.

    Args:
        logits: (E, ...) discriminator logits, one row per ensemble member.
        scale: calibration slope ``a``.
        bias: calibration intercept ``b``.

    Returns:
        Probabilities of shape ``logits.shape[1:]``, computed in float32 for half inputs.
    """
    fn = "ensemble_probability"
    _checks.check_float(fn, "logits", logits)
    if logits.dim() < 1 or logits.shape[0] < 1:
        raise ValueError(
            f"{fn}: logits must have shape (E, ...) with E >= 1; got {tuple(logits.shape)}"
        )
    a = _checks.check_real(fn, "scale", scale)
    b = _checks.check_real(fn, "bias", bias)
    work = logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32
    return torch.sigmoid(a * logits.to(work).mean(dim=0) + b)


def fit_logistic_calibration(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, *, c: float = 1.0, iters: int = 100
) -> tuple[float, float]:
    """Fit ``(a, b)`` of ``P(real | s) = sigmoid(a s + b)`` on held-out ensemble mean logits.

    Minimises ``sum_i logloss_i + a^2 / (2 c)`` (scikit-learn ``LogisticRegression(C=c)``, the
    intercept unpenalised) by Newton's method in float64.

    Args:
        real_logits: (E, M) logits of held-out real samples (or (M,) for one member).
        fake_logits: (E, M') logits of generated samples.
        c: inverse L2 strength > 0 (scikit-learn's ``C``).
        iters: Newton iterations >= 1 (stops early at convergence).

    Returns:
        ``(scale, bias)`` as Python floats.
    """
    fn = "fit_logistic_calibration"
    _checks.check_float(fn, "real_logits", real_logits)
    _checks.check_float(fn, "fake_logits", fake_logits)
    inv_c = 1.0 / _checks.check_positive(fn, "c", c)
    n_iter = _checks.check_int(fn, "iters", iters, min_value=1)
    if real_logits.dim() == 1:
        real_logits = real_logits[None]
    if fake_logits.dim() == 1:
        fake_logits = fake_logits[None]
    if real_logits.shape[0] != fake_logits.shape[0] or real_logits.dim() != 2:
        raise ValueError(
            f"{fn}: real_logits and fake_logits must have shapes (E, M), (E, M') with one E; "
            f"got {tuple(real_logits.shape)} and {tuple(fake_logits.shape)}"
        )
    if real_logits.shape[1] < 1 or fake_logits.shape[1] < 1:
        raise ValueError(f"{fn}: need at least one real and one fake sample")
    s = torch.cat([real_logits.mean(0), fake_logits.mean(0)]).detach().cpu().double()
    y = torch.cat([torch.ones(real_logits.shape[1]), torch.zeros(fake_logits.shape[1])]).double()
    x = torch.stack([s, torch.ones_like(s)], dim=1)
    w = torch.zeros(2, dtype=torch.float64)
    penalty = torch.tensor([inv_c, 0.0], dtype=torch.float64)
    for _ in range(n_iter):
        p = torch.sigmoid(x @ w)
        grad = x.T @ (p - y) + penalty * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + torch.diag(penalty) + 1e-12 * torch.eye(2)
        step = torch.linalg.solve(hess, grad)
        w = w - step
        if float(step.abs().max()) < 1e-12:
            break
    return float(w[0]), float(w[1])


def mh_select(
    d_start: torch.Tensor, d_proposals: torch.Tensor, *, generator: torch.Generator | None = None
) -> MHSelection:
    """Run one independence MH chain per start over its K proposals (vectorised over chains).

    Args:
        d_start: (N,) calibrated D of the chains' real starting samples.
        d_proposals: (N, K) calibrated D of each chain's K generator proposals, in order.
        generator: the source of the uniform draws (one per proposal).

    Returns:
        :class:`MHSelection`: the index of the output proposal (``-1``: none accepted) and the
        number of accepted moves.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sel = mh_select(torch.full((3,), 0.5), torch.full((3, 4), 0.5), generator=g)
        >>> sel.choice.tolist()  # D = 0.5 everywhere accepts every proposal
        [3, 3, 3]
    """
    fn = "mh_select"
    _check_prob(fn, "d_start", d_start)
    _check_prob(fn, "d_proposals", d_proposals)
    if d_start.dim() != 1 or d_proposals.dim() != 2 or d_proposals.shape[0] != d_start.shape[0]:
        raise ValueError(
            f"{fn}: d_start must have shape (N,) and d_proposals (N, K); got "
            f"{tuple(d_start.shape)} and {tuple(d_proposals.shape)}"
        )
    _checks.check_generator(fn, generator, d_start.device)
    n, k = d_proposals.shape
    u = torch.rand(n, k, generator=generator, device=d_start.device, dtype=torch.float64)
    current = d_start.double()
    index = torch.full((n,), -1, dtype=torch.long, device=d_start.device)
    accepted = torch.zeros(n, dtype=torch.long, device=d_start.device)
    for j in range(k):
        prop = d_proposals[:, j].double()
        take = u[:, j] <= mh_accept_prob(current, prop)
        current = torch.where(take, prop, current)
        index = torch.where(take, torch.full_like(index, j), index)
        accepted = accepted + take.long()
    return MHSelection(index, accepted)


class MHERGANSelector(nn.Module):
    """MH selection of generated samples with a calibrated discriminator ensemble (stand-in).

    ``fit(real_logits, fake_logits)`` fits the calibration ``(scale_, bias_)`` on held-out
    samples; ``forward(start_logits, proposal_logits, generator=)`` runs
    :func:`mh_select` on the calibrated ensemble probabilities. Before ``fit`` the calibration
    is the identity (``scale_ = 1``, ``bias_ = 0``). See the module docstring for what is a
    stand-in.

    Args:
        c: inverse L2 strength of the calibration (scikit-learn's ``C``).
        calibrate: fit the calibration in ``fit`` (False keeps the raw ensemble).

    Example:
        >>> sel = MHERGANSelector()
        >>> g = torch.Generator().manual_seed(0)
        >>> _ = sel.fit(torch.randn(3, 50, generator=g) + 1, torch.randn(3, 50, generator=g) - 1)
        >>> start, proposals = torch.randn(3, 5, generator=g), torch.randn(3, 5, 8, generator=g)
        >>> sel(start, proposals, generator=g).choice.shape
        torch.Size([5])
    """

    scale_: torch.Tensor
    bias_: torch.Tensor

    def __init__(self, c: float = 1.0, calibrate: bool = True) -> None:
        super().__init__()
        self.c = _checks.check_positive("MHERGANSelector", "c", c)
        self.calibrate = _checks.check_bool("MHERGANSelector", "calibrate", calibrate)
        self.register_buffer("scale_", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("bias_", torch.tensor(0.0, dtype=torch.float64))

    def fit(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> MHERGANSelector:
        """Fit the calibration on (E, M) held-out real and (E, M') fake logits."""
        if self.calibrate:
            a, b = fit_logistic_calibration(real_logits, fake_logits, c=self.c)
            self.scale_.fill_(a)
            self.bias_.fill_(b)
        return self

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated ensemble probability of (E, ...) logits."""
        return ensemble_probability(logits, scale=float(self.scale_), bias=float(self.bias_))

    def forward(
        self,
        start_logits: torch.Tensor,
        proposal_logits: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> MHSelection:
        """Select from ``proposal_logits`` (E, N, K), chains starting at ``start_logits`` (E, N)."""
        d_start = self.probability(start_logits)
        d_prop = self.probability(proposal_logits)
        return mh_select(d_start, d_prop, generator=generator)

    def extra_repr(self) -> str:
        return f"c={self.c}, calibrate={self.calibrate}"
