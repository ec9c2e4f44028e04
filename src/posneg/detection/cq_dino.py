"""CQ-DINO: category queries, image-guided top-K selection and the gradient dilution it removes.

Sun et al., "CQ-DINO: Mitigating Gradient Dilution via Category Queries for Vast Vocabulary
Object Detection" (arXiv 2503.18430). Transcribed from the official ``RedAIGC/CQ-DINO``
(commit 6c8e60f): ``mmdet/models/detectors/cqdino.py`` (``AsymmetricLoss``,
``CQDINO.create_parent_mask``, ``CQDINO.loss``),
``mmdet/models/language_models/learnable_category_query_tree.py`` (``csv_to_json``,
``TreeFeatureProcessor.calculate_features``, ``LearnableCategoryQueryTree.generate``) and
``mmdet/models/dense_heads/grounding_dino_head.py`` (``ContrastiveEmbed``).

A sigmoid classification head over ``C`` categories gives every object query ``C - 1``
negative terms and one positive one; when ``C`` is large (V3Det: 13,204) the summed gradient of
the easy negatives swamps the positive and the few hard negatives ("gradient dilution"). CQ-DINO
keeps ``C`` learnable category queries, scores them against the image, keeps the top ``K`` and
classifies the object queries against those ``K`` only.

Pieces (pure functions; thin modules below):

- :func:`asymmetric_loss`: the image-level selection loss (ASL, Ridnik et al.), as released:
  ``x = clamp(z, -88, 88)``, ``p = sigmoid(x)``, ``p- = min(1 - p + clip, 1)``,
  ``L = -sum_{b,c} [y log(max(p, eps)) + (1 - y) log(max(p-, eps))] * w`` with the focusing
  weight ``w = (1 - p_t)^(gamma+ y + gamma- (1 - y))``, ``p_t = y p + (1 - y) p-`` (the
  *clipped* negative probability), computed without gradient. Summed (not averaged) over
  images and categories. Defaults gamma- = 7, gamma+ = 0, clip = 0.05, eps = 1e-8.
- :func:`ancestor_mask`: ancestors of a present category that are not labelled themselves are
  masked; the release multiplies both the logit and the target by the mask, so a masked entry
  has logit 0, target 0: a constant loss term with zero gradient (kept here: ``mask=``).
- :func:`tree_weights` and :func:`tree_aggregate`: per node
  ``w = 0.4 + 0.4 log(2 + n_desc) / log(2 + n_max)`` (``n_desc`` all descendants; the release
  hard-codes ``n_max = 13204``, here ``n_max`` defaults to ``C``), then a bottom-up pass over
  depths: each parent ``Q[p] <- (1 - w_p) Q[p] + w_p mean_{c in children(p)} Q[c]``. All parents
  of one depth are updated at once from the features before that depth's step, so children
  of a deeper depth are already updated (one pass propagates a deep subtree). The release
  merges its CSV levels 8 and 9 into 7 (``merge_depth=``: depths above it count as it, and a
  parent then sees its same-depth children's *old* features). Leaves never change.
- :func:`select_top_k`: the ``K`` highest selection logits per image (``torch.topk``; K = 100
  on V3Det, 30 on COCO); ``K >= C`` keeps every category.
- :func:`category_positive_map`: the classification target of each ground-truth box over the
  selected categories. A box whose class the top-K missed gets an all-zero row (background for
  classification; it keeps its box losses): the release does **not** force ground-truth
  categories into the selection.
- :func:`contrastive_logits`: ``ContrastiveEmbed`` with ``log_scale='auto'``:
  ``q . e / sqrt(D) + bias`` (bias a learnable scalar initialised to ``-log(99)``), ``-inf``
  where the category slot is padding.
- :func:`focal_logit_gradient` and :func:`gradient_share`: the closed-form gradient of the
  sigmoid focal loss (alpha = 0.25, gamma = 2) with respect to each logit, and the share of its
  total magnitude that reaches the positive entries, over all categories or over a candidate
  set only. With selection the candidate set is the top-K: the dilution measurement of the
  paper's analysis (whose formal statements are not verified here).

- :func:`image_tokens`, :func:`cross_attention` and :class:`CategoryQuerySelector`: the
  image-guided selector of ``LearnableCategoryQueryTree.forward``/``generate`` (read at commit
  030f0e1, with ``tagbertmodel.py``'s ``BertLayer`` in ``mode='tagging'``). Category queries
  ``Q0 = ReLU(Linear(E))``, the tree pass (optional) and LayerNorm; image tokens = the
  backbone's last map flattened with its average-pooled token prepended, projected to the
  encoder width (1024 -> 512 released); then ``num_layers`` (2) BERT layers whose
  self-attention is deleted: multi-head cross-attention of the category queries to the image
  tokens (``softmax(q k^T / sqrt(d_head)) v``, all tokens valid), dense + residual + LayerNorm,
  then the feed-forward block (dense, GELU, dense) + residual + LayerNorm (eps 1e-12); the
  selection logit is ``Linear(D, 1)`` of each category's output; the top ``K`` are selected
  (:func:`select_top_k`). The released config file (``q2l_config.json``: hidden 768, 4 heads,
  2 layers) was not in the stored index; the feed-forward width defaults to ``4 D`` (BERT's)
  and dropout is left out (the release's 0.1 acts only in training; randomness here goes
  through ``generator=`` only).

Not transcribed: the detector itself; the bench uses an image-level linear selector. The COCO
variant's ``LabelSelfAttention`` feeds ``nn.MultiheadAttention``
(sequence-first) a ``(1, C, 768)`` tensor, i.e. a sequence of length 1 and a batch of ``C``:
each category attends only to itself, so the "implicit correlation" is a per-category linear
map plus residual and LayerNorm in the released code (documented, not reimplemented).

Example:
    >>> import torch
    >>> logits = torch.tensor([[2.0, -1.0, 0.5]])
    >>> targets = torch.tensor([[1.0, 0.0, 0.0]])
    >>> loss = asymmetric_loss(logits=logits, targets=targets, gamma_neg=0.0, clip=0.0)
    >>> bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    >>> bool(torch.allclose(loss, bce))
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from posneg import _checks

__all__ = [
    "CQDINOSelectionLoss",
    "CategoryContrastiveHead",
    "CategoryQuerySelector",
    "CategorySelection",
    "CategoryTreeAggregation",
    "GradientShare",
    "ancestor_mask",
    "asymmetric_loss",
    "category_positive_map",
    "contrastive_logits",
    "cross_attention",
    "focal_logit_gradient",
    "gradient_share",
    "image_tokens",
    "select_top_k",
    "tree_aggregate",
    "tree_depths",
    "tree_weights",
]

CITATION = """
@article{sun2025cqdino,
  title   = {{CQ-DINO}: Mitigating Gradient Dilution via Category Queries for Vast Vocabulary
             Object Detection},
  author  = {Sun, Zhichao and Hu, Huazhang and Ma, Yidong and Liu, Gang and Chen, Nemo and
             Tang, Xu and Hu, Yao and Xu, Yongchao},
  journal = {arXiv preprint arXiv:2503.18430},
  year    = {2025}
}
"""

#: ``ContrastiveEmbed``'s bias initialisation, ``-log((1 - 0.01) / 0.01)``.
CONTRASTIVE_BIAS_INIT = -math.log(99.0)


def _work(x: torch.Tensor) -> torch.Tensor:
    """Half inputs are computed in float32."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_logits_targets(
    fn: str, logits: object, targets: object
) -> tuple[torch.Tensor, torch.Tensor]:
    z = _checks.check_float(fn, "logits", logits)
    if z.dim() != 2 or z.shape[1] < 1:
        raise ValueError(f"{fn}: logits must have shape (B, C) with C >= 1; got {tuple(z.shape)}")
    y = _checks.check_tensor(fn, "targets", targets)
    _checks.check_same_shape(fn, "targets", y, "logits", z)
    _checks.check_same_device(fn, "targets", y, "logits", z)
    return z, y


def asymmetric_loss(
    *,
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma_neg: float = 7.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
    eps: float = 1e-8,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """CQ-DINO's selection loss: the released ``AsymmetricLoss``, summed over (B, C).

    Args:
        logits: ``(B, C)`` selection logits (one per image and category).
        targets: ``(B, C)`` multi-hot presence (1 if the category is in the image); values are
            clamped to ``[0, 1]`` as released.
        gamma_neg: focusing exponent of negatives (>= 0; released 7; COCO 0).
        gamma_pos: focusing exponent of positives (>= 0; released 0).
        clip: probability shift of negatives (>= 0; released 0.05; COCO 0).
        eps: lower clamp of both probabilities (> 0).
        mask: optional ``(B, C)`` bool; False entries (unlabelled ancestors, see
            :func:`ancestor_mask`) get logit 0 and target 0 as released: constant, no gradient.

    Returns:
        Scalar: the summed loss (float32 for half inputs).
    """
    fn = "asymmetric_loss"
    z, y = _check_logits_targets(fn, logits, targets)
    gn = _checks.check_nonnegative(fn, "gamma_neg", gamma_neg)
    gp = _checks.check_nonnegative(fn, "gamma_pos", gamma_pos)
    c = _checks.check_nonnegative(fn, "clip", clip)
    e = _checks.check_positive(fn, "eps", eps)
    z = _work(z)
    y = y.to(z.dtype)
    if mask is not None:
        m = _checks.check_tensor(fn, "mask", mask)
        if m.dtype != torch.bool:
            raise TypeError(f"{fn}: mask must be a bool tensor; got {m.dtype}")
        _checks.check_same_shape(fn, "mask", m, "logits", z)
        z = z * m
        y = y * m
    z = z.clamp(-88.0, 88.0)
    y = y.clamp(0.0, 1.0)
    p = torch.sigmoid(z)
    p_neg = 1 - p
    if c > 0:
        p_neg = (p_neg + c).clamp(max=1.0)
    p_pos = p.clamp(min=e, max=1.0)
    p_neg = p_neg.clamp(min=e, max=1.0)
    loss = y * torch.log(p_pos) + (1 - y) * torch.log(p_neg)
    if gn > 0 or gp > 0:
        with torch.no_grad():
            pt = (p_pos * y + p_neg * (1 - y)).clamp(min=e, max=1.0)
            w = torch.pow(1 - pt, gp * y + gn * (1 - y))
        loss = loss * w
    return -loss.sum()


def tree_depths(parents: Sequence[int], *, fn: str = "tree_depths") -> list[int]:
    """Depth of each node (roots 0) from a parent list (``-1`` for a root); rejects cycles."""
    par = _check_parents(fn, parents)
    n = len(par)
    depth = [-1] * n
    for start in range(n):
        path = []
        node = start
        while node != -1 and depth[node] < 0:
            path.append(node)
            if len(path) > n:
                raise ValueError(f"{fn}: parents contains a cycle through node {start}")
            node = par[node]
        base = -1 if node == -1 else depth[node]
        for k, v in enumerate(reversed(path)):
            depth[v] = base + 1 + k
    return depth


def _check_parents(fn: str, parents: object) -> list[int]:
    if isinstance(parents, torch.Tensor):
        parents = parents.tolist()
    if not isinstance(parents, Sequence) or isinstance(parents, str):
        raise TypeError(f"{fn}: parents must be a sequence of ints; got {type(parents).__name__}")
    out = [_checks.check_int(fn, "parents[i]", p, min_value=-1) for p in parents]
    if not out:
        raise ValueError(f"{fn}: parents must name at least one node")
    for i, p in enumerate(out):
        if p >= len(out) or p == i:
            raise ValueError(f"{fn}: parents[{i}] = {p} is not another node in [0, {len(out)})")
    return out


def _descendant_counts(par: list[int]) -> list[int]:
    count = [0] * len(par)
    for node in range(len(par)):
        p = par[node]
        while p != -1:
            count[p] += 1
            p = par[p]
    return count


def tree_weights(*, parents: Sequence[int], max_descendants: int | None = None) -> torch.Tensor:
    """Per-node update weights ``0.4 + 0.4 log(2 + n_desc) / log(2 + n_max)`` (float64, (C,)).

    Args:
        parents: parent index of each of the ``C`` nodes, ``-1`` for roots.
        max_descendants: ``n_max``; the release hard-codes 13204 (V3Det's C); default ``C``.

    Returns:
        ``(C,)`` float64 in ``[0.4, 0.8]`` when ``n_desc <= n_max`` (leaves get
        ``0.4 + 0.4 log 2 / log(2 + n_max)``; their weight is never used).
    """
    fn = "tree_weights"
    par = _check_parents(fn, parents)
    n_max = len(par) if max_descendants is None else max_descendants
    n_max = _checks.check_int(fn, "max_descendants", n_max, min_value=1)
    counts = torch.tensor(_descendant_counts(par), dtype=torch.float64)
    return 0.4 + 0.4 * torch.log(2 + counts) / math.log(2 + n_max)


def tree_aggregate(
    *,
    queries: torch.Tensor,
    parents: Sequence[int],
    weights: torch.Tensor | None = None,
    merge_depth: int | None = None,
) -> torch.Tensor:
    """The released bottom-up tree pass (``TreeFeatureProcessor.calculate_features``).

    Args:
        queries: ``(..., C, D)`` category queries.
        parents: parent index of each node, ``-1`` for roots (length ``C``).
        weights: ``(C,)`` update weights; default :func:`tree_weights` with ``n_max = C``.
        merge_depth: depths above it are processed as this depth (the release merges its
            levels 8 and 9 into 7); None: no merge.

    Returns:
        ``(..., C, D)``: parents mixed with the mean of their (already updated) children;
        leaves unchanged. No LayerNorm (the module adds it).
    """
    fn = "tree_aggregate"
    q = _checks.check_float(fn, "queries", queries)
    par = _check_parents(fn, parents)
    if q.dim() < 2 or q.shape[-2] != len(par):
        raise ValueError(
            f"{fn}: queries must have shape (..., C, D) with C = len(parents) = {len(par)}; "
            f"got {tuple(q.shape)}"
        )
    depth = tree_depths(par, fn=fn)
    if merge_depth is not None:
        md = _checks.check_int(fn, "merge_depth", merge_depth, min_value=0)
        depth = [min(d, md) for d in depth]
    if weights is None:
        w = tree_weights(parents=par)
    else:
        w = _checks.check_float(fn, "weights", weights)
        if w.shape != (len(par),):
            raise ValueError(f"{fn}: weights must have shape ({len(par)},); got {tuple(w.shape)}")
    w = w.to(device=q.device, dtype=q.dtype)
    children: dict[int, list[int]] = {}
    for c, p in enumerate(par):
        if p != -1:
            children.setdefault(p, []).append(c)
    out = q
    for d in sorted({depth[p] for p in children}, reverse=True):
        level = [p for p in sorted(children) if depth[p] == d]
        pooled = torch.stack([out[..., children[p], :].mean(dim=-2) for p in level], dim=-2)
        idx = torch.tensor(level, device=q.device)
        wl = w[idx].unsqueeze(-1)
        new = (1 - wl) * out[..., idx, :] + wl * pooled
        out = out.index_copy(-2, idx, new)
    return out


def ancestor_mask(*, targets: torch.Tensor, parents: Sequence[int]) -> torch.Tensor:
    """``create_parent_mask``: False at unlabelled ancestors of each image's present categories.

    Args:
        targets: ``(B, C)`` multi-hot presence.
        parents: parent index of each category, ``-1`` for roots.

    Returns:
        ``(B, C)`` bool, True everywhere except at ancestors of a positive that are not
        positive themselves.
    """
    fn = "ancestor_mask"
    y = _checks.check_tensor(fn, "targets", targets)
    par = _check_parents(fn, parents)
    if y.dim() != 2 or y.shape[1] != len(par):
        raise ValueError(
            f"{fn}: targets must have shape (B, C) with C = len(parents) = {len(par)}; "
            f"got {tuple(y.shape)}"
        )
    tree_depths(par, fn=fn)  # rejects cycles
    pos = (y > 0).cpu()
    mask = torch.ones(y.shape, dtype=torch.bool)
    for b in range(y.shape[0]):
        for c in torch.nonzero(pos[b]).flatten().tolist():
            a = par[c]
            while a != -1:
                if not pos[b, a]:
                    mask[b, a] = False
                a = par[a]
    return mask.to(y.device)


def select_top_k(*, logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(B, min(k, C))`` of the highest selection logits per image, best first."""
    fn = "select_top_k"
    z = _checks.check_float(fn, "logits", logits)
    if z.dim() != 2 or z.shape[1] < 1:
        raise ValueError(f"{fn}: logits must have shape (B, C) with C >= 1; got {tuple(z.shape)}")
    kk = _checks.check_int(fn, "k", k, min_value=1)
    return torch.topk(z, k=min(kk, z.shape[1]), dim=1).indices


def category_positive_map(*, labels: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Classification targets ``(n, K)`` of one image's boxes over its selected categories.

    Row ``i`` is one-hot at the slot of ``labels[i]`` in ``selected``, or all zero when the
    top-K missed that class (no forcing of ground-truth categories, as released).
    """
    fn = "category_positive_map"
    lab = _checks.check_tensor(fn, "labels", labels)
    sel = _checks.check_tensor(fn, "selected", selected)
    for name, t in (("labels", lab), ("selected", sel)):
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() != 1:
            raise ValueError(
                f"{fn}: {name} must be a 1-D integer tensor; got {t.dtype} {tuple(t.shape)}"
            )
    _checks.check_same_device(fn, "selected", sel, "labels", lab)
    return (lab[:, None] == sel[None, :]).float()


def contrastive_logits(
    *,
    queries: torch.Tensor,
    categories: torch.Tensor,
    bias: torch.Tensor | float = CONTRASTIVE_BIAS_INIT,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """``ContrastiveEmbed`` (``log_scale='auto'``): ``q . e / sqrt(D) + bias``.

    Args:
        queries: ``(B, Q, D)`` object queries.
        categories: ``(B, K, D)`` selected category queries.
        bias: scalar (tensor or float) added to every logit.
        valid: optional ``(B, K)`` bool; False slots (padding) get ``-inf``.

    Returns:
        ``(B, Q, K)`` logits.
    """
    fn = "contrastive_logits"
    q = _checks.check_float(fn, "queries", queries)
    e = _checks.check_float(fn, "categories", categories)
    if q.dim() != 3 or e.dim() != 3 or q.shape[0] != e.shape[0] or q.shape[2] != e.shape[2]:
        raise ValueError(
            f"{fn}: queries (B, Q, D) and categories (B, K, D) must agree in B and D; got "
            f"{tuple(q.shape)} and {tuple(e.shape)}"
        )
    res = q @ e.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
    if valid is not None:
        v = _checks.check_tensor(fn, "valid", valid)
        if v.dtype != torch.bool or v.shape != e.shape[:2]:
            raise ValueError(
                f"{fn}: valid must be a (B, K) bool tensor; got {v.dtype} {tuple(v.shape)}"
            )
        res = res.masked_fill(~v[:, None, :], float("-inf"))
    return res


def focal_logit_gradient(
    *, logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Closed-form ``dFL/dz`` of the sigmoid focal loss, elementwise (``(..., C)``).

    ``y = 1``: ``alpha [gamma p (1 - p)^gamma log p - (1 - p)^(gamma + 1)]``;
    ``y = 0``: ``(1 - alpha) [p^(gamma + 1) - gamma (1 - p) p^gamma log(1 - p)]``.
    """
    fn = "focal_logit_gradient"
    z = _checks.check_float(fn, "logits", logits)
    y = _checks.check_tensor(fn, "targets", targets)
    _checks.check_same_shape(fn, "targets", y, "logits", z)
    a = _checks.check_range(fn, "alpha", alpha, 0.0, 1.0)
    g = _checks.check_nonnegative(fn, "gamma", gamma)
    z = _work(z)
    y = y.to(z.dtype)
    p = torch.sigmoid(z)
    logp = torch.nn.functional.logsigmoid(z)
    log1mp = torch.nn.functional.logsigmoid(-z)
    d_pos = a * (g * p * (1 - p) ** g * logp - (1 - p) ** (g + 1))
    d_neg = (1 - a) * (p ** (g + 1) - g * (1 - p) * p**g * log1mp)
    return y * d_pos + (1 - y) * d_neg


class GradientShare(NamedTuple):
    """Where the focal-loss gradient goes.

    Attributes:
        positive: summed ``|dL/dz|`` over positive entries in the candidate set.
        negative: summed ``|dL/dz|`` over negative entries in the candidate set.
        share: ``positive / (positive + negative)`` (0 when both are 0).
    """

    positive: float
    negative: float
    share: float


def gradient_share(
    *,
    logits: torch.Tensor,
    targets: torch.Tensor,
    candidates: torch.Tensor | None = None,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> GradientShare:
    """Share of the sigmoid-focal-loss gradient magnitude that reaches the positive classes.

    Args:
        logits: ``(N, C)`` classification logits.
        targets: ``(N, C)`` 0/1 targets.
        candidates: optional ``(N, C)`` bool: the classes the loss runs over (CQ-DINO: the
            top-K selected for the image; positives outside it are background, i.e. dropped
            from the positive set). None: all ``C`` classes (a plain sigmoid head).
        alpha, gamma: focal-loss parameters (0.25, 2).

    Returns:
        :class:`GradientShare`.
    """
    fn = "gradient_share"
    z, y = _check_logits_targets(fn, logits, targets)
    grad = focal_logit_gradient(logits=z, targets=y, alpha=alpha, gamma=gamma).abs()
    pos = y > 0
    if candidates is not None:
        cand = _checks.check_tensor(fn, "candidates", candidates)
        if cand.dtype != torch.bool:
            raise TypeError(f"{fn}: candidates must be a bool tensor; got {cand.dtype}")
        _checks.check_same_shape(fn, "candidates", cand, "logits", z)
        grad = grad * cand
    gp = float(grad[pos].double().sum())
    gn = float(grad[~pos].double().sum())
    total = gp + gn
    return GradientShare(gp, gn, gp / total if total > 0 else 0.0)


class CQDINOSelectionLoss(nn.Module):
    """The selection (image-tagging) loss of CQ-DINO: masked asymmetric loss, summed.

    Calls :func:`asymmetric_loss`; with ``parents`` given it builds :func:`ancestor_mask` from
    the targets (unlabelled ancestors of present categories contribute nothing).

    Example:
        >>> import torch
        >>> loss = CQDINOSelectionLoss(parents=[-1, 0, 0])
        >>> z = torch.zeros(1, 3, requires_grad=True)
        >>> loss(z, torch.tensor([[0.0, 1.0, 0.0]])).backward()
        >>> float(z.grad[0, 0])
        0.0
    """

    def __init__(
        self,
        *,
        gamma_neg: float = 7.0,
        gamma_pos: float = 0.0,
        clip: float = 0.05,
        eps: float = 1e-8,
        parents: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        fn = "CQDINOSelectionLoss"
        self.gamma_neg = _checks.check_nonnegative(fn, "gamma_neg", gamma_neg)
        self.gamma_pos = _checks.check_nonnegative(fn, "gamma_pos", gamma_pos)
        self.clip = _checks.check_nonnegative(fn, "clip", clip)
        self.eps = _checks.check_positive(fn, "eps", eps)
        self.parents = None if parents is None else _check_parents(fn, parents)
        if self.parents is not None:
            tree_depths(self.parents, fn=fn)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        mask = None
        if self.parents is not None:
            mask = ancestor_mask(targets=targets, parents=self.parents)
        return asymmetric_loss(
            logits=logits,
            targets=targets,
            gamma_neg=self.gamma_neg,
            gamma_pos=self.gamma_pos,
            clip=self.clip,
            eps=self.eps,
            mask=mask,
        )

    def extra_repr(self) -> str:
        n = "None" if self.parents is None else f"{len(self.parents)} nodes"
        return (
            f"gamma_neg={self.gamma_neg}, gamma_pos={self.gamma_pos}, clip={self.clip}, "
            f"eps={self.eps}, parents={n}"
        )


class CategoryTreeAggregation(nn.Module):
    """Explicit-hierarchy category queries: :func:`tree_aggregate` then LayerNorm.

    Args:
        parents: parent index of each of the ``C`` categories (``-1`` roots).
        dim: query width ``D`` (the LayerNorm's).
        merge_depth: see :func:`tree_aggregate`.
        max_descendants: see :func:`tree_weights`.

    Example:
        >>> import torch
        >>> tree = CategoryTreeAggregation(parents=[-1, 0, 0], dim=4)
        >>> tree(torch.randn(3, 4)).shape
        torch.Size([3, 4])
    """

    weights: torch.Tensor

    def __init__(
        self,
        *,
        parents: Sequence[int],
        dim: int,
        merge_depth: int | None = None,
        max_descendants: int | None = None,
    ) -> None:
        super().__init__()
        fn = "CategoryTreeAggregation"
        self.parents = _check_parents(fn, parents)
        tree_depths(self.parents, fn=fn)
        self.dim = _checks.check_int(fn, "dim", dim, min_value=1)
        self.merge_depth = (
            None
            if merge_depth is None
            else _checks.check_int(fn, "merge_depth", merge_depth, min_value=0)
        )
        w = tree_weights(parents=self.parents, max_descendants=max_descendants)
        self.register_buffer("weights", w.float())
        self.norm = nn.LayerNorm(self.dim)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        out = tree_aggregate(
            queries=queries,
            parents=self.parents,
            weights=self.weights,
            merge_depth=self.merge_depth,
        )
        return self.norm(out.to(self.norm.weight.dtype))

    def extra_repr(self) -> str:
        return f"num_categories={len(self.parents)}, dim={self.dim}, merge_depth={self.merge_depth}"


class CategoryContrastiveHead(nn.Module):
    """``ContrastiveEmbed``: object queries against selected category queries, learnable bias.

    Example:
        >>> import torch
        >>> head = CategoryContrastiveHead()
        >>> head(torch.randn(2, 5, 8), torch.randn(2, 3, 8)).shape
        torch.Size([2, 5, 3])
    """

    def __init__(self, *, bias_init: float = CONTRASTIVE_BIAS_INIT) -> None:
        super().__init__()
        b = _checks.check_real("CategoryContrastiveHead", "bias_init", bias_init)
        self.bias = nn.Parameter(torch.tensor([b]))

    def forward(
        self, queries: torch.Tensor, categories: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        return contrastive_logits(
            queries=queries, categories=categories, bias=self.bias.to(queries.dtype), valid=valid
        )

    def extra_repr(self) -> str:
        return f"bias_init={float(self.bias.detach()[0]):.4f}"


def image_tokens(*, features: torch.Tensor) -> torch.Tensor:
    """The selector's image tokens: ``(B, C, H, W)`` -> ``(B, 1 + H W, C)``, pooled token first.

    As ``LearnableCategoryQueryTree.forward``: flatten the map, prepend its average over the
    ``H W`` positions (``AdaptiveAvgPool1d(1)``), tokens last-but-one.
    """
    fn = "image_tokens"
    x = _checks.check_float(fn, "features", features)
    if x.dim() != 4:
        raise ValueError(f"{fn}: features must have shape (B, C, H, W); got {tuple(x.shape)}")
    flat = x.flatten(2)
    return torch.cat((flat.mean(dim=2, keepdim=True), flat), dim=2).transpose(1, 2)


def cross_attention(
    *, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, num_heads: int
) -> torch.Tensor:
    """Multi-head scaled dot-product attention of projected queries to projected keys/values.

    ``BertSelfAttention`` as a cross-attention: split the last dimension into ``num_heads``
    heads of ``d = D / num_heads``, ``softmax(q k^T / sqrt(d)) v`` per head over the ``L``
    tokens, heads concatenated back.

    Args:
        queries: ``(B, Q, D)``.
        keys: ``(B, L, D)``.
        values: ``(B, L, D)``.
        num_heads: divides ``D``.

    Returns:
        ``(B, Q, D)``.
    """
    fn = "cross_attention"
    q = _checks.check_float(fn, "queries", queries)
    k = _checks.check_float(fn, "keys", keys)
    v = _checks.check_float(fn, "values", values)
    h = _checks.check_int(fn, "num_heads", num_heads, min_value=1)
    if q.dim() != 3 or k.dim() != 3 or k.shape != v.shape:
        raise ValueError(
            f"{fn}: queries (B, Q, D), keys and values (B, L, D) expected; got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2] or k.shape[1] < 1:
        raise ValueError(
            f"{fn}: queries and keys must agree in B and D (L >= 1); got {tuple(q.shape)} "
            f"and {tuple(k.shape)}"
        )
    if q.shape[2] % h:
        raise ValueError(f"{fn}: num_heads = {h} must divide D = {q.shape[2]}")
    b, n_q, dim = q.shape
    d = dim // h

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, t.shape[1], h, d).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d)
    out = torch.softmax(scores, dim=-1) @ split(v)
    return out.transpose(1, 2).reshape(b, n_q, dim)


class CategorySelection(NamedTuple):
    """Output of :class:`CategoryQuerySelector`.

    Attributes:
        logits: ``(B, C)`` selection logits (the ASL input).
        queries: ``(B, C, D)`` category queries after the cross-attention layers.
        selected: ``(B, min(K, C))`` indices of the top-``K`` logits, best first.
    """

    logits: torch.Tensor
    queries: torch.Tensor
    selected: torch.Tensor


class _TaggingLayer(nn.Module):
    """One BERT layer in ``mode='tagging'``: cross-attention block and feed-forward block."""

    def __init__(self, dim: int, width: int, heads: int, ffn: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(width, dim)
        self.value = nn.Linear(width, dim)
        self.attn_out = nn.Linear(dim, dim)
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn_in = nn.Linear(dim, ffn)
        self.ffn_out = nn.Linear(ffn, dim)
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        ctx = cross_attention(
            queries=self.query(x),
            keys=self.key(tokens),
            values=self.value(tokens),
            num_heads=self.heads,
        )
        a = self.attn_norm(self.attn_out(ctx) + x)
        hidden = torch.nn.functional.gelu(self.ffn_in(a))
        return self.ffn_norm(self.ffn_out(hidden) + a)


class CategoryQuerySelector(nn.Module):
    """CQ-DINO's image-guided category-query selector (Query2Label-style cross-attention).

    Args:
        embeddings: ``(C, D)`` initial category embeddings (the release: CLIP text embeddings
            of the category names, ``D = 768``); copied into a learnable parameter.
        image_dim: channels of the backbone map (1024 released).
        encoder_width: width of the image tokens after projection (512 released).
        num_heads: attention heads (4), dividing ``D``.
        num_layers: cross-attention layers (2).
        ffn_dim: feed-forward width (default ``4 D``).
        k: categories kept per image (100 V3Det, 30 COCO).
        parents: optional category tree (parent index per category, ``-1`` roots): the
            bottom-up pass of :func:`tree_aggregate` before the LayerNorm, as released.

    ``forward(features)`` with ``features`` ``(B, image_dim, H, W)`` returns a
    :class:`CategorySelection`.

    Example:
        >>> import torch
        >>> sel = CategoryQuerySelector(embeddings=torch.randn(6, 8), image_dim=5,
        ...                             encoder_width=4, num_heads=2, k=3)
        >>> out = sel(torch.randn(2, 5, 3, 3))
        >>> out.logits.shape, out.selected.shape
        (torch.Size([2, 6]), torch.Size([2, 3]))
    """

    def __init__(
        self,
        *,
        embeddings: torch.Tensor,
        image_dim: int,
        encoder_width: int = 512,
        num_heads: int = 4,
        num_layers: int = 2,
        ffn_dim: int | None = None,
        k: int = 100,
        parents: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        fn = "CategoryQuerySelector"
        e = _checks.check_float(fn, "embeddings", embeddings)
        if e.dim() != 2 or e.shape[0] < 1 or e.shape[1] < 1:
            raise ValueError(f"{fn}: embeddings must have shape (C, D); got {tuple(e.shape)}")
        c, dim = e.shape
        self.image_dim = _checks.check_int(fn, "image_dim", image_dim, min_value=1)
        self.encoder_width = _checks.check_int(fn, "encoder_width", encoder_width, min_value=1)
        self.num_heads = _checks.check_int(fn, "num_heads", num_heads, min_value=1)
        if dim % self.num_heads:
            raise ValueError(f"{fn}: num_heads = {self.num_heads} must divide D = {dim}")
        self.num_layers = _checks.check_int(fn, "num_layers", num_layers, min_value=1)
        self.ffn_dim = _checks.check_int(
            fn, "ffn_dim", 4 * dim if ffn_dim is None else ffn_dim, min_value=1
        )
        self.k = _checks.check_int(fn, "k", k, min_value=1)
        self.parents = None if parents is None else _check_parents(fn, parents)
        if self.parents is not None:
            tree_depths(self.parents, fn=fn)
            if len(self.parents) != c:
                raise ValueError(f"{fn}: parents must name C = {c} categories")
        self.embeddings = nn.Parameter(e.detach().clone().float())
        self.wordvec_proj = nn.Linear(dim, dim)
        self.label_norm = nn.LayerNorm(dim)
        self.image_proj = nn.Linear(self.image_dim, self.encoder_width)
        self.layers = nn.ModuleList(
            _TaggingLayer(dim, self.encoder_width, self.num_heads, self.ffn_dim, 1e-12)
            for _ in range(self.num_layers)
        )
        self.fc = nn.Linear(dim, 1)

    def category_queries(self, batch: int) -> torch.Tensor:
        """``(batch, C, D)``: ``LayerNorm(tree(ReLU(Linear(E))))`` (the tree when given)."""
        q = torch.relu(self.wordvec_proj(self.embeddings))
        q = q.unsqueeze(0).expand(batch, -1, -1)
        if self.parents is not None:
            q = tree_aggregate(queries=q, parents=self.parents)
        return self.label_norm(q)

    def forward(self, features: torch.Tensor) -> CategorySelection:
        fn = "CategoryQuerySelector"
        x = _checks.check_float(fn, "features", features)
        if x.dim() != 4 or x.shape[1] != self.image_dim:
            raise ValueError(
                f"{fn}: features must have shape (B, {self.image_dim}, H, W); got {tuple(x.shape)}"
            )
        tokens = self.image_proj(image_tokens(features=x).to(self.image_proj.weight.dtype))
        h = self.category_queries(x.shape[0])
        for layer in self.layers:
            h = layer(h, tokens)
        logits = self.fc(h).squeeze(-1)
        return CategorySelection(logits, h, select_top_k(logits=logits.detach(), k=self.k))

    def extra_repr(self) -> str:
        c, dim = self.embeddings.shape
        n = "None" if self.parents is None else f"{len(self.parents)} nodes"
        return (
            f"num_categories={c}, dim={dim}, image_dim={self.image_dim}, "
            f"encoder_width={self.encoder_width}, num_heads={self.num_heads}, "
            f"num_layers={self.num_layers}, ffn_dim={self.ffn_dim}, k={self.k}, parents={n}"
        )
