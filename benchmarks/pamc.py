"""Time and peak memory of PamC against the all-pairs Ncontrast loss it approximates.

One forward + backward of the contrastive term on random features z (N, 10) with
``requires_grad``, over the influence graph (order 2) of their symmetric row-normalised 3-NN
graph (:func:`posneg.losses.pamc.knn_graph`), 10 random clusters for PamC. Cases:

* ``pamc``: :func:`posneg.losses.pamc.pamc` (meta-node negatives, O(|E| d + k'^2 d));
* ``ncontrast``: posneg's :func:`~posneg.losses.pamc.ncontrast` (all N^2 pairs, row-tiled so
  memory is O(N * tile));
* ``ncontrast_dense``: the SCGC/Graph-MLP code as released (``get_feature_dis`` + ``Ncontrast``
  on a dense N x N adjacency), transcribed here; only up to ``--max-dense`` (default 4096).

Every (case, N) runs in a fresh subprocess; "extra MB" is ``ru_maxrss`` after the timed calls
minus ``ru_maxrss`` after the inputs were built (the graph included). Time: the median of up to
5 calls after one warm-up (one call when a call takes over 2 s). It prints the machine, versions,
the command and the ratios Ncontrast / PamC at each N. Not a test: nothing fails on a number.
GPU section (only with CUDA): the same at N = 16384 and 65536, ``torch.cuda.max_memory_allocated``.

Usage::

    python benchmarks/pamc.py                      # N = 1024, 4096, 16384 on CPU (+ GPU)
    python benchmarks/pamc.py --sizes 1000,2000 --threads 1
    python benchmarks/pamc.py --case pamc --n 4096 # one case (what the sweep runs)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

CASES = ("pamc", "ncontrast", "ncontrast_dense")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build(case: str, n: int, device: torch.device) -> Callable[[], None]:
    """The inputs of ``case`` at size ``n`` and a closure running forward + backward."""
    from posneg.losses.pamc import influence_adjacency, knn_graph, ncontrast, pamc

    g = torch.Generator().manual_seed(n)
    z0 = torch.randn(n, 10, generator=g)
    adj = influence_adjacency(knn_graph(z0, 3), 2).to(device)
    ids = torch.randint(0, 10, (n,), generator=g).to(device)
    z = z0.to(device).requires_grad_(True)
    if case == "ncontrast_dense":
        adj = adj.to_dense()

    def step() -> None:
        z.grad = None
        if case == "pamc":
            loss = pamc(z, adj, ids, tau=0.5)
        elif case == "ncontrast":
            loss = ncontrast(z, adj, tau=0.5)
        else:  # SCGC train.py: get_feature_dis + Ncontrast, as released
            x_dis = z @ z.T
            mask = torch.eye(n, device=z.device)
            x_sum = torch.sqrt(torch.sum(z**2, 1)).reshape(-1, 1)
            x_dis = (1 - mask) * (x_dis * (x_sum @ x_sum.T) ** (-1))
            e = torch.exp(0.5 * x_dis)
            loss = -torch.log(torch.sum(e * adj, 1) / torch.sum(e, 1) + 1e-8).mean()
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def run_case(case: str, n: int) -> dict[str, Any]:
    step = build(case, n, torch.device("cpu"))
    base = _maxrss_mb()
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    times = [first]
    if first < 2.0:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return {
        "case": case,
        "n": n,
        "seconds": statistics.median(times),
        "extra_mb": _maxrss_mb() - base,
    }


def _child(case: str, n: int, threads: int | None) -> dict[str, Any] | None:
    cmd = [sys.executable, __file__, "--case", case, "--n", str(n)]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        print(f"  {case} N={n}: failed ({type(err).__name__})", file=sys.stderr)
        return None
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _header() -> None:
    import numpy

    import posneg

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    print(f"machine : {cpu}, {os.cpu_count()} logical CPUs; load {os.getloadavg()[0]:.1f}")
    print(
        f"versions: python {platform.python_version()}, torch {torch.__version__}, "
        f"numpy {numpy.__version__}, posneg {posneg.__version__}"
    )
    print(f"command : {' '.join([os.path.basename(sys.argv[0]), *sys.argv[1:]])}")


def sweep(args: argparse.Namespace) -> None:
    _header()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    print(f"\n{'case':<16}{'N':>8}{'seconds':>12}{'extra MB':>12}")
    for n in sizes:
        for case in CASES:
            if case == "ncontrast_dense" and n > args.max_dense:
                continue
            r = _child(case, n, args.threads)
            if r is None:
                continue
            results[(case, n)] = r
            print(f"{case:<16}{n:>8}{r['seconds']:>12.4f}{r['extra_mb']:>12.1f}", flush=True)
    print("\nratios Ncontrast / PamC (time, extra memory):")
    for n in sizes:
        p = results.get(("pamc", n))
        for case in ("ncontrast", "ncontrast_dense"):
            c = results.get((case, n))
            if p and c:
                mem = c["extra_mb"] / max(p["extra_mb"], 0.1)
                t = c["seconds"] / p["seconds"]
                print(f"  N={n:>6} {case:<16} time {t:7.1f}x  memory {mem:7.1f}x")
    if torch.cuda.is_available():
        gpu_section()


def gpu_section() -> None:
    dev = torch.device("cuda")
    print(f"\nGPU: {torch.cuda.get_device_name(0)}")
    for n in (16384, 65536):
        row = []
        for case in ("pamc", "ncontrast"):
            step = build(case, n, dev)
            step()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            t0 = time.perf_counter()
            for _ in range(3):
                step()
            sec = (time.perf_counter() - t0) / 3
            mb = (torch.cuda.max_memory_allocated() - base) / 2**20
            row.append((sec, mb))
            print(f"  {case:<10} N={n:>6}  {sec * 1000:9.2f} ms  {mb:9.1f} MB")
        (tp, mp), (tn, mn) = row
        print(f"  N={n}: Ncontrast / PamC time {tn / tp:.1f}x, memory {mn / max(mp, 0.01):.1f}x")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sizes", default="1024,4096,16384")
    p.add_argument("--max-dense", type=int, default=4096)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--case", choices=CASES)
    p.add_argument("--n", type=int)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(run_case(args.case, args.n)))
        return 0
    sweep(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
