"""WSCoL: weak-to-strong contrastive learning with trusted positives for source-free detection.

Yang et al., "Rethinking Weak-to-Strong Augmentation in Source-Free Domain Adaptive Object
Detection" (arXiv 2410.05557, 2024; v3 retitled WSCo). Transcribed from the official
``tntek/source-free-domain-adaptive-object-detection`` (commit 67054386, the later WSCo code):
``detectron2/modeling/meta_arch/losses.py`` (``con_loss``) and
``detectron2/modeling/meta_arch/student_sfda_rcnn_wscol.py`` (``classify_samples``,
``calculate_proposal_variance``, ``pro_obtain_label``, ``prototype_update_pol``, ``forward``).

The teacher labels the weak view; the student sees the strong view; both are pooled on the
teacher's proposals and mapped into one space (``z_s`` strong, with gradient; ``z_t`` weak,
detached). Every proposal gets a pseudo-label (teacher boxes for the matched ones, prototype-guided
clustering for the rest), then a supervised-contrastive loss pulls same-label proposals together.

Pieces (pure functions; :class:`WSCoLLoss` is the thin module):

- :func:`trusted_positives` (``classify_samples``, ``merge='merge'``): for a foreground anchor
  ``i`` with ``n_i`` same-label proposals (itself included), its **trusted** positives are the
  same-label items among its ``n_i - 1`` nearest neighbours by cosine similarity of the *weak*
  features (itself excluded); the other same-label items are **untrusted**. Background rows
  (label ``K``) and anchors alone in their class have neither. Vectorised (the release loops).
- :func:`wscol_contrastive_loss` (``con_loss``): ``s = normalize(z) normalize(z)^T / tau`` minus
  the row max; ``log p_ij = s_ij - log sum_k exp(s_ik)`` with **the self pair kept in the
  denominator** (SupCon excludes it). The positive mask is the same-label mask with the
  diagonal set to 1. With untrusted pairs (``merge='merge'``), the row loss is
  ``-0.5 * sum_j m_ij log p_ij / (sum_j m_ij + 1e-5)`` for ``m = same-label minus untrusted``
  (trusted + self; background rows keep all their background positives) and the same with
  ``m = untrusted``; each is averaged over its rows whose loss is not exactly 0, and the loss is
  ``alpha * untrusted + (1 - alpha) * trusted`` (``alpha = 0`` as called: only trusted
  positives and self pull; untrusted ones stay in the denominator). Without untrusted pairs
  (or ``merge='none'``) the release's plain branch: ``-0.5 * mean_{j in P(i)} log p_ij`` over
  all same-label positives (no eps), averaged over the non-zero rows. ``tau = 0.07`` (the
  release ignores its ``--temp`` flag and hard-codes 0.07).
- :func:`proposal_variance` (``calculate_proposal_variance``): the population variance of the
  number of boxes greedy NMS keeps at IoU thresholds ``0, 0.1, ..., 0.5`` over the proposals
  whose objectness probability is ``> 0.5``. The background switch: ``V > 20`` contrasts only
  the foreground proposals, otherwise background proposals join (one shared label: background
  items are mutual positives).
- :func:`prototype_cluster_labels` (``pro_obtain_label``): SHOT-style clustering of the weak
  features into ``K + 1`` clusters: append 1, L2-normalise; soft assignment
  ``softmax(teacher logits)``; centroids ``c_k = sum_n a_nk f_n / (1e-8 + sum_n a_nk)``, at
  step 0 replaced by the (equally normalised) class prototypes when every class has one;
  clusters with members only; Euclidean assignment; **foreground proposals are forced back to
  their teacher labels** after each step; ``steps`` = 4 (``cluster_step``).
- :func:`update_prototypes` (``prototype_update_pol``): per class present,
  ``pi_c <- (1 - eta) pi_c + eta mean`` (``eta = 0.4``); the first visit copies the mean.

Choices where the release cannot run or is ambiguous (each documented where it applies): the
release crashes (``UnboundLocalError``) when the teacher's arg max picks a single cluster at
step 0; here every proposal then takes that cluster. When every row of a branch of the loss
is exactly 0 the release returns NaN (mean of nothing); here the loss is 0 (still connected to
the graph). ``merge='weight'`` of the release multiplies the logits by a matrix that is all
ones as called (``th_con = 1.0``), i.e. it is the plain branch; it is not offered. The epoch-1
"adaptation-aware" mix of these distances with a cosine clustering of the raw ROI features
and the memory bank (``obtain_label``) and the other weak-to-strong terms (KD, instance SupCon,
gradient discrepancy) are not part of this module.

Example:
    >>> import torch
    >>> z = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    >>> labels = torch.tensor([0, 0, 1, 1, 2, 2])  # 2 = background (K = 2)
    >>> pos = trusted_positives(features=z, labels=labels, background=2)
    >>> loss = wscol_contrastive_loss(features=z, labels=labels, untrusted=pos.untrusted)
    >>> bool(loss > 0)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from posneg import _checks
from posneg.detection.boxes import box_iou

__all__ = [
    "IOU_THRESHOLDS",
    "ClusterLabels",
    "TrustedPositives",
    "WSCoLLoss",
    "nms_keep_count",
    "proposal_variance",
    "prototype_cluster_labels",
    "trusted_positives",
    "update_prototypes",
    "wscol_contrastive_loss",
]

CITATION = """
@article{yang2024wscol,
  title   = {Rethinking Weak-to-Strong Augmentation in Source-Free Domain Adaptive Object
             Detection},
  author  = {Yang, Jiuzheng and Tang, Song and Zhang, Yangkuiyi and Li, Shuaifeng and
             Ye, Mao and Zhang, Jianwei and Zhu, Xiatian},
  journal = {arXiv preprint arXiv:2410.05557},
  year    = {2024}
}
"""

#: ``np.arange(0.0, 0.6, 0.1)`` of the release.
IOU_THRESHOLDS = (0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5)
_MERGES = ("merge", "none")


def _work(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_feats_labels(
    fn: str, features: object, labels: object, name: str = "features"
) -> tuple[torch.Tensor, torch.Tensor]:
    z = _checks.check_float(fn, name, features)
    if z.dim() != 2 or z.shape[0] < 1:
        raise ValueError(f"{fn}: {name} must have shape (N, D) with N >= 1; got {tuple(z.shape)}")
    y = _checks.check_labels(fn, "labels", labels, z.shape[0], z.device)
    return z, y


class TrustedPositives(NamedTuple):
    """Positive pairs of :func:`trusted_positives` (both ``(N, N)`` bool, diagonal False).

    Attributes:
        trusted: same-label items among the anchor's ``n - 1`` nearest weak neighbours.
        untrusted: the anchor's other same-label items (the release's ``weight_matrix``).
    """

    trusted: torch.Tensor
    untrusted: torch.Tensor


def trusted_positives(
    *, features: torch.Tensor, labels: torch.Tensor, background: int
) -> TrustedPositives:
    """``classify_samples(merge='merge')``: trusted and untrusted same-label positives.

    Args:
        features: ``(N, D)`` weak-view mapped features (the release uses the teacher's
            proposals through the student's mapping net, detached).
        labels: ``(N,)`` pseudo-labels, ``background`` for background proposals.
        background: the background label ``K`` (its rows get no trusted/untrusted pairs).

    Returns:
        :class:`TrustedPositives`. For a foreground anchor ``i`` with ``n_i`` same-label items
        (itself included) and ``n_i > 1``: the ``n_i - 1`` highest cosine similarities among
        the other items (ties by index) define its neighbourhood; same-label neighbours are
        trusted, the remaining same-label items untrusted.
    """
    fn = "trusted_positives"
    z, y = _check_feats_labels(fn, features, labels)
    bg = _checks.check_int(fn, "background", background)
    z = _work(z).detach()
    n = z.shape[0]
    f = torch.nn.functional.normalize(z, dim=1)
    sim = f @ f.T
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    same = y[:, None] == y[None, :]
    k = same.sum(1) - 1  # neighbours per row: same-label count minus itself
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=z.device).expand(n, n).contiguous())
    near = ranks < k[:, None]
    rows = ((y != bg) & (k >= 1))[:, None]
    trusted = near & same & ~eye & rows
    untrusted = same & ~eye & ~trusted & rows
    return TrustedPositives(trusted, untrusted)


def _mean_nonzero(x: torch.Tensor) -> torch.Tensor:
    keep = x != 0
    if not bool(keep.any()):
        return x.sum() * 0  # the release: mean of nothing (NaN); here 0
    return x[keep].mean()


def wscol_contrastive_loss(
    *,
    features: torch.Tensor,
    labels: torch.Tensor,
    untrusted: torch.Tensor | None = None,
    temperature: float = 0.07,
    alpha: float = 0.0,
    merge: str = "merge",
) -> torch.Tensor:
    """``con_loss``: supervised contrast over pseudo-labels with trusted positives.

    Args:
        features: ``(N, D)`` strong-view mapped features (with gradient).
        labels: ``(N,)`` pseudo-labels (background proposals share one label).
        untrusted: ``(N, N)`` bool, :attr:`TrustedPositives.untrusted` (None: plain branch).
        temperature: ``tau`` (> 0; the release hard-codes 0.07).
        alpha: weight of the untrusted-positive term in ``[0, 1]`` (the release calls 0).
        merge: ``"merge"`` (released ``train.sh``) or ``"none"`` (all same-label positives).

    Returns:
        Scalar loss (float32 for half inputs); see the module docstring for the formula.
    """
    fn = "wscol_contrastive_loss"
    z, y = _check_feats_labels(fn, features, labels)
    tau = _checks.check_positive(fn, "temperature", temperature)
    a = _checks.check_range(fn, "alpha", alpha, 0.0, 1.0)
    mode = _checks.check_choice(fn, "merge", merge, _MERGES)
    n = z.shape[0]
    z = _work(z)
    mask = (y[:, None] == y[None, :]).to(z.dtype)
    f = torch.nn.functional.normalize(z, dim=1)
    s = f @ f.T / tau
    s = s - s.max(dim=1, keepdim=True).values.detach()
    log_p = s - torch.log(torch.exp(s).sum(1, keepdim=True))
    w: torch.Tensor | None = None
    if untrusted is not None:
        u = _checks.check_tensor(fn, "untrusted", untrusted)
        if u.dtype != torch.bool or u.shape != (n, n):
            raise ValueError(
                f"{fn}: untrusted must be an (N, N) = ({n}, {n}) bool tensor; "
                f"got {u.dtype} {tuple(u.shape)}"
            )
        _checks.check_same_device(fn, "untrusted", u, "features", z)
        w = u.to(z.dtype)
    if mode == "merge" and w is not None and bool(w.sum() != 0):
        m_hp, m_nhp = w, mask * (1 - w)
        pos_hp = (m_hp * log_p).sum(1) / (m_hp.sum(1) + 1e-5)
        pos_nhp = (m_nhp * log_p).sum(1) / (m_nhp.sum(1) + 1e-5)
        loss_hp = _mean_nonzero(-0.5 * pos_hp)
        loss_nhp = _mean_nonzero(-0.5 * pos_nhp)
        return a * loss_hp + (1 - a) * loss_nhp
    row = -0.5 * (mask * log_p).sum(1) / mask.sum(1)
    return _mean_nonzero(row)


def nms_keep_count(*, boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> int:
    """How many boxes greedy NMS keeps (``torchvision.ops.nms``: drop IoU > threshold)."""
    fn = "nms_keep_count"
    b = _checks.check_float(fn, "boxes", boxes)
    sc = _checks.check_float(fn, "scores", scores)
    if b.dim() != 2 or b.shape[1] != 4 or sc.shape != (b.shape[0],):
        raise ValueError(
            f"{fn}: boxes must be (N, 4) and scores (N,); got {tuple(b.shape)} and "
            f"{tuple(sc.shape)}"
        )
    t = _checks.check_real(fn, "iou_threshold", iou_threshold)
    if b.shape[0] == 0:
        return 0
    order = torch.sort(sc, descending=True, stable=True).indices
    over = (box_iou(b[order].double(), b[order].double()) > t).cpu()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    kept = 0
    for i in range(len(order)):
        if suppressed[i]:
            continue
        kept += 1
        suppressed |= over[i]
    return kept


def proposal_variance(
    *,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    score_threshold: float = 0.5,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> float:
    """``calculate_proposal_variance``: variance of NMS keep counts across IoU thresholds.

    Args:
        boxes: ``(N, 4)`` xyxy proposals.
        scores: ``(N,)`` objectness probabilities (the release: ``sigmoid(objectness_logits)``).
        score_threshold: proposals with score ``>`` it are kept first (0.5).
        iou_thresholds: NMS thresholds (released ``0, 0.1, ..., 0.5``).

    Returns:
        ``np.var`` (population variance, ``ddof = 0``) of the keep counts; 0 when no proposal
        passes or every threshold keeps the same number.
    """
    fn = "proposal_variance"
    b = _checks.check_float(fn, "boxes", boxes)
    sc = _checks.check_float(fn, "scores", scores)
    if b.dim() != 2 or b.shape[1] != 4 or sc.shape != (b.shape[0],):
        raise ValueError(
            f"{fn}: boxes must be (N, 4) and scores (N,); got {tuple(b.shape)} and "
            f"{tuple(sc.shape)}"
        )
    thr = _checks.check_real(fn, "score_threshold", score_threshold)
    ious = [_checks.check_real(fn, "iou_thresholds[i]", t) for t in iou_thresholds]
    if not ious:
        raise ValueError(f"{fn}: iou_thresholds must hold at least one threshold")
    keep = sc > thr
    counts = [nms_keep_count(boxes=b[keep], scores=sc[keep], iou_threshold=t) for t in ious]
    mean = sum(counts) / len(counts)
    return float(sum((c - mean) ** 2 for c in counts) / len(counts))


class ClusterLabels(NamedTuple):
    """Result of :func:`prototype_cluster_labels`.

    Attributes:
        labels: ``(N,)`` int64 pseudo-labels in ``[0, K]`` (foreground forced to the teacher's).
        distances: ``(N, M)`` Euclidean distances to the ``M`` clusters of the last step.
        labelset: ``(M,)`` the cluster ids of ``distances``' columns.
    """

    labels: torch.Tensor
    distances: torch.Tensor
    labelset: torch.Tensor


def prototype_cluster_labels(
    *,
    features: torch.Tensor,
    logits: torch.Tensor,
    fg_index: torch.Tensor,
    fg_labels: torch.Tensor,
    prototypes: torch.Tensor | None = None,
    steps: int = 4,
) -> ClusterLabels:
    """``pro_obtain_label``: prototype-guided clustering of all proposals into ``K + 1`` groups.

    Args:
        features: ``(N, D)`` weak-view mapped features.
        logits: ``(N, K + 1)`` teacher logits (softmax gives the initial soft assignment).
        fg_index: ``(F,)`` indices of the proposals matched to teacher pseudo-boxes.
        fg_labels: ``(F,)`` their teacher classes in ``[0, K)``.
        prototypes: ``(K, D)`` class prototypes, or None when not every class has one (the
            release's ``act``): then step 0 uses the soft-assignment centroids.
        steps: clustering steps (``cluster_step`` = 4).

    Returns:
        :class:`ClusterLabels`. When the teacher's arg max names a single cluster at step 0
        (the release crashes there) every proposal takes it; a later single-cluster step
        stops the loop and keeps the previous step (as released).
    """
    fn = "prototype_cluster_labels"
    f = _checks.check_float(fn, "features", features)
    z = _checks.check_float(fn, "logits", logits)
    if f.dim() != 2 or z.dim() != 2 or f.shape[0] != z.shape[0] or z.shape[1] < 2:
        raise ValueError(
            f"{fn}: features (N, D) and logits (N, K + 1) with K >= 1 must agree in N; got "
            f"{tuple(f.shape)} and {tuple(z.shape)}"
        )
    _checks.check_same_device(fn, "logits", z, "features", f)
    n, kk = z.shape
    fi = _checks.check_tensor(fn, "fg_index", fg_index)
    fl = _checks.check_tensor(fn, "fg_labels", fg_labels)
    for name, t in (("fg_index", fi), ("fg_labels", fl)):
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() != 1:
            raise ValueError(f"{fn}: {name} must be a 1-D integer tensor; got {t.dtype}")
    if fi.shape != fl.shape:
        raise ValueError(f"{fn}: fg_index and fg_labels must have the same length")
    if fi.numel() and (int(fi.min()) < 0 or int(fi.max()) >= n):
        raise ValueError(f"{fn}: fg_index must lie in [0, {n})")
    if fl.numel() and (int(fl.min()) < 0 or int(fl.max()) >= kk - 1):
        raise ValueError(f"{fn}: fg_labels must lie in [0, K) = [0, {kk - 1})")
    st = _checks.check_int(fn, "steps", steps, min_value=1)
    f, z = _work(f).detach(), _work(z).detach()
    fi, fl = fi.to(f.device), fl.to(f.device)
    if prototypes is not None:
        p = _checks.check_float(fn, "prototypes", prototypes)
        if p.shape != (kk - 1, f.shape[1]):
            raise ValueError(
                f"{fn}: prototypes must have shape (K, D) = ({kk - 1}, {f.shape[1]}); "
                f"got {tuple(p.shape)}"
            )
        p = p.detach().to(f)
    else:
        p = torch.zeros(kk - 1, f.shape[1], dtype=f.dtype, device=f.device)
    aff = torch.softmax(z, dim=1)
    predict = aff.argmax(1)
    allf = torch.cat((p, f), 0)
    allf = torch.cat((allf, torch.ones(allf.shape[0], 1, dtype=f.dtype, device=f.device)), 1)
    allf = allf / allf.norm(dim=1, keepdim=True)
    proto, allf = allf[: kk - 1], allf[kk - 1 :]
    eye = torch.eye(kk, dtype=f.dtype, device=f.device)
    dd = torch.zeros(n, 1, dtype=f.dtype, device=f.device)
    labelset = torch.zeros(0, dtype=torch.int64, device=f.device)
    for i in range(st):
        initc = aff.T @ allf
        initc = initc / (1e-8 + aff.sum(0)[:, None])
        if i == 0 and prototypes is not None:
            initc = torch.cat((proto, initc[kk - 1 :]), 0)
        present = torch.nonzero(eye[predict].sum(0) > 0).flatten()
        if present.numel() == 1:
            if i == 0:  # released: UnboundLocalError; here all take the only cluster
                labelset = present
            break
        labelset = present
        dd = torch.cdist(allf, initc[labelset], p=2)
        predict = labelset[dd.argmin(1)]
        predict[fi] = fl
        aff = eye[predict]
    labels = labelset[dd.argmin(1)].clone()
    labels[fi] = fl  # the forward's ``all_labels[fg_index] = fg_labels``
    return ClusterLabels(labels, dd, labelset)


def update_prototypes(
    *,
    prototypes: torch.Tensor,
    initialized: torch.Tensor,
    features: torch.Tensor,
    labels: torch.Tensor,
    momentum: float = 0.4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``prototype_update_pol``: EMA of per-class feature means (first visit copies).

    Args:
        prototypes: ``(K, D)`` current prototypes.
        initialized: ``(K,)`` bool, classes that already have a prototype.
        features: ``(M, D)`` features (the release: the memory bank through the mapping net).
        labels: ``(M,)`` their classes in ``[0, K)``.
        momentum: ``eta`` in ``[0, 1]`` (``emaweight`` = 0.4).

    Returns:
        New ``(prototypes, initialized)`` (the inputs are not modified).
    """
    fn = "update_prototypes"
    p = _checks.check_float(fn, "prototypes", prototypes)
    if p.dim() != 2:
        raise ValueError(f"{fn}: prototypes must have shape (K, D); got {tuple(p.shape)}")
    init = _checks.check_tensor(fn, "initialized", initialized)
    if init.dtype != torch.bool or init.shape != (p.shape[0],):
        raise ValueError(f"{fn}: initialized must be a (K,) bool tensor; got {init.dtype}")
    f = _checks.check_float(fn, "features", features)
    if f.dim() != 2 or f.shape[1] != p.shape[1]:
        raise ValueError(f"{fn}: features must have shape (M, {p.shape[1]}); got {tuple(f.shape)}")
    y = _checks.check_labels(fn, "labels", labels, f.shape[0], f.device)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= p.shape[0]):
        raise ValueError(f"{fn}: labels must lie in [0, K) = [0, {p.shape[0]})")
    eta = _checks.check_range(fn, "momentum", momentum, 0.0, 1.0)
    out, done = p.detach().clone(), init.clone()
    for c in torch.unique(y).tolist():
        mean = f[y == c].mean(0).to(out)
        out[c] = mean if not bool(done[c]) else (1 - eta) * out[c] + eta * mean
        done[c] = True
    return out, done


class WSCoLLoss(nn.Module):
    """WSCoL's contrastive term: trusted positives, background switch, weighted ``con_loss``.

    ``forward(strong, weak, labels, variance=0.0)``: trusted/untrusted positives from the weak
    features (:func:`trusted_positives` over all proposals), then
    :func:`wscol_contrastive_loss` on the strong features, over the foreground proposals only
    when ``variance > variance_threshold`` (the pair masks restricted to them, as released)
    and over all proposals otherwise, times ``weight``. Zero (connected to the graph) with
    ``<= 2`` foreground proposals, as the release skips the term.

    Args:
        num_classes: ``K`` (background label).
        temperature: ``tau`` (0.07).
        alpha: untrusted-positive weight (0).
        weight: the term's weight (``cmaweight``: 0.5 in ``train.sh``, 1 by default).
        variance_threshold: the background switch (20).
        merge: ``"merge"`` or ``"none"``.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> strong, weak = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
        >>> labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
        >>> bool(WSCoLLoss(num_classes=2)(strong, weak, labels) > 0)
        True
    """

    def __init__(
        self,
        *,
        num_classes: int,
        temperature: float = 0.07,
        alpha: float = 0.0,
        weight: float = 1.0,
        variance_threshold: float = 20.0,
        merge: str = "merge",
    ) -> None:
        super().__init__()
        fn = "WSCoLLoss"
        self.num_classes = _checks.check_int(fn, "num_classes", num_classes, min_value=1)
        self.temperature = _checks.check_positive(fn, "temperature", temperature)
        self.alpha = _checks.check_range(fn, "alpha", alpha, 0.0, 1.0)
        self.weight = _checks.check_nonnegative(fn, "weight", weight)
        self.variance_threshold = _checks.check_real(fn, "variance_threshold", variance_threshold)
        self.merge = _checks.check_choice(fn, "merge", merge, _MERGES)

    def forward(
        self,
        strong: torch.Tensor,
        weak: torch.Tensor,
        labels: torch.Tensor,
        variance: float = 0.0,
    ) -> torch.Tensor:
        fn = "WSCoLLoss"
        s, y = _check_feats_labels(fn, strong, labels, "strong")
        w = _checks.check_float(fn, "weak", weak)
        _checks.check_same_shape(fn, "weak", w, "strong", s)
        v = _checks.check_real(fn, "variance", variance)
        fg = torch.nonzero(y != self.num_classes).flatten()
        if fg.numel() <= 2:
            return _work(s).sum() * 0
        pos = trusted_positives(features=w, labels=y, background=self.num_classes)
        untrusted = pos.untrusted if self.merge == "merge" else None
        if v > self.variance_threshold:
            s, y = s[fg], y[fg]
            untrusted = None if untrusted is None else untrusted[fg][:, fg]
        loss = wscol_contrastive_loss(
            features=s,
            labels=y,
            untrusted=untrusted,
            temperature=self.temperature,
            alpha=self.alpha,
            merge=self.merge,
        )
        return self.weight * loss

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, temperature={self.temperature}, "
            f"alpha={self.alpha}, weight={self.weight}, "
            f"variance_threshold={self.variance_threshold}, merge={self.merge!r}"
        )
