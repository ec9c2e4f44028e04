"""The pipeline of ``posneg mine`` in one process (:mod:`posneg.mining.pipeline`).

``--index sharded`` without torchrun equals ``--index exact`` byte for byte, and every distinct
text is encoded once (a query that is a corpus document reuses the document's row). The
multi-rank runs are in test_mine_sharded_cli.py, which shares this file's data. The encoder is
the fake trigram encoder of test_mine_cli.py: per-text deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_mine_cli import FakeEncoder, _doc, _encoder, _write_jsonl

from posneg.mining import pipeline
from posneg.mining.config import MineConfig
from posneg.mining.encode import encode

N_DOCS = 45


def make_files(tmp: Path) -> tuple[Path, Path]:
    """A corpus with one duplicate text, and queries of three kinds: new texts, texts that are
    corpus documents (the own-document case), and a repeated query text."""
    corpus = [{"id": f"d{i}", "text": _doc(i)} for i in range(N_DOCS)]
    corpus.append({"id": "dup", "text": _doc(1)})
    queries = [
        {"id": f"q{i}", "text": _doc(2 * i + 1)[:-2], "positives": [f"d{2 * i + 1}"]}
        for i in range(12)
    ]
    queries += [  # queries that are documents themselves (their positive is another document)
        {"id": "same4", "text": _doc(4), "positives": ["d5"]},
        {"id": "same30", "text": _doc(30), "positives": ["d31", "d32"]},
        {"id": "same1", "text": _doc(1), "positives": ["d2"]},  # a duplicated document
        {"id": "again", "text": _doc(3)[:-2], "positives": ["d9"]},  # repeats q1's text
    ]
    return _write_jsonl(tmp / "q.jsonl", queries), _write_jsonl(tmp / "c.jsonl", corpus)


def distinct_texts(files: tuple[Path, Path]) -> tuple[list[str], list[str]]:
    """(corpus texts, query texts that must still be encoded: distinct, not in the corpus)."""
    read = [[json.loads(line)["text"] for line in p.read_text().splitlines()] for p in files]
    queries, corpus = read
    return corpus, list(dict.fromkeys(t for t in queries if t not in set(corpus)))


def config(files: tuple[Path, Path], out: Path, **kw: Any) -> MineConfig:
    kw.setdefault("num_negatives", 3)
    return MineConfig(queries=files[0], corpus=files[1], out=out, shard_size=7, **kw)


# ---------------------------------------------------------------------------------------------
# one process: sharded is exact; each distinct text is encoded once
# ---------------------------------------------------------------------------------------------


def test_one_process_sharded_equals_exact(tmp_path: Path) -> None:
    files = make_files(tmp_path)
    for fmt in ("full", "nway"):
        outs = {}
        for index in ("exact", "sharded"):
            out = tmp_path / f"{index}-{fmt}.jsonl"
            summary = pipeline.mine_files(
                config(files, out, index=index, output_format=fmt, sampling="softmax"),
                encoder=_encoder(FakeEncoder()),
            )
            assert summary.config["index"] == index
            outs[index] = out.read_bytes()
        assert outs["sharded"] == outs["exact"]
    assert summary.config["ranks"] == 1


def _encode_every_query(
    data: Any, encoder: Any, config: MineConfig, cache: Path, progress: Any, seconds: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """The embedding step before queries reused corpus rows: two independent ``encode`` calls."""
    corpus = encode(list(data.corpus_texts), encoder, cache_dir=cache, shard_size=7)
    return corpus, encode(list(data.query_texts), encoder, cache_dir=cache, shard_size=7)


def test_queries_that_are_documents_are_encoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_files(tmp_path)
    corpus, fresh = distinct_texts(files)
    new = FakeEncoder()
    pipeline.mine_files(config(files, tmp_path / "new.jsonl", output_format="full"),
                        encoder=_encoder(new))  # fmt: skip
    with monkeypatch.context() as m:
        m.setattr(pipeline, "_embed", _encode_every_query)
        old = FakeEncoder()
        pipeline.mine_files(config(files, tmp_path / "old.jsonl", output_format="full"),
                            encoder=_encoder(old))  # fmt: skip
    assert (tmp_path / "new.jsonl").read_bytes() == (tmp_path / "old.jsonl").read_bytes()
    n_queries = len((tmp_path / "q.jsonl").read_text().splitlines())
    assert len(old.seen) == len(corpus) + n_queries
    assert sorted(new.seen) == sorted(corpus + fresh)  # 4 query texts fewer
    assert len(new.seen) == len(old.seen) - 4
