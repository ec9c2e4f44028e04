"""Speed and peak memory of posneg's contrastive objectives against pytorch-metric-learning.

Times forward + backward of each objective at D=128 over a sweep of batch sizes, in the same run
as pytorch-metric-learning's ``NTXentLoss`` and ``SupConLoss``, and prints a table, the ratios at
B=512 and the largest batch each side reached. This is a benchmark, not a test: nothing here
fails on a number.

Method
  * Every (case, batch) pair runs in a fresh subprocess (``--case NAME --batch B``), so the peak
    resident set size of one case is not inflated by another. The child records
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after imports, inputs and the loss module are
    built (the baseline) and again after the timed calls (the peak); "extra MB" is the
    difference, "peak MB" the whole process.
  * Inputs are float32 ``randn`` embeddings: two views z1, z2 of shape (B, D) with
    ``requires_grad``; pytorch-metric-learning receives ``cat([z1, z2])`` (2B, D) with labels
    ``cat([arange(B), arange(B)])`` for NT-Xent. SupCon (both libraries) receives the same 2B
    rows with labels ``cat([y, y])``, ``y = arange(B) % 100`` (100 classes).
  * One warm-up call runs first. If it took under 20 s, the median of the following calls is
    reported (3 to 20 calls within ~3 s; one call when a call takes over 2 s); otherwise the
    warm-up call's own time is reported (a 44 s call is run once). Two clocks are read around
    each call: wall time (``time.perf_counter``) and the process's CPU time
    (``time.process_time``). On a machine shared with other jobs, wall time grows with the load
    while CPU time of a single-threaded run (``--threads 1``) does not, so both are printed;
    the 1-minute load average is recorded at the start of every case.
  * A batch sweep for one case stops at its first failure (out of memory, timeout, error).
    pytorch-metric-learning is never started above ``--max-pml-batch`` (default 512): its
    NTXentLoss builds a positives x negatives matrix (O(B^3) memory) and needs more than 24 GB at
    B=1024. AMCL is not started above ``--max-amcl-batch`` (default 1024): its pair-wise
    temperature networks cost O(B^2 * hidden * heads) per step, and with glibc's default
    allocator its resident set reached 3.7 GB at B=1024 and had passed 7 GB at B=2048 when that
    run was stopped (most of it freed memory the allocator keeps; see docs/benchmarks.md).

GPU section (only where CUDA is present): ``info_nce`` on B=65536, D=768, bf16 inputs, forward +
backward, beside a naive ``F.cross_entropy(q @ k.T)`` in the same run; peak memory from
``torch.cuda.max_memory_allocated`` above the inputs.

Usage::

    python benchmarks/contrastive.py                       # the whole CPU sweep (+ GPU if present)
    python benchmarks/contrastive.py --case nt_xent --batch 512   # one case (what the sweep runs)
    python benchmarks/contrastive.py --cases nt_xent,pml_nt_xent --batches 128,256
    python benchmarks/contrastive.py --gemm-ratio --threads 1   # objective / three GEMMs

GEMM-ratio mode (``--gemm-ratio``): for B = 512 .. 16384 at D = 128, each objective's forward +
backward time divided by the time of the three matrix products of its score shape (R x M: B x B
for InfoNCE, 2B x 2B for the two-view objectives and SupCon's 2B rows): ``S = Q K^T``,
``dQ = G K`` and ``dK = G^T Q`` into preallocated outputs, measured in the same fresh process
right after the objective.
The GEMMs are timed whole where the R x M matrices fit (R * M <= 2^28) and in row tiles of the
objective's own tile height (``posneg._tiling.rows_per_block``) everywhere; the ratio uses the
faster of the two. Memory is the peak RSS above the inputs, read after the objective and before
the GEMMs. ``nt_xent_map_rows`` is the earlier route (row blocks under activation
checkpointing through ``map_rows``), kept here to show what the custom autograd replaced.
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
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

POSNEG_CASES = ("nt_xent", "info_nce", "dcl", "dclw", "hcl", "supcon", "cacr", "amcl")
PML_CASES = ("pml_nt_xent", "pml_supcon")
ALL_CASES = POSNEG_CASES + PML_CASES
POSNEG_BATCHES = (128, 256, 512, 1024, 2048, 4096, 8192)
PML_BATCHES = (128, 256, 512)
SUPCON_CLASSES = 100
RATIO_BATCH = 512
GOAL_BATCH = 8192
GOAL_PEAK_MB = 4096.0
#: A warm-up call longer than this is reported as the single measurement (not repeated).
SINGLE_RUN_S = 20.0
NAN = float("nan")

LossFn = Callable[[], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# one case (runs inside a child process)
# ---------------------------------------------------------------------------------------------


def _maxrss_mb() -> float:
    """Peak resident set size of this process so far, in MB (ru_maxrss is KiB on Linux)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1.0 / 1024.0 if sys.platform != "darwin" else 1.0 / (1024.0 * 1024.0)
    return float(rss) * scale


def build_case(
    case: str, batch: int, dim: int, *, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[LossFn, list[torch.Tensor]]:
    """The loss closure of ``case`` and the leaf tensors it differentiates."""
    g = torch.Generator(device="cpu").manual_seed(0)

    def emb(rows: int, width: int = dim) -> torch.Tensor:
        x = torch.randn(rows, width, generator=g).to(device=device, dtype=dtype)
        return x.requires_grad_(True)

    z1, z2 = emb(batch), emb(batch)
    pair_labels = torch.arange(batch, device=device).repeat(2)
    y = torch.arange(batch, device=device) % SUPCON_CLASSES
    class_labels = torch.cat([y, y])

    if case.startswith("pml_"):
        from pytorch_metric_learning import losses as pml

        if case == "pml_nt_xent":
            pml_nt = pml.NTXentLoss(temperature=0.5)
            return (lambda: pml_nt(torch.cat([z1, z2]), pair_labels)), [z1, z2]
        if case == "pml_supcon":
            pml_sc = pml.SupConLoss(temperature=0.1)
            return (lambda: pml_sc(torch.cat([z1, z2]), class_labels)), [z1, z2]
        raise ValueError(f"unknown case {case!r}")

    from posneg.losses.amcl import AMCLLoss
    from posneg.losses.cacr import cacr
    from posneg.losses.dcl import dcl, dclw
    from posneg.losses.hcl import hcl
    from posneg.losses.info_nce import info_nce, nt_xent
    from posneg.losses.supcon import supcon

    if case == "nt_xent":
        return (lambda: nt_xent(z1, z2, temperature=0.5)), [z1, z2]
    if case == "info_nce":
        return (lambda: info_nce(z1, z2, temperature=0.07)), [z1, z2]
    if case == "dcl":
        return (lambda: dcl(z1, z2, temperature=0.1)), [z1, z2]
    if case == "dclw":
        return (lambda: dclw(z1, z2, temperature=0.1, sigma=0.5)), [z1, z2]
    if case == "hcl":
        return (lambda: hcl(z1, z2, temperature=0.5, beta=1.0, tau_plus=0.1)), [z1, z2]
    if case == "supcon":
        return (lambda: supcon(torch.cat([z1, z2]), class_labels, temperature=0.1)), [z1, z2]
    if case == "cacr":
        return (lambda: cacr(torch.stack([z1, z2]))), [z1, z2]
    if case == "amcl":
        # the paper's architecture (3 heads, 512 hidden, 128 out) on D-dimensional features;
        # weights drawn from a generator, outside the timed region
        module = AMCLLoss(dim, generator=torch.Generator().manual_seed(0))
        module = module.to(device=device, dtype=dtype)
        return (lambda: module(z1, z2)), [z1, z2, *module.parameters()]
    raise ValueError(f"unknown case {case!r}")


def _step(loss_fn: LossFn, leaves: list[torch.Tensor]) -> None:
    for t in leaves:
        t.grad = None
    loss = loss_fn()
    loss.backward()


def _timed(loss_fn: LossFn, leaves: list[torch.Tensor]) -> tuple[float, float]:
    """Wall and CPU seconds of one forward + backward."""
    w0, c0 = time.perf_counter(), time.process_time()
    _step(loss_fn, leaves)
    return time.perf_counter() - w0, time.process_time() - c0


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def run_case(case: str, batch: int, dim: int) -> dict[str, Any]:
    """Time forward + backward of one case and record its peak RSS (call in a fresh process)."""
    loss_fn, leaves = build_case(case, batch, dim)
    base = _maxrss_mb()
    walls, cpus = zip(*[_timed(loss_fn, leaves)], strict=True)  # warm-up
    if walls[0] < SINGLE_RUN_S:
        min_calls = 3 if walls[0] < 2.0 else 1
        runs: list[tuple[float, float]] = []
        budget = time.perf_counter() + 3.0
        while len(runs) < 20 and (len(runs) < min_calls or time.perf_counter() < budget):
            runs.append(_timed(loss_fn, leaves))
        walls, cpus = zip(*runs, strict=True)
    peak = _maxrss_mb()
    return {
        "case": case,
        "batch": batch,
        "dim": dim,
        "time_s": _median(list(walls)),
        "cpu_s": _median(list(cpus)),
        "calls": len(walls),
        "baseline_mb": base,
        "peak_mb": peak,
        "extra_mb": peak - base,
    }


# ---------------------------------------------------------------------------------------------
# the sweep (parent process)
# ---------------------------------------------------------------------------------------------


@dataclass
class Result:
    case: str
    batch: int
    ok: bool
    time_s: float = NAN
    cpu_s: float = NAN
    peak_mb: float = NAN
    extra_mb: float = NAN
    calls: int = 0
    load: float = NAN
    error: str = ""


def _child(case: str, batch: int, dim: int, threads: int | None, timeout: float) -> Result:
    cmd = [sys.executable, os.path.abspath(__file__), "--case", case, "--batch", str(batch)]
    cmd += ["--dim", str(dim)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    load = os.getloadavg()[0]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Result(case, batch, False, load=load, error=f"timeout > {timeout:.0f} s")
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        if proc.returncode < 0:
            sig = -proc.returncode
            tail = f"killed by signal {sig}" + (" (out of memory?)" if sig == 9 else "")
        return Result(case, batch, False, load=load, error=tail[:120])
    line = proc.stdout.strip().splitlines()[-1]
    rec = json.loads(line)
    return Result(
        case,
        batch,
        True,
        time_s=rec["time_s"],
        cpu_s=rec["cpu_s"],
        peak_mb=rec["peak_mb"],
        extra_mb=rec["extra_mb"],
        calls=rec["calls"],
        load=load,
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb() -> float:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    return float(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def _versions() -> dict[str, str]:
    import numpy
    import pytorch_metric_learning

    import posneg

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "posneg": posneg.__version__,
        "pytorch-metric-learning": pytorch_metric_learning.__version__,
    }


def _fmt_time(t: float) -> str:
    if t != t:
        return "-"
    if t >= 1.0:
        return f"{t:.2f} s"
    return f"{t * 1e3:.2f} ms" if t >= 1e-3 else f"{t * 1e6:.0f} us"


def _fmt_mb(m: float) -> str:
    return "-" if m != m else f"{m:,.1f}"


def _batches_for(case: str, args: argparse.Namespace) -> list[int]:
    if args.batches:
        batches = [int(b) for b in args.batches.split(",")]
    else:
        batches = list(PML_BATCHES if case in PML_CASES else POSNEG_BATCHES)
    if case in PML_CASES:
        batches = [b for b in batches if b <= args.max_pml_batch]
    if case == "amcl":
        batches = [b for b in batches if b <= args.max_amcl_batch]
    return batches


def sweep(args: argparse.Namespace) -> int:
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in ALL_CASES:
            print(f"contrastive.py: unknown case {c!r}; known: {', '.join(ALL_CASES)}")
            return 2
    load_before = os.getloadavg()
    print("# posneg contrastive objectives vs pytorch-metric-learning (CPU)")
    print(f"machine : {_cpu_model()}, {os.cpu_count()} logical CPUs, {_mem_total_gb():.1f} GB RAM")
    print(f"platform: {platform.platform()}")
    print(f"torch threads: {args.threads or torch.get_num_threads()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in _versions().items()))
    print("command : " + " ".join([os.path.relpath(sys.executable), *sys.argv]))
    print(f"load average before (1/5/15 min): {_fmt_load(load_before)}")
    print(
        f"D={args.dim}, float32, forward+backward; median wall and CPU time per call; peak = "
        "ru_maxrss of a fresh process per case, extra = peak minus that process's RSS before "
        "the first call; load = 1-min load average when the case started"
    )
    print()

    results: list[Result] = []
    for case in cases:
        for b in _batches_for(case, args):
            r = _child(case, b, args.dim, args.threads, args.timeout)
            results.append(r)
            status = (
                f"wall {_fmt_time(r.time_s):>10}  cpu {_fmt_time(r.cpu_s):>10}  "
                f"peak {_fmt_mb(r.peak_mb):>9} MB  extra {_fmt_mb(r.extra_mb):>9} MB  "
                f"({r.calls} calls, load {r.load:.1f})"
                if r.ok
                else f"FAILED: {r.error} (load {r.load:.1f})"
            )
            print(f"{case:>12} B={b:<6d} {status}", flush=True)
            if not r.ok:
                break
    load_after = os.getloadavg()
    print()
    _print_table(results, cases)
    _print_summary(results, cases, args)
    print(f"\nload average after (1/5/15 min): {_fmt_load(load_after)}")
    if not args.no_gpu:
        gpu_section(args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump([r.__dict__ for r in results], fh, indent=1)
    return 0


def _fmt_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{v:.2f}" for v in load)


def _print_table(results: list[Result], cases: list[str]) -> None:
    batches = sorted({r.batch for r in results})
    print("| case | " + " | ".join(f"B={b}" for b in batches) + " |")
    print("|---|" + "---|" * len(batches))
    by = {(r.case, r.batch): r for r in results}
    for case in cases:
        cells = []
        for b in batches:
            r = by.get((case, b))
            if r is None:
                cells.append("not run")
            elif not r.ok:
                cells.append("failed" if "timeout" not in r.error else "timeout")
            else:
                cells.append(
                    f"{_fmt_time(r.time_s)} / {_fmt_time(r.cpu_s)} / {_fmt_mb(r.extra_mb)} MB"
                )
        print(f"| {case} | " + " | ".join(cells) + " |")
    print(
        "\ncells: median forward+backward wall time / CPU time / extra peak RSS (MB) above the "
        "process baseline"
    )


def _print_summary(results: list[Result], cases: list[str], args: argparse.Namespace) -> None:
    by = {(r.case, r.batch): r for r in results if r.ok}
    print(f"\nratios at B={RATIO_BATCH} (peer / posneg; >1 means posneg is faster or smaller):")
    for peer, ours in (
        ("pml_nt_xent", ("nt_xent", "info_nce", "dcl", "dclw", "hcl", "cacr")),
        ("pml_supcon", ("supcon",)),
    ):
        p = by.get((peer, RATIO_BATCH))
        if p is None:
            print(f"  {peer} not measured at B={RATIO_BATCH}")
            continue
        for o in ours:
            r = by.get((o, RATIO_BATCH))
            if r is None:
                continue
            mem = p.extra_mb / r.extra_mb if r.extra_mb > 0 else float("inf")
            print(
                f"  {peer} vs {o:>8}: wall {p.time_s / r.time_s:9.1f}x  "
                f"cpu {p.cpu_s / r.cpu_s:9.1f}x  extra memory {mem:8.1f}x  "
                f"peak RSS {p.peak_mb / r.peak_mb:6.1f}x"
            )
    print("\nlargest B reached:")
    for case in cases:
        ok = [r.batch for r in results if r.case == case and r.ok]
        failed = [r for r in results if r.case == case and not r.ok]
        note = f" (next size failed: {failed[0].error})" if failed else ""
        if case in PML_CASES and not failed and ok and max(ok) >= args.max_pml_batch:
            note = f" (not started above --max-pml-batch={args.max_pml_batch})"
        if case == "amcl" and not failed and ok and max(ok) >= args.max_amcl_batch:
            note = f" (not started above --max-amcl-batch={args.max_amcl_batch})"
        print(f"  {case:>12}: {max(ok) if ok else 'none'}{note}")
    for r in (r for r in results if r.ok and r.batch == GOAL_BATCH):
        verdict = "within" if r.peak_mb <= GOAL_PEAK_MB else "ABOVE"
        print(
            f"  goal B={GOAL_BATCH} within {GOAL_PEAK_MB / 1024:.0f} GB: {r.case} peak "
            f"{r.peak_mb:,.0f} MB ({verdict})"
        )


# ---------------------------------------------------------------------------------------------
# GEMM-ratio mode: each objective against the three matrix products of its score shape
# ---------------------------------------------------------------------------------------------

GEMM_CASES = ("nt_xent", "info_nce", "dcl", "dclw", "hcl", "supcon", "nt_xent_map_rows")
GEMM_BATCHES = (512, 1024, 2048, 4096, 8192, 16384)
#: Largest R * M timed as whole GEMMs (two R x M float32 matrices: 2 GiB at 2^28).
GEMM_FULL_MAX = 1 << 28
#: The earlier map_rows route is not started above this B (about 80 s of CPU per call at 16384).
MAP_ROWS_MAX_BATCH = 8192


def _nt_xent_map_rows(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent as posneg computed it before ``posneg._lse``: checkpointed ``map_rows`` blocks."""
    import torch.nn.functional as F

    from posneg._tiling import map_rows, mask_columns

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]

    def block(start: int, stop: int, z: torch.Tensor) -> torch.Tensor:
        rows = z[start:stop] * (1.0 / temperature)
        idx = torch.arange(start, stop)
        pos = (rows * z[(idx + n) % (2 * n)]).sum(dim=1)
        return torch.logsumexp(mask_columns(rows @ z.T, idx[:, None]), dim=1) - pos

    return map_rows(block, 2 * n, 2 * n, z).mean()


def score_shape(case: str, batch: int) -> tuple[int, int]:
    """(R, M) of the objective's score matrix for B pairs."""
    return (batch, batch) if case == "info_nce" else (2 * batch, 2 * batch)


def _gemm3_timer(rows: int, cols: int, dim: int, tile: int | None) -> Callable[[], None]:
    """The three GEMMs of an (rows, cols) score shape: whole (tile None) or in row tiles.

    Every output is preallocated (``out=``), so the time is the GEMMs' alone, without the page
    faults of fresh score-sized allocations.
    """
    g = torch.Generator().manual_seed(1)
    q = torch.randn(rows, dim, generator=g)
    k = torch.randn(cols, dim, generator=g)
    height = rows if tile is None else min(tile, rows)
    grad = torch.randn(height, cols, generator=g)
    scores = torch.empty(height, cols)
    dq = torch.empty(rows, dim)
    dk = torch.empty(cols, dim)

    def run() -> None:
        if tile is None:
            torch.mm(q, k.T, out=scores)
            torch.mm(grad, k, out=dq)
            torch.mm(grad.T, q, out=dk)
            return
        dk.zero_()
        for start in range(0, rows, tile):
            qt = q[start : start + tile]
            r = qt.shape[0]
            torch.mm(qt, k.T, out=scores[:r])
            torch.mm(grad[:r], k, out=dq[start : start + r])
            dk.addmm_(grad[:r].T, qt)

    return run


def _time_fn(fn: Callable[[], None], min_calls: int = 3) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn`` after one warm-up (one call if it takes > 2 s)."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    first = (time.perf_counter() - w0, time.process_time() - c0)
    if first[0] > 2.0:
        return first
    runs = []
    for _ in range(min_calls):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - w0, time.process_time() - c0))
    return _median([r[0] for r in runs]), _median([r[1] for r in runs])


def run_gemm_case(case: str, batch: int, dim: int) -> dict[str, Any]:
    """Objective fwd+bwd, then its three GEMMs (whole and tiled), in this (fresh) process."""
    from posneg._tiling import rows_per_block

    if case == "nt_xent_map_rows":
        g = torch.Generator().manual_seed(0)
        z1 = torch.randn(batch, dim, generator=g).requires_grad_(True)
        z2 = torch.randn(batch, dim, generator=g).requires_grad_(True)
        loss_fn: LossFn = lambda: _nt_xent_map_rows(z1, z2, 0.5)  # noqa: E731
        leaves = [z1, z2]
    else:
        loss_fn, leaves = build_case(case, batch, dim)
    base = _maxrss_mb()
    wall, cpu = _time_fn(partial(_step, loss_fn, leaves))
    extra = _maxrss_mb() - base
    rows, cols = score_shape(case, batch)
    tile = rows_per_block(rows, cols, None)
    tiled = _time_fn(_gemm3_timer(rows, cols, dim, tile))
    full = _time_fn(_gemm3_timer(rows, cols, dim, None)) if rows * cols <= GEMM_FULL_MAX else None
    return {
        "case": case,
        "batch": batch,
        "rows": rows,
        "cols": cols,
        "tile_rows": tile,
        "time_s": wall,
        "cpu_s": cpu,
        "extra_mb": extra,
        "gemm_tiled": list(tiled),
        "gemm_full": None if full is None else list(full),
    }


def gemm_sweep(args: argparse.Namespace) -> int:
    """Run every (case, B) of the GEMM-ratio mode in a fresh process; print the ratio table."""
    cases = (
        [c.strip() for c in args.cases.split(",") if c.strip()]
        if args.cases_set
        else list(GEMM_CASES)
    )
    batches = [int(b) for b in args.batches.split(",")] if args.batches else list(GEMM_BATCHES)
    print("# posneg contrastive objectives: forward+backward / three GEMMs of the score shape")
    print(f"machine : {_cpu_model()}, {os.cpu_count()} logical CPUs, {_mem_total_gb():.1f} GB RAM")
    print(f"platform: {platform.platform()}")
    print(f"torch threads: {args.threads or torch.get_num_threads()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in _versions().items()))
    print("command : " + " ".join([os.path.relpath(sys.executable), *sys.argv]))
    print(f"load average before (1/5/15 min): {_fmt_load(os.getloadavg())}")
    print(f"D={args.dim}, float32; one fresh process per (case, B)\n")
    print(
        "| case | B | scores R x M | fwd+bwd wall / CPU | 3 GEMMs CPU (whole / tiled) | "
        "ratio CPU | ratio wall | extra MB | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    records = []
    for case in cases:
        for b in batches:
            if case == "nt_xent_map_rows" and b > MAP_ROWS_MAX_BATCH:
                print(f"| {case} | {b} | not run (B > {MAP_ROWS_MAX_BATCH}) |||||||")
                continue
            cmd = [sys.executable, os.path.abspath(__file__), "--case", case, "--batch", str(b)]
            cmd += ["--dim", str(args.dim), "--gemm-ratio"]
            if args.threads is not None:
                cmd += ["--threads", str(args.threads)]
            load = os.getloadavg()[0]
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=args.timeout, check=False
                )
            except subprocess.TimeoutExpired:
                print(f"| {case} | {b} | timeout > {args.timeout:.0f} s |||||| {load:.1f} |")
                break
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
                print(f"| {case} | {b} | failed: {tail[:80]} |||||| {load:.1f} |")
                break
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            rec["load"] = load
            records.append(rec)
            full = rec["gemm_full"]
            ref = min([rec["gemm_tiled"]] + ([full] if full else []), key=lambda r: r[1])
            full_s = _fmt_time(full[1]) if full else "-"
            print(
                f"| {case} | {b} | {rec['rows']} x {rec['cols']} | {_fmt_time(rec['time_s'])} / "
                f"{_fmt_time(rec['cpu_s'])} | {full_s} / {_fmt_time(rec['gemm_tiled'][1])} | "
                f"{rec['cpu_s'] / ref[1]:.2f}x | {rec['time_s'] / ref[0]:.2f}x | "
                f"{_fmt_mb(rec['extra_mb'])} | {load:.1f} |",
                flush=True,
            )
    print(f"\nload average after (1/5/15 min): {_fmt_load(os.getloadavg())}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(records, fh, indent=1)
    return 0


# ---------------------------------------------------------------------------------------------
# GPU section
# ---------------------------------------------------------------------------------------------


def _cuda_time(fn: Callable[[], None], reps: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def gpu_section(args: argparse.Namespace) -> None:
    """info_nce at B=65536, D=768, bf16 on CUDA beside a naive cross-entropy; skipped without."""
    print("\n# GPU: info_nce, B=65536, D=768, bf16 inputs, forward+backward")
    if not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return
    import torch.nn.functional as F

    from posneg.losses.info_nce import info_nce

    b, d = args.gpu_batch, 768
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    q = torch.randn(b, d, device=dev, generator=g).to(torch.bfloat16).requires_grad_(True)
    k = torch.randn(b, d, device=dev, generator=g).to(torch.bfloat16).requires_grad_(True)
    target = torch.arange(b, device=dev)
    print(f"device: {torch.cuda.get_device_name(0)}")

    def ours() -> None:
        q.grad = k.grad = None
        info_nce(q, k, temperature=0.05).backward()

    def naive() -> None:
        q.grad = k.grad = None
        qn, kn = F.normalize(q.float(), dim=1), F.normalize(k.float(), dim=1)
        F.cross_entropy(qn @ kn.T / 0.05, target).backward()

    for name, fn in (("posneg info_nce", ours), ("naive F.cross_entropy(q@k.T)", naive)):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        try:
            t = _cuda_time(fn)
        except torch.OutOfMemoryError:
            print(f"  {name:>30}: out of memory")
            torch.cuda.empty_cache()
            continue
        peak = torch.cuda.max_memory_allocated() - base
        print(f"  {name:>30}: {t * 1e3:8.1f} ms   extra {peak / 2**30:6.2f} GB")


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", help="run one case in this process and print one JSON line")
    p.add_argument("--batch", type=int, default=512, help="batch size B for --case")
    p.add_argument("--dim", type=int, default=128, help="embedding dimension D")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--cases", default=",".join(ALL_CASES), help="comma-separated cases to sweep")
    p.add_argument(
        "--batches",
        default=None,
        help="comma-separated batch sizes (default: posneg 128..8192, PML 128..512)",
    )
    p.add_argument(
        "--max-pml-batch",
        type=int,
        default=512,
        help="never start pytorch-metric-learning above this B (1024 needs > 24 GB)",
    )
    p.add_argument(
        "--max-amcl-batch",
        type=int,
        default=1024,
        help="never start AMCL above this B (O(B^2 * hidden * heads) temperature networks)",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="wall seconds per case")
    p.add_argument("--gpu-batch", type=int, default=65536, help="B of the GPU section")
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU section")
    p.add_argument("--json", default=None, help="also write the CPU results to this JSON file")
    p.add_argument(
        "--gemm-ratio",
        action="store_true",
        help="time each objective against the three GEMMs of its score shape (B 512..16384)",
    )
    args = p.parse_args(argv)
    args.cases_set = "--cases" in (sys.argv if argv is None else argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.case is not None:
        if args.case not in ALL_CASES + GEMM_CASES:
            print(f"contrastive.py: unknown case {args.case!r}; known: {', '.join(ALL_CASES)}")
            return 2
        if args.gemm_ratio:
            print(json.dumps(run_gemm_case(args.case, args.batch, args.dim)))
        else:
            print(json.dumps(run_case(args.case, args.batch, args.dim)))
        return 0
    return gemm_sweep(args) if args.gemm_ratio else sweep(args)


if __name__ == "__main__":
    sys.exit(main())
