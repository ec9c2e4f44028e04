"""Files in and out, for every family: atomic writes, JSON Lines and Parquet records.

- **Atomic writes.** :func:`atomic_target` hands out a temporary path in the target's folder and
  renames it over the target only when the block succeeds; on any failure (``KeyboardInterrupt``
  included) the temporary file is deleted, so a reader never sees a half-written file and a
  failed run leaves no output. The temporary file is created with mode ``0o666`` and the kernel
  applies the process umask, so the result has the permissions of a normally created file. The
  umask is never read or changed (``os.umask`` is process-wide and not thread-safe).
- **Records.** :func:`iter_records` reads the named fields of JSON Lines or Parquet rows and
  names the file and the line (or row) in every error.

Arrays from ``.npz`` files are read by :mod:`posneg._npz`.

Every user-facing problem raises :class:`InputError` (a ``ValueError``) whose message names the
argument or flag, the file and, where there is one, the line.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: Suffixes read as JSON Lines.
JSONL_SUFFIXES: tuple[str, ...] = (".jsonl", ".ndjson", ".json")


class InputError(ValueError):
    """A bad file or value given by the user; the CLI prints its message as one line."""


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------


def _create_temp(folder: Path, name: str) -> Path:
    """Create an empty, new file next to the target; the kernel applies the umask to 0o666."""
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"atomic_target: no free temporary name in {folder}")  # pragma: no cover


@contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path in ``path``'s folder, renamed over ``path`` when the block succeeds.

    The temporary file is deleted on any failure, ``KeyboardInterrupt`` included. Its permissions
    are those of a normally created file (``0o666`` less the umask, applied by the kernel).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_target(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path.parent, path.name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open_text(path: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """A UTF-8 text file (``\\n`` line ends) written under a temporary name, synced, renamed."""
    with atomic_target(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_target(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomic UTF-8 text write; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# records: JSON Lines and Parquet
# ---------------------------------------------------------------------------------------------


def type_name(value: Any) -> str:
    """``null`` for None, else the Python type's name (for messages about JSON values)."""
    return "null" if value is None else type(value).__name__


def record_kind(path: str | os.PathLike[str], flag: str) -> str:
    """``"jsonl"`` or ``"parquet"`` from the suffix of an existing file.

    Raises:
        InputError: naming ``flag``: no such file, not a file, or an unsupported suffix.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{flag}: file not found: {path}")
    if not path.is_file():
        raise InputError(f"{flag}: not a file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise InputError(
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
                raise InputError(f"{where}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: bad JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise InputError(f"{where}: expected a JSON object; got {type_name(record)}")
            for f in fields:
                if f not in record:
                    raise InputError(f"{where}: missing field {f!r}")
            yield where, [record[f] for f in fields]


def _iter_parquet(path: Path, fields: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            f"{path}: reading Parquet needs pyarrow (pip install 'posneg[mining]'), "
            "or use JSON Lines"
        ) from None
    try:
        schema = pq.read_schema(path)
        names = list(schema.names)
        for f in fields:
            if f not in names:
                raise InputError(
                    f"{path}: missing field {f!r} (columns: {', '.join(names) or 'none'})"
                )
        table = pq.read_table(path, columns=list(fields))
    except pa.ArrowException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable Parquet file ({first})") from None
    columns = [table.column(f).to_pylist() for f in fields]
    for n, values in enumerate(zip(*columns, strict=True), start=1):
        yield f"{path}: row {n}", list(values)


def iter_records(
    path: str | os.PathLike[str], fields: Sequence[str], *, flag: str
) -> Iterator[tuple[str, list[Any]]]:
    """The values of ``fields`` in every record of a JSON Lines or Parquet file.

    Blank JSON Lines lines are skipped. Each item is ``(where, values)`` where ``where`` names
    the file and the line (``data.jsonl: line 7``) or row, for the caller's own messages.

    Raises:
        InputError: naming ``flag`` or the file and line: a missing file, an unsupported suffix,
            text that is not UTF-8, bad JSON, a record that is not an object, a missing field,
            an unreadable Parquet file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "q.jsonl"
        >>> _ = p.write_text('{"id": 1, "text": "a"}\\n')
        >>> list(iter_records(p, ["id", "text"], flag="--queries"))  # doctest: +ELLIPSIS
        [('...q.jsonl: line 1', [1, 'a'])]
    """
    path = Path(path)
    if record_kind(path, flag) == "parquet":
        return _iter_parquet(path, fields)
    return _iter_jsonl(path, fields)
