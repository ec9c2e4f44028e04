"""Every GPU comparison and every CUDA test in one call (issue 16, section 6).

Runs, each in its own subprocess with its own timeout and all within one time budget (default
450 s, under the 8 minutes one lent H100/H200 call allows):

- ``contrastive``: ``benchmarks/contrastive.py``'s GPU section (info_nce B=65536, D=768, bf16,
  against a naive ``F.cross_entropy(q @ k.T)``), without its CPU sweep;
- ``gpu_lse``: ``benchmarks/gpu_lse.py`` (Triton and torch row-LSE paths against naive
  InfoNCE / masked-softmax NT-Xent), where that script exists;
- ``oversampling``: ``benchmarks/oversampling.py --gpu-only`` (SMOTE 100k x 32 minority on the
  GPU, the exact kNN alone, ``torch.cdist`` + ``topk``);
- ``mining``: ``benchmarks/mining.py --sections c`` (exact top-k, 4096 x 2^20 x 768 fp16,
  against matmul + ``torch.topk``);
- ``mixing`` and ``augment``: ``benchmarks/mixing.py`` / ``augment.py`` (CPU then GPU sections,
  against kornia and torchvision v2 where installed; one timed round on the CPU);
- ``tests``: ``pytest -m cuda`` over ``tests/``, then the test files that exercise CUDA without
  the mark (they skip without a device).

Prints and writes to ``--out`` (``report.json``, ``report.md``, one ``<part>.log`` each): the
device name, the versions, each part's exit status and time, and every line of its output that
states a ratio (``...x``). Without a CUDA device it prints so and exits 0 at once.

Examples::

    python benchmarks/gpu.py --out gpu_report
    python benchmarks/gpu.py --out gpu_report --parts oversampling,tests --budget 300
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable

#: Test files that run CUDA cases without the ``cuda`` mark (they skip without a device).
CUDA_TEST_FILES = (
    "tests/_kernels",
    "tests/test_lse.py",
    "tests/losses/test_dice.py",
    "tests/mining/test_index.py",
    "tests/negatives/test_mochi.py",
    "tests/negatives/test_feature_transform.py",
    "tests/negatives/test_queue.py",
)

_CONTRASTIVE_GPU = (
    "import sys; sys.path.insert(0, {here!r}); import contrastive as c; "
    "c.sweep = lambda a: (c.gpu_section(a), 0)[1]; sys.exit(c.main([]))"
)


def parts(out: Path) -> dict[str, tuple[list[str], float]]:
    """name -> (command, timeout seconds)."""
    table: dict[str, tuple[list[str], float]] = {
        "contrastive": ([PY, "-c", _CONTRASTIVE_GPU.format(here=str(HERE))], 75.0),
        "oversampling": ([PY, str(HERE / "oversampling.py"), "--gpu-only"], 45.0),
        "mining": ([PY, str(HERE / "mining.py"), "--sections", "c"], 45.0),
        "mixing": ([PY, str(HERE / "mixing.py"), "--repeats", "1"], 45.0),
        "augment": ([PY, str(HERE / "augment.py"), "--repeats", "1"], 45.0),
        "tests": (
            [
                PY,
                "-c",
                "import sys, pytest; a = ['-q', '-p', 'no:cacheprovider', '-rs']; "
                f"r1 = pytest.main([*a, '-m', 'cuda', 'tests']); "
                f"r2 = pytest.main([*a, *{list(CUDA_TEST_FILES)!r}]); "
                "sys.exit(max(int(r1) if int(r1) != 5 else 0, int(r2)))",
            ],
            140.0,
        ),
    }
    if (HERE / "gpu_lse.py").exists():
        table["gpu_lse"] = (
            [PY, str(HERE / "gpu_lse.py"), "--json", str(out / "gpu_lse.json")],
            75.0,
        )
    return table


ORDER = ("oversampling", "mining", "contrastive", "gpu_lse", "mixing", "augment", "tests")
_RATIO = re.compile(r"\d+(?:\.\d+)?x\b")


def environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for mod in ("triton", "kornia", "torchvision", "faiss", "imblearn", "pytorch_metric_learning"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # absent or broken: recorded as such
            env[mod] = "not installed"
    return env


def run_part(name: str, cmd: list[str], timeout: float, out: Path) -> dict[str, Any]:
    print(f"== {name} (timeout {timeout:.0f} s)", flush=True)
    t0 = time.perf_counter()
    rc: int | str
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        rc, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        rc = "timeout"
        raw = (err.stdout or b"") + (err.stderr or b"")
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    seconds = time.perf_counter() - t0
    (out / f"{name}.log").write_text(text)
    ratios = [line.strip() for line in text.splitlines() if _RATIO.search(line)]
    print(f"   rc={rc}, {seconds:.1f} s, {len(ratios)} ratio lines", flush=True)
    return {"part": name, "rc": rc, "seconds": round(seconds, 1), "ratios": ratios,
            "tail": text[-1500:]}  # fmt: skip


def report_md(env: dict[str, Any], results: list[dict[str, Any]], skipped: list[str]) -> str:
    lines = ["# GPU run", "", *[f"- {k}: {v}" for k, v in env.items()], ""]
    lines += ["| part | exit | seconds |", "|---|---|---|"]
    lines += [f"| {r['part']} | {r['rc']} | {r['seconds']} |" for r in results]
    lines += ["", "skipped (budget or --parts): " + (", ".join(skipped) or "none"), ""]
    for r in results:
        lines += [f"## {r['part']}", "", *[f"    {x}" for x in r["ratios"]], ""]
    return "\n".join(lines)


def _driver_present() -> bool:
    """Whether a CUDA device can exist here: not hidden by ``CUDA_VISIBLE_DEVICES`` and an
    NVIDIA driver loaded (``/proc/driver/nvidia`` or a ``/dev/nvidia0`` node)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/proc/driver/nvidia").exists() or Path("/dev/nvidia0").exists()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("gpu_report"))
    p.add_argument("--parts", default=",".join(ORDER), help="comma list of parts to run")
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all parts")
    args = p.parse_args(argv)
    if not _driver_present():  # decided before importing torch (seconds on a loaded machine)
        print("gpu.py: no CUDA device found (no NVIDIA driver); nothing to measure.")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu.py: no CUDA device found; nothing to measure.")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment()
    print("\n".join(f"{k}: {v}" for k, v in env.items()), flush=True)
    table = parts(args.out)
    wanted = [n for n in ORDER if n in args.parts.split(",")]
    skipped = [n for n in ORDER if n not in wanted or n not in table]
    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    for name in wanted:
        if name not in table:
            continue
        cmd, limit = table[name]
        left = args.budget - (time.perf_counter() - start)
        if left < 15:
            skipped.append(f"{name} (budget)")
            continue
        results.append(run_part(name, cmd, min(limit, left), args.out))
        report = {"environment": env, "results": results, "skipped": skipped}
        (args.out / "report.json").write_text(json.dumps(report, indent=1))
        (args.out / "report.md").write_text(report_md(env, results, skipped))
    print(report_md(env, results, skipped))
    print(f"total {time.perf_counter() - start:.1f} s; report in {args.out}", flush=True)
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
