"""posneg.data.retrieval: a code-search split embedded into a RetrievalTask."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from posneg.data.code_search import CodeSearchData, CodeSearchPair
from posneg.data.retrieval import RetrievalTask, load_task, split_sizes
from posneg.mining.encode import load_encoder


def _data(n_train: int = 6, n_test: int = 3) -> CodeSearchData:
    pairs = []
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        pairs.append(
            CodeSearchPair(
                id=f"m{i % 3}.f{i}",
                query=f"query {i}",
                code=f"def f{i}(): return {i}",
                module=f"m{i % 3}",
                split=split,
            )
        )
    return CodeSearchData(pairs=tuple(pairs))


def _embed(texts: list[str]) -> torch.Tensor:
    return torch.tensor([[float(len(t)), float(sum(map(ord, t)) % 7), 1.0] for t in texts])


def test_load_task_embeds_both_splits_row_aligned(tmp_path: Path) -> None:
    data = _data()
    encoder = load_encoder(_embed, name="len-encoder")
    seen: list[str] = []
    task = load_task(
        data, encoder, cache_dir=tmp_path, progress=lambda desc, done, total: seen.append(desc)
    )
    assert isinstance(task, RetrievalTask)
    assert (task.n_train, task.n_test, task.dim) == (6, 3, 3)
    assert task.train_queries == tuple(data.queries("train"))
    assert task.test_docs == tuple(data.corpus("test"))
    assert torch.allclose(task.train_q, encoder(list(task.train_queries)))
    assert {"train queries", "train docs", "test queries", "test docs"} <= set(seen)
    assert split_sizes(data) == {"train": 6, "test": 3}


def test_a_split_with_fewer_than_two_pairs_is_refused() -> None:
    encoder = load_encoder(_embed, name="len-encoder")
    with pytest.raises(ValueError, match="load_task: the test split has 1 pairs"):
        load_task(_data(n_test=1), encoder, cache_dir=None)
