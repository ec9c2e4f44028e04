"""A real code-search retrieval set built at run time from the running Python's standard library.

Each pair is one public function or method of a stdlib module: the **query** is the first sentence
of its docstring, the **document** is its source code with the docstring removed. Nothing is
downloaded and nothing is written to disk; the scan of a source folder is memoised in memory per
process, so a second :func:`load_code_search` call in the same process is instant.

How the set is built (all steps deterministic: sorted walk, no RNG, no ``hash()``):

- Source files: every ``*.py`` under ``sysconfig.get_paths()["stdlib"]`` (or ``root``), walked in
  sorted order, except test folders and files (``test``, ``tests``, ``test_*.py``, ``*_test.py``),
  ``idlelib``, ``lib2to3``, ``turtledemo``, ``ensurepip``, ``site-packages``, ``dist-packages``,
  ``pydoc_data``, ``lib-dynload``, ``config-*`` build folders, ``__pycache__``, ``__main__.py`` and
  a few joke or generated modules (``this``, ``antigravity``). Files that cannot be decoded or
  parsed are skipped.
  Codec tables (``encodings``) and private modules (a leading underscore: ``_pydecimal``,
  ``_pyio``) are skipped too.
- Units: module-level functions and the methods of module-level classes, public only (no leading
  underscore in the function, the method or the class name), each with a docstring.
- Query: the first paragraph of the cleaned docstring, cut after its first sentence, whitespace
  collapsed; kept when it has at least 3 words of letters, is at most 300 characters long and does
  not read like a call signature (``getattr(obj, name) -> value``).
- Document: the unit's source lines (decorators included) with the docstring's lines removed,
  dedented by the column of the ``def``; kept when it has at least 3 non-blank lines. Documents
  longer than :data:`MAX_CODE_CHARS` (2,000) characters are cut at the last line break before that
  length (trailing blanks dropped), so that encoding stays fast (the default encoder reads at
  most 256 tokens anyway). A unit whose body is only its docstring is dropped.
- Duplicates: a pair is dropped when its query (case-folded, whitespace collapsed) or its exact
  code text already occurred in an earlier pair (walk order), so every query has one relevant
  document and every document one query.
- Splits: by module, so that no module spans two splits. A module's split is fixed by
  ``sha256(f"{seed}:{module}")`` read as a number in [0, 1): below ``test_fraction`` goes to
  ``test``, below ``test_fraction + dev_fraction`` to ``dev``, the rest to ``train``. The split
  sizes are therefore close to, not exactly, the fractions.

On CPython 3.11.7 this gives 2,575 pairs from 259 modules (train 1,984, dev 201, test 390 with
the default fractions and seed) in 3-7 s on a busy 2-core machine. The set depends on the
running Python's version, like the standard library itself.

Example:
    >>> from posneg.data.code_search import load_code_search
    >>> data = load_code_search(max_pairs=200)
    >>> len(data), sorted(data.counts())
    (200, ['dev', 'test', 'train'])
    >>> pair = data.pairs[0]
    >>> pair.id.startswith(pair.module + "."), pair.split in ("train", "dev", "test")
    (True, True)
    >>> queries, docs = data.queries("test"), data.corpus("test")  # docs[i] answers queries[i]
    >>> len(queries) == len(docs) == data.counts()["test"]
    True
"""

from __future__ import annotations

import ast
import functools
import gc
import hashlib
import numbers
import os
import re
import sysconfig
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MAX_CODE_CHARS",
    "SPLITS",
    "CodeSearchData",
    "CodeSearchPair",
    "load_code_search",
]

#: The split names, in order.
SPLITS = ("train", "dev", "test")

#: Documents are cut (at a line break) to at most this many characters.
MAX_CODE_CHARS = 2000
#: Queries longer than this many characters are dropped (usually a run-on first paragraph).
MAX_QUERY_CHARS = 300
#: The fewest words (runs of letters) a query must have.
MIN_QUERY_WORDS = 3
#: The fewest non-blank lines a document must have.
MIN_CODE_LINES = 3

# Folder names skipped anywhere in the tree.
_SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "lib2to3",
        "turtledemo",
        "ensurepip",
        "site-packages",
        "dist-packages",
        "pydoc_data",
        "lib-dynload",
        "__pycache__",
        "__phello__",
        "encodings",
    }
)
# Module files skipped (by file name).
_SKIP_FILES = frozenset({"__main__.py", "this.py", "antigravity.py", "__hello__.py"})

_WORD = re.compile(r"[A-Za-z]+")
_SENTENCE_END = re.compile(r"[.!?](?=\s)")
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "cf", "ie", "eg", "approx", "resp"})
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)\s*(->|$)")


@dataclass(frozen=True)
class CodeSearchPair:
    """One (query, code) pair.

    Attributes:
        id: the unit's dotted path, e.g. ``"json.decoder.JSONDecoder.decode"``; unique in a set.
        query: the first sentence of the docstring.
        code: the source without its docstring, dedented, at most :data:`MAX_CODE_CHARS` chars.
        module: the dotted module name (``json.decoder``); splits never share a module.
        split: ``"train"``, ``"dev"`` or ``"test"``.
    """

    id: str
    query: str
    code: str
    module: str
    split: str


@dataclass(frozen=True)
class CodeSearchData:
    """The pairs of all three splits, in walk order (sorted by file path, then source order).

    Attributes:
        pairs: every pair; ``split(name)`` selects one split.
    """

    pairs: tuple[CodeSearchPair, ...]

    def split(self, name: str) -> tuple[CodeSearchPair, ...]:
        """The pairs of split ``name`` (``"train"``, ``"dev"`` or ``"test"``), in walk order.

        Raises:
            ValueError: an unknown split name.
        """
        if name not in SPLITS:
            raise ValueError(
                f"CodeSearchData.split: name must be one of {', '.join(SPLITS)}; got {name!r}"
            )
        return tuple(p for p in self.pairs if p.split == name)

    def queries(self, split: str) -> list[str]:
        """The query texts of one split; ``queries(s)[i]`` is answered by ``corpus(s)[i]``."""
        return [p.query for p in self.split(split)]

    def corpus(self, split: str) -> list[str]:
        """The code documents of one split, aligned with :meth:`queries`."""
        return [p.code for p in self.split(split)]

    def ids(self, split: str) -> list[str]:
        """The pair ids of one split, aligned with :meth:`queries`."""
        return [p.id for p in self.split(split)]

    def counts(self) -> dict[str, int]:
        """Number of pairs per split, e.g. ``{"train": 2800, "dev": 400, "test": 800}``."""
        return {name: sum(p.split == name for p in self.pairs) for name in SPLITS}

    def __len__(self) -> int:
        return len(self.pairs)


def _unit(name: str) -> float:
    """A number in [0, 1) fixed by ``name`` (sha256, so independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _split_of(module: str, seed: int, dev_fraction: float, test_fraction: float) -> str:
    u = _unit(f"{seed}:{module}")
    if u < test_fraction:
        return "test"
    if u < test_fraction + dev_fraction:
        return "dev"
    return "train"


def _source_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of every kept ``*.py`` file under ``root``, sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in _SKIP_DIRS and not d.startswith(("config-", ".", "_")) and d.isidentifier()
        )
        rel = Path(dirpath).relative_to(root)
        for fname in sorted(filenames):
            if not fname.endswith(".py") or fname in _SKIP_FILES:
                continue
            stem = fname[:-3]
            if stem.startswith("test_") or stem.endswith("_test") or not stem.isidentifier():
                continue
            if stem.startswith("_") and stem != "__init__":  # private module
                continue
            parts = [*rel.parts, stem] if stem != "__init__" else list(rel.parts)
            if not parts:
                continue
            yield ".".join(parts), Path(dirpath) / fname


def _first_sentence(text: str) -> str:
    """``text`` up to and including the first sentence end that is not an abbreviation."""
    for match in _SENTENCE_END.finditer(text):
        words = text[: match.start()].split()
        last = words[-1].lower().lstrip("(") if words else ""
        if last in _ABBREVIATIONS or len(last) == 1:
            continue
        return text[: match.end()]
    return text


def _query(doc: str) -> str | None:
    """First sentence of the docstring's first paragraph, or None when it is not a usable query."""
    paragraph = doc.strip().split("\n\n", 1)[0]
    text = " ".join(paragraph.split())
    text = _first_sentence(text)
    if not text or len(text) > MAX_QUERY_CHARS or _SIGNATURE.match(text):
        return None
    if len(_WORD.findall(text)) < MIN_QUERY_WORDS:
        return None
    return text


def _cut(code: str) -> str:
    if len(code) <= MAX_CODE_CHARS:
        return code
    head = code[:MAX_CODE_CHARS]
    return (head[: head.rfind("\n")] if "\n" in head else head).rstrip()


def _code(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> str | None:
    """The unit's source with its docstring lines removed, dedented; None when not separable."""
    if len(node.body) < 2:
        return None  # nothing but the docstring
    doc_node = node.body[0]
    start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    end = node.end_lineno
    doc_start, doc_end = doc_node.lineno - 1, doc_node.end_lineno
    if end is None or doc_end is None or doc_start <= node.lineno - 1:
        return None  # docstring on the ``def`` line (one-liner): nothing to cut cleanly
    # the docstring must be alone on its lines
    if lines[doc_start][: doc_node.col_offset].strip() or (
        doc_node.end_col_offset is not None
        and lines[doc_end - 1][doc_node.end_col_offset :].strip() not in ("", ";")
    ):
        return None
    kept = lines[start:doc_start] + lines[doc_end:end]
    col = node.col_offset  # dedent by the ``def`` column (string lines at column 0 stay as is)
    code = "".join(line[col:] if not line[:col].strip() else line for line in kept).strip("\n")
    if sum(bool(line.strip()) for line in code.splitlines()) < MIN_CODE_LINES:
        return None
    return _cut(code)


def _units(
    tree: ast.Module,
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualified name, node) of public module-level functions and methods of public classes."""
    funcs = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, funcs) and not node.name.startswith("_"):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for sub in node.body:
                if isinstance(sub, funcs) and not sub.name.startswith("_"):
                    yield f"{node.name}.{sub.name}", sub


def _read(path: Path) -> str | None:
    try:
        with tokenize.open(path) as fh:
            return fh.read()
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None


@functools.lru_cache(maxsize=4)
def _scan(root: str) -> tuple[tuple[str, str, str, str], ...]:
    """Every kept (id, query, code, module) under ``root``, deduplicated, in walk order."""
    out: list[tuple[str, str, str, str]] = []
    seen_queries: set[str] = set()
    seen_code: set[str] = set()
    seen_ids: set[str] = set()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # parsing builds millions of AST nodes; the cyclic GC would double the time
    try:
        for module, path in _source_files(Path(root)):
            _scan_file(module, path, out, seen_queries, seen_code, seen_ids)
    finally:
        if gc_was_enabled:
            gc.enable()
    return tuple(out)


def _scan_file(
    module: str,
    path: Path,
    out: list[tuple[str, str, str, str]],
    seen_queries: set[str],
    seen_code: set[str],
    seen_ids: set[str],
) -> None:
    """Append the kept, not yet seen (id, query, code, module) units of one file to ``out``."""
    source = _read(path)
    if source is None:
        return
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError):
        return
    lines = [line + "\n" for line in source.split("\n")]  # as the parser counts lines (not \x0c)
    for qualname, node in _units(tree):
        doc = ast.get_docstring(node, clean=True)
        query = _query(doc) if doc else None
        code = _code(node, lines) if query is not None else None
        if query is None or code is None:
            continue
        uid = f"{module}.{qualname}"
        qkey = query.casefold()
        if qkey in seen_queries or code in seen_code or uid in seen_ids:
            continue
        seen_queries.add(qkey)
        seen_code.add(code)
        seen_ids.add(uid)
        out.append((uid, query, code, module))


def _check_fraction(name: str, value: object) -> float:
    fn = "load_code_search"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a real number; got {type(value).__name__}")
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{fn}: {name} must be in [0, 1); got {value!r}")
    return v


def load_code_search(
    *,
    max_pairs: int | None = None,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    root: Path | None = None,
) -> CodeSearchData:
    """Build the code-search pairs from the standard library source (or ``root``).

    Args:
        max_pairs: keep at most this many pairs, chosen by a hash of ``seed`` and the pair id
            (so the subset is stable and spread over all modules and splits), returned in walk
            order. ``None`` keeps every pair.
        dev_fraction: expected share of modules assigned to ``dev``.
        test_fraction: expected share of modules assigned to ``test``.
        seed: changes the module-to-split assignment and the ``max_pairs`` subset.
        root: the folder to scan instead of ``sysconfig.get_paths()["stdlib"]`` (module names are
            relative to it).

    Returns:
        A :class:`CodeSearchData`; the same arguments give the same pairs in every process.

    Raises:
        TypeError: a non-integer ``max_pairs`` or ``seed``, a non-real fraction.
        ValueError: a fraction outside [0, 1) or summing to 1 or more, ``max_pairs < 1``, a
            ``root`` that is not a folder, or no pair found under ``root``.
    """
    fn = "load_code_search"
    dev = _check_fraction("dev_fraction", dev_fraction)
    test = _check_fraction("test_fraction", test_fraction)
    if dev + test >= 1.0:
        raise ValueError(
            f"{fn}: dev_fraction + test_fraction must be < 1 (train needs modules); "
            f"got {dev_fraction!r} + {test_fraction!r}"
        )
    # the rule of posneg._checks.check_int (numpy integers accepted, bools rejected), kept
    # inline so that this module needs only the standard library
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{fn}: seed must be an int; got {type(seed).__name__}")
    seed = int(seed)
    if max_pairs is not None:
        if isinstance(max_pairs, bool) or not isinstance(max_pairs, numbers.Integral):
            raise TypeError(
                f"{fn}: max_pairs must be an int or None; got {type(max_pairs).__name__}"
            )
        max_pairs = int(max_pairs)
        if max_pairs < 1:
            raise ValueError(f"{fn}: max_pairs must be >= 1; got {max_pairs}")
    folder = Path(sysconfig.get_paths()["stdlib"]) if root is None else Path(root)
    if not folder.is_dir():
        raise ValueError(f"{fn}: root must be a folder of Python sources; got {str(folder)!r}")
    rows = _scan(str(folder.resolve()))
    if not rows:
        raise ValueError(f"{fn}: no usable (docstring, code) pair found under {str(folder)!r}")
    if max_pairs is not None and max_pairs < len(rows):
        order = sorted(range(len(rows)), key=lambda i: (_unit(f"{seed}:pick:{rows[i][0]}"), i))
        rows = tuple(rows[i] for i in sorted(order[:max_pairs]))
    pairs = tuple(
        CodeSearchPair(
            id=uid,
            query=query,
            code=code,
            module=module,
            split=_split_of(module, seed, dev, test),
        )
        for uid, query, code, module in rows
    )
    return CodeSearchData(pairs=pairs)
