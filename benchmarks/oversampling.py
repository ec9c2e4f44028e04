"""SMOTE speed and peak memory: posneg against imbalanced-learn, in the same run.

Default workload (issue 5): 100k minority + 400k majority rows x 32 features, k = 5,
``sampling_strategy="auto"`` (300k synthetic rows). Every measurement runs in its own subprocess,
so its peak resident memory (``VmHWM``: ``ru_maxrss`` of its own address space) is its own; data
are regenerated there from a fixed seed, identically for every method.

Methods:

- ``imblearn``: ``imblearn.over_sampling.SMOTE(k_neighbors=5).fit_resample`` (numpy).
- ``exact``: ``posneg.oversampling.SMOTE(k_neighbors=5).fit_resample`` (numpy in, numpy out;
  certified exact neighbours).
- ``approx-P``: the same with ``knn="approx", n_probe=P`` (faiss ``IndexIVFFlat``, needs
  faiss-cpu); its neighbour recall against the exact neighbours of the minority class is measured
  in the same subprocess, after the timed call. (``benchmarks/knn.py`` compares the IVF alone.)
- ``faiss`` (``--faiss``): ``knn="faiss"`` (faiss ``IndexFlatL2``), needs faiss-cpu.

GPU section (only where CUDA is available): posneg SMOTE on a 100k x 32 minority class on the GPU,
end to end (input on the device, output on the device, synchronised), mean of 5 calls after a
warm-up; beside it the exact kNN alone and a plain ``torch.cdist`` + ``topk`` kNN.

Examples::

    python benchmarks/oversampling.py                       # the full issue workload
    python benchmarks/oversampling.py --scale 0.1           # 10k + 40k rows
    python benchmarks/oversampling.py --minority 20000 --majority 80000 --probes 4,8
    python benchmarks/oversampling.py --markdown out.md     # also write a markdown section
    python benchmarks/oversampling.py --curve --threads 1 --skip-imblearn-above 100000
    python benchmarks/oversampling.py --gpu-only            # the GPU section alone

Timings are wall-clock seconds of ``fit_resample`` only (data generation and imports excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SEED = 0


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def make_data(n_min: int, n_maj: int, d: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Float64 rows: majority first, then minority (label 1).

    ``gauss``: i.i.d. standard normal rows, the minority shifted by 0.5 (no structure: the
    hardest case for approximate search). ``clustered``: 64 Gaussian clusters in an 8-D latent
    space mapped linearly to ``d`` dimensions plus isotropic noise 0.3 (low intrinsic dimension,
    like learned features).
    """
    rng = np.random.default_rng(SEED)
    n = n_min + n_maj
    if kind == "gauss":
        X = rng.standard_normal((n, d))
        X[n_maj:] += 0.5
    elif kind == "clustered":
        centres = rng.standard_normal((64, 8)) * 3.0
        z = centres[rng.integers(0, 64, n)] + rng.standard_normal((n, 8))
        X = z @ rng.standard_normal((8, d)) + 0.3 * rng.standard_normal((n, d))
    else:
        raise SystemExit(f"unknown --data {kind!r}")
    y = np.concatenate([np.zeros(n_maj, dtype=np.int64), np.ones(n_min, dtype=np.int64)])
    return X, y


def _rss_mb() -> float:
    """Peak resident memory of this process so far, MB.

    ``VmHWM`` (the high-water mark of this process's own address space) where ``/proc`` has it:
    ``getrusage(...).ru_maxrss`` is the same figure but on Linux also carries the parent's peak
    across ``fork``/``exec``, which would give every subprocess the driver's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------------------------
# one measurement (runs in a subprocess)
# ---------------------------------------------------------------------------------------------


def _warm(out: dict[str, Any], call: Any, reps: int) -> None:
    """``reps`` more calls after the first (timed cold): their median wall and CPU seconds."""
    if reps <= 0:
        return
    walls, cpus = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    out["warm_seconds"] = float(np.median(walls))
    out["warm_cpu_seconds"] = float(np.median(cpus))


def worker(args: argparse.Namespace) -> dict[str, Any]:
    method = args.worker
    X, y = make_data(args.minority, args.majority, args.features, args.data)
    out: dict[str, Any] = {"method": method, "data": args.data}
    if method == "imblearn":
        from imblearn.over_sampling import SMOTE as ImbSMOTE

        sampler: Any = ImbSMOTE(k_neighbors=args.k, random_state=SEED)
        base = _rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        X_res, _ = sampler.fit_resample(X, y)
        out["seconds"] = time.perf_counter() - t0
        out["cpu_seconds"] = time.process_time() - c0
        out["peak_rss_mb"] = _rss_mb()
        _warm(out, lambda: sampler.fit_resample(X, y), args.reps)
    else:
        import torch

        from posneg.oversampling import SMOTE
        from posneg.oversampling._neighbors import kneighbors

        if method == "exact":
            kw: dict[str, Any] = {}
        elif method == "faiss":
            kw = {"knn": "faiss"}
        elif method.startswith("approx-"):
            kw = {"knn": "approx", "n_probe": int(method.split("-")[1])}
        else:
            raise SystemExit(f"unknown worker {method!r}")
        sampler = SMOTE(k_neighbors=args.k, **kw)
        base = _rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        X_res, _ = sampler.fit_resample(X, y, generator=torch.Generator().manual_seed(SEED))
        out["seconds"] = time.perf_counter() - t0
        out["cpu_seconds"] = time.process_time() - c0
        out["peak_rss_mb"] = _rss_mb()
        _warm(
            out,
            lambda: sampler.fit_resample(X, y, generator=torch.Generator().manual_seed(SEED)),
            args.reps,
        )
        if method.startswith("approx-"):  # recall, after the timed call (not timed)
            minority = torch.from_numpy(X[y == 1])
            got = kneighbors(
                minority,
                args.k,
                method="approx",
                n_probe=kw["n_probe"],
                generator=torch.Generator().manual_seed(SEED),
            )
            truth = kneighbors(minority, args.k)
            out["recall"] = float((got.unsqueeze(2) == truth.unsqueeze(1)).any(2).float().mean())
    out.setdefault("peak_rss_mb", _rss_mb())
    out["base_rss_mb"] = base
    out["rows_out"] = int(X_res.shape[0])
    return out


def run_worker(
    method: str, args: argparse.Namespace, data: str, timeout: float | None = None
) -> dict[str, Any]:
    cmd = [
        sys.executable, __file__, "--worker", method,
        "--minority", str(args.minority), "--majority", str(args.majority),
        "--features", str(args.features), "--k", str(args.k), "--data", data,
        "--reps", str(getattr(args, "reps", 0)),
    ]  # fmt: skip
    env = dict(os.environ)
    if getattr(args, "threads", None):
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.threads)
    print(f"  running {method} on {data} ...", flush=True)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, env=env, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        print(f"    timed out after {timeout:.0f} s", flush=True)
        return {"method": method, "data": data, "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return {"method": method, "data": data, "error": proc.stderr.strip().splitlines()[-1]}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"    {result['seconds']:.2f} s ({result['cpu_seconds']:.2f} s CPU), "
        f"peak RSS {result['peak_rss_mb']:.0f} MB "
        f"(+{result['peak_rss_mb'] - result['base_rss_mb']:.0f} MB over inputs and imports)"
        + (f", recall {result['recall']:.4f}" if "recall" in result else ""),
        flush=True,
    )
    return result


# ---------------------------------------------------------------------------------------------
# curve: exact SMOTE against imbalanced-learn from 1k to 1M minority rows
# ---------------------------------------------------------------------------------------------

CURVE_SIZES = "1000,3000,10000,30000,100000,300000,1000000"


def curve(args: argparse.Namespace) -> list[str]:
    """posneg exact SMOTE and imbalanced-learn at each minority size (majority 4x), each call in
    its own subprocess; returns the markdown lines (header, table, skipped sizes)."""
    sizes = [int(v) for v in args.curve_sizes.split(",") if v]
    rows: list[str] = [
        "| minority rows | posneg s (CPU s) | imbalanced-learn s (CPU s) | ratio wall | ratio CPU "
        "| load (1 min) |",
        "|---|---|---|---|---|---|",
    ]
    skipped: list[str] = []
    results: list[dict[str, Any]] = []
    for n in sizes:
        args.minority, args.majority = n, 4 * n
        args.reps = args.warm_reps if n <= args.warm_below else 0
        got: dict[str, dict[str, Any]] = {}
        for method, limit in (
            ("exact", args.skip_posneg_above),
            ("imblearn", args.skip_imblearn_above),
        ):
            if limit and n > limit:
                skipped.append(f"{method} at {n:,}")
                continue
            print(f"minority {n:,}:", flush=True)
            got[method] = run_worker(method, args, args.data.split(",")[0], args.timeout)
            got[method]["minority"] = n
            results.append(got[method])
        load = os.getloadavg()[0]

        def cell(r: dict[str, Any] | None) -> str:
            if r is None:
                return "skipped"
            if "error" in r:
                return r["error"]
            cold = f"{r['seconds']:.3f} ({r['cpu_seconds']:.3f})"
            if "warm_seconds" in r:
                return f"{cold}; warm {r['warm_seconds']:.3f} ({r['warm_cpu_seconds']:.3f})"
            return cold

        def ratio(key: str, got: dict[str, dict[str, Any]] = got) -> str:
            a, b = got.get("exact"), got.get("imblearn")
            if not a or not b or "error" in a or "error" in b:
                return "n/a"
            text = f"{b[key] / a[key]:.2f}x"
            if "warm_" + key in a and "warm_" + key in b:
                text += f"; warm {b['warm_' + key] / a['warm_' + key]:.2f}x"
            return text

        rows.append(
            f"| {n:,} | {cell(got.get('exact'))} | {cell(got.get('imblearn'))} | "
            f"{ratio('seconds')} | {ratio('cpu_seconds')} | {load:.1f} |"
        )
    lines = [
        f"- curve: minority n, majority 4n, x {args.features} features (float64), k={args.k}, "
        f"defaults, data {args.data.split(',')[0]}; threads per subprocess: "
        f"{args.threads or 'default'}; ratio = imbalanced-learn time / posneg time; cold = the "
        f"first call of a fresh process, warm = median of {args.warm_reps} more calls (sizes up "
        f"to {args.warm_below:,})",
        "",
        *rows,
        "",
        "skipped: " + (", ".join(skipped) if skipped else "none"),
    ]
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return lines


# ---------------------------------------------------------------------------------------------
# GPU section
# ---------------------------------------------------------------------------------------------


def gpu_section(args: argparse.Namespace) -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return ["GPU section skipped: CUDA is not available on this machine."]
    from posneg.oversampling import SMOTE
    from posneg.oversampling._neighbors import kneighbors

    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(SEED)
    n_min, n_maj, d, k = args.gpu_minority, args.gpu_majority, args.features, args.k
    X = torch.randn(n_min + n_maj, d, device=dev, generator=g)
    y = torch.cat([torch.zeros(n_maj, dtype=torch.int64), torch.ones(n_min, dtype=torch.int64)])
    y = y.to(dev)
    Xm = X[n_maj:].contiguous()

    def timed(fn: Any, reps: int = 5) -> float:
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / reps

    def cdist_topk() -> torch.Tensor:
        out = []
        for s in range(0, n_min, 8192):
            dist = torch.cdist(Xm[s : s + 8192], Xm)
            out.append(dist.topk(k + 1, largest=False).indices[:, 1:])
        return torch.cat(out)

    smote = SMOTE(k_neighbors=k)
    rows = [
        ("posneg SMOTE fit_resample (exact kNN + synthesis)",
         timed(lambda: smote.fit_resample(X, y, generator=g))),
        ("posneg exact kNN alone", timed(lambda: kneighbors(Xm, k))),
        ("torch.cdist + topk kNN (chunks of 8192)", timed(cdist_topk)),
        ("posneg SMOTE knn='approx' (faiss IVF on the CPU, n_probe=4)",
         timed(lambda: SMOTE(k_neighbors=k, knn="approx", n_probe=4).fit_resample(
             X, y, generator=g))),
    ]  # fmt: skip
    lines = [
        f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA "
        f"{torch.version.cuda}; {n_min} minority + {n_maj} majority rows x {d}, k={k}; mean "
        "of 5 calls after a warm-up, synchronised.",
        "",
        "| what | ms |",
        "|---|---|",
    ]
    lines += [f"| {name} | {sec * 1e3:.1f} |" for name, sec in rows]
    return lines


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


def _recall(r: dict[str, Any]) -> str:
    if "recall" in r:
        return f"{r['recall']:.4f}"
    return "1 (exact)" if r["method"] in ("exact", "imblearn", "faiss") else ""


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> list[str]:
    import sklearn
    import torch

    import posneg

    try:
        import imblearn

        imb = imblearn.__version__
    except ImportError:
        imb = "not installed"
    cpu = cpu_name()
    return [
        f"- machine: {platform.platform()}, CPU {cpu}, {os.cpu_count()} logical cores, "
        f"torch threads {torch.get_num_threads()}",
        f"- load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}",
        f"- versions: python {platform.python_version()}, posneg {posneg.__version__}, torch "
        f"{torch.__version__}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"imbalanced-learn {imb}",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minority", type=int, default=100_000)
    p.add_argument("--majority", type=int, default=400_000)
    p.add_argument("--scale", type=float, default=1.0, help="multiply both row counts")
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--data", default="gauss", help="gauss, clustered, or both: gauss,clustered")
    p.add_argument("--probes", default="4,8,16", help="n_probe values for knn='approx'")
    p.add_argument("--skip-imblearn", action="store_true")
    p.add_argument("--faiss", action="store_true", help="also time knn='faiss'")
    p.add_argument("--gpu-minority", type=int, default=100_000)
    p.add_argument("--gpu-majority", type=int, default=None, help="default: 4x --gpu-minority")
    p.add_argument("--gpu-only", action="store_true", help="only the GPU section")
    p.add_argument("--curve", action="store_true", help="posneg vs imbalanced-learn, 1k..1M")
    p.add_argument("--curve-sizes", default=CURVE_SIZES, help="minority sizes of --curve")
    p.add_argument("--skip-imblearn-above", type=int, default=0, help="--curve: 0 = none")
    p.add_argument("--skip-posneg-above", type=int, default=0, help="--curve: 0 = none")
    p.add_argument("--timeout", type=float, default=None, help="seconds per subprocess")
    p.add_argument("--threads", type=int, default=0, help="threads per subprocess (0: default)")
    p.add_argument("--reps", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument(
        "--warm-reps", type=int, default=3,
        help="--curve: calls after the cold one, up to --warm-below rows (median reported)",
    )  # fmt: skip
    p.add_argument("--warm-below", type=int, default=30_000)
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write a markdown section here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.gpu_majority is None:
        args.gpu_majority = 4 * args.gpu_minority
    if args.gpu_only:
        print("\n".join(gpu_section(args)))
        return
    args.minority = int(args.minority * args.scale)
    args.majority = int(args.majority * args.scale)
    header = machine()
    print("\n".join(header))
    if args.curve:
        lines = curve(args)
        lines += ["", f"- load average at end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}"]
        print("\n".join(lines))
        if args.markdown is not None:
            args.markdown.write_text("\n".join(["## SMOTE curve", "", *header, "", *lines, ""]))
        return
    print(
        f"workload: {args.minority} minority + {args.majority} majority rows x {args.features} "
        f"(float64), k={args.k}, sampling_strategy='auto'"
    )
    datasets = args.data.split(",")
    probes = [int(v) for v in args.probes.split(",") if v]
    results: list[dict[str, Any]] = []
    for i, data in enumerate(datasets):
        methods = ["exact"] + [f"approx-{v}" for v in probes]
        if not args.skip_imblearn:
            methods = ["imblearn", *methods]
        if i == 0 and args.faiss:
            methods.append("faiss")
        for method in methods:
            results.append(run_worker(method, args, data))
    load_end = " ".join(f"{v:.1f}" for v in os.getloadavg())
    ref = {r["data"]: r["seconds"] for r in results if r["method"] == "imblearn" and "seconds" in r}
    imb_mem = {
        r["data"]: r["peak_rss_mb"] for r in results if r["method"] == "imblearn" and "seconds" in r
    }
    table = [
        "| data | method | seconds | speed-up vs imblearn (same data) | peak RSS MB "
        "| RSS over inputs MB | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            table.append(f"| {r['data']} | {r['method']} | error: {r['error']} | | | | |")
            continue
        ref_s = ref.get(r["data"])
        speed = f"{ref_s / r['seconds']:.2f}x" if ref_s else "n/a"
        table.append(
            f"| {r['data']} | {r['method']} | {r['seconds']:.2f} | {speed} | "
            f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['base_rss_mb']:.0f} | "
            f"{_recall(r)} |"
        )
    print("\n".join(table))
    print(f"load average at end: {load_end}")
    for data, mem in imb_mem.items():
        print(f"imblearn peak RSS on {data}: {mem:.0f} MB")
    if args.markdown is not None:  # the CPU results first: a failing GPU section keeps them
        args.markdown.write_text("\n".join(["## Oversampling (SMOTE)", "", *header, *table, ""]))
    gpu = gpu_section(args)
    print("\n".join(gpu))
    if args.markdown is not None:
        text = [
            "## Oversampling (SMOTE) against imbalanced-learn",
            "",
            *header,
            f"- workload: {args.minority} minority + {args.majority} majority rows x "
            f"{args.features} (float64), k={args.k}, sampling_strategy='auto'",
            f"- load average at end: {load_end}",
            "",
            *table,
            "",
            *gpu,
            "",
        ]
        args.markdown.write_text("\n".join(text))


if __name__ == "__main__":
    main()
