"""A retrieval task: the texts of a query/document split and their embeddings by one encoder.

:func:`load_task` embeds the train and test splits of a
:class:`~posneg.data.code_search.CodeSearchData` (or anything with ``queries(split)`` and
``corpus(split)``) through :func:`posneg.mining.encode.encode`, with its on-disk cache, into a
:class:`RetrievalTask`: row ``i`` of a split's queries is answered by row ``i`` of that split's
documents (one relevant document per query).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from posneg._progress import ProgressCallback

__all__ = ["RetrievalTask", "load_task"]

#: The fewest pairs a split may hold (a batch needs a negative).
MIN_PAIRS = 2


@dataclass(frozen=True)
class RetrievalTask:
    """Texts and (frozen-encoder) embeddings of the train and test splits.

    Row i of the queries is answered by row i of the documents of the same split (one relevant
    document per query).

    Attributes:
        train_queries, train_docs, test_queries, test_docs: the texts.
        train_q, train_d: (N, D) float32 unit rows, the embeddings of the train texts.
        test_q, test_d: (M, D), the embeddings of the test texts.
    """

    train_queries: tuple[str, ...]
    train_docs: tuple[str, ...]
    test_queries: tuple[str, ...]
    test_docs: tuple[str, ...]
    train_q: torch.Tensor
    train_d: torch.Tensor
    test_q: torch.Tensor
    test_d: torch.Tensor

    @property
    def n_train(self) -> int:
        """N, the train pairs."""
        return len(self.train_queries)

    @property
    def n_test(self) -> int:
        """M, the test pairs."""
        return len(self.test_queries)

    @property
    def dim(self) -> int:
        """D, the embedding width."""
        return int(self.train_q.shape[1])


def split_sizes(data: Any) -> dict[str, int]:
    """``{"train": N, "test": M}``: the query count of each split of ``data``."""
    return {split: len(data.queries(split)) for split in ("train", "test")}


def load_task(
    data: Any,
    encoder: Any,
    *,
    cache_dir: str | Path | None,
    progress: bool | ProgressCallback = False,
) -> RetrievalTask:
    """Embed the train and test splits of ``data`` (a ``CodeSearchData``) with ``encoder``.

    Args:
        data: has ``queries(split)`` and ``corpus(split)`` for ``"train"`` and ``"test"``.
        encoder: a :class:`~posneg.mining.encode.TextEncoder`.
        cache_dir: the embedding cache folder of :func:`~posneg.mining.encode.encode`, or
            ``None`` (no cache).
        progress: passed to :func:`~posneg.mining.encode.encode` for every part.

    Returns:
        The :class:`RetrievalTask`.

    Raises:
        ValueError: a split with fewer than 2 pairs, or the encoder's own errors.
    """
    from posneg.mining.encode import encode

    for split, n in split_sizes(data).items():
        if n < MIN_PAIRS:
            raise ValueError(
                f"load_task: the {split} split has {n} pairs; it needs at least {MIN_PAIRS}"
            )
    texts = {
        "train_queries": tuple(data.queries("train")),
        "train_docs": tuple(data.corpus("train")),
        "test_queries": tuple(data.queries("test")),
        "test_docs": tuple(data.corpus("test")),
    }
    emb = {}
    for name, items in texts.items():
        label = name.replace("_", " ")
        emb[name] = encode(list(items), encoder, cache_dir=cache_dir, progress=progress, desc=label)
    return RetrievalTask(
        **texts,
        train_q=emb["train_queries"],
        train_d=emb["train_docs"],
        test_q=emb["test_queries"],
        test_d=emb["test_docs"],
    )
