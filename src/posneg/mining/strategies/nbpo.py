"""BPO and NBPO: noisy-label robust point-wise optimisation for implicit feedback (and BPR).

Yu, Qin. *Sampler Design for Implicit Feedback Data by Noisy-label Robust Learning.* SIGIR 2020
(DOI 10.1145/3397271.3401155). Official code: ``Wenhui-Yu/NBPO`` at commit
d2187a12970fb9f122f81625bcf80cd9fda16d38 (Python 2 + numpy): ``_NBPO.py`` (main), ``_NBPOo.py``
("original" log-likelihood), ``_NBPOs.py`` (surrogate), ``_BPO.py``, ``_BPR.py``.

Model: preference ``r = sigmoid(x)``, ``x_ui = U_u . V_i``; flip probability ``gamma =
sigmoid(g)``, ``g_ui = P_u . Q_i``, the probability that a true positive goes unobserved.
Each training positive ``(u, i)`` is paired with ``n`` unvoted items ``j`` drawn uniformly
(training positives rejected; :func:`sample_unvoted`). Every variant is an **ascent direction**
on ``x`` and ``g`` per (positive, unvoted) pair (:func:`nbpo_directions`), turned into factor
updates by :func:`nbpo_step`:

=======  ===================  ===================  ==================  ==================
variant  positive dx          positive dg          unvoted dx          unvoted dg
=======  ===================  ===================  ==================  ==================
bpo      1 - r                -                    -r                  -
nbpo     (1 - gm)(1 - r)      -gm r                gm (1 - r) - r      (1 - gm) r
nbpoo    1 - r                -gm                  (gm-1) r(1-r)/den   gm(1-gm) r/den
nbpos    (1 - gm) r (1 - r)   -gm (1 - gm) r       (gm - 1) r (1 - r)  gm (1 - gm) r
bpr      sigmoid(x_j - x_i)   -                    -sigmoid(x_j-x_i)   -
=======  ===================  ===================  ==================  ==================

with ``gm = gamma`` and ``den = 1 - r + r gm + 1e-10``. ``nbpoo`` is the gradient of the
log-likelihood ``log r + log(1 - gamma)`` (positives) + ``log(1 - r(1 - gamma))`` (unvoted)
(:func:`nbpoo_log_likelihood`); ``nbpos`` of the likelihoods themselves. **The main ``nbpo`` rule
is not the gradient of any scalar objective** (its mixed partials disagree): it is the paper's
update, transcribed as the code runs it; there is no loss to log (log NBPOo's likelihood instead).

Code details kept: the sigmoid is clipped (1 above 10, 0 below -10; :func:`clipped_sigmoid`);
the positive's term is added once **per sampled negative** (inside the code's sampling loop, so
n times per positive); gradients are summed over the batch from the pre-batch factors; weight
decay is applied to every row every batch: ``U += lr (dU - reg U)`` (``P``, ``Q`` with
``reg_flip``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from posneg import _checks

__all__ = [
    "CITATION",
    "NBPO",
    "VARIANTS",
    "NBPOFactors",
    "clipped_sigmoid",
    "hidden_positive_posterior",
    "init_factors",
    "nbpo_directions",
    "nbpo_step",
    "nbpoo_log_likelihood",
    "nbpos_likelihood",
    "sample_unvoted",
]

CITATION = """
@inproceedings{yu2020sampler,
  title     = {Sampler Design for Implicit Feedback Data by Noisy-label Robust Learning},
  author    = {Yu, Wenhui and Qin, Zheng},
  booktitle = {Proceedings of the 43rd International ACM SIGIR Conference on Research and
               Development in Information Retrieval (SIGIR '20)},
  year      = {2020},
  doi       = {10.1145/3397271.3401155}
}
"""

#: The update rules: the paper's NBPO, its log-likelihood (o) and surrogate (s) forms, BPO, BPR.
VARIANTS = ("nbpo", "nbpoo", "nbpos", "bpo", "bpr")
_FLIP = ("nbpo", "nbpoo", "nbpos")


class NBPOFactors(NamedTuple):
    """The factor matrices: preference ``U`` (M, K0), ``V`` (N, K0); flip ``P`` (M, K1), ``Q``
    (N, K1) (``P``/``Q`` unused by ``bpo`` and ``bpr``)."""

    U: torch.Tensor
    V: torch.Tensor
    P: torch.Tensor
    Q: torch.Tensor


def clipped_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """The code's ``d(x)``: ``sigmoid(x)``, exactly 1 for ``x > 10`` and 0 for ``x < -10``.

    Example:
        >>> import torch
        >>> clipped_sigmoid(torch.tensor([-11.0, 0.0, 11.0]))
        tensor([0.0000, 0.5000, 1.0000])
    """
    s = torch.sigmoid(x)
    return torch.where(x > 10, torch.ones_like(s), torch.where(x < -10, torch.zeros_like(s), s))


def hidden_positive_posterior(r: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``P(true positive | unvoted) = r gamma / (1 - r + r gamma)``: the sampler's adaptive weight.

    In [0, 1]; 0 at ``gamma = 0``; ``r`` at ``gamma = 1``. ``0/0`` (``r = 1``, ``gamma = 0``)
    is defined as 0.

    Example:
        >>> import torch
        >>> hidden_positive_posterior(torch.tensor([0.5, 0.9]), torch.tensor([0.5, 1.0]))
        tensor([0.3333, 0.9000])
    """
    num = r * gamma
    den = 1 - r + num
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), 0.0)


def _check_pairs(fn: str, x_pos: object, x_neg: object) -> tuple[torch.Tensor, torch.Tensor]:
    xp = _checks.check_float(fn, "x_pos", x_pos)
    xn = _checks.check_float(fn, "x_neg", x_neg)
    _checks.check_same_device(fn, "x_neg", xn, "x_pos", xp)
    _checks.check_same_dtype(fn, "x_neg", xn, "x_pos", xp)
    if xp.dim() != 1 or xn.dim() != 2 or xn.shape[0] != xp.shape[0]:
        raise ValueError(
            f"{fn}: x_pos must be (B,) and x_neg (B, n); got {tuple(xp.shape)} and "
            f"{tuple(xn.shape)}"
        )
    return xp, xn


def _check_like(fn: str, name: str, t: object, ref: torch.Tensor, ref_name: str) -> torch.Tensor:
    x = _checks.check_float(fn, name, t)
    _checks.check_same_device(fn, name, x, ref_name, ref)
    _checks.check_same_dtype(fn, name, x, ref_name, ref)
    if x.shape != ref.shape:
        raise ValueError(f"{fn}: {name} must have shape {tuple(ref.shape)}; got {tuple(x.shape)}")
    return x


def nbpo_directions(
    *,
    x_pos: torch.Tensor,
    x_neg: torch.Tensor,
    g_pos: torch.Tensor | None = None,
    g_neg: torch.Tensor | None = None,
    variant: str = "nbpo",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ascent directions per (positive, unvoted) pair, as the code's inner loop computes them.

    See the module docstring's table. Shapes: each positive (row) with its ``n`` unvoted items.

    Args:
        x_pos: (B,) preference logits ``U_u . V_i`` of the positives.
        x_neg: (B, n) logits of each positive's sampled unvoted items.
        g_pos: (B,) flip logits ``P_u . Q_i``; required by ``nbpo``/``nbpoo``/``nbpos``.
        g_neg: (B, n) flip logits of the unvoted items; required likewise.
        variant: one of :data:`VARIANTS`.

    Returns:
        ``(dx_pos, dg_pos, dx_neg, dg_neg)``, each (B, n): the positive's term once per pair
        (the code adds it inside the sampling loop); the ``dg`` are zeros for ``bpo``/``bpr``.

    Raises:
        TypeError: non-floating or mismatched dtypes.
        ValueError: bad shapes, an unknown variant, missing flip logits.

    Example:
        >>> import torch
        >>> d = nbpo_directions(x_pos=torch.zeros(1), x_neg=torch.zeros(1, 2), variant="bpo")
        >>> d[0], d[2]
        (tensor([[0.5000, 0.5000]]), tensor([[-0.5000, -0.5000]]))
    """
    fn = "nbpo_directions"
    v = _checks.check_choice(fn, "variant", variant, VARIANTS)
    xp, xn = _check_pairs(fn, x_pos, x_neg)
    xi = xp[:, None].expand_as(xn)
    zero = torch.zeros_like(xn)
    if v == "bpr":
        s = clipped_sigmoid(xn - xi)  # the code's d(x) = sigmoid(-x) of x_ij = x_i - x_j
        return s, zero, -s, zero
    ri, rj = clipped_sigmoid(xi), clipped_sigmoid(xn)
    if v == "bpo":
        return 1 - ri, zero, -rj, zero
    if g_pos is None or g_neg is None:
        raise ValueError(f"{fn}: variant {v!r} needs g_pos and g_neg (the flip logits)")
    gp = _check_like(fn, "g_pos", g_pos, xp, "x_pos")
    gn = _check_like(fn, "g_neg", g_neg, xn, "x_neg")
    gi, gj = clipped_sigmoid(gp[:, None].expand_as(xn)), clipped_sigmoid(gn)
    if v == "nbpo":
        return (1 - gi) * (1 - ri), -gi * ri, gj * (1 - rj) - rj, (1 - gj) * rj
    if v == "nbpoo":
        den = (1 - rj) + gj * rj + 1e-10
        return 1 - ri, -gi, (gj - 1) * rj * (1 - rj) / den, gj * (1 - gj) * rj / den
    # nbpos
    return (
        (1 - gi) * ri * (1 - ri),
        -(1 - gi) * gi * ri,
        (gj - 1) * rj * (1 - rj),
        gj * (1 - gj) * rj,
    )


def nbpoo_log_likelihood(
    *, x_pos: torch.Tensor, x_neg: torch.Tensor, g_pos: torch.Tensor, g_neg: torch.Tensor
) -> torch.Tensor:
    """NBPOo's objective summed over pairs (positive counted once per unvoted item, as in the code).

    ``sum_pairs [log r_i + log(1 - gamma_i)] + log(1 - r_j (1 - gamma_j))`` with plain
    sigmoids; its gradient is ``nbpoo``'s direction (up to the 1e-10 and the sigmoid clip).
    The quantity to monitor for the heuristic ``nbpo`` rule.

    Example:
        >>> import torch
        >>> z = torch.zeros(1)
        >>> nbpoo_log_likelihood(x_pos=z, x_neg=z[:, None], g_pos=z, g_neg=z[:, None])
        tensor(-1.6740)
    """
    fn = "nbpoo_log_likelihood"
    xp, xn = _check_pairs(fn, x_pos, x_neg)
    gp = _check_like(fn, "g_pos", g_pos, xp, "x_pos")
    gn = _check_like(fn, "g_neg", g_neg, xn, "x_neg")
    n = xn.shape[1]
    pos = torch.nn.functional.logsigmoid(xp) + torch.nn.functional.logsigmoid(-gp)
    rj, gj = torch.sigmoid(xn), torch.sigmoid(gn)
    return n * pos.sum() + torch.log1p(-rj * (1 - gj)).sum()


def nbpos_likelihood(
    *, x_pos: torch.Tensor, x_neg: torch.Tensor, g_pos: torch.Tensor, g_neg: torch.Tensor
) -> torch.Tensor:
    """NBPOs's surrogate: ``sum_pairs r_i (1 - gamma_i) + (1 - r_j + r_j gamma_j)``.

    Example:
        >>> import torch
        >>> z = torch.zeros(1)
        >>> nbpos_likelihood(x_pos=z, x_neg=z[:, None], g_pos=z, g_neg=z[:, None])
        tensor(1.)
    """
    fn = "nbpos_likelihood"
    xp, xn = _check_pairs(fn, x_pos, x_neg)
    gp = _check_like(fn, "g_pos", g_pos, xp, "x_pos")
    gn = _check_like(fn, "g_neg", g_neg, xn, "x_neg")
    n = xn.shape[1]
    pos = torch.sigmoid(xp) * (1 - torch.sigmoid(gp))
    rj, gj = torch.sigmoid(xn), torch.sigmoid(gn)
    return n * pos.sum() + (1 - rj + rj * gj).sum()


def init_factors(
    n_users: int,
    n_items: int,
    *,
    dim: int = 50,
    flip_dim: int = 50,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> NBPOFactors:
    """The code's initialisation: ``U, V ~ U(0,1)/sqrt(K0)``, ``P ~ 5 U(0,1)/sqrt(K1)``,
    ``Q ~ -5 U(0,1)/sqrt(K1)`` (so ``gamma`` starts near 0.002 at K1 = 50: NBPO starts as BPO).

    Example:
        >>> import torch
        >>> f = init_factors(3, 4, dim=2, flip_dim=2, generator=torch.Generator().manual_seed(0))
        >>> [tuple(t.shape) for t in f]
        [(3, 2), (4, 2), (3, 2), (4, 2)]
    """
    fn = "init_factors"
    m = _checks.check_int(fn, "n_users", n_users, min_value=1)
    n = _checks.check_int(fn, "n_items", n_items, min_value=1)
    k0 = _checks.check_int(fn, "dim", dim, min_value=1)
    k1 = _checks.check_int(fn, "flip_dim", flip_dim, min_value=1)
    _checks.check_generator(fn, generator)

    def u(rows: int, k: int) -> torch.Tensor:
        return torch.rand(rows, k, generator=generator, dtype=torch.float64).to(dtype)

    return NBPOFactors(
        U=u(m, k0) / math.sqrt(k0),
        V=u(n, k0) / math.sqrt(k0),
        P=5 * u(m, k1) / math.sqrt(k1),
        Q=-5 * u(n, k1) / math.sqrt(k1),
    )


def sample_unvoted(
    train: torch.Tensor,
    users: torch.Tensor,
    n_neg: int = 4,
    *,
    generator: torch.Generator | None = None,
    max_rounds: int = 1000,
) -> torch.Tensor:
    """``n_neg`` items per row drawn uniformly among the user's non-training items (rejection).

    The code draws ``j`` uniformly from all N items and rejects training positives only, so
    validation/test positives can be drawn: they are the hidden positives NBPO is built for.

    Args:
        train: (M, N) bool matrix of training positives.
        users: (B,) int64 user ids.
        n_neg: unvoted items per row (the code's ``sample_rate`` = 4).
        generator: the only source of randomness (CPU generator for a CPU ``train``).
        max_rounds: give up after this many rejection rounds (a user with every item voted).

    Returns:
        (B, n_neg) int64 item ids, never a training positive of the row's user.

    Raises:
        TypeError: a non-bool ``train`` or non-integer ``users``.
        ValueError: bad shapes or ids, a user with no unvoted item.

    Example:
        >>> import torch
        >>> train = torch.tensor([[True, False, True]])
        >>> sample_unvoted(train, torch.tensor([0]), 3, generator=torch.Generator().manual_seed(0))
        tensor([[1, 1, 1]])
    """
    fn = "sample_unvoted"
    t = _checks.check_tensor(fn, "train", train)
    if t.dtype != torch.bool or t.dim() != 2:
        raise TypeError(f"{fn}: train must be a 2-D bool tensor; got {t.dtype}, {t.dim()}-D")
    us = _checks.check_tensor(fn, "users", users)
    if us.dtype != torch.int64 or us.dim() != 1:
        raise TypeError(f"{fn}: users must be a 1-D int64 tensor")
    if us.numel() and (int(us.min()) < 0 or int(us.max()) >= t.shape[0]):
        raise ValueError(f"{fn}: users must be in [0, {t.shape[0]})")
    k = _checks.check_int(fn, "n_neg", n_neg, min_value=1)
    _checks.check_generator(fn, generator, t.device)
    if bool(t[us].all(dim=1).any()):
        raise ValueError(f"{fn}: a user has every item as a training positive (nothing unvoted)")
    out = torch.randint(t.shape[1], (us.numel(), k), generator=generator, device=t.device)
    for _ in range(max_rounds):
        bad = t[us[:, None].expand_as(out), out]
        if not bool(bad.any()):
            return out
        redraw = torch.randint(t.shape[1], out.shape, generator=generator, device=t.device)
        out = torch.where(bad, redraw, out)
    raise ValueError(f"{fn}: rejection sampling did not finish in {max_rounds} rounds")


def nbpo_step(
    factors: NBPOFactors,
    users: torch.Tensor,
    pos_items: torch.Tensor,
    neg_items: torch.Tensor,
    *,
    variant: str = "nbpo",
    lr: float = 0.05,
    reg: float = 1.0,
    reg_flip: float = 5.0,
) -> NBPOFactors:
    """One batch update of the code: summed directions from the pre-batch factors, then decay.

    ``dU[u] += D V[i]``, ``dV[i] += D U[u]`` for every pair term (and ``dP``/``dQ`` with the
    ``dg`` terms), then ``U += lr (dU - reg U)``, ``V`` likewise, ``P``/``Q`` with ``reg_flip``
    (decay on every row, every batch). Not a gradient step of any loss for ``nbpo``.

    Args:
        factors: the current :class:`NBPOFactors` (not modified).
        users: (B,) int64 users of the batch's positives.
        pos_items: (B,) int64 positive items.
        neg_items: (B, n) int64 unvoted items (:func:`sample_unvoted`).
        variant: one of :data:`VARIANTS`.
        lr: ``eta`` (code: 0.05 Amazon, 0.02 MovieLens; decayed x0.99 per epoch by the caller).
        reg: ``lambda_r`` (code: 1 Amazon, 0.5 MovieLens).
        reg_flip: ``lambda_phi`` (code: 5 Amazon, 1 MovieLens).

    Returns:
        The updated factors (new tensors).

    Raises:
        TypeError / ValueError: bad shapes, ids or hyperparameters (naming the argument).

    Example:
        >>> import torch
        >>> f = init_factors(2, 3, dim=2, flip_dim=2, generator=torch.Generator().manual_seed(0))
        >>> new = nbpo_step(f, torch.tensor([0]), torch.tensor([1]), torch.tensor([[2]]))
        >>> new.U.shape
        torch.Size([2, 2])
    """
    fn = "nbpo_step"
    v = _checks.check_choice(fn, "variant", variant, VARIANTS)
    eta = _checks.check_nonnegative(fn, "lr", lr)
    lam_r = _checks.check_nonnegative(fn, "reg", reg)
    lam_phi = _checks.check_nonnegative(fn, "reg_flip", reg_flip)
    U, V, P, Q = (_checks.check_float(fn, n, t) for n, t in zip("UVPQ", factors, strict=True))
    m, n_items = U.shape[0], V.shape[0]
    u = _index(fn, "users", users, m, 1)
    i = _index(fn, "pos_items", pos_items, n_items, 1)
    j = _index(fn, "neg_items", neg_items, n_items, 2)
    if not (u.shape[0] == i.shape[0] == j.shape[0]):
        raise ValueError(f"{fn}: users, pos_items and neg_items need the same batch size")
    uu = u[:, None].expand_as(j)
    x_pos = (U[u] * V[i]).sum(-1)
    x_neg = (U[uu] * V[j]).sum(-1)
    flip = v in _FLIP
    g_pos = (P[u] * Q[i]).sum(-1) if flip else None
    g_neg = (P[uu] * Q[j]).sum(-1) if flip else None
    dxp, dgp, dxn, dgn = nbpo_directions(
        x_pos=x_pos, x_neg=x_neg, g_pos=g_pos, g_neg=g_neg, variant=v
    )
    a_pos, a_neg = dxp.sum(1), dxn  # the positive's term once per sampled negative
    dU = torch.zeros_like(U).index_add_(0, u, a_pos[:, None] * V[i])
    dU.index_add_(0, uu.reshape(-1), (a_neg[..., None] * V[j]).reshape(-1, U.shape[1]))
    dV = torch.zeros_like(V).index_add_(0, i, a_pos[:, None] * U[u])
    dV.index_add_(0, j.reshape(-1), (a_neg[..., None] * U[uu]).reshape(-1, U.shape[1]))
    new_u, new_v = U + eta * (dU - lam_r * U), V + eta * (dV - lam_r * V)
    if not flip:
        return NBPOFactors(new_u, new_v, P, Q)
    b_pos = dgp.sum(1)
    dP = torch.zeros_like(P).index_add_(0, u, b_pos[:, None] * Q[i])
    dP.index_add_(0, uu.reshape(-1), (dgn[..., None] * Q[j]).reshape(-1, P.shape[1]))
    dQ = torch.zeros_like(Q).index_add_(0, i, b_pos[:, None] * P[u])
    dQ.index_add_(0, j.reshape(-1), (dgn[..., None] * P[uu]).reshape(-1, P.shape[1]))
    return NBPOFactors(new_u, new_v, P + eta * (dP - lam_phi * P), Q + eta * (dQ - lam_phi * Q))


def _index(fn: str, name: str, t: object, high: int, dim: int) -> torch.Tensor:
    x = _checks.check_tensor(fn, name, t)
    if x.dtype != torch.int64 or x.dim() != dim:
        raise TypeError(f"{fn}: {name} must be a {dim}-D int64 tensor")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= high):
        raise ValueError(f"{fn}: {name} must hold ids in [0, {high})")
    return x


class NBPO(nn.Module):
    """Module form of :func:`nbpo_step` (stateless; stores the rule and its hyperparameters).

    ``forward(U, V, P, Q, users, pos_items, neg_items)`` returns the updated
    :class:`NBPOFactors`. Code defaults (Amazon): ``lr=0.05, reg=1, reg_flip=5``.

    Example:
        >>> import torch
        >>> f = init_factors(2, 3, dim=2, flip_dim=2, generator=torch.Generator().manual_seed(0))
        >>> step = NBPO(variant="nbpo")
        >>> step(*f, torch.tensor([0]), torch.tensor([1]), torch.tensor([[2]])).V.shape
        torch.Size([3, 2])
    """

    def __init__(
        self, *, variant: str = "nbpo", lr: float = 0.05, reg: float = 1.0, reg_flip: float = 5.0
    ) -> None:
        super().__init__()
        self.variant = _checks.check_choice("NBPO", "variant", variant, VARIANTS)
        self.lr = _checks.check_nonnegative("NBPO", "lr", lr)
        self.reg = _checks.check_nonnegative("NBPO", "reg", reg)
        self.reg_flip = _checks.check_nonnegative("NBPO", "reg_flip", reg_flip)

    def forward(
        self,
        U: torch.Tensor,
        V: torch.Tensor,
        P: torch.Tensor,
        Q: torch.Tensor,
        users: torch.Tensor,
        pos_items: torch.Tensor,
        neg_items: torch.Tensor,
    ) -> NBPOFactors:
        """The updated factors after one batch (see :func:`nbpo_step`)."""
        return nbpo_step(
            NBPOFactors(U, V, P, Q),
            users,
            pos_items,
            neg_items,
            variant=self.variant,
            lr=self.lr,
            reg=self.reg,
            reg_flip=self.reg_flip,
        )

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, lr={self.lr}, reg={self.reg}, reg_flip={self.reg_flip}"
