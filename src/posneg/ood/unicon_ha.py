"""UniCon-HA: unilaterally aggregated contrastive learning with hierarchical augmentation.

Wang, Wang, Qin, Zhang, Bao, Huang. *Unilaterally Aggregated Contrastive Learning with
Hierarchical Augmentation for Anomaly Detection.* ICCV 2023, arXiv:2308.10155.
**No public code was found**: everything here follows the paper's text (Eqs. 4-9) and is
[paper, unverified]; choices the text leaves open are marked "library choice".

* **Virtual outliers** (:func:`rotation_outliers`): ``s(x)`` for rotations 90°, 180°, 270°;
  batch ratio inliers : outliers = 1 : 3. Every sample gets two views.
* **UniCLR** (:func:`uniclr_loss`, Eqs. 4-5). With ``p(j|i) = e^{z_i·z_j/τ} / Σ_{k≠i}
  e^{z_i·z_k/τ}`` over all ``2N`` views: an **inlier** view's positives are every other inlier
  view (same label only, in the labelled variant), its negatives everything else; an
  **outlier** view's only positive is its other view. ``L_i = −(1/|P_i|) Σ_{j∈P_i} log p(j|i)``
  and ``L = (1/N) Σ_{i over 2N views} L_i`` (``(1/|B̃|) Σ (L_i^{v1} + L_i^{v2})``).
* **Soft aggregation** (:func:`soft_weights`, Eqs. 6-7), inliers only, last stage only:
  ``w_i = Σ_{j≠i} e^{z_i·z_j/τ_w} / Σ_k Σ_{j≠k} e^{z_k·z_j/τ_w}`` over the inlier views (sums to
  1; small for an outlier-like crop). As printed, ``w_x w_x'`` sits inside the log (a constant
  there), and a per-anchor normalisation ``Σ_{x'} w_x w_x'`` would cancel ``w_x``; implemented
  (library choice) is the inlier term ``−n_in · Σ_{i,j} w_i w_j P_ij log p(j|i) /
  Σ_{i,j} w_i w_j P_ij`` with ``w`` detached, which equals the UniCLR inlier term for uniform
  ``w`` (whenever every inlier anchor has the same number of positives, as one-class).
* **Hierarchical augmentation** (:func:`hierarchical_loss`, Eqs. 8-9): stage ``s`` sees views
  of strength ``T_s`` (increasing), a head projects its features; ``L_all = (1/S) Σ_s λ_s
  L_UniCLR(stage s)``, soft aggregation at the last stage. :func:`augment` is a small
  digit-sized augmentation family (shift, intensity, noise; library choice: the paper uses
  SimCLR augmentations, whose per-stage strengths are in the unavailable supplement).
* **Score** (:func:`anomaly_score`): ``−max_m cos(f(x), f(x_m))`` over the training inliers,
  averaged over test-time augmentations when given ``(A, N, D)`` (higher = more anomalous; the
  paper's ``s(x)`` is the negated form).

Defaults: ``τ = τ_w = 0.5``.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(4, 1, 8, 8, generator=g)
    >>> batch, is_inlier = with_rotation_outliers(x)
    >>> z1, z2 = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g)
    >>> UniCLRLoss()(z1, z2, is_inlier).shape
    torch.Size([])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks

__all__ = [
    "UniCLRLoss",
    "UniConHAScorer",
    "anomaly_score",
    "augment",
    "hierarchical_loss",
    "rotation_outliers",
    "soft_weights",
    "uniclr_loss",
    "with_rotation_outliers",
]

CITATION = """
@inproceedings{wang2023uniconha,
  title     = {Unilaterally Aggregated Contrastive Learning with Hierarchical Augmentation for
               Anomaly Detection},
  author    = {Wang, Guodong and Wang, Yunhong and Qin, Jie and Zhang, Dongming and Bao, Xiuguo
               and Huang, Di},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2023},
  note      = {arXiv:2308.10155}
}
"""


def rotation_outliers(x: torch.Tensor) -> torch.Tensor:
    """Virtual outliers ``[rot90(x); rot180(x); rot270(x)]`` (last two dims), ``(3N, ...)``."""
    xf = _checks.check_float("rotation_outliers", "x", x)
    if xf.dim() < 3:
        raise ValueError(f"rotation_outliers: x must be (N, ..., H, W); got {tuple(xf.shape)}")
    return torch.cat([torch.rot90(xf, k, dims=(-2, -1)) for k in (1, 2, 3)])


def with_rotation_outliers(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cat[x, rotation_outliers(x)], is_inlier)`` with ``is_inlier`` ``(4N,)`` bool."""
    out = rotation_outliers(x)
    flags = torch.zeros(4 * x.shape[0], dtype=torch.bool, device=x.device)
    flags[: x.shape[0]] = True
    return torch.cat([x, out]), flags


def augment(
    x: torch.Tensor,
    *,
    strength: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A view of strength ``s ∈ [0, 1]``: random shift by up to ``round(2s)`` pixels (zero fill),
    intensity scaling in ``[1 − 0.5s, 1]`` and Gaussian noise of std ``0.1s`` (library choice).

    ``x``: ``(N, C, H, W)``. Draws from ``generator`` only.
    """
    fn = "augment"
    xf = _checks.check_float(fn, "x", x)
    if xf.dim() != 4:
        raise ValueError(f"{fn}: x must be (N, C, H, W); got {tuple(xf.shape)}")
    s = _checks.check_range(fn, "strength", strength, 0.0, 1.0)
    n, _, h, w = xf.shape
    m = round(2 * s)
    dev = generator.device if generator is not None else xf.device
    out = xf
    if m > 0:
        pad = F.pad(xf, (m, m, m, m))
        shifts = torch.randint(0, 2 * m + 1, (n, 2), generator=generator, device=dev)
        shifts = shifts.to(xf.device)
        rows = (shifts[:, :1] + torch.arange(h, device=xf.device)).reshape(n, 1, h, 1)
        cols = (shifts[:, 1:] + torch.arange(w, device=xf.device)).reshape(n, 1, 1, w)
        batch = torch.arange(n, device=xf.device).reshape(n, 1, 1, 1)
        chan = torch.arange(xf.shape[1], device=xf.device).reshape(1, -1, 1, 1)
        out = pad[batch, chan, rows, cols]
    scale = 1 - 0.5 * s * torch.rand(n, 1, 1, 1, generator=generator, dtype=xf.dtype, device=dev)
    noise = 0.1 * s * torch.randn(xf.shape, generator=generator, dtype=xf.dtype, device=dev)
    return out * scale.to(xf.device) + noise.to(xf.device)


def soft_weights(z: torch.Tensor, *, temperature: float = 0.5) -> torch.Tensor:
    """``w_i = Σ_{j≠i} e^{z_i·z_j/τ_w} / Σ_k Σ_{j≠k} e^{z_k·z_j/τ_w}`` over ``(M, D)`` inlier
    views (normalised inside); ``(M,)``, sums to 1, detached."""
    fn = "soft_weights"
    zf = _checks.check_embeddings(fn, "z", z, min_rows=2)
    tau = _checks.check_positive(fn, "temperature", temperature)
    zn = F.normalize(zf.detach(), dim=1)
    logits = zn @ zn.T / tau
    logits = logits.masked_fill(
        torch.eye(zn.shape[0], dtype=torch.bool, device=zn.device), -torch.inf
    )
    row = torch.logsumexp(logits, dim=1)
    return torch.softmax(row, dim=0)


def _positive_mask(is_inlier: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    n = is_inlier.shape[0]
    inl = torch.cat([is_inlier, is_inlier])
    idx = torch.arange(2 * n, device=is_inlier.device)
    twin = (idx.unsqueeze(1) % n) == (idx.unsqueeze(0) % n)
    eye = torch.eye(2 * n, dtype=torch.bool, device=is_inlier.device)
    same = inl.unsqueeze(1) & inl.unsqueeze(0)
    if labels is not None:
        lab = torch.cat([labels, labels])
        same = same & (lab.unsqueeze(1) == lab.unsqueeze(0))
    inlier_rows = same & ~eye
    outlier_rows = twin & ~eye
    return torch.where(inl.unsqueeze(1), inlier_rows | (twin & ~eye), outlier_rows)


def uniclr_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    is_inlier: torch.Tensor,
    *,
    temperature: float = 0.5,
    labels: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """UniCLR loss (Eqs. 4-5; with ``weights``, soft aggregation Eqs. 6-7).

    Args:
        z1, z2: ``(N, D)`` embeddings of the two views (L2-normalised inside).
        is_inlier: ``(N,)`` bool; ``False`` = virtual outlier.
        temperature: ``τ``.
        labels: ``(N,)`` inlier class labels for the labelled variant (ignored for outliers).
        weights: ``(2·n_in,)`` soft-aggregation weights of the inlier views, ordered as the
            inlier rows of ``cat[z1, z2]`` (see :func:`soft_weights`); ``None`` = uniform.

    Returns:
        Scalar ``(1/N) Σ_{i over 2N views} L_i``.
    """
    fn = "uniclr_loss"
    a = _checks.check_embeddings(fn, "z1", z1, min_rows=1)
    b = _checks.check_embeddings(fn, "z2", z2, min_rows=1)
    _checks.check_same_shape(fn, "z2", b, "z1", a)
    n = a.shape[0]
    if not isinstance(is_inlier, torch.Tensor) or is_inlier.dtype != torch.bool:
        raise TypeError(f"{fn}: is_inlier must be a bool tensor")
    if is_inlier.shape != (n,):
        raise ValueError(f"{fn}: is_inlier must have shape ({n},); got {tuple(is_inlier.shape)}")
    tau = _checks.check_positive(fn, "temperature", temperature)
    flags = is_inlier.to(a.device)
    lab = None if labels is None else _checks.check_labels(fn, "labels", labels, n, a.device)
    z = torch.cat([a, b])
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()  # reduce half inputs in float32
    z = F.normalize(z, dim=1)
    logits = z @ z.T / tau
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    log_p = logits - torch.logsumexp(logits.masked_fill(eye, -torch.inf), dim=1, keepdim=True)
    pos = _positive_mask(flags, lab).to(z.dtype)
    per_anchor = -(pos * log_p).sum(1) / pos.sum(1).clamp_min(1)
    inl = torch.cat([flags, flags])
    if weights is None:
        return per_anchor.sum() / n
    n_in = int(inl.sum())
    w = _checks.check_float(fn, "weights", weights).detach().to(z)
    if w.shape != (n_in,):
        raise ValueError(
            f"{fn}: weights must have shape ({n_in},) (inlier views); got {tuple(w.shape)}"
        )
    full = torch.zeros(2 * n, dtype=z.dtype, device=z.device)
    full[inl] = w
    pair_w = (full.unsqueeze(1) * full.unsqueeze(0)) * pos * inl.unsqueeze(1).to(z.dtype)
    inlier_term = -n_in * (pair_w * log_p).sum() / pair_w.sum().clamp_min(torch.finfo(z.dtype).tiny)
    outlier_term = per_anchor[~inl].sum()
    return (inlier_term + outlier_term) / n


def hierarchical_loss(
    stages_z1: Sequence[torch.Tensor],
    stages_z2: Sequence[torch.Tensor],
    is_inlier: torch.Tensor,
    *,
    lambdas: Sequence[float] | None = None,
    temperature: float = 0.5,
    soft_aggregation: bool = True,
    temperature_w: float = 0.5,
) -> torch.Tensor:
    """``L_all = (1/S) Σ_s λ_s L_UniCLR(z1_s, z2_s)``; soft aggregation at the last stage only.

    ``stages_z1[s]``, ``stages_z2[s]``: ``(N, D_s)`` head outputs of stage ``s`` for views of
    strength ``T_s``. ``lambdas``: default all 1.
    """
    fn = "hierarchical_loss"
    if len(stages_z1) != len(stages_z2) or not stages_z1:
        raise ValueError(f"{fn}: stages_z1 and stages_z2 must be non-empty lists of one length")
    lam = [1.0] * len(stages_z1) if lambdas is None else [float(v) for v in lambdas]
    if len(lam) != len(stages_z1):
        raise ValueError(f"{fn}: lambdas must have {len(stages_z1)} entries; got {len(lam)}")
    total = stages_z1[0].new_zeros(())
    last = len(stages_z1) - 1
    for s, (z1, z2) in enumerate(zip(stages_z1, stages_z2, strict=True)):
        w = None
        if soft_aggregation and s == last:
            flags = is_inlier.to(z1.device)
            w = soft_weights(torch.cat([z1[flags], z2[flags]]), temperature=temperature_w)
        total = total + lam[s] * uniclr_loss(z1, z2, is_inlier, temperature=temperature, weights=w)
    return total / len(stages_z1)


def anomaly_score(features: torch.Tensor, train_features: torch.Tensor) -> torch.Tensor:
    """``−max_m cos(f(x), f(x_m))``; ``features`` ``(N, D)`` or ``(A, N, D)`` (TTA, averaged)."""
    fn = "anomaly_score"
    f = _checks.check_float(fn, "features", features)
    t = _checks.check_embeddings(fn, "train_features", train_features, min_rows=1)
    if f.dim() == 2:
        f = f.unsqueeze(0)
    if f.dim() != 3 or f.shape[-1] != t.shape[1]:
        raise ValueError(
            f"{fn}: features must be (N, {t.shape[1]}) or (A, N, {t.shape[1]}); "
            f"got {tuple(features.shape)}"
        )
    fn_, tn = F.normalize(f, dim=-1), F.normalize(t, dim=1)
    return -(fn_ @ tn.T).amax(dim=-1).mean(dim=0)


class UniCLRLoss(nn.Module):
    """Module form of :func:`uniclr_loss` (optionally with soft aggregation on the inliers).

    Args:
        temperature: ``τ`` (0.5).
        soft_aggregation: weight inlier pairs by :func:`soft_weights` of the inlier views.
        temperature_w: ``τ_w`` (0.5).
    """

    def __init__(
        self,
        temperature: float = 0.5,
        *,
        soft_aggregation: bool = False,
        temperature_w: float = 0.5,
    ) -> None:
        super().__init__()
        self.temperature = _checks.check_positive("UniCLRLoss", "temperature", temperature)
        self.soft_aggregation = _checks.check_bool(
            "UniCLRLoss", "soft_aggregation", soft_aggregation
        )
        self.temperature_w = _checks.check_positive("UniCLRLoss", "temperature_w", temperature_w)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, soft_aggregation={self.soft_aggregation}, "
            f"temperature_w={self.temperature_w}"
        )

    def forward(
        self,
        z1: torch.Tensor,
        z2: torch.Tensor,
        is_inlier: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        w = None
        if self.soft_aggregation:
            flags = is_inlier.to(z1.device)
            w = soft_weights(torch.cat([z1[flags], z2[flags]]), temperature=self.temperature_w)
        return uniclr_loss(
            z1, z2, is_inlier, temperature=self.temperature, labels=labels, weights=w
        )


class UniConHAScorer(nn.Module):
    """Max-cosine anomaly scorer on features the caller computed (higher = more anomalous).

    Fitted state: ``train_features_`` ``(M, D)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("train_features_", torch.zeros(0, 0))

    def fit(self, features: torch.Tensor) -> UniConHAScorer:
        f = _checks.check_embeddings("UniConHAScorer.fit", "features", features, min_rows=1)
        self.train_features_ = f.detach().clone()
        return self

    def score(self, features: torch.Tensor) -> torch.Tensor:
        if self.train_features_.numel() == 0:
            raise ValueError("UniConHAScorer.score: call fit(features) first")
        return anomaly_score(features, self.train_features_)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.score(features)

    def _load_from_state_dict(self, state_dict, prefix, *args):  # type: ignore[no-untyped-def]
        key = prefix + "train_features_"
        if key in state_dict:
            self.train_features_ = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args)
