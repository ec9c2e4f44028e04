"""NGAME: negative-mining-aware mini-batching from balanced clusters of queries.

Every few epochs the training queries are embedded with the current encoder and partitioned by
balanced hierarchical spherical 2-means (:func:`balanced_clusters`); each epoch then shuffles the
cluster order and cuts the concatenated members into batches (:class:`NGAMESampler`), so each
batch is a few whole clusters of mutually similar queries and its in-batch negatives are hard.
The cluster size grows on a curriculum (:func:`cluster_size_schedule`). The loss is a triplet
margin loss over the k hardest in-batch negatives (:func:`triplet_margin_ohnm`).

Typical loop (``refresh_due`` says when to re-cluster; ``deferred=True`` makes the clusters
computed at epoch e first used in epoch e + 1, as in the official loop, see
:class:`NGAMESampler`)::

    sampler = NGAMESampler(num_queries, batch_size, generator=g, deferred=True)
    for epoch in range(epochs):
        if refresh_due(epoch, warmup=10, interval=5):
            size = cluster_size_schedule(epoch, curr_epochs=[10, 20, 25, 50])
            sampler.refresh(encode(queries), size)
        for batch in sampler:
            loss = triplet_margin_ohnm(q_emb[batch], label_emb[batch])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Sampler

from posneg import _checks, _rng
from posneg._tiling import compute_dtype, map_rows, reduce_loss
from posneg._types import Reduction
from posneg.mining.strategies._inputs import check_mask

__all__ = [
    "CITATION",
    "NGAMESampler",
    "TripletMarginOHNMLoss",
    "balanced_clusters",
    "cluster_size_schedule",
    "refresh_due",
    "triplet_margin_ohnm",
]

CITATION = """
@inproceedings{dahiya2023ngame,
  title     = {{NGAME}: Negative Mining-aware Mini-batching for Extreme Classification},
  author    = {Dahiya, Kunal and Gupta, Nilesh and Saini, Deepak and Soni, Akshay and Wang, Yajun
               and Dave, Kushal and Jiao, Jian and K, Gururaj and Dey, Prasenjit and Singh,
               Amit and Hada, Deepesh and Jain, Vidit and Paliwal, Bhawna and Mittal, Anshul and
               Mehta, Sonu and Ramjee, Ramachandran and Agarwal, Sumeet and Kar, Purushottam and
               Varma, Manik},
  booktitle = {Proceedings of the Sixteenth ACM International Conference on Web Search and Data
               Mining (WSDM '23)},
  year      = {2023},
  note      = {arXiv:2207.04452}
}
"""


# ---------------------------------------------------------------------------------------------
# balanced hierarchical 2-means
# ---------------------------------------------------------------------------------------------


def _split_level(
    x: torch.Tensor,
    order: torch.Tensor,
    sizes: torch.Tensor,
    generator: torch.Generator | None,
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split every segment of ``order`` (lengths ``sizes``) into two balanced halves at once."""
    dev = x.device
    n_seg = sizes.shape[0]
    seg = torch.repeat_interleave(torch.arange(n_seg, device=dev), sizes)
    starts = torch.cumsum(sizes, 0) - sizes
    xs = x[order]
    # two distinct random members per segment as the initial centroids (as xclib's b_kmeans_dense)
    u = torch.rand((2, n_seg), device=dev, generator=generator, dtype=torch.float64)
    first = (u[0] * sizes).floor().long().clamp_max(sizes - 1)
    other = (u[1] * (sizes - 1)).floor().long().clamp_min(0)
    second = (first + 1 + other) % sizes
    c0, c1 = xs[starts + first], xs[starts + second]
    half = (sizes + 1) // 2  # the first child takes the extra item (np.array_split)
    rank_in_seg = torch.arange(x.shape[0], device=dev) - starts[seg]
    child = rank_in_seg >= half[seg]  # False: first child, for positions sorted within segments
    perm = torch.arange(x.shape[0], device=dev)
    previous: torch.Tensor | None = None
    for _ in range(max_iter):
        # rank items by sim to centroid 1 minus sim to centroid 0 within their segment
        diff = (xs * (c1 - c0)[seg]).sum(dim=1)
        by_diff = torch.argsort(diff, stable=True)
        perm = by_diff[torch.argsort(seg[by_diff], stable=True)]
        assignment = torch.empty_like(child)
        assignment[perm] = child
        if previous is not None and torch.equal(assignment, previous):
            break
        previous = assignment
        group = 2 * seg + child.long()
        cents = torch.zeros((2 * n_seg, x.shape[1]), dtype=x.dtype, device=dev)
        cents.index_add_(0, group, xs[perm])
        cents = F.normalize(cents, dim=1)
        c0, c1 = cents[0::2], cents[1::2]
    new_sizes = torch.stack([half, sizes - half], dim=1).reshape(-1)
    return order[perm], new_sizes[new_sizes > 0]


def _partition(
    embeddings: torch.Tensor,
    cluster_size: int,
    generator: torch.Generator | None,
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, sizes): members of every cluster contiguous in ``order``."""
    n = int(embeddings.shape[0])
    dev = embeddings.device
    order = torch.arange(n, device=dev)
    if cluster_size == 1:
        return order, torch.ones(n, dtype=torch.int64, device=dev)
    x = F.normalize(embeddings.detach().to(compute_dtype(embeddings)), dim=1)
    sizes = torch.tensor([n], dtype=torch.int64, device=dev)
    while int(sizes.max()) > cluster_size:
        order, sizes = _split_level(x, order, sizes, generator, max_iter)
    return order, sizes


def _check_cluster_args(
    fn: str, embeddings: object, cluster_size: object, generator: object
) -> torch.Tensor:
    emb = _checks.check_embeddings(fn, "embeddings", embeddings)
    _checks.check_int(fn, "cluster_size", cluster_size, min_value=1)
    _checks.check_generator(fn, generator, emb.device)
    _checks.check_finite(fn, "embeddings", emb)
    return emb


def balanced_clusters(
    embeddings: torch.Tensor,
    cluster_size: int,
    *,
    max_iter: int = 20,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """Balanced hierarchical spherical 2-means: clusters of at most ``cluster_size`` items.

    Dahiya et al. *NGAME: Negative Mining-aware Mini-batching for Extreme Classification.*
    WSDM 2023, arXiv 2207.04452 (official code: Extreme-classification/ngame,
    ``libs/shortlist.py::ClusteringIndex`` calling xclib's ``cluster_balance`` with
    ``b_kmeans_dense``).

    Starting from one cluster of all N items (L2-normalised), every level splits every cluster
    into two halves of sizes ``ceil(n/2)`` and ``floor(n/2)`` by spherical 2-means: two distinct
    random members as initial centroids, then repeatedly rank the members by
    ``cos(x, c_1) - cos(x, c_0)``, give the lower-ranked ``ceil(n/2)`` to child 0 and the rest to
    child 1 (the balanced assignment), and set each centroid to the normalised mean of its
    child. Levels continue until every cluster holds at most ``cluster_size`` items, so after
    L levels the sizes are ``floor(N / 2^L)`` or ``ceil(N / 2^L)``: they differ by at most one,
    and there are ``2^L`` clusters (fewer when N < 2^L), exactly the power-of-two count xclib
    uses for ``num_clusters = N / cluster_size``. Every level is computed for all clusters at
    once (segmented sorts and ``index_add``), not in a loop over clusters or items.

    Difference from xclib: each split stops when the assignment no longer changes or after
    ``max_iter`` rounds (xclib iterates until the mean similarity improves by less than 1e-4,
    without a cap).

    Args:
        embeddings: (N, D) embeddings (cosine similarity is used); not differentiated.
        cluster_size: the largest cluster size allowed, >= 1 (1: every item alone).
        max_iter: 2-means rounds per split, >= 1.
        generator: draws the initial centroids; a generator on ``embeddings``' device, or
            ``None`` (torch's global RNG).

    Returns:
        A list of int64 tensors of item indices, one per cluster, on ``embeddings``' device,
        together a partition of ``range(N)``.

    Raises:
        TypeError: non-floating embeddings, a non-int cluster_size or max_iter, a bad generator.
        ValueError: not (N, D) with N >= 1, NaN/inf values, cluster_size or max_iter < 1, a
            generator on another device.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 0.1], [0.0, 1.0], [1.0, 0.0], [0.1, 1.0]])
        >>> clusters = balanced_clusters(x, 2, generator=torch.Generator().manual_seed(0))
        >>> sorted(sorted(c.tolist()) for c in clusters)
        [[0, 2], [1, 3]]
    """
    fn = "balanced_clusters"
    emb = _check_cluster_args(fn, embeddings, cluster_size, generator)
    _checks.check_int(fn, "max_iter", max_iter, min_value=1)
    order, sizes = _partition(emb, cluster_size, generator, max_iter)
    return list(torch.split(order, sizes.tolist()))


# ---------------------------------------------------------------------------------------------
# the batch sampler and its curriculum
# ---------------------------------------------------------------------------------------------


class NGAMESampler(Sampler[list[int]]):
    """Batches of whole balanced clusters (NGAME's mini-batching), a ``DataLoader`` batch_sampler.

    Dahiya et al., NGAME, WSDM 2023, arXiv 2207.04452 (official code: ``libs/sdataset.py``
    ``indices_permutation``: shuffle the clusters, concatenate their members, cut into
    batches).

    Before any :meth:`refresh`, or after one with ``cluster_size=1``, every epoch is a plain
    random permutation cut into batches: exactly ``torch.randperm(num_items, generator=g)``
    for the sampler's generator ``g``. After ``refresh(embeddings, s)`` with ``s > 1``, each
    epoch draws a random order of the clusters (``torch.randperm(num_clusters)``),
    concatenates their members (members keep their clustering order) and cuts consecutive
    batches of ``batch_size``: a batch is therefore made of whole clusters except where a batch
    boundary cuts one (at most the first and the last cluster of a batch are partial).

    Randomness: ``generator`` (the attribute, settable) drives every epoch's draws; with
    ``None`` each epoch takes one seed from torch's global RNG, as ``RandomSampler`` does, so
    ``torch.manual_seed`` and DataLoader seeding apply. Iterating twice gives two epochs.

    When new clusters take effect (``deferred``). In the official loop (``libs/model.py``,
    ``_fit``; Extreme-classification/ngame, commit f7029748f119d3a316ecbff16e23eb725ad1fe2c)
    the batch order of epoch e is drawn at the *end* of epoch e - 1 (``update_order`` after the
    epoch), while the clusters are recomputed at the *start* of epoch e (``update_sampler``
    before ``_step``): clusters computed at epoch e are first used in epoch e + 1, and epoch e
    still runs on the previous ones. ``deferred=True`` reproduces this lag: after
    ``refresh(...)`` the next epoch (the next ``iter``) still uses the clusters in force before
    it, and the new ones apply from the epoch after. ``deferred=False`` (default) applies them
    to the very next epoch: the paper's stated intent (re-cluster on the current encoder's
    embeddings, since stale clusters give easier negatives) without the extra epoch of
    staleness, and the behaviour posneg has always had (the retrieval bench re-clusters
    between steps with it, so its metrics are unchanged). The clustering each epoch uses is
    the same in both modes, shifted by one epoch (tested against a transcription of the
    official loop).

    Args:
        num_items: number of training items (queries), >= 1.
        batch_size: items per batch, >= 1.
        drop_last: drop the last batch when it is smaller than ``batch_size``.
        max_iter: 2-means rounds per split when refreshing (see :func:`balanced_clusters`).
        generator: a CPU ``torch.Generator`` or ``None``.
        deferred: clusters from :meth:`refresh` take effect one epoch late, as in the
            official loop (see above); default False (the next epoch).

    Raises:
        TypeError: non-int sizes, a non-bool drop_last or deferred, a bad generator.
        ValueError: sizes < 1.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> sampler = NGAMESampler(8, 4, generator=g)
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(4, 1)
        >>> x = x + 0.1 * torch.arange(8.0)[:, None] * x.flip(1)  # items 0,2,4,6 alike
        >>> sampler.refresh(x, 4, generator=torch.Generator().manual_seed(1))
        >>> sorted(sorted(b) for b in sampler)
        [[0, 2, 4, 6], [1, 3, 5, 7]]
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        drop_last: bool = False,
        max_iter: int = 20,
        generator: torch.Generator | None = None,
        deferred: bool = False,
    ) -> None:
        fn = "NGAMESampler"
        self.num_items = _checks.check_int(fn, "num_items", num_items, min_value=1)
        self.batch_size = _checks.check_int(fn, "batch_size", batch_size, min_value=1)
        self.drop_last = _checks.check_bool(fn, "drop_last", drop_last)
        self.max_iter = _checks.check_int(fn, "max_iter", max_iter, min_value=1)
        _checks.check_generator(fn, generator, torch.device("cpu"))
        self.deferred = _checks.check_bool(fn, "deferred", deferred)
        self.generator = generator
        #: cluster size of the clusters in force (1 before any refresh)
        self.cluster_size = 1
        self._order: torch.Tensor | None = None  # members, cluster after cluster (CPU)
        self._sizes: torch.Tensor | None = None  # cluster sizes (CPU)
        #: with ``deferred``: (order, sizes, cluster_size) waiting for the epoch after the next
        self._pending: tuple[torch.Tensor | None, torch.Tensor | None, int] | None = None

    @property
    def clusters(self) -> list[torch.Tensor] | None:
        """The current clusters (item index tensors), or ``None`` when batches are random."""
        if self._order is None or self._sizes is None:
            return None
        return list(torch.split(self._order, self._sizes.tolist()))

    def refresh(
        self,
        embeddings: torch.Tensor,
        cluster_size: int,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        """Re-cluster the items from fresh ``embeddings`` (num_items, D) into clusters of at most
        ``cluster_size`` (:func:`balanced_clusters`); 1 returns to random batches.

        ``generator`` draws the initial centroids (on ``embeddings``' device); ``None`` uses the
        sampler's generator when ``embeddings`` are on the CPU, else torch's global RNG. With
        ``deferred=True`` the new clusters are held back until the next epoch has started (a
        later refresh before that replaces them).
        """
        fn = "NGAMESampler.refresh"
        emb = _check_cluster_args(fn, embeddings, cluster_size, generator)
        if emb.shape[0] != self.num_items:
            raise ValueError(
                f"{fn}: embeddings must have num_items={self.num_items} rows; "
                f"got {tuple(emb.shape)}"
            )
        if generator is None and emb.device.type == "cpu":
            generator = self.generator
        new: tuple[torch.Tensor | None, torch.Tensor | None, int] = (None, None, 1)
        if cluster_size != 1:
            order, sizes = _partition(emb, cluster_size, generator, self.max_iter)
            new = (order.cpu(), sizes.cpu(), int(cluster_size))
        if self.deferred:
            self._pending = new
        else:
            self._order, self._sizes, self.cluster_size = new

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_items // self.batch_size
        return math.ceil(self.num_items / self.batch_size)

    def _epoch(self, gen: torch.Generator) -> torch.Tensor:
        """The item order of one epoch (num_items,) int64."""
        if self._order is None or self._sizes is None:
            return torch.randperm(self.num_items, generator=gen)
        sizes = self._sizes
        starts = torch.cumsum(sizes, 0) - sizes
        pick = torch.randperm(sizes.shape[0], generator=gen)
        picked = sizes[pick]
        out_starts = torch.cumsum(picked, 0) - picked
        offset = torch.arange(self.num_items) - torch.repeat_interleave(out_starts, picked)
        return self._order[torch.repeat_interleave(starts[pick], picked) + offset]

    def __iter__(self) -> Iterator[list[int]]:
        gen = _rng.epoch_generator(self.generator)
        order = self._epoch(gen)
        if self._pending is not None:  # deferred: used from the epoch after this one
            self._order, self._sizes, self.cluster_size = self._pending
            self._pending = None
        stop = len(self) * self.batch_size if self.drop_last else self.num_items
        for start in range(0, stop, self.batch_size):
            yield order[start : start + self.batch_size].tolist()

    def __repr__(self) -> str:
        return (
            f"NGAMESampler(num_items={self.num_items}, batch_size={self.batch_size}, "
            f"drop_last={self.drop_last}, cluster_size={self.cluster_size}, "
            f"deferred={self.deferred})"
        )


def cluster_size_schedule(
    epoch: int,
    *,
    curr_epochs: Sequence[int] | None = None,
    warmup: int | None = None,
    every: int | None = None,
    start: int = 1,
    factor: int = 2,
    max_size: int | None = None,
) -> int:
    """NGAME's curriculum: the cluster size at ``epoch`` (0-based), growing by ``factor`` steps.

    Dahiya et al., NGAME, WSDM 2023, arXiv 2207.04452 (official code: ``ClusteringIndex
    .update_state`` halves the number of clusters, so doubles their size, from each epoch listed
    in ``sampling_curr_epochs``; the siamese config lists [10, 20, 25, 50, 75, 100, 125, 150,
    200]). Two forms, give exactly one::

        curr_epochs:    size = start * factor ** #{c in curr_epochs : c <= epoch}
        warmup, every:  size = start                                      if epoch < warmup
                             = start * factor ** (1 + (epoch - warmup) // every)  otherwise

    capped at ``max_size`` when given. ``start=1`` means random batches until the first growth.

    Args:
        epoch: the current epoch, >= 0.
        curr_epochs: the epochs from which the size grows (the official list form).
        warmup: first epoch of growth (regular form).
        every: epochs between growths (regular form), >= 1.
        start: initial size, >= 1.
        factor: growth factor, >= 2.
        max_size: cap, >= start, or ``None``.

    Returns:
        The cluster size to pass to :meth:`NGAMESampler.refresh`.

    Raises:
        TypeError: non-int arguments.
        ValueError: both or neither form, negative values, factor < 2, max_size < start.

    Example:
        >>> [cluster_size_schedule(e, curr_epochs=[10, 20, 25]) for e in (0, 9, 10, 20, 25, 99)]
        [1, 1, 2, 4, 8, 8]
        >>> [cluster_size_schedule(e, warmup=2, every=3, max_size=8) for e in range(0, 12, 2)]
        [1, 2, 2, 4, 8, 8]
    """
    fn = "cluster_size_schedule"
    _checks.check_int(fn, "epoch", epoch, min_value=0)
    _checks.check_int(fn, "start", start, min_value=1)
    _checks.check_int(fn, "factor", factor, min_value=2)
    if max_size is not None:
        _checks.check_int(fn, "max_size", max_size, min_value=start)
    regular = warmup is not None or every is not None
    if (curr_epochs is None) == (not regular):
        raise ValueError(f"{fn}: give either curr_epochs or warmup and every (exactly one form)")
    if curr_epochs is not None:
        if isinstance(curr_epochs, (str, bytes)) or not isinstance(curr_epochs, Sequence):
            raise TypeError(
                f"{fn}: curr_epochs must be a sequence of ints; got {type(curr_epochs).__name__}"
            )
        for c in curr_epochs:
            _checks.check_int(fn, "curr_epochs[...]", c, min_value=0)
        steps = sum(1 for c in curr_epochs if c <= epoch)
    else:
        if warmup is None or every is None:
            raise ValueError(f"{fn}: the regular form needs both warmup and every")
        _checks.check_int(fn, "warmup", warmup, min_value=0)
        _checks.check_int(fn, "every", every, min_value=1)
        steps = 0 if epoch < warmup else 1 + (epoch - warmup) // every
    if max_size is not None:
        size = start
        for _ in range(steps):  # at most log(max_size) rounds before the cap
            if size * factor > max_size:
                return max_size
            size *= factor
        return size
    return int(start * factor**steps)


def refresh_due(epoch: int, *, warmup: int, interval: int = 5) -> bool:
    """Whether NGAME re-clusters at ``epoch``: ``epoch >= warmup and epoch % interval == 0``.

    As the official training loop (``libs/model.py``: ``epoch >= curr_epochs[0] and
    epoch % refresh_interval == 0``, interval 5).

    Example:
        >>> [e for e in range(30) if refresh_due(e, warmup=10)]
        [10, 15, 20, 25]
    """
    fn = "refresh_due"
    _checks.check_int(fn, "epoch", epoch, min_value=0)
    _checks.check_int(fn, "warmup", warmup, min_value=0)
    _checks.check_int(fn, "interval", interval, min_value=1)
    return epoch >= warmup and epoch % interval == 0


# ---------------------------------------------------------------------------------------------
# the loss
# ---------------------------------------------------------------------------------------------


def _ohnm_block(
    start: int,
    stop: int,
    q: torch.Tensor,
    lab: torch.Tensor,
    positive_mask: torch.Tensor,
    *,
    k: int,
    margin: float,
    aggressive: bool,
    tau: float,
) -> torch.Tensor:
    qb = q[start:stop]
    r = stop - start
    local = torch.arange(r, device=q.device)
    s = qb @ lab.T  # (R, B)
    s_p = s[local, local + start][:, None]
    positive = torch.zeros_like(s, dtype=torch.bool)
    positive[local, local + start] = True
    if positive_mask.shape[1]:
        positive |= positive_mask[start:stop]
    low = torch.finfo(s.dtype).min
    idx = torch.topk(s.detach().masked_fill(positive, low), k, dim=1).indices
    valid = ~positive.gather(1, idx)
    s_n = s.gather(1, idx)
    loss = F.relu(s_n - s_p + margin) * valid.to(s.dtype)
    if aggressive:
        logits = (s_n / tau) * (loss > 0).to(s.dtype)
        prob = torch.softmax(logits.masked_fill(~valid, low), dim=1)
        loss = loss * prob
    return loss.sum(dim=1)


def triplet_margin_ohnm(
    query: torch.Tensor,
    label: torch.Tensor,
    *,
    positive_mask: torch.Tensor | None = None,
    k: int = 10,
    margin: float = 0.3,
    aggressive: bool = True,
    tau: float = 0.1,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """NGAME's triplet margin loss with online hard negative mining over the in-batch labels.

    Dahiya et al. *NGAME: Negative Mining-aware Mini-batching for Extreme Classification.*
    WSDM 2023, arXiv 2207.04452 (official code: Extreme-classification/ngame,
    ``libs/loss.py::TripletMarginLossOHNM``; defaults from the siamese stage of
    ``configs/NGAME/LF-AmazonTitles-131K.json``: k = 10, margin 0.3, aggressive).

    With ``s[i, j] = cos(query[i], label[j])`` (dot products when ``normalize=False``),
    ``s_p = s[i, i]`` the query's sampled positive label, and ``N_i`` the (at most) ``k``
    labels of the batch with the highest ``s[i, j]`` that are not positives of i::

        l_ij = max(0, s[i, j] - s_p + margin)                   j in N_i
        aggressive: l_ij <- l_ij * softmax_{j in N_i}(s[i, j] / tau * 1[l_ij > 0])
        L = sum_{i, j in N_i} l_ij / sum_i |N_i|

    (the official ``loss.mean()`` over the (B, k) matrix). In aggressive mode the softmax runs
    over all k selected labels, with logit 0 for the non-violators, exactly as the official
    ``softmax(sim_n / tau * mask)``; gradients flow through the weights too, as there.

    Where the official code differs, and what we do: it takes the top k over a matrix with
    positives set to -10 and then gathers the *raw* scores, so a row with fewer than k
    non-positive labels would use positives as negatives (and k > B raises); here such rows
    use only their non-positive labels (``|N_i| = min(k, #non-positives)``) and the mean
    divides by the number of pairs used. With at least k non-positives per row the two agree.

    Args:
        query: (B, D) query (document-side, in NGAME's naming) embeddings.
        label: (B, D) embeddings of each query's sampled positive label; row i is positive for
            query i.
        positive_mask: optional (B, B) bool, True where ``label[j]`` is also a positive of
            query i (NGAME masks with the full 0/1 target matrix); the diagonal is always
            positive.
        k: hardest negatives per query, >= 1 (``loss_num_negatives``).
        margin: hinge margin, >= 0 (0.3 siamese stage, 0.2 extreme stage).
        aggressive: weight violators by the softmax above (``loss_agressive``).
        tau: softmax temperature of the aggressive weighting, > 0 (0.1).
        normalize: L2-normalise first (cosine, as the config's ``"metric": "cosine"``).
        reduction: "mean" (over the selected pairs), "sum" or "none".
        chunk_size: query rows per block (``None``: automatic, bounded memory).

    Returns:
        "mean"/"sum": a scalar; "none": (B,) the per-query sum over its selected negatives.
        float16/bfloat16 inputs compute and return float32. A batch where no query has a
        non-positive label gives 0 (connected to the graph).

    Raises:
        TypeError: non-floating inputs, mismatched dtypes, a non-bool mask or flag.
        ValueError: shapes, mismatched devices, k < 1, margin < 0, tau <= 0, a bad reduction
            or chunk_size.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> q, lab = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
        >>> triplet_margin_ohnm(q, lab, k=3).shape
        torch.Size([])
    """
    fn = "triplet_margin_ohnm"
    kk = _checks.check_int(fn, "k", k, min_value=1)
    m = _checks.check_nonnegative(fn, "margin", margin)
    _checks.check_bool(fn, "aggressive", aggressive)
    t = _checks.check_positive(fn, "tau", tau)
    _checks.check_bool(fn, "normalize", normalize)
    _checks.check_reduction(fn, reduction)
    _checks.check_chunk_size(fn, chunk_size)
    _checks.check_embeddings(fn, "query", query)
    _checks.check_embeddings(fn, "label", label)
    _checks.check_same_device(fn, "label", label, "query", query)
    _checks.check_same_dtype(fn, "label", label, "query", query)
    _checks.check_same_shape(fn, "label", label, "query", query)
    b = int(query.shape[0])
    if positive_mask is not None:
        check_mask(fn, "positive_mask", positive_mask, (b, b), query.device)
        non_pos = b - positive_mask.sum(dim=1) - (~positive_mask.diagonal()).long()
        count: torch.Tensor | int = non_pos.clamp_max(kk).sum()
    else:
        count = b * min(kk, b - 1)
    dtype = compute_dtype(query)
    q, lab = query.to(dtype), label.to(dtype)
    if normalize:
        q, lab = F.normalize(q, dim=1), F.normalize(lab, dim=1)
    mask = positive_mask if positive_mask is not None else q.new_zeros((b, 0), dtype=torch.bool)
    block = partial(_ohnm_block, k=min(kk, b), margin=m, aggressive=aggressive, tau=t)
    per_query = map_rows(block, b, b, q, lab, mask, chunk_size=chunk_size)
    if reduction == "mean":
        if isinstance(count, int):
            return per_query.sum() / max(count, 1)
        return per_query.sum() / count.clamp_min(1).to(dtype)
    return reduce_loss(per_query, reduction)


class TripletMarginOHNMLoss(nn.Module):
    """Module form of :func:`triplet_margin_ohnm` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> TripletMarginOHNMLoss(k=3)(torch.randn(6, 8), torch.randn(6, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        k: int = 10,
        margin: float = 0.3,
        aggressive: bool = True,
        tau: float = 0.1,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        fn = "TripletMarginOHNMLoss"
        self.k = _checks.check_int(fn, "k", k, min_value=1)
        self.margin = _checks.check_nonnegative(fn, "margin", margin)
        self.aggressive = _checks.check_bool(fn, "aggressive", aggressive)
        self.tau = _checks.check_positive(fn, "tau", tau)
        self.normalize = _checks.check_bool(fn, "normalize", normalize)
        self.reduction: Reduction = _checks.check_reduction(fn, reduction)
        self.chunk_size = _checks.check_chunk_size(fn, chunk_size)

    def forward(
        self,
        query: torch.Tensor,
        label: torch.Tensor,
        positive_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of queries (B, D) against their sampled positive labels (B, D)."""
        return triplet_margin_ohnm(
            query,
            label,
            positive_mask=positive_mask,
            k=self.k,
            margin=self.margin,
            aggressive=self.aggressive,
            tau=self.tau,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"k={self.k}, margin={self.margin}, aggressive={self.aggressive}, tau={self.tau}, "
            f"normalize={self.normalize}, reduction={self.reduction!r}, "
            f"chunk_size={self.chunk_size}"
        )
