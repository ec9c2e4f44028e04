"""Files of ``posneg mine``: reading queries, corpus and pairs; writing the training file.

Reading, on top of :func:`posneg._io.iter_records` (JSON Lines ``.jsonl``/``.ndjson``/``.json``
read line by line with :mod:`json`, blank lines skipped; Parquet read with pyarrow; nothing is
ever unpickled):

- :func:`read_queries_corpus`: a queries file with fields ``id``, ``text`` and ``positives`` (a
  non-empty list of corpus ids) and a corpus file with fields ``id`` and ``text``. Ids are
  strings or integers, unique within their file, and matched exactly (``1`` and ``"1"`` differ).
- :func:`read_pairs`: one file of (anchor, positive) text pairs, as sentence-transformers users
  have it. The corpus is the set of distinct positive texts; pairs with the same anchor text
  become one query with several positives. Ids are assigned deterministically: a query's id is
  the 0-based row of the first pair with that anchor, a document's id the 0-based row of the
  first pair with that positive text.

Writing (:func:`write_rows`), JSON Lines, or Parquet when the name ends in ``.parquet``, always
atomically (a temporary file in the same folder, then a rename), of the rows of
:func:`output_rows` in one of three formats:

- ``triplets``: rows ``{anchor, positive, negative}``, one per (query, positive, mined negative):
  every positive of a query is paired with every negative mined for it (as sentence-transformers'
  ``mine_hard_negatives(output_format="triplet")``). Queries with fewer valid negatives than asked
  contribute the ones they have.
- ``nway``: rows ``{anchor, positive, negative_1, ..., negative_k}``, one per (query, positive);
  queries with fewer than ``k`` valid negatives are skipped (as ``output_format="n-tuple"``).
- ``full``: rows ``{query_id, positive_ids, negative_ids, scores, ranks, positive_score}``, one
  per query: the mined corpus ids in order, their scores, their 0-based ranks in the query's full
  ranking, and the query's best positive score (pads for missing negatives are dropped, so the
  lists may be shorter than ``k``). In Parquet, ids are ``int64`` when every id in the file is
  an integer that fits int64, otherwise every id is written as a string.

``triplets`` and ``nway`` load with ``datasets.load_dataset("json", data_files=...)`` into the
column order that sentence-transformers losses expect (anchor, positive, negatives ...).

Text and string ids must be valid Unicode: a lone surrogate (JSON ``"\\ud800"``) is refused
with its file and line. :func:`check_out` refuses an output (or its summary) that would
replace an input file or a folder.

Every user mistake raises :class:`posneg._io.InputError` naming the flag or the file and line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posneg._io import (
    InputError,
    atomic_target,
    iter_records,
    record_kind,
    type_name,
)

if TYPE_CHECKING:
    from posneg.mining.mine import MinedNegatives

__all__ = [
    "MiningData",
    "check_out",
    "output_rows",
    "read_input",
    "read_pairs",
    "read_queries_corpus",
    "sibling",
    "write_rows",
    "write_rows_to",
]

Id = str | int


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

    def own_documents(self) -> list[int]:
        """Per query, the first corpus row whose text equals the query text, else -1."""
        first: dict[str, int] = {}
        for row, text in enumerate(self.corpus_texts):
            first.setdefault(text, row)
        return [first.get(text, -1) for text in self.query_texts]


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def _check_unicode(value: str, where: str, name: str) -> str:
    """Refuse a string that UTF-8 cannot encode (a lone surrogate such as ``"\\ud800"``)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start : exc.end].encode("unicode_escape").decode("ascii")
        raise InputError(
            f"{where}: field {name!r} holds a lone surrogate ({bad} at character {exc.start}), "
            "which is not text"
        ) from None
    return value


def _as_id(value: Any, where: str, name: str) -> Id:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(
            f"{where}: field {name!r} must be a string or integer; got {type_name(value)}"
        )
    if isinstance(value, str):
        _check_unicode(value, where, name)
    return value


def _as_text(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where}: field {name!r} must be a string; got {type_name(value)}")
    return _check_unicode(value, where, name)


def _line(where: str) -> str:
    """``line 7`` (or ``row 7``) from ``data.jsonl: line 7``."""
    return where.rsplit(": ", 1)[1]


def _read_corpus(path: Path) -> tuple[list[Id], list[str], dict[Id, int]]:
    corpus_ids: list[Id] = []
    corpus_texts: list[str] = []
    row_of: dict[Id, int] = {}
    first_seen: dict[Id, str] = {}
    for where, (cid, text) in iter_records(path, ("id", "text"), flag="--corpus"):
        cid = _as_id(cid, where, "id")
        if cid in row_of:
            raise InputError(f"{where}: duplicate id {cid!r} (first at {first_seen[cid]})")
        row_of[cid] = len(corpus_ids)
        first_seen[cid] = _line(where)
        corpus_ids.append(cid)
        corpus_texts.append(_as_text(text, where, "text"))
    if not corpus_ids:
        raise InputError(f"--corpus: {path}: the corpus is empty (no records)")
    return corpus_ids, corpus_texts, row_of


def _positive_rows(
    pos: Any, qid: Id, row_of: dict[Id, int], where: str, corpus: Path
) -> tuple[int, ...]:
    if not isinstance(pos, (list, tuple)) or not pos:
        message = f"{where}: field 'positives' must be a non-empty list of corpus ids; got {pos!r}"
        raise InputError(message[:300])
    rows: list[int] = []
    for p in pos:
        p = _as_id(p, where, "positives")
        if p not in row_of:
            raise InputError(
                f"{where}: query {qid!r} lists positive {p!r}, which is not in the corpus {corpus}"
            )
        if row_of[p] not in rows:
            rows.append(row_of[p])
    return tuple(rows)


def read_queries_corpus(
    queries: str | os.PathLike[str], corpus: str | os.PathLike[str]
) -> MiningData:
    """Read a queries file (``id``, ``text``, ``positives``) and a corpus file (``id``, ``text``).

    Raises:
        InputError: an unreadable file, a missing or mistyped field (naming file and line), a
            duplicate id, an empty file, a query without positives or with a positive id absent
            from the corpus.
    """
    qpath, cpath = Path(queries), Path(corpus)
    record_kind(qpath, "--queries")  # a missing --queries file is named first
    corpus_ids, corpus_texts, row_of = _read_corpus(cpath)

    query_ids: list[Id] = []
    query_texts: list[str] = []
    positives: list[tuple[int, ...]] = []
    seen_q: dict[Id, str] = {}
    for where, (qid, text, pos) in iter_records(
        qpath, ("id", "text", "positives"), flag="--queries"
    ):
        qid = _as_id(qid, where, "id")
        if qid in seen_q:
            raise InputError(f"{where}: duplicate id {qid!r} (first at {seen_q[qid]})")
        seen_q[qid] = _line(where)
        text = _as_text(text, where, "text")
        query_ids.append(qid)
        query_texts.append(text)
        positives.append(_positive_rows(pos, qid, row_of, where, cpath))
    if not query_ids:
        raise InputError(f"--queries: {qpath}: no queries (the file has no records)")
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
        InputError: an unreadable file, a missing or mistyped column, no pairs.
    """
    path = Path(pairs)
    if anchor_column == positive_column:
        raise InputError(f"--anchor-column and --positive-column are both {anchor_column!r}")
    query_of: dict[str, int] = {}
    doc_of: dict[str, int] = {}
    query_ids: list[Id] = []
    query_texts: list[str] = []
    positives: list[list[int]] = []
    corpus_ids: list[Id] = []
    corpus_texts: list[str] = []
    row = -1
    records = iter_records(path, (anchor_column, positive_column), flag="--pairs")
    for row, (where, (anchor, positive)) in enumerate(records):
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
        raise InputError(f"--pairs: {path}: no pairs (the file has no records): empty corpus")
    return MiningData(
        tuple(query_ids),
        tuple(query_texts),
        tuple(tuple(p) for p in positives),
        tuple(corpus_ids),
        tuple(corpus_texts),
    )


def read_input(
    *,
    queries: str | os.PathLike[str] | None = None,
    corpus: str | os.PathLike[str] | None = None,
    pairs: str | os.PathLike[str] | None = None,
    anchor_column: str = "anchor",
    positive_column: str = "positive",
) -> MiningData:
    """Read either ``pairs`` or ``queries`` with ``corpus`` (the command's two ways in).

    Raises:
        InputError: both ways or neither, one of queries/corpus without the other, or any error
            of :func:`read_pairs` / :func:`read_queries_corpus`.
    """
    if pairs is not None and (queries is not None or corpus is not None):
        raise InputError("give either --pairs or --queries with --corpus, not both")
    if pairs is not None:
        return read_pairs(pairs, anchor_column=anchor_column, positive_column=positive_column)
    if queries is None and corpus is None:
        raise InputError("no input: give --pairs, or --queries with --corpus")
    if queries is None:
        raise InputError("--corpus needs --queries (or use --pairs)")
    if corpus is None:
        raise InputError("--queries needs --corpus (or use --pairs)")
    return read_queries_corpus(queries, corpus)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (hard links and symlinks included)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_out(
    out: str | os.PathLike[str], *, inputs: Sequence[str | os.PathLike[str] | None] = ()
) -> None:
    """Check that ``out`` and its summary can be written without harming anything.

    ``out`` must not be a folder, nor any of ``inputs``; its summary ``<out>.summary.json``
    must not be a folder nor an input either; Parquet needs pyarrow.

    Raises:
        InputError: naming ``--out``.
    """
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out: {out} is a folder; give a file name (.jsonl or .parquet)")
    summary = sibling(out, ".summary.json")
    if summary.is_dir():
        raise InputError(
            f"--out: the summary {summary} would replace a folder; move it away or choose "
            "another --out"
        )
    for given in inputs:
        if given is None:
            continue
        for target, what in ((out, "the output"), (summary, "the summary")):
            if _same_file(target, Path(given)):
                raise InputError(
                    f"--out: {what} {target} is the input file {given}; writing it would "
                    "destroy the input: choose another --out"
                )
    if out.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:  # pragma: no cover
            raise InputError(
                "--out: writing Parquet needs pyarrow (pip install 'posneg[mining]')"
            ) from None


def sibling(out: str | os.PathLike[str], suffix: str) -> Path:
    """``out`` with ``suffix`` appended to its name (``hard.jsonl`` -> ``hard.jsonl.cache``)."""
    out = Path(out)
    return out.with_name(out.name + suffix)


def output_rows(
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


def _column_names(output_format: str, k: int) -> list[str]:
    if output_format == "triplets":
        return ["anchor", "positive", "negative"]
    if output_format == "nway":
        return ["anchor", "positive", *[f"negative_{j}" for j in range(1, k + 1)]]
    return ["query_id", "positive_ids", "negative_ids", "scores", "ranks", "positive_score"]


def _fits_int64(value: Id) -> bool:
    return isinstance(value, int) and -(2**63) <= value < 2**63


def _write_parquet(path: Path, rows: Iterator[dict[str, Any]], output_format: str, k: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = _column_names(output_format, k)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    n = 0
    for row in rows:
        for name in names:
            columns[name].append(row[name])
        n += 1
    types: dict[str, Any] = {name: pa.string() for name in names}
    if output_format == "full":
        ids = [
            *columns["query_id"],
            *(i for name in ("positive_ids", "negative_ids") for row in columns[name] for i in row),
        ]
        id_type = pa.int64() if all(_fits_int64(i) for i in ids) else pa.string()
        if id_type == pa.string():  # str ids, mixed str/int, or integers beyond int64
            columns["query_id"] = [str(i) for i in columns["query_id"]]
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
    pq.write_table(table, str(path))
    return n


def write_rows_to(
    path: str | os.PathLike[str],
    rows: Iterator[dict[str, Any]],
    output_format: str,
    k: int,
    *,
    parquet: bool,
) -> int:
    """Write rows into ``path`` as it is (not atomically): for a temporary file of a commit.

    Args:
        path: the file to write (created or truncated).
        rows: the rows of :func:`output_rows`.
        output_format: ``triplets``, ``nway`` or ``full`` (fixes the Parquet columns).
        k: negatives per row of ``nway``.
        parquet: Parquet when True, else JSON Lines.

    Returns:
        The number of rows written.
    """
    path = Path(path)
    if parquet:
        return _write_parquet(path, rows, output_format, k)
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False))
            fh.write("\n")
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    return n


def write_rows(
    path: str | os.PathLike[str], rows: Iterator[dict[str, Any]], output_format: str, k: int
) -> int:
    """Write rows as JSON Lines or Parquet (by suffix), atomically; return the row count.

    Args:
        path: the output file; ``.parquet`` for Parquet, anything else JSON Lines.
        rows: the rows of :func:`output_rows`.
        output_format: ``triplets``, ``nway`` or ``full`` (fixes the Parquet columns).
        k: negatives per row of ``nway``.
    """
    path = Path(path)
    with atomic_target(path) as tmp:
        return write_rows_to(tmp, rows, output_format, k, parquet=path.suffix.lower() == ".parquet")
