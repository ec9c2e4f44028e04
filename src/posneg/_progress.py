"""Progress reporting for long library work, without printing from the library.

A long library function takes ``progress: bool | ProgressCallback = False``:

- ``False``: silent.
- ``True``: a ``tqdm.auto`` bar on stderr when tqdm is installed, silent otherwise.
- a callable ``progress(desc, done, total)``: called after every step with the running count;
  the CLI passes one that drives its rich bars.

Library code opens a :func:`tracker` and calls the returned ``advance(k)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class ProgressCallback(Protocol):
    """``progress(desc, done, total)``: ``done`` of ``total`` units of the task ``desc``."""

    def __call__(self, desc: str, done: int, total: int) -> None: ...


def check_progress(fn: str, progress: Any) -> None:
    """Raise TypeError unless ``progress`` is a bool or a callable."""
    if not isinstance(progress, bool) and not callable(progress):
        raise TypeError(
            f"{fn}: progress must be a bool or a callable (desc, done, total); "
            f"got {type(progress).__name__}"
        )


@contextmanager
def tracker(
    progress: bool | ProgressCallback, desc: str, total: int
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(k)``, which reports ``k`` more units of ``total`` done.

    Example:
        >>> seen = []
        >>> def report(desc, done, total):
        ...     seen.append((desc, done, total))
        >>> with tracker(report, "rows", 3) as advance:
        ...     advance(2)
        ...     advance(1)
        >>> seen
        [('rows', 0, 3), ('rows', 2, 3), ('rows', 3, 3)]
    """
    if progress is False:
        yield lambda k: None
        return
    if progress is True:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            yield lambda k: None
            return
        with tqdm(total=total, desc=desc, leave=False) as bar:
            yield lambda k: bar.update(k)
        return
    callback = progress
    state = {"done": 0}
    callback(desc, 0, total)

    def advance(k: int) -> None:
        state["done"] += int(k)
        callback(desc, state["done"], total)

    yield advance
