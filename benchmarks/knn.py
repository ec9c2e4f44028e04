"""Nearest-neighbour search: posneg's exact core and ``knn="approx"`` against faiss.

Two sections, run in this process on the same inputs:

- ``speed``: the two exact users of :mod:`posneg._knn`, median and minimum of ``--reps`` calls
  after one warm-up, all cases alternated call by call: the over-samplers' squared-L2 search
  (``posneg.oversampling._neighbors.kneighbors``, every row a query, itself excluded; default
  N=20000, D=32, k=5, Gaussian) and mining's inner-product ``ExactIndex.search`` (default
  20000 queries x 20000 rows, D=64, k=100, Gaussian). ``--baseline SRC`` also loads those two
  files from an older source tree (e.g. ``git archive <commit> src | tar -x -C /tmp/old``) and
  times them alternately with the current ones, after checking that their results are equal.
- ``ivf``: approximate L2 search at matched recall. faiss ``IndexIVFFlat`` (nlist =
  round(sqrt(N)), faiss' k-means) over an ``nprobe`` sweep, and posneg's ``knn="approx"`` over
  an ``n_probe`` sweep (before issue 10 a home-made IVF; since, faiss ``IndexIVFFlat``), each
  with its recall@k against the exact neighbours (self excluded) and its time (index build
  included). Data: Gaussian (N=20000, D=32, nlist = n_lists = 141) and scikit-learn's digits
  (1797 x 64, nlist = n_lists = 42).

Examples::

    python benchmarks/knn.py                       # both sections
    python benchmarks/knn.py --section speed --reps 5 --baseline /tmp/old/src
    python benchmarks/knn.py --section ivf --probes 1,2,4,8,16,32

Timings are wall-clock seconds; ``--threads`` sets torch's and faiss' thread counts.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oversampling import cpu_name


def machine() -> list[str]:
    """Machine, versions and command lines."""
    import sklearn

    import posneg

    try:
        import faiss

        fv = faiss.__version__
    except ImportError:
        fv = "not installed"
    cpu = cpu_name()
    return [
        f"- machine: {platform.platform()}, CPU {cpu}, {os.cpu_count()} logical cores, "
        f"torch threads {torch.get_num_threads()}",
        f"- load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}",
        f"- versions: python {platform.python_version()}, posneg {posneg.__version__}, torch "
        f"{torch.__version__}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"faiss {fv}",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
    ]


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Median wall-clock seconds of ``reps`` calls after one warm-up, and the last result."""
    out = fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _load_file(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--baseline: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def section_speed(args: argparse.Namespace) -> None:
    """Exact L2 kneighbors and exact inner-product ExactIndex.search (optionally beside a
    baseline source tree's, alternated call by call in this process)."""
    from posneg.mining.index import ExactIndex
    from posneg.oversampling._neighbors import kneighbors

    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, args.d, generator=g, dtype=torch.float64)
    docs = torch.randn(args.docs, args.dim, generator=g)
    queries = torch.randn(args.queries, args.dim, generator=g)
    index = ExactIndex(metric="ip")
    index.add(docs)
    cases: dict[str, Callable[[], Any]] = {
        "kneighbors": lambda: kneighbors(x, args.k),
        "search": lambda: index.search(queries, args.topk),
    }
    if args.baseline is not None:
        root = Path(args.baseline) / "posneg"
        old_nb = _load_file("_baseline_neighbors", root / "oversampling" / "_neighbors.py")
        old_ix = _load_file("_baseline_index", root / "mining" / "index.py")
        old_index = old_ix.ExactIndex(metric="ip")
        old_index.add(docs)
        cases["kneighbors (baseline)"] = lambda: old_nb.kneighbors(x, args.k)
        cases["search (baseline)"] = lambda: old_index.search(queries, args.topk)
        same_nn = torch.equal(cases["kneighbors"](), cases["kneighbors (baseline)"]())
        new_s, old_s = cases["search"](), cases["search (baseline)"]()
        same_ix = torch.equal(new_s[0], old_s[0]) and torch.equal(new_s[1], old_s[1])
        print(f"- identical results to the baseline: kneighbors {same_nn}, search {same_ix}")
    order = sorted(cases, key=lambda name: (name.split()[0] != "kneighbors", name))
    times: dict[str, list[float]] = {name: [] for name in order}
    for fn in cases.values():  # warm-up
        fn()
    for rep in range(args.reps):  # alternated, so that load changes hit every case alike
        for name in order if rep % 2 == 0 else order[::-1]:
            fn = cases[name]
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    print("| search | median s | min s |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        what = (
            f"kneighbors exact L2, N={args.n}, D={args.d}, k={args.k}, float64"
            if name.startswith("kneighbors")
            else f"ExactIndex.search ip, {args.queries} x {args.docs}, D={args.dim}, "
            f"k={args.topk}, float32"
        )
        tag = " (baseline)" if name.endswith("(baseline)") else ""
        print(f"| {what}{tag} | {statistics.median(ts):.3f} | {min(ts):.3f} |")


def _digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return np.asarray(load_digits().data, dtype=np.float64)


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    hits = (found[:, :, None] == exact[:, None, :]).any(2)
    return float(hits.mean())


def _faiss_ivf(x: np.ndarray, k: int, nprobe: int) -> np.ndarray:
    import faiss

    xf = np.ascontiguousarray(x, dtype=np.float32)
    nlist = max(1, round(float(np.sqrt(xf.shape[0]))))
    quantizer = faiss.IndexFlatL2(xf.shape[1])
    index = faiss.IndexIVFFlat(quantizer, xf.shape[1], nlist, faiss.METRIC_L2)
    index.train(xf)
    index.add(xf)
    index.nprobe = nprobe
    _, found = index.search(xf, k + 1)
    rows = np.arange(xf.shape[0])[:, None]
    # drop the query itself (or the last column when it was not returned)
    is_self = found == rows
    is_self[~is_self.any(1), -1] = True
    return found[~is_self].reshape(xf.shape[0], k)


def section_ivf(args: argparse.Namespace) -> None:
    """faiss IVF against posneg's knn='approx' at matched recall."""
    from posneg.oversampling._neighbors import kneighbors

    probes = [int(v) for v in args.probes.split(",") if v]
    g = torch.Generator().manual_seed(0)
    sets = {
        f"gauss {args.n} x {args.d}": torch.randn(args.n, args.d, generator=g).double().numpy(),
        "digits (1797 x 64)": _digits(),
    }
    print("| data | method | n_probe | recall@k | seconds |")
    print("|---|---|---:|---:|---:|")
    for name, x in sets.items():
        xt = torch.from_numpy(x)
        exact = kneighbors(xt, args.k).numpy()
        n_lists = max(1, round(float(np.sqrt(x.shape[0]))))
        for p in probes:
            t, found = timed(partial(_faiss_ivf, x, args.k, p), args.reps)
            print(f"| {name} | faiss IndexIVFFlat | {p} | {_recall(found, exact):.3f} | {t:.3f} |")
        for p in probes:
            call = partial(
                kneighbors,
                xt,
                args.k,
                method="approx",
                n_lists=n_lists,
                n_probe=p,
                generator=torch.Generator(),
            )
            t, found_t = timed(call, args.reps)
            rec = _recall(found_t.numpy(), exact)
            print(f"| {name} | posneg knn='approx' | {p} | {rec:.3f} | {t:.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--section", default="speed,ivf", help="speed, ivf, or both")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--n", type=int, default=20000, help="rows of the L2 searches")
    p.add_argument("--d", type=int, default=32, help="features of the L2 searches")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--docs", type=int, default=20000)
    p.add_argument("--queries", type=int, default=20000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--topk", type=int, default=100)
    p.add_argument("--probes", default="1,2,4,8,16,32")
    p.add_argument(
        "--baseline",
        default=None,
        help="a source tree (the src/ folder of an older checkout) whose kneighbors and "
        "ExactIndex are timed beside the installed ones",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    print("\n".join(machine()))
    sections = args.section.split(",")
    if "speed" in sections:
        section_speed(args)
    if "ivf" in sections:
        section_ivf(args)


if __name__ == "__main__":
    main()
