"""``posneg mine`` as a function: files in, hard negatives mined, a training file out.

:func:`mine_files` reads the inputs named by a :class:`~posneg.mining.config.MineConfig`
(:mod:`posneg.mining.files`), and :func:`mine_data` does the rest on data already read: every
query and document is embedded with the encoder (L2-normalised, inner product), the corpus in
shards cached on disk so that a killed run resumes where it stopped
(:func:`posneg.mining.encode.encode`); :func:`posneg.mining.mine.mine` draws ``num_negatives``
negatives per query from the rank window, excluding every positive, the query's own document (a
corpus text equal to the query text), exact-duplicate texts of a positive and the candidates the
false-negative filters reject; the rows are written atomically in the chosen format
(:func:`posneg.mining.files.write_rows`).

Beside the output, ``<out>.summary.json`` records the configuration, the counts, how many
candidates each filter removed and the timings. The embedding shards live in ``cache_dir``; by
default ``<out>.cache/`` next to the output, which is deleted after a successful run (it only
serves resuming). An explicit ``cache_dir`` is kept, so later runs with other filters or windows
reuse the embeddings. A failed run leaves no output file.

Python use::

    from posneg.mining.config import MineConfig
    from posneg.mining.encode import load_encoder
    from posneg.mining.pipeline import mine_files

    config = MineConfig(queries="q.jsonl", corpus="c.jsonl", out="hard.jsonl",
                        num_negatives=5, margin=0.05)
    summary = mine_files(config, encoder=load_encoder())
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from posneg._io import InputError, atomic_write_text
from posneg._progress import ProgressCallback, check_progress
from posneg.mining.config import MineConfig, check_window, resolve_device
from posneg.mining.encode import TextEncoder, encode
from posneg.mining.files import (
    MiningData,
    check_out,
    output_rows,
    read_input,
    sibling,
    write_rows,
)
from posneg.mining.index import ExactIndex, FaissIndex, Index
from posneg.mining.mine import MinedNegatives, duplicate_groups, mine

__all__ = ["MineSummary", "make_index", "mine_data", "mine_files"]


@dataclass(frozen=True)
class MineSummary:
    """What a ``posneg mine`` run did (also written as ``<out>.summary.json``).

    Attributes:
        out: the output file.
        summary: the summary file.
        format: triplets, nway or full.
        queries: number of queries.
        corpus: number of corpus documents.
        rows: rows written.
        removed: candidates removed per filter (from :class:`MinedNegatives`).
        too_few_negatives: queries that got fewer valid negatives than ``num_negatives``.
        no_negatives: queries that got none at all.
        skipped_queries: queries left out of the output (``nway``: too few negatives).
        config: the resolved options.
        seconds: wall time per stage (encode_corpus, encode_queries, mine, write, total).
    """

    out: Path
    summary: Path
    format: str
    queries: int
    corpus: int
    rows: int
    removed: dict[str, int]
    too_few_negatives: int
    no_negatives: int
    skipped_queries: int
    config: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def table_rows(self) -> list[tuple[str, str]]:
        """(item, count) rows for the terminal table."""
        rows = [(f"removed by filter: {k}", f"{v:,}") for k, v in self.removed.items()]
        rows += [
            ("queries", f"{self.queries:,}"),
            ("corpus documents", f"{self.corpus:,}"),
            ("queries with too few negatives", f"{self.too_few_negatives:,}"),
            ("queries with no negative", f"{self.no_negatives:,}"),
            ("queries skipped in output", f"{self.skipped_queries:,}"),
            (f"rows written ({self.format})", f"{self.rows:,}"),
        ]
        return rows

    def write(self) -> Path:
        """Write the summary as JSON to :attr:`summary`, atomically; return its path."""
        payload = asdict(self)
        payload["out"], payload["summary"] = str(self.out), str(self.summary)
        return atomic_write_text(self.summary, json.dumps(payload, indent=2) + "\n")


def make_index(index: str, device: torch.device) -> Index:
    """An empty inner-product index of the kind ``--index`` names.

    Raises:
        InputError: naming ``--index``: faiss is not installed.
    """
    if index == "exact":
        return ExactIndex(metric="ip", device=device)
    try:
        return FaissIndex(kind="flat" if index == "faiss-flat" else "ivf", metric="ip")
    except ImportError as exc:
        raise InputError(f"--index {index}: {exc}") from None


def _embed(
    data: MiningData,
    encoder: TextEncoder,
    config: MineConfig,
    cache: Path,
    progress: bool | ProgressCallback,
    seconds: dict[str, float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corpus and query embeddings, through the shard cache; times go into ``seconds``."""
    embeddings = []
    for stage, texts, desc in (
        ("encode_corpus", data.corpus_texts, "encoding corpus"),
        ("encode_queries", data.query_texts, "encoding queries"),
    ):
        t = time.perf_counter()
        embeddings.append(
            encode(
                list(texts),
                encoder,
                cache_dir=cache,
                shard_size=config.shard_size,
                progress=progress,
                desc=desc,
            )
        )
        seconds[stage] = time.perf_counter() - t
    return embeddings[0], embeddings[1]


def _mine(
    data: MiningData,
    corpus_emb: torch.Tensor,
    query_emb: torch.Tensor,
    config: MineConfig,
    range_max: int,
    progress: bool | ProgressCallback,
) -> MinedNegatives:
    """Run the miner with the configuration's window, filters, sampling and index."""
    return mine(
        query_emb,
        corpus_emb,
        [list(p) for p in data.positives],
        num_negatives=config.num_negatives,
        range_min=config.range_min,
        range_max=range_max,
        max_score=config.max_score,
        margin=config.margin,
        relative_margin=config.relative_margin,
        own_document=data.own_documents(),
        duplicate_of=duplicate_groups(list(data.corpus_texts)),
        sampling=config.sampling,
        temperature=config.temperature,
        index=make_index(config.index, resolve_device(config.device)),
        generator=torch.Generator().manual_seed(config.seed),
        progress=progress,
    )


def _resolved(
    config: MineConfig, range_max: int, encoder: TextEncoder, cache: Path
) -> dict[str, Any]:
    """The options as recorded in the summary (``range_max`` and the device resolved)."""
    return {
        "format": config.output_format,
        "num_negatives": config.num_negatives,
        "range_min": config.range_min,
        "range_max": range_max,
        "max_score": config.max_score,
        "margin": config.margin,
        "relative_margin": config.relative_margin,
        "sampling": config.sampling,
        "temperature": config.temperature,
        "seed": config.seed,
        "index": config.index,
        "device": str(resolve_device(config.device)),
        "encoder": getattr(encoder, "name", None),
        "shard_size": config.shard_size,
        "cache_dir": str(cache),
        "cache_kept": config.cache_dir is not None,
    }


def mine_data(
    data: MiningData,
    config: MineConfig,
    *,
    encoder: TextEncoder,
    progress: bool | ProgressCallback = False,
    record: Mapping[str, Any] | None = None,
) -> MineSummary:
    """Embed, mine and write: the work behind ``posneg mine`` on data already read.

    Args:
        data: queries, corpus and positives (:func:`posneg.mining.files.read_input`).
        config: the options; its input fields are not read here.
        encoder: a :class:`~posneg.mining.encode.TextEncoder` (``load_encoder(...)``; a plain
            callable wrapped by ``load_encoder(fn, name=...)`` works too).
        progress: ``True`` for tqdm bars (when installed), or a ``(desc, done, total)``
            callback, called while encoding the corpus, the queries and while mining.
        record: more entries for the summary's configuration record (the command adds the model
            and the input files).

    Returns:
        The run's :class:`MineSummary` (also written to ``<out>.summary.json``).

    Raises:
        InputError: naming the flag: the output is a folder, or the window does not fit inside
            the corpus.
        TypeError: ``config`` is not a :class:`MineConfig`, or ``progress`` is neither a bool
            nor a callable.
    """
    start = time.perf_counter()
    if not isinstance(config, MineConfig):
        raise TypeError(f"mine_data: config must be a MineConfig; got {type(config).__name__}")
    check_progress("mine_data", progress)
    out = config.out_path
    check_out(out)
    range_max = check_window(
        len(data.corpus_texts),
        num_negatives=config.num_negatives,
        range_min=config.range_min,
        range_max=config.range_max,
    )
    cache = sibling(out, ".cache") if config.cache_dir is None else Path(config.cache_dir)
    seconds: dict[str, float] = {}
    corpus_emb, query_emb = _embed(data, encoder, config, cache, progress, seconds)

    t = time.perf_counter()
    mined = _mine(data, corpus_emb, query_emb, config, range_max, progress)
    seconds["mine"] = time.perf_counter() - t

    valid = (mined.ids >= 0).sum(dim=1)
    too_few = int((valid < config.num_negatives).sum())
    t = time.perf_counter()
    rows = output_rows(data, mined, config.output_format, config.num_negatives)
    n_rows = write_rows(out, rows, config.output_format, config.num_negatives)
    seconds["write"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - start

    summary = MineSummary(
        out=out,
        summary=sibling(out, ".summary.json"),
        format=config.output_format,
        queries=len(data.query_texts),
        corpus=len(data.corpus_texts),
        rows=n_rows,
        removed={k: int(v) for k, v in mined.removed.items() if k != "rescore"},
        too_few_negatives=too_few,
        no_negatives=int((valid == 0).sum()),
        skipped_queries=too_few if config.output_format == "nway" else 0,
        config={**_resolved(config, range_max, encoder, cache), **(record or {})},
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )
    summary.write()
    if config.cache_dir is None:
        shutil.rmtree(cache, ignore_errors=True)
    return summary


def mine_files(
    config: MineConfig, *, encoder: TextEncoder, progress: bool | ProgressCallback = False
) -> MineSummary:
    """Mine hard negatives from files and write a training file: ``posneg mine`` as a function.

    Args:
        config: inputs (``queries`` with ``corpus``, or ``pairs``), output and options.
        encoder: a :class:`~posneg.mining.encode.TextEncoder` (``load_encoder(...)``; a plain
            callable wrapped by ``load_encoder(fn, name=...)`` works too).
        progress: ``True`` for tqdm bars (when installed), or a ``(desc, done, total)`` callback.

    Returns:
        The run's :class:`MineSummary` (also written to ``<out>.summary.json``).

    Raises:
        InputError: every input or option problem, in one line naming the flag or file.
        TypeError: ``config`` is not a :class:`MineConfig`, or a bad ``progress``.

    Example:
        >>> import json, tempfile, pathlib, torch
        >>> from posneg.mining.encode import load_encoder
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> docs = ["sort a list", "read a file", "parse json", "join paths"]
        >>> _ = (tmp / "c.jsonl").write_text(
        ...     "".join(json.dumps({"id": i, "text": t}) + "\\n" for i, t in enumerate(docs)))
        >>> _ = (tmp / "q.jsonl").write_text(
        ...     json.dumps({"id": "q", "text": "sorting lists", "positives": [0]}) + "\\n")
        >>> def toy(texts):  # letter counts as a 26-D embedding
        ...     return torch.tensor([[t.count(c) for c in "abcdefghijklmnopqrstuvwxyz"]
        ...                          for t in texts]).float()
        >>> config = MineConfig(queries=tmp / "q.jsonl", corpus=tmp / "c.jsonl",
        ...                     out=tmp / "hard.jsonl", num_negatives=2)
        >>> mine_files(config, encoder=load_encoder(toy, name="letters")).rows
        2
    """
    if not isinstance(config, MineConfig):
        raise TypeError(f"mine_files: config must be a MineConfig; got {type(config).__name__}")
    check_progress("mine_files", progress)
    check_out(config.out_path)
    data = read_input(
        queries=config.queries,
        corpus=config.corpus,
        pairs=config.pairs,
        anchor_column=config.anchor_column,
        positive_column=config.positive_column,
    )
    return mine_data(data, config, encoder=encoder, progress=progress)
