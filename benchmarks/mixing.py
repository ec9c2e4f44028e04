"""Speed of posneg's batch mixing against kornia and a single ``torch.lerp`` pass.

Times one call of each mixing technique on the same batch in the same process (default
B=256, 3x224x224 float32, class ids with 1000 classes), prints a table of milliseconds per
batch and the ratios the issue's goals are stated in:

* MixUp (per-sample lambda) against one out-of-place ``torch.lerp(x, x2, 0.3)`` pass over the
  same batch (goal: within 1.5x);
* CutMix, FMix and ResizeMix (per-sample boxes / masks) against kornia's ``RandomCutMixV2``
  (goal: at least 3x faster), and MixUp against kornia's ``RandomMixUpV2``.

Every posneg call includes drawing its parameters (``forward`` with a generator); FMix is also
shown with its mask building alone and with one mask per batch (the official code). kornia is
optional: without it (``pip install kornia``) its rows are skipped. This is a benchmark, not a
test: nothing here fails on a number.

Method: inputs are ``torch.rand``; one warm-up call per case, then ``--repeats`` rounds that
each time every case once (round robin, so load changes hit all cases alike); the minimum and
the median per case are reported and ratios use the minimum, the least disturbed call on a
shared machine (``time.perf_counter``; on CUDA bracketed by ``torch.cuda.synchronize``). The
GPU section runs only where CUDA is present, with the same cases on the device.

Usage::

    python benchmarks/mixing.py                       # CPU (+ GPU if present), B=256
    python benchmarks/mixing.py --batch 64 --repeats 3
    python benchmarks/mixing.py --out bench_mixing.md   # also write the markdown table
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from posneg.mixing import CutMix, FMix, MixUp, ResizeMix, sample_fmix_params

Call = Callable[[], object]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_round_robin(
    cases: dict[str, Call], device: torch.device, repeats: int
) -> dict[str, list[float]]:
    """Seconds per call of each case: one warm-up call each, then ``repeats`` rounds that time
    every case once, so that a change of machine load affects all cases alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        fn()
    _sync(device)
    for _ in range(repeats):
        for name, fn in cases.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def build_cases(
    batch: int, size: int, device: torch.device
) -> tuple[dict[str, Call], dict[str, Call]]:
    """posneg cases and peer cases on one shared batch."""
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(batch, 3, size, size, device=device)
    x2 = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    mixup = MixUp(per_sample=True, num_classes=1000)
    cutmix = CutMix(per_sample=True, num_classes=1000)
    fmix = FMix(per_sample=True, num_classes=1000)
    fmix_batch = FMix(per_sample=False, num_classes=1000)
    resizemix = ResizeMix(per_sample=True, num_classes=1000)
    ours: dict[str, Call] = {
        "torch.lerp (one pass)": lambda: torch.lerp(x, x2, 0.3),
        "MixUp, per-sample lambda": lambda: mixup(x, y, generator=gen),
        "CutMix, per-sample box": lambda: cutmix(x, y, generator=gen),
        "FMix, per-sample masks": lambda: fmix(x, y, generator=gen),
        "FMix masks only (B masks)": lambda: sample_fmix_params(
            batch, (size, size), per_sample=True, device=device, generator=gen
        ),
        "FMix, one mask per batch": lambda: fmix_batch(x, y, generator=gen),
        "ResizeMix, per-sample tau": lambda: resizemix(x, y, generator=gen),
    }
    peers: dict[str, Call] = {}
    try:
        import kornia.augmentation as K
    except ImportError:
        return ours, peers
    k_mixup = K.RandomMixUpV2(data_keys=["input", "class"]).to(device)
    k_cutmix = K.RandomCutMixV2(data_keys=["input", "class"], use_correct_lambda=True).to(device)
    peers["kornia RandomMixUpV2"] = lambda: k_mixup(x, y)
    peers["kornia RandomCutMixV2"] = lambda: k_cutmix(x, y)
    return ours, peers


def environment(device: torch.device) -> list[str]:
    lines = [
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}",
    ]
    try:
        import kornia

        lines.append(f"kornia {kornia.__version__}")
    except ImportError:
        lines.append("kornia not installed: peer rows skipped")
    if device.type == "cuda":
        lines.append(f"GPU: {torch.cuda.get_device_name(device)}")
    try:
        load = os.getloadavg()
        lines.append(f"load average at start: {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}")
    except OSError:
        pass
    return lines


def run(batch: int, size: int, repeats: int, device: torch.device) -> list[str]:
    """Time every case on ``device``; return markdown lines."""
    ours, peers = build_cases(batch, size, device)
    cases = {**ours, **peers}
    times = time_round_robin(cases, device, repeats)
    results = {name: min(ts) for name, ts in times.items()}
    for name, ts in times.items():
        low, mid = min(ts) * 1e3, statistics.median(ts) * 1e3
        print(f"  {name:32s} min {low:10.2f} ms  median {mid:10.2f} ms", flush=True)
    lerp = results["torch.lerp (one pass)"]
    k_cut = results.get("kornia RandomCutMixV2")
    k_mix = results.get("kornia RandomMixUpV2")
    head = (
        f"| case ({device.type}, B={batch}, 3x{size}x{size} fp32) | min ms | median ms "
        "| min vs one lerp |"
    )
    lines = [head, "|---|---|---|---|"]
    for name, ts in times.items():
        lines.append(
            f"| {name} | {min(ts) * 1e3:.2f} | {statistics.median(ts) * 1e3:.2f} "
            f"| {min(ts) / lerp:.2f}x |"
        )
    lines.append("")
    lines.append(f"Ratios of the minima over {repeats} rounds (goal in brackets):")
    lines.append(
        f"- MixUp / one lerp pass: {results['MixUp, per-sample lambda'] / lerp:.2f}x (<= 1.5x)"
    )
    if k_mix is not None:
        lines.append(
            f"- kornia MixUp / posneg MixUp: {k_mix / results['MixUp, per-sample lambda']:.2f}x"
        )
    if k_cut is not None:
        for name in (
            "CutMix, per-sample box",
            "FMix, per-sample masks",
            "FMix, one mask per batch",
            "ResizeMix, per-sample tau",
        ):
            lines.append(f"- kornia CutMix / posneg {name}: {k_cut / results[name]:.2f}x (>= 3x)")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--no-gpu", action="store_true")
    args = parser.parse_args(argv)
    cpu = torch.device("cpu")
    report = [
        "# posneg batch mixing benchmark",
        "",
        "Command: `" + " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]) + "`",
        "",
        *[f"- {line}" for line in environment(cpu)],
        "",
        "## CPU",
        "",
    ]
    print("\n".join(report), flush=True)
    report += run(args.batch, args.size, args.repeats, cpu)
    if torch.cuda.is_available() and not args.no_gpu:
        cuda = torch.device("cuda")
        report += ["", "## GPU", "", *[f"- {line}" for line in environment(cuda)], ""]
        report += run(args.batch, args.size, max(args.repeats, 20), cuda)
    print("\n".join(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
