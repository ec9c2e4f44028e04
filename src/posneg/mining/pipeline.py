"""``posneg mine`` as a function: files in, hard negatives mined, a training file out.

:func:`mine_files` reads the inputs named by a :class:`~posneg.mining.config.MineConfig`
(:mod:`posneg.mining.files`), and :func:`mine_data` does the rest on data already read: every
distinct text is embedded once with the encoder (L2-normalised, inner product; a query whose
text is a corpus document takes the document's row), in shards cached on disk so that a killed
run resumes where it stopped (:func:`posneg.mining.encode.encode`);
:func:`posneg.mining.mine.mine` draws ``num_negatives`` negatives per query from the rank
window, excluding every positive, the query's own document (a corpus text equal to the query
text), exact-duplicate texts of a positive and the candidates the false-negative filters reject;
the rows are written atomically in the chosen format (:func:`posneg.mining.files.write_rows`).

Beside the output, ``<out>.summary.json`` records the configuration, the counts, how many
candidates each filter removed, the timings and the output's sha256. The embedding shards live
in ``cache_dir``; by default ``<out>.cache/`` next to the output, whose shards are deleted after
a successful run (it only serves resuming); a folder of that name that holds anything posneg did
not write is refused, never deleted. An explicit ``cache_dir`` is kept, so later runs with other
filters or windows reuse the embeddings.

The output and the summary are one commit (:func:`posneg._io.atomic_targets`): both are written
to temporary files, then renamed, the summary last. A failure before or during the renames
leaves the old output and the old summary as they were (or none, if there were none); a process
killed between the two renames leaves the new output beside the old summary, which
:func:`summary_matches` detects (the summary's ``output_sha256`` is the output's hash) and a
rerun repairs. Temporary files of killed runs are deleted by the next run.

With ``index="sharded"`` under ``torchrun`` (:func:`init_distributed` joins the process
group), each rank encodes its part of the texts into ``<cache>/rank<r>``, the parts are gathered,
the search runs on :class:`~posneg.mining.sharded.ShardedIndex` (each rank scores its shard of
the corpus; the top-k are merged exactly) and rank 0 alone writes the output and the summary.

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
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist

from posneg._io import (
    InputError,
    atomic_targets,
    atomic_write_text,
    file_sha256,
    remove_stale_temps,
)
from posneg._progress import ProgressCallback, check_progress
from posneg.distributed import rank, world_size
from posneg.mining.config import MineConfig, check_window, resolve_device
from posneg.mining.encode import _KEY, _SHARD, TextEncoder, discard_cache, encode, is_cache_folder
from posneg.mining.files import (
    MiningData,
    check_out,
    output_rows,
    read_input,
    sibling,
    write_rows_to,
)
from posneg.mining.index import ExactIndex, FaissIndex, Index
from posneg.mining.mine import MinedNegatives, Sampling, duplicate_groups, mine
from posneg.mining.sharded import ShardedIndex, shard_bounds

__all__ = [
    "MineSummary",
    "cache_folder",
    "check_paths",
    "init_distributed",
    "make_index",
    "mine_data",
    "mine_files",
    "summary_matches",
]


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
        output_sha256: the sha256 of the output file's bytes (see :func:`summary_matches`).
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
    output_sha256: str = ""

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

    def to_json(self) -> str:
        """The summary as the JSON text of ``<out>.summary.json``."""
        payload = asdict(self)
        payload["out"], payload["summary"] = str(self.out), str(self.summary)
        return json.dumps(payload, indent=2) + "\n"

    def write(self) -> Path:
        """Write the summary as JSON to :attr:`summary`, atomically; return its path."""
        return atomic_write_text(self.summary, self.to_json())


def summary_matches(out: str | Path) -> bool:
    """Whether ``<out>.summary.json`` describes the file ``out`` now holds (by sha256).

    ``False`` when either file is missing, the summary is unreadable, or the hashes differ (a
    run killed between renaming the output and renaming the summary): rerun the command.
    """
    out = Path(out)
    try:
        saved = json.loads(sibling(out, ".summary.json").read_text(encoding="utf-8"))
        return bool(saved.get("output_sha256")) and saved["output_sha256"] == file_sha256(out)
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def cache_folder(config: MineConfig) -> Path:
    """The embedding cache folder: ``config.cache_dir``, or ``<out>.cache`` by default."""
    if config.cache_dir is not None:
        return Path(config.cache_dir)
    return sibling(config.out_path, ".cache")


def check_paths(config: MineConfig) -> None:
    """Check, before anything is read or loaded, that a run cannot harm existing files.

    The output and its summary must not be a folder or an input file (:func:`check_out`); the
    cache folder must not be the output nor an existing file; the default ``<out>.cache``, if it
    exists, must hold only what posneg writes there (it is deleted after a successful run).

    Raises:
        InputError: naming ``--out`` or ``--cache-dir``.
    """
    out = config.out_path
    check_out(out, inputs=(config.queries, config.corpus, config.pairs))
    cache = cache_folder(config)
    flag = "--out" if config.cache_dir is None else "--cache-dir"
    if cache.resolve() == out.resolve():
        raise InputError(f"--cache-dir: {cache} is the output file; choose another folder")
    if cache.exists() and not cache.is_dir():
        raise InputError(f"{flag}: the cache folder {cache} exists and is not a folder")
    if config.cache_dir is None and cache.is_dir() and not _holds_only_caches(cache):
        raise InputError(
            f"--out: {cache} exists and holds files posneg did not write; posneg mine uses "
            "<out>.cache for its embeddings and deletes them after the run: move that folder "
            "away or give --cache-dir"
        )


#: The cache subfolder of one rank in a sharded run (``rank0``, ``rank1``, ...).
_RANK_FOLDER = re.compile(r"^rank\d+$")


def _rank_folders(cache: Path) -> list[Path]:
    return [
        c
        for c in cache.iterdir()
        if c.is_dir() and not c.is_symlink() and _RANK_FOLDER.match(c.name)
    ]


def _holds_only_caches(cache: Path) -> bool:
    """Whether ``cache`` holds only what posneg mine writes: key folders of embedding shards
    (:func:`~posneg.mining.encode.is_cache_folder`), and ``rank<r>`` folders of key folders
    (sharded runs)."""
    ranks = _rank_folders(cache)
    if not ranks:
        return is_cache_folder(cache)
    others = [c for c in cache.iterdir() if c not in ranks]
    return all(is_cache_folder(r) for r in ranks) and all(_is_key_folder(c) for c in others)


def _is_key_folder(folder: Path) -> bool:
    """One key folder of :func:`~posneg.mining.encode.encode` (shards, meta.json, temps)."""
    if not (folder.is_dir() and not folder.is_symlink() and _KEY.match(folder.name)):
        return False
    return all(
        f.is_file()
        and (
            _SHARD.match(f.name) is not None
            or f.name == "meta.json"
            or (f.name.startswith(".") and f.name.endswith(".tmp"))
        )
        for f in folder.iterdir()
    )


def init_distributed(config: MineConfig) -> None:
    """Join the ``torchrun`` process group for ``--index sharded`` (once; before the encoder is
    loaded, so that each rank's CUDA device is set first).

    Does nothing unless ``config.index == "sharded"``, the group is not yet initialised and
    ``WORLD_SIZE`` (set by ``torchrun``) is above 1: outside ``torchrun`` a sharded run is a
    one-process run. The backend is ``nccl`` when ``config.device`` is CUDA (``auto``/``cuda``
    become ``cuda:$LOCAL_RANK``; an explicit ``cuda:N`` is kept) and ``gloo`` otherwise, with
    torch's ``env://`` rendezvous (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``).

    Raises:
        InputError: naming ``--index``: torch.distributed is not available, or the device is MPS
            (neither gloo nor nccl carries MPS tensors).
    """
    if config.index != "sharded" or int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return
    if not dist.is_available():
        raise InputError("--index sharded: this torch build has no torch.distributed")
    if dist.is_initialized():
        return
    device = resolve_device(config.device)
    if device.type == "mps":
        raise InputError("--index sharded: --device mps cannot be used across ranks; use cpu")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local if device.index is None else device.index)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def _ranks(config: MineConfig) -> tuple[int, int]:
    """(world size, rank) of a sharded run; (1, 0) for every other index."""
    if config.index != "sharded":
        return 1, 0
    return world_size(), rank()


def make_index(index: str, device: torch.device) -> Index:
    """An empty inner-product index of the kind ``--index`` names.

    ``sharded`` is a :class:`~posneg.mining.sharded.ShardedIndex`: under ``torchrun`` each rank
    keeps and searches its shard of the corpus and the top-k are merged exactly; in one process
    it is a plain exact search.

    Raises:
        InputError: naming ``--index``: faiss is not installed.
    """
    if index == "exact":
        return ExactIndex(metric="ip", device=device)
    if index == "sharded":
        return ShardedIndex(metric="ip", device=device)
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
    """Corpus and query embeddings, through the shard cache; times go into ``seconds``.

    Every distinct text is encoded once: a query whose text is a corpus document takes that
    document's row, and repeated query texts share one encoding. In a sharded run each rank
    encodes its contiguous part (:func:`~posneg.mining.sharded.shard_bounds`) of the corpus and
    of the remaining query texts into its own cache folder ``rank<r>``, and the parts are
    gathered so that every rank holds both matrices whole.
    """
    world, me = _ranks(config)
    folder = cache if world == 1 else cache / f"rank{me}"
    corpus_texts = list(data.corpus_texts)
    row_of: dict[str, int] = {}
    for i, text in enumerate(corpus_texts):
        row_of.setdefault(text, i)
    fresh = list(dict.fromkeys(t for t in data.query_texts if t not in row_of))
    parts = []
    for stage, texts, desc in (
        ("encode_corpus", corpus_texts, "encoding corpus"),
        ("encode_queries", fresh, "encoding queries"),
    ):
        t = time.perf_counter()
        start, stop = shard_bounds(len(texts), world, me)
        local = None
        if stop > start:
            local = encode(
                texts[start:stop],
                encoder,
                cache_dir=folder,
                shard_size=config.shard_size,
                progress=progress,
                desc=desc,
            )
        parts.append(local if world == 1 or not texts else _gather_rows(local))
        seconds[stage] = time.perf_counter() - t
    corpus_emb = cast(torch.Tensor, parts[0])  # never None: check_window refuses an empty corpus
    fresh_emb = parts[1]
    n_docs = len(corpus_texts)
    fresh_row = {t: n_docs + i for i, t in enumerate(fresh)}
    where = torch.tensor(
        [row_of.get(t, fresh_row.get(t, -1)) for t in data.query_texts], dtype=torch.int64
    )
    query_emb = corpus_emb.new_empty((len(where), corpus_emb.shape[1]))
    in_corpus = where < n_docs
    query_emb[in_corpus] = corpus_emb[where[in_corpus]]
    if fresh_emb is not None:
        query_emb[~in_corpus] = fresh_emb[where[~in_corpus] - n_docs]
    return corpus_emb, query_emb


def _gather_rows(local: torch.Tensor | None) -> torch.Tensor:
    """Every rank's rows (``None``: none), concatenated in rank order, on the CPU."""
    comm = torch.device("cpu")
    if dist.get_backend() == "nccl":
        comm = torch.device("cuda", torch.cuda.current_device())
    world = world_size()
    rows, dim = (0, -1) if local is None else (int(local.shape[0]), int(local.shape[1]))
    desc = torch.tensor([rows, dim], dtype=torch.int64, device=comm)
    descs = [torch.empty_like(desc) for _ in range(world)]
    dist.all_gather(descs, desc)
    sizes = [int(d[0]) for d in descs]
    dims = {int(d[1]) for d in descs if int(d[0]) > 0}
    if len(dims) != 1:
        raise ValueError(f"mine_data: the ranks' encoders give different sizes D: {sorted(dims)}")
    dim = dims.pop()
    padded = torch.zeros((max(sizes), dim), dtype=torch.float32, device=comm)
    if local is not None:
        padded[:rows] = local.to(comm)
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:n] for g, n in zip(gathered, sizes, strict=True)]).cpu()


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
        # MineConfig stores the canonical name (sentence-transformers' 'random' is 'uniform')
        sampling=cast(Sampling, config.sampling),
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
        **({"ranks": world_size()} if config.index == "sharded" else {}),
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
        InputError: naming the flag: the output is a folder or an input, the default cache
            folder holds files posneg did not write, or the window does not fit inside the
            corpus.
        TypeError: ``config`` is not a :class:`MineConfig`, or ``progress`` is neither a bool
            nor a callable.
    """
    start = time.perf_counter()
    if not isinstance(config, MineConfig):
        raise TypeError(f"mine_data: config must be a MineConfig; got {type(config).__name__}")
    check_progress("mine_data", progress)
    init_distributed(config)
    world, me = _ranks(config)
    out = config.out_path
    summary_path = sibling(out, ".summary.json")
    check_paths(config)
    range_max = check_window(
        len(data.corpus_texts),
        num_negatives=config.num_negatives,
        range_min=config.range_min,
        range_max=config.range_max,
    )
    cache = cache_folder(config)
    # an empty folder that was already there (perhaps the user's) is left in place
    kept_empty = cache.is_dir() and not any(cache.iterdir())
    if world > 1:  # every rank has checked the paths before any rank writes
        dist.barrier()
    if config.cache_dir is None:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    if me == 0:
        for target in (out, summary_path):  # temporary files of runs that were killed
            remove_stale_temps(target.parent, target.name)
    seconds: dict[str, float] = {}
    corpus_emb, query_emb = _embed(data, encoder, config, cache, progress, seconds)

    t = time.perf_counter()
    mined = _mine(data, corpus_emb, query_emb, config, range_max, progress)
    seconds["mine"] = time.perf_counter() - t
    facts = _Facts(config, range_max, encoder, cache, record, seconds, start)
    if world == 1:
        summary = _write(data, mined, facts)
    else:  # every rank holds the same negatives: rank 0 writes, the others get its summary
        summary = _write_on_rank0(data, mined, facts, me)
    if me == 0 and config.cache_dir is None:
        for folder in (cache, *_rank_folders(cache)):
            discard_cache(folder)
            if folder != cache:
                _remove_if_empty(folder)
        if not kept_empty:
            _remove_if_empty(cache)
    return summary


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # something else appeared in it: leave it
        pass


@dataclass(frozen=True)
class _Facts:
    """What the summary records beside the mined negatives."""

    config: MineConfig
    range_max: int
    encoder: TextEncoder
    cache: Path
    record: Mapping[str, Any] | None
    seconds: dict[str, float]
    start: float


def _write(data: MiningData, mined: MinedNegatives, facts: _Facts) -> MineSummary:
    """Write the output and the summary as one commit; return the summary."""
    config, seconds = facts.config, facts.seconds
    out = config.out_path
    summary_path = sibling(out, ".summary.json")
    valid = (mined.ids >= 0).sum(dim=1)
    too_few = int((valid < config.num_negatives).sum())
    t = time.perf_counter()
    rows = output_rows(data, mined, config.output_format, config.num_negatives)
    parquet = out.suffix.lower() == ".parquet"
    with atomic_targets(out, summary_path) as (tmp_out, tmp_summary):  # one commit
        n_rows = write_rows_to(
            tmp_out, rows, config.output_format, config.num_negatives, parquet=parquet
        )
        digest = file_sha256(tmp_out)
        seconds["write"] = time.perf_counter() - t
        seconds["total"] = time.perf_counter() - facts.start
        resolved = _resolved(config, facts.range_max, facts.encoder, facts.cache)
        summary = MineSummary(
            out=out,
            summary=summary_path,
            format=config.output_format,
            queries=len(data.query_texts),
            corpus=len(data.corpus_texts),
            rows=n_rows,
            removed={k: int(v) for k, v in mined.removed.items() if k != "rescore"},
            too_few_negatives=too_few,
            no_negatives=int((valid == 0).sum()),
            skipped_queries=too_few if config.output_format == "nway" else 0,
            config={**resolved, **(facts.record or {})},
            seconds={k: round(v, 3) for k, v in seconds.items()},
            output_sha256=digest,
        )
        tmp_summary.write_text(summary.to_json(), encoding="utf-8")
    return summary


def _write_on_rank0(data: MiningData, mined: MinedNegatives, facts: _Facts, me: int) -> MineSummary:
    """Rank 0 writes; its summary (or its error's message) is broadcast to every rank."""
    payload: list[Any] = [None]
    failure: BaseException | None = None
    if me == 0:
        try:
            payload[0] = _write(data, mined, facts)
        except BaseException as exc:  # the other ranks must not wait forever
            failure, payload[0] = exc, f"{type(exc).__name__}: {exc}"
    dist.broadcast_object_list(payload, src=0)
    if failure is not None:
        raise failure
    if isinstance(payload[0], str):
        raise RuntimeError(f"mine_data: rank 0 failed to write the output: {payload[0]}")
    return cast(MineSummary, payload[0])


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
    check_paths(config)
    data = read_input(
        queries=config.queries,
        corpus=config.corpus,
        pairs=config.pairs,
        anchor_column=config.anchor_column,
        positive_column=config.positive_column,
    )
    return mine_data(data, config, encoder=encoder, progress=progress)
