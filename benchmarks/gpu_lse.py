"""GPU: the fused row log-sum-exp (Triton) against the torch path and naive implementations.

Runs only where CUDA exists (it prints why and exits 0 otherwise). Two sections:

(a) InfoNCE, one direction, ``--batch`` (65,536) x ``--dim`` (768) embeddings in ``--dtype``
    (bf16), forward + backward, temperature ``--temperature`` (0.07), inputs unit rows:

    * ``naive``: ``F.cross_entropy((q @ k.T).float() / t, arange(B))`` (logits materialised);
    * ``posneg_triton``: ``posneg.losses.info_nce(q, k, normalize=False)`` with the Triton path;
    * ``posneg_torch``: the same with ``POSNEG_DISABLE_TRITON=1`` (the tiled torch autograd);
    * ``kernels_fused`` / ``kernels_chunked``: the kernels of ``posneg._kernels.lse_triton``
      called directly from a minimal autograd function (``lse - <q_i, k_i> / t``), with each
      backward method, so their own cost is visible whatever the loss adds.

(b) NT-Xent, ``--ntxent-batch`` (4,096) pairs = 8,192 views x ``--ntxent-dim`` (128), same
    dtype, temperature 0.5: ``posneg.losses.nt_xent`` (Triton and torch paths) against a plain
    masked softmax (``z @ z.T`` with the diagonal set to -inf, ``F.cross_entropy`` against the
    partner index).

Each case: one warm-up call (Triton compiles there), then ``--repeats`` (5) timed calls, each
between ``torch.cuda.synchronize()`` calls; the median is reported. Memory is
``torch.cuda.max_memory_allocated()`` during the timed calls minus what was allocated before
(the inputs), in GB. Every case's loss and gradients are compared with the naive ones (max abs
difference). Effective TFLOP/s counts three GEMMs of 2 B M D flops (forward, dQ, dK). A case
that runs out of memory is reported as OOM. The device name, versions and ratios are printed;
``--json`` also writes them to a file. Meant to finish in under 2 minutes on one H100.

Usage::

    python benchmarks/gpu_lse.py
    python benchmarks/gpu_lse.py --batch 16384 --sections a --json /tmp/gpu_lse.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sections", default="a,b", help="comma-separated: a (InfoNCE), b (NT-Xent)")
    p.add_argument("--batch", type=int, default=65536, help="InfoNCE batch B")
    p.add_argument("--dim", type=int, default=768, help="InfoNCE dimension D")
    p.add_argument("--ntxent-batch", type=int, default=4096, help="NT-Xent pairs B (2B views)")
    p.add_argument("--ntxent-dim", type=int, default=128, help="NT-Xent dimension D")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--temperature", type=float, default=0.07, help="InfoNCE temperature")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per case (median)")
    p.add_argument("--cases", default=None, help="comma-separated subset of the case names")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    for name in ("batch", "dim", "ntxent_batch", "ntxent_dim", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.temperature > 0:
        p.error("--temperature must be > 0")
    bad = set(args.sections.split(",")) - {"a", "b"}
    if bad:
        p.error(f"--sections takes a and/or b; got {sorted(bad)}")
    return args


def _environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0),
        "command": " ".join([sys.executable, *sys.argv]),
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    import posneg

    env["posneg"] = getattr(posneg, "__version__", "?")
    return env


def _timed(
    fn: Callable[[], tuple[torch.Tensor, ...]], repeats: int
) -> tuple[float, float, tuple[torch.Tensor, ...]]:
    """Median seconds, extra GB, and the last outputs of ``fn`` (warm-up call first)."""
    out = fn()  # warm-up: Triton compiles, cuBLAS picks its kernels
    del out
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    extra = (torch.cuda.max_memory_allocated() - base) / 1e9
    return statistics.median(times), extra, out


def _loss_and_grads(
    loss_fn: Callable[..., torch.Tensor], *inputs: torch.Tensor
) -> Callable[[], tuple[torch.Tensor, ...]]:
    def run() -> tuple[torch.Tensor, ...]:
        for t in inputs:
            t.grad = None
        loss = loss_fn(*inputs)
        loss.backward()
        return (loss.detach(), *(t.grad for t in inputs))  # type: ignore[arg-type]

    return run


class _KernelInfoNCE(torch.autograd.Function):
    """mean_i (lse_i - scale <q_i, k_i>) with lse from the Triton pair called directly."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, scale: float, method: str) -> Any:
        from posneg._kernels.lse_triton import row_lse_forward_triton

        lse = row_lse_forward_triton(q, k, scale=scale)
        ctx.save_for_backward(q, k, lse)
        ctx.scale, ctx.method = scale, method
        pos = (q.float() * k.float()).sum(1) * scale
        return (lse - pos).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        from posneg._kernels.lse_triton import row_lse_backward_triton

        q, k, lse = ctx.saved_tensors
        b = q.shape[0]
        g = torch.full((b,), float(grad) / b, device=q.device)
        dq, dk = row_lse_backward_triton(q, k, lse, g, scale=ctx.scale, method=ctx.method)
        w = float(grad) * ctx.scale / b
        return (dq - w * k).to(q.dtype), (dk - w * q).to(k.dtype), None, None


def _cases_a(args: argparse.Namespace) -> dict[str, Callable[..., torch.Tensor]]:
    from posneg.losses.info_nce import info_nce

    t = args.temperature
    return {
        "naive": lambda q, k: F.cross_entropy(
            (q @ k.T).float() / t, torch.arange(q.shape[0], device=q.device)
        ),
        "posneg_triton": lambda q, k: info_nce(q, k, temperature=t, normalize=False),
        "posneg_torch": lambda q, k: info_nce(q, k, temperature=t, normalize=False),
        "kernels_fused": lambda q, k: _KernelInfoNCE.apply(q, k, 1 / t, "fused"),
        "kernels_chunked": lambda q, k: _KernelInfoNCE.apply(q, k, 1 / t, "chunked"),
    }


def _cases_b() -> dict[str, Callable[..., torch.Tensor]]:
    from posneg.losses.info_nce import nt_xent

    def masked_softmax(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        z = torch.cat([z1, z2])
        n = z1.shape[0]
        sim = (z @ z.T).float() / 0.5
        eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        sim = sim.masked_fill(eye, float("-inf"))
        target = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
        return F.cross_entropy(sim, target)

    return {
        "naive": masked_softmax,
        "posneg_triton": lambda a, b: nt_xent(a, b, temperature=0.5, normalize=False),
        "posneg_torch": lambda a, b: nt_xent(a, b, temperature=0.5, normalize=False),
    }


def _run_section(
    title: str,
    cases: dict[str, Callable[..., torch.Tensor]],
    inputs: tuple[torch.Tensor, ...],
    flops: float,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    wanted = set(args.cases.split(",")) if args.cases else set(cases)
    from posneg._kernels import triton_usable

    os.environ.pop("POSNEG_DISABLE_TRITON", None)
    print(f"\n## {title}\n\ntriton_usable(inputs) = {triton_usable(*inputs)}\n")
    print("| case | ms | extra GB | eff. TF/s | x naive | max |dloss| | max |dgrad| |")
    print("|---|---|---|---|---|---|---|")
    rows: list[dict[str, Any]] = []
    ref: tuple[torch.Tensor, ...] | None = None
    for name, loss_fn in cases.items():
        if name not in wanted and name != "naive":
            continue
        os.environ["POSNEG_DISABLE_TRITON"] = "1" if name == "posneg_torch" else "0"
        row: dict[str, Any] = {"case": name}
        try:
            sec, extra, out = _timed(_loss_and_grads(loss_fn, *inputs), args.repeats)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            row.update(ms=None, error="OOM")
            rows.append(row)
            print(f"| {name} | OOM | | | | | |")
            continue
        row.update(ms=sec * 1e3, extra_gb=extra, tflops=flops / sec / 1e12)
        if ref is None and name == "naive":
            ref = tuple(o.float() for o in out)
        if ref is not None:
            row["dloss"] = float((out[0].float() - ref[0]).abs())
            pairs = zip(out[1:], ref[1:], strict=True)
            row["dgrad"] = max(float((o.float() - r).abs().max()) for o, r in pairs)
        naive = next((r["ms"] for r in rows if r["case"] == "naive"), row["ms"] * (name == "naive"))
        row["x_naive"] = naive / row["ms"] if naive else None
        rows.append(row)
        del out
        print(
            f"| {name} | {row['ms']:.1f} | {extra:.2f} | {row['tflops']:.0f} | "
            f"{row['x_naive'] or float('nan'):.2f} | {row.get('dloss', float('nan')):.2e} | "
            f"{row.get('dgrad', float('nan')):.2e} |"
        )
    os.environ.pop("POSNEG_DISABLE_TRITON", None)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if not torch.cuda.is_available():
        print("gpu_lse: no CUDA device here; nothing measured (run it on a machine with a GPU).")
        return 0
    env = _environment()
    print(json.dumps(env, indent=1))
    dtype = DTYPES[args.dtype]
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    results: dict[str, Any] = {"environment": env, "args": vars(args)}
    if "a" in args.sections.split(","):
        b, d = args.batch, args.dim
        q, k = (
            F.normalize(torch.randn(b, d, device=dev, generator=gen), dim=1).to(dtype)
            for _ in range(2)
        )
        q.requires_grad_(True)
        k.requires_grad_(True)
        title = f"(a) InfoNCE B={b:,} D={d} {args.dtype} fwd+bwd, {env['device']}"
        results["infonce"] = _run_section(title, _cases_a(args), (q, k), 3 * 2 * b * b * d, args)
        del q, k
        torch.cuda.empty_cache()
    if "b" in args.sections.split(","):
        n, d = args.ntxent_batch, args.ntxent_dim
        z1, z2 = (
            F.normalize(torch.randn(n, d, device=dev, generator=gen), dim=1).to(dtype)
            for _ in range(2)
        )
        z1.requires_grad_(True)
        z2.requires_grad_(True)
        title = f"(b) NT-Xent B={n:,} ({2 * n:,} views) D={d} {args.dtype} fwd+bwd"
        flops = 3 * 2 * (2 * n) ** 2 * d
        results["ntxent"] = _run_section(title, _cases_b(), (z1, z2), flops, args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
