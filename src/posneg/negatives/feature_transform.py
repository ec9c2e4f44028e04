"""Feature Transformation: positive extrapolation and negative interpolation in embedding space.

Zhu, Zhao, Liu, Sun, Chen. *Improving Contrastive Learning by Visualizing Feature
Transformation*. ICCV 2021, arXiv 2108.02982. Official code:
``DTennant/CL-Visualizing-Feature-Transformation`` (``memory/mem_moco.py``,
``RGBMoCo_dropmix_norm``), on top of MoCo-v2.

Randomness lives in :func:`sample_feature_transform_params`; :func:`apply_feature_transform`
and :func:`feature_transform_logits` are deterministic given the params;
:func:`feature_transform` and :class:`FeatureTransform` do both and return the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks, _rng
from posneg._tiling import compute_dtype, reduce_loss
from posneg._types import Reduction

__all__ = [
    "CITATION",
    "FeatureTransform",
    "FeatureTransformParams",
    "Transformed",
    "apply_feature_transform",
    "feature_transform",
    "feature_transform_logits",
    "sample_feature_transform_params",
]

CITATION = """
@inproceedings{zhu2021improving,
  title     = {Improving Contrastive Learning by Visualizing Feature Transformation},
  author    = {Zhu, Rui and Zhao, Bingchen and Liu, Jingen and Sun, Zhenglong and Chen, Chang Wen},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages     = {10306--10315},
  year      = {2021},
  eprint    = {2108.02982},
  archivePrefix = {arXiv}
}
"""

DimMask = Literal["none", "pos", "neg", "both"]
MixTarget = Literal["pos", "neg", "posneg"]
DIM_MASKS: tuple[str, ...] = ("none", "pos", "neg", "both")
MIX_TARGETS: tuple[str, ...] = ("pos", "neg", "posneg")


@dataclass(frozen=True)
class FeatureTransformParams:
    """The random draws of one Feature Transformation step (replayable).

    Attributes:
        pos_coef: λ, shape () (one scalar per batch) or (B, D) (one per entry); λ = 1 leaves
            the positives unchanged.
        neg_coef: μ, shape () or (K, D); μ = 1 leaves the queue unchanged.
        perm: (K,) int64 permutation of the queue rows mixed in.
    """

    pos_coef: torch.Tensor
    neg_coef: torch.Tensor
    perm: torch.Tensor


class Transformed(NamedTuple):
    """Outputs of :func:`apply_feature_transform`: q̂ (B, D), k̂ (B, D), Q̂ (K, D)."""

    query: torch.Tensor
    key: torch.Tensor
    queue: torch.Tensor


def _check_hparams(
    fn: str,
    pos_alpha: float,
    neg_alpha: float,
    dim_mask: str,
    mix_target: str,
    extrapolate: bool,
) -> tuple[float, float, DimMask, MixTarget, bool]:
    a_pos = _checks.check_positive(fn, "pos_alpha", pos_alpha)
    a_neg = _checks.check_positive(fn, "neg_alpha", neg_alpha)
    dm = cast(DimMask, _checks.check_choice(fn, "dim_mask", dim_mask, DIM_MASKS))
    mt = cast(MixTarget, _checks.check_choice(fn, "mix_target", mix_target, MIX_TARGETS))
    if not isinstance(extrapolate, bool):
        raise TypeError(f"{fn}: extrapolate must be a bool; got {type(extrapolate).__name__}")
    return a_pos, a_neg, dm, mt, extrapolate


def sample_feature_transform_params(
    batch: int,
    queue_size: int,
    dim: int,
    *,
    pos_alpha: float = 2.0,
    neg_alpha: float = 1.6,
    dim_mask: DimMask = "none",
    mix_target: MixTarget = "posneg",
    extrapolate: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> FeatureTransformParams:
    """Draw the coefficients of Feature Transformation.

    ``λ = 1 + Beta(pos_alpha, pos_alpha)`` (positive extrapolation; ``Beta(...)`` alone, an
    interpolation, when ``extrapolate=False``), ``μ ~ Beta(neg_alpha, neg_alpha)`` and a random
    permutation of the K queue rows. ``dim_mask`` follows the official code's ``--dim_mask``:
    ``"none"`` (the published setting) draws one scalar λ and one scalar μ per batch;
    ``"pos"``, ``"neg"`` or ``"both"`` draw one coefficient per entry of the (B, D) positives,
    the (K, D) queue, or both (masks of the feature shape, per dimension and per row). A side
    that ``mix_target`` leaves out gets coefficient 1 (identity) without drawing.
    Draw order (fixed): λ, μ, permutation.

    Args:
        batch: B >= 1.
        queue_size: K >= 0.
        dim: D >= 1.
        pos_alpha: a⁺ > 0 (2.0 as published).
        neg_alpha: a⁻ > 0 (1.6 as published).
        dim_mask: ``"none"``, ``"pos"``, ``"neg"`` or ``"both"``.
        mix_target: ``"posneg"`` (published), ``"pos"`` or ``"neg"``.
        extrapolate: add 1 to λ (the published ``--expolation_mask``).
        device: where the params live.
        dtype: floating dtype of the coefficients.
        generator: optional ``torch.Generator``; the global RNG is untouched when given.

    Returns:
        A :class:`FeatureTransformParams`.

    Raises:
        TypeError: non-int sizes, non-real alphas, a non-floating ``dtype``, a bad ``generator``.
        ValueError: sizes or alphas out of range, unknown ``dim_mask`` / ``mix_target``.
    """
    fn = "sample_feature_transform_params"
    batch = _checks.check_int(fn, "batch", batch, min_value=1)
    queue_size = _checks.check_int(fn, "queue_size", queue_size, min_value=0)
    dim = _checks.check_int(fn, "dim", dim, min_value=1)
    a_pos, a_neg, dm, mt, extrapolate = _check_hparams(
        fn, pos_alpha, neg_alpha, dim_mask, mix_target, extrapolate
    )
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{fn}: dtype must be a floating torch.dtype; got {dtype!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    _checks.check_generator(fn, generator, dev)
    one = torch.ones((), device=dev, dtype=dtype)
    if mt in ("pos", "posneg"):
        shape = (batch, dim) if dm in ("pos", "both") else ()
        lam = _beta(a_pos, shape, dev, dtype, generator)
        pos_coef = lam + 1 if extrapolate else lam
    else:
        pos_coef = one
    if mt in ("neg", "posneg"):
        shape = (queue_size, dim) if dm in ("neg", "both") else ()
        neg_coef = _beta(a_neg, shape, dev, dtype, generator)
        perm = _rng.randperm(queue_size, device=dev, generator=generator)
    else:
        neg_coef = one.clone()
        perm = torch.arange(queue_size, device=dev)
    return FeatureTransformParams(pos_coef, neg_coef, perm)


def _beta(
    a: float,
    shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Symmetric Beta(a, a) draws of ``shape``; a 0-d shape is drawn as (1,) and reshaped."""
    draw_shape = shape if len(shape) > 0 else (1,)
    x = _rng.beta(a, a, draw_shape, device=device, dtype=dtype, generator=generator)
    return x.reshape(shape)


def _check_inputs(fn: str, query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor) -> None:
    _checks.check_embeddings(fn, "query", query)
    _checks.check_float(fn, "key", key)
    _checks.check_same_shape(fn, "key", key, "query", query)
    _checks.check_same_device(fn, "key", key, "query", query)
    _checks.check_same_dtype(fn, "key", key, "query", query)
    _checks.check_float(fn, "queue", queue)
    if queue.dim() != 2:
        raise ValueError(f"{fn}: queue must have shape (K, D); got {tuple(queue.shape)}")
    _checks.check_same_dim(fn, "queue", queue, "query", query)
    _checks.check_same_device(fn, "queue", queue, "query", query)
    _checks.check_same_dtype(fn, "queue", queue, "query", query)


def _check_params(
    fn: str, params: object, query: torch.Tensor, queue: torch.Tensor
) -> FeatureTransformParams:
    if not isinstance(params, FeatureTransformParams):
        raise TypeError(
            f"{fn}: params must be a FeatureTransformParams; got {type(params).__name__}"
        )
    b, d = query.shape
    k = queue.shape[0]
    if params.pos_coef.dim() != 0 and tuple(params.pos_coef.shape) != (b, d):
        raise ValueError(
            f"{fn}: params.pos_coef must have shape () or {(b, d)}; "
            f"got {tuple(params.pos_coef.shape)}"
        )
    if params.neg_coef.dim() != 0 and tuple(params.neg_coef.shape) != (k, d):
        raise ValueError(
            f"{fn}: params.neg_coef must have shape () or {(k, d)}; "
            f"got {tuple(params.neg_coef.shape)}"
        )
    if tuple(params.perm.shape) != (k,):
        raise ValueError(
            f"{fn}: params.perm must have shape ({k},) (one index per queue row); "
            f"got {tuple(params.perm.shape)}"
        )
    for name, t in (
        ("pos_coef", params.pos_coef),
        ("neg_coef", params.neg_coef),
        ("perm", params.perm),
    ):
        if t.device != query.device:
            raise ValueError(
                f"{fn}: params.{name} is on {t.device} but query is on {query.device}; "
                "draw the params on the query's device"
            )
    return params


def apply_feature_transform(
    query: torch.Tensor,
    key: torch.Tensor,
    queue: torch.Tensor,
    params: FeatureTransformParams,
    *,
    normalize: bool = True,
    postmix_norm: bool = False,
) -> Transformed:
    """Positive extrapolation and negative interpolation (deterministic given ``params``).

    Zhu et al., *Improving Contrastive Learning by Visualizing Feature Transformation*, ICCV
    2021 (arXiv 2108.02982). With λ = ``params.pos_coef``, μ = ``params.neg_coef`` and
    π = ``params.perm``::

        q̂ = λ q + (1 - λ) k
        k̂ = λ k + (1 - λ) q
        Q̂ = μ Q + (1 - μ) Q[π]

    (products elementwise when the coefficients are per entry). As in the official code,
    ``key`` and ``queue`` are detached first, so gradient reaches the positive side only via
    ``q`` (which also sits inside k̂), and nothing is re-normalised after mixing
    (``postmix_norm=False``, the published setting): for unit q, k and a scalar λ >= 1, q̂ has
    norm >= 1, and for unit queue rows and a scalar μ in [0, 1] every Q̂ row has norm <= 1
    (per-entry coefficients, ``dim_mask != "none"``, can give rows of norm above 1).
    ``postmix_norm=True`` re-normalises q̂ and k̂ only, as the official ``--postmix_norm``
    does (its ``norm_target`` is fixed to the positives).

    Args:
        query: (B, D) queries.
        key: (B, D) keys (positives), detached here.
        queue: (K, D) queue negatives, detached here.
        params: from :func:`sample_feature_transform_params(B, K, D) <...>`.
        normalize: L2-normalise query, key and queue rows before mixing (MoCo's embeddings
            are unit vectors).
        postmix_norm: re-normalise q̂ and k̂ after mixing.

    Returns:
        :class:`Transformed` (q̂, k̂, Q̂); float32 for half inputs, else the input dtype.

    Raises:
        TypeError / ValueError: as :func:`feature_transform_logits`.
    """
    fn = "apply_feature_transform"
    _check_inputs(fn, query, key, queue)
    _check_params(fn, params, query, queue)
    return _transform(query, key, queue, params, normalize, postmix_norm)


def _transform(
    query: torch.Tensor,
    key: torch.Tensor,
    queue: torch.Tensor,
    params: FeatureTransformParams,
    normalize: bool,
    postmix_norm: bool,
) -> Transformed:
    dt = compute_dtype(query)
    q, k, qu = query.to(dt), key.detach().to(dt), queue.detach().to(dt)
    if normalize:
        q, k, qu = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(qu, dim=1)
    lam = params.pos_coef.to(dt)
    mu = params.neg_coef.to(dt)
    q_hat = lam * q + (1 - lam) * k
    k_hat = lam * k + (1 - lam) * q
    queue_hat = mu * qu + (1 - mu) * qu[params.perm]
    if postmix_norm:
        q_hat, k_hat = F.normalize(q_hat, dim=1), F.normalize(k_hat, dim=1)
    return Transformed(q_hat, k_hat, queue_hat)


def feature_transform_logits(
    query: torch.Tensor,
    key: torch.Tensor,
    queue: torch.Tensor,
    params: FeatureTransformParams,
    *,
    temperature: float = 0.2,
    normalize: bool = True,
    postmix_norm: bool = False,
) -> torch.Tensor:
    """MoCo logits on transformed features: ``[q̂·k̂, q̂·Q̂_1 .. q̂·Q̂_K] / temperature``.

    See :func:`apply_feature_transform` for q̂, k̂, Q̂. With λ = 1 and μ = 1 this is exactly plain
    MoCo's ``cat([q·k, q·Q]) / t``. For unit q, k with ``c = q·k`` and a scalar λ,
    ``q̂·k̂ = c + 2λ(1 - λ)(1 - c) <= c`` when λ >= 1: a harder positive.

    Args:
        query: (B, D) queries.
        key: (B, D) keys.
        queue: (K, D) queue negatives (K may be 0).
        params: from :func:`sample_feature_transform_params`.
        temperature: t > 0 (0.2 as in MoCo-v2 and the paper).
        normalize: L2-normalise inputs before mixing.
        postmix_norm: re-normalise q̂ and k̂ after mixing.

    Returns:
        (B, 1 + K) logits, label 0 in every row; float32 for half inputs.

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, wrong ``params`` type.
        ValueError: bad shapes, mismatched dims or devices, params of other shapes or device,
            temperature <= 0.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(32, 8)
        >>> params = sample_feature_transform_params(4, 32, 8, generator=g)
        >>> feature_transform_logits(q, k, queue, params).shape
        torch.Size([4, 33])
    """
    fn = "feature_transform_logits"
    _check_inputs(fn, query, key, queue)
    temperature = _checks.check_positive(fn, "temperature", temperature)
    _check_params(fn, params, query, queue)
    q, k, qu = _transform(query, key, queue, params, normalize, postmix_norm)
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ qu.T
    return torch.cat([pos, neg], dim=1) / temperature


def feature_transform(
    query: torch.Tensor,
    key: torch.Tensor,
    queue: torch.Tensor,
    *,
    pos_alpha: float = 2.0,
    neg_alpha: float = 1.6,
    dim_mask: DimMask = "none",
    mix_target: MixTarget = "posneg",
    extrapolate: bool = True,
    postmix_norm: bool = False,
    temperature: float = 0.2,
    normalize: bool = True,
    reduction: Reduction = "mean",
    generator: torch.Generator | None = None,
    params: FeatureTransformParams | None = None,
) -> torch.Tensor:
    """MoCo loss on feature-transformed positives and negatives: cross-entropy with label 0.

    Zhu, Zhao, Liu, Sun, Chen. *Improving Contrastive Learning by Visualizing Feature
    Transformation*, ICCV 2021 (arXiv 2108.02982). Draws λ = 1 + Beta(a⁺, a⁺) and
    μ ~ Beta(a⁻, a⁻) (one scalar each per batch by default, as published), then per query::

        loss_b = logsumexp(l_b) - l_b[0],   l_b = [q̂_b·k̂_b, q̂_b·Q̂_1 .. q̂_b·Q̂_K] / t

    Defaults are the published ImageNet command (``--pos_alpha 2.0 --neg_alpha 1.6
    --expolation_mask``, no post-mix normalisation, MoCo-v2's t = 0.2). Enqueue the original
    (un-mixed) keys afterwards, as the paper's distributed runs do.

    Args:
        query: (B, D) queries.
        key: (B, D) keys.
        queue: (K, D) queue negatives, e.g. ``MemoryQueue.negatives()``.
        pos_alpha, neg_alpha, dim_mask, mix_target, extrapolate: see
            :func:`sample_feature_transform_params`.
        postmix_norm, normalize: see :func:`apply_feature_transform`.
        temperature: t > 0.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per query, shape (B,)).
        generator: optional generator for the draws; ignored when ``params`` is given.
        params: replay a previous draw instead of drawing.

    Returns:
        Scalar loss for ``"mean"``/``"sum"``, (B,) for ``"none"``; float32 for half inputs.

    Raises:
        TypeError / ValueError: as :func:`feature_transform_logits` and
        :func:`sample_feature_transform_params`.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(32, 8)
        >>> feature_transform(q, k, queue, generator=g).shape
        torch.Size([])
    """
    fn = "feature_transform"
    reduction = _checks.check_reduction(fn, reduction)
    if params is None:
        _check_inputs(fn, query, key, queue)
        _checks.check_generator(fn, generator, query.device)
        params = sample_feature_transform_params(
            query.shape[0],
            queue.shape[0],
            query.shape[1],
            pos_alpha=pos_alpha,
            neg_alpha=neg_alpha,
            dim_mask=dim_mask,
            mix_target=mix_target,
            extrapolate=extrapolate,
            device=query.device,
            dtype=compute_dtype(query),
            generator=generator,
        )
    logits = feature_transform_logits(
        query,
        key,
        queue,
        params,
        temperature=temperature,
        normalize=normalize,
        postmix_norm=postmix_norm,
    )
    per_row = torch.logsumexp(logits, dim=1) - logits[:, 0]
    return reduce_loss(per_row, reduction)


class FeatureTransform(nn.Module):
    """MoCo loss with Feature Transformation (module form of :func:`feature_transform`).

    Zhu et al., *Improving Contrastive Learning by Visualizing Feature Transformation*, ICCV
    2021 (arXiv 2108.02982). Stateless: the queue is a separate
    :class:`~posneg.negatives.MemoryQueue`.

    Args:
        pos_alpha: a⁺ > 0 of λ = 1 + Beta(a⁺, a⁺).
        neg_alpha: a⁻ > 0 of μ ~ Beta(a⁻, a⁻).
        dim_mask: ``"none"`` (scalar coefficients per batch, as published), ``"pos"``,
            ``"neg"`` or ``"both"`` (one coefficient per entry on that side).
        mix_target: ``"posneg"``, ``"pos"`` or ``"neg"``.
        extrapolate: λ = 1 + Beta (extrapolation) rather than Beta.
        postmix_norm: re-normalise q̂ and k̂ after mixing (off as published).
        temperature: t > 0.
        normalize: L2-normalise inputs before mixing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    ``forward(query, key, queue_negatives, *, generator=None, params=None)`` returns the loss;
    use :func:`feature_transform_logits` for the logits.

    Example:
        >>> import torch
        >>> loss_fn = FeatureTransform()
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(32, 8)
        >>> loss_fn(q, k, queue, generator=g).shape
        torch.Size([])
    """

    def __init__(
        self,
        pos_alpha: float = 2.0,
        neg_alpha: float = 1.6,
        *,
        dim_mask: DimMask = "none",
        mix_target: MixTarget = "posneg",
        extrapolate: bool = True,
        postmix_norm: bool = False,
        temperature: float = 0.2,
        normalize: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        fn = "FeatureTransform"
        (
            self.pos_alpha,
            self.neg_alpha,
            self.dim_mask,
            self.mix_target,
            self.extrapolate,
        ) = _check_hparams(fn, pos_alpha, neg_alpha, dim_mask, mix_target, extrapolate)
        for name, value in (("postmix_norm", postmix_norm), ("normalize", normalize)):
            if not isinstance(value, bool):
                raise TypeError(f"{fn}: {name} must be a bool; got {type(value).__name__}")
        self.postmix_norm = postmix_norm
        self.normalize = normalize
        self.temperature = _checks.check_positive(fn, "temperature", temperature)
        self.reduction: Reduction = _checks.check_reduction(fn, reduction)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        queue_negatives: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        params: FeatureTransformParams | None = None,
    ) -> torch.Tensor:
        """Loss of ``query`` (B, D) against ``key`` (B, D) and ``queue_negatives`` (K, D)."""
        return feature_transform(
            query,
            key,
            queue_negatives,
            pos_alpha=self.pos_alpha,
            neg_alpha=self.neg_alpha,
            dim_mask=self.dim_mask,
            mix_target=self.mix_target,
            extrapolate=self.extrapolate,
            postmix_norm=self.postmix_norm,
            temperature=self.temperature,
            normalize=self.normalize,
            reduction=self.reduction,
            generator=generator,
            params=params,
        )

    def extra_repr(self) -> str:
        return (
            f"pos_alpha={self.pos_alpha}, neg_alpha={self.neg_alpha}, "
            f"dim_mask={self.dim_mask!r}, mix_target={self.mix_target!r}, "
            f"extrapolate={self.extrapolate}, postmix_norm={self.postmix_norm}, "
            f"temperature={self.temperature}, normalize={self.normalize}, "
            f"reduction={self.reduction!r}"
        )
