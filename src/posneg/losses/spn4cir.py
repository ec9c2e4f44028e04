"""SPN4CIR: scaling positives and negatives for composed image retrieval.

Negatives: stage-2 fine-tuning freezes the image encoder, precomputes a static feature bank of
**every** training target and scores each composed query against the whole bank
(:func:`bank_infonce`), or against ``neg_num`` random bank negatives. Positives: synthetic
triplets (reference i, modification text, target j) where j is drawn from a window of i's
image-image similarity ranking (:func:`sample_window_targets`) and the text fills a template
with the two images' captions (:func:`modification_texts`).

The composed query ``q = normalize(R[r] + g(m))`` (CLIP4CIR's element-wise sum of the
unnormalised reference feature and the text feature) is the caller's; the losses take ``q``.

Transcribed from BUAADreamer/SPN4CIR at commit 2a413f7a9c6d0c69387e8fbf9726b58a4b2724a4:
``clip4cir/models.py`` (``bank_large_step``, ``infonce_loss``, ``part_infonce_loss``,
``get_neg_id``) and ``zscir/get_cir_data.py`` (``get_captions``, ``get_diff_id``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype, map_rows, reduce_loss
from posneg._types import Reduction

__all__ = [
    "TEMPLATES",
    "BankInfoNCELoss",
    "bank_infonce",
    "modification_texts",
    "sample_window_targets",
]

CITATION = """
@inproceedings{feng2024spn4cir,
  title     = {Improving Composed Image Retrieval via Contrastive Learning with Scaling
               Positives and Negatives},
  author    = {Feng, Zhangchi and Zhang, Richong and Nie, Zhijie},
  booktitle = {Proceedings of the 32nd ACM International Conference on Multimedia},
  year      = {2024},
  note      = {arXiv:2404.11317}
}
"""

#: The official templates (``get_captions``): p0, p1, p2 with ``{c_i}`` the reference's caption
#: and ``{c_j}`` the target's.
TEMPLATES: tuple[str, ...] = ("{c_j} instead of {c_i}", "Unlike {c_i}, I want {c_j}", "{c_j}")


def _bank_block(
    start: int,
    stop: int,
    query: torch.Tensor,
    bank: torch.Tensor,
    target: torch.Tensor,
    *,
    temperature: float,
) -> torch.Tensor:
    """Rows ``start:stop``: ``logsumexp(q B^T / t) - q b_target / t``."""
    q = query[start:stop]
    logits = q @ bank.T / temperature
    pos = (q * bank[target[start:stop]]).sum(1) / temperature
    return torch.logsumexp(logits, dim=1) - pos


def _draw_negatives(
    target: torch.Tensor, n_bank: int, k: int, generator: torch.Generator | None
) -> torch.Tensor:
    """(B, k) distinct bank indices != target per row, uniform (``random.sample``'s law)."""
    rows = []
    for t in target.tolist():
        pick = torch.randperm(n_bank - 1, generator=generator, device=target.device)[:k]
        rows.append(pick + (pick >= t).to(pick.dtype))  # skip the positive
    return torch.stack(rows)


def _check_loss_hparams(
    fn: str, temperature: float, num_negatives: int | None, reduction: str, chunk_size: int | None
) -> tuple[float, int | None, Reduction, int | None]:
    t = _checks.check_positive(fn, "temperature", temperature)
    n = (
        None
        if num_negatives is None
        else _checks.check_int(fn, "num_negatives", num_negatives, min_value=1)
    )
    return t, n, _checks.check_reduction(fn, reduction), _checks.check_chunk_size(fn, chunk_size)


def bank_infonce(
    query: torch.Tensor,
    bank: torch.Tensor,
    target_index: torch.Tensor,
    *,
    temperature: float = 0.02,
    num_negatives: int | None = None,
    generator: torch.Generator | None = None,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """InfoNCE of composed queries against a whole frozen target bank (SPN4CIR stage 2).

    Feng, Zhang, Nie. *Improving Composed Image Retrieval via Contrastive Learning with Scaling
    Positives and Negatives.* ACM MM 2024, arXiv 2404.11317.

    With queries ``q`` (B, D), bank ``T`` (N, D) and targets ``y``::

        L_i = -q_i.T_{y_i} / t + log sum_{n=0}^{N-1} exp(q_i.T_n / t)          (full bank)
        L_i = -q_i.T_{y_i} / t + log [exp(q_i.T_{y_i} / t) + sum_{n in S_i} exp(q_i.T_n / t)]

    the second when ``num_negatives`` is set (``--neg_num``, ``part_infonce_loss``): ``S_i`` is
    ``num_negatives`` distinct bank rows other than ``y_i``, uniform without replacement (drawn
    with ``generator``). Inputs are used as given: the official code L2-normalises the query and
    the bank before the call. The bank is normally precomputed and detached (frozen image
    encoder); gradients flow to it if it requires them. The full-bank form is tiled over query
    rows (:func:`posneg._tiling.map_rows`): no (B, N) matrix beyond one block.

    Args:
        query: (B, D) composed query features.
        bank: (N, D) target features (N >= 2).
        target_index: (B,) int64 row of each query's target in ``bank``.
        temperature: t > 0 (0.02 for CLIP4CIR).
        num_negatives: ``None`` (whole bank) or 1 <= n <= N - 1 random negatives per query.
        generator: draws the random negatives (only with ``num_negatives``).
        reduction: "mean" | "sum" | "none".
        chunk_size: query rows per block (``None``: automatic).

    Returns:
        A scalar, or (B,) per query with ``reduction="none"``; float32 for half inputs.

    Raises:
        TypeError: non-tensor / non-floating features, non-integer targets, mismatched dtypes.
        ValueError: wrong shapes, targets out of range, bad temperature, ``num_negatives``
            > N - 1, bad reduction or chunk_size.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> q, bank = F.normalize(torch.randn(4, 8), dim=1), F.normalize(torch.randn(50, 8), dim=1)
        >>> bank_infonce(q, bank, torch.tensor([0, 7, 9, 49])).shape
        torch.Size([])
    """
    fn = "bank_infonce"
    t, n_neg, red, chunk = _check_loss_hparams(
        fn, temperature, num_negatives, reduction, chunk_size
    )
    _checks.check_embeddings(fn, "query", query)
    _checks.check_embeddings(fn, "bank", bank, min_rows=2)
    _checks.check_same_dim(fn, "bank", bank, "query", query)
    _checks.check_same_device(fn, "bank", bank, "query", query)
    _checks.check_same_dtype(fn, "bank", bank, "query", query)
    target = _checks.check_labels(fn, "target_index", target_index, query.shape[0], query.device)
    n_bank = bank.shape[0]
    if bool(((target < 0) | (target >= n_bank)).any()):
        raise ValueError(f"{fn}: target_index must lie in [0, {n_bank}) (rows of bank)")
    _checks.check_generator(fn, generator, query.device)
    dt = compute_dtype(query)
    q, b = query.to(dt), bank.to(dt)
    if n_neg is None:
        block = partial(_bank_block, temperature=t)
        per_row = map_rows(block, q.shape[0], n_bank, q, b, target, chunk_size=chunk)
        return reduce_loss(per_row, red)
    if n_neg > n_bank - 1:
        raise ValueError(
            f"{fn}: num_negatives must be <= N - 1 = {n_bank - 1} (bank rows other than the "
            f"target); got {n_neg}"
        )
    negs = _draw_negatives(target, n_bank, n_neg, generator)
    pos = (q * b[target]).sum(1) / t
    neg = torch.einsum("bd,bkd->bk", q, b[negs]) / t
    per_row = torch.logsumexp(torch.cat([pos[:, None], neg], 1), dim=1) - pos
    return reduce_loss(per_row, red)


class BankInfoNCELoss(nn.Module):
    """Module form of :func:`bank_infonce` (stateless; the bank is passed to ``forward``).

    Example:
        >>> import torch
        >>> BankInfoNCELoss(temperature=0.05)(torch.randn(2, 4), torch.randn(9, 4),
        ...                                   torch.tensor([1, 8])).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.02,
        num_negatives: int | None = None,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        t, n, red, chunk = _check_loss_hparams(
            "BankInfoNCELoss", temperature, num_negatives, reduction, chunk_size
        )
        self.temperature, self.num_negatives, self.chunk_size = t, n, chunk
        self.reduction: Reduction = red

    def forward(
        self,
        query: torch.Tensor,
        bank: torch.Tensor,
        target_index: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Loss of queries (B, D) against ``bank`` (N, D) with targets (B,)."""
        return bank_infonce(
            query,
            bank,
            target_index,
            temperature=self.temperature,
            num_negatives=self.num_negatives,
            generator=generator,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, num_negatives={self.num_negatives}, "
            f"reduction={self.reduction!r}, chunk_size={self.chunk_size}"
        )


def sample_window_targets(
    similarity_or_ranks: torch.Tensor,
    *,
    rank_min: int,
    rank_max: int | None = None,
    k: int = 1,
    exclude_self: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Synthetic targets for SPN4CIR: k distinct items from a window of each row's ranking.

    ``get_diff_id`` in ``zscir/get_cir_data.py``: row i's candidates are
    ``ranks[i][rank_min:rank_max]`` where ``ranks = argsort(similarity, descending)`` (the
    official runs use [10000, 20000) for FashionIQ, [10000, 15000) for CIRR, so the targets are
    mid-similarity images, never near-duplicates); ``k`` of them are drawn uniformly without
    replacement (``random.sample``). ``rank_min=0, rank_max=None`` is the code's no-window
    branch (uniform over all j != i).

    Deliberate difference: the code relies on i sitting at rank 0 of its own ranking (so a
    window starting at 1 excludes it); here ``exclude_self`` removes i from row i's window
    explicitly (same result when i ranks first; also right under ties). ``rank_max <= rank_min``
    (the code's "to the end") is written ``rank_max=None``.

    Args:
        similarity_or_ranks: (R, N) floating similarities (ranked here, descending, stable) or
            integer rankings (each row a permutation of item ids, best first).
        rank_min: first rank of the window (>= 0).
        rank_max: one past the last rank, or ``None`` for the end.
        k: targets per row (1 in the paper).
        exclude_self: drop item i from row i's window.
        generator: draws the targets.

    Returns:
        (R, k) int64 item ids.

    Raises:
        TypeError: a non-tensor, a bool tensor, non-int ranks, a non-bool flag.
        ValueError: not 2-D, a bad window, or a row with fewer than k candidates.

    Example:
        >>> import torch
        >>> sim = torch.randn(6, 6)
        >>> sample_window_targets(sim, rank_min=1, rank_max=4, k=2).shape
        torch.Size([6, 2])
    """
    fn = "sample_window_targets"
    x = _checks.check_tensor(fn, "similarity_or_ranks", similarity_or_ranks)
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{fn}: similarity_or_ranks must be floating or integer; got {x.dtype}")
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{fn}: similarity_or_ranks must have shape (R, N); got {tuple(x.shape)}")
    lo = _checks.check_int(fn, "rank_min", rank_min, min_value=0)
    if rank_max is not None:
        hi = _checks.check_int(fn, "rank_max", rank_max, min_value=lo + 1)
    kk = _checks.check_int(fn, "k", k, min_value=1)
    _checks.check_bool(fn, "exclude_self", exclude_self)
    _checks.check_generator(fn, generator, x.device)
    ranks = torch.argsort(x, dim=1, descending=True, stable=True) if x.is_floating_point() else x
    window = ranks[:, lo : None if rank_max is None else hi].to(torch.int64)
    keys = torch.rand(window.shape, generator=generator, device=x.device)
    if exclude_self:
        own = torch.arange(x.shape[0], device=x.device)[:, None]
        keys = keys.masked_fill(window == own, -1.0)
    valid = (keys >= 0).sum(1)
    left = int(valid.min())
    if left < kk:
        raise ValueError(
            f"{fn}: the window [{lo}, {rank_max}) leaves {left} candidate(s) in some row; "
            f"k={kk} needed"
        )
    return window.gather(1, keys.topk(kk, dim=1).indices)


def modification_texts(
    c_i: str,
    c_j: str,
    *,
    templates: Sequence[int] = (0, 1),
    fits: Callable[[str], bool] | None = None,
) -> list[str]:
    """The synthetic modification texts of a pair: one per template id (``get_captions``).

    ``TEMPLATES[p].format(c_i=c_i, c_j=c_j)`` for p in ``templates`` (``--p_list``, default
    "0,1"): p0 ``"{c_j} instead of {c_i}"``, p1 ``"Unlike {c_i}, I want {c_j}"``, p2 ``"{c_j}"``.
    The code falls back to ``c_j`` when CLIP's tokenizer rejects the text as too long; here
    ``fits(text) -> bool`` is that check (``None``: every text fits).

    Raises:
        TypeError: non-string captions or a non-callable ``fits``.
        ValueError: a template id outside 0..2.

    Example:
        >>> modification_texts("a red dress", "a blue dress")
        ['a blue dress instead of a red dress', 'Unlike a red dress, I want a blue dress']
    """
    fn = "modification_texts"
    for name, c in (("c_i", c_i), ("c_j", c_j)):
        if not isinstance(c, str):
            raise TypeError(f"{fn}: {name} must be a str; got {type(c).__name__}")
    if fits is not None and not callable(fits):
        raise TypeError(f"{fn}: fits must be a callable (str -> bool) or None")
    out = []
    for p in templates:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < len(TEMPLATES):
            raise ValueError(f"{fn}: templates must hold ids in 0..{len(TEMPLATES) - 1}; got {p!r}")
        text = TEMPLATES[p].format(c_i=c_i, c_j=c_j)
        out.append(text if fits is None or fits(text) else c_j)
    return out
