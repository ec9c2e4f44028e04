"""`posneg mine`: the typer command. It parses flags into a :class:`MineConfig`; the work is in
:mod:`posneg.mining` (files in :mod:`posneg.mining.files`, the run in
:mod:`posneg.mining.pipeline`).

Input files are read and checked, and the window checked against the corpus, before the (slow)
model load, so every user mistake surfaces at once as one line (``posneg.cli.main``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from posneg._io import InputError
from posneg.bench._terminal import console, progress_callback, rich_table
from posneg.distributed import rank
from posneg.mining.config import (
    IndexName,
    MineConfig,
    OutputFormatArg,
    SamplingArg,
    check_window,
    resolve_device,
)
from posneg.mining.encode import DEFAULT_MODEL, TextEncoder
from posneg.mining.files import read_input
from posneg.mining.pipeline import check_paths, init_distributed, mine_data

__all__ = ["ENCODER_FACTORY", "mine_cmd"]


def _load_encoder(
    model: str, *, device: str, batch_size: int, max_seq_length: int | None, quiet: bool
) -> TextEncoder:
    from posneg.mining.encode import load_encoder

    if quiet:  # transformers' own "Loading weights" bar
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - sentence-transformers brings transformers
            pass
    return load_encoder(
        model, device=resolve_device(device), batch_size=batch_size, max_seq_length=max_seq_length
    )


#: How the command builds its encoder (tests replace it with a fake).
ENCODER_FACTORY: Callable[..., TextEncoder] = _load_encoder


def mine_cmd(
    queries: Annotated[
        Path | None,
        typer.Option(help="Queries, .jsonl or .parquet: fields id, text, positives (corpus ids)."),
    ] = None,
    corpus: Annotated[
        Path | None, typer.Option(help="Corpus, .jsonl or .parquet: fields id, text.")
    ] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(
            help="Instead of --queries/--corpus: (anchor, positive) pairs; corpus = positives."
        ),
    ] = None,
    anchor_column: Annotated[str, typer.Option(help="Anchor column of --pairs.")] = "anchor",
    positive_column: Annotated[str, typer.Option(help="Positive column of --pairs.")] = "positive",
    out: Annotated[
        Path | None,
        typer.Option(help="Output file: JSON Lines, or Parquet if it ends in .parquet."),
    ] = None,
    output_format: Annotated[
        OutputFormatArg,
        typer.Option(
            "--format",
            help="triplets, nway (anchor, positive, negative_1..k) or full; "
            "sentence-transformers' triplet and n-tuple are the same as triplets and nway.",
        ),
    ] = "triplets",
    model: Annotated[
        str, typer.Option(help="sentence-transformers model name or path (default: packaged).")
    ] = DEFAULT_MODEL,
    num_negatives: Annotated[int, typer.Option(help="Negatives per query.")] = 5,
    range_min: Annotated[
        int, typer.Option(help="First rank of the window (0-based, inclusive).")
    ] = 0,
    range_max: Annotated[
        int | None,
        typer.Option(help="Last rank of the window (inclusive). Default: min(100, corpus - 1)."),
    ] = None,
    max_score: Annotated[
        float | None, typer.Option(help="Drop candidates scoring above this (cosine).")
    ] = None,
    margin: Annotated[
        float | None, typer.Option(help="Drop candidates scoring above positive score - margin.")
    ] = None,
    absolute_margin: Annotated[
        float | None,
        typer.Option(help="sentence-transformers' name of --margin (give one, or both equal)."),
    ] = None,
    relative_margin: Annotated[
        float | None,
        typer.Option(help="Drop candidates scoring above positive score * (1 - relative margin)."),
    ] = None,
    sampling: Annotated[
        SamplingArg,
        typer.Option(
            help="top, uniform or softmax (score-weighted) within the window; "
            "sentence-transformers' random is uniform."
        ),
    ] = "top",
    temperature: Annotated[float, typer.Option(help="Softmax sampling temperature.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    index: Annotated[
        IndexName,
        typer.Option(
            help="exact, faiss-flat, faiss-ivf, or sharded: exact, the corpus split over the "
            "ranks of torchrun (each rank encodes and searches its shard; rank 0 writes). "
            "In one process sharded is exact."
        ),
    ] = "exact",
    batch_size: Annotated[int, typer.Option(min=1, help="Encoding batch size.")] = 64,
    max_seq_length: Annotated[
        int | None,
        typer.Option(min=1, help="Truncate texts to this many tokens (default: the model's)."),
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")
    ] = "auto",
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Embedding shards (kept). Default: <out>.cache, removed on success."),
    ] = None,
    shard_size: Annotated[int, typer.Option(help="Texts per cached embedding shard.")] = 2048,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no table.")] = False,
) -> None:
    """Mine hard negatives for retrieval training files (triplets, n-way or full)."""
    if out is None:
        raise InputError("--out: give the output file (.jsonl or .parquet)")
    config = MineConfig(
        out=out,
        queries=queries,
        corpus=corpus,
        pairs=pairs,
        anchor_column=anchor_column,
        positive_column=positive_column,
        output_format=output_format,
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        margin=margin,
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        sampling=sampling,
        temperature=temperature,
        seed=seed,
        index=index,
        device=device,
        cache_dir=cache_dir,
        shard_size=shard_size,
    )
    init_distributed(config)  # --index sharded under torchrun: before the encoder's device is set
    quiet = quiet or rank() != 0  # one terminal: only rank 0 shows progress and the summary
    check_paths(config)  # nothing existing may be harmed: inputs, folders, a foreign cache
    # read and validate everything before the (slow) model load
    data = read_input(
        queries=queries,
        corpus=corpus,
        pairs=pairs,
        anchor_column=anchor_column,
        positive_column=positive_column,
    )
    check_window(
        len(data.corpus_texts),
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
    )
    encoder = ENCODER_FACTORY(
        model, device=device, batch_size=batch_size, max_seq_length=max_seq_length, quiet=quiet
    )
    record = {
        "model": model,
        "batch_size": batch_size,
        "max_seq_length": max_seq_length,
        **config.inputs(),
    }
    with progress_callback(disable=quiet) as progress:
        summary = mine_data(data, config, encoder=encoder, progress=progress, record=record)
    if not quiet:
        console.print(rich_table("posneg mine: summary", ["item", "count"], summary.table_rows()))
        console.print(
            f"wrote {summary.rows:,} rows to [bold]{summary.out}[/bold] "
            f"in {summary.seconds['total']:.1f} s; summary: {summary.summary}"
        )
