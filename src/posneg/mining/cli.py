"""`posneg mine`: hard-negative training files for retrieval, from the user's own data.

Two ways in:

- ``--queries`` + ``--corpus``: a queries file with fields ``id``, ``text`` and ``positives`` (a
  non-empty list of corpus ids) and a corpus file with fields ``id`` and ``text``. Ids are strings
  or integers, unique within their file, and matched exactly (``1`` and ``"1"`` differ).
- ``--pairs``: one file of (anchor, positive) text pairs, as sentence-transformers users have it
  (column names ``--anchor-column`` / ``--positive-column``, default ``anchor`` / ``positive``).
  The corpus is the set of distinct positive texts; pairs with the same anchor text become one
  query with several positives. Ids are assigned deterministically: a query's id is the 0-based
  row of the first pair with that anchor, a document's id the 0-based row of the first pair with
  that positive text.

Files are JSON Lines (``.jsonl``, ``.ndjson``, ``.json``: one object per line, read line by line
with :mod:`json`; blank lines are skipped) or Parquet (``.parquet``, read with pyarrow). Nothing
is ever unpickled.

Every query and document is embedded with the encoder (L2-normalised, inner product), the corpus
in shards cached on disk so that a killed run resumes where it stopped, and
:func:`posneg.mining.mine.mine` draws ``num_negatives`` negatives per query from the rank window,
excluding every positive, the query's own document (a corpus text equal to the query text),
exact-duplicate texts of a positive and the candidates the false-negative filters reject. The
output (``--out``, JSON Lines, or Parquet when the name ends in ``.parquet``) is one of:

- ``triplets``: rows ``{anchor, positive, negative}``, one per (query, positive, mined negative):
  every positive of a query is paired with every negative mined for it (as sentence-transformers'
  ``mine_hard_negatives(output_format="triplet")``). Queries with fewer valid negatives than asked
  contribute the ones they have.
- ``nway``: rows ``{anchor, positive, negative_1, ..., negative_k}``, one per (query, positive);
  queries with fewer than ``k`` valid negatives are skipped and counted in the summary (as
  ``output_format="n-tuple"``).
- ``full``: rows ``{query_id, positive_ids, negative_ids, scores, ranks, positive_score}``, one
  per query: the mined corpus ids in order, their scores, their 0-based ranks in the query's full
  ranking, and the query's best positive score (pads for missing negatives are dropped, so the
  lists may be shorter than ``k``).

``triplets`` and ``nway`` load with ``datasets.load_dataset("json", data_files=...)`` into the
column order that sentence-transformers losses expect (anchor, positive, negatives ...).

All files are written atomically (temporary file in the same folder, then a rename): a failed run
leaves no output file. Beside the output, ``<out>.summary.json`` records the configuration, the
counts, how many candidates each filter removed and the timings. The embedding shards live in
``--cache-dir``; by default ``<out>.cache/`` next to the output, which is deleted after a
successful run (it only serves resuming). An explicit ``--cache-dir`` is kept, so later runs with
other filters or windows reuse the embeddings.

Python use::

    from posneg.mining.cli import mine_files
    from posneg.mining.encode import load_encoder
    summary = mine_files(queries="q.jsonl", corpus="c.jsonl", out="hard.jsonl",
                         encoder=load_encoder(), num_negatives=5, margin=0.05)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from posneg.bench._common import (
    UsageError,
    atomic_target,
    atomic_write_text,
    console,
    resolve_device,
    rich_table,
)
from posneg.mining.encode import DEFAULT_MODEL

if TYPE_CHECKING:
    import torch

    from posneg.mining.encode import TextEncoder
    from posneg.mining.mine import MinedNegatives

__all__ = [
    "DEFAULT_RANGE_MAX",
    "FORMATS",
    "INDEXES",
    "SAMPLINGS",
    "MineSummary",
    "MiningData",
    "check_window",
    "mine_cmd",
    "mine_data",
    "mine_files",
    "read_pairs",
    "read_queries_corpus",
]

#: Output formats of ``--format``.
FORMATS: tuple[str, ...] = ("triplets", "nway", "full")
#: Sampling rules of ``--sampling``.
SAMPLINGS: tuple[str, ...] = ("top", "uniform", "softmax")
#: Search indexes of ``--index``.
INDEXES: tuple[str, ...] = ("exact", "faiss-flat", "faiss-ivf")
#: ``--range-max`` when not given, capped to the corpus.
DEFAULT_RANGE_MAX = 100

_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
Id = str | int


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MiningData:
    """Queries, corpus and relevance read from the user's files.

    Attributes:
        query_ids: one id per query (str or int).
        query_texts: the query texts.
        positives: per query, the corpus ROW indices of its positives (at least one).
        corpus_ids: one id per corpus row.
        corpus_texts: the corpus texts.
    """

    query_ids: tuple[Id, ...]
    query_texts: tuple[str, ...]
    positives: tuple[tuple[int, ...], ...]
    corpus_ids: tuple[Id, ...]
    corpus_texts: tuple[str, ...]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_file(path: Path, flag: str) -> str:
    """Return the file kind ("jsonl" or "parquet") or raise a one-line UsageError."""
    if not path.exists():
        raise UsageError(f"{flag}: file not found: {path}")
    if not path.is_file():
        raise UsageError(f"{flag}: not a file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    raise UsageError(
        f"{flag}: {path}: unsupported file type {suffix or '(no suffix)'!r}; "
        "expected JSON Lines (.jsonl, .ndjson, .json) or Parquet (.parquet)"
    )


def _iter_jsonl(path: Path, fields: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            where = f"{path}: line {n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"{where}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                raise UsageError(f"{where}: bad JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise UsageError(f"{where}: expected a JSON object; got {_type_name(record)}")
            for f in fields:
                if f not in record:
                    raise UsageError(f"{where}: missing field {f!r}")
            yield where, [record[f] for f in fields]


def _iter_parquet(path: Path, fields: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency of datasets
        raise UsageError(
            f"{path}: reading Parquet needs pyarrow (pip install pyarrow), or use JSON Lines"
        ) from None
    try:
        schema = pq.read_schema(path)
        names = list(schema.names)
        for f in fields:
            if f not in names:
                raise UsageError(
                    f"{path}: missing field {f!r} (columns: {', '.join(names) or 'none'})"
                )
        table = pq.read_table(path, columns=list(fields))
    except pa.ArrowException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{path}: not a readable Parquet file ({first})") from None
    columns = [table.column(f).to_pylist() for f in fields]
    for n, values in enumerate(zip(*columns, strict=True), start=1):
        yield f"{path}: row {n}", list(values)


def _records(path: Path, fields: Sequence[str], flag: str) -> Iterator[tuple[str, list[Any]]]:
    kind = _check_file(path, flag)
    if kind == "parquet":
        return _iter_parquet(path, fields)
    return _iter_jsonl(path, fields)


def _as_id(value: Any, where: str, name: str) -> Id:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UsageError(
            f"{where}: field {name!r} must be a string or integer; got {_type_name(value)}"
        )
    return value


def _as_text(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{where}: field {name!r} must be a string; got {_type_name(value)}")
    return value


def read_queries_corpus(
    queries: str | os.PathLike[str], corpus: str | os.PathLike[str]
) -> MiningData:
    """Read a queries file (``id``, ``text``, ``positives``) and a corpus file (``id``, ``text``).

    Raises:
        UsageError: an unreadable file, a missing or mistyped field (naming file and line), a
            duplicate id, an empty file, a query without positives or with a positive id absent
            from the corpus.
    """
    qpath, cpath = Path(queries), Path(corpus)
    _check_file(qpath, "--queries")
    corpus_ids: list[Id] = []
    corpus_texts: list[str] = []
    row_of: dict[Id, int] = {}
    first_seen: dict[Id, str] = {}
    for where, (cid, text) in _records(cpath, ("id", "text"), "--corpus"):
        cid = _as_id(cid, where, "id")
        if cid in row_of:
            raise UsageError(f"{where}: duplicate id {cid!r} (first at {first_seen[cid]})")
        row_of[cid] = len(corpus_ids)
        first_seen[cid] = where.rsplit(": ", 1)[1]
        corpus_ids.append(cid)
        corpus_texts.append(_as_text(text, where, "text"))
    if not corpus_ids:
        raise UsageError(f"--corpus: {cpath}: the corpus is empty (no records)")

    query_ids: list[Id] = []
    query_texts: list[str] = []
    positives: list[tuple[int, ...]] = []
    seen_q: dict[Id, str] = {}
    for where, (qid, text, pos) in _records(qpath, ("id", "text", "positives"), "--queries"):
        qid = _as_id(qid, where, "id")
        if qid in seen_q:
            raise UsageError(f"{where}: duplicate id {qid!r} (first at {seen_q[qid]})")
        seen_q[qid] = where.rsplit(": ", 1)[1]
        text = _as_text(text, where, "text")
        if not isinstance(pos, (list, tuple)) or not pos:
            raise UsageError(
                f"{where}: field 'positives' must be a non-empty list of corpus ids; got {pos!r}"[
                    :300
                ]
            )
        rows: list[int] = []
        for p in pos:
            p = _as_id(p, where, "positives")
            if p not in row_of:
                raise UsageError(
                    f"{where}: query {qid!r} lists positive {p!r}, which is not in the corpus "
                    f"{cpath}"
                )
            if row_of[p] not in rows:
                rows.append(row_of[p])
        query_ids.append(qid)
        query_texts.append(text)
        positives.append(tuple(rows))
    if not query_ids:
        raise UsageError(f"--queries: {qpath}: no queries (the file has no records)")
    return MiningData(
        tuple(query_ids),
        tuple(query_texts),
        tuple(positives),
        tuple(corpus_ids),
        tuple(corpus_texts),
    )


def read_pairs(
    pairs: str | os.PathLike[str],
    *,
    anchor_column: str = "anchor",
    positive_column: str = "positive",
) -> MiningData:
    """Read (anchor, positive) pairs; the corpus is the set of distinct positive texts.

    Pairs sharing an anchor text become one query with several positives. A query's id is the
    0-based row of the first pair with its anchor; a document's id the 0-based row of the first
    pair with its text.

    Raises:
        UsageError: an unreadable file, a missing or mistyped column, no pairs.
    """
    path = Path(pairs)
    if anchor_column == positive_column:
        raise UsageError(f"--anchor-column and --positive-column are both {anchor_column!r}")
    query_of: dict[str, int] = {}
    doc_of: dict[str, int] = {}
    query_ids: list[Id] = []
    query_texts: list[str] = []
    positives: list[list[int]] = []
    corpus_ids: list[Id] = []
    corpus_texts: list[str] = []
    row = -1
    for row, (where, (anchor, positive)) in enumerate(
        _records(path, (anchor_column, positive_column), "--pairs")
    ):
        anchor = _as_text(anchor, where, anchor_column)
        positive = _as_text(positive, where, positive_column)
        q = query_of.get(anchor)
        if q is None:
            q = query_of[anchor] = len(query_ids)
            query_ids.append(row)
            query_texts.append(anchor)
            positives.append([])
        d = doc_of.get(positive)
        if d is None:
            d = doc_of[positive] = len(corpus_ids)
            corpus_ids.append(row)
            corpus_texts.append(positive)
        if d not in positives[q]:
            positives[q].append(d)
    if row < 0:
        raise UsageError(f"--pairs: {path}: no pairs (the file has no records): empty corpus")
    return MiningData(
        tuple(query_ids),
        tuple(query_texts),
        tuple(tuple(p) for p in positives),
        tuple(corpus_ids),
        tuple(corpus_texts),
    )


def _read_input(
    queries: Path | None,
    corpus: Path | None,
    pairs: Path | None,
    anchor_column: str,
    positive_column: str,
) -> MiningData:
    if pairs is not None and (queries is not None or corpus is not None):
        raise UsageError("give either --pairs or --queries with --corpus, not both")
    if pairs is not None:
        return read_pairs(pairs, anchor_column=anchor_column, positive_column=positive_column)
    if queries is None and corpus is None:
        raise UsageError("no input: give --pairs, or --queries with --corpus")
    if queries is None:
        raise UsageError("--corpus needs --queries (or use --pairs)")
    if corpus is None:
        raise UsageError("--queries needs --corpus (or use --pairs)")
    return read_queries_corpus(queries, corpus)


# ---------------------------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------------------------


def check_window(
    corpus_size: int, *, num_negatives: int, range_min: int, range_max: int | None
) -> int:
    """Validate the rank window against the corpus; return the resolved ``range_max``.

    The window is the ranks ``range_min..range_max`` (0-based, inclusive) of each query's full
    ranking of the corpus, positives included. ``range_max=None`` means
    ``min(DEFAULT_RANGE_MAX, corpus_size - 1)``.

    Raises:
        UsageError: naming the option, for a window that does not fit inside the corpus or
            holds fewer ranks than ``num_negatives``.
    """
    if num_negatives < 1:
        raise UsageError(f"--num-negatives must be >= 1; got {num_negatives}")
    if range_min < 0:
        raise UsageError(f"--range-min must be >= 0; got {range_min}")
    if range_min >= corpus_size:
        raise UsageError(
            f"--range-min {range_min} is outside the corpus ({corpus_size} documents: "
            f"ranks 0..{corpus_size - 1})"
        )
    if range_max is None:
        range_max = min(DEFAULT_RANGE_MAX, corpus_size - 1)
        range_max = max(range_max, range_min)
    elif range_max >= corpus_size:
        raise UsageError(
            f"--range-max {range_max} is larger than the corpus allows ({corpus_size} documents: "
            f"ranks 0..{corpus_size - 1}); the window must fit inside the corpus"
        )
    if range_max < range_min:
        raise UsageError(f"--range-max {range_max} is smaller than --range-min {range_min}")
    width = range_max - range_min + 1
    if num_negatives > width:
        raise UsageError(
            f"--num-negatives {num_negatives} exceeds the window ranks {range_min}..{range_max} "
            f"({width} candidates)"
        )
    return range_max


def _check_options(
    *,
    output_format: str,
    sampling: str,
    index: str,
    temperature: float,
    margin: float | None,
    relative_margin: float | None,
    max_score: float | None,
    shard_size: int,
) -> None:
    if output_format not in FORMATS:
        raise UsageError(f"--format: unknown format {output_format!r}; known: {', '.join(FORMATS)}")
    if sampling not in SAMPLINGS:
        raise UsageError(f"--sampling: unknown rule {sampling!r}; known: {', '.join(SAMPLINGS)}")
    if index not in INDEXES:
        raise UsageError(f"--index: unknown index {index!r}; known: {', '.join(INDEXES)}")
    if not temperature > 0:
        raise UsageError(f"--temperature must be > 0; got {temperature}")
    if margin is not None and margin < 0:
        raise UsageError(f"--margin must be >= 0; got {margin}")
    if relative_margin is not None and relative_margin < 0:
        raise UsageError(f"--relative-margin must be >= 0; got {relative_margin}")
    if max_score is not None and max_score != max_score:
        raise UsageError("--max-score must be a number; got nan")
    if shard_size < 1:
        raise UsageError(f"--shard-size must be >= 1; got {shard_size}")


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise UsageError(f"--out: {out} is a folder; give a file name (.jsonl or .parquet)")
    if out.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:  # pragma: no cover
            raise UsageError("--out: writing Parquet needs pyarrow (pip install pyarrow)") from None


def _sibling(out: Path, suffix: str) -> Path:
    return out.with_name(out.name + suffix)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


@contextmanager
def _atomic_open(path: Path) -> Iterator[IO[str]]:
    """A text file written to a temporary name in the same folder, renamed over ``path`` on
    success and deleted on any failure (``KeyboardInterrupt`` included)."""
    with atomic_target(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def _rows(
    data: MiningData, mined: MinedNegatives, output_format: str, num_negatives: int
) -> Iterator[dict[str, Any]]:
    """Output rows in query order (positives in file order, negatives best first)."""
    ids = mined.ids.tolist()
    qt, ct = data.query_texts, data.corpus_texts
    if output_format == "full":
        scores = mined.scores.tolist()
        ranks = mined.ranks.tolist()
        pos_scores = mined.positive_scores.tolist()
        for q, row in enumerate(ids):
            keep = [j for j, d in enumerate(row) if d >= 0]
            yield {
                "query_id": data.query_ids[q],
                "positive_ids": [data.corpus_ids[p] for p in data.positives[q]],
                "negative_ids": [data.corpus_ids[row[j]] for j in keep],
                "scores": [scores[q][j] for j in keep],
                "ranks": [ranks[q][j] for j in keep],
                "positive_score": pos_scores[q],
            }
        return
    for q, row in enumerate(ids):
        negs = [ct[d] for d in row if d >= 0]
        if output_format == "triplets":
            for p in data.positives[q]:
                for neg in negs:
                    yield {"anchor": qt[q], "positive": ct[p], "negative": neg}
        elif len(negs) >= num_negatives:
            for p in data.positives[q]:
                out: dict[str, Any] = {"anchor": qt[q], "positive": ct[p]}
                for j, neg in enumerate(negs, start=1):
                    out[f"negative_{j}"] = neg
                yield out


def _write_rows(path: Path, rows: Iterator[dict[str, Any]], output_format: str, k: int) -> int:
    """Write rows as JSON Lines or Parquet (by suffix), atomically; return the row count."""
    n = 0
    if path.suffix.lower() != ".parquet":
        with _atomic_open(path) as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False))
                fh.write("\n")
                n += 1
        return n
    import pyarrow as pa
    import pyarrow.parquet as pq

    if output_format == "triplets":
        names = ["anchor", "positive", "negative"]
    elif output_format == "nway":
        names = ["anchor", "positive", *[f"negative_{j}" for j in range(1, k + 1)]]
    else:
        names = ["query_id", "positive_ids", "negative_ids", "scores", "ranks", "positive_score"]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for row in rows:
        for name in names:
            columns[name].append(row[name])
        n += 1
    types: dict[str, Any] = {name: pa.string() for name in names}
    if output_format == "full":
        sample = [*columns["query_id"], *(i for ids in columns["positive_ids"] for i in ids)]
        id_type = pa.int64() if sample and all(isinstance(i, int) for i in sample) else pa.string()
        if id_type == pa.string():  # mixed str/int ids: written as strings
            for name in ("query_id",):
                columns[name] = [str(i) for i in columns[name]]
            for name in ("positive_ids", "negative_ids"):
                columns[name] = [[str(i) for i in ids] for ids in columns[name]]
        types = {
            "query_id": id_type,
            "positive_ids": pa.list_(id_type),
            "negative_ids": pa.list_(id_type),
            "scores": pa.list_(pa.float32()),
            "ranks": pa.list_(pa.int64()),
            "positive_score": pa.float32(),
        }
    schema = pa.schema([(name, types[name]) for name in names])
    table = pa.table({name: pa.array(columns[name], type=types[name]) for name in names}, schema)
    with atomic_target(path) as tmp:
        pq.write_table(table, str(tmp))
    return n


# ---------------------------------------------------------------------------------------------
# mining
# ---------------------------------------------------------------------------------------------


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


def _make_index(index: str, device: torch.device) -> Any:
    if index == "exact":
        from posneg.mining.index import ExactIndex

        return ExactIndex(metric="ip", device=device)
    from posneg.mining.index import FaissIndex

    try:
        return FaissIndex(kind="flat" if index == "faiss-flat" else "ivf", metric="ip")
    except ImportError as exc:
        raise UsageError(f"--index {index}: {exc}") from None


def _own_documents(data: MiningData) -> list[int]:
    """Per query, the first corpus row whose text equals the query text, else -1."""
    first: dict[str, int] = {}
    for row, text in enumerate(data.corpus_texts):
        first.setdefault(text, row)
    return [first.get(text, -1) for text in data.query_texts]


def mine_data(
    data: MiningData,
    *,
    out: str | os.PathLike[str],
    encoder: TextEncoder,
    output_format: str = "triplets",
    num_negatives: int = 5,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    margin: float | None = None,
    relative_margin: float | None = None,
    sampling: str = "top",
    temperature: float = 1.0,
    seed: int = 0,
    index: str = "exact",
    device: str = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    shard_size: int = 2048,
    progress: bool = False,
    config: dict[str, Any] | None = None,
) -> MineSummary:
    """Embed, mine and write: the work behind ``posneg mine`` on data already read.

    Args mirror the command's options (see :func:`mine_files`); ``config`` adds entries to the
    summary's configuration record.

    Returns:
        The run's :class:`MineSummary`.

    Raises:
        UsageError: a bad option value or a window that does not fit inside the corpus.
    """
    import torch

    from posneg.mining.encode import encode
    from posneg.mining.mine import duplicate_groups, mine

    start = time.perf_counter()
    out = Path(out)
    _check_options(
        output_format=output_format,
        sampling=sampling,
        index=index,
        temperature=temperature,
        margin=margin,
        relative_margin=relative_margin,
        max_score=max_score,
        shard_size=shard_size,
    )
    _check_out(out)
    n_corpus = len(data.corpus_texts)
    range_max = check_window(
        n_corpus, num_negatives=num_negatives, range_min=range_min, range_max=range_max
    )
    dev = resolve_device(device)
    default_cache = cache_dir is None
    cache = _sibling(out, ".cache") if cache_dir is None else Path(cache_dir)
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    corpus_emb = encode(
        list(data.corpus_texts),
        encoder,
        cache_dir=cache,
        shard_size=shard_size,
        progress=progress,
        desc="encoding corpus",
    )
    seconds["encode_corpus"] = time.perf_counter() - t
    t = time.perf_counter()
    query_emb = encode(
        list(data.query_texts),
        encoder,
        cache_dir=cache,
        shard_size=shard_size,
        progress=progress,
        desc="encoding queries",
    )
    seconds["encode_queries"] = time.perf_counter() - t

    t = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    mined = mine(
        query_emb,
        corpus_emb,
        [list(p) for p in data.positives],
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        margin=margin,
        relative_margin=relative_margin,
        own_document=_own_documents(data),
        duplicate_of=duplicate_groups(list(data.corpus_texts)),
        sampling=sampling,  # type: ignore[arg-type]
        temperature=temperature,
        index=_make_index(index, dev),
        generator=generator,
        progress=progress,
    )
    seconds["mine"] = time.perf_counter() - t

    valid = (mined.ids >= 0).sum(dim=1)
    too_few = int((valid < num_negatives).sum())
    none = int((valid == 0).sum())
    skipped = too_few if output_format == "nway" else 0

    t = time.perf_counter()
    n_rows = _write_rows(
        out, _rows(data, mined, output_format, num_negatives), output_format, num_negatives
    )
    seconds["write"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - start

    resolved: dict[str, Any] = {
        "format": output_format,
        "num_negatives": num_negatives,
        "range_min": range_min,
        "range_max": range_max,
        "max_score": max_score,
        "margin": margin,
        "relative_margin": relative_margin,
        "sampling": sampling,
        "temperature": temperature,
        "seed": seed,
        "index": index,
        "device": str(dev),
        "encoder": getattr(encoder, "name", None),
        "shard_size": shard_size,
        "cache_dir": str(cache),
        "cache_kept": not default_cache,
        **(config or {}),
    }
    summary = MineSummary(
        out=out,
        summary=_sibling(out, ".summary.json"),
        format=output_format,
        queries=len(data.query_texts),
        corpus=n_corpus,
        rows=n_rows,
        removed={k: int(v) for k, v in mined.removed.items() if k != "rescore"},
        too_few_negatives=too_few,
        no_negatives=none,
        skipped_queries=skipped,
        config=resolved,
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )
    payload = asdict(summary)
    payload["out"], payload["summary"] = str(summary.out), str(summary.summary)
    atomic_write_text(summary.summary, json.dumps(payload, indent=2) + "\n")
    if default_cache:
        shutil.rmtree(cache, ignore_errors=True)
    return summary


def mine_files(
    *,
    out: str | os.PathLike[str],
    encoder: TextEncoder,
    queries: str | os.PathLike[str] | None = None,
    corpus: str | os.PathLike[str] | None = None,
    pairs: str | os.PathLike[str] | None = None,
    anchor_column: str = "anchor",
    positive_column: str = "positive",
    output_format: str = "triplets",
    num_negatives: int = 5,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    margin: float | None = None,
    relative_margin: float | None = None,
    sampling: str = "top",
    temperature: float = 1.0,
    seed: int = 0,
    index: str = "exact",
    device: str = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    shard_size: int = 2048,
    progress: bool = False,
) -> MineSummary:
    """Mine hard negatives from files and write a training file: ``posneg mine`` as a function.

    Args:
        out: output file: JSON Lines, or Parquet when it ends in ``.parquet``.
        encoder: a :class:`~posneg.mining.encode.TextEncoder` (``load_encoder(...)``; a plain
            callable wrapped by ``load_encoder(fn, name=...)`` works too).
        queries: queries file (``id``, ``text``, ``positives``); with ``corpus``.
        corpus: corpus file (``id``, ``text``).
        pairs: instead of queries + corpus, a file of (anchor, positive) pairs.
        anchor_column: the anchor column of ``pairs``.
        positive_column: the positive column of ``pairs``.
        output_format: ``triplets``, ``nway`` or ``full``.
        num_negatives: negatives per query.
        range_min: first rank of the window (0-based, inclusive).
        range_max: last rank of the window (inclusive); None: ``min(100, corpus - 1)``.
        max_score: drop candidates scoring above this.
        margin: drop candidates with ``score > positive_score - margin``.
        relative_margin: drop candidates with ``score > positive_score * (1 - relative_margin)``.
        sampling: ``top``, ``uniform`` or ``softmax`` within the filtered window.
        temperature: softmax sampling temperature.
        seed: seed of the sampling generator.
        index: ``exact``, ``faiss-flat`` or ``faiss-ivf``.
        device: device of the exact index (``cpu``, ``cuda``, ``auto``).
        cache_dir: folder for the embedding shards; None: ``<out>.cache`` removed on success.
        shard_size: texts per cached embedding shard.
        progress: show progress bars.

    Returns:
        The run's :class:`MineSummary` (also written to ``<out>.summary.json``).

    Raises:
        UsageError: every input or option problem, in one line.
    """
    data = _read_input(
        None if queries is None else Path(queries),
        None if corpus is None else Path(corpus),
        None if pairs is None else Path(pairs),
        anchor_column,
        positive_column,
    )
    return mine_data(
        data,
        out=out,
        encoder=encoder,
        output_format=output_format,
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        margin=margin,
        relative_margin=relative_margin,
        sampling=sampling,
        temperature=temperature,
        seed=seed,
        index=index,
        device=device,
        cache_dir=cache_dir,
        shard_size=shard_size,
        progress=progress,
    )


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------


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
        str,
        typer.Option("--format", help="triplets, nway (anchor, positive, negative_1..k) or full."),
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
    relative_margin: Annotated[
        float | None,
        typer.Option(help="Drop candidates scoring above positive score * (1 - relative margin)."),
    ] = None,
    sampling: Annotated[
        str, typer.Option(help="top, uniform or softmax (score-weighted) within the window.")
    ] = "top",
    temperature: Annotated[float, typer.Option(help="Softmax sampling temperature.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    index: Annotated[str, typer.Option(help="exact, faiss-flat or faiss-ivf.")] = "exact",
    batch_size: Annotated[int, typer.Option(help="Encoding batch size.")] = 64,
    max_seq_length: Annotated[
        int | None, typer.Option(help="Truncate texts to this many tokens (default: the model's).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Embedding shards (kept). Default: <out>.cache, removed on success."),
    ] = None,
    shard_size: Annotated[int, typer.Option(help="Texts per cached embedding shard.")] = 2048,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no table.")] = False,
) -> None:
    """Mine hard negatives for retrieval training files (triplets, n-way or full)."""
    if out is None:
        raise UsageError("--out: give the output file (.jsonl or .parquet)")
    _check_options(
        output_format=output_format,
        sampling=sampling,
        index=index,
        temperature=temperature,
        margin=margin,
        relative_margin=relative_margin,
        max_score=max_score,
        shard_size=shard_size,
    )
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1; got {batch_size}")
    if max_seq_length is not None and max_seq_length < 1:
        raise UsageError(f"--max-seq-length must be >= 1; got {max_seq_length}")
    _check_out(out)
    resolve_device(device)
    # read and validate everything before the (slow) model load
    data = _read_input(queries, corpus, pairs, anchor_column, positive_column)
    check_window(
        len(data.corpus_texts),
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
    )
    encoder = ENCODER_FACTORY(
        model, device=device, batch_size=batch_size, max_seq_length=max_seq_length, quiet=quiet
    )
    inputs = (
        {"pairs": str(pairs)}
        if pairs is not None
        else {"queries": str(queries), "corpus": str(corpus)}
    )
    summary = mine_data(
        data,
        out=out,
        encoder=encoder,
        output_format=output_format,
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        margin=margin,
        relative_margin=relative_margin,
        sampling=sampling,
        temperature=temperature,
        seed=seed,
        index=index,
        device=device,
        cache_dir=cache_dir,
        shard_size=shard_size,
        progress=not quiet,
        config={
            "model": model,
            "batch_size": batch_size,
            "max_seq_length": max_seq_length,
            **inputs,
        },
    )
    if not quiet:
        console.print(rich_table("posneg mine: summary", ["item", "count"], summary.table_rows()))
        console.print(
            f"wrote {summary.rows:,} rows to [bold]{summary.out}[/bold] "
            f"in {summary.seconds['total']:.1f} s; summary: {summary.summary}"
        )
