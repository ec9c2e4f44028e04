"""Files in and out, for every family: atomic writes, JSON Lines and Parquet records.

- **Atomic writes.** :func:`atomic_target` hands out a temporary path in the target's folder and
  renames it over the target only when the block succeeds; on any failure (``KeyboardInterrupt``
  included) the temporary file is deleted, so a reader never sees a half-written file and a
  failed run leaves no output. A new file is created with mode ``0o666`` and the kernel applies
  the process umask, so it has the permissions of a normally created file; a file that replaces
  an existing one keeps that file's mode (a ``0o600`` output stays ``0o600``). The umask is never
  read or changed (``os.umask`` is process-wide and not thread-safe).
- **Several files, one commit.** :func:`atomic_targets` writes several files under temporary
  names and renames them into place in order only when the block succeeds; if a rename fails,
  the files already replaced are put back from hard-link backups, so the targets are all new or
  all old. A process killed (``SIGKILL``) between two renames cannot roll back: callers that need
  to notice record a hash of the earlier files in the last one (``posneg mine``'s summary does).
- **Stale temporary files.** Temporary names are ``.<target>.<pid>-<12 hex>.tmp``; a writer that
  was killed leaves one behind. :func:`remove_stale_temps` deletes those whose process is gone.
- **Records.** :func:`iter_records` reads the named fields of JSON Lines or Parquet rows and
  names the file and the line (or row) in every error.

Arrays from ``.npz`` files are read by :mod:`posneg._npz`.

Every user-facing problem raises :class:`InputError` (a ``ValueError``) whose message names the
argument or flag, the file and, where there is one, the line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
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


_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[0-9a-f]{12}\.tmp$")


def _create_temp(folder: Path, name: str) -> Path:
    """Create an empty, new file next to the target; the kernel applies the umask to 0o666."""
    for _ in range(100):
        tmp = folder / f".{name}.{os.getpid()}-{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"atomic_target: no free temporary name in {folder}")  # pragma: no cover


def _rename(src: Path, dst: Path) -> None:
    """``os.replace``; one name so that tests can inject a failure between two renames."""
    os.replace(src, dst)


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _keep_mode(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the mode of the existing regular file ``target`` (if there is one)."""
    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISREG(st.st_mode):
        os.chmod(tmp, stat.S_IMODE(st.st_mode))


def _backup(target: Path) -> Path | None:
    """A hard link to the existing file ``target`` under a temporary name, or None."""
    if not target.is_file():
        return None
    for _ in range(100):
        link = target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp"
        try:
            os.link(target, link)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        except OSError:  # no hard links on this file system: no rollback for this file
            return None
        return link
    return None  # pragma: no cover


def _commit(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Rename each temporary file over its target, in order; all or nothing on an exception."""
    for tmp, target in pairs:
        _fsync(tmp)
        _keep_mode(tmp, target)
    if len(pairs) == 1:
        _rename(*pairs[0])
        return
    existed = [target.exists() for _, target in pairs]
    backups = [_backup(target) for _, target in pairs[:-1]] + [None]
    done = 0
    try:
        for tmp, target in pairs:
            _rename(tmp, target)
            done += 1
    except BaseException:
        for i in reversed(range(done)):  # put the earlier targets back as they were
            target, backup = pairs[i][1], backups[i]
            if backup is not None:
                _rename(backup, target)
                backups[i] = None
            elif not existed[i]:
                target.unlink(missing_ok=True)
        raise
    finally:
        for backup in backups:
            if backup is not None:
                backup.unlink(missing_ok=True)


@contextmanager
def atomic_targets(*paths: str | os.PathLike[str]) -> Iterator[tuple[Path, ...]]:
    """Temporary paths for several files, renamed over ``paths`` in order when the block succeeds.

    One commit: on a failure inside the block no target changes and every temporary file is
    deleted; if a rename fails, the targets already renamed are restored from hard-link backups
    (where the file system has hard links), so the targets are all new or all as they were. A
    kill between two renames leaves the earlier targets new and the later ones old. Existing
    targets keep their mode.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_targets(folder / "data.txt", folder / "data.sum") as (data, total):
        ...     _ = data.write_text("1 2 3")
        ...     _ = total.write_text("6")
        >>> sorted(p.name for p in folder.iterdir())
        ['data.sum', 'data.txt']
    """
    targets = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmps.append(_create_temp(target.parent, target.name))
        yield tuple(tmps)
        _commit(list(zip(tmps, targets, strict=True)))
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path in ``path``'s folder, renamed over ``path`` when the block succeeds.

    The temporary file is deleted on any failure, ``KeyboardInterrupt`` included. A new file
    has the permissions of a normally created file (``0o666`` less the umask, applied by the
    kernel); a file that replaces an existing one keeps that file's mode.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_target(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    with atomic_targets(path) as (tmp,):
        yield tmp


def _process_gone(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # ours, or no safe liveness probe (Windows)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):
        return False
    return False


def remove_stale_temps(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder``; return their paths.

    A temporary file is ``.<target>.<pid>-<12 hex>.tmp`` (this module's names). It is stale when
    process ``pid`` no longer runs on this machine; names without a pid (from posneg versions
    before 0.2) are always stale. With ``name``, only the temporary files of that target are
    considered. Nothing else is ever deleted.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / ".out.jsonl.0123456789ab.tmp").write_text("half")
        >>> [p.name for p in remove_stale_temps(folder, "out.jsonl")]
        ['.out.jsonl.0123456789ab.tmp']
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or (name is not None and m["name"] != name):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        if m["pid"] is not None and not _process_gone(int(m["pid"])):
            continue
        Path(entry.path).unlink(missing_ok=True)
        removed.append(Path(entry.path))
    return removed


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


_BOM = "\ufeff"


def _iter_jsonl(path: Path, fields: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
    first = True  # the first non-blank line: a BOM is skipped, a JSON array is named as such
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            where = f"{path}: line {n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{where}: not UTF-8 text") from None
            if n == 1 and line.startswith(_BOM):  # a UTF-8 byte order mark: accepted
                line = line[len(_BOM) :]
            if not line.strip():
                continue
            if first and line.lstrip().startswith("["):
                raise InputError(
                    f"{where}: this is a JSON array, not JSON Lines (one JSON object per line); "
                    "convert it first, e.g. jq -c '.[]' in.json > out.jsonl"
                )
            first = False
            try:
                record = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: bad JSON ({exc.msg} at column {exc.colno})") from None
            except RecursionError:
                raise InputError(f"{where}: bad JSON (nested too deeply)") from None
            except ValueError as exc:  # e.g. an integer of more than 4300 digits
                raise InputError(f"{where}: bad JSON ({str(exc)[:200]})") from None
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

    Blank JSON Lines lines are skipped, and so is a UTF-8 byte order mark at the start of the
    file. Each item is ``(where, values)`` where ``where`` names
    the file and the line (``data.jsonl: line 7``) or row, for the caller's own messages.

    Raises:
        InputError: naming ``flag`` or the file and line: a missing file, an unsupported suffix,
            text that is not UTF-8, bad JSON (nesting too deep for the parser included), a JSON
            array file given as JSON Lines, a record that is not an object, a missing field, an
            unreadable Parquet file.

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
