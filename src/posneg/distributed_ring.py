"""Ring-tiled InfoNCE and NT-Xent across ranks: no rank holds the gathered batch or its scores.

Inf-CL's cross-device idea (Cheng et al., *Breaking the Memory Barrier: Near Infinite Batch Size
Scaling for Contrastive Loss*, arXiv 2410.17243, 2024; official code DAMO-NLP-SG/Inf-CLIP,
``inf_cl/ring.py``), written here with posneg's exactness: each rank keeps its own (B_r, D)
embeddings; key blocks travel around the ring (rank r sends to r + 1 and receives from r - 1,
``batch_isend_irecv``, the next transfer posted before the current block is scored), and each
rank folds every block into a per-row log-sum-exp. Only that (B_r,) vector is saved for backward.
Backward passes the key blocks around the ring again: each rank recomputes the block's
probabilities ``p_ij = exp(s * <q_i, k_j> - lse_i)``, adds ``s * (g * p) @ k_blk`` to its own
``dq`` and ``s * (g * p).T @ q`` to the block's travelling ``dk`` accumulator, which arrives back
at the block's owner after the last hop. Memory per rank: its inputs, one key block in flight
(plus its ``dk`` in backward) and one row chunk of one block's scores; never the B x B scores,
never every rank's keys at once.

Where posneg deliberately differs from the official ring (``inf_cl/ring.py`` at commit
40ca596d341a8607eca9c8c634eb8b7f84545fc3, ``RingProb`` and ``cal_ring_loss``; the test file
shows each difference):

* the official loss is each rank's mean over its *own* rows (``.mean()`` of the local per-row
  losses); posneg's ``"mean"`` is the global mean, the same scalar on every rank. Under DDP's
  averaging both give the single-process gradient when every rank holds the same number of
  rows; with uneven ranks the official one weights a row by ``1 / (W * B_r)`` instead of
  ``1 / B``;
* the official block statistic is ``log(exp(qk).sum(-1))`` without subtracting the row maximum
  (``inf`` once a logit passes ~88 in float32); posneg takes a stable ``logsumexp``;
* NT-Xent's anchor-excluded form is posneg's addition (the official ring has no mask).

On CUDA, where :mod:`posneg._kernels` finds Triton usable, each block's log-sum-exp and
gradients run through its fused kernels (``row_lse_forward`` / ``row_lse_backward``); elsewhere
through the torch row-chunk path here.

Like Inf-CL's ring, the per-row log-sum-exp is the one objective-specific statistic; the
positive term ``-<q_i, k_i> / t`` is local (the positive of a row lives on the row's rank) and
goes through ordinary autograd. Results equal the single-process losses on the concatenated
batch (:func:`posneg.losses.info_nce.info_nce`, :func:`~posneg.losses.info_nce.nt_xent`) up to
the rounding of a blockwise log-sum-exp (float64: ~1e-15).

The gradient contract is :func:`posneg.distributed.gather_with_grad`'s: with ``"mean"`` or
``"sum"`` every rank returns the same global loss ``L``; the gradient reaching rank r's inputs is
``sum over ranks s of g_s * dL/dx_r`` (``g_s`` the gradient of ``L`` on rank s, 1 for
``L.backward()``), so with every rank calling ``backward`` the inputs get ``world_size * dL/dx_r``
and DDP's averaging gives the parameters exactly the single-process gradient.

With ``torch.distributed`` unavailable, not initialised or of one rank, the same code runs with
a ring of one (no communication) and equals the plain losses.

This module imports only torch and posneg internals.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from posneg import _checks
from posneg._tiling import compute_dtype
from posneg._types import REDUCTIONS, Reduction
from posneg.distributed import _exchange_device, rank, world_size

__all__ = ["ring_info_nce", "ring_nt_xent"]

CITATION = """
@article{wang2024infcl,
  title   = {Breaking the Memory Barrier: Near Infinite Batch Size Scaling for Contrastive Loss},
  author  = {Cheng, Zesen and Zhang, Hang and Li, Kehan and Leng, Sicong and Hu, Zhiqiang and
             Wu, Fei and Zhao, Deli and Li, Xin and Bing, Lidong},
  journal = {arXiv preprint arXiv:2410.17243},
  year    = {2024}
}
"""

#: Score entries of one row chunk of one block (4 Mi: 32 MB in float64).
_CHUNK_ELEMENTS = 1 << 22
#: Message tags: forward keys, backward keys, backward dk accumulators.
_TAG_FWD, _TAG_BWD_K, _TAG_BWD_DK = 16, 17, 18

#: Error codes in the descriptor exchange.
_OK, _VALUE_ERROR, _TYPE_ERROR = 0.0, 1.0, 2.0
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ---------------------------------------------------------------------------------------------
# ring plumbing
# ---------------------------------------------------------------------------------------------


def _peer(group: Any, group_rank: int) -> int:
    """The global rank of ``group_rank`` in ``group`` (what point-to-point calls address)."""
    return group_rank if group is None else int(dist.get_global_rank(group, group_rank))


class _Ring:
    """This rank's place in the ring: rows per rank, neighbours, and one hop of a transfer."""

    def __init__(self, sizes: list[int], group: Any) -> None:
        self.sizes = sizes
        self.group = group
        self.world = len(sizes)
        self.me = rank(group) if self.world > 1 else 0
        self.next = _peer(group, (self.me + 1) % self.world) if self.world > 1 else 0
        self.prev = _peer(group, (self.me - 1) % self.world) if self.world > 1 else 0

    def owner(self, step: int) -> int:
        """The rank whose block this rank holds after ``step`` hops."""
        return (self.me - step) % self.world

    def start(self, pairs: list[tuple[torch.Tensor, torch.Tensor]], tag: int) -> list[Any]:
        """Post ``send(a) -> next`` and ``recv(b) <- prev`` for each (a, b); return the requests."""
        ops = []
        for i, (out, into) in enumerate(pairs):
            ops.append(dist.P2POp(dist.isend, out, self.next, self.group, tag + 8 * i))
            ops.append(dist.P2POp(dist.irecv, into, self.prev, self.group, tag + 8 * i))
        return list(dist.batch_isend_irecv(ops))


def _wait(reqs: list[Any]) -> None:
    for req in reqs:
        req.wait()


def _chunks(n_rows: int, n_cols: int) -> range:
    step = max(1, min(n_rows, _CHUNK_ELEMENTS // max(1, n_cols)))
    return range(0, n_rows, step)


def _block_scores(
    q: torch.Tensor, kb: torch.Tensor, r0: int, r1: int, scale: float, exclude_self: bool
) -> torch.Tensor:
    """``scale * q[r0:r1] @ kb.T``, the own column of each row masked when ``exclude_self``."""
    s = (q[r0:r1] @ kb.T).mul_(scale)
    if exclude_self:
        rows = torch.arange(r1 - r0, device=q.device)
        s[rows, rows + r0] = torch.finfo(s.dtype).min
    return s


def _kernels_for(q: torch.Tensor, kb: torch.Tensor) -> Any:
    """``(row_lse_forward, row_lse_backward)`` of :mod:`posneg._kernels` where its Triton kernels
    run on these tensors (CUDA, fp16/bf16/fp32, triton installed), else ``None`` (torch path)."""
    if q.device.type != "cuda":
        return None
    try:
        from posneg import _kernels
    except ImportError:
        return None
    if not _kernels.triton_usable(q, kb):
        return None
    return _kernels.row_lse_forward, _kernels.row_lse_backward


def _block_lse(q: torch.Tensor, kb: torch.Tensor, scale: float, exclude_self: bool) -> torch.Tensor:
    """Per-row log-sum-exp of one block's scores, row chunk by row chunk: (n_q,)."""
    kernels = _kernels_for(q, kb)
    if kernels is not None:
        lse = kernels[0](q, kb, scale=scale, exclude_offsets=(0,) if exclude_self else ())
        return lse.to(q.dtype)
    out = torch.empty(q.shape[0], dtype=q.dtype, device=q.device)
    rows = _chunks(q.shape[0], kb.shape[0])
    for r0 in rows:
        r1 = min(q.shape[0], r0 + rows.step)
        out[r0:r1] = torch.logsumexp(_block_scores(q, kb, r0, r1, scale, exclude_self), dim=1)
    return out


def _block_grads(
    q: torch.Tensor,
    kb: torch.Tensor,
    lse: torch.Tensor,
    g: torch.Tensor,
    scale: float,
    exclude_self: bool,
    dq: torch.Tensor,
    dk: torch.Tensor,
) -> None:
    """Add one block's ``dq += s (g p) @ kb`` and ``dk += s (g p).T @ q`` in place."""
    kernels = _kernels_for(q, kb)
    if kernels is not None:
        off = (0,) if exclude_self else ()
        dq_b, dk_b = kernels[1](q, kb, lse, g, scale=scale, exclude_offsets=off)
        dq.add_(dq_b)
        dk.add_(dk_b)
        return
    rows = _chunks(q.shape[0], kb.shape[0])
    for r0 in rows:
        r1 = min(q.shape[0], r0 + rows.step)
        s = _block_scores(q, kb, r0, r1, scale, exclude_self)
        w = torch.exp(s.sub_(lse[r0:r1, None])).mul_(g[r0:r1, None] * scale)
        dq[r0:r1].addmm_(w, kb)
        dk.addmm_(w.T, q[r0:r1])


class _RingLSE(torch.autograd.Function):
    """lse_i = log sum_j exp(scale * <q_i, k_j>) over every rank's k (own column masked when
    ``exclude_self``, in the own block only); backward returns dq and this rank's dk."""

    @staticmethod
    def forward(
        ctx: Any, q: torch.Tensor, k: torch.Tensor, scale: float, exclude_self: bool, ring: _Ring
    ) -> torch.Tensor:
        q, k = q.contiguous(), k.contiguous()
        lse = torch.full((q.shape[0],), -math.inf, dtype=q.dtype, device=q.device)
        held = k
        for step in range(ring.world):
            reqs: list[Any] = []
            if step < ring.world - 1:  # post the next hop before scoring the held block
                incoming = k.new_empty((ring.sizes[ring.owner(step + 1)], k.shape[1]))
                reqs = ring.start([(held, incoming)], _TAG_FWD)
            blk = _block_lse(q, held, scale, exclude_self and step == 0)
            lse = torch.logaddexp(lse, blk)
            _wait(reqs)
            if reqs:
                held = incoming
        ctx.save_for_backward(q, k, lse)
        ctx.scale, ctx.exclude_self, ctx.ring = scale, exclude_self, ring
        return lse

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_lse: torch.Tensor) -> tuple[Any, ...]:
        q, k, lse = ctx.saved_tensors
        ring: _Ring = ctx.ring
        g = grad_lse.contiguous()
        dq = torch.zeros_like(q)
        held, dk = k, torch.zeros_like(k)
        for step in range(ring.world):
            reqs: list[Any] = []
            last = step == ring.world - 1
            if not last:  # the keys travel on while this block is scored
                incoming = k.new_empty((ring.sizes[ring.owner(step + 1)], k.shape[1]))
                reqs = ring.start([(held, incoming)], _TAG_BWD_K)
            _block_grads(q, held, lse, g, ctx.scale, ctx.exclude_self and step == 0, dq, dk)
            if ring.world > 1:  # the block's dk follows it; after the last hop it is home
                dk_in = k.new_empty((ring.sizes[ring.owner(step + 1)], k.shape[1]))
                reqs += ring.start([(dk, dk_in)], _TAG_BWD_DK)
                _wait(reqs)
                dk = dk_in
            if not last:
                held = incoming
        return dq, dk, None, None, None


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; backward sums the incoming gradients over ranks (each rank's output
    depends on every rank's input with coefficient 1)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        total = grad.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        return total, None


# ---------------------------------------------------------------------------------------------
# validation, the same verdict on every rank
# ---------------------------------------------------------------------------------------------


def _local_checks(
    fn: str, names: tuple[str, str], a: Any, b: Any, temperature: Any, normalize: Any, red: Any
) -> float:
    t = _checks.check_positive(fn, "temperature", temperature)
    _checks.check_bool(fn, "normalize", normalize)
    _checks.check_reduction(fn, red)
    _checks.check_embeddings(fn, names[0], a)
    _checks.check_embeddings(fn, names[1], b)
    _checks.check_same_device(fn, names[1], b, names[0], a)
    _checks.check_same_dtype(fn, names[1], b, names[0], a)
    _checks.check_same_shape(fn, names[1], b, names[0], a)
    return t


def _agree(
    fn: str,
    names: tuple[str, str],
    a: Any,
    b: Any,
    hparams: tuple[Any, Any, Any],
    group: Any,
) -> tuple[float, _Ring]:
    """Validate locally, then (more than one rank) exchange one descriptor per rank so that
    every rank raises together when any rank's input is bad or the ranks disagree.

    A rank that raised before its peers' collective would leave them blocked until the
    backend's timeout, as :func:`posneg.distributed.gather_with_grad` explains.
    """
    err: Exception | None = None
    t = 0.0
    try:
        t = _local_checks(fn, names, a, b, *hparams)
    except (TypeError, ValueError) as e:
        err = e
    if world_size(group) == 1:
        if err is not None:
            raise err
        return t, _Ring([int(a.shape[0])], group)
    code = _OK if err is None else (_TYPE_ERROR if isinstance(err, TypeError) else _VALUE_ERROR)
    ok = err is None
    mine = [
        code,
        float(a.shape[0]) if ok else -1.0,
        float(a.shape[1]) if ok else -1.0,
        float(_DTYPES.index(a.dtype)) if ok else -1.0,
        t,
        float(bool(hparams[1])) if ok else -1.0,
        float(REDUCTIONS.index(hparams[2])) if ok else -1.0,
    ]
    device = _exchange_device(a, group)
    desc = torch.tensor(mine, dtype=torch.float64, device=device)
    everyone = [torch.empty_like(desc) for _ in range(world_size(group))]
    dist.all_gather(everyone, desc, group=group)
    rows = [d.tolist() for d in everyone]
    me = rank(group)
    bad = [r for r, row in enumerate(rows) if row[0] != _OK]
    if err is not None:
        raise type(err)(f"{err} (this is rank {me}; ranks with bad input: {bad})")
    if bad:
        kind = TypeError if any(rows[r][0] == _TYPE_ERROR for r in bad) else ValueError
        raise kind(f"{fn}: the inputs on ranks {bad} are invalid (see the error on those ranks)")
    fields = ("dimension D", "dtype", "temperature", "normalize", "reduction")
    for col, what in enumerate(fields, start=2):
        values = [row[col] for row in rows]
        if any(v != values[0] for v in values):
            shown = [_show(col, v) for v in values]
            raise ValueError(
                f"{fn}: every rank must pass the same {what}; got {shown} by rank "
                f"(this is rank {me})"
            )
    return t, _Ring([int(row[1]) for row in rows], group)


def _show(col: int, v: float) -> Any:
    if col == 3:
        return str(_DTYPES[int(v)])
    if col == 6:
        return REDUCTIONS[int(v)]
    if col == 5:
        return bool(v)
    return int(v) if col == 2 else v


def _reduce(per_row: torch.Tensor, n_total: int, reduction: str, ring: _Ring) -> torch.Tensor:
    if reduction == "none":
        return per_row
    total = per_row.sum()
    if ring.world > 1:
        total = _AllReduceSum.apply(total, ring.group)
    return total / n_total if reduction == "mean" else total


def _global_rows(fn: str, ring: _Ring) -> int:
    """The global batch B (every rank's rows); at least 2 (the same on every rank: no hang)."""
    n_total = sum(ring.sizes)
    if n_total < 2:
        raise ValueError(
            f"{fn}: the ranks must hold at least 2 rows together (B >= 2); got B = {n_total}"
        )
    return n_total


def _prepare(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    x = x.to(compute_dtype(x))
    return F.normalize(x, dim=1) if normalize else x


# ---------------------------------------------------------------------------------------------
# the objectives
# ---------------------------------------------------------------------------------------------


def ring_info_nce(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    temperature: float = 0.07,
    normalize: bool = True,
    reduction: Reduction = "mean",
    group: Any = None,
) -> torch.Tensor:
    """InfoNCE over every rank's batch, key blocks passed around a ring (Inf-CL's layout).

    Cheng et al. *Breaking the Memory Barrier: Near Infinite Batch Size Scaling for Contrastive
    Loss.* arXiv 2410.17243, 2024 (the ring); the objective is :func:`posneg.losses.info_nce`'s
    (van den Oord et al., arXiv 1807.03748). With ``Q = cat_r q_r`` and ``K = cat_r k_r`` the
    concatenation of every rank's rows (``B = sum_r B_r``), L2-normalised when ``normalize``::

        L_i = -Q_i.K_i / t + log sum_{j<B} exp(Q_i.K_j / t)

    i.e. the positive on the global diagonal, every other rank's keys as negatives. The value
    equals ``info_nce(Q, K, temperature=t, normalize=normalize, reduction=reduction)`` of one
    process (the ``"none"`` rows of this rank are its slice). Each rank contributes its own rows
    only; no rank gathers ``K`` or scores ``B x B``.

    Args:
        q: (B_r, D) this rank's queries; ranks may hold different B_r >= 1.
        k: (B_r, D) this rank's keys; ``k[i]`` is the positive of ``q[i]``.
        temperature: t > 0 (the same on every rank, checked).
        normalize: L2-normalise ``q`` and ``k`` first.
        reduction: ``"mean"`` (over the global B rows) or ``"sum"``: the same scalar on every
            rank, gradient contract of :func:`posneg.distributed.gather_with_grad` (module
            docstring); ``"none"``: this rank's (B_r,) rows, whose gradient is exactly theirs.
        group: process group (default: the world).

    Returns:
        A scalar, or (B_r,) for ``"none"``; float32 for half-precision inputs, else the input
        dtype.

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, non-bool ``normalize``.
        ValueError: wrong rank or shape, ``q``/``k`` of different shapes or devices, an empty
            rank, global B < 2, temperature <= 0, bad reduction, ranks disagreeing on D, dtype
            or a hyperparameter. Every rank raises together (one descriptor exchange first), so
            a bad input on one rank never leaves the others waiting in a collective.

    Every rank must call ``ring_info_nce`` and, when gradients are needed, ``backward`` (both
    passes are collectives).

    Example:
        >>> import torch
        >>> from posneg.losses.info_nce import info_nce
        >>> q, k = torch.randn(8, 16, dtype=torch.float64), torch.randn(8, 16, dtype=torch.float64)
        >>> bool(torch.isclose(ring_info_nce(q, k), info_nce(q, k)))  # one process
        True
    """
    fn = "ring_info_nce"
    t, ring = _agree(fn, ("q", "k"), q, k, (temperature, normalize, reduction), group)
    n_total = _global_rows(fn, ring)
    qn, kn = _prepare(q, normalize), _prepare(k, normalize)
    lse = _RingLSE.apply(qn, kn, 1.0 / t, False, ring)
    per_row = lse - (qn * kn).sum(dim=1) / t
    return _reduce(per_row, n_total, reduction, ring)


def ring_nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    temperature: float = 0.5,
    normalize: bool = True,
    reduction: Reduction = "mean",
    group: Any = None,
) -> torch.Tensor:
    """NT-Xent (SimCLR's 2B-view form) over every rank's batch, ring-tiled as :func:`ring_info_nce`.

    Chen et al., SimCLR, ICML 2020, arXiv 2002.05709; the ring is Inf-CL's (arXiv 2410.17243).
    With ``Z`` the 2B rows of every rank's ``z1`` and ``z2`` (normalised when ``normalize``) and
    ``p(r)`` the other view of row r::

        L_r = -Z_r.Z_p(r) / t + log sum_{c != r} exp(Z_r.Z_c / t)

    equal to ``nt_xent(cat_r z1_r, cat_r z2_r, ...)`` of one process; ``"mean"`` averages over
    all 2B anchors. The ring carries each rank's ``cat([z1_r, z2_r])`` block; the anchor itself is
    masked in its own block only.

    Args:
        z1: (B_r, D) this rank's first views; ranks may hold different B_r >= 1.
        z2: (B_r, D) this rank's second views; ``z2[i]`` is the positive of ``z1[i]``.
        temperature: t > 0 (SimCLR's default 0.5).
        normalize: L2-normalise the embeddings first.
        reduction: ``"mean"`` / ``"sum"`` (global scalar, the same on every rank) or
            ``"none"``: this rank's (2 B_r,) rows ordered [z1 anchors, z2 anchors].
        group: process group (default: the world).

    Returns:
        A scalar, or (2 B_r,) for ``"none"``.

    Raises:
        TypeError, ValueError: as :func:`ring_info_nce` (global B >= 2 is required, as by
            :func:`posneg.losses.info_nce.nt_xent`).

    Example:
        >>> import torch
        >>> from posneg.losses.info_nce import nt_xent
        >>> a, b = torch.randn(8, 16, dtype=torch.float64), torch.randn(8, 16, dtype=torch.float64)
        >>> bool(torch.isclose(ring_nt_xent(a, b), nt_xent(a, b)))  # one process
        True
    """
    fn = "ring_nt_xent"
    t, ring = _agree(fn, ("z1", "z2"), z1, z2, (temperature, normalize, reduction), group)
    n_total = _global_rows(fn, ring)
    z = _prepare(torch.cat([z1, z2], dim=0), normalize)
    b = int(z1.shape[0])
    partner = torch.cat([z[b:], z[:b]], dim=0)
    two_view = _Ring([2 * s for s in ring.sizes], ring.group)
    lse = _RingLSE.apply(z, z, 1.0 / t, True, two_view)
    per_row = lse - (z * partner).sum(dim=1) / t
    return _reduce(per_row, 2 * n_total, reduction, two_view)
