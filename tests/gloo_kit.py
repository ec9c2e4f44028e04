"""Running a test's worker on several gloo ranks (the distributed tests share this).

``run_ranks(worker, world, out, files)`` starts ``worker(rank, world, port, out)`` in ``world``
spawned processes and waits until they end. A rank that raises fails the test with its
traceback. torch's gloo teardown (``destroy_process_group``) was seen to hang now and then on
torch 2.4 and 2.6 after every collective had returned on every rank (docs/versions.md): once
every rank has written its result file, the run gets a grace period and the stragglers are then
stopped rather than failing the test. A run that writes nothing by the deadline fails.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

__all__ = ["free_port", "run_ranks", "run_torch_ranks", "save_rank_result"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for ``MASTER_PORT`` / ``init_method``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(
    worker: Callable[[int, int, int, str], None],
    world: int,
    out: Path,
    files: Sequence[Path],
    *,
    deadline_s: float = 90.0,
    grace_s: float = 10.0,
) -> None:
    """Run ``worker(rank, world, port, str(out))`` on ``world`` spawned ranks until ``files`` exist.

    ``worker`` must be a module-level function (spawn pickles it by name).
    """
    ctx = mp.start_processes(
        worker, args=(world, free_port(), str(out)), nprocs=world, join=False,
        start_method="spawn",
    )  # fmt: skip
    deadline = time.monotonic() + deadline_s
    written_at: float | None = None
    while not ctx.join(timeout=0.5):  # raises with the child's traceback if a rank failed
        if written_at is None and all(Path(f).exists() for f in files):
            written_at = time.monotonic()
        late = written_at is not None and time.monotonic() > written_at + grace_s
        if late or time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            if not late:
                pytest.fail(f"{world}-rank gloo run did not finish within {deadline_s:.0f} s")
            break


def save_rank_result(results: dict[str, Any], out_dir: str, rank: int) -> None:
    """Write a rank's results to ``out_dir/rank{rank}.pt`` whole or not at all (rename)."""
    partial = Path(out_dir) / f"rank{rank}.part"
    torch.save(results, partial)
    partial.replace(Path(out_dir) / f"rank{rank}.pt")


def run_torch_ranks(
    worker: Callable[[int, int, int, str], None],
    world: int,
    out: Path,
    *,
    deadline_s: float = 90.0,
    grace_s: float = 10.0,
) -> list[dict[str, Any]]:
    """:func:`run_ranks` for workers that end with :func:`save_rank_result`: the ranks' results,
    in rank order."""
    files = [Path(out) / f"rank{r}.pt" for r in range(world)]
    run_ranks(worker, world, out, files, deadline_s=deadline_s, grace_s=grace_s)
    return [torch.load(f, weights_only=True) for f in files]
