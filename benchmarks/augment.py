"""Speed of posneg's per-sample RandAugment and random-field/resampling ops against kornia.

Times one call of each case on the same batch in the same process (default B=256, 3x224x224)
and prints a table of milliseconds per batch and the ratio the issue's goal is stated in:
posneg ``RandAugment(num_ops=2, magnitude=9)`` (a different op and sign per sample, in one
batched call) against kornia's ``augmentation.auto.RandAugment(n=2, m=9)`` (goal: at least 2x
faster on CPU). fp32 batches for both; posneg is also timed on uint8, which kornia does not
take. ``RandomField`` and ``Resample`` are shown for scale, beside one ``torch.lerp`` pass.

Method, the same as ``benchmarks/mixing.py`` (whose timing helpers this script reuses): one
warm-up call per case, then ``--repeats`` round-robin rounds; minimum and median per case;
ratios use the minima. kornia is optional: without it (``pip install kornia``) its row is
skipped. The GPU section runs only where CUDA is present. A benchmark, not a test.

Usage::

    python benchmarks/augment.py
    python benchmarks/augment.py --batch 64 --repeats 3 --out bench_augment.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mixing import Call, environment, time_round_robin
from posneg.augment import RandAugment, RandomField, Resample


def build_cases(batch: int, size: int, device: torch.device) -> dict[str, Call]:
    """posneg and kornia cases on one shared batch."""
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(batch, 3, size, size, device=device)
    x8 = (x * 255).to(torch.uint8)
    x2 = torch.rand_like(x)
    ra = RandAugment(num_ops=2, magnitude=9)
    field = RandomField()
    resample = Resample()
    cases: dict[str, Call] = {
        "torch.lerp (one pass)": lambda: torch.lerp(x, x2, 0.3),
        "posneg RandAugment(2, 9), fp32": lambda: ra(x, generator=gen),
        "posneg RandAugment(2, 9), uint8": lambda: ra(x8, generator=gen),
        "posneg RandomField, fp32": lambda: field(x, generator=gen),
        "posneg Resample, fp32": lambda: resample(x, generator=gen),
    }
    try:
        from kornia.augmentation.auto import RandAugment as KRandAugment
    except ImportError:
        return cases
    k_ra = KRandAugment(n=2, m=9).to(device)
    cases["kornia auto.RandAugment(n=2, m=9), fp32"] = lambda: k_ra(x)
    return cases


def run(batch: int, size: int, repeats: int, device: torch.device) -> list[str]:
    """Time every case on ``device``; return markdown lines."""
    times = time_round_robin(build_cases(batch, size, device), device, repeats)
    best = {name: min(ts) for name, ts in times.items()}
    lerp = best["torch.lerp (one pass)"]
    lines = [
        f"| case ({device.type}, B={batch}, 3x{size}x{size}) | min ms | median ms | vs one lerp |",
        "|---|---|---|---|",
    ]
    for name, ts in times.items():
        lines.append(
            f"| {name} | {min(ts) * 1e3:.1f} | {statistics.median(ts) * 1e3:.1f} "
            f"| {min(ts) / lerp:.2f}x |"
        )
    k = best.get("kornia auto.RandAugment(n=2, m=9), fp32")
    if k is not None:
        ours = best["posneg RandAugment(2, 9), fp32"]
        lines += ["", f"- kornia RandAugment / posneg RandAugment (fp32): {k / ours:.2f}x (>= 2x)"]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--no-gpu", action="store_true")
    args = parser.parse_args(argv)
    cpu = torch.device("cpu")
    report = [
        "# posneg augmentation benchmark",
        "",
        "Command: `" + " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]) + "`",
        "",
        *[f"- {line}" for line in environment(cpu)],
        "",
        "## CPU",
        "",
    ]
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
