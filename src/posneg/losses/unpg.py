"""Unified Negative Pair Generation (UNPG) with CosFace / ArcFace margin heads.

Jung, Lee, Oh, Park, Park, Son. *Unified Negative Pair Generation toward Well-discriminative
Feature Space for Face Recognition.* BMVC 2022, arXiv 2203.11593. Written from the official code,
Jung-Jun-Uk/UNPG at commit a6f9c1731a68fc035eb8fe8198f5a5c643825a5b: ``recognition/models/head.py``
(``CosFace``, ``ArcFace``, ``UNPG``), ``recognition/models/build.py`` (``HeadAndLoss``,
``box_and_whisker_algorithm``, ``convert_label_to_similarity``) and
``recognition/data/head.zoo.yaml`` (s = 64, CosFace m = 0.5, ArcFace m = 0.5, UNPG wisk = 1.5).

A margin head gives the B x C class logits ``cos_ic = <x_i/|x_i|, W_c/|W_c|>`` with a margin on
the true class (CLPG). UNPG adds the batch's negative pair similarities ``S_n = {x_a.x_b : a < b,
y_a != y_b}`` (MLPG, upper triangle, no diagonal, no duplicates), keeps those inside the
box-and-whisker fence ``[Q1 - wisk IQR, Q3 + wisk IQR]`` (S'_n), and appends the *same* S'_n to
every row's logits, without a margin, before the scaled softmax cross-entropy. Gradients flow
through S'_n (the fence itself is a boolean mask).

The B x B pair similarities are the technique (one set shared by every row); the loss needs only
their log-sum-exp, so no B x |S'_n| tensor is built. The class-weight matrix W is a classifier
head's parameter: the pure functions take it as ``weight``; :class:`CosFaceLoss`,
:class:`ArcFaceLoss` and :class:`UNPGLoss` hold it as an ``nn.Parameter`` (like the official
heads), which is the one way they differ from a stateless loss module.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype, reduce_loss
from posneg._types import Reduction

__all__ = [
    "ArcFaceLoss",
    "CosFaceLoss",
    "UNPGLoss",
    "arcface_logits",
    "box_and_whisker",
    "cosface_logits",
    "margin_softmax",
    "negative_pair_similarities",
    "unpg",
]

CITATION = """
@inproceedings{jung2022unpg,
  title     = {Unified Negative Pair Generation toward Well-discriminative Feature Space for
               Face Recognition},
  author    = {Jung, Junuk and Lee, Seonhoon and Oh, Heung-Seon and Park, Yongjun and
               Park, Joochan and Son, Sungbin},
  booktitle = {British Machine Vision Conference (BMVC)},
  year      = {2022},
  note      = {arXiv:2203.11593}
}
"""

#: The margin heads' own papers (``posneg cite cosface`` / ``arcface``); UNPGLoss uses CITATION.
CITATIONS = {
    "CosFaceLoss": """
@inproceedings{wang2018cosface,
  title     = {CosFace: Large Margin Cosine Loss for Deep Face Recognition},
  author    = {Wang, Hao and Wang, Yitong and Zhou, Zheng and Ji, Xing and Gong, Dihong and
               Zhou, Jingchao and Li, Zhifeng and Liu, Wei},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2018},
  note      = {arXiv:1801.09414}
}
""",
    "ArcFaceLoss": """
@inproceedings{deng2019arcface,
  title     = {ArcFace: Additive Angular Margin Loss for Deep Face Recognition},
  author    = {Deng, Jiankang and Guo, Jia and Xue, Niannan and Zafeiriou, Stefanos},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2019},
  note      = {arXiv:1801.07698}
}
""",
}

Head = Literal["cosface", "arcface"]
HEADS: tuple[str, ...] = ("cosface", "arcface")

#: ``head.zoo.yaml`` of the official code: s = 64 and m = 0.5 for both heads, wisk = 1.5.
ZOO_SCALE = 64.0
ZOO_MARGIN = 0.5
ZOO_WISK = 1.5


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def _check_cosine(fn: str, cosine: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    _checks.check_float(fn, "cosine", cosine)
    if cosine.dim() != 2 or cosine.shape[1] < 1:
        raise ValueError(
            f"{fn}: cosine must have shape (B, C) with C >= 1; got {tuple(cosine.shape)}"
        )
    labels = _check_class_labels(fn, labels, cosine.shape[0], cosine.shape[1], cosine.device)
    return cosine, labels


def _check_class_labels(
    fn: str, labels: Any, n: int, n_classes: int, device: torch.device
) -> torch.Tensor:
    labels = _checks.check_labels(fn, "labels", labels, n, device)
    if n and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(
            f"{fn}: labels must lie in [0, {n_classes}) (one per class of weight); got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    return labels


def _check_wisk(fn: str, wisk: Any) -> float:
    """``wisk`` >= 0, ``math.inf`` allowed (keep every negative pair)."""
    if isinstance(wisk, bool) or not isinstance(wisk, numbers.Real):
        raise TypeError(f"{fn}: wisk must be a real number; got {type(wisk).__name__}")
    value = float(wisk)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{fn}: wisk must be >= 0 (math.inf keeps every pair); got {wisk!r}")
    return value


def _check_margin(fn: str, margin: Any) -> float:
    return _checks.check_nonnegative(fn, "margin", margin)


def _check_weight(fn: str, embeddings: torch.Tensor, weight: Any) -> torch.Tensor:
    _checks.check_float(fn, "weight", weight)
    if weight.dim() != 2 or weight.shape[0] < 1:
        raise ValueError(
            f"{fn}: weight must have shape (C, D) with C >= 1; got {tuple(weight.shape)}"
        )
    _checks.check_same_dim(fn, "weight", weight, "embeddings", embeddings)
    _checks.check_same_device(fn, "weight", weight, "embeddings", embeddings)
    half_meets_float = embeddings.dtype in (torch.float16, torch.bfloat16) and (
        weight.dtype == torch.float32
    )
    if not half_meets_float:
        _checks.check_same_dtype(fn, "weight", weight, "embeddings", embeddings)
    return weight


# ---------------------------------------------------------------------------------------------
# the pure functions
# ---------------------------------------------------------------------------------------------


def cosface_logits(
    cosine: torch.Tensor, labels: torch.Tensor, *, margin: float = ZOO_MARGIN
) -> torch.Tensor:
    """CosFace margin logits: ``cos_ic - m [c = y_i]`` (unscaled), as the official ``CosFace``.

    Wang et al., CosFace, CVPR 2018 (arXiv 1801.09414); the UNPG code's ``CosFace.forward``
    after the cosine. See :func:`unpg` for the full loss.

    Args:
        cosine: (B, C) cosines between normalised embeddings and class weights.
        labels: (B,) int64 class indices in [0, C).
        margin: m >= 0 (0.5 in the official ``head.zoo.yaml``; the CosFace paper uses 0.35).

    Returns:
        (B, C) logits in the dtype of ``cosine``.

    Raises:
        TypeError, ValueError: bad tensors, labels out of range, a negative margin.

    Example:
        >>> import torch
        >>> cosface_logits(torch.zeros(2, 3), torch.tensor([0, 2]), margin=0.5)[:, [0, 2]]
        tensor([[-0.5000,  0.0000],
                [ 0.0000, -0.5000]])
    """
    fn = "cosface_logits"
    m = _check_margin(fn, margin)
    cosine, labels = _check_cosine(fn, cosine, labels)
    target = cosine.gather(1, labels[:, None]) - m
    return cosine.scatter(1, labels[:, None], target)


def arcface_logits(
    cosine: torch.Tensor, labels: torch.Tensor, *, margin: float = ZOO_MARGIN
) -> torch.Tensor:
    """ArcFace margin logits: ``cos(arccos(cos_iy) + m)`` on the true class (unscaled).

    Deng et al., ArcFace, CVPR 2019 (arXiv 1801.07698), as the UNPG code's ``ArcFace.forward``
    computes it: plain ``cos(theta + m)`` for every angle -- **no** ``easy_margin`` and **no**
    ``th``/``mm`` fallback (insightface's ``cos(theta + m)`` -> ``cos - m sin m`` once
    ``theta + m > pi``). So for ``theta > pi - m`` the target logit is not monotone in theta; this
    is the released behaviour and is kept. The official code applies ``acos`` then ``cos`` to every
    entry; the non-target entries come back unchanged (up to rounding), so only the target column
    is transformed here. Deliberate difference: the target cosine is clamped into
    ``[-1 + eps, 1 - eps]`` (eps: the machine epsilon of its dtype) before ``acos`` (the official
    code does not clamp, so a normalised dot product that rounds past +-1 gives NaN, and exactly
    +-1 gives an infinite gradient).

    Args:
        cosine: (B, C) cosines.
        labels: (B,) int64 class indices in [0, C).
        margin: additive angular margin m >= 0 (0.5 in ``head.zoo.yaml``).

    Returns:
        (B, C) logits in the dtype of ``cosine``.

    Raises:
        TypeError, ValueError: bad tensors, labels out of range, a negative margin.

    Example:
        >>> import torch
        >>> out = arcface_logits(torch.zeros(1, 2), torch.tensor([1]), margin=0.5)
        >>> round(float(out[0, 1]), 4)  # cos(pi/2 + 0.5)
        -0.4794
    """
    fn = "arcface_logits"
    m = _check_margin(fn, margin)
    cosine, labels = _check_cosine(fn, cosine, labels)
    eps = torch.finfo(cosine.dtype).eps  # one machine epsilon: keeps acos and its gradient finite
    target = cosine.gather(1, labels[:, None]).clamp(-1.0 + eps, 1.0 - eps)
    return cosine.scatter(1, labels[:, None], torch.cos(torch.acos(target) + m))


def negative_pair_similarities(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """MLPG: ``S_n = {x_a.x_b : a < b, y_a != y_b}`` of the L2-normalised embeddings.

    The official ``convert_label_to_similarity``: the upper triangle above the diagonal, so no
    self-pair and each unordered pair once, in row-major order.

    Args:
        embeddings: (B, D) raw embeddings (normalised here).
        labels: (B,) integer identities.

    Returns:
        (L,) similarities, L = number of different-identity pairs (0 for one identity).

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> negative_pair_similarities(x, torch.tensor([0, 0, 1]))
        tensor([0.7071, 0.7071])
    """
    fn = "negative_pair_similarities"
    _checks.check_embeddings(fn, "embeddings", embeddings)
    labels = _checks.check_labels(fn, "labels", labels, embeddings.shape[0], embeddings.device)
    return _pair_similarities(F.normalize(embeddings, dim=1), labels)


def _pair_similarities(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    a, b = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
    keep = labels[a] != labels[b]
    a, b = a[keep], b[keep]
    return (x[a] * x[b]).sum(dim=1)


def box_and_whisker(similarities: torch.Tensor, *, wisk: float = ZOO_WISK) -> torch.Tensor:
    """The official ``box_and_whisker_algorithm``: keep ``s`` in ``[Q1 - k IQR, Q3 + k IQR]``.

    With ``L`` similarities sorted ascending (``S``): ``Q1 = S[floor(0.25 L)]``,
    ``Q3 = S[floor(0.75 L)]`` (no interpolation), ``IQR = Q3 - Q1``, both fence ends inclusive.
    Returns the kept values in ascending order, as the official code. ``wisk = math.inf`` keeps
    every value (the official arithmetic would give ``inf * 0 = nan`` when IQR = 0 and drop them).
    An empty input returns an empty tensor (the official code raises IndexError).

    Args:
        similarities: (L,) pair similarities.
        wisk: whisker length k >= 0 (1.5 in ``head.zoo.yaml``).

    Returns:
        (L',) the kept similarities, sorted ascending; gradients flow to the kept entries.

    Example:
        >>> import torch
        >>> box_and_whisker(torch.tensor([0.1, 0.2, 0.25, 0.3, 5.0]), wisk=1.5)
        tensor([0.1000, 0.2000, 0.2500, 0.3000])
    """
    fn = "box_and_whisker"
    k = _check_wisk(fn, wisk)
    _checks.check_float(fn, "similarities", similarities)
    if similarities.dim() != 1:
        raise ValueError(
            f"{fn}: similarities must have shape (L,); got {tuple(similarities.shape)}"
        )
    return _fence(similarities, k)


def _fence(s: torch.Tensor, k: float) -> torch.Tensor:
    n = s.shape[0]
    ordered = torch.sort(s).values
    if n == 0 or math.isinf(k):
        return ordered
    with torch.no_grad():
        q1, q3 = ordered[int(0.25 * n)], ordered[int(0.75 * n)]
        iqr = q3 - q1
        keep = (ordered <= q3 + k * iqr) & (ordered >= q1 - k * iqr)
    return ordered[keep]


def _head_logits(
    fn: str,
    embeddings: Any,
    weight: Any,
    labels: Any,
    head: Any,
    margin: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate; return (normalised embeddings, margin logits, labels) in the compute dtype."""
    _checks.check_choice(fn, "head", head, HEADS)
    _check_margin(fn, margin)
    _checks.check_embeddings(fn, "embeddings", embeddings)
    _check_weight(fn, embeddings, weight)
    labels = _check_class_labels(
        fn, labels, embeddings.shape[0], weight.shape[0], embeddings.device
    )
    dt = compute_dtype(embeddings)
    x = F.normalize(embeddings.to(dt), dim=1)
    cosine = x @ F.normalize(weight.to(dt), dim=1).T
    margin_fn = cosface_logits if head == "cosface" else arcface_logits
    return x, margin_fn(cosine, labels, margin=margin), labels


def _cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, scale: float, extra_lse: torch.Tensor | None
) -> torch.Tensor:
    """Per-row ``-s logit_iy + log(sum_c exp(s logit_ic) [+ sum_j exp(s S'_j)])``."""
    scaled = scale * logits
    lse = torch.logsumexp(scaled, dim=1)
    if extra_lse is not None:
        lse = torch.logaddexp(lse, extra_lse)
    return lse - scaled.gather(1, labels[:, None]).squeeze(1)


def margin_softmax(
    embeddings: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    head: Head = "arcface",
    scale: float = ZOO_SCALE,
    margin: float = ZOO_MARGIN,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """The base loss: ``CE(s * margin_logits(x, W), y)`` (CosFace or ArcFace, no UNPG).

    The official ``HeadAndLoss`` without ``--aux unpg``: ``criterion(head.s * cosine, labels)``.

    Args:
        embeddings: (B, D) raw embeddings (normalised here).
        weight: (C, D) class weights (normalised here).
        labels: (B,) int64 in [0, C).
        head: ``"cosface"`` or ``"arcface"`` (the official training default).
        scale: s > 0 (64 in ``head.zoo.yaml``).
        margin: m >= 0 (0.5 for both heads in ``head.zoo.yaml``).
        reduction: ``"mean"`` (as ``nn.CrossEntropyLoss``), ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or (B,) per-sample losses for ``"none"`` (float32 for half inputs).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x, w = torch.randn(6, 4, generator=g), torch.randn(3, 4, generator=g)
        >>> margin_softmax(x, w, torch.tensor([0, 1, 2, 0, 1, 2]), head="cosface").shape
        torch.Size([])
    """
    fn = "margin_softmax"
    s = _checks.check_positive(fn, "scale", scale)
    reduction = _checks.check_reduction(fn, reduction)
    _, logits, labels = _head_logits(fn, embeddings, weight, labels, head, margin)
    return reduce_loss(_cross_entropy(logits, labels, s, None), reduction)


def unpg(
    embeddings: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    head: Head = "arcface",
    scale: float = ZOO_SCALE,
    margin: float = ZOO_MARGIN,
    wisk: float = ZOO_WISK,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """UNPG loss: margin-head logits plus the batch's filtered negative pairs in every row.

    Jung et al., UNPG, BMVC 2022, arXiv 2203.11593 (official ``HeadAndLoss`` with ``--aux unpg``
    on one GPU). With ``x_i`` the normalised embeddings, ``l_ic`` the margin logits
    (:func:`cosface_logits` or :func:`arcface_logits` of ``cos_ic = x_i.W_c/|W_c|``),
    ``S'_n = box_and_whisker({x_a.x_b : a < b, y_a != y_b}, wisk)`` and scale ``s``::

        L_i = -s l_iy + log( sum_c exp(s l_ic) + sum_{q in S'_n} exp(s q) )

    The same S'_n is appended to every row, with no margin; gradients flow through it. A batch
    with one identity has no negative pair, and the loss is exactly :func:`margin_softmax`
    (the official code raises IndexError there). Deterministic; no randomness.

    Args:
        embeddings: (B, D) raw embeddings (normalised here).
        weight: (C, D) class weights (the classifier head's parameter).
        labels: (B,) int64 identities in [0, C).
        head: ``"arcface"`` (official training default) or ``"cosface"``.
        scale: s > 0, applied to class logits and pair similarities alike (64).
        margin: m >= 0 on the true class only (0.5).
        wisk: box-and-whisker k >= 0 (1.5); ``math.inf`` keeps every negative pair.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or (B,) per-sample losses (float32 for half inputs).

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, non-integer labels.
        ValueError: bad shapes or devices, labels outside [0, C), scale <= 0, margin < 0,
            wisk < 0, an unknown head or reduction.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x, w = torch.randn(8, 16, generator=g), torch.randn(4, 16, generator=g)
        >>> y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> bool(unpg(x, w, y) >= margin_softmax(x, w, y))
        True
    """
    fn = "unpg"
    s = _checks.check_positive(fn, "scale", scale)
    k = _check_wisk(fn, wisk)
    reduction = _checks.check_reduction(fn, reduction)
    x, logits, labels = _head_logits(fn, embeddings, weight, labels, head, margin)
    pairs = _fence(_pair_similarities(x, labels), k)
    extra = torch.logsumexp(s * pairs, dim=0) if pairs.numel() else None
    return reduce_loss(_cross_entropy(logits, labels, s, extra), reduction)


# ---------------------------------------------------------------------------------------------
# modules: classifier heads holding W
# ---------------------------------------------------------------------------------------------


class _MarginHead(nn.Module):
    """Holds the (C, D) class weights, xavier-uniform initialised as in the official heads."""

    weight: nn.Parameter

    def __init__(
        self,
        fn: str,
        num_classes: int,
        embedding_dim: int,
        scale: float,
        margin: float,
        generator: torch.Generator | None,
    ) -> None:
        super().__init__()
        c = _checks.check_int(fn, "num_classes", num_classes, min_value=1)
        d = _checks.check_int(fn, "embedding_dim", embedding_dim, min_value=1)
        self.scale = _checks.check_positive(fn, "scale", scale)
        self.margin = _check_margin(fn, margin)
        _checks.check_generator(fn, generator, torch.device("cpu"))
        self.weight = nn.Parameter(torch.empty(c, d))
        with torch.no_grad():
            nn.init.xavier_uniform_(self.weight, generator=generator)

    def _base_repr(self) -> str:
        c, d = self.weight.shape
        return f"num_classes={c}, embedding_dim={d}, scale={self.scale}, margin={self.margin}"


class _SingleMarginHead(_MarginHead):
    """A margin head with its softmax CE; subclasses name the head (``cosface``/``arcface``)."""

    _head: ClassVar[Head]

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        scale: float = ZOO_SCALE,
        margin: float = ZOO_MARGIN,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(type(self).__name__, num_classes, embedding_dim, scale, margin, generator)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings, (B,) labels -> scalar loss."""
        return margin_softmax(
            embeddings, self.weight, labels, head=self._head, scale=self.scale, margin=self.margin
        )

    def extra_repr(self) -> str:
        return self._base_repr()


class CosFaceLoss(_SingleMarginHead):
    """CosFace classifier head + scaled softmax CE (:func:`margin_softmax`, ``head="cosface"``).

    A classifier head: it owns the (C, D) class-weight matrix ``weight`` (an ``nn.Parameter``,
    xavier-uniform as in the official ``CosFace``; drawn from ``generator`` when given).

    Args:
        num_classes: C.
        embedding_dim: D.
        scale: s > 0 (64).
        margin: m >= 0 (0.5 as in ``head.zoo.yaml``).
        generator: draws the initial weights (the global RNG is untouched when given).

    Example:
        >>> import torch
        >>> loss_fn = CosFaceLoss(3, 4, generator=torch.Generator().manual_seed(0))
        >>> loss_fn(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])).shape
        torch.Size([])
    """

    _head = "cosface"


class ArcFaceLoss(_SingleMarginHead):
    """ArcFace classifier head + scaled softmax CE (:func:`margin_softmax`, ``head="arcface"``).

    Owns the (C, D) class weights like :class:`CosFaceLoss`. The margin is the official plain
    ``cos(theta + m)`` (no easy margin, no th/mm fallback; see :func:`arcface_logits`).

    Args:
        num_classes: C.
        embedding_dim: D.
        scale: s > 0 (64).
        margin: m >= 0 (0.5).
        generator: draws the initial weights.

    Example:
        >>> import torch
        >>> loss_fn = ArcFaceLoss(3, 4, generator=torch.Generator().manual_seed(0))
        >>> loss_fn(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])).shape
        torch.Size([])
    """

    _head = "arcface"


class UNPGLoss(_MarginHead):
    """UNPG on a CosFace or ArcFace classifier head (:func:`unpg`).

    A classifier head: it owns the (C, D) class weights ``weight`` (an ``nn.Parameter``, as the
    official heads); the negative pairs come from the batch at every call (no other state).

    Args:
        num_classes: C.
        embedding_dim: D.
        head: ``"arcface"`` (official default) or ``"cosface"``.
        scale: s > 0 (64).
        margin: m >= 0 (0.5).
        wisk: box-and-whisker k >= 0 (1.5); ``math.inf`` keeps every negative pair.
        generator: draws the initial weights.

    Example:
        >>> import torch
        >>> loss_fn = UNPGLoss(4, 16, head="cosface", generator=torch.Generator().manual_seed(0))
        >>> loss_fn(torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).shape
        torch.Size([])
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        head: Head = "arcface",
        scale: float = ZOO_SCALE,
        margin: float = ZOO_MARGIN,
        wisk: float = ZOO_WISK,
        generator: torch.Generator | None = None,
    ) -> None:
        fn = "UNPGLoss"
        self_head = cast(Head, _checks.check_choice(fn, "head", head, HEADS))
        super().__init__(fn, num_classes, embedding_dim, scale, margin, generator)
        self.head: Head = self_head
        self.wisk = _check_wisk(fn, wisk)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings, (B,) labels -> scalar loss."""
        return unpg(
            embeddings,
            self.weight,
            labels,
            head=self.head,
            scale=self.scale,
            margin=self.margin,
            wisk=self.wisk,
        )

    def extra_repr(self) -> str:
        return f"head={self.head!r}, {self._base_repr()}, wisk={self.wisk}"
