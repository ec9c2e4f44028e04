"""AdAutoMix: a cross-attention mixed-sample generator trained against the classifier.

Qin, Jin, Jiang, El-Yacoubi, Gao. Adversarial AutoMixup. ICLR 2024, arXiv 2312.11954.
Transcribed from the official code, JinXins/Adversarial-AutoMixup at commit 9d6fd12:
``openmixup/models/classifiers/AdAutoMix.py`` (``forward_train``, ``co_mixup``, ``forward_q``,
``forward_k``), ``openmixup/models/heads/Ada_mix_pine.py`` (``AdaptiveMask``) and
``openmixup/models/heads/cls_mixup_head.py`` (``co_loss``).

Per step, with ``N`` sources (``mix_samples``, 3 in the configs):

1. ``b_i ~ Beta(alpha, alpha)`` i.i.d., ``lam_i = b_i / sum(b)`` (normalised Betas, not a
   Dirichlet). For ``N = 2`` the code draws two Betas: ``lam_mb = (l0, 1 - l0)`` for the
   generator's mix and ``lam_bb = (l1, 1 - l1)`` for the classifier's, sources ``(x, x[pi])``.
2. Two sets of ``N`` independent permutations ``I_mb``, ``I_bb`` (for ``N > 2`` the
   un-permuted batch is not among the sources; one image can appear twice in a mix).
3. Masks from the EMA teacher's features ``F`` (:func:`adaptive_mask`): per source
   ``q_i = relu(Wq f_i)``, ``k_i = relu(Wk f_i)``, ``v_i = Wv f_i``;
   ``A_i = softmax_rows(sum_{j != i} q_i k_j^T / sqrt(d))``, ``m_i = A_i v_i``; upsample to the
   input size, then softmax over the ``N`` sources (the weights sum to 1 at every position).
4. ``x_mb = sum_i M_mb[:, i] * x[pi_i]`` keeps the gradient to the generator;
   ``M_bb`` is detached and replaced by the constants ``lam_i`` when ``lam_0 <= lam_margin`` or
   ``lam_0 > 1 - lam_margin`` (plain linear mixing).
5. Classifier loss (:func:`adautomix_classifier_loss`):
   ``L_q = CE_lam(q(x_bb)) + (1 - r) CE(q(x), y) + r CE_lam(q(sum_i lam_i x[pi'_i]))`` with
   ``r = mixup_ratio = 0.5`` for ``N > 2``; ``CE_lam(q(x_bb)) + CE(q(x), y)`` for ``N = 2``.
6. Generator loss through the frozen teacher (:func:`adautomix_generator_loss`):
   ``L_k = CE_lam(k(x_mb))``, ``c = mean_b sum_i lam_i cos(k(x_mb), k(x[pi_i]))``; on the
   adversarial steps (the code's even counter: the 1st, 3rd, ... calls)
   ``L_G = -beta L_k + (1 - beta) c`` with ``beta = 0.3``; on the others ``L_G = +L_k``
   (a cooperative AutoMix step). One backward of ``L_q + L_G``.

Notes on the transcription: ``CE_lam`` is the soft-target cross-entropy against
``sum_i lam_i onehot(y[pi_i])`` built with :mod:`posneg.mixing._targets` (equal to the code's
``sum_i lam_i CE(., y[pi_i])`` for class ids). The cosine term enters with the code's sign
(minimising ``+(1 - beta) c`` *lowers* the similarity); ``cosine_sign=-1`` flips it. The 1x1
convolutions are linear maps over the channel axis, so the generator works for feature maps
``(B, C, h, w)`` and ``(B, C, l)`` alike (for sequences the mask is upsampled linearly instead of
bilinearly) -- the formulation only needs a flattened set of positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks, _rng
from posneg.mixing import _common, _targets

__all__ = [
    "CITATION",
    "AdAutoMix",
    "AdAutoMixLosses",
    "AdAutoMixParams",
    "AdaptiveMask",
    "adaptive_mask",
    "adautomix_classifier_loss",
    "adautomix_cosine",
    "adautomix_generator_loss",
    "adautomix_momentum",
    "ema_update",
    "mix_sources",
    "mixed_cross_entropy",
    "sample_adautomix_params",
]

CITATION = """
@inproceedings{qin2024adautomix,
  title     = {Adversarial AutoMixup},
  author    = {Qin, Huafeng and Jin, Xin and Jiang, Yun and El-Yacoubi, Mounim A. and Gao, Xinbo},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2024},
  eprint    = {2312.11954},
  archivePrefix = {arXiv}
}
"""

UpsampleMode = Literal["linear", "nearest"]


@dataclass(frozen=True)
class AdAutoMixParams:
    """One draw of AdAutoMix's randomness.

    Attributes:
        lam_mb: (N,) float32 source weights of the generator's mix (sum 1).
        lam_bb: (N,) float32 source weights of the classifier's mix (equal to ``lam_mb`` for
            N > 2, a second Beta draw for N = 2 as in the code).
        index_mb: (N, B) int64 source rows of the generator's mix.
        index_bb: (N, B) int64 source rows of the classifier's mix.
    """

    lam_mb: torch.Tensor
    lam_bb: torch.Tensor
    index_mb: torch.Tensor
    index_bb: torch.Tensor


def sample_adautomix_params(
    batch: int,
    *,
    n_sources: int = 3,
    alpha: float = 1.0,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> AdAutoMixParams:
    """Draw the source weights and source permutations of one AdAutoMix step.

    N > 2: ``lam = b / sum(b)``, ``b_i ~ Beta(alpha, alpha)``, shared by both mixes; ``2N``
    independent permutations. N = 2: ``lam_mb = (l0, 1 - l0)``, ``lam_bb = (l1, 1 - l1)`` and the
    sources ``(identity, pi)`` of each mix (``forward_train``'s two-sample branch).

    Args:
        batch: B >= 1.
        n_sources: N >= 2 (``mix_samples``).
        alpha: Beta concentration > 0.
        device: where the draws are made.
        generator: drawn from. Order: Betas, then the mb permutations, then the bb ones.

    Returns:
        :class:`AdAutoMixParams`.

    Raises:
        ValueError: batch < 1, n_sources < 2 or alpha <= 0.

    Example:
        >>> p = sample_adautomix_params(4, generator=torch.Generator().manual_seed(0))
        >>> p.index_mb.shape, float(p.lam_mb.sum())
        (torch.Size([3, 4]), 1.0)
    """
    fn = "sample_adautomix_params"
    b = _common.check_batch(fn, "batch", batch)
    n = _checks.check_int(fn, "n_sources", n_sources, min_value=2)
    a = _common.check_alpha(fn, alpha)
    _common.check_generator(fn, generator, device)
    draws = _rng.beta(a, a, (n,), device=device, dtype=torch.float64, generator=generator)
    if n == 2:
        lam_mb = torch.stack([draws[0], 1 - draws[0]]).float()
        lam_bb = torch.stack([draws[1], 1 - draws[1]]).float()
        ident = torch.arange(b, device=device)
        perms = [_common.draw_permutation(b, device=device, generator=generator) for _ in range(2)]
        return AdAutoMixParams(
            lam_mb=lam_mb,
            lam_bb=lam_bb,
            index_mb=torch.stack([ident, perms[0]]),
            index_bb=torch.stack([ident, perms[1]]),
        )
    lam = (draws / draws.sum()).float()
    perms = [_common.draw_permutation(b, device=device, generator=generator) for _ in range(2 * n)]
    return AdAutoMixParams(
        lam_mb=lam,
        lam_bb=lam.clone(),
        index_mb=torch.stack(perms[:n]),
        index_bb=torch.stack(perms[n:]),
    )


def adaptive_mask(
    features: torch.Tensor,
    *,
    w_q: torch.Tensor,
    b_q: torch.Tensor,
    w_k: torch.Tensor,
    b_k: torch.Tensor,
    w_v: torch.Tensor,
    b_v: torch.Tensor,
    size: Sequence[int],
    mode: UpsampleMode = "linear",
    use_scale: bool = True,
) -> torch.Tensor:
    """The generator's mixing masks from the sources' feature maps (``AdaptiveMask.co_mix``).

    ``q_i = relu(Wq f_i + bq)``, ``k_i = relu(Wk f_i + bk)`` (mmcv ``ConvModule``: 1x1 conv then
    its default ReLU), ``v_i = Wv f_i + bv`` (a plain 1x1 conv),
    ``A_i = softmax_rows(sum_{j != i} q_i k_j^T / sqrt(d))``, ``m_i = A_i v_i``; the ``N`` maps
    are interpolated to ``size`` and normalised by a softmax over the sources. For N = 2 this is
    ``normal_mix`` (``A_0 = softmax(q_0 k_1^T)``, ``A_1 = softmax(q_1 k_0^T)``).

    Args:
        features: (N, B, C, *S) the N sources' feature maps, ``S`` = (h, w) or (l,).
        w_q, w_k: (d, C); b_q, b_k: (d,). w_v: (1, C); b_v: (1,).
        size: the output spatial size (len(S) ints): the input's.
        mode: ``"linear"`` (bilinear for 2-D, the CIFAR configs) or ``"nearest"``.
        use_scale: divide the logits by sqrt(d).

    Returns:
        (B, N, *size) masks, non-negative and summing to 1 over N at every position.

    Raises:
        ValueError: bad shapes or mode.
    """
    fn = "adaptive_mask"
    f = _checks.check_tensor(fn, "features", features)
    if f.dim() not in (4, 5) or f.shape[0] < 2:
        raise ValueError(
            f"{fn}: features must be (N, B, C, h, w) or (N, B, C, l) with N >= 2; "
            f"got {tuple(f.shape)}"
        )
    n, b, c = f.shape[:3]
    spatial = tuple(f.shape[3:])
    if w_q.shape[1:] != (c,) or w_k.shape != w_q.shape or w_v.shape != (1, c):
        raise ValueError(f"{fn}: w_q, w_k must be (d, {c}) and w_v (1, {c}) for C={c} features")
    out = tuple(int(s) for s in size)
    if len(out) != len(spatial):
        raise ValueError(f"{fn}: size must have {len(spatial)} entries; got {out}")
    if mode not in ("linear", "nearest"):
        raise ValueError(f"{fn}: mode must be 'linear' or 'nearest'; got {mode!r}")
    # the code's float32 attention, at least (half features meet float32 weights here)
    acc = torch.promote_types(torch.promote_types(f.dtype, w_q.dtype), torch.float32)
    tokens = f.reshape(n, b, c, -1).transpose(2, 3).to(acc)  # (N, B, P, C)
    q = F.relu(F.linear(tokens, w_q.to(acc), b_q.to(acc)))  # (N, B, P, d)
    k = F.relu(F.linear(tokens, w_k.to(acc), b_k.to(acc)))
    v = F.linear(tokens, w_v.to(acc), b_v.to(acc))  # (N, B, P, 1)
    k_sum = k.sum(0, keepdim=True)  # sum_{j != i} q_i k_j^T = q_i (sum_j k_j - k_i)^T
    logits = q @ (k_sum - k).transpose(-1, -2)  # (N, B, P, P)
    if use_scale:
        logits = logits / math.sqrt(w_q.shape[0])
    m = logits.softmax(-1) @ v  # (N, B, P, 1)
    masks = m.squeeze(-1).transpose(0, 1).reshape(b, n, *spatial)
    if mode == "linear":
        interp = "bilinear" if len(spatial) == 2 else "linear"
        masks = F.interpolate(masks, size=out, mode=interp, align_corners=False)
    else:
        masks = F.interpolate(masks, size=out, mode="nearest")
    return masks.softmax(dim=1).to(f.dtype)


class AdaptiveMask(nn.Module):
    """AdAutoMix's generator G (``AdaptiveMask`` with ``lam_concat=False``): learnable 1x1 maps.

    Args:
        in_channels: C of the feature maps.
        reduction: d = max(C // reduction, 1) (2 in the configs).
        mode: upsampling, ``"linear"`` (the CIFAR configs' bilinear) or ``"nearest"``.
        use_scale: divide attention logits by sqrt(d).
        generator: initialises the weights N(0, 0.01), biases 0 (``init_weights('normal')``).

    Example:
        >>> g = AdaptiveMask(8, generator=torch.Generator().manual_seed(0))
        >>> g(torch.randn(3, 2, 8, 4, 4), size=(8, 8)).sum(1).allclose(torch.ones(2, 8, 8))
        True
    """

    def __init__(
        self,
        in_channels: int,
        *,
        reduction: int = 2,
        mode: UpsampleMode = "linear",
        use_scale: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        fn = "AdaptiveMask"
        c = _checks.check_int(fn, "in_channels", in_channels, min_value=1)
        r = _checks.check_int(fn, "reduction", reduction, min_value=1)
        if mode not in ("linear", "nearest"):
            raise ValueError(f"{fn}: mode must be 'linear' or 'nearest'; got {mode!r}")
        self.in_channels, self.reduction, self.mode = c, r, mode
        self.use_scale = bool(use_scale)
        d = max(c // r, 1)
        self.q = nn.Linear(c, d)
        self.k = nn.Linear(c, d)
        self.v = nn.Linear(c, 1)
        with torch.no_grad():
            for lin in (self.q, self.k, self.v):
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=generator) * 0.01)
                lin.bias.zero_()

    def forward(self, features: torch.Tensor, *, size: Sequence[int]) -> torch.Tensor:
        """Masks (B, N, *size) of features (N, B, C, *S); see :func:`adaptive_mask`."""
        return adaptive_mask(
            features,
            w_q=self.q.weight,
            b_q=self.q.bias,
            w_k=self.k.weight,
            b_k=self.k.bias,
            w_v=self.v.weight,
            b_v=self.v.bias,
            size=size,
            mode=self.mode,
            use_scale=self.use_scale,
        )

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, reduction={self.reduction}, "
            f"mode={self.mode!r}, use_scale={self.use_scale}"
        )


def mix_sources(x: torch.Tensor, masks: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``sum_i masks[:, i] * x[index[i]]`` (``co_mixup``): x (B, C, *S), masks (B, N, *S) or
    (N,) constant weights, index (N, B)."""
    fn = "mix_sources"
    if index.dim() != 2 or index.shape[1] != x.shape[0]:
        raise ValueError(f"{fn}: index must be (N, B={x.shape[0]}); got {tuple(index.shape)}")
    n = index.shape[0]
    src = x[index.reshape(-1)].reshape(n, *x.shape)  # (N, B, C, *S)
    if masks.dim() == 1:
        if masks.shape[0] != n:
            raise ValueError(f"{fn}: masks must have N={n} weights; got {tuple(masks.shape)}")
        w = masks.to(x.dtype).reshape(n, *([1] * x.dim()))
    else:
        if masks.shape[:2] != (x.shape[0], n) or masks.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"{fn}: masks must be (B, N, *S) = {(x.shape[0], n, *x.shape[2:])}; "
                f"got {tuple(masks.shape)}"
            )
        w = masks.transpose(0, 1).unsqueeze(2)  # (N, B, 1, *S)
    return (w * src).sum(0)


def mixed_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    index: torch.Tensor,
    lam: torch.Tensor,
    *,
    num_classes: int | None = None,
) -> torch.Tensor:
    """``CE_lam = sum_i lam_i CE(logits, y[index_i])`` (``co_loss``), as a soft-target CE.

    Args:
        logits: (B, K). targets: class ids (B,) (needs ``num_classes``) or soft labels (B, K).
        index: (N, B) source rows; lam: (N,) weights.
    """
    y = _targets.soft_targets(
        "mixed_cross_entropy", targets, logits, num_classes=num_classes, label_smoothing=0.0
    )
    mixed = (lam.to(y.dtype).reshape(-1, 1, 1) * y[index]).sum(0)
    return -(mixed * F.log_softmax(logits, dim=1)).sum(1).mean()


def adautomix_cosine(
    pred_mix: torch.Tensor, pred_sources: torch.Tensor, lam: torch.Tensor
) -> torch.Tensor:
    """``c = mean_b sum_i lam_i cos(pred_mix[b], pred_sources[i, b])`` (``forward_k``).

    pred_mix: (B, K); pred_sources: (N, B, K); lam: (N,).
    """
    cos = F.cosine_similarity(pred_mix.unsqueeze(0), pred_sources, dim=-1)  # (N, B)
    return (lam.to(cos.dtype).unsqueeze(1) * cos).sum(0).mean()


def adautomix_generator_loss(
    mix_ce: torch.Tensor,
    cosine: torch.Tensor,
    *,
    adversarial: bool,
    beta: float = 0.3,
    cosine_sign: float = 1.0,
) -> torch.Tensor:
    """``L_G = -beta L_k + cosine_sign (1 - beta) c`` (adversarial step) or ``+L_k``.

    The code (``forward_train``) uses ``cosine_sign = +1``; ``-1`` is the paper's reading (the
    cosine term keeps the mix close to its sources).
    """
    if not adversarial:
        return mix_ce
    return -beta * mix_ce + cosine_sign * (1.0 - beta) * cosine


def adautomix_classifier_loss(
    mask_mix_ce: torch.Tensor,
    one_ce: torch.Tensor,
    linear_mix_ce: torch.Tensor | None,
    *,
    mixup_ratio: float = 0.5,
) -> torch.Tensor:
    """``L_q = CE_lam(q(x_bb)) + (1 - r) CE(q(x), y) + r CE_lam(q(linear mix))`` (N > 2) or
    ``CE_lam(q(x_bb)) + CE(q(x), y)`` (N = 2: ``linear_mix_ce=None``), as ``forward_q``."""
    if linear_mix_ce is None:
        return mask_mix_ce + one_ce
    return mask_mix_ce + (1.0 - mixup_ratio) * one_ce + mixup_ratio * linear_mix_ce


def adautomix_momentum(progress: float, *, base: float = 0.999, end: float = 0.999999) -> float:
    """EMA momentum at training ``progress`` in [0, 1]: cosine from ``base`` to ``end``.

    OpenMixup's ``CosineScheduleHook`` (not in the official repository; its usual form):
    ``end - (end - base) (cos(pi progress) + 1) / 2``.
    """
    p = min(max(float(progress), 0.0), 1.0)
    return end - (end - base) * (math.cos(math.pi * p) + 1.0) / 2.0


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, *, momentum: float) -> None:
    """``k <- momentum k + (1 - momentum) q`` over the parameters (``momentum_update``)."""
    for pk, pq in zip(teacher.parameters(), student.parameters(), strict=True):
        pk.mul_(momentum).add_(pq.detach(), alpha=1.0 - momentum)


@dataclass(frozen=True)
class AdAutoMixLosses:
    """What one :class:`AdAutoMix` step computes.

    Attributes:
        total: ``L_q + L_G`` (one backward).
        classifier: L_q. generator: L_G. mix_ce: L_k. cosine: c.
        x_mb, x_bb: the generator's and the classifier's mixed batches.
        masks: (B, N, *S) the generator's masks (mean over positions vs ``lam``: card note 3).
        params: the draws.
    """

    total: torch.Tensor
    classifier: torch.Tensor
    generator: torch.Tensor
    mix_ce: torch.Tensor
    cosine: torch.Tensor
    x_mb: torch.Tensor
    x_bb: torch.Tensor
    masks: torch.Tensor
    params: AdAutoMixParams


class AdAutoMix(nn.Module):
    """One AdAutoMix training step: generator masks, both mixes and both objectives.

    Holds the generator :class:`AdaptiveMask` and the hyperparameters; the caller owns the
    classifier ``q``, the EMA teacher ``k`` (frozen, updated with :func:`ema_update`) and the
    step counter (``adversarial`` = the code's even counter: steps 1, 3, 5, ... counting from 1).

    Args:
        in_channels: C of the teacher's feature maps.
        n_sources: N (3).
        alpha: Beta concentration (1.0).
        lam_margin: constant masks for the classifier when ``lam_0 <= m`` or ``lam_0 > 1 - m``
            (0.03 in the configs).
        mixup_ratio: r (0.5). beta: the adversarial weight (0.3).
        cosine_sign: +1 (the code) or -1.
        reduction, mode: of the generator.
        generator: initialises the generator.

    Example:
        >>> import torch.nn as nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(64, 3))
        >>> step = AdAutoMix(4, generator=torch.Generator().manual_seed(0))
        >>> out = step(torch.rand(6, 1, 4, 4), torch.arange(6) % 3, classifier=net, teacher=net,
        ...            teacher_features=net[0], num_classes=3, adversarial=True,
        ...            generator=torch.Generator().manual_seed(1))
        >>> out.x_mb.shape
        torch.Size([6, 1, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        *,
        n_sources: int = 3,
        alpha: float = 1.0,
        lam_margin: float = 0.03,
        mixup_ratio: float = 0.5,
        beta: float = 0.3,
        cosine_sign: float = 1.0,
        reduction: int = 2,
        mode: UpsampleMode = "linear",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        fn = "AdAutoMix"
        self.n_sources = _checks.check_int(fn, "n_sources", n_sources, min_value=2)
        self.alpha = _common.check_alpha(fn, alpha)
        self.lam_margin = _checks.check_range(fn, "lam_margin", lam_margin, 0.0, 0.5)
        self.mixup_ratio = _checks.check_range(fn, "mixup_ratio", mixup_ratio, 0.0, 1.0)
        self.beta = _checks.check_range(fn, "beta", beta, 0.0, 1.0)
        if cosine_sign not in (1.0, -1.0):
            raise ValueError(f"{fn}: cosine_sign must be 1 or -1; got {cosine_sign!r}")
        self.cosine_sign = float(cosine_sign)
        self.mask = AdaptiveMask(in_channels, reduction=reduction, mode=mode, generator=generator)

    def forward(
        self,
        x: torch.Tensor,
        targets: torch.Tensor,
        *,
        classifier: Callable[[torch.Tensor], torch.Tensor],
        teacher: Callable[[torch.Tensor], torch.Tensor],
        teacher_features: Callable[[torch.Tensor], torch.Tensor],
        adversarial: bool,
        num_classes: int | None = None,
        generator: torch.Generator | None = None,
    ) -> AdAutoMixLosses:
        """Losses of one step on a batch x (B, C, *S) with class ids (B,) or soft labels."""
        fn = "AdAutoMix"
        x = _checks.check_tensor(fn, "x", x)
        if x.dim() not in (3, 4) or not x.is_floating_point():
            raise ValueError(f"{fn}: x must be float (B, C, H, W) or (B, C, L); got {x.shape}")
        p = sample_adautomix_params(
            x.shape[0],
            n_sources=self.n_sources,
            alpha=self.alpha,
            device=x.device,
            generator=generator,
        )
        feats = teacher_features(x)
        m_mb = self.mask(feats[p.index_mb], size=x.shape[2:])
        with torch.no_grad():
            m_bb = self.mask(feats[p.index_bb].detach(), size=x.shape[2:])
        lam0 = float(p.lam_bb[0])
        x_mb = mix_sources(x, m_mb, p.index_mb)
        if lam0 <= self.lam_margin or lam0 > 1.0 - self.lam_margin:
            x_bb = mix_sources(x, p.lam_bb, p.index_bb)
        else:
            x_bb = mix_sources(x, m_bb, p.index_bb)
        kw = {"num_classes": num_classes}
        ce_bb = mixed_cross_entropy(classifier(x_bb), targets, p.index_bb, p.lam_bb, **kw)
        ident = torch.arange(x.shape[0], device=x.device).unsqueeze(0)
        one = mixed_cross_entropy(
            classifier(x), targets, ident, torch.ones(1, device=x.device), **kw
        )
        lin = None
        if self.n_sources > 2:
            x_lin = mix_sources(x, p.lam_bb, p.index_bb)
            lin = mixed_cross_entropy(classifier(x_lin), targets, p.index_bb, p.lam_bb, **kw)
        l_q = adautomix_classifier_loss(ce_bb, one, lin, mixup_ratio=self.mixup_ratio)
        pred_mb = teacher(x_mb)
        l_k = mixed_cross_entropy(pred_mb, targets, p.index_mb, p.lam_mb, **kw)
        pred_src = torch.stack([teacher(x[i]) for i in p.index_mb])  # no path to G
        cos = adautomix_cosine(pred_mb, pred_src, p.lam_mb)
        l_g = adautomix_generator_loss(
            l_k, cos, adversarial=adversarial, beta=self.beta, cosine_sign=self.cosine_sign
        )
        return AdAutoMixLosses(
            total=l_q + l_g,
            classifier=l_q,
            generator=l_g,
            mix_ce=l_k,
            cosine=cos,
            x_mb=x_mb,
            x_bb=x_bb,
            masks=m_mb,
            params=p,
        )

    def extra_repr(self) -> str:
        return (
            f"n_sources={self.n_sources}, alpha={self.alpha}, lam_margin={self.lam_margin}, "
            f"mixup_ratio={self.mixup_ratio}, beta={self.beta}, cosine_sign={self.cosine_sign}"
        )
